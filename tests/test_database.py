"""The queries of database.py against a real MariaDB, on data sets built for Medulla's oddities."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pymysql
import pytest

from medulla_imaging_exporter.config import DatabaseConfig, TLSConfig
from medulla_imaging_exporter.database import connect, read_imaging
from medulla_imaging_exporter.model import DiscoveredEntity, Stats
from tests.mariadb import EXPORTER_PASSWORD, EXPORTER_USER, MariaDB

PUBLIC_URL = "https://imaging-public.example.org:9990/imaging_api"
QUOTED = 'Privé "d\'Aurélie" & Cie'

# Entities: the root (UUID1) holding a registered but never linked server; "Public" with two
# servers (the first not associated), a master on both; an entity whose only server is not
# associated, with accents and both quotes in its name; "General" without any server and a
# uuid that is not its id; "Broken" whose associated server has an unusable URL.
ROWS = [
    "INSERT INTO Entity (id, name, uuid) VALUES (1, 'root', 'UUID1'), (2, 'Public', 'UUID2'),"
    f" (3, {pymysql.converters.escape_item(QUOTED, 'utf8mb4')}, 'UUID3'),"
    " (4, 'General', 'UUID7'), (5, 'Broken', 'UUID8')",
    "INSERT INTO ImagingServer (id, name, url, packageserver_uuid, associated, fk_entity) VALUES"
    " (1, 'new', 'https://10.0.0.9:9990/imaging_api', 'P9', 0, 1),"
    " (2, 'public-old', 'https://10.0.0.2:9990/imaging_api', 'P2', 0, 2),"
    f" (3, 'public', '{PUBLIC_URL}', 'P3', 1, 2),"
    " (4, 'private', 'https://10.0.0.5:9990/imaging_api', 'P5', 0, 3),"
    " (5, 'broken', 'ftp://10.0.0.6/', 'P6', 1, 5)",
    # Targets of Public: every type; 11 and 13 are counted (1 and 3), 12, 14, 15 are not.
    "INSERT INTO Target (id, name, uuid, type, fk_entity) VALUES"
    " (10, 'root-pc', 'T10', 1, 1),"
    " (11, 'pc-1', 'T11', 1, 2), (12, 'profile', 'T12', 2, 2), (13, 'pc-1', 'T13', 3, 2),"
    " (14, 'all', 'T14', 4, 2), (15, 'gone', 'T15', 5, 2), (16, 'pc-2', 'T16', 1, 2),"
    " (17, 'pc-3', 'T17', 1, 2),"
    " (30, 'priv-1', 'T30', 1, 3), (31, 'priv-2', 'T31', 3, 3),"
    " (40, 'gen-1', 'T40', 1, 4), (41, 'gen-2', 'T41', 1, 4)",
    # Images: 1, 2 masters; 3 a rescue image (is_master 0), 4 one with is_master NULL,
    # 5 a master that a target also "mastered" (not a rescue image).
    "INSERT INTO Image (id, name, uuid, is_master) VALUES (1, 'M1', 'I1', 1), (2, 'M2', 'I2', 1),"
    " (3, 'R3', 'I3', 0), (4, 'R4', 'I4', NULL), (5, 'M5', 'I5', 1)",
    "INSERT INTO ImageOnImagingServer (fk_image, fk_imaging_server) VALUES"
    " (1, 2), (1, 3), (2, 3), (3, 3), (4, 3), (5, 1), (2, 4)",
    # Logs: pc-1 (11) twice with rescue images, 13 with the NULL one, 16 only with a master,
    # 17 with a log but no image, the deleted 15 and the server-less 40 with rescue images.
    "INSERT INTO ImagingLog (id, fk_target) VALUES"
    " (1, 11), (2, 11), (3, 13), (4, 16), (5, 17), (6, 15), (7, 40), (8, 30)",
    "INSERT INTO MasteredOn (fk_image, fk_imaging_log) VALUES"
    " (3, 1), (4, 2), (4, 3), (5, 4), (3, 6), (3, 7), (3, 8)",
]

EXPECTED_STATS = {
    # root: its own (unlinked) server row counts its target, and the master M5 on it.
    "UUID1": Stats(clients_registered=1, clients_with_rescue_image=0, masters_available=1),
    # Public: 11, 13, 16, 17 of types 1 and 3; rescue 11 (twice, counted once) and 13 (NULL);
    # masters M1 on both servers (twice) and M2.
    "UUID2": Stats(clients_registered=4, clients_with_rescue_image=2, masters_available=3),
    # a server row that is not associated still counts (Medulla does not check associated).
    "UUID3": Stats(clients_registered=2, clients_with_rescue_image=1, masters_available=1),
    # no server row of its own: 0 clients even with targets and rescue images.
    "UUID7": Stats(clients_registered=0, clients_with_rescue_image=0, masters_available=0),
    "UUID8": Stats(clients_registered=0, clients_with_rescue_image=0, masters_available=0),
}

EXPECTED_ENTITIES = (
    DiscoveredEntity("root", "UUID1", None),
    DiscoveredEntity("Public", "UUID2", PUBLIC_URL),
    DiscoveredEntity(QUOTED, "UUID3", None),
    DiscoveredEntity("General", "UUID7", None),
    DiscoveredEntity("Broken", "UUID8", "ftp://10.0.0.6/"),
)


@pytest.fixture(scope="module")
def imaging(mariadb_server: MariaDB) -> Iterator[DatabaseConfig]:
    mariadb_server.create_imaging("imaging_semantics", ROWS)
    yield DatabaseConfig(
        user=EXPORTER_USER,
        password=EXPORTER_PASSWORD,
        host="127.0.0.1",
        port=mariadb_server.port,
        name="imaging_semantics",
    )


def test_statistics_have_medullas_semantics(imaging: DatabaseConfig) -> None:
    assert read_imaging(imaging).stats == EXPECTED_STATS


def test_discovery_follows_the_associated_row(imaging: DatabaseConfig) -> None:
    # The raw list: URL checks and merging with static entries are discovery.py's job.
    assert read_imaging(imaging).entities == EXPECTED_ENTITIES


def _selects(server: MariaDB) -> int:
    with server.root() as conn, conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Com_select'")
        row = cur.fetchone()
    assert row is not None
    return int(row[1])


def test_constant_number_of_queries(mariadb_server: MariaDB, imaging: DatabaseConfig) -> None:
    """As many SELECTs for 5 entities as for 205: never one query per entity."""
    before = _selects(mariadb_server)
    read_imaging(imaging)
    small = _selects(mariadb_server) - before

    many = [
        "INSERT INTO Entity (id, name, uuid) SELECT seq, CONCAT('E', seq), CONCAT('UUID', seq)"
        " FROM seq_100_to_299",
        "INSERT INTO ImagingServer (name, url, packageserver_uuid, associated, fk_entity)"
        " SELECT CONCAT('s', seq), CONCAT('https://10.1.0.1:9990/e', seq), 'P', 1, seq"
        " FROM seq_100_to_299",
        "INSERT INTO Target (name, uuid, type, fk_entity) SELECT 'pc', 'T', 1, seq"
        " FROM seq_100_to_299",
    ]
    mariadb_server.create_imaging("imaging_many", ROWS + many)
    before = _selects(mariadb_server)
    data = read_imaging(
        DatabaseConfig(
            user=EXPORTER_USER,
            password=EXPORTER_PASSWORD,
            unix_socket=str(mariadb_server.socket),
            name="imaging_many",
        )
    )
    large = _selects(mariadb_server) - before
    assert len(data.stats) == 205
    assert data.stats["UUID150"] == Stats(1, 0, 0)
    assert small == large == 3


def test_tls_to_the_database(mariadb_server: MariaDB, imaging: DatabaseConfig) -> None:
    """A user that requires TLS, served over TLS verified against the database's CA."""
    assert mariadb_server.ca_file is not None
    mariadb_server.execute(
        None,
        "CREATE USER IF NOT EXISTS 'exporter_tls'@'127.0.0.1' IDENTIFIED BY 'tls' REQUIRE SSL",
        "GRANT SELECT ON imaging_semantics.* TO 'exporter_tls'@'127.0.0.1'",
    )
    tls = replace(
        imaging, user="exporter_tls", password="tls", tls=TLSConfig(ca_file=mariadb_server.ca_file)
    )
    with connect(tls) as conn, conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
        row = cur.fetchone()
    assert row is not None and row[1].startswith("TLS")
    assert read_imaging(tls).stats == EXPECTED_STATS


def test_tls_verifies_the_database_certificate(
    mariadb_server: MariaDB, imaging: DatabaseConfig, ca_file: Path
) -> None:
    """The CA of the simulated imaging servers did not sign the database's certificate."""
    untrusted = replace(imaging, tls=TLSConfig(ca_file=ca_file))
    with pytest.raises(pymysql.err.OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
        read_imaging(untrusted)
