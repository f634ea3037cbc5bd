"""From what happened on the wire to one of the page's statuses and a reason.

Offline versus connection error hinges on one fact: did TCP connect. httpx calls
a stalled TLS handshake a connect timeout, so the trace events decide instead.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import httpx

from medulla_imaging_exporter.config import Entity, redact_url
from medulla_imaging_exporter.model import EntityStatus, Reason, Reply, Status
from medulla_imaging_exporter.parsing import FaultReply, ParseError, parse_body
from medulla_imaging_exporter.transport import Exchange, ReplyTooLarge

_HTTP_REASONS = {404: Reason.HTTP_404, 500: Reason.HTTP_500}


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def failure_reason(exchange: Exchange, https: bool) -> Reason:
    """The reason for an exchange that ended in an exception."""
    err = exchange.error
    assert err is not None
    causes = list(_chain(err))
    if any(isinstance(c, ReplyTooLarge) for c in causes):
        return Reason.TOO_LARGE
    # A timeout first: cancelling a TLS read may chain an SSLError that means nothing.
    if isinstance(err, TimeoutError | httpx.TimeoutException):
        if not exchange.tcp_connected:
            return Reason.CONNECT_TIMEOUT
        if https and exchange.tls_pending:
            return Reason.TLS_TIMEOUT
        return Reason.TIMEOUT
    if any(isinstance(c, ssl.SSLCertVerificationError) for c in causes):
        return Reason.TLS_VERIFY
    if any(isinstance(c, ssl.SSLError) for c in causes) and exchange.tcp_connected:
        return Reason.TLS
    if not exchange.tcp_connected:
        for cause in causes:
            if isinstance(cause, socket.gaierror):
                return Reason.DNS
            if isinstance(cause, ConnectionRefusedError):
                return Reason.REFUSED
        return Reason.UNREACHABLE
    if exchange.tls_pending:
        return Reason.TLS
    return Reason.RESET


def _describe(err: BaseException, url: str) -> str:
    """The exception chain, each message once: httpx and httpcore re-raise with the same text."""
    parts: list[str] = []
    seen: set[str] = set()
    for cause in _chain(err):
        message = str(cause)
        if message in seen:
            continue
        seen.add(message)
        parts.append(f"{type(cause).__name__}: {message}" if message else type(cause).__name__)
    return " <- ".join(parts).replace(url, redact_url(url))[:300]


class _Failure(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def _reply(exchange: Exchange, url: str) -> Reply:
    if exchange.error is not None:
        reason = failure_reason(exchange, url.startswith("https:"))
        raise _Failure(reason, _describe(exchange.error, url))
    if exchange.status_code != 200:
        reason = _HTTP_REASONS.get(exchange.status_code or 0, Reason.HTTP_STATUS)
        raise _Failure(reason, f"HTTP status {exchange.status_code}")
    content_type = (exchange.content_type or "").split(";")[0].strip().lower()
    if not content_type.endswith("xml"):
        raise _Failure(Reason.MALFORMED, f"Content-Type {content_type or 'missing'!r} is not XML")
    try:
        return parse_body(exchange.body or b"")
    except FaultReply as err:
        raise _Failure(Reason.FAULT, str(err)) from None
    except ParseError as err:
        raise _Failure(Reason.MALFORMED, str(err)) from None


def classify(
    entity: Entity, exchange: Exchange | None, timeout_seconds: float | None = None
) -> EntityStatus:
    """One immutable status for the entity; ``None`` means it has no imaging server.

    ``timeout_seconds`` is the deadline the probe ran under, for its metric.
    """
    if exchange is None or entity.url is None:
        return EntityStatus(entity=entity.name, status=Status.NOT_LINKED)
    status, reason, detail, reply = Status.AVAILABLE, None, "", None
    try:
        reply = _reply(exchange, entity.url)
    except _Failure as failure:
        status, reason, detail = failure.reason.status, failure.reason, failure.detail
    return EntityStatus(
        entity=entity.name,
        status=status,
        reason=reason,
        detail=detail,
        started_at=exchange.started_at,
        duration_seconds=exchange.duration_seconds,
        reply=reply,
        cert_not_after=exchange.cert_not_after,
        timeout_seconds=timeout_seconds,
    )
