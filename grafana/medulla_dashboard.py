"""The Grafana dashboard of the imaging servers, built with grafana-foundation-sdk.

Run ``python grafana/medulla_dashboard.py`` after a change: it rewrites
``grafana/dashboards/medulla-imaging.json``, and a test fails while the committed
file differs from what this code builds. Statuses and reasons come from the
exporter's own enums, so a new one cannot be forgotten here.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import (
    barchart,
    bargauge,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from medulla_imaging_exporter.model import Reason, Status
from medulla_imaging_exporter.translations import status_label, text

UID = "medulla-imaging"
OUTPUT = Path(__file__).parent / "dashboards" / "medulla-imaging.json"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
STATUS_METRIC = "medulla_imaging_server_status"
GREY = "#8e8e8e"


@dataclass(frozen=True)
class StatusStyle:
    """How the page shows one status; ``code`` also orders them, the worst highest."""

    status: Status
    code: int
    color: str

    @property
    def text(self) -> str:
        return status_label("en", self.status)

    @property
    def action(self) -> str:
        """The user guide's words, as the exporter's status page shows them."""
        meaning = text("en", f"meaning.{self.status.value}")
        if self.status in (Status.AVAILABLE, Status.NOT_LINKED):
            return meaning
        action = text("en", f"action.{self.status.value}")
        return f"{meaning} {text('en', 'recommended_action')} {action}"


STATUSES = (
    StatusStyle(Status.AVAILABLE, 1, "green"),
    StatusStyle(Status.NOT_LINKED, 2, GREY),
    StatusStyle(Status.CONNECTION_ERROR, 3, "orange"),
    StatusStyle(Status.OFFLINE, 4, "red"),
)

# What to look at first, shown beside each failure reason (docs/metrics.md explains more).
REASONS: dict[Reason, str] = {
    Reason.REFUSED: "nothing listens on the port (package server stopped)",
    Reason.DNS: "the host name does not resolve",
    Reason.UNREACHABLE: "no route to the host",
    Reason.CONNECT_TIMEOUT: "TCP connection timed out (host down, firewall)",
    Reason.TLS_TIMEOUT: "TLS handshake stalled",
    Reason.TLS_VERIFY: "server certificate not trusted",
    Reason.TLS: "TLS handshake failed",
    Reason.TIMEOUT: "no complete answer in time",
    Reason.RESET: "connection closed before a complete answer",
    Reason.TOO_LARGE: "reply larger than max_reply_bytes",
    Reason.HTTP_404: "the package server runs without its imaging API",
    Reason.HTTP_500: "the package server failed",
    Reason.HTTP_STATUS: "another HTTP status (a proxy's 502/503?)",
    Reason.FAULT: "XML-RPC fault",
    Reason.MALFORMED: "not the expected XML-RPC reply",
}


def selector(metric: str, *matchers: str) -> str:
    """A selector that every query uses: the dashboard's job and entity, then extra matchers."""
    return "{}{{{}}}".format(metric, ", ".join(['job=~"$job"', 'entity=~"$entity"', *matchers]))


def status_code(window: str | None = None) -> str:
    """One number per entity for its status (``STATUSES`` codes), from the one-hot series.

    With a window, the worst status seen in it, so that a short outage is never
    hidden between two points of a graph.
    """
    parts = []
    for style in STATUSES:
        series = selector(STATUS_METRIC, f'status="{style.status.value}"')
        if window is not None:
            series = f"max_over_time({series}[{window}])"
        parts.append(f"{series} * {style.code}")
    return "max by (entity) (\n  " + "\n  or ".join(parts) + "\n)"


def status_mappings(action: bool = False) -> list[model.ValueMapping]:
    """Status codes to the page's words (or its recommended action) and colours."""
    return [
        model.ValueMap(
            {
                str(s.code): model.ValueMappingResult(
                    text=s.action if action else s.text, color=s.color, index=i
                )
                for i, s in enumerate(STATUSES)
            }
        )
    ]


