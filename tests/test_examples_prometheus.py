"""examples/prometheus/: every topology passes ``promtool check config``, rule files included."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import trustme
import yaml

from tests.helpers import REPO

EXAMPLES = REPO / "examples" / "prometheus"
RULES = "../../alerts/medulla-imaging.rules.yml"
TOPOLOGIES = ["metrics.yml", "probe.yml", "sd.yml", "sharded-0.yml", "sharded-1.yml", "secured.yml"]


def test_every_topology_has_an_example() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yml")) == sorted(TOPOLOGIES)


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_example_passes_promtool_with_its_rule_files(name: str, tmp_path: Path) -> None:
    """Checked in a copy of the repository's layout, with the files the example refers to."""
    examples = tmp_path / "examples" / "prometheus"
    shutil.copytree(EXAMPLES, examples)
    rules = tmp_path / "alerts" / "medulla-imaging.rules.yml"
    rules.parent.mkdir()
    shutil.copy(REPO / "alerts" / "medulla-imaging.rules.yml", rules)
    config = yaml.safe_load((examples / name).read_text(encoding="utf-8"))
    assert config["rule_files"] == [RULES]
    for job in config["scrape_configs"]:
        if "tls_config" in job:
            trustme.CA().cert_pem.write_to_path(str(examples / job["tls_config"]["ca_file"]))
        if "basic_auth" in job:
            (examples / job["basic_auth"]["password_file"]).write_text("change-me\n")

    result = subprocess.run(
        ["promtool", "check", "config", str(examples / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS: 1 rule files found" in output
    # The relative path resolved to the alerts, and promtool checked them too.
    assert re.search(rf"Checking {re.escape(str(rules))}\n  SUCCESS: [1-9]\d* rules found", output)
