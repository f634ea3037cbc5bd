"""The committed alerting files: promtool and amtool accept them, the unit tests cover every
alert, and the rules, the runbooks and the Alertmanager example agree with each other."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from medulla_imaging_exporter.config import parse_duration
from tests.alerting import (
    ALERTMANAGER_EXAMPLE,
    JOB,
    RULE_TESTS,
    RULES,
    RUNBOOKS,
    alert_rules,
    alertmanager_for_test,
    load,
    rules,
    shortened_rules,
)

SEVERITIES = {"critical", "warning", "info"}
# Longer than a few scrapes at Prometheus' usual intervals: one failed probe never pages.
MIN_FOR_SECONDS = 180
THRESHOLD_PREFIX = "medulla_imaging:threshold:"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def doc() -> Any:
    return load(RULES)


@pytest.fixture(scope="module")
def runbooks() -> str:
    return RUNBOOKS.read_text(encoding="utf-8")


def test_promtool_check_rules_accepts_the_rule_file(doc: Any) -> None:
    result = run("promtool", "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(list(rules(doc)))} rules found" in result.stdout


def test_promtool_check_rules_rejects_a_broken_copy(tmp_path: Path, doc: Any) -> None:
    broken = copy.deepcopy(doc)
    alert_rules(broken)[0]["expr"] = "medulla_imaging_server_status{status=}"
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    result = run("promtool", "check", "rules", tmp_path / "broken.yml")
    assert result.returncode != 0
    assert "parse error" in result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = run("promtool", "test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_fail_when_an_alert_pages_on_one_failed_probe(
    tmp_path: Path, doc: Any
) -> None:
    """The unit tests are not vacuous: without its ``for``, the offline alert fails them."""
    hasty = copy.deepcopy(doc)
    for rule in alert_rules(hasty):
        if rule["alert"] == "MedullaImagingServerOffline":
            rule["for"] = "0s"
    (tmp_path / RULES.name).write_text(yaml.safe_dump(hasty))
    (tmp_path / RULE_TESTS.name).write_bytes(RULE_TESTS.read_bytes())
    result = run("promtool", "test", "rules", tmp_path / RULE_TESTS.name)
    assert result.returncode != 0
    assert "alertname: MedullaImagingServerOffline" in result.stdout + result.stderr


def test_unit_tests_cover_every_alert_firing_and_not_firing(doc: Any) -> None:
    tests = load(RULE_TESTS)
    assert tests["rule_files"] == [RULES.name]
    firing: set[tuple[str, str]] = set()
    silent: set[str] = set()
    for group in tests["tests"]:
        for case in group.get("alert_rule_test", ()):
            if not case["exp_alerts"]:
                silent.add(case["alertname"])
            for alert in case["exp_alerts"]:
                firing.add((case["alertname"], alert["exp_labels"]["severity"]))
    defined = {(r["alert"], r["labels"]["severity"]) for r in alert_rules(doc)}
    assert defined - firing == set(), "alerts never tested firing"
    assert {name for name, _ in defined} - silent == set(), "alerts never tested silent"


def test_every_alert_has_severity_for_summary_description_and_runbook(
    doc: Any, runbooks: str
) -> None:
    headings = set(re.findall(r"^## (\S+)$", runbooks, re.MULTILINE))
    for rule in alert_rules(doc):
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert parse_duration(rule["for"]) >= MIN_FOR_SECONDS, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert "Recommended action" in annotations["description"], name
        assert annotations["runbook_url"] == f"docs/runbooks.md#{name.lower()}", name
        assert name in headings, f"no runbook section for {name}"
    for group in doc["groups"]:
        if group["name"] == "medulla-imaging-exporter":
            continue  # about the exporter itself, not an entity
        for rule in alert_rules({"groups": [group]}):
            assert "{{ $labels.entity }}" in rule["annotations"]["description"], rule["alert"]


def test_the_failure_alerts_carry_the_pages_recommended_actions(doc: Any) -> None:
    by_name = {r["alert"]: r for r in alert_rules(doc)}
    offline = by_name["MedullaImagingServerOffline"]["annotations"]["description"]
    error = by_name["MedullaImagingServerConnectionError"]["annotations"]["description"]
    assert "contact the administrator or technical support" in offline
    assert "report the problem to the technical team" in error
    for description in (offline, error):
        assert "medulla_imaging_probe_failure_reason" in description  # the reason
        assert "medulla_imaging_entity_info" in description  # the server


def test_thresholds_live_only_in_the_threshold_group_and_match_the_docs(
    doc: Any, runbooks: str
) -> None:
    (group,) = [g for g in doc["groups"] if g["name"] == "medulla-imaging-thresholds"]
    thresholds = {}
    for rule in group["rules"]:
        assert rule["record"].startswith(THRESHOLD_PREFIX)
        value = re.fullmatch(r"vector\((.+)\)", rule["expr"])
        assert value, rule["record"]
        thresholds[rule["record"]] = float(value[1])
    documented = {
        name: float(value)
        for name, value in re.findall(
            rf"^\| `({re.escape(THRESHOLD_PREFIX)}\w+)` \| ([\d.]+) \|", runbooks, re.MULTILINE
        )
    }
    assert documented == thresholds
    expressions = " ".join(r["expr"] for r in alert_rules(doc))
    unused = {name for name in thresholds if name not in expressions}
    assert unused == set()
    # No other number than 0 and 1 in an alert: every threshold is one of the above.
    for rule in alert_rules(doc):
        without_selectors = re.sub(r"\{[^}]*\}|\[[^]]*\]", "", rule["expr"])
        numbers = set(re.findall(r"(?<![\w:.])\d+(?:\.\d+)?(?![\w.])", without_selectors))
        assert numbers <= {"0", "1"}, (rule["alert"], numbers)


def test_the_runbooks_overview_matches_the_rules(doc: Any, runbooks: str) -> None:
    overview = set(
        re.findall(r"^\| `(MedullaImaging\w+)` \| (\w+) \| (\w+) \|", runbooks, re.MULTILINE)
    )
    rules_table = {(r["alert"], r["labels"]["severity"], r["for"]) for r in alert_rules(doc)}
    assert overview == rules_table


def test_only_the_exporter_alerts_name_the_job(doc: Any, runbooks: str) -> None:
    for rule in alert_rules(doc):
        jobs = re.findall(r'job="([^"]*)"', rule["expr"])
        if rule["alert"] in ("MedullaImagingExporterDown", "MedullaImagingExporterAbsent"):
            assert jobs == [JOB]
        else:
            assert jobs == [], rule["alert"]
    assert f"job_name: {JOB}" in runbooks
    assert f'sed -i \'s/job="{JOB}"/job="YOUR-JOB"/\' alerts/medulla-imaging.rules.yml' in (
        runbooks
    )


def test_the_shortened_copy_changes_only_the_for_durations(doc: Any) -> None:
    short = shortened_rules(doc, 1 / 60)
    for original, fast in zip(alert_rules(doc), alert_rules(short), strict=True):
        assert parse_duration(fast["for"]) == pytest.approx(parse_duration(original["for"]) / 60)
    strip = [{k: v for k, v in r.items() if k != "for"} for r in rules(doc)]
    assert [{k: v for k, v in r.items() if k != "for"} for r in rules(short)] == strip
    assert [g["name"] for g in short["groups"]] == [g["name"] for g in doc["groups"]]


def test_amtool_accepts_the_alertmanager_example() -> None:
    result = run("amtool", "check-config", ALERTMANAGER_EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("severity", "receiver"),
    [("critical", "on-call"), ("warning", "imaging-team"), ("info", "imaging-tickets")],
)
def test_the_example_routes_by_severity(severity: str, receiver: str) -> None:
    result = run(
        "amtool",
        "config",
        "routes",
        "test",
        "--config.file",
        ALERTMANAGER_EXAMPLE,
        "alertname=MedullaImagingServerOffline",
        "entity=Public",
        f"severity={severity}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_the_example_groups_by_entity_and_inhibits_one_outage_to_one_page(doc: Any) -> None:
    example = load(ALERTMANAGER_EXAMPLE)
    assert "entity" in example["route"]["group_by"]
    names = {r["alert"] for r in alert_rules(doc)}

    def matching(matchers: list[str]) -> set[str]:
        """The rule file's alerts that an alertname regex matcher selects."""
        (matcher,) = [m for m in matchers if m.startswith("alertname=~")]
        pattern = re.compile(yaml.safe_load(matcher.split("=~", 1)[1]))
        return {n for n in names if pattern.fullmatch(n)}

    by_source = {tuple(r["source_matchers"]): r for r in example["inhibit_rules"]}
    outage = by_source[
        ('alertname=~"MedullaImagingServerOffline|MedullaImagingServerConnectionError"',)
    ]
    assert matching(outage["source_matchers"]) == {
        "MedullaImagingServerOffline",
        "MedullaImagingServerConnectionError",
    }
    assert matching(outage["target_matchers"]) == {
        "MedullaImagingMastersStorageLow",
        "MedullaImagingMastersStorageFillingUp",
        "MedullaImagingFilesystemNearlyFull",
        "MedullaImagingMemoryPressure",
        "MedullaImagingRecentReboot",
        "MedullaImagingNoMasterAvailable",
        "MedullaImagingSectionFailing",
        "MedullaImagingProbeNearTimeout",
    }
    assert "entity" in outage["equal"]
    for source in (
        'alertname="MedullaImagingExporterDown"',
        'alertname="MedullaImagingExporterAbsent"',
    ):
        assert source.split('"')[1] in names
        assert by_source[(source,)]["target_matchers"] == ['entity=~".+"']