def reason_mappings() -> list[model.ValueMapping]:
    return [
        model.ValueMap(
            {
                r.value: model.ValueMappingResult(text=f"{r.value}: {words}", index=i)
                for i, (r, words) in enumerate(REASONS.items())
            }
        )
    ]


def query(
    expr: str,
    ref_id: str = "A",
    legend: str = "{{entity}}",
    instant: bool = True,
    table_format: bool = False,
) -> prom.Dataquery:
    q = prom.Dataquery().expr(expr).ref_id(ref_id).datasource(DATASOURCE).legend_format(legend)
    q = q.instant() if instant else q.range()
    if table_format:
        q = q.format(PromQueryFormat.TABLE)
    return q


class _Panel(Protocol):
    """The builder methods that every panel type of the SDK shares."""

    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: model.DataSourceRef) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...
    def unit(self, unit: str) -> Self: ...
    def targets(self, targets: list[Builder[Dataquery]]) -> Self: ...


P = TypeVar("P", bound=_Panel)


def panel(
    builder: P,
    title: str,
    description: str,
    targets: list[prom.Dataquery],
    size: tuple[int, int],
    unit: str,
) -> P:
    """Settings that every panel gets: the datasource variable, a description and a unit."""
    width, height = size
    return (
        builder.title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(targets))
        .span(width)
        .height(height)
        .unit(unit)
    )


def legend() -> common_builders.VizLegendOptions:
    """A list below the graph: which colour is which status or which part of a bar."""
    return (
        common_builders.VizLegendOptions()
        .show_legend(True)
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
    )


def last_value() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def status_stat(title: str, description: str, size: tuple[int, int], action: bool) -> stat.Panel:
    return (
        panel(stat.Panel(), title, description, [query(status_code())], size, "none")
        .mappings(status_mappings(action))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .text_mode(
            common.BigValueTextMode.VALUE if action else common.BigValueTextMode.VALUE_AND_NAME
        )
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(last_value())
    )


def overview() -> list[Builder[model.Panel]]:
    """Every selected entity at once: status now, why it failed, status over time."""
    reasons = (
        panel(
            table.Panel(),
            "Failure reasons",
            "Why the last probe of each failing entity failed, from a fixed list.",
            [
                query(
                    selector("medulla_imaging_probe_failure_reason") + " == 1",
                    table_format=True,
                )
            ],
            (12, 6),
            "string",
        )
        .override_by_name("reason", [model.DynamicConfigValue("mappings", reason_mappings())])
        .with_transformation(
            model.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {
                        "Time": True,
                        "Value": True,
                        "__name__": True,
                        "instance": True,
                        "job": True,
                    },
                    "indexByName": {"entity": 0, "reason": 1},
                },
            )
        )
    )
    availability = (
        panel(
            bargauge.Panel(),
            "Availability over the time range",
            "Share of probes that found the server available, over the dashboard's time range.",
            [query(f"avg_over_time({selector('medulla_imaging_server_up')}[$__range])")],
            (12, 6),
            "percentunit",
        )
        .min(0)
        .max(1)
        .thresholds(
            dash.ThresholdsConfig()
            .mode(model.ThresholdsMode.ABSOLUTE)
            .steps(
                [
                    model.Threshold(None, "red"),
                    model.Threshold(0.95, "orange"),
                    model.Threshold(0.999, "green"),
                ]
            )
        )
        .display_mode(common.BarGaugeDisplayMode.BASIC)
        .reduce_options(last_value())
    )
    timeline = (
        panel(
            statetimeline.Panel(),
            "Status over time",
            "The worst status of each entity in each interval.",
            [query(status_code("$__interval"), instant=False)],
            (24, 7),
            "none",
        )
        .mappings(status_mappings())
        .show_value(common.VisibilityMode.NEVER)
        .legend(legend())
    )
    return [
        status_stat(
            "Imaging server status",
            "The status that Medulla's page shows for each entity.",
            (24, 4),
            action=False,
        ),
        reasons,
        availability,
        timeline,
    ]


