from __future__ import annotations

from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from medulla_imaging_exporter import collector
from medulla_imaging_exporter.collector import ScrapeCollector
from medulla_imaging_exporter.config import Entity
from medulla_imaging_exporter.exposition import GaugeFamily
from medulla_imaging_exporter.model import EntityStatus, Reason, Reply, Section, Status
from medulla_imaging_exporter.parsing import parse_body
from tests.helpers import Samples, fixture_bytes, metric_samples

PUBLIC = Entity("Public", uuid="UUID2", url="https://u:pw@imaging:9990/imaging_api")
GENERAL = Entity("General", url="https://general:9990/imaging_api")
ROOT = Entity("Siveo Medulla", uuid="UUID1")


def samples(entities: list[Entity], statuses: list[EntityStatus]) -> Samples:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector(entities, statuses))
    return metric_samples(generate_latest(registry).decode())


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def available(reply: Reply) -> EntityStatus:
    return EntityStatus(
        "Public",
        Status.AVAILABLE,
        started_at=2_000_000.0,
        duration_seconds=0.02,
        reply=reply,
        cert_not_after=3e10,
    )


def test_available_entity_exposes_the_whole_page() -> None:
    reply = parse_body(fixture_bytes("replies/public-procps-ng.xml"))
    got = samples([PUBLIC], [available(reply)])
    assert got[key("medulla_imaging_server_status", entity="Public", status="available")] == 1
    assert got[key("medulla_imaging_server_status", entity="Public", status="offline")] == 0
    assert got[key("medulla_imaging_server_up", entity="Public")] == 1
    root = {"entity": "Public", "device": "/dev/vda3", "mountpoint": "/"}
    assert got[key("medulla_imaging_filesystem_used_bytes", **root)] == 17301504 * 1024
    assert got[key("medulla_imaging_filesystem_avail_bytes", **root)] == 80425780 * 1024
    assert got[key("medulla_imaging_memory_total_bytes", entity="Public")] == 8178893 * 1024
    assert got[key("medulla_imaging_uptime_seconds", entity="Public")] == 1123602.57
    assert got[key("medulla_imaging_boot_time_seconds", entity="Public")] == round(
        2_000_000.0 - 1123602.57
    )
    assert got[key("medulla_imaging_masters_storage_used_ratio", entity="Public")] == 0.18
    assert got[key("medulla_imaging_tls_cert_not_after_timestamp_seconds", entity="Public")] == 3e10
    assert (
        got[
            key(
                "medulla_imaging_entity_info",
                entity="Public",
                uuid="UUID2",
                server="https://imaging:9990/imaging_api",
            )
        ]
        == 1
    )
    assert all(
        got[key("medulla_imaging_section_up", entity="Public", section=s.value)] == 1
        for s in Section
    )
    assert sum(v for (n, _), v in got.items() if n == "medulla_imaging_probe_failure_reason") == 0


def test_failed_sections_are_absent_not_zero() -> None:
    reply = parse_body(fixture_bytes("replies/all-sections-failed.xml"))
    got = samples([PUBLIC], [available(reply)])
    names = {n for n, _ in got}
    assert "medulla_imaging_memory_total_bytes" not in names
    assert "medulla_imaging_filesystem_used_bytes" not in names
    assert "medulla_imaging_uptime_seconds" not in names
    assert got[key("medulla_imaging_section_up", entity="Public", section="mem_info")] == 0
    assert got[key("medulla_imaging_section_up", entity="Public", section="stats")] == 1
    assert got[key("medulla_imaging_masters_available", entity="Public", source="reply")] == 0


def test_failed_and_unlinked_entities() -> None:
    offline = EntityStatus("General", Status.OFFLINE, Reason.REFUSED, duration_seconds=0.001)
    got = samples([GENERAL, ROOT], [offline, EntityStatus("Siveo Medulla", Status.NOT_LINKED)])
    assert got[key("medulla_imaging_server_status", entity="General", status="offline")] == 1
    assert got[key("medulla_imaging_server_up", entity="General")] == 0
    assert got[key("medulla_imaging_probe_failure_reason", entity="General", reason="refused")] == 1
    reasons = [
        v
        for (n, labels), v in got.items()
        if n == "medulla_imaging_probe_failure_reason" and ("reason", "refused") not in labels
    ]
    assert len(reasons) == len(Reason) - 1 and not any(reasons)
    assert (
        got[key("medulla_imaging_server_status", entity="Siveo Medulla", status="not_linked")] == 1
    )
    # an entity with no server has no up, no reason, no duration
    root_series = {n for n, labels in got if ("entity", "Siveo Medulla") in labels}
    assert root_series == {"medulla_imaging_server_status", "medulla_imaging_entity_info"}


def test_one_series_per_state() -> None:
    got = samples([ROOT], [EntityStatus("Siveo Medulla", Status.NOT_LINKED)])
    states = [v for (n, _), v in got.items() if n == "medulla_imaging_server_status"]
    assert sorted(states) == [0, 0, 0, 1]


def test_statuses_of_unknown_entities_are_dropped() -> None:
    """A status that outlived a reload must not resurrect the series of a removed entity."""
    got = samples([ROOT], [EntityStatus("Removed", Status.OFFLINE, Reason.DNS)])
    assert not any(("entity", "Removed") in labels for _, labels in got)


def test_each_family_is_made_only_when_the_next_one_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The exposition writes a family before it asks for the next: only one family's rows
    are in memory at a time (fifty thousand at a thousand entities)."""
    made: list[str] = []
    gauge = collector._gauge

    def spy(name: str, doc: str, labels: Sequence[str] = ("entity",)) -> GaugeFamily:
        made.append(name)
        return gauge(name, doc, labels)

    monkeypatch.setattr(collector, "_gauge", spy)
    reply = parse_body(fixture_bytes("replies/public-procps-ng.xml"))
    families = ScrapeCollector([PUBLIC], [available(reply)]).collect()
    assert next(iter(families)).name == "medulla_imaging_entity" and made == []
    names = {family.name for family in families}
    assert made and all(f"medulla_imaging_{m}" in names for m in made)
