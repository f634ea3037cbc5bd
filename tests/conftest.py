from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from medulla_imaging_exporter.config import Entity, TLSConfig
from medulla_imaging_exporter.simulator import Behaviour, LocalCA, ServerData, SimulatedServer
from tests.mariadb import MariaDB, install, mariadb

MakeServer = Callable[..., Awaitable[SimulatedServer]]


@pytest.fixture(scope="session")
def local_ca() -> LocalCA:
    return LocalCA()


@pytest.fixture(scope="session")
def ca_file(local_ca: LocalCA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return local_ca.write_ca(tmp_path_factory.mktemp("ca") / "ca.pem")


@pytest.fixture
async def make_server(local_ca: LocalCA) -> AsyncIterator[MakeServer]:
    """Start simulated imaging servers over real TLS on 127.0.0.1; closed after the test."""
    started: list[SimulatedServer] = []

    async def make(
        behaviour: Behaviour = Behaviour.OK,
        data: ServerData | None = None,
        tls: bool = True,
        client_auth: bool = False,
    ) -> SimulatedServer:
        server = SimulatedServer(data, behaviour, local_ca if tls else None, client_auth)
        started.append(await server.start())
        return server

    yield make
    for server in started:
        await server.close()


@pytest.fixture
def entity_for(ca_file: Path) -> Callable[..., Entity]:
    """An entity probing a simulated server, trusting the test CA."""

    def make(server: SimulatedServer | None, name: str = "Public", **kw: object) -> Entity:
        settings: dict[str, object] = {"timeout": 2.0, "tls": TLSConfig(ca_file=ca_file)}
        settings.update(kw)
        return Entity(name=name, url=server.url if server else None, **settings)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def mariadb_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MariaDB data directory installed once, copied by every server the tests start."""
    datadir = tmp_path_factory.mktemp("mariadb-template") / "data"
    install(datadir)
    return datadir


@pytest.fixture(scope="session")
def mariadb_server(
    tmp_path_factory: pytest.TempPathFactory, mariadb_template: Path
) -> Iterator[MariaDB]:
    """One real MariaDB for the whole session, on 127.0.0.1 and a unix socket, with TLS."""
    with mariadb(tmp_path_factory.mktemp("mariadb"), tls=True, template=mariadb_template) as db:
        yield db
