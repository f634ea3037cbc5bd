"""The httpx transport over real sockets: what test_prober does not already pin.

Keep-alive across a timeout, an idle close or a server that closes after each reply
(cut and oversized replies are in test_faults), the request as the server sees it,
and two savings of ``transport``: no cookie kept, and a request in one TLS record.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import socket
import ssl
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import h11
import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from medulla_imaging_exporter import gcpolicy, transport
from medulla_imaging_exporter.config import Entity, TLSConfig
from medulla_imaging_exporter.model import Reason, Status
from medulla_imaging_exporter.prober import Prober
from medulla_imaging_exporter.simulator import Behaviour, LocalCA, ServerData, SimulatedServer
from medulla_imaging_exporter.transport import (
    USER_AGENT,
    Exchange,
    ImagingClient,
    WireEvents,
    _connect_tcp,
    _Receiver,
)
from tests.conftest import MakeServer
from tests.helpers import mutated

EntityFor = Callable[..., Entity]


def _glibc_malloc_in_use() -> Callable[[], int]:
    """Bytes in use in the C heap, by glibc's ``mallinfo2`` (as in the container image)."""
    assert gcpolicy._GLIBC is not None, "glibc's mallinfo2 is needed"
    info = gcpolicy._GLIBC[1]
    return lambda: int(info().uordblks)


TLS_APPLICATION_DATA = 23


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    p = Prober()
    yield p
    await p.aclose()


async def test_an_idle_connection_closed_by_the_server_is_not_a_failure(
    make_server: MakeServer, entity_for: EntityFor, prober: Prober
) -> None:
    server = await make_server()
    entity = entity_for(server)
    assert (await prober.probe(entity)).status is Status.AVAILABLE
    for writer in list(server._writers):
        writer.transport.abort()
    await asyncio.sleep(0.05)
    result = await prober.probe(entity)
    assert result.status is Status.AVAILABLE, result.detail
    assert server.connections == 2


async def test_after_a_timeout_the_next_probe_uses_a_fresh_connection(
    make_server: MakeServer, entity_for: EntityFor, prober: Prober
) -> None:
    server = await make_server(Behaviour.STALL_REPLY)
    entity = entity_for(server, timeout=0.3)
    assert (await prober.probe(entity)).reason is Reason.TIMEOUT
    server.behaviour = Behaviour.OK
    result = await prober.probe(entity)
    assert result.status is Status.AVAILABLE, result.detail
    assert server.connections == 2


async def test_a_connection_idle_past_its_keep_alive_is_replaced(
    make_server: MakeServer, entity_for: EntityFor, prober: Prober, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "KEEPALIVE_SECONDS", 0.2)
    server = await make_server()
    entity = entity_for(server)
    assert (await prober.probe(entity)).status is Status.AVAILABLE
    assert (await prober.probe(entity)).status is Status.AVAILABLE
    assert server.connections == 1  # reused within its keep-alive
    await asyncio.sleep(0.4)
    result = await prober.probe(entity)
    assert result.status is Status.AVAILABLE, result.detail
    assert server.connections == 2


