"""The fast exposition must equal prometheus_client's, byte for byte, in every format."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from medulla_imaging_exporter.collector import ExporterCollector, ReloadState, ScrapeCollector
from medulla_imaging_exporter.config import Entity
from medulla_imaging_exporter.exposition import (
    Carried,
    GaugeFamily,
    StateFamily,
    encode,
    encode_chunks,
)
from medulla_imaging_exporter.model import (
    EntityStatus,
    Filesystem,
    MastersStorage,
    Memory,
    Reason,
    Reply,
    Section,
    Stats,
    Status,
)

ACCEPT = [
    "",
    "*/*",
    # Prometheus 2.42's header: OpenMetrics first
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "application/openmetrics-text",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    "text/plain;version=1.0.0;escaping=dots",
]


class Frozen(Collector):
    """Families collected once, so that both encoders see the very same values."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> list[Metric]:
        return self.metrics


def reference(collectors: Sequence[Collector], accept: str) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def scrape_collectors() -> list[Collector]:
    """Every status and reason, odd names, a partial reply, and the process's own families."""
    reply = Reply(
        filesystems=(
            Filesystem("/dev/vda3", "/", 105327201280, 17716740096, 82355998720),
            Filesystem("/dev/mapper/x", "/mnt/with space", 1, 0, 1),
        ),
        memory=Memory(8 << 30, 3 << 30, 1 << 30, 4 << 30, 5 << 30, None, None),
        uptime_seconds=1123602.57,
        masters_storage=MastersStorage(0.18, 78540 << 20),
        stats=Stats(3, 1, 2),
    )
    partial = Reply(
        uptime_seconds=5.0, section_errors={Section.DISK_INFO: "-1", Section.MEM_INFO: "-1"}
    )
    names = ["Public", 'Quo"te', "Back\\slash", "New\nline", "Ünïcödé 日本", ""]
    entities = [
        Entity(name=n, uuid=f"UUID{i}", url=f"https://u:p@h{i}:9990/imaging_api")
        for i, n in enumerate(names)
    ] + [Entity(name="Root")]
    statuses = [
        EntityStatus(names[0], Status.AVAILABLE, None, "", time.time(), 0.0123, reply, 1.8e9),
        EntityStatus(names[1], Status.AVAILABLE, None, "", 1.7e9, 1e-7, partial, None),
        EntityStatus(names[2], Status.OFFLINE, Reason.REFUSED, "x", 1.7e9, 0.001),
        EntityStatus(names[3], Status.CONNECTION_ERROR, Reason.TLS_VERIFY, "y", 1.7e9, 2.0),
        EntityStatus(names[4], Status.CONNECTION_ERROR, Reason.FAULT, "z", 1.7e9, math.inf),
        EntityStatus(names[5], Status.CONNECTION_ERROR, Reason.TIMEOUT, "", None, None),
        EntityStatus("Root", Status.NOT_LINKED),
    ]
    live: list[Collector] = [
        ScrapeCollector(entities, statuses),
        ExporterCollector(ReloadState(True, 1.7e9)),
        ProcessCollector(registry=None),
        PlatformCollector(registry=None),
        GCCollector(registry=CollectorRegistry()),
    ]
    return [Frozen(c.collect()) for c in live]


@pytest.mark.parametrize("accept", ACCEPT)
def test_a_whole_scrape_is_encoded_as_prometheus_client_does(accept: str) -> None:
    collectors = scrape_collectors()
    body, content_type = encode(collectors, accept)
    expected_body, expected_type = reference(collectors, accept)
    assert content_type == expected_type
    assert body.decode() == expected_body.decode()
    assert b"medulla_imaging_server_up" in body or b"medulla__imaging" in body


labels = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
values = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**60), 2**60).map(float)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(labels, labels, values), max_size=6),
    doc=st.text(max_size=20),
    accept=st.sampled_from(ACCEPT),
)
def test_any_label_value_number_and_help_text(
    rows: list[tuple[str, str, float]], doc: str, accept: str
) -> None:
    gauge = GaugeMetricFamily("g_bytes", doc, labels=["entity", "a_label"])
    bare = GaugeMetricFamily("bare", doc)
    info = InfoMetricFamily("thing", doc, labels=["entity"])
    counter = CounterMetricFamily("c", doc, labels=["entity"])
    created = CounterMetricFamily("cc", doc, labels=["entity"])  # with _created: the library's
    unit = GaugeMetricFamily("u_seconds", doc, unit="seconds")  # not plain either
    odd_label = GaugeMetricFamily("odd", doc, labels=["entity", "lé"])  # nor a UTF-8 label name
    stamped = GaugeMetricFamily("stamped", doc, labels=["entity"])  # nor a timestamp
    rows_gauge = GaugeFamily("rows_bytes", doc, ["entity", "a_label"])  # label values once
    rows_bare = GaugeFamily("rows_bare", doc, [])
    rows_odd = GaugeFamily("rows_odd", doc, ["entity", "lé"])  # back to the library's path
    states = StateFamily("states", doc, ["entity", "state"], ["a", "b\\", 'c"\n'])
    states_odd = StateFamily("states_odd", doc, ["entity", "é"], ["a", "b"])
    for a, b, v in rows:
        gauge.add_metric([a, b], v)
        bare.add_metric([], v)
        info.add_metric([a], {"x": b})
        counter.add_metric([a], abs(v) if not math.isnan(v) else 0.0)
        created.add_metric([a], abs(v) if not math.isnan(v) else 0.0, created=1.5)
        unit.add_metric([], v)
        odd_label.add_metric([a, b], v)
        stamped.add_metric([a], v, timestamp=1.5)
        rows_gauge.add_metric([a, b], v)
        rows_bare.add_metric([], v)
        rows_odd.add_metric([a, b], v)
        states.add_state([a], None if v != v else "a" if v > 0 else 'c"\n')
        states_odd.add_state([a], "b")
    families = [
        gauge,
        bare,
        info,
        counter,
        created,
        unit,
        odd_label,
        stamped,
        rows_gauge,
        rows_bare,
        rows_odd,
        states,
        states_odd,
    ]
    collectors: list[Collector] = [Frozen(families)]
    assert encode(collectors, accept) == reference(collectors, accept)


