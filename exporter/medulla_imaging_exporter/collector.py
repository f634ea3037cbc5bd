"""Metric families built fresh from the statuses of one scrape.

The collector holds nothing between scrapes: an entity removed from the
configuration simply has no status, so its series are gone at the next scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from medulla_imaging_exporter import __version__
from medulla_imaging_exporter.config import Entity, redact_url
from medulla_imaging_exporter.exposition import GaugeFamily, StateFamily
from medulla_imaging_exporter.model import (
    DatabaseSnapshot,
    EntityStatus,
    Reason,
    Reply,
    Section,
    Stats,
    Status,
)

PREFIX = "medulla_imaging"


def _gauge(name: str, doc: str, labels: Sequence[str] = ("entity",)) -> GaugeFamily:
    return GaugeFamily(f"{PREFIX}_{name}", doc, labels)


# Per-reply gauges: (metric name, help, part of the Reply or None for the Reply, attribute).
_REPLY_GAUGES: list[tuple[str, str, str | None, str]] = [
    (
        "uptime_seconds",
        "Seconds since the imaging server booted (the page's 'up since').",
        None,
        "uptime_seconds",
    ),
    (
        "masters_storage_used_ratio",
        "Used fraction of the partition holding the masters folder (space_available).",
        "masters_storage",
        "used_ratio",
    ),
    (
        "masters_storage_avail_bytes",
        "Bytes available on the partition holding the masters folder (space_available).",
        "masters_storage",
        "avail_bytes",
    ),
    ("memory_total_bytes", "Total memory of the imaging server.", "memory", "total_bytes"),
    (
        "memory_used_bytes",
        "Memory used by processes, without buffers and cache.",
        "memory",
        "used_bytes",
    ),
    ("memory_free_bytes", "Memory not used at all.", "memory", "free_bytes"),
    (
        "memory_buff_cache_bytes",
        "Memory used by buffers and page cache.",
        "memory",
        "buff_cache_bytes",
    ),
    (
        "memory_available_bytes",
        "Memory available for new processes without swapping.",
        "memory",
        "available_bytes",
    ),
    ("swap_total_bytes", "Total swap space.", "memory", "swap_total_bytes"),
    ("swap_used_bytes", "Swap space in use.", "memory", "swap_used_bytes"),
]

# The entity statistics, from the imaging database when one is configured, else from the
# reply (which stock Medulla hard-codes to zeros); the ``source`` label says which.
_STATS_GAUGES = [
    (
        "clients_registered",
        "Clients registered in the entity (entity statistics).",
        "clients_registered",
    ),
    (
        "clients_with_rescue_image",
        "Clients of the entity that have a rescue image.",
        "clients_with_rescue_image",
    ),
    ("masters_available", "Masters available for deployment in the entity.", "masters_available"),
]
SOURCE_DATABASE = "database"
SOURCE_REPLY = "reply"


def entity_stats(
    entity: Entity, status: EntityStatus, database: DatabaseSnapshot | None
) -> tuple[Stats | None, str]:
    """The entity's statistics and their source; failed or unknown statistics are None."""
    if database is None:
        return (status.reply.stats if status.reply else None), SOURCE_REPLY
    if database.stats is None or entity.uuid is None:
        return None, SOURCE_DATABASE
    return database.stats.get(entity.uuid), SOURCE_DATABASE


def _read(reply: Reply, part: str | None, attribute: str) -> float | None:
    holder = reply if part is None else getattr(reply, part)
    value = None if holder is None else getattr(holder, attribute)
    return None if value is None else float(value)


_FILESYSTEM_GAUGES = [
    ("filesystem_size_bytes", "Size of a filesystem of the imaging server (df -k).", "size_bytes"),
    ("filesystem_used_bytes", "Used bytes of a filesystem of the imaging server.", "used_bytes"),
    ("filesystem_avail_bytes", "Bytes available to unprivileged users.", "avail_bytes"),
]


# Per-probe gauges: (metric name, help, attribute of the EntityStatus), absent when None.
_PROBE_GAUGES = [
    ("probe_duration_seconds", "How long the probe of the server took.", "duration_seconds"),
    (
        "probe_timeout_seconds",
        "The probe's deadline: the entity's timeout, capped by the scrape timeout.",
        "timeout_seconds",
    ),
    (
        "tls_cert_not_after_timestamp_seconds",
        "When the imaging server's TLS certificate expires.",
        "cert_not_after",
    ),
]

# Label values read once: an enum's ``.value`` is a slow property.
_STATUSES = [st.value for st in Status]
_REASONS = [r.value for r in Reason]
_SECTIONS = [(sec, sec.value) for sec in Section]


