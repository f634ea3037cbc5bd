"""The XML-RPC client: one kept-alive connection per imaging server.

It only moves bytes and records what happened on the wire (did TCP connect, did
TLS start and finish, which HTTP status); deciding what that means is the job of
``classify``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import h11
import httpx

from medulla_imaging_exporter import __version__, certificate
from medulla_imaging_exporter.config import Entity, TLSConfig, ssl_context
from medulla_imaging_exporter.http11 import HEAD_END, ResponseHead, plain_response, read_head
from medulla_imaging_exporter.parsing import REQUEST_BODY

USER_AGENT = f"medulla-imaging-exporter/{__version__}"
# Twisted keeps idle HTTP channels for hours; Prometheus scrapes every 15 to 60 s.
KEEPALIVE_SECONDS = 600.0
# The largest TLS record and its overhead: what one read of the socket hands to OpenSSL.
TLS_READ_BYTES = 17 * 1024


class ReplyTooLarge(Exception):
    """The reply exceeded the configured cap; reading stopped there."""


@dataclass(slots=True, weakref_slot=True)  # weakly referenced by a test of its lifetime
class WireEvents:
    """What the transport's trace reported, updated live so a waiter can read it mid-probe."""

    # Each event's time.monotonic() and name, in order, for the debug view of the status page:
    # two lists, not a list of pairs, since a thousand probes in flight hold a dozen each.
    times: list[float] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        self.times.append(time.monotonic())
        self.names.append(name)

    def seen(self, name: str) -> bool:
        """Whether the transport reported this event during the exchange."""
        return name in self.names

    @property
    def tcp_connected(self) -> bool:
        # A reused keep-alive connection sends no connect events, only request ones.
        return self.seen("connection.connect_tcp.complete") or any(
            n.startswith("http11.") for n in self.names
        )

    @property
    def tls_pending(self) -> bool:
        return self.seen("connection.start_tls.started") and not self.seen(
            "connection.start_tls.complete"
        )


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and whatever came back, or the exception that stopped it."""

    tcp_connected: bool
    tls_pending: bool
    started_at: float
    duration_seconds: float
    status_code: int | None = None
    content_type: str | None = None
    body: bytes | None = None
    error: BaseException | None = None
    cert_not_after: float | None = None


class _NoCookies(httpx.Cookies):
    """Keeps no cookie: Twisted sets a session cookie on every reply, which httpx would
    otherwise parse each time and send back with every request, for nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _Client(httpx.AsyncClient):
    """httpx's async client without its cookie jar (see ``_NoCookies``)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        if cookies:
            raise ValueError("this client keeps no cookie")


_NO_COOKIES = _NoCookies()


class _Receiver(asyncio.Protocol):
    """Buffers what the event loop reads from one connection, for ``_Stream`` to hand out.

    Reading is paused while more than ``HIGH_WATER`` bytes wait, so a server that floods
    costs at most that much memory before the reply cap stops the exchange.
    """

    HIGH_WATER = 256 * 1024
    transport: asyncio.Transport  # set by connection_made, before any data

    def __init__(self) -> None:
        # A list, not a deque: it rarely holds more than one chunk, and an empty deque
        # weighs 760 bytes against 56, for each of a thousand idle connections.
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > self.HIGH_WATER:
            self.transport.pause_reading()
            self.paused = True
        self._wake()

    def eof_received(self) -> None:
        self.eof = True
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def take(self, max_bytes: int) -> bytes:
        data = self.chunks.pop(0)
        if len(data) > max_bytes:
            self.chunks.insert(0, data[max_bytes:])
            data = data[:max_bytes]
        self.buffered -= len(data)
        if self.paused and self.buffered <= self.HIGH_WATER // 2:
            self.transport.resume_reading()
            self.paused = False
        return data


# What one read hands to h11, as httpcore reads.
READ_BYTES = 64 * 1024


class _Stream:
    """One TCP connection, straight on the event loop's transport (no anyio, whose cancel
    scope around every read and write costs more than the read itself)."""

    def __init__(self, transport: asyncio.Transport, receiver: _Receiver) -> None:
        self._transport = transport
        self._receiver = receiver

    def write(self, data: bytes) -> None:
        if self._transport.is_closing():
            raise httpx.WriteError("the connection is closed")
        self._send(data)

    def _send(self, data: bytes) -> None:
        self._transport.write(data)

    async def read(self) -> bytes:
        """The next bytes the server sent, or ``b""`` once it has closed."""
        return await self._receive(READ_BYTES)

    async def _receive(self, max_bytes: int) -> bytes:
        receiver = self._receiver
        while not receiver.chunks:
            if receiver.error is not None:
                raise httpx.ReadError(str(receiver.error)) from receiver.error
            if receiver.eof:
                return b""
            receiver.waiter = asyncio.get_running_loop().create_future()
            try:
                await receiver.waiter
            finally:
                receiver.waiter = None
        return receiver.take(max_bytes)

    def quiet(self) -> bool:
        """Whether the server has sent nothing since the last reply: an idle connection that
        has something to read was closed by the server (or is out of step)."""
        receiver = self._receiver
        return not (receiver.chunks or receiver.eof or self._transport.is_closing())

    def close(self) -> None:
        # No TLS close_notify: HTTP/1.1 frames its replies, and a server that hangs must
        # not hold the socket open while the goodbye waits.
        self._transport.abort()

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> _TLSStream:
        tls = _TLSStream(self._transport, self._receiver, context, server_hostname)
        try:
            async with _handshake_slot():
                await tls.handshake()
        except (ssl.SSLError, httpx.ReadError) as err:
            raise httpx.ConnectError(str(err)) from err
        return tls


async def _connect_tcp(host: str, port: int) -> _Stream:
    try:
        transport, receiver = await asyncio.get_running_loop().create_connection(
            _Receiver, host, port
        )
    except OSError as err:
        raise httpx.ConnectError(str(err)) from err
    return _Stream(transport, receiver)


# At most this many TLS handshakes at once: a thousand at a time, as the first scrape of
# a thousand servers starts them, hold some 50 kB each in OpenSSL and leave the heap in
# holes. Since the CPU does one handshake at a time anyway, the queue costs no time.
HANDSHAKE_SLOTS = 32
# A handshake gives its slot up after this long even if unfinished: a server that stalls
# its handshake delays the others by this much, not by its whole timeout.
HANDSHAKE_SLOT_SECONDS = 0.2
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


@contextlib.asynccontextmanager
async def _handshake_slot() -> AsyncIterator[None]:
    """One of the event loop's ``HANDSHAKE_SLOTS``, for ``HANDSHAKE_SLOT_SECONDS`` at most."""
    loop = asyncio.get_running_loop()
    slots = _SLOTS.get(loop)
    if slots is None:
        slots = _SLOTS[loop] = asyncio.Semaphore(HANDSHAKE_SLOTS)
    await slots.acquire()
    held = True

    def release() -> None:
        nonlocal held
        if held:
            held = False
            slots.release()

    timer = loop.call_later(HANDSHAKE_SLOT_SECONDS, release)
    try:
        yield
    finally:
        timer.cancel()
        release()


