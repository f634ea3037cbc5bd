"""Every status and every reason, over real sockets and real TLS on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from medulla_imaging_exporter.config import Entity, TLSConfig
from medulla_imaging_exporter.httpserver import App, Request, Response, Server
from medulla_imaging_exporter.model import EntityStatus, Reason, Section, Stats, Status
from medulla_imaging_exporter.prober import Prober
from medulla_imaging_exporter.simulator import FAILED, Behaviour, LocalCA
from tests.conftest import MakeServer

EntityFor = Callable[..., Entity]


@contextlib.asynccontextmanager
async def started(*entities: Entity) -> AsyncIterator[Prober]:
    prober = Prober()
    prober.configure(entities)
    try:
        yield prober
    finally:
        await prober.aclose()


async def probe_once(entity: Entity, timeout_cap: float | None = None) -> EntityStatus:
    async with started(entity) as prober:
        return await prober.probe(entity, timeout_cap)


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: further SYNs are dropped, so connect times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    yield port
    filler.close()
    listener.close()


@pytest.fixture
async def http_503(local_ca: LocalCA) -> AsyncIterator[str]:
    """A TLS server answering 503, as a reverse proxy in front of a dead package server."""

    async def overloaded(request: Request) -> Response:
        return Response.text("Service Unavailable", 503)

    app = App()
    app.route("POST", "/imaging_api", overloaded)
    server = Server(app, local_ca.server_context())
    await server.start("127.0.0.1", 0)
    yield f"https://127.0.0.1:{server.port}/imaging_api"
    await server.close()


async def test_available_with_the_whole_reply(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    server = await make_server()
    status = await probe_once(entity_for(server))
    assert (status.status, status.reason) == (Status.AVAILABLE, None)
    assert status.reply is not None
    assert status.reply.section_errors == {}
    assert status.reply.uptime_seconds == 1123602.57
    assert status.reply.memory is not None and status.reply.memory.total_bytes == 8178893 * 1024
    assert status.duration_seconds is not None and status.duration_seconds > 0
    # trustme certificates expire on 3000-01-01
    assert status.cert_not_after == 32503680000.0


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        (Behaviour.REFUSE, Reason.REFUSED),
        (Behaviour.STALL_TLS, Reason.TLS_TIMEOUT),
        (Behaviour.UNTRUSTED, Reason.TLS_VERIFY),
        (Behaviour.STALL_REPLY, Reason.TIMEOUT),
        (Behaviour.DROP, Reason.RESET),
        (Behaviour.HTTP_404, Reason.HTTP_404),
        (Behaviour.HTTP_500, Reason.HTTP_500),
        (Behaviour.FAULT, Reason.FAULT),
        (Behaviour.FAULT_8002, Reason.FAULT),
        (Behaviour.GARBAGE, Reason.MALFORMED),
    ],
)
async def test_each_failure_of_the_simulator(
    make_server: MakeServer, entity_for: EntityFor, behaviour: Behaviour, reason: Reason
) -> None:
    server = await make_server(behaviour)
    status = await probe_once(entity_for(server, timeout=0.5))
    assert (status.status, status.reason) == (reason.status, reason)
    assert status.reply is None
    assert status.detail


def test_offline_and_connection_error_reasons_are_split_on_tcp() -> None:
    offline = {r for r in Reason if r.status is Status.OFFLINE}
    assert offline == {Reason.REFUSED, Reason.DNS, Reason.UNREACHABLE, Reason.CONNECT_TIMEOUT}


async def test_connect_timeout_is_offline(entity_for: EntityFor, full_backlog: int) -> None:
    entity = Entity("General", url=f"https://127.0.0.1:{full_backlog}/imaging_api", timeout=0.5)
    status = await probe_once(entity)
    assert (status.status, status.reason) == (Status.OFFLINE, Reason.CONNECT_TIMEOUT)


async def test_stalled_tls_handshake_is_not_a_connect_timeout(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    """httpx calls both ConnectTimeout; only the trace events tell that TCP did connect."""
    server = await make_server(Behaviour.STALL_TLS)
    status = await probe_once(entity_for(server, timeout=0.5))
    assert (status.status, status.reason) == (Status.CONNECTION_ERROR, Reason.TLS_TIMEOUT)
    assert "ConnectTimeout" in status.detail or "TimeoutError" in status.detail


async def test_name_not_resolved_is_offline() -> None:
    status = await probe_once(Entity("General", url="https://imaging.invalid:9990/imaging_api"))
    assert (status.status, status.reason) == (Status.OFFLINE, Reason.DNS)


async def test_tls_to_a_plain_http_server_is_a_tls_error(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    server = await make_server(tls=False)
    entity = entity_for(server)
    https = Entity(entity.name, url=entity.url.replace("http:", "https:"), tls=entity.tls)  # type: ignore[union-attr]
    status = await probe_once(https)
    assert (status.status, status.reason) == (Status.CONNECTION_ERROR, Reason.TLS)


async def test_plain_http_works(make_server: MakeServer, entity_for: EntityFor) -> None:
    server = await make_server(tls=False)
    status = await probe_once(entity_for(server))
    assert status.status is Status.AVAILABLE
    assert status.cert_not_after is None


async def test_other_http_status(http_503: str, ca_file: Path) -> None:
    status = await probe_once(Entity("P", url=http_503, tls=TLSConfig(ca_file=ca_file)))
    assert (status.status, status.reason) == (Status.CONNECTION_ERROR, Reason.HTTP_STATUS)
    assert status.detail == "HTTP status 503"


async def test_reply_over_the_cap(make_server: MakeServer, entity_for: EntityFor) -> None:
    server = await make_server()
    status = await probe_once(entity_for(server, max_reply_bytes=1000))
    assert (status.status, status.reason) == (Status.CONNECTION_ERROR, Reason.TOO_LARGE)


async def test_failed_sections_keep_the_server_available(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    server = await make_server(data=FAILED)
    status = await probe_once(entity_for(server))
    assert status.status is Status.AVAILABLE
    assert status.reply is not None
    assert set(status.reply.section_errors) == set(Section) - {Section.STATS}
    assert status.reply.stats == Stats(0, 0, 0)


async def test_no_url_is_not_linked() -> None:
    status = await probe_once(Entity("Siveo Medulla"))
    assert (status.status, status.reason, status.duration_seconds) == (
        Status.NOT_LINKED,
        None,
        None,
    )


async def test_untrusted_certificate_accepted_when_verification_is_off(
    make_server: MakeServer,
) -> None:
    server = await make_server(Behaviour.UNTRUSTED)
    entity = Entity("P", url=server.url, tls=TLSConfig(insecure_skip_verify=True))
    status = await probe_once(entity)
    assert status.status is Status.AVAILABLE
    assert status.cert_not_after == 32503680000.0  # still read without verification


async def test_verification_is_on_without_a_ca_file(make_server: MakeServer) -> None:
    server = await make_server()
    status = await probe_once(Entity("P", url=server.url))
    assert status.reason is Reason.TLS_VERIFY


@pytest.mark.parametrize(
    ("server_name", "reason"), [("localhost", None), ("imaging.example.org", Reason.TLS_VERIFY)]
)
async def test_server_name(
    make_server: MakeServer, ca_file: Path, server_name: str, reason: Reason | None
) -> None:
    server = await make_server()
    url = server.url.replace("127.0.0.1", "127.0.0.1")
    tls = TLSConfig(ca_file=ca_file, server_name=server_name)
    status = await probe_once(Entity("P", url=url, tls=tls))
    assert status.reason is reason


async def test_client_certificate_for_servers_with_verifypeer(
    make_server: MakeServer, local_ca: LocalCA, ca_file: Path, tmp_path: Path
) -> None:
    server = await make_server(client_auth=True)
    cert, key = local_ca.write_client_cert(tmp_path)
    with_cert = Entity("P", url=server.url, tls=TLSConfig(ca_file, cert, key))
    without = Entity("P", url=server.url, tls=TLSConfig(ca_file))
    assert (await probe_once(with_cert)).status is Status.AVAILABLE
    refused = await probe_once(without)
    assert refused.status is Status.CONNECTION_ERROR
    assert refused.reason in {Reason.TLS, Reason.RESET}


async def test_one_kept_alive_connection_is_reused(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    server = await make_server()
    entity = entity_for(server)
    async with started(entity) as prober:
        for _ in range(3):
            assert (await prober.probe(entity)).status is Status.AVAILABLE
    assert (server.connections, server.requests) == (1, 3)


async def test_a_server_that_went_away_and_came_back(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    server = await make_server()
    entity = entity_for(server, timeout=1.0)
    async with started(entity) as prober:
        assert (await prober.probe(entity)).status is Status.AVAILABLE
        await server.set_behaviour(Behaviour.REFUSE)
        assert (await prober.probe(entity)).reason is Reason.REFUSED
        await server.set_behaviour(Behaviour.OK)
        assert (await prober.probe(entity)).status is Status.AVAILABLE


async def test_concurrent_probes_share_one_request(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    server = await make_server()
    entity = entity_for(server)
    async with started(entity) as prober:
        statuses = await asyncio.gather(*(prober.probe(entity) for _ in range(10)))
    assert {s.status for s in statuses} == {Status.AVAILABLE}
    assert server.requests == 1


async def test_a_hung_entity_does_not_hold_back_the_others(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    hung = entity_for(await make_server(Behaviour.STALL_REPLY), name="Private", timeout=5.0)
    good = entity_for(await make_server(), name="Public")
    async with started(hung, good) as prober:
        pending = asyncio.create_task(prober.probe(hung))
        assert (await prober.probe(good)).status is Status.AVAILABLE
        assert not pending.done()  # the healthy answer came while the hung one still waits
        pending.cancel()


async def test_scrape_timeout_caps_the_entity_timeout(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    entity = entity_for(await make_server(Behaviour.STALL_REPLY), timeout=60.0)
    status = await probe_once(entity, timeout_cap=0.5)
    assert status.reason is Reason.TIMEOUT
    assert status.duration_seconds is not None and status.duration_seconds < 30


async def test_the_deadline_counts_from_the_start_of_the_scrape(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    """A probe that gets its turn late (a thousand others went first) still ends in time."""
    entity = entity_for(await make_server(Behaviour.STALL_REPLY), timeout=30.0)
    async with started(entity) as prober:
        since = asyncio.get_running_loop().time() - 29.5  # the scrape began 29.5 s ago
        status = await prober.probe(entity, since=since)
    assert status.reason is Reason.TIMEOUT
    assert status.timeout_seconds == 30.0  # the budget, as configured
    assert status.duration_seconds is not None and status.duration_seconds < 15


async def test_a_waiter_with_a_shorter_deadline_than_the_flight_it_joins(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    entity = entity_for(await make_server(Behaviour.STALL_REPLY), timeout=30.0)
    async with started(entity) as prober:
        long_flight = asyncio.create_task(prober.probe(entity))
        await asyncio.sleep(0.2)  # let it connect and send the request
        short = await prober.probe(entity, timeout_cap=0.3)
        assert (short.status, short.reason) == (Status.CONNECTION_ERROR, Reason.TIMEOUT)
        assert not long_flight.done()
        long_flight.cancel()


async def test_removed_entities_lose_their_connection_and_last_status(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    server = await make_server()
    entity = entity_for(server)
    async with started(entity) as prober:
        await prober.probe(entity)
        assert set(prober.last) == {"Public"}
        prober.configure([])
        assert prober.last == {}
        # A scrape that began before the reload still probes it, on a client of its own...
        assert (await prober.probe(entity)).status is Status.AVAILABLE
        assert server.connections == 2
        # ...which is not kept, nor is the status of an entity that is gone.
        assert prober.last == {}
        await prober.probe(entity)
        assert server.connections == 3
