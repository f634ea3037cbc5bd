"""The garbage collector tuning the exporter applies at start-up."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from medulla_imaging_exporter.cli import GC_THRESHOLD, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restore_gc")
def test_tune_gc_freezes_start_up_objects_and_raises_the_threshold() -> None:
    gc.unfreeze()
    tune_gc()
    assert gc.get_threshold()[0] == GC_THRESHOLD > 700
    assert gc.get_freeze_count() > 0
