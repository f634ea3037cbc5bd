"""A small HTTP/1.1 server on asyncio and h11 (which httpx already brings).

The exporter serves a handful of routes to Prometheus and to people: it needs keep-alive,
chunked replies, TLS and a middleware for authentication, not a framework. aiohttp did the
same for 12 MB of resident memory and 0.2 ms of CPU per request.
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
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

log = logging.getLogger(__name__)

# h11's own default. A request line and headers still incomplete past this get 431: read in
# reads of this size, they may reach twice as much.
MAX_HEADER_BYTES = 16 * 1024
READ_BYTES = MAX_HEADER_BYTES
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
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        peer = _peer(writer)
        self._idle.add(task)
        try:
            while not self._closing:
                try:
                    async with asyncio.timeout(IDLE_SECONDS):
                        request = await self._read_request(conn, reader, writer, peer)
                except TimeoutError:
                    break
                self._idle.discard(task)
                self._busy.add(task)
                await self._respond(conn, writer, request)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    break
                conn.start_next_cycle()
                self._busy.discard(task)
                self._idle.add(task)
        except h11.RemoteProtocolError as err:
            # A malformed request, or one too large: say so if a reply can still be sent.
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                with contextlib.suppress(_Closed, h11.LocalProtocolError):
                    await _send(conn, writer, Response.text(f"{err}\n", err.error_status_hint))
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

    async def _read_request(
        self,
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
        return _request(head, peer, bytes(body))

    async def _respond(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, request: Request
    ) -> None:
        started = time.monotonic()
        try:
            response = await self.app.handle(request)
        except Exception:
            log.exception("request failed", extra={"path": request.path})
            response = Response.text("internal server error\n", 500)
        await _send(conn, writer, response, head=request.method == "HEAD")
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


def _request(head: h11.Request, peer: _Peer, body: bytes) -> Request:
    headers: dict[str, str] = {}
    for name, value in head.headers:
        key, text = name.decode("latin-1"), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    target = urlsplit(head.target.decode("latin-1"))
    return Request(
        method=head.method.decode("ascii"),
        path=unquote(target.path) or "/",
        query=dict(reversed(parse_qsl(target.query, keep_blank_values=True))),
        headers=headers,
        host=headers.get("host") or peer.local,
        peer_certificate=peer.certificate,
        body=body,
    )


async def _send(
    conn: h11.Connection, writer: asyncio.StreamWriter, response: Response, head: bool = False
) -> None:
    try:
        await _send_body(conn, writer, response, head)
    finally:  # written, abandoned or refused by h11: the body's close() comes in every case
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


async def _send_body(
    conn: h11.Connection, writer: asyncio.StreamWriter, response: Response, head: bool
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
    if conn.their_state is not h11.DONE:  # an error before the whole request was read
        headers.append(("Connection", "close"))
    # Each write is a send(2) and a TCP segment: the head goes with the first chunk, the
    # last chunk with the end, and a small reply leaves whole.
    status = response.status
    out = [conn.send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))]
    if not head:
        for chunk in chunks:
            if sum(map(len, out)) >= WRITE_BYTES:
                await _write(writer, out)
                out = []
            out.append(conn.send(h11.Data(data=chunk)))
    out.append(conn.send(h11.EndOfMessage()))
    await _write(writer, out)


async def _write(writer: asyncio.StreamWriter, out: list[bytes]) -> None:
    writer.write(b"".join(out))
    try:
        await writer.drain()
    except ConnectionError:
        raise _Closed from None