def test_the_test_alertmanager_changes_only_timers_and_receiver_addresses() -> None:
    example = load(ALERTMANAGER_EXAMPLE)
    test = alertmanager_for_test(example, "http://127.0.0.1:1", "1s")
    assert test["inhibit_rules"] == example["inhibit_rules"]
    assert test["route"]["group_wait"] == test["route"]["group_interval"] == "1s"
    assert test["route"]["repeat_interval"] == example["route"]["repeat_interval"]
    assert [r["matchers"] for r in test["route"]["routes"]] == [
        r["matchers"] for r in example["route"]["routes"]
    ]
    urls = {r["name"]: r["webhook_configs"][0]["url"] for r in test["receivers"]}
    assert urls == {
        "on-call": "http://127.0.0.1:1/on-call",
        "imaging-team": "http://127.0.0.1:1/imaging-team",
        "imaging-tickets": "http://127.0.0.1:1/imaging-tickets",
    }


def test_the_test_alertmanager_refuses_a_receiver_it_cannot_observe() -> None:
    example = load(ALERTMANAGER_EXAMPLE)
    example["receivers"].append({"name": "mail", "email_configs": [{"to": "a@example.org"}]})
    with pytest.raises(ValueError, match=r"receiver 'mail' has \['email_configs'\], not a webhook"):
        alertmanager_for_test(example, "http://127.0.0.1:1", "1s")
