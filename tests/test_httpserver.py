"""The HTTP server on real sockets of 127.0.0.1: raw bytes where the point is the protocol."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import h11
import httpx
import pytest
from hypothesis import event, given, settings

from medulla_imaging_exporter import httpserver
from medulla_imaging_exporter.http11 import MAX_HEAD_BYTES
from medulla_imaging_exporter.httpserver import App, Handler, HTTPError, Request, Response, Server
from medulla_imaging_exporter.simulator import LocalCA
from tests.helpers import mutated


async def echo(request: Request) -> Response:
    lines = [
        f"{request.method} {request.path}",
        *(f"query {k}={v}" for k, v in request.query.items()),
        f"host {request.host}",
        f"accept {request.headers.get('accept')}",
        f"body {request.body!r}",
    ]
    return Response.text("\n".join(lines) + "\n")


async def fail(request: Request) -> Response:
    raise RuntimeError("a bug in a handler")


class Streamed:
    """A streamed body that records how far it was read and whether it was closed."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.read = 0
        self.closed = asyncio.Event()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.read += 1
            yield chunk

    def close(self) -> None:
        self.closed.set()


def app(stream: Streamed | None = None) -> App:
    application = App()
    application.route("GET", "/echo", echo)
    application.route("POST", "/echo", echo)
    application.route("GET", "/fail", fail)
    if stream is not None:
        body = stream

        async def streamed(request: Request) -> Response:
            return Response(body, content_type="text/plain; version=0.0.4")

        application.route("GET", "/stream", streamed)
    return application


@contextlib.asynccontextmanager
async def running(
    application: App, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Server]:
    server = Server(application, ssl_context)
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.close()


async def exchange(port: int, raw: bytes) -> bytes:
    """Sends raw bytes and reads until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        async with asyncio.timeout(10):
            return await reader.read(-1)
    finally:
        writer.close()


def head_of(reply: bytes) -> tuple[str, dict[str, str]]:
    """The status line and the headers (lower-case names) of the first reply in ``reply``."""
    status, *lines = reply.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    return status, {k.lower(): v for k, _, v in (line.partition(": ") for line in lines)}


def get(path: str, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", "Host: exporter", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def test_keep_alive_and_pipelined_requests_are_answered_in_order() -> None:
    async with running(app()) as server:
        reply = await exchange(
            server.port, get("/echo?n=1") + get("/echo?n=2") + get("/echo?n=3", "Connection: close")
        )
    assert reply.count(b"HTTP/1.1 200 ") == 3
    assert reply.index(b"query n=1") < reply.index(b"query n=2") < reply.index(b"query n=3")


async def test_a_client_reuses_one_connection() -> None:
    async with running(app()) as server, httpx.AsyncClient() as client:
        first = await client.get(f"http://127.0.0.1:{server.port}/echo")
        second = await client.get(f"http://127.0.0.1:{server.port}/echo")
    assert first.status_code == second.status_code == 200
    assert first.extensions["network_stream"] is second.extensions["network_stream"]


async def test_the_request_is_decoded() -> None:
    async with running(app()) as server:
        reply = await exchange(
            server.port,
            get(
                "/ech%6F?entity=Siveo%20Medulla&entity=second&empty=",
                "Accept: text/plain",
                "Accept: application/openmetrics-text",
                "Connection: close",
            ),
        )
    text = reply.decode()
    assert "GET /echo\n" in text
    # The first value of a repeated parameter, as aiohttp and Go's Query().Get() give it.
    assert "query entity=Siveo Medulla\n" in text and "query empty=\n" in text
    assert "accept text/plain, application/openmetrics-text\n" in text
    assert "host exporter\n" in text


async def test_without_a_host_header_the_host_is_the_listening_address() -> None:
    async with running(app()) as server:
        reply = await exchange(server.port, b"GET /echo HTTP/1.0\r\n\r\n")
    assert f"host 127.0.0.1:{server.port}\n".encode() in reply


async def test_a_request_body_is_read_and_a_too_large_one_refused() -> None:
    async with running(app()) as server:
        small = await exchange(
            server.port,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Connection: close\r\n\r\nhello",
        )
        size = httpserver.MAX_BODY_BYTES + 1
        large = await exchange(
            server.port,
            f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
            + b"x" * size,
        )
    assert b"body b'hello'" in small
    status, headers = head_of(large)
    assert status.startswith("HTTP/1.1 413 ") and headers["connection"] == "close"


async def test_expect_100_continue_is_answered_before_the_body() -> None:
    async with running(app()) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        async with asyncio.timeout(10):
            interim = await reader.readuntil(b"\r\n\r\n")
            writer.write(b"ok")
            rest = await reader.read(-1)
        writer.close()
    assert interim.startswith(b"HTTP/1.1 100 ")
    assert rest.startswith(b"HTTP/1.1 200 ") and b"body b'ok'" in rest


async def test_a_status_line_has_its_reason_phrase() -> None:
    async with running(app()) as server:
        found = await exchange(server.port, get("/echo", "Connection: close"))
        missing = await exchange(server.port, get("/nope", "Connection: close"))
    assert found.startswith(b"HTTP/1.1 200 OK\r\n")
    assert missing.startswith(b"HTTP/1.1 404 Not Found\r\n")


async def test_every_reply_is_dated_to_the_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``Date`` header is formatted once a second, and follows the clock."""
    now = 1_800_000_000.7
    monkeypatch.setattr(time, "time", lambda: now)
    async with running(app()) as server:
        first = await exchange(server.port, get("/echo", "Connection: close"))
        now += 0.2  # the same second
        second = await exchange(server.port, get("/echo", "Connection: close"))
        now += 3600
        later = await exchange(server.port, get("/nope", "Connection: close"))
    dates = [head_of(reply)[1]["date"] for reply in (first, second, later)]
    assert dates[0] == dates[1] == "Fri, 15 Jan 2027 08:00:00 GMT"
    assert dates[2] == "Fri, 15 Jan 2027 09:00:00 GMT"