class _TLSStream(_Stream):
    """TLS in memory BIOs over the TCP stream, as anyio and asyncio do it.

    Not ``loop.start_tls``: asyncio's TLS protocol zeroes a 256 KiB read buffer for every
    connection, a quarter of a gigabyte for a thousand kept-alive servers.
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        receiver: _Receiver,
        context: ssl.SSLContext,
        server_hostname: str,
    ) -> None:
        super().__init__(transport, receiver)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=server_hostname
        )

    async def handshake(self) -> None:
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send_records()
                data = await super()._receive(TLS_READ_BYTES)
                if not data:
                    raise httpx.ReadError("the server closed during the TLS handshake") from None
                self._incoming.write(data)
        self._send_records()

    def _send(self, data: bytes) -> None:
        self._ssl.write(data)
        self._send_records()

    def _send_records(self) -> None:
        if self._outgoing.pending:
            self._transport.write(self._outgoing.read())

    async def _receive(self, max_bytes: int) -> bytes:
        while True:
            try:
                data = self._ssl.read(max_bytes)
            except ssl.SSLWantReadError:
                self._send_records()  # what TLS 1.3 may answer after the handshake
            except ssl.SSLZeroReturnError:
                return b""
            except ssl.SSLError as err:
                raise httpx.ReadError(str(err)) from err
            else:
                self._release_write_buffer()
                return data
            data = await super()._receive(TLS_READ_BYTES)
            if not data:
                # Closed without close_notify; h11 decides whether the reply was whole.
                return b""
            self._incoming.write(data)

    def _release_write_buffer(self) -> None:
        """Reading TLS 1.3's session tickets makes OpenSSL take a 16 kB write buffer that it
        keeps until the next write; a write of nothing gives it back at once (16 MB for a
        thousand new connections) and sends whatever the read left to answer."""
        try:
            self._ssl.write(b"")
        except ssl.SSLError:
            return  # the connection's next read or write reports it
        self._send_records()

    @functools.cached_property
    def cert_not_after(self) -> float | None:
        """The server certificate's expiry, read once per connection, not at every request."""
        der = self._ssl.getpeercert(binary_form=True)
        return cert_not_after(der) if der else None


