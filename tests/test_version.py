"""One version everywhere: __version__, --version, the build-info metric and the changelog."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx

from medulla_imaging_exporter import __version__
from medulla_imaging_exporter.config import Config
from medulla_imaging_exporter.runtime import Runtime
from tests.helpers import REPO, serving


def test_version_flag_prints_the_package_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "medulla_imaging_exporter", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == f"medulla-imaging-exporter {__version__}\n"


async def test_build_info_metric_reports_the_package_version() -> None:
    async with serving(Runtime(lambda: Config(entities=()))) as base, httpx.AsyncClient() as c:
        text = (await c.get(f"{base}/metrics")).text
    assert f'medulla_imaging_exporter_build_info{{version="{__version__}"}} 1.0' in text


def test_changelog_has_a_section_for_the_current_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d\d-\d\d$", changelog, re.M)
    assert releases and releases[0] == __version__
