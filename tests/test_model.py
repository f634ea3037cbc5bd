"""The values a probe leaves behind: one set per entity, and a hundred in the history."""

from __future__ import annotations

import dataclasses

import pytest

from medulla_imaging_exporter import history, model, transport

KEPT = [
    *(
        cls
        for cls in vars(model).values()
        if dataclasses.is_dataclass(cls) and cls.__module__ == model.__name__
    ),
    history.ProbeRecord,
    transport.Exchange,
    transport.WireEvents,
]


@pytest.mark.parametrize("cls", KEPT, ids=lambda cls: cls.__name__)
def test_kept_values_have_slots_not_a_dictionary_each(cls: type) -> None:
    """A dictionary per object is about 100 bytes more: several objects per entity, a
    thousand entities, and as many probes in flight."""
    assert "__slots__" in vars(cls)
    assert "__dict__" not in dir(cls)


def test_the_model_classes_are_found() -> None:
    assert {model.EntityStatus, model.Reply, model.Filesystem, model.Stats} <= set(KEPT)