def test_a_gauge_family_keeps_its_rows_as_prometheus_client_samples() -> None:
    family = GaugeFamily("g", "doc", ["entity", "section"])
    family.add_metric(["Public", "disk_info"], 1.0)
    reference = GaugeMetricFamily("g", "doc", labels=["entity", "section"])
    reference.add_metric(["Public", "disk_info"], 1.0)
    assert family.samples == reference.samples
    assert family == reference


def test_a_gauge_family_refuses_rows_that_do_not_fit() -> None:
    family = GaugeFamily("g", "doc", ["entity", "section"])
    with pytest.raises(ValueError, match=r"expected labels \('entity', 'section'\)"):
        family.add_metric(["Public"], 1.0)
    with pytest.raises(TypeError, match="add_metric"):
        family.samples = reference_samples()
    assert family.rows == []


def reference_samples() -> list[Sample]:
    reference = GaugeMetricFamily("g", "doc", labels=["entity"])
    reference.add_metric(["Public"], 1.0)
    return list(reference.samples)


@pytest.mark.parametrize("accept", ACCEPT)
def test_label_sets_carried_from_the_last_scrape_change_nothing(accept: str) -> None:
    carried = Carried()
    first = scrape_collectors()
    assert encode(first, accept, carried) == reference(first, accept)
    again = scrape_collectors()
    assert encode(again, accept, carried) == reference(again, accept)


def test_only_the_last_scrapes_label_sets_are_carried() -> None:
    carried = Carried()
    public = Entity(name="Public", url="https://h:9990/imaging_api")
    general = Entity(name="General", url="https://g:9990/imaging_api")
    both = [
        EntityStatus("Public", Status.AVAILABLE, started_at=1.7e9, duration_seconds=0.1),
        EntityStatus("General", Status.OFFLINE, Reason.REFUSED, "x", 1.7e9, 0.1),
    ]
    encode([ScrapeCollector([public, general], both)], "", carried)
    # A state block is carried whole, not also its label sets: 19 per entity.
    assert {("entity", "status"), ("entity", "reason")}.isdisjoint(carried.label_texts)
    collectors: list[Collector] = [ScrapeCollector([public], both[:1])]  # General removed
    assert encode(collectors, "", carried) == reference(collectors, "")
    kept = {values for texts in carried.label_texts.values() for values in texts}
    assert ("Public",) in kept  # the label set of an entity's gauges, for the next scrape
    assert ("General",) not in kept
    statuses = carried.blocks["medulla_imaging_server_status"]
    assert set(statuses) == {(("Public",), "available")}  # its block of status lines
    assert statuses[("Public",), "available"].startswith(
        'medulla_imaging_server_status{entity="Public",status="available"} 1.0\n'
    )


def test_states_are_one_series_each_with_one_set() -> None:
    family = StateFamily("g", "doc", ["entity", "status"], ["available", "offline"])
    family.add_state(("Public",), "offline")
    family.add_state(("Root",), None)
    assert family.rows == [
        (("Public", "available"), 0.0),
        (("Public", "offline"), 1.0),
        (("Root", "available"), 0.0),
        (("Root", "offline"), 0.0),
    ]
    reference = GaugeMetricFamily("g", "doc", labels=["entity", "status"])
    for (entity, status), value in family.rows:
        reference.add_metric([entity, status], value)
    assert family.samples == reference.samples
    with pytest.raises(ValueError, match=r"expected labels \('entity',\)"):
        family.add_state(("Public", "extra"), None)
    with pytest.raises(TypeError, match="add_state"):
        family.add_metric(("Public", "offline"), 1.0)


@pytest.mark.parametrize("accept", ACCEPT)
def test_chunks_are_whole_families_that_join_into_the_exposition(accept: str) -> None:
    collectors = scrape_collectors()
    expected, content_type = reference(collectors, accept)
    chunks, chunked_type = encode_chunks(collectors, accept, chunk_bytes=512)
    parts = list(chunks)
    assert chunked_type == content_type
    assert b"".join(parts) == expected
    if "escaping=dots" in accept:  # prometheus_client's own encoder: the body in one piece
        assert len(parts) == 1
        return
    assert len(parts) > 3
    for part in parts[:-1]:
        assert len(part) >= 512
        assert part.startswith(b"# HELP ") and part.endswith(b"\n")
    # no family is cut between two chunks; OpenMetrics' "# EOF" may come alone
    assert parts[-1].startswith(b"# HELP ") or parts[-1] == b"# EOF\n"


def test_carried_label_sets_are_replaced_only_once_the_last_chunk_is_made() -> None:
    carried = Carried()
    encode(scrape_collectors(), "", carried)
    before = carried.label_texts
    chunks, _ = encode_chunks(scrape_collectors(), "", carried, chunk_bytes=512)
    next(chunks)
    assert carried.label_texts is before  # a scrape cut short leaves the last one's
    list(chunks)
    assert carried.label_texts is not before
    assert carried.blocks["medulla_imaging_server_status"]
