"""The exporter's memory around scrapes: the cyclic collector tuned at start-up and paused
in scrapes, the C heap trimmed after them."""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from medulla_imaging_exporter import gcpolicy, web
from medulla_imaging_exporter.config import Config, Entity
from medulla_imaging_exporter.gcpolicy import THRESHOLD, paused_during_scrape, trim_c_heap, tune
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


def _rss_bytes() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) * 1024


def test_trimming_gives_the_c_heaps_free_pages_back() -> None:
    """Freed blocks below the heap's top stay resident until trimmed (glibc, as in the image)."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size, count = 64 * 1024, 800  # 50 MB in blocks under the mmap threshold: in the heap
    blocks = [libc.malloc(size) for _ in range(count)]
    for block in blocks:
        ctypes.memset(block, 1, size)  # make them resident
    for block in blocks[:-1]:  # the last one keeps the heap's top where it is
        libc.free(block)
    before = _rss_bytes()
    assert trim_c_heap()
    assert before - _rss_bytes() > size * count // 2
    libc.free(blocks[-1])


def test_a_few_free_bytes_are_not_worth_a_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gcpolicy, "TRIM_FREE_BYTES", 1 << 60)
    assert not trim_c_heap()


@pytest.mark.usefixtures("restore_gc")
def test_the_heap_is_trimmed_once_when_the_last_of_overlapping_scrapes_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trims: list[int] = []
    monkeypatch.setattr(gcpolicy, "trim_c_heap", lambda: trims.append(1))
    with paused_during_scrape():
        with paused_during_scrape():
            pass
        assert trims == []
    assert trims == [1]