Trace = Callable[[str, dict[str, Any]], Awaitable[None]]


def _step(name: str) -> tuple[str, str, str]:
    return f"{name}.started", f"{name}.complete", f"{name}.failed"


# The steps of an exchange, named as httpcore reports them to httpx's ``trace`` extension.
CONNECT_TCP = _step("connection.connect_tcp")
START_TLS = _step("connection.start_tls")
SEND_REQUEST_HEADERS = _step("http11.send_request_headers")
SEND_REQUEST_BODY = _step("http11.send_request_body")
RECEIVE_RESPONSE_HEADERS = _step("http11.receive_response_headers")
RECEIVE_RESPONSE_BODY = _step("http11.receive_response_body")
RESPONSE_CLOSED = _step("http11.response_closed")


class _Traced:
    """One step reported to the request's trace: started, then complete or failed."""

    __slots__ = ("_names", "_trace")

    def __init__(self, trace: Trace, names: tuple[str, str, str]) -> None:
        self._trace = trace
        self._names = names

    async def __aenter__(self) -> None:
        await self._trace(self._names[0], {})

    async def __aexit__(self, kind: object, error: BaseException | None, _: object) -> None:
        if error is None:
            await self._trace(self._names[1], {})
        else:
            await self._trace(self._names[2], {"exception": error})


# A request as h11 sends it.
_Events = tuple[h11.Request, h11.Data, h11.EndOfMessage]


@dataclass(frozen=True, slots=True)
class _Request:
    """A request's h11 events, and the bytes they make: made once, sent at every probe."""

    events: _Events
    wire: bytes


