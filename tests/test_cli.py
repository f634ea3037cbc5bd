"""The real command line, run as a subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from medulla_imaging_exporter import __version__
from tests.helpers import FIXTURES, demo_exporter, free_port, process, wait_http, wait_until
from tests.processes import exporter_command

GOLDEN = Path(__file__).parent / "golden" / "demo.prom"
# Values that change from run to run; the golden file keeps their series, not their values.
VARIABLE = re.compile(
    r"^(medulla_imaging_probe_duration_seconds|medulla_imaging_boot_time_seconds"
    r"|medulla_imaging_exporter_config_last_reload_success_timestamp_seconds)(\{.*\})? .*$"
)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medulla_imaging_exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def normalise(exposition: str) -> str:
    """Drop the process's own families, blank the variable values and the random ports."""
    out = []
    for line in exposition.splitlines():
        name = line.split()[2] if line.startswith("#") else line
        if name.startswith(("process_", "python_")):
            continue
        line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)
        out.append(VARIABLE.sub(r"\1\2 VARIABLE", line))
    return "\n".join(out) + "\n"


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"medulla-imaging-exporter {__version__}"


@pytest.mark.parametrize("args", [[], ["--demo", "--config.file", "x.yml"]])
def test_needs_exactly_one_of_config_file_or_demo(args: list[str]) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert "give either --config.file PATH or --demo" in result.stderr


def test_config_check(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text("entities:\n  - name: Public\n    url: https://imaging:9990/imaging_api\n")
    result = cli("--config.file", str(good), "--config.check")
    assert (result.returncode, result.stdout.strip()) == (0, f"{good}: OK, 1 entities")
    bad = FIXTURES / "configs" / "bad" / "several-errors.yml"
    result = cli("--config.file", str(bad), "--config.check")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 4
    assert f"{bad}: entities[0].url" in result.stderr


def test_bad_config_at_start_exits_1(tmp_path: Path) -> None:
    bad = FIXTURES / "configs" / "bad" / "bad-duration.yml"
    result = cli("--config.file", str(bad), "--web.listen-address", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "entities[0].timeout" in result.stderr


def test_bad_listen_address() -> None:
    result = cli("--demo", "--web.listen-address", "localhost")
    assert result.returncode == 2
    assert "expected host:port" in result.stderr


def test_demo_exposition_matches_the_golden_file_and_passes_promtool(tmp_path: Path) -> None:
    with demo_exporter(tmp_path) as base:
        text = httpx.get(f"{base}/metrics", timeout=30).text
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0 and not check.stdout + check.stderr, check.stdout + check.stderr
    got = normalise(text)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text()


def test_sighup_reloads_and_a_bad_file_keeps_the_running_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("entities:\n  - name: Siveo Medulla\n")
    port = free_port()
    args = exporter_command(port, "--config.file", config, "--log.format", "json")
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "exporter.log"
    with process(args, log) as proc:
        wait_http(f"{base}/-/ready", process=proc)
        config.write_text("entities:\n  - name: Siveo Medulla\n  - name: Public\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: 'entity="Public"' in httpx.get(f"{base}/metrics").text)
        config.write_text("entities: [\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "last_reload_successful 0.0" in httpx.get(f"{base}/metrics").text)
        assert 'entity="Public"' in httpx.get(f"{base}/metrics").text
    records = [json.loads(line) for line in log.read_text().splitlines()]
    messages = [r["msg"] for r in records]
    assert "configuration reloaded" in messages
    failed = next(r for r in records if r["msg"].startswith("reload failed"))
    assert failed["level"] == "error" and "not valid YAML" in failed["err"]


# What the running exporter loads only when asked for: the simulator (--demo), the database.
OPTIONAL_MODULES = ("cryptography", "trustme", "pymysql", "medulla_imaging_exporter.simulator")
LOADED_MODULES = """
import asyncio, sys
from medulla_imaging_exporter import cli
from medulla_imaging_exporter.config import load_config
from medulla_imaging_exporter.runtime import Runtime

async def main() -> None:
    runtime = Runtime(lambda: load_config(sys.argv[1]))
    await runtime.aclose()

asyncio.run(main())
print(" ".join(m for m in sys.argv[2:] if m in sys.modules))
"""


@pytest.mark.parametrize(
    ("config", "loaded"),
    [
        ("entities:\n  - name: Public\n    url: https://127.0.0.1:9/imaging_api\n", ""),
        # PyMySQL loads cryptography for MySQL 8's password exchange.
        ((FIXTURES / "configs" / "database" / "good-file-password.yml"), "cryptography pymysql"),
    ],
)
def test_the_exporter_imports_optional_modules_only_when_needed(
    tmp_path: Path, config: str | Path, loaded: str
) -> None:
    if isinstance(config, str):
        (tmp_path / "config.yml").write_text(config)
        config = tmp_path / "config.yml"
    run = subprocess.run(
        [sys.executable, "-c", LOADED_MODULES, str(config), *OPTIONAL_MODULES],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == loaded
