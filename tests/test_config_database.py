"""The ``database`` block and ``discovery``: one error per bad key, naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from medulla_imaging_exporter.cli import main
from medulla_imaging_exporter.config import ConfigError, DatabaseConfig, load_config
from tests.helpers import FIXTURES, REPO

CONFIGS = FIXTURES / "configs" / "database"

BAD = {
    "no-user.yml": ["database.user: missing"],
    "host-and-socket.yml": ["database: give exactly one of host and unix_socket"],
    "neither-host-nor-socket.yml": ["database: give exactly one of host and unix_socket"],
    "bad-port.yml": ["database.port: expected a TCP port from 1 to 65535, got 70000"],
    "port-with-socket.yml": ["database.port: not used with unix_socket"],
    "bad-timeouts.yml": [
        "database.connect_timeout: expected a duration such as 10s, 1m30s or 500ms, got 'soon'",
        "database.query_timeout: must be positive, got -1",
        "database.refresh_interval: must be positive, got '0s'",
    ],
    "inline-password.yml": ["database.password: unknown key"],
    "both-passwords.yml": ["database: give password_file or password_env, not both"],
    "missing-password-file.yml": ["database.password_file: cannot read"],
    "unset-password-env.yml": [
        "database.password_env: the environment variable MEDULLA_TEST_DB_PASSWORD_UNSET is not set"
    ],
    "tls-server-name.yml": ["database.tls_config.server_name: not supported for the database"],
    "not-a-mapping.yml": ["database: expected a mapping, got str"],
    "discovery-without-database.yml": ["discovery: 'database' needs a database block"],
    "discovery-unknown.yml": ["discovery: expected one of ('database',), got 'glpi'"],
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_database_config(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDULLA_TEST_DB_PASSWORD", "x")
    monkeypatch.delenv("MEDULLA_TEST_DB_PASSWORD_UNSET", raising=False)
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / name)
    assert len(info.value.problems) == len(BAD[name]), info.value.problems
    for problem, expected in zip(info.value.problems, BAD[name], strict=True):
        assert problem.startswith(expected), problem
    assert str(info.value).startswith(f"{CONFIGS / name}: ")


def test_password_from_file_without_final_newline() -> None:
    config = load_config(CONFIGS / "good-file-password.yml")
    assert config.database == DatabaseConfig(
        user="medulla_exporter", host="db.example.org", password="hunter2 with spaces"
    )
    assert config.database is not None and config.database.password == "hunter2 with spaces"
    assert "hunter2" not in repr(config)


def test_example_with_database_is_valid(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEDULLA_IMAGING_DB_PASSWORD", "from the environment")
    example = REPO / "examples" / "config-database.yml"
    config = load_config(example)
    assert config.discovery == "database"
    assert config.database is not None
    assert config.database.password == "from the environment"
    assert config.database.name == "imaging"
    assert (config.database.connect_timeout, config.database.query_timeout) == (5.0, 10.0)
    assert config.defaults.timeout == 10.0
    assert main(["--config.file", str(example), "--config.check"]) == 0
    assert "OK" in capsys.readouterr().out


def test_without_database_block(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("entities:\n  - name: Public\n    url: https://h:9990/imaging_api\n")
    config = load_config(path)
    assert config.database is None and config.discovery is None