class _Connection:
    """HTTP/1.1 over one stream: the one connection of a route.

    A reply framed by its Content-Length alone, what imaging servers send, is read
    directly (``http11``); anything else is left to h11's state machine, fed every byte
    read so far, and h11 then carries the connection to its end.
    """

    __slots__ = ("_buffer", "_h11", "_in_step", "_keep_alive", "_left", "expires_at", "stream")

    def __init__(self, stream: _Stream) -> None:
        self.stream = stream
        self._h11: h11.Connection | None = None
        # Read directly: bytes read and not yet handed out, the body's bytes still to come,
        # whether the reply keeps the connection and whether the last exchange ended in step.
        self._buffer = b""
        self._left = 0
        self._keep_alive = True
        self._in_step = True
        self.expires_at = time.monotonic() + KEEPALIVE_SECONDS

    def reusable(self) -> bool:
        state = self._h11
        in_step = (
            self._in_step
            if state is None
            else state.our_state is h11.IDLE and state.their_state is h11.IDLE
        )
        return in_step and time.monotonic() < self.expires_at and self.stream.quiet()

    async def exchange(self, request: _Request, trace: Trace) -> ResponseHead:
        """Sends the request (head and body in one write, so one TLS record that wakes the
        server once) and reads the reply's head."""
        state = self._h11
        self._in_step = False
        async with _Traced(trace, SEND_REQUEST_HEADERS):
            data = request.wire if state is None else self._send(state, request.events)
        async with _Traced(trace, SEND_REQUEST_BODY):
            self.stream.write(data)
        async with _Traced(trace, RECEIVE_RESPONSE_HEADERS):
            head = None if state is not None else await self._read_plain_head()
            if head is None:
                head = await self._read_h11_head(state or self._hand_to_h11(request.events))
        return head

    @staticmethod
    def _send(state: h11.Connection, events: _Events) -> bytes:
        try:
            return b"".join([state.send(event) or b"" for event in events])
        except h11.LocalProtocolError as err:
            raise httpx.LocalProtocolError(str(err)) from err

    async def _read_plain_head(self) -> ResponseHead | None:
        """The reply's head if plain, with the bytes after it kept for the body; else None,
        with every byte read kept for h11."""
        buffer, end = await read_head(self._buffer, self.stream.read)
        head = plain_response(buffer[:end]) if end >= 0 else None
        if head is None:
            self._buffer = buffer
            return None
        self._buffer = buffer[end + len(HEAD_END) :]
        self._left, self._keep_alive = head.length, head.keep_alive
        return head

    def _hand_to_h11(self, events: _Events) -> h11.Connection:
        """h11, brought to where this connection is: the request sent, what was read fed."""
        state = self._h11 = h11.Connection(h11.CLIENT)
        self._send(state, events)  # already on the wire
        if self._buffer:  # never nothing: to h11, that is the server closing
            state.receive_data(self._buffer)
            self._buffer = b""
        return state

    async def _read_h11_head(self, state: h11.Connection) -> ResponseHead:
        event = await self._next_event(state)
        while type(event) is h11.InformationalResponse:
            event = await self._next_event(state)
        if type(event) is not h11.Response:
            raise httpx.RemoteProtocolError(f"expected a response, got {type(event).__name__}")
        return ResponseHead(event.status_code, event.headers.raw_items())

    async def _next_event(self, state: h11.Connection) -> Any:
        while True:
            try:
                event = state.next_event()
            except h11.RemoteProtocolError as err:
                raise httpx.RemoteProtocolError(str(err)) from err
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.read()
            if not data and state.their_state is h11.SEND_RESPONSE:
                raise httpx.RemoteProtocolError("the server closed without sending a reply")
            state.receive_data(data)

    async def body(self, trace: Trace) -> AsyncIterator[bytes]:
        """The reply's body, as it arrives."""
        async with _Traced(trace, RECEIVE_RESPONSE_BODY):
            state = self._h11
            if state is not None:
                while type(event := await self._next_event(state)) is not h11.EndOfMessage:
                    if type(event) is h11.Data:
                        yield bytes(event.data)
                return
            data, self._buffer = self._buffer, b""
            while self._left:
                if not data:
                    data = await self.stream.read()
                    if not data:
                        raise httpx.RemoteProtocolError(
                            "peer closed connection without sending complete message body: "
                            f"{self._left} bytes missing"
                        )
                piece, data = data[: self._left], data[self._left :]
                self._left -= len(piece)
                yield piece
            self._buffer = data  # sent past the body: the connection is out of step

    def done(self) -> bool:
        """Ends the exchange; whether the connection can carry the next one."""
        state = self._h11
        if state is None:
            self._in_step = not self._left and not self._buffer and self._keep_alive
        elif (
            state.our_state is h11.DONE
            and state.their_state is h11.DONE
            and not state.trailing_data[0]  # bytes past the reply: out of step, as above
        ):
            state.start_next_cycle()
            self._in_step = True
        if self._in_step:
            self.expires_at = time.monotonic() + KEEPALIVE_SECONDS
        return self._in_step


