"""The recent probes, for the status page and its debug view.

Like blackbox_exporter's history, failures have a buffer of their own: a failure
at 3 a.m. is still there at 9 a.m. even though hundreds of successful probes
came after it.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

from medulla_imaging_exporter.config import Entity
from medulla_imaging_exporter.model import EntityStatus, Status
from medulla_imaging_exporter.transport import Exchange, WireEvents

DEFAULT_LIMIT = 100


@dataclass(frozen=True, slots=True)
class ProbeRecord:
    """One finished probe: what it found and what happened on the wire.

    ``entity`` keeps the configuration the probe ran with (its URL may hold
    credentials: render it only through ``config.redact_url``).
    """

    id: int
    entity: Entity
    status: EntityStatus
    events: tuple[tuple[float, str], ...]  # seconds since the probe started, trace event
    http_status: int | None = None
    content_type: str | None = None
    reply_bytes: int | None = None

    @property
    def failed(self) -> bool:
        return self.status.status is not Status.AVAILABLE


class History:
    """Two bounded buffers, every probe and failed probes, read as one list."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit <= 0:
            raise ValueError(f"history limit must be positive, got {limit}")
        self._all: deque[ProbeRecord] = deque(maxlen=limit)
        self._failed: deque[ProbeRecord] = deque(maxlen=limit)
        self._ids = itertools.count(1)

    def add(
        self,
        entity: Entity,
        status: EntityStatus,
        exchange: Exchange,
        events: WireEvents,
        t0: float,
    ) -> ProbeRecord:
        """Record a finished probe; ``t0`` is the ``time.monotonic()`` it started at."""
        record = ProbeRecord(
            id=next(self._ids),
            entity=entity,
            status=status,
            events=tuple(zip([t - t0 for t in events.times], events.names, strict=True)),
            http_status=exchange.status_code,
            content_type=exchange.content_type,
            reply_bytes=None if exchange.body is None else len(exchange.body),
        )
        self._all.append(record)
        if record.failed:
            self._failed.append(record)
        return record

    def records(self) -> list[ProbeRecord]:
        """Newest first, each probe once."""
        by_id = {r.id: r for r in itertools.chain(self._all, self._failed)}
        return [by_id[i] for i in sorted(by_id, reverse=True)]

    def get(self, record_id: int) -> ProbeRecord | None:
        return next(
            (r for r in itertools.chain(self._all, self._failed) if r.id == record_id), None
        )

    def of_status(self, status: EntityStatus) -> ProbeRecord | None:
        """The record of the probe that produced this very status, if it is still kept."""
        return next(
            (
                r
                for r in itertools.chain(reversed(self._all), reversed(self._failed))
                if r.status is status
            ),
            None,
        )
