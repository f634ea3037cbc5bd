from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from medulla_imaging_exporter.config import Entity
from medulla_imaging_exporter.history import History
from medulla_imaging_exporter.model import EntityStatus, Reason, Status
from medulla_imaging_exporter.prober import Prober
from medulla_imaging_exporter.simulator import Behaviour
from medulla_imaging_exporter.transport import Exchange, WireEvents
from tests.conftest import MakeServer
from tests.helpers import demo_exporter
from tests.test_cli import cli

ENTITY = Entity(name="Public", url="https://127.0.0.1:1/imaging_api")


def _exchange(status_code: int | None = 200, body: bytes | None = b"<x/>") -> Exchange:
    return Exchange(
        tcp_connected=True,
        tls_pending=False,
        started_at=time.time(),
        duration_seconds=0.01,
        status_code=status_code,
        body=body,
    )


def _add(history: History, ok: bool) -> None:
    status = (
        EntityStatus("Public", Status.AVAILABLE)
        if ok
        else EntityStatus("Public", Status.OFFLINE, Reason.REFUSED, "refused")
    )
    history.add(ENTITY, status, _exchange(), WireEvents(), time.monotonic())


def test_newest_first_and_bounded() -> None:
    history = History(limit=3)
    for _ in range(5):
        _add(history, ok=True)
    assert [r.id for r in history.records()] == [5, 4, 3]
    assert history.get(1) is None
    record = history.get(4)
    assert record is not None and record.id == 4


def test_failures_are_kept_when_many_successes_follow() -> None:
    history = History(limit=3)
    _add(history, ok=False)
    _add(history, ok=False)
    for _ in range(50):
        _add(history, ok=True)
    ids = [r.id for r in history.records()]
    assert ids == [52, 51, 50, 2, 1]
    assert [r.failed for r in history.records()] == [False, False, False, True, True]


def test_failures_are_bounded_too() -> None:
    history = History(limit=2)
    for _ in range(10):
        _add(history, ok=False)
    assert [r.id for r in history.records()] == [10, 9]


def test_record_of_a_status_is_found_by_identity() -> None:
    history = History()
    status = EntityStatus("Public", Status.AVAILABLE)
    twin = EntityStatus("Public", Status.AVAILABLE)
    record = history.add(ENTITY, status, _exchange(), WireEvents(), time.monotonic())
    assert status == twin
    assert history.of_status(status) is record
    assert history.of_status(twin) is None


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        History(limit=0)


async def test_prober_records_what_happened_on_the_wire(
    make_server: MakeServer, entity_for: Callable[..., Entity]
) -> None:
    ok = await make_server()
    missing = await make_server(Behaviour.HTTP_404)
    prober = Prober()
    try:
        public = entity_for(ok)
        private = entity_for(missing, name="Private")
        first = await prober.probe(public)
        second = await prober.probe(private)
        again = await prober.probe(public)
    finally:
        await prober.aclose()
    records = prober.history.records()
    assert [r.status for r in records] == [again, second, first]
    fresh, failed, reused = records[2], records[1], records[0]
    names = [name for _, name in fresh.events]
    assert names[0] == "connection.connect_tcp.started"
    assert "connection.start_tls.complete" in names
    assert names.index("connection.start_tls.complete") < names.index(
        "http11.send_request_headers.started"
    )
    assert [at for at, _ in fresh.events] == sorted(at for at, _ in fresh.events)
    assert fresh.http_status == 200 and fresh.content_type == "text/xml"
    assert fresh.reply_bytes == len(ok.data.body())
    # The kept-alive connection is reused: no connect event the second time.
    assert not any(name.startswith("connection.") for _, name in reused.events)
    assert failed.failed and failed.http_status == 404
    assert failed.status.reason is Reason.HTTP_404


async def test_entities_without_a_server_are_not_recorded(
    entity_for: Callable[..., Entity],
) -> None:
    prober = Prober()
    status = await prober.probe(entity_for(None, name="Siveo Medulla"))
    assert status.status is Status.NOT_LINKED
    assert prober.history.records() == []


def test_history_limit_from_the_command_line(tmp_path: Path) -> None:
    with demo_exporter(tmp_path, "--history.limit", "1") as base:
        for _ in range(2):  # 2 scrapes x 3 entities with a server: probes 1 to 6
            httpx.get(f"{base}/metrics", timeout=30)
        page = httpx.get(f"{base}/", timeout=30).text
    rows = [
        (cls, int(i)) for cls, i in re.findall(r'<tr class="(ok|failed)" data-id="(\d+)"', page)
    ]
    # Kept: the newest probe, and the newest failure (the same one if the newest failed).
    assert rows[0][1] == 6
    assert len(rows) <= 2 and [cls for cls, _ in rows].count("failed") == 1


def test_history_limit_must_be_positive() -> None:
    result = cli("--demo", "--history.limit", "0")
    assert result.returncode == 2
    assert "expected a positive integer, got '0'" in result.stderr
