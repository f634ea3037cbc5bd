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
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import h11
import httpcore
import httpx
import httpx._transports.default as httpx_transport

from medulla_imaging_exporter import __version__, certificate
from medulla_imaging_exporter.config import Entity, TLSConfig, ssl_context
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
    """What httpcore's trace reported, updated live so a waiter can read it mid-probe."""

    # Each event's time.monotonic() and name, in order, for the debug view of the status page:
    # two lists, not a list of pairs, since a thousand probes in flight hold a dozen each.
    times: list[float] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    tcp_stream: Any = None  # the socket this exchange opened, to close if the exchange fails

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        self.times.append(time.monotonic())
        self.names.append(name)
        if name == "connection.connect_tcp.complete":
            self.tcp_stream = info.get("return_value")

    def seen(self, name: str) -> bool:
        """Whether httpcore reported this event during the exchange."""
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


class _Stream(httpcore.AsyncNetworkStream):
    """httpcore's view of one TCP connection, straight on the event loop's transport.

    httpcore's own asyncio backend goes through anyio, which opens a cancel scope around
    every read and write; this costs far less CPU per request. What httpcore writes is held
    until it reads, so that a request's headers and body leave in one ``send`` (and one TLS
    record), waking the server once instead of twice.
    """

    def __init__(self, transport: asyncio.Transport, receiver: _Receiver) -> None:
        self._transport = transport
        self._receiver = receiver
        self._pending: list[bytes] = []

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._pending:
            self._send(b"".join(self._pending))
            self._pending.clear()
        return await self._receive(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._pending.append(buffer)

    def _send(self, data: bytes) -> None:
        self._transport.write(data)

    async def _receive(self, max_bytes: int, timeout: float | None) -> bytes:
        receiver = self._receiver
        while not receiver.chunks:
            if receiver.error is not None:
                raise httpcore.ReadError(str(receiver.error)) from receiver.error
            if receiver.eof:
                return b""
            receiver.waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await receiver.waiter
            except TimeoutError as err:
                raise httpcore.ReadTimeout("timed out while reading") from err
            finally:
                receiver.waiter = None
        return receiver.take(max_bytes)

    async def aclose(self) -> None:
        # No TLS close_notify: HTTP/1.1 frames its replies, and a server that hangs must
        # not hold the socket open while the goodbye waits.
        self._transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        tls = _TLSStream(self._transport, self._receiver, ssl_context, server_hostname)
        try:
            async with asyncio.timeout(timeout), _handshake_slot():
                await tls.handshake()
        except TimeoutError as err:
            raise httpcore.ConnectTimeout("timed out during the TLS handshake") from err
        except (ssl.SSLError, httpcore.ReadError) as err:
            raise httpcore.ConnectError(str(err)) from err
        return tls

    def get_extra_info(self, info: str) -> Any:
        receiver = self._receiver
        if info == "is_readable":  # httpcore asks this of idle connections: did the server close?
            return bool(receiver.chunks) or receiver.eof
        name = {"client_addr": "sockname", "server_addr": "peername"}.get(info, info)
        return self._transport.get_extra_info(name)


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
        server_hostname: str | None,
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
                data = await super()._receive(TLS_READ_BYTES, None)
                if not data:
                    raise httpcore.ReadError("the server closed during the TLS handshake") from None
                self._incoming.write(data)
        self._send_records()

    def _send(self, data: bytes) -> None:
        self._ssl.write(data)
        self._send_records()

    def _send_records(self) -> None:
        if self._outgoing.pending:
            self._transport.write(self._outgoing.read())

    async def _receive(self, max_bytes: int, timeout: float | None) -> bytes:
        while True:
            try:
                data = self._ssl.read(max_bytes)
            except ssl.SSLWantReadError:
                self._send_records()  # what TLS 1.3 may answer after the handshake
            except ssl.SSLZeroReturnError:
                return b""
            except ssl.SSLError as err:
                raise httpcore.ReadError(str(err)) from err
            else:
                self._release_write_buffer()
                return data
            data = await super()._receive(TLS_READ_BYTES, timeout)
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

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._ssl
        return super().get_extra_info(info)

    @functools.cached_property
    def cert_not_after(self) -> float | None:
        """The server certificate's expiry, read once per connection, not at every request."""
        der = self._ssl.getpeercert(binary_form=True)
        return cert_not_after(der) if der else None


class _Backend(httpcore.AsyncNetworkBackend):
    """Connections for httpcore on the running event loop's own transports."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, receiver = await loop.create_connection(
                    _Receiver,
                    host,
                    port,
                    local_addr=(local_address, 0) if local_address else None,
                )
        except TimeoutError as err:
            raise httpcore.ConnectTimeout("timed out while connecting") from err
        except OSError as err:
            raise httpcore.ConnectError(str(err)) from err
        for option in socket_options or ():
            transport.get_extra_info("socket").setsockopt(*option)
        return _Stream(transport, receiver)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_BACKEND = _Backend()


class _FreeLock:
    """httpcore's per-connection lock, for a connection never given two requests at once.

    anyio's lock yields to the event loop at every acquisition, three times per request;
    this one never waits, and says so if that promise is ever broken.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = False

    async def __aenter__(self) -> None:
        if self._held:
            raise RuntimeError("a request to this server is already under way")
        self._held = True

    async def __aexit__(self, *exc_info: object) -> None:
        self._held = False


class _HTTP11(httpcore.AsyncHTTP11Connection):
    """HTTP/1.1 over one connection, with ``_FreeLock`` (see there)."""

    def __init__(self, origin: httpcore.Origin, stream: httpcore.AsyncNetworkStream) -> None:
        super().__init__(origin=origin, stream=stream, keepalive_expiry=KEEPALIVE_SECONDS)
        self._state_lock = _FreeLock()  # type: ignore[assignment]
        self._head: tuple[httpcore.Request, h11.Request] | None = None

    async def _send_request_headers(self, request: httpcore.Request) -> None:
        """httpcore's, except that h11's request event (whose making validates every header)
        is made once per request object: the prober sends the same one at every probe."""
        if self._head is None or self._head[0] is not request:
            event = h11.Request(
                method=request.method, target=request.url.target, headers=request.headers
            )
            self._head = (request, event)
        timeout = request.extensions.get("timeout", {}).get("write")
        await self._send_event(self._head[1], timeout=timeout)


class _Connection(httpcore.AsyncHTTPConnection):
    """httpcore's connection, with its TCP and TLS steps and their trace events, always
    HTTP/1.1 (the context offers no ALPN) and with ``_FreeLock``."""

    def __init__(self, origin: httpcore.Origin, context: ssl.SSLContext) -> None:
        super().__init__(
            origin=origin,
            ssl_context=context,
            keepalive_expiry=KEEPALIVE_SECONDS,
            network_backend=_BACKEND,
        )

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        if self._connection is None:
            try:
                stream = await self._connect(request)
            except BaseException:
                self._connect_failed = True
                raise
            self._connection = _HTTP11(self._origin, stream)
        return await self._connection.handle_async_request(request)


class _Route:
    """One imaging server's way out: its one kept-alive ``_Connection``, replaced when closed
    or expired, and httpcore's copy of the request the prober sends it at every probe.

    In place of httpcore's pool, which queues requests for many connections under locks,
    twice per request: the prober never sends a server two requests at once.
    """

    __slots__ = ("_context", "_sent", "connection")

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self._sent: tuple[httpx.Request, httpcore.Request] | None = None
        self.connection: _Connection | None = None

    def core_request(self, request: httpx.Request) -> httpcore.Request:
        """httpx's request as httpcore takes it, made once per request object (the same at
        every probe, with a new trace in its extensions)."""
        if self._sent is None or self._sent[0] is not request:
            url = request.url
            target = httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            )
            core = httpcore.Request(
                request.method, target, headers=request.headers.raw, content=request.stream
            )
            self._sent = (request, core)
        core = self._sent[1]
        core.extensions = request.extensions
        return core

    async def open_connection(self, origin: httpcore.Origin) -> _Connection:
        """The kept-alive connection if still usable, else a new one (not yet connected)."""
        connection = self.connection
        if connection is not None and (connection.is_closed() or connection.has_expired()):
            await connection.aclose()
            connection = None
        if connection is None:
            connection = self.connection = _Connection(origin, self._context)
        elif not connection.is_available():
            raise RuntimeError("a request to this server is already under way")
        return connection

    async def aclose(self) -> None:
        if self.connection is not None:
            await self.connection.aclose()
            self.connection = None


