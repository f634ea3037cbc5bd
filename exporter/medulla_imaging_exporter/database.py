"""Medulla's imaging database: entity statistics and entities, refreshed in the background.

A refresh opens one read-only connection, runs a constant number of queries whatever the
number of entities (statistics of every entity at once, grouped by entity), and closes it.
It runs in a background task on an interval and on reload, never inside a scrape: scrapes
read the last snapshot, so a slow or dead database can never delay the server probes.

Driver: PyMySQL. It is pure Python (nothing to compile), maintained by the PyMySQL
organisation and the base that aiomysql itself wraps, and it has connect, read and write
timeouts, unix sockets and TLS from an ``ssl.SSLContext``. A few queries a minute do not
need an async driver: the blocking calls run in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import pymysql

from medulla_imaging_exporter.config import DatabaseConfig, ssl_context
from medulla_imaging_exporter.model import DatabaseSnapshot, DiscoveredEntity, Stats

log = logging.getLogger(__name__)

# The page's rule: a server is linked to an entity by a row with associated = 1.
ENTITIES_QUERY = """
SELECT e.id, e.name, e.uuid,
       (SELECT s.url FROM ImagingServer s
         WHERE s.fk_entity = e.id AND s.associated = 1
         ORDER BY s.id LIMIT 1) AS url
FROM Entity e
ORDER BY e.id
"""

# Medulla's "total" and "rescue": targets of type 1 (computer) and 3 (computer in a profile),
# counted only for an entity with an ImagingServer row of its own, associated or not; rescue
# counts the targets with an image reached through ImagingLog and MasteredOn whose is_master
# is not true (0 or NULL, as Medulla's "not image.is_master"). Grouped by entity id, an
# integer, rather than by the TEXT uuid: no temporary table on disk.
CLIENTS_QUERY = """
SELECT t.fk_entity, COUNT(*) AS total,
       SUM(EXISTS (SELECT 1 FROM ImagingLog l
                   JOIN MasteredOn m ON m.fk_imaging_log = l.id
                   JOIN Image i ON i.id = m.fk_image
                   WHERE l.fk_target = t.id AND NOT COALESCE(i.is_master, 0))) AS rescue
FROM Target t
WHERE t.type IN (1, 3)
  AND EXISTS (SELECT 1 FROM ImagingServer s WHERE s.fk_entity = t.fk_entity)
GROUP BY t.fk_entity
"""

# Medulla's "master": one per (master image, server row of the entity), so a master present
# on two servers of the entity counts twice; unlinked servers sit on the root entity.
MASTERS_QUERY = """
SELECT s.fk_entity, COUNT(*) AS master
FROM ImagingServer s
JOIN ImageOnImagingServer o ON o.fk_imaging_server = s.id
JOIN Image i ON i.id = o.fk_image
WHERE i.is_master = 1
GROUP BY s.fk_entity
"""


@dataclass(frozen=True)
class ImagingData:
    """What one refresh read: the entities and the statistics of each, by uuid."""

    entities: tuple[DiscoveredEntity, ...]
    stats: dict[str, Stats]


def connect(db: DatabaseConfig) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    """A connection bounded by the configured timeouts on every socket operation."""
    return pymysql.connect(
        host=db.host or "localhost",
        port=db.port,
        unix_socket=db.unix_socket,
        user=db.user,
        password=db.password or "",
        database=db.name,
        charset="utf8mb4",
        connect_timeout=db.connect_timeout,
        read_timeout=db.query_timeout,
        write_timeout=db.query_timeout,
        ssl=ssl_context(db.tls) if db.tls is not None else None,
    )


def read_imaging(db: DatabaseConfig) -> ImagingData:
    """Read entities and statistics in one consistent read-only transaction (blocking)."""
    with connect(db) as conn, conn.cursor() as cur:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        cur.execute(ENTITIES_QUERY)
        rows = cur.fetchall()
        cur.execute(CLIENTS_QUERY)
        clients = {entity_id: (total, rescue) for entity_id, total, rescue in cur.fetchall()}
        cur.execute(MASTERS_QUERY)
        masters = dict(cur.fetchall())
        conn.rollback()
    # Medulla selects an entity by uuid: rows sharing a uuid add up, as in its joins.
    counts: dict[str, list[int]] = {}
    for entity_id, _, uuid, _ in rows:
        total, rescue = clients.get(entity_id, (0, 0))
        sums = counts.setdefault(uuid, [0, 0, 0])
        sums[0] += int(total)
        sums[1] += int(rescue)
        sums[2] += int(masters.get(entity_id, 0))
    return ImagingData(
        entities=tuple(DiscoveredEntity(name, uuid, url) for _, name, uuid, url in rows),
        stats={uuid: Stats(*sums) for uuid, sums in counts.items()},
    )


class DatabaseRefresher:
    """Refreshes the snapshot on an interval and on demand, one refresh at a time."""

    def __init__(
        self, db: DatabaseConfig, on_refresh: Callable[[DatabaseSnapshot], None] | None = None
    ) -> None:
        self.db = db
        self.snapshot = DatabaseSnapshot()
        self._on_refresh = on_refresh
        self._wake = asyncio.Event()
        self._waiters: list[asyncio.Future[DatabaseSnapshot]] = []
        self._task = asyncio.get_running_loop().create_task(self._run(), name="database refresh")

    def configure(self, db: DatabaseConfig) -> None:
        """New settings (a reload): refresh with them at once."""
        self.db = db
        self._wake.set()

    def next_refresh(self) -> asyncio.Future[DatabaseSnapshot]:
        """The snapshot of the next refresh that starts from now on."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        return future

    async def refresh_now(self) -> DatabaseSnapshot:
        """Start a refresh (after the one under way, if any) and wait for its snapshot."""
        future = self.next_refresh()
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            waiters, self._waiters = self._waiters, []
            self.snapshot = await self._refresh(self.db)
            if self._on_refresh is not None:
                self._on_refresh(self.snapshot)
            for future in waiters:
                if not future.done():
                    future.set_result(self.snapshot)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.db.refresh_interval):
                    await self._wake.wait()

    async def _refresh(self, db: DatabaseConfig) -> DatabaseSnapshot:
        t0 = time.monotonic()
        try:
            data = await asyncio.to_thread(read_imaging, db)
        except Exception as err:  # any failure must leave the exporter serving the last list
            duration = time.monotonic() - t0
            log.warning(
                "imaging database refresh failed",
                extra={"err": str(err), "duration_seconds": round(duration, 3)},
            )
            return DatabaseSnapshot(
                up=False, duration_seconds=duration, entities=self.snapshot.entities, error=str(err)
            )
        duration = time.monotonic() - t0
        if not self.snapshot.up:
            log.info(
                "imaging database refreshed",
                extra={"entities": len(data.entities), "duration_seconds": round(duration, 3)},
            )
        return DatabaseSnapshot(
            up=True, duration_seconds=duration, stats=data.stats, entities=data.entities
        )

    def close(self) -> None:
        self._task.cancel()

    async def aclose(self) -> None:
        self.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