async def _closing_server(reply: bytes) -> tuple[asyncio.Server, list[bytes]]:
    """A plain-TCP server that reads one request, sends ``reply`` and closes."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"</methodCall>"))
        writer.write(reply)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), seen


def _url(server: asyncio.Server, userinfo: str = "") -> str:
    return f"http://{userinfo}127.0.0.1:{server.sockets[0].getsockname()[1]}/imaging_api"


def _http_reply(body: bytes, *headers: str) -> bytes:
    head = "\r\n".join(("HTTP/1.1 200 OK", "Content-Type: text/xml", *headers))
    return head.encode() + b"\r\n\r\n" + body


async def test_the_request_is_an_xmlrpc_post_with_our_headers() -> None:
    server, seen = await _closing_server(b"")
    port = server.sockets[0].getsockname()[1]
    async with server:
        client = ImagingClient(Entity(name="E", url=_url(server, "user:secret@") + "?x=1"))
        traces = [WireEvents(), WireEvents()]
        try:
            for trace in traces:  # the server closes each time: two connections
                await client.call(2.0, trace)
        finally:
            await client.aclose()
    # One request object is sent every time: nothing accumulates in it (credentials)...
    assert len(seen) == 2 and seen[0] == seen[1]
    # ...and each exchange still reports its own wire events.
    assert all(trace.seen("connection.connect_tcp.complete") for trace in traces)
    assert traces[0].times[-1] < traces[1].times[0]
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert lines[0] == "POST /imaging_api?x=1 HTTP/1.1"
    assert headers["host"] == f"127.0.0.1:{port}"
    assert headers["content-type"] == "text/xml"
    assert headers["user-agent"] == USER_AGENT
    assert headers["authorization"] == "Basic dXNlcjpzZWNyZXQ="
    assert b"<methodName>imagingServerStatus</methodName>" in body


async def test_a_reply_the_server_encoded_anyway_is_decoded() -> None:
    """The request asks for no encoding, so a reply is read raw unless it says it has one."""
    body = ServerData().body()
    packed = gzip.compress(body)
    headers = f"Content-Length: {len(packed)}", "Content-Encoding: gzip", "Connection: close"
    server, _ = await _closing_server(_http_reply(packed, *headers))
    async with server:
        client = ImagingClient(Entity(name="Packed", url=_url(server)))
        try:
            exchange = await client.call(2.0, WireEvents())
        finally:
            await client.aclose()
    assert exchange.error is None, exchange.error
    assert exchange.body == body


async def test_a_server_that_closes_after_each_reply_is_probed_again(prober: Prober) -> None:
    body = ServerData().body()
    reply = _http_reply(body, f"Content-Length: {len(body)}", "Connection: close")
    server, seen = await _closing_server(reply)
    async with server:
        entity = Entity(name="Once", url=_url(server), timeout=2.0)
        first = await prober.probe(entity)
        second = await prober.probe(entity)
    assert (first.status, second.status) == (Status.AVAILABLE, Status.AVAILABLE), second.detail
    assert len(seen) == 2


@dataclass
class Relay:
    """A TCP relay in front of a simulated server that keeps what the client sent.

    ``sent`` holds the client's bytes; ``records`` the content type of each TLS record
    in them, for servers that speak TLS.
    """

    target: SimulatedServer
    sent: bytearray = field(default_factory=bytearray)
    records: list[int] = field(default_factory=list)
    _parsed: int = 0

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, keep: bool
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if keep:
                    self.sent += data
                    self._count_records()
                writer.write(data)
                await writer.drain()
        writer.close()

    def _count_records(self) -> None:
        while len(self.sent) - self._parsed >= 5:
            length = int.from_bytes(self.sent[self._parsed + 3 : self._parsed + 5])
            if len(self.sent) - self._parsed < 5 + length:
                return
            self.records.append(self.sent[self._parsed])
            self._parsed += 5 + length

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target.port)
        await asyncio.gather(
            self._pipe(reader, up_writer, keep=True), self._pipe(up_reader, writer, keep=False)
        )


@contextlib.asynccontextmanager
async def relayed(
    target: SimulatedServer, entity_for: EntityFor
) -> AsyncIterator[tuple[Relay, Entity]]:
    relay = Relay(target)
    server = await asyncio.start_server(relay.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    entity = entity_for(target)
    url = target.url.replace(f":{target.port}/", f":{port}/")
    async with server:
        yield relay, Entity(entity.name, url=url, tls=entity.tls)


async def test_each_request_leaves_in_one_tls_record(
    make_server: MakeServer, entity_for: EntityFor, prober: Prober
) -> None:
    """h11 makes head and body separately; the transport sends them together."""
    async with relayed(await make_server(), entity_for) as (relay, entity):
        assert (await prober.probe(entity)).status is Status.AVAILABLE
        before = len(relay.records)
        for _ in range(3):
            assert (await prober.probe(entity)).status is Status.AVAILABLE
        await asyncio.sleep(0.05)  # the relay may still be parsing the last request
    assert relay.records[before:] == [TLS_APPLICATION_DATA] * 3


async def test_the_session_cookie_is_never_sent_back(
    make_server: MakeServer, entity_for: EntityFor, prober: Prober
) -> None:
    server = await make_server(tls=False)  # its replies carry Twisted's Set-Cookie
    async with relayed(server, entity_for) as (relay, entity):
        for _ in range(3):
            assert (await prober.probe(entity)).status is Status.AVAILABLE
        await asyncio.sleep(0.05)
    assert relay.sent.count(b"POST /imaging_api") == 3
    assert b"cookie" not in relay.sent.lower()


async def test_a_client_sends_one_request_at_a_time(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    """The prober never overlaps two probes of a server; the client refuses if asked to."""
    server = await make_server(Behaviour.STALL_REPLY)
    client = ImagingClient(entity_for(server, timeout=0.5))
    try:
        first = asyncio.create_task(client.call(0.5, WireEvents()))
        await asyncio.sleep(0.1)  # the first request is waiting for its reply
        second = await client.call(0.5, WireEvents())
        assert isinstance(second.error, RuntimeError), second
        assert "already under way" in str(second.error)
        assert isinstance((await first).error, TimeoutError)
    finally:
        await client.aclose()
    assert server.connections == 1


async def test_entities_share_one_httpx_client_and_each_keeps_its_own_connection(
    make_server: MakeServer, entity_for: EntityFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One httpx client per entity weighed 2.2 kB: there is one for all, and the connection
    a request goes over is its entity's, even for two entities of one server at once."""
    made: list[httpx.AsyncClient] = []
    init = httpx.AsyncClient.__init__

    def counted(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "__init__", counted)
    server = await make_server()
    clients = [ImagingClient(entity_for(server, name=name)) for name in ("A", "B")]
    try:
        for _ in range(2):
            exchanges = await asyncio.gather(*(c.call(2.0, WireEvents()) for c in clients))
            assert [e.status_code for e in exchanges] == [200, 200], exchanges
    finally:
        for client in clients:
            await client.aclose()
    assert made == []
    assert server.connections == 2  # one per entity, each kept alive for its second probe


