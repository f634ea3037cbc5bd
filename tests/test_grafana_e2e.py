"""Every query of the dashboard, run by a real Prometheus scraping the exporter's demo.

Variables are substituted as Grafana does; each target must return exactly the series
that the demo's entities imply, with the demo's values ("Public" answers with the
user guide's screenshot, "Private" is in connection error, "General" offline, the
root "Siveo Medulla" has no imaging server).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.grafana_helpers import (
    Json,
    Target,
    grafana_regex,
    in_repeated_row,
    load_dashboard,
    mapped_text,
    metric_names,
    substitute,
    targets,
    variable,
)
from tests.helpers import demo_exporter
from tests.helpers import prometheus as prometheus_server

JOB = "medulla-imaging"
ENTITIES = ("Siveo Medulla", "Public", "Private", "General")
PROBED = ("Public", "Private", "General")
STEP_SECONDS = 2  # also $__interval
RANGE_SECONDS = 4  # also $__range
RATE_INTERVAL = "4s"  # Grafana: max($__interval + scrape interval, 4 x the 1 s scrape interval)
KIB = 1024

# --- what the demo's entities must show --------------------------------------------------

STATUS_TEXT = {
    "Siveo Medulla": "No imaging server",
    "Public": "Available",
    "Private": "Connection error",
    "General": "Offline",
}
ACTION_WORDS = {
    "Siveo Medulla": "No imaging server available for association.",
    "Public": "You can proceed with image creation or deployment.",
    "Private": "Recommended action: report the issue to the technical team.",
    "General": "Recommended action: contact the administrator or technical support.",
}
FAILURE = {"Private": "http_404", "General": "refused"}
# df -k of the screenshot's server: (device, mount point) -> (used KiB, available KiB)
DISKS = {("/dev/vda3", "/"): (17301504, 80425780), ("/dev/vda1", "/boot/efi"): (11878, 114790)}

Labels = frozenset[tuple[str, str]]


def series(**labels: str) -> Labels:
    return frozenset(labels.items())


@dataclass(frozen=True)
class Text:
    """The panel's value mappings must show this text (exactly, or containing it)."""

    words: str
    exact: bool = True


@dataclass(frozen=True)
class Between:
    low: float
    high: float


Check = float | Text | Between
Expect = Callable[[tuple[str, ...]], dict[Labels, Check]]


def public(value: float, **labels: str) -> Expect:
    """A value that only "Public" has: the others have no reply, so no series at all."""
    return lambda entities: (
        {series(entity="Public", **labels): value} if "Public" in entities else {}
    )


def per_entity(check: Callable[[str], Check], among: tuple[str, ...] = ENTITIES) -> Expect:
    return lambda entities: {series(entity=e): check(e) for e in entities if e in among}


def failures(entities: tuple[str, ...]) -> dict[Labels, Check]:
    return {series(entity=e, reason=r): 1.0 for e, r in FAILURE.items() if e in entities}


def disks(column: int) -> Expect:
    def expect(entities: tuple[str, ...]) -> dict[Labels, Check]:
        if "Public" not in entities:
            return {}
        return {
            series(
                entity="Public", device=dev, mountpoint=mount, partition=f"{dev} on {mount}"
            ): kib[column] * KIB
            for (dev, mount), kib in DISKS.items()
        }

    return expect


status = per_entity(lambda e: Text(STATUS_TEXT[e]))

