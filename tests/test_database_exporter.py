"""The exporter with a real MariaDB: statistics, discovery, refreshes and every failure.

Scrapes go through the real web app, probes through real TLS to simulated imaging servers.
"Probes keep their timing" is shown causally, never by a clock: a scrape completes while
the refresh that the database holds up is still running.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from medulla_imaging_exporter.config import parse_config
from medulla_imaging_exporter.model import DatabaseSnapshot
from medulla_imaging_exporter.runtime import Runtime
from medulla_imaging_exporter.simulator import ServerData
from tests.conftest import MakeServer
from tests.helpers import Samples, free_port, metric_samples, serving
from tests.mariadb import EXPORTER_PASSWORD, EXPORTER_USER, MariaDB, mariadb

PASSWORD_ENV = "MEDULLA_TEST_DB_PASSWORD"
REPLY_STATS = ServerData(stats={"total": 9, "rescue": 9, "master": 9})


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((f"medulla_imaging_{name}", frozenset(labels.items())))


def entities_of(samples: Samples) -> set[str]:
    return {dict(k[1])["entity"] for k in samples if k[0] == "medulla_imaging_entity_info"}


def has(samples: Samples, name: str) -> bool:
    return any(k[0] == f"medulla_imaging_{name}" for k in samples)


def stats_of(samples: Samples, entity: str, source: str = "database") -> tuple[float | None, ...]:
    return tuple(
        value(samples, n, entity=entity, source=source)
        for n in ("clients_registered", "clients_with_rescue_image", "masters_available")
    )


def server_rows(servers: dict[int, tuple[str, int]]) -> list[str]:
    """ImagingServer rows: entity id -> (url, associated)."""
    return [
        "INSERT INTO ImagingServer (id, name, url, packageserver_uuid, associated, fk_entity)"
        f" VALUES ({entity}, 's{entity}', '{url}', 'P{entity}', {associated}, {entity})"
        for entity, (url, associated) in servers.items()
    ]


def public_served_by(url: str) -> list[str]:
    """The entity "Public" (UUID2) with its associated imaging server at this URL."""
    return [
        "INSERT INTO Entity (id, name, uuid) VALUES (2, 'Public', 'UUID2')",
        *server_rows({2: (url, 1)}),
    ]


async def discovering_public(
    mariadb_server: MariaDB, make_server: MakeServer, db_block: DbBlock, start: Start, db: str
) -> Exporter:
    """An exporter discovering "Public" and its simulated server from database ``db``."""
    server = await make_server()
    mariadb_server.create_imaging(db, public_served_by(server.url))
    exporter = await start({"database": db_block(db), "discovery": "database"})
    assert exporter.snapshot.up
    return exporter


class Exporter:
    """A runtime over a mutable configuration document, served on 127.0.0.1."""

    def __init__(self, data: dict[str, Any], base_dir: Path) -> None:
        self.data = data
        self.runtime = Runtime(lambda: parse_config(self.data, base_dir=base_dir))
        self.base = ""
        self.client = httpx.AsyncClient(timeout=30)

    @property
    def snapshot(self) -> DatabaseSnapshot:
        assert self.runtime.database is not None
        return self.runtime.database.snapshot

    async def refresh(self) -> DatabaseSnapshot:
        assert self.runtime.database is not None
        return await self.runtime.database.refresh_now()

    async def scrape(self, path: str = "/metrics") -> Samples:
        response = await self.client.get(self.base + path)
        assert response.status_code == 200, response.text
        return metric_samples(response.text)


Start = Callable[[dict[str, Any]], Awaitable["Exporter"]]
DbBlock = Callable[..., dict[str, Any]]


@pytest.fixture
def db_block(
    mariadb_server: MariaDB, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., dict[str, Any]]:
    monkeypatch.setenv(PASSWORD_ENV, EXPORTER_PASSWORD)

    def make(name: str, **overrides: Any) -> dict[str, Any]:
        block = {
            "host": "127.0.0.1",
            "port": mariadb_server.port,
            "user": EXPORTER_USER,
            "password_env": PASSWORD_ENV,
            "name": name,
            "connect_timeout": "2s",
            "query_timeout": "1s",
            "refresh_interval": "1h",  # tests refresh on demand unless they test the interval
        }
        block.update(overrides)
        return block

    return make


@pytest.fixture
async def start(ca_file: Path, tmp_path: Path) -> AsyncIterator[Start]:
    """Start exporters; each waits for its first refresh before the test goes on."""
    started: list[tuple[Exporter, Any]] = []

    async def make(data: dict[str, Any]) -> Exporter:
        data.setdefault("defaults", {"timeout": "5s", "tls_config": {"ca_file": str(ca_file)}})
        exporter = Exporter(data, tmp_path)
        first = exporter.runtime.database.next_refresh() if exporter.runtime.database else None
        context = serving(exporter.runtime)
        exporter.base = await context.__aenter__()
        started.append((exporter, context))
        if first is not None:
            await first
        return exporter

    yield make
    for exporter, context in started:
        await exporter.client.aclose()
        await context.__aexit__(None, None, None)


# --- statistics -------------------------------------------------------------------------


async def test_statistics_come_from_the_database(
    mariadb_server: MariaDB, make_server: MakeServer, db_block: DbBlock, start: Start
) -> None:
    server = await make_server(data=REPLY_STATS)
    mariadb_server.create_imaging(
        "e2e_stats",
        [
            *public_served_by(server.url),
            "INSERT INTO Target (name, uuid, type, fk_entity) VALUES ('a', 'T1', 1, 2),"
            " ('b', 'T2', 3, 2), ('c', 'T3', 2, 2)",
            "INSERT INTO Image (id, name, uuid, is_master) VALUES (1, 'M', 'I1', 1)",
            "INSERT INTO ImageOnImagingServer VALUES (1, 2)",
        ],
    )
    exporter = await start(
        {
            "database": db_block("e2e_stats"),
            "entities": [
                {"name": "Public", "uuid": "UUID2", "url": server.url},
                {"name": "Lab", "url": server.url},  # no uuid: no statistics from the database
            ],
        }
    )
    samples = await exporter.scrape()
    assert stats_of(samples, "Public") == (2.0, 0.0, 1.0)
    assert stats_of(samples, "Public", "reply") == (None, None, None)
    assert not any(
        k[0] == "medulla_imaging_clients_registered" and dict(k[1])["entity"] == "Lab"
        for k in samples
    )
    assert value(samples, "server_up", entity="Lab") == 1.0
    assert value(samples, "database_up") == 1.0
    duration = value(samples, "database_query_duration_seconds")
    assert duration is not None and duration > 0
    probe = await exporter.scrape("/probe?entity=Public")
    assert stats_of(probe, "Public") == (2.0, 0.0, 1.0)
    assert not has(probe, "database_up")
    debug = await exporter.client.get(exporter.base + "/probe?entity=Public&debug=true")
    assert 'medulla_imaging_clients_registered{entity="Public",source="database"} 2.0' in debug.text
    # The status page shows the same figures as the metrics, not the reply's.
    page = (await exporter.client.get(exporter.base + "/?lang=en&entity=Public")).text
    assert "2 client(s) registered" in page and "1 masters available" in page
    assert "9 client(s) registered" not in page


async def test_without_database_the_reply_statistics_are_used(
    make_server: MakeServer, start: Start
) -> None:
    server = await make_server(data=REPLY_STATS)
    exporter = await start({"entities": [{"name": "Public", "uuid": "UUID2", "url": server.url}]})
    samples = await exporter.scrape()
    assert stats_of(samples, "Public", "reply") == (9.0, 9.0, 9.0)
    assert stats_of(samples, "Public") == (None, None, None)
    assert not has(samples, "database_up")
    assert not has(samples, "database_query_duration_seconds")


# --- discovery --------------------------------------------------------------------------


async def test_discovery_probes_the_database_entities(
    mariadb_server: MariaDB, make_server: MakeServer, db_block: DbBlock, start: Start
) -> None:
    public, private, unlinked = [await make_server() for _ in range(3)]
    quoted = 'Privé "d\'Aurélie"'
    mariadb_server.create_imaging(
        "e2e_discovery",
        [
            "INSERT INTO Entity (id, name, uuid) VALUES (1, 'root', 'UUID1'), (2, 'Public',"
            " 'UUID2'), (3, 'Privé \"d''Aurélie\"', 'UUID3'), (4, 'General', 'UUID4')",
            *server_rows({2: (public.url, 1), 3: (private.url, 1), 4: (unlinked.url, 0)}),
            "INSERT INTO Target (name, uuid, type, fk_entity) VALUES ('a', 'T1', 1, 3)",
        ],
    )
    exporter = await start(
        {
            "database": db_block("e2e_discovery"),
            "discovery": "database",
            "entities": [
                {"name": "Siveo Medulla", "uuid": "UUID1"},
                {"name": "Public", "timeout": "4s"},
                {"name": "Lab", "url": public.url},
            ],
        }
    )
    samples = await exporter.scrape()
    assert entities_of(samples) == {"Siveo Medulla", "Public", quoted, "General", "Lab"}
    for name, status in [
        ("Siveo Medulla", "not_linked"),
        ("Public", "available"),
        (quoted, "available"),
        ("General", "not_linked"),  # its only server row is not associated
        ("Lab", "available"),
    ]:
        assert value(samples, "server_status", entity=name, status=status) == 1.0, name
    assert stats_of(samples, quoted) == (1.0, 0.0, 0.0)
    assert stats_of(samples, "Siveo Medulla") == (0.0, 0.0, 0.0)
    assert [e.timeout for e in exporter.runtime.config.entities if e.name == "Public"] == [4.0]

    # An entity removed from the database loses its series at the next scrape after a refresh;
    # a new one appears.
    mariadb_server.execute(
        "e2e_discovery",
        "DELETE FROM ImagingServer WHERE fk_entity = 3",
        "DELETE FROM Entity WHERE id = 3",
        "INSERT INTO Entity (id, name, uuid) VALUES (5, 'Nouvelle', 'UUID5')",
    )
    await exporter.refresh()
    samples = await exporter.scrape()
    assert entities_of(samples) == {"Siveo Medulla", "Public", "General", "Lab", "Nouvelle"}
    assert not any(dict(k[1]).get("entity") == quoted for k in samples)


async def test_discovery_refreshes_on_its_interval(
    mariadb_server: MariaDB, db_block: DbBlock, start: Start
) -> None:
    mariadb_server.create_imaging(
        "e2e_interval", ["INSERT INTO Entity (id, name, uuid) VALUES (1, 'root', 'UUID1')"]
    )
    exporter = await start(
        {"database": db_block("e2e_interval", refresh_interval="100ms"), "discovery": "database"}
    )
    assert entities_of(await exporter.scrape()) == {"root"}
    mariadb_server.execute(
        "e2e_interval", "INSERT INTO Entity (id, name, uuid) VALUES (2, 'Public', 'UUID2')"
    )
    assert exporter.runtime.database is not None
    for _ in range(3):  # the refresh under way may have read before the INSERT
        await exporter.runtime.database.next_refresh()
    assert entities_of(await exporter.scrape()) == {"root", "Public"}


async def test_reload_refreshes_at_once(
    mariadb_server: MariaDB, make_server: MakeServer, db_block: DbBlock, start: Start
) -> None:
    server = await make_server(data=REPLY_STATS)
    for name in ("e2e_reload_a", "e2e_reload_b"):
        mariadb_server.create_imaging(
            name, [f"INSERT INTO Entity (id, name, uuid) VALUES (1, '{name}', 'UUID1')"]
        )
    exporter = await start({"database": db_block("e2e_reload_a"), "discovery": "database"})
    assert entities_of(await exporter.scrape()) == {"e2e_reload_a"}

    # The same database block: a reload alone reads the new entity.
    mariadb_server.execute(
        "e2e_reload_a", "INSERT INTO Entity (id, name, uuid) VALUES (2, 'Public', 'UUID2')"
    )
    assert exporter.runtime.database is not None
    refreshed = exporter.runtime.database.next_refresh()
    assert (await exporter.client.post(exporter.base + "/-/reload")).status_code == 200
    await refreshed
    assert entities_of(await exporter.scrape()) == {"e2e_reload_a", "Public"}

    # Another database.
    exporter.data["database"] = db_block("e2e_reload_b")
    refreshed = exporter.runtime.database.next_refresh()
    exporter.runtime.reload()
    await refreshed
    assert entities_of(await exporter.scrape()) == {"e2e_reload_b"}

    # No database any more: static entities, the reply's statistics, no database metrics.
    del exporter.data["database"], exporter.data["discovery"]
    exporter.data["entities"] = [{"name": "Public", "uuid": "UUID2", "url": server.url}]
    exporter.runtime.reload()
    samples = await exporter.scrape()
    assert entities_of(samples) == {"Public"}
    assert stats_of(samples, "Public", "reply") == (9.0, 9.0, 9.0)
    assert not has(samples, "database_up")


# --- failures ---------------------------------------------------------------------------


def assert_failed_but_probing(samples: Samples, probed: set[str], available: str) -> None:
    """The database is down for this scrape: no statistics at all, the probes as usual."""
    assert value(samples, "database_up") == 0.0
    assert has(samples, "database_query_duration_seconds")
    for name in ("clients_registered", "clients_with_rescue_image", "masters_available"):
        assert not has(samples, name), name
    assert entities_of(samples) == probed
    assert value(samples, "server_up", entity=available) == 1.0


async def test_wrong_password(
    mariadb_server: MariaDB,
    make_server: MakeServer,
    db_block: DbBlock,
    start: Start,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = await discovering_public(
        mariadb_server, make_server, db_block, start, "e2e_password"
    )
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    assert exporter.runtime.database is not None
    refreshed = exporter.runtime.database.next_refresh()
    exporter.runtime.reload()
    snapshot = await refreshed
    assert not snapshot.up and "Access denied" in snapshot.error
    # Discovery keeps its last good list: Public is still probed.
    assert_failed_but_probing(await exporter.scrape(), {"Public"}, "Public")


async def test_database_down_at_start_then_up_then_down_mid_run(
    make_server: MakeServer,
    db_block: DbBlock,
    start: Start,
    tmp_path: Path,
    mariadb_template: Path,
) -> None:
    server = await make_server()
    port = free_port()  # nothing listens there yet
    exporter = await start(
        {
            "database": db_block("imaging", port=port),
            "discovery": "database",
            "entities": [{"name": "Lab", "url": server.url}],
        }
    )
    # Down at start: no list discovered yet, the static entity is probed.
    assert "Can't connect" in exporter.snapshot.error
    assert_failed_but_probing(await exporter.scrape(), {"Lab"}, "Lab")

    with mariadb(tmp_path / "late", port=port, template=mariadb_template) as late:
        late.create_imaging(
            "imaging",
            public_served_by(server.url),
        )
        assert (await exporter.refresh()).up
        samples = await exporter.scrape()
        assert value(samples, "database_up") == 1.0
        assert entities_of(samples) == {"Lab", "Public"}
        assert stats_of(samples, "Public") == (0.0, 0.0, 0.0)

    # Down mid-run (mariadbd stopped): statistics vanish, the discovered list stays.
    snapshot = await exporter.refresh()
    assert not snapshot.up and "Can't connect" in snapshot.error
    assert_failed_but_probing(await exporter.scrape(), {"Lab", "Public"}, "Public")


async def test_slow_database_never_delays_a_scrape(
    mariadb_server: MariaDB, make_server: MakeServer, db_block: DbBlock, start: Start
) -> None:
    exporter = await discovering_public(mariadb_server, make_server, db_block, start, "e2e_slow")
    # Another session holds a write lock on Target: the statistics query waits for it.
    with mariadb_server.root("e2e_slow") as lock, lock.cursor() as cur:
        cur.execute("LOCK TABLES Target WRITE")
        refresh = asyncio.ensure_future(exporter.refresh())
        await _until_waiting_for_lock(mariadb_server)
        during = await exporter.scrape()
        assert not refresh.done()  # the scrape did not wait for the database
        assert value(during, "server_up", entity="Public") == 1.0
        assert stats_of(during, "Public") == (0.0, 0.0, 0.0)  # the last good refresh's
        snapshot = await refresh
        cur.execute("UNLOCK TABLES")
    assert not snapshot.up and "timed out" in snapshot.error
    assert_failed_but_probing(await exporter.scrape(), {"Public"}, "Public")
    assert (await exporter.refresh()).up  # and back once the lock is gone


async def _until_waiting_for_lock(server: MariaDB) -> None:
    """Until the exporter's query is blocked on the table lock (a state, not a delay)."""
    for _ in range(200):
        with server.root() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                " WHERE STATE LIKE 'Waiting for table %lock%'"
            )
            row = cur.fetchone()
        if row is not None and row[0]:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the exporter's query never waited for the lock")


async def test_hung_database_server(
    make_server: MakeServer,
    db_block: DbBlock,
    start: Start,
    tmp_path: Path,
    mariadb_template: Path,
) -> None:
    """A server that accepts connections and never answers: bounded by the timeouts."""
    server = await make_server()
    with mariadb(tmp_path / "hung", template=mariadb_template) as hung:
        hung.create_imaging(
            "imaging",
            public_served_by(server.url),
        )
        exporter = await start(
            {"database": db_block("imaging", port=hung.port), "discovery": "database"}
        )
        assert exporter.snapshot.up
        os.kill(hung.proc.pid, signal.SIGSTOP)
        try:
            refresh = asyncio.ensure_future(exporter.refresh())
            during = await exporter.scrape()
            assert not refresh.done()
            assert value(during, "server_up", entity="Public") == 1.0
            snapshot = await refresh
        finally:
            os.kill(hung.proc.pid, signal.SIGCONT)
    assert not snapshot.up and "timed out" in snapshot.error
    assert_failed_but_probing(await exporter.scrape(), {"Public"}, "Public")
