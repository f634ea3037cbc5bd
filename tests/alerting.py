"""The committed alerting files, and the test copies derived from them for a fast end-to-end run.

The copies change only what a short test needs to change (``for`` durations, Alertmanager's
timers and receiver addresses); ``tests/test_alerts.py`` checks that nothing else differs.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from medulla_imaging_exporter.config import parse_duration
from tests.helpers import REPO

RULES = REPO / "alerts" / "medulla-imaging.rules.yml"
RULE_TESTS = REPO / "alerts" / "medulla-imaging.rules.test.yml"
ALERTMANAGER_EXAMPLE = REPO / "alerts" / "alertmanager.example.yml"
RUNBOOKS = REPO / "docs" / "runbooks.md"
# The scrape job the rules assume (docs/runbooks.md, "Adapting the rules").
JOB = "medulla-imaging"

# Alertmanager's timers that make a notification wait.
_AM_TIMERS = ("group_wait", "group_interval")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules(doc: Any) -> Iterator[dict[str, Any]]:
    for group in doc["groups"]:
        yield from group["rules"]


def alert_rules(doc: Any) -> list[dict[str, Any]]:
    return [r for r in rules(doc) if "alert" in r]


def shortened_rules(doc: Any, scale: float) -> Any:
    """The rule file with every ``for`` multiplied by ``scale``, and nothing else changed."""
    short = copy.deepcopy(doc)
    for rule in alert_rules(short):
        milliseconds = round(parse_duration(rule["for"]) * scale * 1000)
        rule["for"] = f"{max(milliseconds, 1)}ms"
    return short


def _routes(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield route
    for child in route.get("routes", ()):
        yield from _routes(child)


def alertmanager_for_test(doc: Any, webhook_base: str, timer: str) -> Any:
    """The example with its timers set to ``timer`` and every receiver a webhook to the test.

    Each receiver posts to ``<webhook_base>/<receiver name>``; a receiver of any other kind
    is an error, since the test could not see what it would send.
    """
    test = copy.deepcopy(doc)
    for route in _routes(test["route"]):
        for key in _AM_TIMERS:
            if key in route:
                route[key] = timer
    for receiver in test["receivers"]:
        kinds = set(receiver) - {"name"}
        if kinds != {"webhook_configs"}:
            raise ValueError(f"receiver {receiver['name']!r} has {sorted(kinds)}, not a webhook")
        for webhook in receiver["webhook_configs"]:
            webhook["url"] = f"{webhook_base}/{receiver['name']}"
    return test
