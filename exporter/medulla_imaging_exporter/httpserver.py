"""A small HTTP/1.1 server on asyncio: plain requests read directly, any other by h11.

The exporter serves a handful of routes to Prometheus and to people: it needs keep-alive,
chunked replies, TLS and a middleware for authentication, not a framework. aiohttp did the
same for 12 MB of resident memory and 0.2 ms of CPU per request. Requests of the usual
shape (``http11.plain_request``) are read, and answered, without h11 (``_Wire``); h11,
which httpx already brings, reads every other and then keeps its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

from medulla_imaging_exporter.http11 import (
    HEAD_END,
    MAX_HEAD_BYTES,
    header_line,
    plain_request,
    read_head,
)

log = logging.getLogger(__name__)

# A request line and headers still incomplete past MAX_HEAD_BYTES get 431: read in reads of
# this size, they may reach twice as much.
READ_BYTES = MAX_HEAD_BYTES
# What a reply gathers before it is written: about one chunk of /metrics.
WRITE_BYTES = 64 * 1024
# The exporter's routes take no body; a larger one is refused rather than buffered.
MAX_BODY_BYTES = 64 * 1024
# A connection that has not sent a whole request after this long is closed: an idle
# keep-alive connection (aiohttp's and nginx's 75 s), or a request sent a byte at a time.
IDLE_SECONDS = 75.0
# How long a refused request's remaining bytes are read before the connection is closed.
LINGER_SECONDS = 1.0
# How long closing the server waits for requests under way (a scrape that probes).
CLOSE_GRACE_SECONDS = 10.0

TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    # Lower-case names; repeated headers joined with ", " as RFC 9110 allows.
    headers: Mapping[str, str]
    host: str
    peer_certificate: bool = False
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    """``body`` may be an iterable of chunks, written as it is produced (chunked encoding);
    its ``close()``, if it has one, is called once it is written or abandoned."""

    body: bytes | Iterable[bytes] = b""
    status: int = 200
    content_type: str = TEXT
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def text(
        cls, text: str, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        return cls(text.encode(), status, TEXT, headers or {})


class HTTPError(Exception):
    """Raised by a handler or a middleware: the reply is a short plain-text message."""

    def __init__(self, status: int, text: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(text)
        self.response = Response.text(text, status, headers)


Handler = Callable[[Request], Awaitable[Response]]
Middleware = Callable[[Request, Handler], Awaitable[Response]]


@dataclass
class App:
    """Routes by path and method; GET routes answer HEAD too."""

    middleware: Middleware | None = None
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    routes: dict[str, dict[str, Handler]] = field(default_factory=dict)

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes.setdefault(path, {})[method] = handler

    async def handle(self, request: Request) -> Response:
        """The middleware sees every request, unknown paths included, before routing."""
        try:
            if self.middleware is None:
                return await self._route(request)
            return await self.middleware(request, self._route)
        except HTTPError as err:
            return err.response

    async def _route(self, request: Request) -> Response:
        methods = self.routes.get(request.path)
        if methods is None:
            raise HTTPError(404, "not found\n")
        method = "GET" if request.method == "HEAD" else request.method
        if method not in methods:
            allowed = sorted({*methods, *(["HEAD"] if "GET" in methods else [])})
            raise HTTPError(405, "method not allowed\n", {"Allow": ", ".join(allowed)})
        return await methods[method](request)


class _Closed(Exception):
    """The client went away: nothing more to say to it."""


class Server:
    """One listening socket; each connection is a task reading requests one after another."""

    def __init__(self, app: App, ssl_context: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self._server: asyncio.Server | None = None
        self.port = 0
        self._idle: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()
        self._closing = False

    async def start(self, host: str | None, port: int) -> None:
        self._server = await asyncio.start_server(
            self._connection, host, port, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]  # the one chosen, if port is 0

    async def close(self) -> None:
        """Stop listening, let requests under way finish (within a grace), then close."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task in self._idle:
            task.cancel()
        if self._busy:
            _, late = await asyncio.wait(self._busy, timeout=CLOSE_GRACE_SECONDS)
            for task in late:
                task.cancel()
        tasks = self._idle | self._busy
        if tasks:
            await asyncio.wait(tasks)
        if self._server is not None:
            await self._server.wait_closed()
        for callback in self.app.on_close:
            await callback()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        wire = _Wire(reader, writer)
        peer = _peer(writer)
        self._idle.add(task)
        try:
            while not self._closing:
                try:
                    async with asyncio.timeout(IDLE_SECONDS):
                        request = await wire.read_request(peer)
                except TimeoutError:
                    break
                self._idle.discard(task)
                self._busy.add(task)
                await self._respond(wire, request)
                if not wire.next_cycle():
                    break
                self._busy.discard(task)
                self._idle.add(task)
        except h11.RemoteProtocolError as err:
            # A malformed request, or one too large, which only h11 reports: say so if a
            # reply can still be sent.
            conn = wire.h11
            if conn is not None and conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                with contextlib.suppress(_Closed, h11.LocalProtocolError):
                    await _send(wire, Response.text(f"{err}\n", err.error_status_hint))
                    await _linger(reader, writer)
        except (_Closed, ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # a streamed body that failed once its headers were sent
            log.exception("connection failed")
        finally:
            self._idle.discard(task)
            self._busy.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _respond(self, wire: _Wire, request: Request) -> None:
        started = time.monotonic()
        try:
            response = await self.app.handle(request)
        except Exception:
            log.exception("request failed", extra={"path": request.path})
            response = Response.text("internal server error\n", 500)
        await _send(wire, response, head=request.method == "HEAD")
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status,
                    "duration_seconds": round(time.monotonic() - started, 6),
                },
            )


