"""Classification from plain values: the cases real sockets on 127.0.0.1 cannot produce."""

from __future__ import annotations

import errno
import socket

import httpx
import pytest

from medulla_imaging_exporter.classify import classify
from medulla_imaging_exporter.config import Entity
from medulla_imaging_exporter.model import Reason, Status
from medulla_imaging_exporter.transport import Exchange
from tests.helpers import fixture_bytes

ENTITY = Entity("Public", url="https://user:s3cret@imaging.example.org:9990/imaging_api")


def chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


def exchange(error: BaseException | None = None, connected: bool = False, **kw: object) -> Exchange:
    return Exchange(
        tcp_connected=connected,
        tls_pending=False,
        started_at=0.0,
        duration_seconds=0.1,
        error=error,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            chained(httpx.ConnectError("x"), OSError(errno.EHOSTUNREACH, "No route to host")),
            Reason.UNREACHABLE,
        ),
        (
            chained(httpx.ConnectError("x"), OSError(errno.ENETUNREACH, "Network unreachable")),
            Reason.UNREACHABLE,
        ),
        (
            chained(httpx.ConnectError("x"), socket.gaierror(-2, "Name or service not known")),
            Reason.DNS,
        ),
        (chained(httpx.ConnectError("x"), ConnectionRefusedError(111, "refused")), Reason.REFUSED),
        (httpx.ConnectTimeout("x"), Reason.CONNECT_TIMEOUT),
    ],
)
def test_offline_reasons(error: BaseException, reason: Reason) -> None:
    status = classify(ENTITY, exchange(error))
    assert (status.status, status.reason) == (Status.OFFLINE, reason)


def test_reset_after_connect() -> None:
    status = classify(ENTITY, exchange(httpx.RemoteProtocolError("closed"), connected=True))
    assert (status.status, status.reason) == (Status.CONNECTION_ERROR, Reason.RESET)


def test_wrong_content_type_is_malformed() -> None:
    body = fixture_bytes("replies/public-procps-ng.xml")
    status = classify(ENTITY, exchange(status_code=200, content_type="text/html", body=body))
    assert status.reason is Reason.MALFORMED
    assert "text/html" in status.detail


def test_xml_content_type_with_charset() -> None:
    body = fixture_bytes("replies/public-procps-ng.xml")
    ok = classify(
        ENTITY, exchange(status_code=200, content_type="text/xml; charset=utf-8", body=body)
    )
    assert ok.status is Status.AVAILABLE


def test_details_never_carry_the_url_credentials() -> None:
    error = chained(httpx.ConnectError(f"cannot reach {ENTITY.url}"), ConnectionRefusedError())
    status = classify(ENTITY, exchange(error))
    assert "s3cret" not in status.detail
    assert "imaging.example.org:9990" in status.detail


def test_detail_gives_each_message_of_the_chain_once() -> None:
    inner = ConnectionRefusedError(111, "Connect call failed")
    error = chained(
        httpx.ConnectError("All attempts failed"),
        chained(httpx.ConnectError("All attempts failed"), inner),
    )
    status = classify(ENTITY, exchange(error))
    assert status.detail == (
        "ConnectError: All attempts failed"
        " <- ConnectionRefusedError: [Errno 111] Connect call failed"
    )
