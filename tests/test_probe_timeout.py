"""The probe's deadline is exported, so an alert can tell a probe that nears its timeout."""

from __future__ import annotations

import asyncio

from medulla_imaging_exporter.collector import entity_metrics
from medulla_imaging_exporter.config import Entity
from medulla_imaging_exporter.model import EntityStatus, Status
from medulla_imaging_exporter.simulator import Behaviour
from tests.conftest import MakeServer
from tests.test_prober import EntityFor, started


def _timeout_samples(entities: list[Entity], statuses: list[EntityStatus]) -> dict[str, float]:
    family = next(
        m
        for m in entity_metrics(entities, statuses)
        if m.name == "medulla_imaging_probe_timeout_seconds"
    )
    return {s.labels["entity"]: s.value for s in family.samples}


async def test_timeout_is_the_entity_timeout_capped_by_the_scrape(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    ok = entity_for(await make_server(), "Public", timeout=2.0)
    refused = entity_for(await make_server(Behaviour.REFUSE), "General", timeout=0.5)
    root = entity_for(None, "Siveo Medulla")
    async with started(ok, refused, root) as prober:
        statuses = await prober.probe_all([ok, refused, root], timeout_cap=1.5)
    assert [s.status for s in statuses] == [Status.AVAILABLE, Status.OFFLINE, Status.NOT_LINKED]
    # Capped for Public, the entity's own for General, absent without a server.
    assert _timeout_samples([ok, refused, root], statuses) == {"Public": 1.5, "General": 0.5}


async def test_a_scrape_that_gives_up_on_a_joined_probe_reports_its_own_deadline(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    stalled = entity_for(await make_server(Behaviour.STALL_REPLY), "Private", timeout=1.0)
    async with started(stalled) as prober:
        # A probe already in flight on a longer deadline, joined by a shorter scrape.
        first = asyncio.create_task(prober.probe(stalled))
        await asyncio.sleep(0)
        joined = await prober.probe(stalled, timeout_cap=0.2)
        alone = await first
    assert joined.status is alone.status is Status.CONNECTION_ERROR
    assert joined.timeout_seconds == 0.2
    assert alone.timeout_seconds == 1.0
