"""A real MariaDB server (Debian's mariadb-server) in a temporary data directory.

Started on 127.0.0.1 and a unix socket, stopped by its PID. Tests, the benchmark and the
failure tests each start the instances they need from here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pymysql
import trustme

from tests.helpers import free_port, process

SCHEMA = Path(__file__).parent / "sql" / "schema.sql"
DOCS = Path(__file__).parent.parent / "docs" / "database.md"
EXPORTER_USER = "medulla_exporter"
EXPORTER_PASSWORD = "s3cret 'with quotes' & spaces"


# Small and quick: a test server holds a few hundred rows, the benchmark 100,000 targets,
# and none needs to survive a crash, so nothing is synced to disk.
_INNODB = (
    "--innodb-buffer-pool-size=64M",
    "--innodb-log-file-size=8M",
    "--innodb-flush-method=nosync",
    "--innodb-doublewrite=0",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-buffer-pool-load-at-startup=0",
    "--innodb-buffer-pool-dump-at-shutdown=0",
)


def _as_root() -> list[str]:
    return ["--user=root"] if os.geteuid() == 0 else []


@dataclass
class MariaDB:
    datadir: Path
    socket: Path
    port: int
    proc: subprocess.Popen[bytes]
    ca_file: Path | None = None

    def root(self, database: str | None = None) -> pymysql.Connection[pymysql.cursors.Cursor]:
        return pymysql.connect(
            unix_socket=str(self.socket),
            user="root",
            database=database,
            charset="utf8mb4",
            autocommit=True,
        )

    def execute(self, database: str | None, *statements: str) -> None:
        with self.root(database) as conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)

    def create_imaging(self, name: str, rows: Sequence[str] = ()) -> None:
        """A fresh database with the schema subset, some INSERTs, and the exporter's grant."""
        schema = [s for s in SCHEMA.read_text(encoding="utf-8").split(";") if s.strip()]
        self.execute(None, f"DROP DATABASE IF EXISTS `{name}`", f"CREATE DATABASE `{name}`")
        self.execute(name, *schema, *rows)
        password = pymysql.converters.escape_string(EXPORTER_PASSWORD)
        for host in ("localhost", "127.0.0.1"):
            self.execute(
                None,
                f"CREATE USER IF NOT EXISTS '{EXPORTER_USER}'@'{host}' IDENTIFIED BY '{password}'",
                *documented_grant(name, host),
            )


def documented_grant(database: str, host: str) -> list[str]:
    """The GRANT lines of docs/database.md, for this database and host: the docs are tested."""
    lines = [
        line.rstrip(";")
        for line in DOCS.read_text(encoding="utf-8").splitlines()
        if line.startswith("GRANT ")
    ]
    if not lines:
        raise AssertionError(f"no GRANT line in {DOCS}")
    return [
        line.replace(" imaging.", f" `{database}`.").replace("@'%'", f"@'{host}'") for line in lines
    ]


def _wait_ready(server: MariaDB, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"mariadbd exited with {server.proc.returncode}")
        try:
            server.root().close()
            return
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def install(datadir: Path) -> None:
    subprocess.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *_INNODB,
            *_as_root(),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def _tls_options(workdir: Path) -> tuple[Path, list[str]]:
    """A throwaway CA and a certificate for 127.0.0.1, as mariadbd options."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = (workdir / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return ca_file, [f"--ssl-ca={ca_file}", f"--ssl-cert={cert_file}", f"--ssl-key={key_file}"]


@contextlib.contextmanager
def mariadb(
    workdir: Path, port: int | None = None, tls: bool = False, template: Path | None = None
) -> Iterator[MariaDB]:
    """Run mariadbd on a copy of ``template`` (an installed data directory, copied in a
    fraction of the time an install takes) or a fresh install; stop exactly that process."""
    datadir = workdir / "data"
    if template is not None:
        shutil.copytree(template, datadir)
    else:
        install(datadir)
    port = port or free_port()
    socket = workdir / "mysqld.sock"
    ca_file, tls_args = _tls_options(workdir) if tls else (None, [])
    args = [
        "mariadbd",
        "--no-defaults",
        f"--datadir={datadir}",
        f"--socket={socket}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        "--skip-name-resolve",
        *_INNODB,
        *_as_root(),
        *tls_args,
    ]
    with process(args, workdir / "mariadbd.log") as proc:
        server = MariaDB(datadir, socket, port, proc, ca_file)
        _wait_ready(server)
        yield server