def entity_metrics(
    entities: Sequence[Entity],
    statuses: Iterable[EntityStatus],
    database: DatabaseSnapshot | None = None,
) -> Iterator[Metric]:
    """Every per-entity family, for the statuses of one scrape and the database snapshot.

    Each family is made when the exposition asks for the next one, so that the rows of
    only one family are in memory at a time (a thousand entities make fifty thousand).
    """
    by_name = {e.name: e for e in entities}
    known = [(by_name[s.entity], (s.entity,), s) for s in statuses if s.entity in by_name]
    probed = [(name, s) for _, name, s in known if s.status is not Status.NOT_LINKED]
    replied = [(name, s, s.reply) for name, s in probed if s.reply is not None]

    info = InfoMetricFamily(
        f"{PREFIX}_entity",
        "Entity and the imaging server linked to it.",
        labels=["entity", "uuid", "server"],
    )
    for entity, name, _ in known:
        info.add_metric(
            [*name, entity.uuid or "", redact_url(entity.url) if entity.url else ""], {}
        )
    yield info

    status_g = StateFamily(
        f"{PREFIX}_server_status",
        "1 for the server's current status, 0 for the others.",
        ["entity", "status"],
        _STATUSES,
    )
    for _, name, s in known:
        status_g.add_state(name, s.status.value)
    yield status_g

    up = _gauge("server_up", "1 if the imaging server answered with a usable status, else 0.")
    for name, s in probed:
        up.add_metric(name, 1.0 if s.status is Status.AVAILABLE else 0.0)
    yield up

    reason_g = StateFamily(
        f"{PREFIX}_probe_failure_reason",
        "1 for the reason the last probe failed, 0 for the others.",
        ["entity", "reason"],
        _REASONS,
    )
    for name, s in probed:
        reason_g.add_state(name, s.reason.value if s.reason else None)
    yield reason_g

    for metric, doc, attribute in _PROBE_GAUGES:
        gauge = _gauge(metric, doc)
        for name, s in probed:
            value = getattr(s, attribute)
            if value is not None:
                gauge.add_metric(name, value)
        yield gauge

    section_g = _gauge(
        "section_up", "1 if this section of the reply could be read, else 0.", ["entity", "section"]
    )
    for name, _, reply in replied:
        for sec, sec_label in _SECTIONS:
            section_g.add_metric((*name, sec_label), 0.0 if sec in reply.section_errors else 1.0)
    yield section_g

    boot = _gauge("boot_time_seconds", "When the imaging server booted (probe time - uptime).")
    for name, s, reply in replied:
        if reply.uptime_seconds is not None and s.started_at is not None:
            boot.add_metric(name, round(s.started_at - reply.uptime_seconds))
    yield boot

    for metric, doc, part, attribute in _REPLY_GAUGES:
        gauge = _gauge(metric, doc)
        for name, _, reply in replied:
            value = _read(reply, part, attribute)
            if value is not None:
                gauge.add_metric(name, value)
        yield gauge

    stats = [(s.entity, *entity_stats(entity, s, database)) for entity, _, s in known]
    for metric, doc, attribute in _STATS_GAUGES:
        gauge = _gauge(metric, doc, ["entity", "source"])
        for entity_name, entity_stat, source in stats:
            if entity_stat is not None:
                gauge.add_metric([entity_name, source], float(getattr(entity_stat, attribute)))
        yield gauge

    for metric, doc, attribute in _FILESYSTEM_GAUGES:
        gauge = _gauge(metric, doc, ["entity", "device", "mountpoint"])
        for name, _, reply in replied:
            for fs in reply.filesystems or ():
                gauge.add_metric([*name, fs.device, fs.mountpoint], float(getattr(fs, attribute)))
        yield gauge


class ScrapeCollector(Collector):
    """Registered in a fresh registry per request, with the statuses of that request."""

    def __init__(
        self,
        entities: Sequence[Entity],
        statuses: Sequence[EntityStatus],
        database: DatabaseSnapshot | None = None,
    ) -> None:
        self.entities = entities
        self.statuses = statuses
        self.database = database

    def collect(self) -> Iterable[Metric]:
        return entity_metrics(self.entities, self.statuses, self.database)


@dataclass
class ReloadState:
    """What the last configuration load did, for the exporter's own metrics."""

    successful: bool = True
    last_success_timestamp: float = 0.0


class ExporterCollector(Collector):
    """The exporter's own health: build, configuration reloads, the imaging database."""

    def __init__(self, reload_state: ReloadState, database: DatabaseSnapshot | None = None) -> None:
        self.reload_state = reload_state
        self.database = database

    def collect(self) -> Iterable[Metric]:
        build = _gauge(
            "exporter_build_info", "Always 1; the exporter's version as a label.", ["version"]
        )
        build.add_metric([__version__], 1.0)
        ok = _gauge(
            "exporter_config_last_reload_successful",
            "1 if the last configuration load succeeded, else 0.",
            [],
        )
        ok.add_metric([], 1.0 if self.reload_state.successful else 0.0)
        ts = _gauge(
            "exporter_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully.",
            [],
        )
        ts.add_metric([], self.reload_state.last_success_timestamp)
        return [build, ok, ts, *database_metrics(self.database)]


def database_metrics(database: DatabaseSnapshot | None) -> list[Metric]:
    """Whether the last refresh from the imaging database worked, present only with one."""
    if database is None:
        return []
    up = _gauge(
        "database_up", "1 if the last refresh from the imaging database worked, else 0.", []
    )
    up.add_metric([], 1.0 if database.up else 0.0)
    duration = _gauge(
        "database_query_duration_seconds",
        "How long the last refresh from the imaging database took, failed or not.",
        [],
    )
    if database.duration_seconds is not None:
        duration.add_metric([], database.duration_seconds)
    return [up, duration]