class _Wire:
    """One connection's HTTP/1.1. A request of the usual shape (``http11.plain_request``)
    is read, and its reply written, directly; at the first request of any other shape h11
    takes the connection over, fed every byte read so far, and keeps it to its end.

    h11's state machine was more than half of the instructions of a request served
    (docs/performance.md, item 16).
    """

    __slots__ = ("_buffer", "_keep_alive", "h11", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11: h11.Connection | None = None
        self._buffer = b""  # read, and not yet a request: the start of the next one
        self._keep_alive = True

    async def read_request(self, peer: _Peer) -> Request:
        if self.h11 is None:
            request = await self._read_plain(peer)
            if request is not None:
                return request
            self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
            if self._buffer:  # never nothing: to h11, that is the client closing
                self.h11.receive_data(self._buffer)
                self._buffer = b""
        return await _read_h11_request(self.h11, self.reader, self.writer, peer)

    async def _read_plain(self, peer: _Peer) -> Request | None:
        """The next request if plain; else None, with every byte read kept for h11."""
        buffer, end = await read_head(self._buffer, lambda: self.reader.read(READ_BYTES))
        if not buffer:
            raise _Closed  # between requests: the client is done
        head = plain_request(buffer[:end]) if end >= 0 else None
        if head is None:
            self._buffer = buffer
            return None
        self._buffer = buffer[end + len(HEAD_END) :]
        self._keep_alive = head.fields.keep_alive
        return _request(head.method, head.target, head.fields.headers, peer, b"")

    def framing(self, head: bool) -> _Framing:
        """How the reply to the request just read goes on the wire."""
        if self.h11 is not None:
            return _H11Framing(self.h11)
        return _PlainFraming(head, self._keep_alive)

    def next_cycle(self) -> bool:
        """Ends the exchange; whether the connection can carry the next request."""
        conn = self.h11
        if conn is None:
            return self._keep_alive
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return False
        conn.start_next_cycle()
        return True


async def _read_h11_request(
    conn: h11.Connection,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    peer: _Peer,
) -> Request:
    head = await _next_event(conn, reader)
    if not isinstance(head, h11.Request):
        raise _Closed
    if conn.they_are_waiting_for_100_continue:
        writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
    body = bytearray()
    while not isinstance(event := await _next_event(conn, reader), h11.EndOfMessage):
        if isinstance(event, h11.ConnectionClosed):
            raise _Closed
        assert isinstance(event, h11.Data)
        body += event.data
        if len(body) > MAX_BODY_BYTES:
            raise h11.RemoteProtocolError("request body too large", 413)
    return _request(head.method, head.target, head.headers.raw_items(), peer, bytes(body))


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads what is left of a refused request, a little while, as Go's net/http does:
    closed with unread bytes, the socket would be reset before the client read the reply."""
    if writer.can_write_eof():
        writer.write_eof()
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(LINGER_SECONDS):
            while await reader.read(READ_BYTES):
                pass


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while (event := conn.next_event()) is h11.NEED_DATA:
        conn.receive_data(await reader.read(READ_BYTES))
    return event


@dataclass(frozen=True)
class _Peer:
    """What a connection's requests share, read once per connection: reading the client's
    certificate decodes it each time."""

    local: str  # the listening address, the host of a request without a Host header
    certificate: bool


def _peer(writer: asyncio.StreamWriter) -> _Peer:
    address, port = writer.get_extra_info("sockname")[:2]
    local = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    return _Peer(local, bool(writer.get_extra_info("peercert")))


def _request(
    method: bytes, target: bytes, fields: list[tuple[bytes, bytes]], peer: _Peer, body: bytes
) -> Request:
    headers: dict[str, str] = {}
    for name, value in fields:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    url = urlsplit(target.decode("latin-1"))
    return Request(
        method=method.decode("ascii"),
        path=unquote(url.path) or "/",
        query=dict(reversed(parse_qsl(url.query, keep_blank_values=True))),
        headers=headers,
        host=headers.get("host") or peer.local,
        peer_certificate=peer.certificate,
        body=body,
    )


async def _send(wire: _Wire, response: Response, head: bool = False) -> None:
    try:
        await _send_body(wire.framing(head), wire.writer, response, head)
    finally:  # written, abandoned or refused: the body's close() comes in every case
        close = getattr(response.body, "close", None)
        if close is not None:
            close()


@functools.lru_cache(maxsize=1)
def _http_date(second: int) -> str:
    """The ``Date`` header, formatted once a second rather than for every reply."""
    return email.utils.formatdate(second, usegmt=True)


@functools.lru_cache
def _reason(status: int) -> bytes:
    return HTTPStatus(status).phrase.encode()


class _Framing(Protocol):
    """The bytes of a reply's head, of each piece of its body and of its end."""

    def head(self, status: int, headers: list[tuple[str, str]]) -> bytes: ...
    def data(self, chunk: bytes) -> bytes: ...
    def end(self) -> bytes: ...


class _H11Framing:
    """A reply to a request that h11 read, by h11's state machine."""

    def __init__(self, conn: h11.Connection) -> None:
        self._conn = conn

    def head(self, status: int, headers: list[tuple[str, str]]) -> bytes:
        if self._conn.their_state is not h11.DONE:  # an error before the whole request was read
            headers.append(("Connection", "close"))
        response = h11.Response(status_code=status, headers=headers, reason=_reason(status))
        return self._conn.send(response) or b""

    def data(self, chunk: bytes) -> bytes:
        return self._conn.send(h11.Data(data=chunk)) or b""

    def end(self) -> bytes:
        return self._conn.send(h11.EndOfMessage()) or b""


class _PlainFraming:
    """A reply to a plain request, byte for byte as h11 writes it (tested): chunked unless
    it has a Content-Length, no body to a HEAD, ``Connection: close`` if the client asked."""

    def __init__(self, head_only: bool, keep_alive: bool) -> None:
        self._head_only = head_only
        self._keep_alive = keep_alive
        self._chunked = False

    def head(self, status: int, headers: list[tuple[str, str]]) -> bytes:
        lines = [b"HTTP/1.1 %d %s" % (status, _reason(status))]
        lines += [header_line(name, value) for name, value in headers]
        self._chunked = not any(name.lower() == "content-length" for name, _ in headers)
        if self._chunked:
            lines.append(b"Transfer-Encoding: chunked")
        if not self._keep_alive:
            lines.append(b"Connection: close")
        return b"\r\n".join(lines) + HEAD_END

    def data(self, chunk: bytes) -> bytes:
        if not self._chunked:
            return chunk
        return b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunk else b""

    def end(self) -> bytes:
        return b"0\r\n\r\n" if self._chunked and not self._head_only else b""


async def _send_body(
    framing: _Framing, writer: asyncio.StreamWriter, response: Response, head: bool
) -> None:
    headers = [
        ("Date", _http_date(int(time.time()))),
        ("Content-Type", response.content_type),
        *response.headers.items(),
    ]
    chunks: Iterable[bytes]
    if isinstance(response.body, bytes):
        chunks = [response.body]
        headers.append(("Content-Length", str(len(response.body))))
    else:
        chunks = response.body
    # Each write is a send(2) and a TCP segment: the head goes with the first chunk, the
    # last chunk with the end, and a small reply leaves whole.
    out = [framing.head(response.status, headers)]
    if not head:
        for chunk in chunks:
            if sum(map(len, out)) >= WRITE_BYTES:
                await _write(writer, out)
                out = []
            out.append(framing.data(chunk))
    out.append(framing.end())
    await _write(writer, out)


async def _write(writer: asyncio.StreamWriter, out: list[bytes]) -> None:
    writer.write(b"".join(out))
    try:
        await writer.drain()
    except ConnectionError:
        raise _Closed from None
