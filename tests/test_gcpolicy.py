"""The exporter's use of the cyclic garbage collector: tuned at start-up, paused in scrapes."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import httpx
import pytest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from medulla_imaging_exporter import web
from medulla_imaging_exporter.config import Config, Entity
from medulla_imaging_exporter.gcpolicy import THRESHOLD, paused_during_scrape, tune
from medulla_imaging_exporter.prober import Prober
from medulla_imaging_exporter.runtime import Runtime
from tests.conftest import MakeServer
from tests.helpers import serving


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)
    (gc.enable if enabled else gc.disable)()


@pytest.mark.usefixtures("restore_gc")
def test_tune_freezes_start_up_objects_and_raises_the_threshold() -> None:
    gc.unfreeze()
    tune()
    assert gc.get_threshold()[0] == THRESHOLD > 700
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("restore_gc")
def test_the_collector_waits_until_the_last_of_overlapping_scrapes_ends() -> None:
    gc.enable()
    with paused_during_scrape():
        assert not gc.isenabled()
        with paused_during_scrape():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the first scrape still runs
    assert gc.isenabled()


@pytest.mark.usefixtures("restore_gc")
def test_a_failed_scrape_still_brings_the_collector_back() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), paused_during_scrape():
        raise RuntimeError("the scrape failed")
    assert gc.isenabled()


@pytest.mark.usefixtures("restore_gc")
def test_a_collector_disabled_by_someone_else_stays_disabled() -> None:
    gc.disable()
    with paused_during_scrape():
        pass
    assert not gc.isenabled()


@pytest.mark.usefixtures("restore_gc")
async def test_a_probe_leaves_no_reference_cycle(
    make_server: MakeServer, entity_for: Callable[..., Entity]
) -> None:
    """What the pause relies on: probes are freed by reference counting alone."""
    entity = entity_for(await make_server())
    prober = Prober()
    try:
        await prober.probe(entity)  # connects: not counted
        gc.collect()
        gc.disable()
        for _ in range(5):
            await prober.probe(entity)
        assert gc.collect() == 0
    finally:
        await prober.aclose()


class _Witness(Collector):
    """A collector of the process's own kind that notes whether the collector ran."""

    def __init__(self) -> None:
        self.enabled: list[bool] = []

    def collect(self) -> list[Metric]:
        self.enabled.append(gc.isenabled())
        return []


@pytest.mark.usefixtures("restore_gc")
async def test_metrics_is_encoded_with_the_collector_paused(
    make_server: MakeServer,
    entity_for: Callable[..., Entity],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gc.enable()
    witness = _Witness()
    monkeypatch.setattr(web, "_PROCESS_COLLECTORS", [*web._PROCESS_COLLECTORS, witness])
    entity = entity_for(await make_server(), name="Public")
    runtime = Runtime(lambda: Config(entities=(entity,)))
    async with serving(runtime) as base, httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/metrics")).status_code == 200
    assert witness.enabled == [False]  # the scrape ran paused
    assert gc.isenabled()  # and the collector came back