EXPECTED: dict[tuple[str, str], Expect] = {
    ("Imaging server status", "A"): status,
    ("Failure reasons", "A"): failures,
    ("Availability over the time range", "A"): per_entity(
        lambda e: 1.0 if e == "Public" else 0.0, PROBED
    ),
    ("Status over time", "A"): status,
    ("Status", "A"): status,
    ("Recommended action", "A"): per_entity(lambda e: Text(ACTION_WORDS[e], exact=False)),
    ("Failure reason", "A"): failures,
    ("Available disk space", "A"): disks(0),
    ("Available disk space", "B"): disks(1),
    ("Masters storage", "A"): public(0.18),
    ("Masters storage", "B"): public(78540 * KIB * KIB),
    # /proc/uptime 1123602.57 s: the page's "13 jours 0 heure 6 minutes"
    ("Up since", "A"): public(13),
    ("Up since", "B"): public(0),
    ("Up since", "C"): public(6),
    ("Memory", "A"): public(3250586 * KIB),
    ("Memory", "B"): public(4194304 * KIB),
    ("Memory", "C"): public(8178893 * KIB),
    ("Swap", "A"): public(524288 * KIB),
    ("Swap", "B"): public(2097148 * KIB),
    # The demo has no database: the statistics are the reply's (docs/metrics.md).
    ("Entity statistics", "A"): public(0, source="reply"),
    ("Entity statistics", "B"): public(0, source="reply"),
    ("Entity statistics", "C"): public(1, source="reply"),
    ("Clients with a rescue image", "A"): public(0, source="reply"),
    ("Clients with a rescue image", "B"): public(0, source="reply"),
    # The demo's entity timeout is 5 s.
    ("Probe duration", "A"): per_entity(lambda e: Between(0.0, 5.0), PROBED),
}

DASHBOARD = load_dashboard()
TARGETS = targets(DASHBOARD)
REPEATED = in_repeated_row(DASHBOARD)
OVERVIEW = [t for t in TARGETS if t.panel["id"] not in REPEATED]
ROW = [t for t in TARGETS if t.panel["id"] in REPEATED]


def target_id(target: Target) -> str:
    return "/".join(target.key)


# --- a real Prometheus scraping the demo -------------------------------------------------


@dataclass(frozen=True)
class Prometheus:
    url: str
    at: float  # evaluation time of every query: only samples after the first good scrape

    def api(self, path: str, **params: Any) -> Any:
        reply = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = reply.json()
        assert reply.status_code == 200 and body["status"] == "success", (params, body)
        return body["data"]


def first_good_scrape(url: str, deadline: float) -> float:
    """When Prometheus first stored "Public" as up: earlier scrapes may have been warming up."""
    query = {"query": 'medulla_imaging_server_up{entity="Public"}[1m]'}
    while time.monotonic() < deadline:
        data = httpx.get(f"{url}/api/v1/query", params=query, timeout=5).json()["data"]
        good = [float(ts) for r in data["result"] for ts, v in r["values"] if v == "1"]
        if good:
            return min(good)
        time.sleep(0.5)
    raise TimeoutError("Prometheus never stored Public as up")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    tmp: Path = tmp_path_factory.mktemp("grafana-e2e")
    # The probes get Prometheus' 1 s scrape timeout minus 0.1 s.
    with demo_exporter(tmp, "--scrape.timeout-offset", "0.1") as exporter:
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "static_configs": [{"targets": [exporter.removeprefix("http://")]}],
                }
            ],
        }
        with prometheus_server(tmp / "prometheus", config) as url:
            first = first_good_scrape(url, time.monotonic() + 30)
            # The oldest window starts one step after the first good scrape.
            at = first + STEP_SECONDS + RANGE_SECONDS
            while time.time() < at + 1:
                time.sleep(0.2)
            yield Prometheus(url, at)