async def test_unknown_paths_and_methods() -> None:
    async with running(app()) as server:
        missing = await exchange(server.port, get("/nope", "Connection: close"))
        wrong = await exchange(
            server.port, b"DELETE /fail HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    assert missing.startswith(b"HTTP/1.1 404 ")
    status, headers = head_of(wrong)
    assert status.startswith("HTTP/1.1 405 ") and headers["allow"] == "GET, HEAD"


async def test_head_gives_the_headers_of_get_without_a_body() -> None:
    stream = Streamed([b"a" * 10, b"b" * 10])
    async with running(app(stream)) as server:
        fixed = await exchange(
            server.port, b"HEAD /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        streamed = await exchange(
            server.port, b"HEAD /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        await asyncio.wait_for(stream.closed.wait(), 5)
    status, headers = head_of(fixed)
    assert status.startswith("HTTP/1.1 200 ") and int(headers["content-length"]) > 0
    assert fixed.endswith(b"\r\n\r\n")  # no body
    assert streamed.startswith(b"HTTP/1.1 200 ") and streamed.endswith(b"\r\n\r\n")
    assert stream.read == 0  # closed, never encoded


async def test_malformed_and_oversized_requests_get_an_error_and_a_closed_connection() -> None:
    async with running(app()) as server:
        garbage = await exchange(server.port, b"this is not http\r\n\r\n")
        huge = await exchange(server.port, get("/echo", "X-Filler: " + "x" * 4 * MAX_HEAD_BYTES))
        # The server still serves the next client.
        fine = await exchange(server.port, get("/echo", "Connection: close"))
    assert garbage.startswith(b"HTTP/1.1 400 ")
    assert huge.startswith(b"HTTP/1.1 431 ")
    assert fine.startswith(b"HTTP/1.1 200 ")


async def test_a_failing_handler_gives_500_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async with running(app()) as server:
        with caplog.at_level(logging.ERROR, logger=httpserver.__name__):
            reply = await exchange(server.port, get("/fail") + get("/echo", "Connection: close"))
    assert reply.startswith(b"HTTP/1.1 500 ")
    assert b"HTTP/1.1 200 " in reply  # the connection stays usable
    [record] = caplog.records
    assert record.exc_info is not None and "a bug in a handler" in str(record.exc_info[1])


async def test_a_streamed_body_is_chunked_then_closed() -> None:
    chunks = [b"# first\n", b"x 1\n" * 1000, b"# EOF\n"]
    stream = Streamed(chunks)
    async with running(app(stream)) as server, httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{server.port}/stream")
    assert reply.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in reply.headers
    assert reply.content == b"".join(chunks)
    assert reply.headers["content-type"] == "text/plain; version=0.0.4"
    assert stream.read == 3 and stream.closed.is_set()


async def test_a_streamed_body_to_an_http_1_0_client_ends_with_the_connection() -> None:
    stream = Streamed([b"one\n", b"two\n"])
    async with running(app(stream)) as server:
        reply = await exchange(server.port, get("/stream", version="1.0"))
    _, headers = head_of(reply)
    assert "transfer-encoding" not in headers and reply.endswith(b"\r\n\r\none\ntwo\n")


async def test_a_client_gone_mid_stream_closes_the_body() -> None:
    stream = Streamed([b"x" * 1024 * 1024] * 64)
    async with running(app(stream)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(get("/stream"))
        await reader.readexactly(64 * 1024)
        writer.transport.abort()
        await asyncio.wait_for(stream.closed.wait(), 10)
    assert 0 < stream.read < 64


async def test_a_silent_connection_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httpserver, "IDLE_SECONDS", 0.2)
    async with running(app()) as server:
        reader, _ = await asyncio.open_connection("127.0.0.1", server.port)
        async with asyncio.timeout(5):
            assert await reader.read(-1) == b""


async def test_a_request_trickled_a_byte_at_a_time_is_cut_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each byte comes well within the limit; the whole request does not."""
    monkeypatch.setattr(httpserver, "IDLE_SECONDS", 0.5)
    request = get("/echo", "X-Slow: " + "x" * 200)  # 12 s at 50 ms a byte
    async with running(app()) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        eof = asyncio.ensure_future(reader.read(-1))
        sent = 0
        while sent < len(request) and not eof.done():
            writer.write(request[sent : sent + 1])
            sent += 1
            await asyncio.sleep(0.05)
        writer.close()
    assert eof.done() and eof.result() == b""  # closed, with no reply
    assert sent < len(request) // 2


async def test_the_middleware_sees_every_request_before_routing() -> None:
    async def deny(request: Request, handler: Handler) -> Response:
        if request.headers.get("authorization") != "yes":
            raise HTTPError(401, "no\n", {"WWW-Authenticate": "Basic"})
        return await handler(request)

    application = app()
    application.middleware = deny
    async with running(application) as server:
        unknown = await exchange(server.port, get("/nope", "Connection: close"))
        allowed = await exchange(
            server.port, get("/echo", "Authorization: yes", "Connection: close")
        )
    status, headers = head_of(unknown)
    assert status.startswith("HTTP/1.1 401 ") and headers["www-authenticate"] == "Basic"
    assert allowed.startswith(b"HTTP/1.1 200 ")


async def test_closing_finishes_requests_under_way_and_drops_idle_connections() -> None:
    release = asyncio.Event()
    closed: list[str] = []

    async def slow(request: Request) -> Response:
        await release.wait()
        return Response.text("done\n")

    async def on_close() -> None:
        closed.append("on_close")

    application = App(on_close=[on_close])
    application.route("GET", "/slow", slow)
    server = Server(application)
    await server.start("127.0.0.1", 0)
    idle_reader, _ = await asyncio.open_connection("127.0.0.1", server.port)
    busy = asyncio.ensure_future(exchange(server.port, get("/slow")))
    await asyncio.sleep(0.2)
    closing = asyncio.ensure_future(server.close())
    await asyncio.sleep(0.2)
    assert not closing.done()  # waits for the request under way
    release.set()
    async with asyncio.timeout(10):
        reply = await busy
        await closing
        assert await idle_reader.read(-1) == b""
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"done\n")
    assert closed == ["on_close"]
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)


async def test_tls(local_ca: LocalCA, ca_file: Path) -> None:
    async with running(app(), local_ca.server_context()) as server:
        client_context = ssl.create_default_context(cafile=str(ca_file))
        async with httpx.AsyncClient(verify=client_context) as client:
            reply = await client.get(f"https://127.0.0.1:{server.port}/echo")
    assert reply.status_code == 200 and "GET /echo" in reply.text


async def test_a_reply_is_written_in_as_few_sends_as_its_size_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each write is a send(2) and a TCP segment: the head goes with the first chunk."""
    writes: list[int] = []
    write = asyncio.StreamWriter.write

    def counting(self: asyncio.StreamWriter, data: bytes | bytearray | memoryview) -> None:
        writes.append(len(data))
        write(self, data)

    monkeypatch.setattr(asyncio.StreamWriter, "write", counting)
    small = Streamed([b"a\n", b"b\n", b"c\n"])
    async with running(app(small)) as server:
        await exchange(server.port, get("/stream", "Connection: close"))
        assert len(writes) == 1 + 1  # the request, then the whole reply
        writes.clear()
        await exchange(server.port, get("/echo", "Connection: close"))
        assert len(writes) == 1 + 1
    big = Streamed([b"x" * httpserver.WRITE_BYTES] * 3)
    writes.clear()
    async with running(app(big)) as server:
        reply = await exchange(server.port, get("/stream", "Connection: close"))
    assert len(writes) == 1 + 3  # a chunk per write, the head with the first, the end with the last
    assert reply.partition(b"\r\n\r\n")[2].count(b"x") == 3 * httpserver.WRITE_BYTES


async def test_a_reply_that_h11_refuses_still_closes_its_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The body's close() ends the scrape's pause of the garbage collector: it must come."""
    stream = Streamed([b"never\n"])

    async def bad_header(request: Request) -> Response:
        return Response(stream, headers={"X-Bad": "line\nbreak"})

    application = App()
    application.route("GET", "/bad", bad_header)
    async with running(application) as server:
        with caplog.at_level(logging.ERROR, logger=httpserver.__name__):
            reply = await exchange(server.port, get("/bad"))
        await asyncio.wait_for(stream.closed.wait(), 5)
    assert reply == b"" and stream.read == 0
    [record] = caplog.records
    assert record.getMessage() == "connection failed"


async def test_closing_gives_up_on_a_request_that_outlives_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(httpserver, "CLOSE_GRACE_SECONDS", 0.3)
    cancelled = asyncio.Event()

    async def endless(request: Request) -> Response:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        raise AssertionError("never reached")

    application = App()
    application.route("GET", "/endless", endless)
    server = Server(application)
    await server.start("127.0.0.1", 0)
    busy = asyncio.ensure_future(exchange(server.port, get("/endless")))
    await asyncio.sleep(0.2)
    async with asyncio.timeout(5):
        await server.close()
        assert await busy == b""  # closed with no reply
    assert cancelled.is_set()


async def test_a_connection_reads_the_client_certificate_once(
    local_ca: LocalCA, ca_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading it decodes the certificate: once per connection, whatever its requests."""
    reads: list[str] = []
    get_extra_info = asyncio.StreamWriter.get_extra_info

    def counting(self: asyncio.StreamWriter, name: str, default: object = None) -> object:
        reads.append(name)
        return get_extra_info(self, name, default)

    monkeypatch.setattr(asyncio.StreamWriter, "get_extra_info", counting)
    seen: list[bool] = []

    async def certified(request: Request) -> Response:
        seen.append(request.peer_certificate)
        return Response.text("ok\n")

    application = App()
    application.route("GET", "/", certified)
    cert, key = local_ca.write_client_cert(tmp_path)
    client_context = ssl.create_default_context(cafile=str(ca_file))
    client_context.load_cert_chain(cert, key)
    async with (
        running(application, local_ca.server_context(client_auth=True)) as server,
        httpx.AsyncClient(verify=client_context) as client,
    ):
        for _ in range(3):
            assert (await client.get(f"https://127.0.0.1:{server.port}/")).status_code == 200
    assert seen == [True, True, True]
    assert reads.count("peercert") == 1


def _h11_after(request: bytes) -> h11.Connection:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(request)
    assert type(conn.next_event()) is h11.Request
    assert type(conn.next_event()) is h11.EndOfMessage
    return conn


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("keep_alive", [True, False])
@pytest.mark.parametrize(
    ("status", "headers", "chunks"),
    [
        (200, [("Content-Type", "text/plain"), ("Content-Length", "6")], [b"abc", b"def"]),
        (404, [("Date", "Fri, 04 Dec 2026 02:00:00 GMT"), ("Content-Length", "0")], []),
        (200, [("Content-Type", "application/openmetrics-text")], [b"a\n", b"", b"b" * 300]),
        (405, [("Allow", "GET, HEAD"), ("content-length", "2")], [b"no"]),
    ],
    ids=["length", "empty", "chunked", "lower-case-length"],
)
def test_a_reply_to_a_plain_request_is_written_as_h11_writes_it(
    method: str,
    keep_alive: bool,
    status: int,
    headers: list[tuple[str, str]],
    chunks: list[bytes],
) -> None:
    lines = [f"{method} / HTTP/1.1", "Host: x", *([] if keep_alive else ["Connection: close"])]
    conn = _h11_after("\r\n".join([*lines, "", ""]).encode())
    framings: list[httpserver._Framing] = [
        httpserver._H11Framing(conn),
        httpserver._PlainFraming(method == "HEAD", keep_alive),
    ]
    written = [
        framing.head(status, list(headers))
        + b"".join(framing.data(c) for c in ([] if method == "HEAD" else chunks))
        + framing.end()
        for framing in framings
    ]
    assert written[0] == written[1]


async def test_plain_requests_are_read_without_h11(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prometheus' requests, and what a browser sends, on one kept connection: h11 never
    builds a state machine for it."""
    made: list[h11.Connection] = []
    init = h11.Connection.__init__

    def counted(self: h11.Connection, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(h11.Connection, "__init__", counted)
    stream = Streamed([b"a" * 10, b"b" * 10])
    async with running(app(stream)) as server:
        reply = await exchange(
            server.port,
            get("/echo?n=1", "Accept: text/plain;version=0.0.4")
            + b"HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n"
            + get("/stream", "Connection: close"),
        )
    assert made == []
    assert reply.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert b"query n=1\n" in reply and b"accept text/plain;version=0.0.4\n" in reply
    assert reply.endswith(b"a" * 10 + b"\r\na\r\n" + b"b" * 10 + b"\r\n0\r\n\r\n")


async def test_a_request_h11_must_read_takes_the_connection_over_mid_pipeline() -> None:
    """A plain request, then one with a body in the same packet: h11 reads the second from
    the bytes already read, and answers the third, plain again, itself."""
    async with running(app()) as server:
        reply = await exchange(
            server.port,
            get("/echo?n=1")
            + b"POST /echo?n=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            + get("/echo?n=3", "Connection: close"),
        )
    assert reply.count(b"HTTP/1.1 200 ") == 3
    assert reply.index(b"query n=1") < reply.index(b"body b'hello'") < reply.index(b"query n=3")


# Bytes that make a request odd in the ways that matter: line ends, separators, control and
# high bytes, digits of a length, the words that frame a request.
MUTATION_BYTES = b"\r\n :\t\x00\x01\x7f\xff0123456789HTTP/1.0GETHEADPOSTHost:Content-Length:close"
REQUESTS = [
    get("/echo?n=1", "Accept: */*"),
    b"HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n",
    get("/stream"),
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    get("/nope", "Connection: close"),
    get("/stream", version="1.0"),
]
# One to three of them in a row, each sent at once.
IN_A_ROW = [a + b + c for a in REQUESTS for b in [b"", *REQUESTS] for c in [b"", *REQUESTS]]


async def _answered(raw: bytes) -> bytes:
    """What the server sends for ``raw``, written at once and followed by the client's end;
    its port, which the echo of a request without a host shows, as ``PORT``."""
    async with running(app(Streamed([b"a" * 10, b"b" * 10]))) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(raw)
            writer.write_eof()
            async with asyncio.timeout(10):
                reply = await reader.read(-1)
        finally:
            writer.close()
    return reply.replace(b":%d" % server.port, b":PORT")


@settings(max_examples=60, deadline=None)
@given(raw=mutated(IN_A_ROW, MUTATION_BYTES, 4, 1 << 16))
def test_reading_requests_without_h11_changes_no_byte_of_the_replies(raw: bytes) -> None:
    """Whatever the client sends, the server answers the same bytes as when h11 reads every
    request (the clock stopped, for the Date header)."""
    with mock.patch.object(time, "time", lambda: 1_800_000_000.0):
        direct = asyncio.run(_answered(raw))
        event(f"{direct.count(b'HTTP/1.1 200 ')} replies of 200")  # --hypothesis-show-statistics
        with mock.patch.object(httpserver, "plain_request", lambda head: None):
            by_h11 = asyncio.run(_answered(raw))
    assert direct == by_h11