# The request extension that names a request's ``_Route``.
_ROUTE = "medulla_imaging_exporter.route"


class _Transport(httpx.AsyncBaseTransport):
    """httpx's transport for every imaging server: a request goes over the connection of the
    ``_Route`` that its extensions carry, so one httpx client serves every entity."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route: _Route = request.extensions[_ROUTE]
        core = route.core_request(request)
        try:
            connection = await route.open_connection(core.url.origin)
            response = await connection.handle_async_request(core)
        except Exception:
            # httpx's mapping of httpcore's exceptions, entered only when one was raised.
            with httpx_transport.map_httpcore_exceptions():
                raise
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=httpx_transport.AsyncResponseStream(cast(AsyncIterable[bytes], response.stream)),
            extensions=response.extensions,
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
        self._request = httpx.Request(
            "POST",
            entity.url,
            headers={"Content-Type": "text/xml", "User-Agent": USER_AGENT},
            content=REQUEST_BODY,
            extensions={"timeout": _NO_TIMEOUT},
        )
        if entity.tls.server_name:
            self._request.extensions["sni_hostname"] = entity.tls.server_name
        self._route = _Route(_context(entity.tls))
        self._request.extensions[_ROUTE] = self._route

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
            if events.tcp_stream is not None:
                # A connection cancelled while being set up (TLS handshake) is left by httpcore
                # to the garbage collector: close its socket now. Closing twice is harmless.
                await events.tcp_stream.aclose()
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
        await self._route.aclose()