async def test_a_refused_connection_is_httpx_connect_error_caused_by_the_os_error() -> None:
    with contextlib.closing(socket.socket()) as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}/imaging_api"  # nothing listens
    client = ImagingClient(Entity(name="E", url=url))
    events = WireEvents()
    try:
        exchange = await client.call(2.0, events)
    finally:
        await client.aclose()
    assert isinstance(exchange.error, httpx.ConnectError), repr(exchange.error)
    assert isinstance(exchange.error.__cause__, ConnectionRefusedError)
    assert events.names == ["connection.connect_tcp.started", "connection.connect_tcp.failed"]
    assert not exchange.tcp_connected


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"", "closed without sending a reply"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "illegal status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n<short/>", "peer closed connection"),
    ],
    ids=["nothing", "not-http", "cut-short"],
)
async def test_a_reply_that_breaks_http_is_an_httpx_protocol_error(
    reply: bytes, message: str
) -> None:
    server, seen = await _closing_server(reply)
    async with server:
        client = ImagingClient(Entity(name="E", url=_url(server)))
        try:
            exchange = await client.call(2.0, WireEvents())
            assert client._route.connection is None  # not kept for the next probe
        finally:
            await client.aclose()
    assert isinstance(exchange.error, httpx.RemoteProtocolError), repr(exchange.error)
    assert message in str(exchange.error).lower()
    assert exchange.tcp_connected and len(seen) == 1


async def test_a_handshake_cut_by_the_deadline_closes_its_socket(
    entity_for: EntityFor, make_server: MakeServer
) -> None:
    """The probe's deadline cancels the handshake; the socket is closed then, not left to
    the garbage collector."""
    accepted: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append((reader, writer))

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        tls = entity_for(await make_server()).tls
        client = ImagingClient(Entity(name="E", url=f"https://127.0.0.1:{port}/x", tls=tls))
        events = WireEvents()
        try:
            exchange = await client.call(0.3, events)
            assert isinstance(exchange.error, TimeoutError) and exchange.tls_pending
            assert "connection.start_tls.failed" in events.names
            [(reader, writer)] = accepted
            await reader.readuntil(b"\x16\x03")  # the client's hello, then nothing
            # The end of the stream at once; a socket left open would make this time out.
            await asyncio.wait_for(reader.read(), 1.0)
            assert reader.at_eof()
            writer.close()
        finally:
            await client.aclose()


