"""The embedded default: simulated imaging servers for the seed page's entities.

"Public" answers with the screenshot's values, "Private" is in connection error
(its package server runs without the imaging API), "General" is offline, and the
root entity "Siveo Medulla" has no imaging server.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from medulla_imaging_exporter.config import Config, Entity, TLSConfig
from medulla_imaging_exporter.simulator import Behaviour, LocalCA, ServerData, SimulatedServer

# The screenshot shows "1 masters sont disponibles"; the demo has no database, so the
# simulated reply carries it.
PUBLIC = ServerData(stats={"rescue": 0, "master": 1, "total": 0})

DEMO_TIMEOUT_SECONDS = 5.0


@dataclass
class Demo:
    config: Config
    servers: dict[str, SimulatedServer]
    _tmp: tempfile.TemporaryDirectory[str]

    async def aclose(self) -> None:
        for server in self.servers.values():
            await server.close()
        self._tmp.cleanup()


async def start_demo() -> Demo:
    tmp = tempfile.TemporaryDirectory(prefix="medulla-demo-")
    ca = LocalCA()
    ca_file = ca.write_ca(Path(tmp.name) / "demo-ca.pem")
    servers = {
        "Public": SimulatedServer(PUBLIC, Behaviour.OK, ca),
        "Private": SimulatedServer(PUBLIC, Behaviour.HTTP_404, ca),
        "General": SimulatedServer(PUBLIC, Behaviour.REFUSE, ca),
    }
    for server in servers.values():
        await server.start()
    tls = TLSConfig(ca_file=ca_file)
    uuids = {"Siveo Medulla": "UUID1", "Public": "UUID2", "Private": "UUID3", "General": "UUID4"}
    entities = tuple(
        Entity(
            name=name,
            uuid=uuid,
            url=servers[name].url if name in servers else None,
            timeout=DEMO_TIMEOUT_SECONDS,
            tls=tls,
        )
        for name, uuid in uuids.items()
    )
    return Demo(Config(entities=entities, source="<demo>"), servers, tmp)