def entity_row() -> list[Builder[model.Panel]]:
    """The panels of one entity's page, repeated for each selected entity."""
    fs_avail = selector("medulla_imaging_filesystem_avail_bytes")
    fs_used = selector("medulla_imaging_filesystem_used_bytes")
    disks = (
        panel(
            barchart.Panel(),
            "Available disk space",
            "One bar per partition of the imaging server: used and available space (df -k).",
            [
                query(
                    f'label_join({used}, "partition", " on ", "device", "mountpoint")',
                    ref_id=ref,
                    table_format=True,
                )
                for ref, used in (("A", fs_used), ("B", fs_avail))
            ],
            (12, 6),
            "bytes",
        )
        .with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            model.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {
                        name: True
                        for name in (
                            "Time",
                            "__name__",
                            "device",
                            "entity",
                            "instance",
                            "job",
                            "mountpoint",
                        )
                    },
                    "renameByName": {"Value #A": "Used", "Value #B": "Available"},
                },
            )
        )
        .x_field("partition")
        .orientation(common.VizOrientation.HORIZONTAL)
        .stacking(common.StackingMode.NORMAL)
        .show_value(common.VisibilityMode.ALWAYS)
        .legend(legend())
        .override_by_name("Used", [fixed_color("orange")])
        .override_by_name("Available", [fixed_color("green")])
    )
    masters = values(
        "Masters storage",
        "The partition that holds the masters: used share and space available.",
        [
            (selector("medulla_imaging_masters_storage_used_ratio"), "Used"),
            (selector("medulla_imaging_masters_storage_avail_bytes"), "Available"),
        ],
        "percentunit",
    ).override_by_query("B", [model.DynamicConfigValue("unit", "bytes")])
    uptime = selector("medulla_imaging_uptime_seconds")
    up_since = counts(
        "Up since",
        "How long the imaging server has run without a reboot, as the page shows it.",
        [
            (f"floor({uptime} / 86400)", "days"),
            (f"floor({uptime} % 86400 / 3600)", "hours"),
            (f"floor({uptime} % 3600 / 60)", "minutes"),
        ],
    )
    memory = bars(
        "Memory",
        "Memory used by processes, used by buffers and cache, and the total; bars share "
        "the total's scale.",
        [
            ("medulla_imaging_memory_used_bytes", "Used"),
            ("medulla_imaging_memory_buff_cache_bytes", "Buffers/cache"),
            ("medulla_imaging_memory_total_bytes", "Total"),
        ],
        (8, 6),
        "bytes",
    )
    swap = bars(
        "Swap",
        "Swap in use and total swap (the page never showed swap).",
        [
            ("medulla_imaging_swap_used_bytes", "Used"),
            ("medulla_imaging_swap_total_bytes", "Total"),
        ],
        (4, 6),
        "bytes",
    )
    statistics = counts(
        "Entity statistics",
        "Clients registered in the entity, those with a rescue image, masters available.",
        [
            (selector("medulla_imaging_clients_registered"), "Clients registered"),
            (selector("medulla_imaging_clients_with_rescue_image"), "With a rescue image"),
            (selector("medulla_imaging_masters_available"), "Masters available"),
        ],
    )
    rescue = bars(
        "Clients with a rescue image",
        "Clients with a rescue image, out of the clients registered in the entity.",
        [
            ("medulla_imaging_clients_with_rescue_image", "With a rescue image"),
            ("medulla_imaging_clients_registered", "Registered"),
        ],
        (6, 6),
        "none",
    )
    reason = (
        panel(
            stat.Panel(),
            "Failure reason",
            "Why the last probe failed; empty while the server is available.",
            [
                query(
                    selector("medulla_imaging_probe_failure_reason") + " == 1",
                    legend="{{reason}}",
                )
            ],
            (6, 4),
            "none",
        )
        .text_mode(common.BigValueTextMode.NAME)
        .color_mode(common.BigValueColorMode.NONE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .no_value("none")
        .reduce_options(last_value())
    )
    duration = (
        panel(
            timeseries.Panel(),
            "Probe duration",
            "The longest probe of the imaging server in each interval.",
            [
                query(
                    f"max_over_time({selector('medulla_imaging_probe_duration_seconds')}"
                    "[$__interval])",
                    instant=False,
                )
            ],
            (24, 6),
            "s",
        )
        .min(0)
        .fill_opacity(10)
    )
    return [
        status_stat(
            "Status",
            "The imaging server's status, as Medulla's page shows it.",
            (4, 4),
            action=False,
        ),
        status_stat(
            "Recommended action",
            "What the user guide recommends for this status.",
            (14, 4),
            action=True,
        ),
        reason,
        disks,
        masters,
        up_since,
        memory,
        swap,
        statistics,
        rescue,
        duration,
    ]


def fixed_color(color: str) -> model.DynamicConfigValue:
    return model.DynamicConfigValue("color", {"mode": "fixed", "fixedColor": color})


def queries(series: list[tuple[str, str]]) -> list[prom.Dataquery]:
    """One instant query per (expression, legend), with ref ids A, B, C..."""
    return [
        query(expr, ref_id=chr(ord("A") + i), legend=legend)
        for i, (expr, legend) in enumerate(series)
    ]


def values(title: str, description: str, series: list[tuple[str, str]], unit: str) -> stat.Panel:
    """Figures side by side with their names, as the page writes them."""
    return (
        panel(stat.Panel(), title, description, queries(series), (6, 6), unit)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(last_value())
    )


def counts(title: str, description: str, series: list[tuple[str, str]]) -> stat.Panel:
    """Whole numbers, uncoloured: counts and durations in days, hours, minutes."""
    return (
        values(title, description, series, "none")
        .decimals(0)
        .color_mode(common.BigValueColorMode.NONE)
    )


def bars(
    title: str,
    description: str,
    metrics: list[tuple[str, str]],
    size: tuple[int, int],
    unit: str,
) -> bargauge.Panel:
    """Bars on one scale (from 0 to the largest), so that a part reads against its whole."""
    targets = queries([(selector(metric), legend) for metric, legend in metrics])
    return (
        panel(bargauge.Panel(), title, description, targets, size, unit)
        .min(0)
        .display_mode(common.BarGaugeDisplayMode.BASIC)
        .orientation(common.VizOrientation.HORIZONTAL)
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.PALETTE_CLASSIC))
        .reduce_options(last_value())
    )


