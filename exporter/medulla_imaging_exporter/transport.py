"""The XML-RPC client: one kept-alive connection per imaging server.

It only moves bytes and records what happened on the wire (did TCP connect, did
TLS start and finish, which HTTP status); deciding what that means is the job of
``classify``.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import http.cookiejar
import ssl
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
from cryptography import x509

from medulla_imaging_exporter import __version__
from medulla_imaging_exporter.config import Entity, TLSConfig, ssl_context
from medulla_imaging_exporter.parsing import REQUEST_BODY

USER_AGENT = f"medulla-imaging-exporter/{__version__}"
# Twisted keeps idle HTTP channels for hours; Prometheus scrapes every 15 to 60 s.
KEEPALIVE_SECONDS = 600.0


class ReplyTooLarge(Exception):
    """The reply exceeded the configured cap; reading stopped there."""


@dataclass
class WireEvents:
    """What httpcore's trace reported, updated live so a waiter can read it mid-probe."""

    names: set[str] = field(default_factory=set)
    # (time.monotonic(), name) in order, for the debug view of the status page.
    timeline: list[tuple[float, str]] = field(default_factory=list)
    tcp_stream: Any = None  # the socket this exchange opened, to close if the exchange fails

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        self.names.add(name)
        self.timeline.append((time.monotonic(), name))
        if name == "connection.connect_tcp.complete":
            self.tcp_stream = info.get("return_value")

    @property
    def tcp_connected(self) -> bool:
        # A reused keep-alive connection sends no connect events, only request ones.
        return "connection.connect_tcp.complete" in self.names or any(
            n.startswith("http11.") for n in self.names
        )

    @property
    def tls_pending(self) -> bool:
        return (
            "connection.start_tls.started" in self.names
            and "connection.start_tls.complete" not in self.names
        )


@dataclass(frozen=True)
class Exchange:
    """One request and whatever came back, or the exception that stopped it."""

    events: frozenset[str]
    tcp_connected: bool
    tls_pending: bool
    started_at: float
    duration_seconds: float
    status_code: int | None = None
    content_type: str | None = None
    body: bytes | None = None
    error: BaseException | None = None
    cert_not_after: float | None = None


class _NoCookies(http.cookiejar.CookieJar):
    """Keeps no cookie: Twisted sets a session cookie on every reply, which httpx would
    otherwise parse each time and send back with every request, for nothing."""

    def extract_cookies(
        self, response: http.client.HTTPResponse, request: urllib.request.Request
    ) -> None:
        return None


class _CoalescingStream(httpcore.AsyncNetworkStream):
    """Holds what httpcore writes until it reads, so that a request's headers and body
    leave in one TLS record and one ``send``, waking the server once instead of twice."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._pending: list[bytes] = []

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._pending.append(buffer)

    async def _flush(self, timeout: float | None) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            await self._stream.write(data, timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._flush(timeout)
        return await self._stream.read(max_bytes, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        await self._flush(timeout)
        return _CoalescingStream(
            await self._stream.start_tls(ssl_context, server_hostname, timeout)
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _CoalescingBackend(httpcore.AnyIOBackend):
    """httpcore's asyncio backend, its streams wrapped in ``_CoalescingStream``."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await super().connect_tcp(host, port, timeout, local_address, socket_options)
        return _CoalescingStream(stream)


class _Transport(httpx.AsyncHTTPTransport):
    """httpx's transport with one kept-alive connection over ``_CoalescingBackend``.

    httpx takes no network backend, so the pool it builds is replaced by an identical
    one that has ours (httpx is pinned below 0.29; ``tests/test_transport.py`` checks it).
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(verify=context)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=1,
            max_keepalive_connections=1,
            keepalive_expiry=KEEPALIVE_SECONDS,
            network_backend=_CoalescingBackend(),
        )


@functools.lru_cache(maxsize=64)
def _context(tls: TLSConfig) -> ssl.SSLContext:
    """Contexts are costly to build (CA loading) and safe to share: one per TLS setting."""
    return ssl_context(tls)


@functools.lru_cache(maxsize=4096)
def cert_not_after(der: bytes) -> float:
    """Expiry of a DER certificate, read even when verification is off."""
    return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()


def snapshot(events: WireEvents, started_at: float, t0: float, **kw: Any) -> Exchange:
    return Exchange(
        events=frozenset(events.names),
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
        self._url = httpx.URL(entity.url)  # parsed once, not at every request
        self.max_reply_bytes = entity.max_reply_bytes
        self._extensions: dict[str, Any] = {}
        if entity.tls.server_name:
            self._extensions["sni_hostname"] = entity.tls.server_name
        self._client = httpx.AsyncClient(
            transport=_Transport(_context(entity.tls)),
            headers={"Content-Type": "text/xml", "User-Agent": USER_AGENT},
            trust_env=False,
            follow_redirects=False,
            cookies=_NoCookies(),
        )

    async def call(self, timeout: float, events: WireEvents) -> Exchange:
        """POST ``imagingServerStatus``; never raises, the exception goes into the result."""
        started_at = time.time()
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                return await self._call(timeout, events, started_at, t0)
        except Exception as err:  # every failure is data for classification
            if events.tcp_stream is not None:
                # A connection cancelled while being set up (TLS handshake) is left by httpcore
                # to the garbage collector: close its socket now. Closing twice is harmless.
                await events.tcp_stream.aclose()
            return snapshot(events, started_at, t0, error=err)

    async def _call(
        self, timeout: float, events: WireEvents, started_at: float, t0: float
    ) -> Exchange:
        request = self._client.build_request(
            "POST",
            self._url,
            content=REQUEST_BODY,
            timeout=httpx.Timeout(timeout),
            extensions={**self._extensions, "trace": events},
        )
        response = await self._client.send(request, stream=True)
        try:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self.max_reply_bytes:
                raise ReplyTooLarge(f"Content-Length {declared} > {self.max_reply_bytes}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_reply_bytes:
                    raise ReplyTooLarge(f"more than {self.max_reply_bytes} bytes")
                chunks.append(chunk)
        finally:
            await response.aclose()
        stream = response.extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        return snapshot(
            events,
            started_at,
            t0,
            status_code=response.status_code,
            content_type=response.headers.get("Content-Type"),
            body=b"".join(chunks),
            cert_not_after=cert_not_after(der) if der else None,
        )

    async def aclose(self) -> None:
        await self._client.aclose()
