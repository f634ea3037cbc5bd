"""Reading the committed Grafana dashboard the way Grafana does: panels, targets, variables."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.helpers import REPO

DASHBOARD_PATH = REPO / "grafana" / "dashboards" / "medulla-imaging.json"

Json = dict[str, Any]


def load_dashboard() -> Json:
    loaded: Json = json.loads(DASHBOARD_PATH.read_text(encoding="utf-8"))
    return loaded


def panels(dashboard: Json) -> Iterator[Json]:
    """Every panel that is not a row, including those inside collapsed rows."""
    for p in dashboard["panels"]:
        if p["type"] == "row":
            yield from p.get("panels", [])
        else:
            yield p


def in_repeated_row(dashboard: Json) -> set[int]:
    """Ids of the panels that Grafana repeats with the row above them, once per entity."""
    ids: set[int] = set()
    repeating = False
    for p in dashboard["panels"]:
        if p["type"] == "row":
            repeating = p.get("repeat") == "entity"
            ids.update(child["id"] for child in p.get("panels", []) if repeating)
        elif repeating:
            ids.add(p["id"])
    return ids


@dataclass(frozen=True)
class Target:
    panel: Json
    target: Json

    @property
    def key(self) -> tuple[str, str]:
        return (self.panel["title"], self.target["refId"])

    @property
    def expr(self) -> str:
        expr: str = self.target["expr"]
        return expr


def targets(dashboard: Json) -> list[Target]:
    return [Target(p, t) for p in panels(dashboard) for t in p.get("targets", [])]


def variable(dashboard: Json, name: str) -> Json:
    matches: list[Json] = [v for v in dashboard["templating"]["list"] if v["name"] == name]
    assert len(matches) == 1, f"expected one variable {name!r}, found {len(matches)}"
    return matches[0]


_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")


def grafana_regex(values: Sequence[str]) -> str:
    """A multi-value variable as Grafana's Prometheus datasource writes it into a query.

    Each value is regex-escaped for a PromQL string (backslashes doubled); several
    values become ``(a|b)``, one value stays bare.
    """
    escaped = [_REGEX_SPECIAL.sub(r"\\\\\g<0>", v.replace("\\", "\\\\\\\\")) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace ``$name`` and ``${name}`` by their values, longest names first like Grafana."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    assert "$" not in expr, f"unsubstituted variable left in {expr!r}"
    return expr


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"\b[A-Za-z_:][\w:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Every metric name that the expression selects, with or without braces."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _CLAUSE.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        following = text[match.end() :].lstrip()[:1]
        if following != "(" and match.group() not in _KEYWORDS:
            names.add(match.group())
    return names


def mapped_text(panel: Json, value: float) -> str | None:
    """The text that the panel's value mappings show for a number, as Grafana's stat does."""
    for mapping in panel["fieldConfig"]["defaults"].get("mappings", []):
        if mapping["type"] == "value":
            result = mapping["options"].get(f"{value:g}")
            if result is not None:
                text: str = result["text"]
                return text
    return None


def mapped_color(panel: Json, text: str) -> str | None:
    for mapping in panel["fieldConfig"]["defaults"].get("mappings", []):
        for result in mapping["options"].values():
            if result.get("text") == text:
                color: str = result["color"]
                return color
    return None
