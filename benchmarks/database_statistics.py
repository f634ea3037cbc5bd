"""Benchmark: one refresh of every entity's statistics on 1,000 entities and 100,000 targets.

Starts a real MariaDB (Debian's mariadb-server) in a temporary directory, seeds it, and
times ``read_imaging`` (the whole refresh: connection, the three queries, closing). Not a
test: it prints the figures and writes them to benchmarks/results/database_statistics.txt;
docs/performance.md quotes them.

    .venv/bin/python benchmarks/database_statistics.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from medulla_imaging_exporter.config import DatabaseConfig  # noqa: E402
from medulla_imaging_exporter.database import read_imaging  # noqa: E402
from tests.mariadb import EXPORTER_PASSWORD, EXPORTER_USER, mariadb  # noqa: E402

ENTITIES = 1_000
TARGETS = 100_000
RESCUE_LOGS = 30_000
MASTERS = 500
RESULTS = REPO / "benchmarks" / "results" / "database_statistics.txt"

SEED = [
    f"INSERT INTO Entity (id, name, uuid) SELECT seq, CONCAT('Entité n°', seq), CONCAT('UUID', seq)"
    f" FROM seq_1_to_{ENTITIES}",
    # One associated server per entity, and a second, not associated, for one entity in ten.
    "INSERT INTO ImagingServer (id, name, url, packageserver_uuid, associated, fk_entity)"
    " SELECT seq, CONCAT('s', seq), CONCAT('https://10.0.', seq DIV 250, '.', seq MOD 250,"
    f" ':9990/imaging_api'), CONCAT('P', seq), 1, seq FROM seq_1_to_{ENTITIES}",
    "INSERT INTO ImagingServer (id, name, url, packageserver_uuid, associated, fk_entity)"
    f" SELECT {ENTITIES} + seq, 'spare', 'https://10.9.0.1:9990/imaging_api', 'S', 0, seq * 10"
    f" FROM seq_1_to_{ENTITIES // 10}",
    # Targets of every type, mostly computers, spread over the entities.
    "INSERT INTO Target (id, name, uuid, type, fk_entity)"
    " SELECT seq, CONCAT('pc-', seq), CONCAT('T', seq), ELT(1 + seq MOD 10, 1,1,1,1,1,3,3,2,4,5),"
    f" 1 + seq MOD {ENTITIES} FROM seq_1_to_{TARGETS}",
    # Rescue images (is_master 0, some NULL) reached through the imaging log, then masters.
    "INSERT INTO Image (id, name, uuid, is_master) SELECT seq, 'rescue', CONCAT('I', seq),"
    f" IF(seq MOD 7 = 0, NULL, 0) FROM seq_1_to_{RESCUE_LOGS}",
    f"INSERT INTO ImagingLog (id, fk_target) SELECT seq, seq * 3 FROM seq_1_to_{RESCUE_LOGS}",
    "INSERT INTO MasteredOn (fk_image, fk_imaging_log)"
    f" SELECT seq, seq FROM seq_1_to_{RESCUE_LOGS}",
    f"INSERT INTO Image (id, name, uuid, is_master) SELECT {RESCUE_LOGS} + seq, 'master',"
    f" CONCAT('M', seq), 1 FROM seq_1_to_{MASTERS}",
    # Every master on one server, half of them on a second one.
    "INSERT INTO ImageOnImagingServer (fk_image, fk_imaging_server)"
    f" SELECT {RESCUE_LOGS} + seq, 1 + seq MOD {ENTITIES} FROM seq_1_to_{MASTERS}",
    "INSERT INTO ImageOnImagingServer (fk_image, fk_imaging_server)"
    f" SELECT {RESCUE_LOGS} + seq, 1 + (seq * 7) MOD {ENTITIES} FROM seq_1_to_{MASTERS}"
    " WHERE seq MOD 2 = 0 AND (seq * 7) MOD 1000 <> seq MOD 1000",
    "ANALYZE TABLE Entity, ImagingServer, Target, Image, ImagingLog, MasteredOn,"
    " ImageOnImagingServer",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medulla-bench-db-") as tmp, mariadb(Path(tmp)) as db:
        t0 = time.monotonic()
        db.create_imaging("imaging", SEED)
        seeded = time.monotonic() - t0
        config = DatabaseConfig(
            user=EXPORTER_USER, password=EXPORTER_PASSWORD, host="127.0.0.1", port=db.port
        )
        times = []
        for _ in range(args.runs + 1):
            t0 = time.monotonic()
            data = read_imaging(config)
            times.append(time.monotonic() - t0)
        first, rest = times[0], times[1:]
        version = subprocess.run(
            ["mariadbd", "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
    counted = sum(s.clients_registered for s in data.stats.values())
    lines = [
        "Database statistics refresh (benchmarks/database_statistics.py)",
        f"data set: {ENTITIES} entities, {TARGETS} targets (types 1-5), {RESCUE_LOGS} rescue"
        f" images through the imaging log, {MASTERS} masters",
        f"server: {version}",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average"
        f" {os.getloadavg()[0]:.1f} (shared), {platform.python_implementation()}"
        f" {platform.python_version()}",
        f"seeding: {seeded:.1f} s",
        f"entities read: {len(data.entities)}; clients counted: {counted}",
        "queries per refresh: 3 (whatever the number of entities)",
        f"first refresh (cold): {first * 1000:.0f} ms",
        f"refresh over {len(rest)} runs: median {statistics.median(rest) * 1000:.0f} ms,"
        f" min {min(rest) * 1000:.0f} ms, max {max(rest) * 1000:.0f} ms",
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
