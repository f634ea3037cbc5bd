"""examples/systemd: the unit passes systemd-analyze, and its ExecStart and ExecReload work."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import httpx

from tests.helpers import REPO, free_port, process, wait_http, wait_until

UNIT = REPO / "examples" / "systemd" / "medulla-imaging-exporter.service"
INSTALL_PREFIX = "/opt/medulla-imaging-exporter"


def unit_for_this_venv(tmp_path: Path) -> Path:
    """The unit with the install prefix replaced by this test run's virtual environment."""
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text(encoding="utf-8").replace(INSTALL_PREFIX, sys.prefix))
    return unit


def directive(unit: Path, name: str) -> list[str]:
    text = unit.read_text(encoding="utf-8").replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith(f"{name}="))
    return shlex.split(line.partition("=")[2])


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit_for_this_venv(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""


def test_exec_start_serves_and_exec_reload_rereads_the_configuration(tmp_path: Path) -> None:
    unit = unit_for_this_venv(tmp_path)
    command = directive(unit, "ExecStart")
    config = tmp_path / "config.yml"
    config.write_text("entities:\n  - name: Public\n", encoding="utf-8")
    port = free_port()
    # The paths of a real install, replaced by this test's file and a free loopback port.
    command[command.index("--config.file") + 1] = str(config)
    command[command.index("--web.listen-address") + 1] = f"127.0.0.1:{port}"
    with process(command, tmp_path / "exporter.log") as proc:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/-/ready", process=proc)

        def entities() -> list[str]:
            return [g["labels"]["entity"] for g in httpx.get(f"{base}/sd").json()]

        assert entities() == ["Public"]

        config.write_text("entities:\n  - name: Public\n  - name: Private\n", encoding="utf-8")
        reload = " ".join(directive(unit, "ExecReload")).replace("$MAINPID", str(proc.pid))
        subprocess.run(["/bin/sh", "-c", reload], check=True)
        wait_until(lambda: entities() == ["Public", "Private"])
        assert proc.poll() is None  # SIGHUP reloads, it does not stop the exporter