def run(prom: Prometheus, target: Target, job: str, entity: str) -> dict[Labels, list[float]]:
    """The target's query as Grafana would send it; series (without job/instance) to values."""
    assert target.target["datasource"]["uid"] == "${datasource}"
    expr = substitute(
        target.expr,
        {
            "job": job,
            "entity": entity,
            "__interval": f"{STEP_SECONDS}s",
            "__rate_interval": RATE_INTERVAL,
            "__range": f"{RANGE_SECONDS}s",
        },
    )
    if target.target["instant"]:
        data = prom.api("query", query=expr, time=prom.at)
        assert data["resultType"] == "vector"
        samples = [(r["metric"], [r["value"]]) for r in data["result"]]
    else:
        data = prom.api(
            "query_range",
            query=expr,
            start=prom.at - RANGE_SECONDS,
            end=prom.at,
            step=STEP_SECONDS,
        )
        assert data["resultType"] == "matrix"
        samples = [(r["metric"], r["values"]) for r in data["result"]]
    out: dict[Labels, list[float]] = {}
    for metric, values in samples:
        labels = frozenset(
            (k, v) for k, v in metric.items() if k not in {"__name__", "job", "instance"}
        )
        assert labels not in out, f"two series for {sorted(labels)}"
        out[labels] = [float(v) for _, v in values]
    return out


def check_value(panel: Json, check: Check, value: float) -> bool:
    if isinstance(check, Text):
        text = mapped_text(panel, value) or ""
        return text == check.words if check.exact else check.words in text
    if isinstance(check, Between):
        return check.low < value <= check.high
    return value == check  # bytes and counts are exact in the exposition


def assert_target(prom: Prometheus, target: Target, job: str, entities: tuple[str, ...]) -> None:
    got = run(prom, target, job, grafana_regex(entities) if len(entities) < 4 else ".+")
    expected = EXPECTED[target.key](entities)
    assert set(got) == set(expected), target.expr
    for labels, values in got.items():
        assert values, f"no point for {sorted(labels)}"
        wrong = [v for v in values if not check_value(target.panel, expected[labels], v)]
        assert wrong == [], f"{sorted(labels)}: {wrong} is not {expected[labels]}"


# --- the tests ---------------------------------------------------------------------------


def test_every_target_has_an_expectation() -> None:
    assert {t.key for t in TARGETS} == set(EXPECTED)
    assert OVERVIEW and ROW


@pytest.mark.parametrize("target", OVERVIEW, ids=target_id)
def test_overview_target_with_all_entities(prometheus: Prometheus, target: Target) -> None:
    assert_target(prometheus, target, ".+", ENTITIES)


@pytest.mark.parametrize("target", OVERVIEW, ids=target_id)
def test_overview_target_with_some_entities(prometheus: Prometheus, target: Target) -> None:
    assert_target(prometheus, target, grafana_regex([JOB]), ("Public", "General"))


@pytest.mark.parametrize("entity", ENTITIES)
@pytest.mark.parametrize("target", ROW, ids=target_id)
def test_entity_row_target(prometheus: Prometheus, target: Target, entity: str) -> None:
    assert_target(prometheus, target, grafana_regex([JOB]), (entity,))


@pytest.mark.parametrize("target", TARGETS, ids=target_id)
def test_target_filters_on_job_and_entity(prometheus: Prometheus, target: Target) -> None:
    assert run(prometheus, target, "other-job", ".+") == {}
    assert run(prometheus, target, ".+", grafana_regex(["Nowhere"])) == {}


def test_variables_list_the_job_and_the_entities(prometheus: Prometheus) -> None:
    """``label_values(metric{...}, label)`` as Grafana asks Prometheus for it."""
    for name, values in (("job", [JOB]), ("entity", sorted(ENTITIES))):
        query = variable(DASHBOARD, name)["query"]
        metric_selector, label = query.removeprefix("label_values(").removesuffix(")").rsplit(", ")
        assert label == name
        match = substitute(metric_selector, {"job": ".+"})
        found = prometheus.api(f"label/{label}/values", **{"match[]": match})
        assert sorted(found) == values


def test_dashboard_metrics_are_all_in_the_scrape(prometheus: Prometheus) -> None:
    scraped = set(prometheus.api("label/__name__/values"))
    used = set().union(*(metric_names(t.expr) for t in TARGETS))
    assert "medulla_imaging_filesystem_used_bytes" in used
    assert used <= scraped, used - scraped