class _Body(httpx.AsyncByteStream):
    """The reply's body as the connection reads it; closing it ends the exchange."""

    __slots__ = ("_connection", "_route", "_trace")

    def __init__(self, route: _Route, connection: _Connection, trace: Trace) -> None:
        self._route = route
        self._connection = connection
        self._trace = trace

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._connection.body(self._trace)

    async def aclose(self) -> None:
        async with _Traced(self._trace, RESPONSE_CLOSED):
            if not self._connection.done():
                self._route.close()


class _Route:
    """One imaging server's way out: its one kept-alive connection, replaced when closed,
    expired or left mid-exchange, and the request's bytes and h11 events, made once.

    In place of httpcore's pool, which queues requests for many connections under locks,
    twice per request: the prober never sends a server two requests at once.
    """

    __slots__ = ("_context", "_sent", "_server_name", "connection")

    def __init__(self, context: ssl.SSLContext, server_name: str | None) -> None:
        self._context = context
        self._server_name = server_name
        self._sent: tuple[httpx.Request, _Request] | None = None
        self.connection: _Connection | None = None

    def request(self, request: httpx.Request) -> _Request:
        """h11's events for the request (whose making validates every header) and their bytes,
        made once per request object: the prober sends the same one at every probe."""
        if self._sent is None or self._sent[0] is not request:
            events = (
                h11.Request(
                    method=request.method, target=request.url.raw_path, headers=request.headers.raw
                ),
                h11.Data(data=request.content),
                h11.EndOfMessage(),
            )
            wire = _Connection._send(h11.Connection(h11.CLIENT), events)
            self._sent = (request, _Request(events, wire))
        return self._sent[1]

    async def open(self, url: httpx.URL, trace: Trace) -> _Connection:
        """The kept-alive connection if still usable, else a new one."""
        connection = self.connection
        if connection is not None:
            if connection.reusable():
                return connection
            self.close()
        host = url.raw_host.decode("ascii")
        https = url.scheme == "https"
        async with _Traced(trace, CONNECT_TCP):
            stream = await _connect_tcp(host, url.port or (443 if https else 80))
        try:
            if https:
                async with _Traced(trace, START_TLS):
                    stream = await stream.start_tls(self._context, self._server_name or host)
        except BaseException:  # cancelled mid-handshake included: the socket is not left open
            stream.close()
            raise
        self.connection = _Connection(stream)
        return self.connection

    def close(self) -> None:
        if self.connection is not None:
            self.connection.stream.close()
            self.connection = None


# The request extension that names a request's ``_Route``.
_ROUTE = "medulla_imaging_exporter.route"