def label_variable(name: str, values_query: str) -> dash.QueryVariable:
    """A label's values, multi-select with "All" as ``.+`` (the dashboard linter's rule)."""
    return (
        dash.QueryVariable(name)
        .label(name.capitalize())
        .datasource(DATASOURCE)
        .query(values_query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".+")
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def variables() -> list[Builder[model.VariableModel]]:
    """``datasource`` first (works with file provisioning, unlike ``__inputs``)."""
    return [
        dash.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        label_variable("job", f"label_values({STATUS_METRIC}, job)"),
        label_variable("entity", f'label_values({STATUS_METRIC}{{job=~"$job"}}, entity)'),
    ]


def build() -> model.Dashboard:
    board = (
        dash.Dashboard("Medulla imaging servers")
        .uid(UID)
        .description(
            "Medulla's 'Imaging server status' page for every entity at once, from "
            "medulla-imaging-exporter."
        )
        .tags(["medulla", "imaging", "prometheus"])
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .variables(variables())
    )
    sections = (
        (dash.Row("Overview"), overview()),
        (dash.Row("$entity").repeat("entity"), entity_row()),
    )
    for row, panels in sections:
        board = board.with_row(row)
        for p in panels:
            board = board.with_panel(p)
    built = board.build()
    # Unique ids, in reading order: Grafana keys repeats and links to a panel on them.
    for number, built_panel in enumerate(built.panels or [], start=1):
        built_panel.id_val = number
    return built


def render() -> str:
    """The dashboard as committed: stable key order, one trailing newline."""
    return json.dumps(build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main() -> int:
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
