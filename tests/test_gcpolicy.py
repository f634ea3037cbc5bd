"""The exporter's use of the cyclic garbage collector: tuned at start-up, paused in scrapes."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest

from medulla_imaging_exporter.config import Entity
from medulla_imaging_exporter.gcpolicy import THRESHOLD, paused_during_scrape, tune
from medulla_imaging_exporter.prober import Prober
from tests.conftest import MakeServer


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