class _Transport(httpx.AsyncBaseTransport):
    """httpx's transport for every imaging server: HTTP/1.1 (``_Connection``) over the
    connection of the ``_Route`` that the request's extensions carry, so one httpx client
    serves every entity; each step is reported to the request's ``trace`` extension, as
    httpcore does.

    Not httpcore: its connection, its locks and its layers of streams took half of a
    request's instructions, for features (pools, HTTP/2, proxies) the prober never uses.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route: _Route = request.extensions[_ROUTE]
        trace: Trace = request.extensions["trace"]  # ImagingClient.call always sets one
        connection = await route.open(request.url, trace)
        try:
            head = await connection.exchange(route.request(request), trace)
        except BaseException:
            route.close()
            raise
        return httpx.Response(
            status_code=head.status_code,
            headers=head.headers,
            stream=_Body(route, connection, trace),
            extensions={"network_stream": connection.stream},
        )


# One client for every server: with the connections in the routes it holds none of its
# own, and one per entity weighed 2.2 kB. It is never closed; the routes are.
_CLIENT = _Client(transport=_Transport(), trust_env=False, follow_redirects=False)


_NO_TIMEOUT = httpx.Timeout(None).as_dict()
_CLOSED_STREAM = httpx.ByteStream(b"")


@functools.lru_cache(maxsize=64)
def _context(tls: TLSConfig) -> ssl.SSLContext:
    """Contexts are costly to build (CA loading) and safe to share: one per TLS setting."""
    return ssl_context(tls)


def cert_not_after(der: bytes) -> float | None:
    """Expiry of a DER certificate, read even when verification is off; None if unreadable."""
    try:
        return certificate.not_after(der)
    except certificate.CertificateError:
        return None


def snapshot(events: WireEvents, started_at: float, t0: float, **kw: Any) -> Exchange:
    return Exchange(
        tcp_connected=events.tcp_connected,
        tls_pending=events.tls_pending,
        started_at=started_at,
        duration_seconds=time.monotonic() - t0,
        **kw,
    )


class ImagingClient:
    """Talks to one imaging server over a single kept-alive connection."""

    def __init__(self, entity: Entity) -> None:
        if entity.url is None:
            raise ValueError(f"entity {entity.name!r} has no imaging server URL")
        self.url = entity.url
        self.max_reply_bytes = entity.max_reply_bytes
        # Built once: every probe sends the same request, and httpx sends a request "as-is,
        # unmodified"; only the trace in its extensions changes, set for one exchange.
        # No per-operation timeout: the deadline of ``call`` bounds the whole exchange.
        self._route = _Route(_context(entity.tls), entity.tls.server_name)
        self._request = httpx.Request(
            "POST",
            entity.url,
            headers={"Content-Type": "text/xml", "User-Agent": USER_AGENT},
            content=REQUEST_BODY,
            # With a timeout of its own: httpx's send would otherwise replace the extensions
            # by a copy with the client's, at every probe. The transport reads none of it.
            extensions={_ROUTE: self._route, "timeout": _NO_TIMEOUT},
        )

    async def call(self, timeout: float, events: WireEvents) -> Exchange:
        """POST ``imagingServerStatus``; never raises, the exception goes into the result."""
        started_at = time.time()
        t0 = time.monotonic()
        extensions = self._request.extensions
        if "trace" in extensions:  # refused before it could take the trace of the other
            error = RuntimeError("a request to this server is already under way")
            return snapshot(events, started_at, t0, error=error)
        extensions["trace"] = events
        try:
            async with asyncio.timeout(timeout):
                response = await _CLIENT.send(self._request, stream=True)
                try:
                    body = await self._read(response)
                finally:
                    await response.aclose()
                    # httpx's response and its stream refer to each other: left as they are,
                    # every probe leaves forty objects for the cyclic garbage collector.
                    response.stream = _CLOSED_STREAM
        except Exception as err:  # every failure is data for classification
            return snapshot(events, started_at, t0, error=err)
        finally:
            # Not kept until the next probe: a thousand idle entities, 2 kB of events each.
            del extensions["trace"]
        stream = response.extensions.get("network_stream")
        return snapshot(
            events,
            started_at,
            t0,
            status_code=response.status_code,
            content_type=response.headers.get("Content-Type"),
            body=body,
            cert_not_after=stream.cert_not_after if isinstance(stream, _TLSStream) else None,
        )

    async def _read(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_reply_bytes:
            raise ReplyTooLarge(f"Content-Length {declared} > {self.max_reply_bytes}")
        chunks: list[bytes] = []
        size = 0
        # Nothing to decode (the request asks for no encoding): the raw bytes, one layer fewer.
        raw = "content-encoding" not in response.headers
        async for chunk in response.aiter_raw() if raw else response.aiter_bytes():
            size += len(chunk)
            if size > self.max_reply_bytes:
                raise ReplyTooLarge(f"more than {self.max_reply_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        self._route.close()
