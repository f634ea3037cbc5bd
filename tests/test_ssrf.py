"""No server-side request forgery: whatever the query string holds, only configured servers
are probed. A listener records every connection made to it; it must stay at zero."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx

from medulla_imaging_exporter.config import Config, Entity
from medulla_imaging_exporter.runtime import Runtime
from tests.conftest import MakeServer
from tests.helpers import metric_samples, sample, serving


class Listener:
    """A TCP port that records each connection and closes it."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    async def __aenter__(self) -> Listener:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


def forged_queries(port: int, config_file: Path) -> list[tuple[str, str]]:
    """(method, path and query) pointing the exporter at the listener in every way we know."""
    target = f"http://127.0.0.1:{port}/imaging_api"
    t = quote(target, safe="")
    hostport = f"127.0.0.1:{port}"
    gets = [
        f"/probe?target={t}",
        f"/probe?url={t}",
        f"/probe?module=imaging&target={t}",
        f"/probe?entity={t}",
        f"/probe?entity={hostport}",
        f"/probe?entity=Public&target={t}",
        f"/probe?entity=Public&url={t}&server={t}&address={hostport}",
        f"/probe?entity=Public&entity={t}",
        f"/probe?entity={t}&entity=Public",
        f"/probe?entity=Public%00{t}",
        f"/probe?entity=Public&debug=true&target={t}",
        f"/probe?target={t}&target={t}&entity=",
        f"/probe?entity=Public/../{hostport}",
        f"/metrics?target={t}",
        f"/metrics?entity={t}",
        f"/?target={t}",
        f"/?lang=fr&entity={t}",
        f"/sd?target={t}",
        f"/logs?id=1&target={t}",
        f"/{t}",
        f"/probe/{hostport}",
    ]
    return [("GET", q) for q in gets] + [
        ("POST", f"/-/reload?config.file={quote(str(config_file))}"),
        ("POST", f"/-/reload?target={t}"),
    ]


async def test_probe_only_reaches_configured_entities(
    make_server: MakeServer, entity_for: Callable[..., Entity], tmp_path: Path
) -> None:
    server = await make_server()
    config = Config((entity_for(server, "Public"),))
    runtime = Runtime(lambda: config)
    async with Listener() as listener:
        # A configuration an attacker would like the exporter to load instead.
        evil = tmp_path / "evil.yml"
        evil.write_text(f"entities:\n  - name: Evil\n    url: http://127.0.0.1:{listener.port}/\n")
        statuses: dict[str, int] = {}
        async with serving(runtime) as base, httpx.AsyncClient(base_url=base) as http:
            for method, query in forged_queries(listener.port, evil):
                statuses[query] = (await http.request(method, query, timeout=30)).status_code
            samples = metric_samples((await http.get("/metrics")).text)
        await runtime.aclose()

    assert listener.connections == 0
    assert all(code < 500 for code in statuses.values()), statuses
    assert [e.name for e in runtime.config.entities] == ["Public"]
    assert server.requests > 0  # the configured entity was probed, and only it
    entities = {dict(labels)["entity"] for name, labels in samples if "entity" in dict(labels)}
    assert entities == {"Public"}
    assert sample(samples, "medulla_imaging_server_up", entity="Public") == 1