async def test_a_reply_left_unread_closes_its_connection_at_once(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    """A reply over the cap is not read to its end: its connection cannot carry the next
    request, and is closed then rather than held until the next probe."""
    server = await make_server()
    client = ImagingClient(entity_for(server, max_reply_bytes=512))
    try:
        for _ in range(2):
            exchange = await client.call(2.0, WireEvents())
            assert isinstance(exchange.error, transport.ReplyTooLarge), exchange
            assert client._route.connection is None
    finally:
        await client.aclose()
    assert server.connections == 2


async def test_the_certificate_is_checked_against_the_configured_server_name(
    local_ca: LocalCA, ca_file: Path
) -> None:
    """The test CA's certificate names 127.0.0.1 and localhost, and so does the URL: only the
    configured server name can make the check fail. A bare TLS listener, since the client
    gives up during the handshake."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        asyncio.Protocol, "127.0.0.1", 0, ssl=local_ca.server_context()
    )
    port = server.sockets[0].getsockname()[1]
    results: dict[str, Exchange] = {}
    async with server:
        for name in ("localhost", "imaging.example.org"):
            tls = TLSConfig(ca_file=ca_file, server_name=name)
            client = ImagingClient(Entity(name="E", url=f"https://127.0.0.1:{port}/x", tls=tls))
            try:
                results[name] = await client.call(1.0, WireEvents())
            finally:
                await client.aclose()
    # The listener never answers: with the name it verifies, the handshake ends and the
    # request waits for a reply until the deadline.
    assert isinstance(results["localhost"].error, TimeoutError), results["localhost"]
    assert not results["localhost"].tls_pending
    refused = results["imaging.example.org"].error
    assert isinstance(refused, httpx.ConnectError), refused
    assert isinstance(refused.__cause__, ssl.SSLCertVerificationError)
    assert "imaging.example.org" in str(refused)


async def test_a_client_keeps_no_trace_of_its_last_exchange(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    """A thousand idle entities would each hold their last probe's events (2 kB)."""
    server = await make_server()
    client = ImagingClient(entity_for(server))
    try:
        events = WireEvents()
        exchange = await client.call(5.0, events)
        assert exchange.status_code == 200
        assert events.seen("http11.receive_response_body.complete")  # traced to the end
        kept = weakref.ref(events)
        del events
        assert kept() is None
    finally:
        await client.aclose()


async def test_the_request_head_is_made_once_per_entity(
    make_server: MakeServer, entity_for: EntityFor, prober: Prober, monkeypatch: pytest.MonkeyPatch
) -> None:
    """h11 validates every header when its request event is made: the prober sends the same
    request at every probe, so the event is made once, and sent again on a new connection."""
    made: list[h11.Request] = []
    init = h11.Request.__init__

    def counted(self: h11.Request, **kwargs: Any) -> None:
        init(self, **kwargs)
        if not kwargs.get("_parsed"):  # made to be sent, not read by the simulated server
            made.append(self)

    monkeypatch.setattr(h11.Request, "__init__", counted)
    monkeypatch.setattr(transport, "KEEPALIVE_SECONDS", 0.0)  # a new connection every time
    server = await make_server()
    entity = entity_for(server)
    for _ in range(3):
        assert (await prober.probe(entity)).status is Status.AVAILABLE
    assert server.connections == 3
    assert len(made) == 1
    [head] = made
    assert (head.method, head.target) == (b"POST", b"/imaging_api")


async def test_no_openssl_write_buffer_is_left_once_a_reply_is_read(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    """Reading TLS 1.3's session tickets with the first reply made OpenSSL keep a 16 kB
    write buffer per connection until the next request; a write of nothing frees it."""
    in_use = _glibc_malloc_in_use()
    client = ImagingClient(entity_for(await make_server()))
    try:
        assert (await client.call(2.0, WireEvents())).status_code == 200
        assert client._route.connection is not None
        tls = client._route.connection.stream
        assert isinstance(tls, transport._TLSStream)
        assert tls._ssl.version() == "TLSv1.3"  # the simulator sends session tickets
        before = in_use()
        tls._ssl.write(b"")  # would free the buffer if one were left
        assert before - in_use() < 4096
    finally:
        await client.aclose()


async def test_at_most_handshake_slots_tls_handshakes_run_at_once(
    make_server: MakeServer, entity_for: EntityFor, prober: Prober, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "HANDSHAKE_SLOTS", 2)
    running, most = 0, 0
    handshake = transport._TLSStream.handshake

    async def counted(stream: transport._TLSStream) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await handshake(stream)
        finally:
            running -= 1

    monkeypatch.setattr(transport._TLSStream, "handshake", counted)
    entities = [entity_for(await make_server(), name=f"E{i}") for i in range(6)]
    statuses = await asyncio.gather(*(prober.probe(e) for e in entities))
    assert [s.status for s in statuses] == [Status.AVAILABLE] * 6
    assert most == 2


async def test_a_stalled_handshake_gives_its_slot_up(
    make_server: MakeServer, entity_for: EntityFor, prober: Prober, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that never answers the handshake delays the others by the slot's time at
    most, not by its whole timeout."""
    monkeypatch.setattr(transport, "HANDSHAKE_SLOTS", 1)
    stalled = entity_for(await make_server(Behaviour.STALL_TLS), name="Stalled", timeout=10)
    healthy = entity_for(await make_server(), name="Healthy", timeout=1.0)
    first = asyncio.create_task(prober.probe(stalled))
    await asyncio.sleep(0.05)  # the stalled handshake holds the only slot
    assert (await prober.probe(healthy)).status is Status.AVAILABLE
    assert not first.done()  # still waiting for the handshake, without its slot
    first.cancel()


async def test_a_flooding_server_is_read_only_as_fast_as_the_reply_is_consumed() -> None:
    """Reading pauses once ``_Receiver.HIGH_WATER`` bytes wait, and resumes as they go."""
    flood = b"x" * (1 << 20)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            for _ in range(16):
                writer.write(flood)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        stream = await _connect_tcp("127.0.0.1", port)
        receiver = stream._receiver
        await asyncio.sleep(0.2)  # the server has far more to send than we buffer
        assert receiver.paused
        assert receiver.buffered < _Receiver.HIGH_WATER + (1 << 20)
        received = 0
        while data := await stream.read():
            received += len(data)
            assert receiver.buffered < _Receiver.HIGH_WATER + (1 << 20)
        stream.close()
    assert received == 16 * len(flood)


@contextlib.asynccontextmanager
async def _tls_replier(
    local_ca: LocalCA, ca_file: Path, pieces: list[bytes]
) -> AsyncIterator[tuple[Entity, list[int]]]:
    """A TLS server that answers each request with ``pieces``, written one by one with a
    pause between them, and keeps the connection; the entity that probes it, and the
    number of requests of each connection it accepted."""
    requests: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(0)
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while await reader.readuntil(b"</methodCall>"):
                requests[-1] += 1
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.01)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=local_ca.server_context())
    port = server.sockets[0].getsockname()[1]
    url = f"https://127.0.0.1:{port}/imaging_api"
    async with server:
        yield Entity(name="E", url=url, tls=TLSConfig(ca_file=ca_file)), requests


async def _calls(entity: Entity, count: int) -> tuple[list[Exchange], bool]:
    """``count`` calls on one client, and whether its connection was left to h11 at the end."""
    client = ImagingClient(entity)
    try:
        exchanges = [await client.call(2.0, WireEvents()) for _ in range(count)]
        connection = client._route.connection
        return exchanges, connection is not None and connection._h11 is not None
    finally:
        await client.aclose()


async def test_a_plain_reply_is_read_without_h11(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    """What Twisted sends (a final status, a Content-Length, usual header lines) is read by
    the transport itself: h11 never sees the connection, which carries every probe."""
    server = await make_server()
    exchanges, to_h11 = await _calls(entity_for(server), 3)
    assert [(e.status_code, e.body) for e in exchanges] == [(200, ServerData().body())] * 3
    assert not to_h11
    assert server.connections == 1


def _reply_pieces(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = "\r\n".join((f"HTTP/1.1 {status}", "Content-Type: text/xml", *headers))
    return head.encode() + b"\r\n\r\n" + body


BODY = ServerData().body()
PLAIN = _reply_pieces(BODY, f"Content-Length: {len(BODY)}")
HEAD_END = PLAIN.index(b"\r\n\r\n") + 4
CHUNKED = (
    _reply_pieces(BODY, "Transfer-Encoding: chunked").replace(
        b"\r\n\r\n<", b"\r\n\r\n%x\r\n<" % len(BODY)
    )
    + b"\r\n0\r\n\r\n"
)


@pytest.mark.parametrize(
    "cuts",
    [[1, 30, HEAD_END - 1, len(PLAIN) - 1000], [HEAD_END], [len(PLAIN) - 1]],
    ids=["head-in-pieces-and-body-in-two", "head-then-body", "all-but-the-last-byte"],
)
async def test_a_plain_reply_in_pieces_is_read_directly(
    local_ca: LocalCA, ca_file: Path, cuts: list[int]
) -> None:
    """Each piece in a TLS record of its own, apart in time: the head is read across them,
    the body handed out as it comes."""
    pieces = [PLAIN[a:b] for a, b in itertools.pairwise([0, *cuts, len(PLAIN)])]
    async with _tls_replier(local_ca, ca_file, pieces) as (entity, requests):
        exchanges, to_h11 = await _calls(entity, 2)
    assert [(e.status_code, e.body) for e in exchanges] == [(200, BODY)] * 2
    assert not to_h11
    assert requests == [2]  # one connection, kept


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n" + PLAIN,
        _reply_pieces(BODY, f"Content-Length: {len(BODY)}", "X-Folded: a", " b"),
        _reply_pieces(BODY, f"Content-Length: {len(BODY)}, {len(BODY)}"),
        CHUNKED,
    ],
    ids=["informational-first", "folded-line", "length-list", "chunked"],
)
async def test_a_reply_that_is_not_plain_is_read_by_h11_which_keeps_the_connection(
    local_ca: LocalCA, ca_file: Path, reply: bytes
) -> None:
    """h11 is handed every byte read so far, and the connection for good."""
    async with _tls_replier(local_ca, ca_file, [reply]) as (entity, requests):
        exchanges, to_h11 = await _calls(entity, 3)
    assert [(e.status_code, e.body, e.error) for e in exchanges] == [(200, BODY, None)] * 3
    assert to_h11
    assert requests == [3]


async def test_a_reply_whose_head_h11_refuses_is_a_protocol_error(
    local_ca: LocalCA, ca_file: Path
) -> None:
    reply = _reply_pieces(BODY, f"Content-Length: {len(BODY)}", "Bad Header: x")
    async with _tls_replier(local_ca, ca_file, [reply]) as (entity, _):
        (exchange,), _ = await _calls(entity, 1)
    assert isinstance(exchange.error, httpx.RemoteProtocolError), exchange
    assert "illegal header line" in str(exchange.error)


@pytest.mark.parametrize("reply", [PLAIN, CHUNKED], ids=["plain", "read-by-h11"])
async def test_bytes_past_the_end_of_a_reply_close_its_connection(
    local_ca: LocalCA, ca_file: Path, reply: bytes
) -> None:
    """The reply is whole, but the connection is out of step: the next probe opens another
    (h11 kept such bytes as the start of the next reply, which then failed)."""
    async with _tls_replier(local_ca, ca_file, [reply + b"HTTP/1.1 200 OK\r\n"]) as (
        entity,
        requests,
    ):
        exchanges, _ = await _calls(entity, 2)
    assert [(e.status_code, e.body, e.error) for e in exchanges] == [(200, BODY, None)] * 2
    assert requests == [1, 1]


async def test_a_connection_close_in_a_plain_reply_closes_its_connection(
    local_ca: LocalCA, ca_file: Path
) -> None:
    reply = _reply_pieces(BODY, f"Content-Length: {len(BODY)}", "Connection: Keep-Alive, close")
    async with _tls_replier(local_ca, ca_file, [reply]) as (entity, requests):
        exchanges, _ = await _calls(entity, 2)
    assert [(e.status_code, e.body, e.error) for e in exchanges] == [(200, BODY, None)] * 2
    assert requests == [1, 1]


# Bytes that make a reply odd in the ways that matter: line ends, separators, control and
# high bytes, digits of a length, the words that frame a reply.
MUTATION_BYTES = b"\r\n :\t\x00\x01\x7f\xff0123456789HTTP/1.0Content-Length:chunked,close"


async def _seen(local_ca: LocalCA, ca_file: Path, reply: bytes) -> object:
    """What two probes of a server sending ``reply`` see, and the requests of each connection."""
    async with _tls_replier(local_ca, ca_file, [reply]) as (entity, requests):
        client = ImagingClient(entity)
        try:
            exchanges = [await client.call(0.3, WireEvents()) for _ in range(2)]
        finally:
            await client.aclose()
    return [(e.status_code, e.body, type(e.error)) for e in exchanges], requests


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# The usual reply or a chunked one, with up to three bytes changed in its head or the start
# of its body.
@given(reply=mutated([PLAIN, CHUNKED], MUTATION_BYTES, 3, HEAD_END + 40))
def test_reading_replies_without_h11_changes_nothing_a_probe_sees(
    local_ca: LocalCA, ca_file: Path, reply: bytes
) -> None:
    """Whatever the reply, two probes see the same statuses, bodies and errors, on the same
    connections, as when h11 reads every reply."""
    direct = asyncio.run(_seen(local_ca, ca_file, reply))
    with mock.patch.object(transport, "plain_response", lambda head: None):
        by_h11 = asyncio.run(_seen(local_ca, ca_file, reply))
    assert direct == by_h11
