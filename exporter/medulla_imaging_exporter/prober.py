"""Runs the probes of a scrape: every entity at once, one probe in flight per entity.

Each probe forks three commands on the imaging server, so concurrent scrapes
(two Prometheus servers, a person on the status page) join the probe already
running instead of starting another.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable, Sequence

from medulla_imaging_exporter.classify import classify
from medulla_imaging_exporter.config import Entity
from medulla_imaging_exporter.history import History
from medulla_imaging_exporter.model import EntityStatus
from medulla_imaging_exporter.transport import ImagingClient, WireEvents, snapshot

log = logging.getLogger(__name__)

# Floor for a deadline squeezed by a short scrape timeout: a probe needs some time.
MIN_TIMEOUT_SECONDS = 0.1


class _Flight:
    """A probe under way, with its live wire events for waiters that give up early."""

    def __init__(self, task: asyncio.Task[EntityStatus], events: WireEvents, t0: float) -> None:
        self.task = task
        self.events = events
        self.started_at = time.time()
        self.t0 = t0


async def _close_after(client: ImagingClient, flight: asyncio.Task[EntityStatus] | None) -> None:
    """Close a dropped client once the probe under way on it is over: a reload loses no scrape."""
    if flight is not None:
        await asyncio.wait([flight])
    await client.aclose()


class Prober:
    def __init__(self, history: History | None = None) -> None:
        self.history = history or History()
        self._clients: dict[Entity, ImagingClient] = {}
        self._flights: dict[Entity, _Flight] = {}
        self._closing: set[asyncio.Task[None]] = set()
        # What configure() last declared; None until then, and every entity is kept.
        self._wanted: set[Entity] | None = None
        self.last: dict[str, EntityStatus] = {}

    def configure(self, entities: Iterable[Entity]) -> None:
        """Keep the connections of unchanged entities, drop those of removed or changed ones."""
        self._wanted = wanted = {e for e in entities if e.url is not None}
        for entity in list(self._clients):
            if entity not in wanted:
                client = self._clients.pop(entity)
                flight = self._flights.get(entity)
                task = asyncio.get_running_loop().create_task(
                    _close_after(client, flight.task if flight else None)
                )
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        names = {e.name for e in entities}
        self.last = {n: s for n, s in self.last.items() if n in names}

    def _client(self, entity: Entity) -> ImagingClient:
        client = self._clients.get(entity)
        if client is None:
            client = self._clients[entity] = ImagingClient(entity)
        return client

    async def probe(
        self, entity: Entity, timeout_cap: float | None = None, since: float | None = None
    ) -> EntityStatus:
        """``since`` is when the scrape began, in loop time: the deadline counts from there,
        not from when this probe got its turn on a busy loop."""
        return await self._awaitable(entity, timeout_cap, since)

    def _awaitable(
        self, entity: Entity, timeout_cap: float | None, since: float | None
    ) -> Awaitable[EntityStatus]:
        """The entity's status to come: a probe of our own, or the one under way.

        A future rather than a coroutine where it can be: ``gather`` would wrap each
        coroutine in a task of its own, a thousand per scrape.
        """
        loop = asyncio.get_running_loop()
        if entity.url is None:
            status = self.last[entity.name] = classify(entity, None)
            known: asyncio.Future[EntityStatus] = loop.create_future()
            known.set_result(status)
            return known
        timeout = entity.timeout
        if timeout_cap is not None:
            timeout = max(min(timeout, timeout_cap), MIN_TIMEOUT_SECONDS)
        deadline = (loop.time() if since is None else since) + timeout
        flight = self._flights.get(entity)
        if flight is None:  # a probe of our own ends by its own deadline
            return asyncio.shield(self._start(entity, timeout, deadline).task)
        return self._join(entity, flight, timeout, deadline)

    async def _join(
        self, entity: Entity, flight: _Flight, timeout: float, deadline: float
    ) -> EntityStatus:
        try:
            async with asyncio.timeout_at(deadline + 0.05):
                return await asyncio.shield(flight.task)
        except TimeoutError as err:
            # The probe we joined runs on a longer deadline than this scrape allows.
            exchange = snapshot(flight.events, flight.started_at, flight.t0, error=err)
            return classify(entity, exchange, timeout)

    def _start(self, entity: Entity, timeout: float, deadline: float) -> _Flight:
        events = WireEvents()
        t0 = time.monotonic()
        loop = asyncio.get_running_loop()

        async def run() -> EntityStatus:
            exchange = await self._client(entity).call(deadline - loop.time(), events)
            status = classify(entity, exchange, timeout)
            self.history.add(entity, status, exchange, events, t0)
            if status.reason is not None:
                log.debug(
                    "probe failed",
                    extra={
                        "entity": entity.name,
                        "reason": status.reason.value,
                        "detail": status.detail,
                    },
                )
            if self._wanted is None or entity in self._wanted:
                self.last[entity.name] = status
            elif (stray := self._clients.pop(entity, None)) is not None:
                # A scrape that began before a reload removed this entity: keep neither its
                # connection nor its status.
                await stray.aclose()
            return status

        task = loop.create_task(run(), name=f"probe {entity.name}")
        flight = self._flights[entity] = _Flight(task, events, t0)
        task.add_done_callback(lambda _: self._flights.pop(entity, None))
        return flight

    async def probe_all(
        self, entities: Sequence[Entity], timeout_cap: float | None = None
    ) -> list[EntityStatus]:
        """Every deadline counts from now: with a thousand entities the last probe starts
        a good part of a second after the first, and the scrape must still end in time."""
        since = asyncio.get_running_loop().time()
        return list(
            await asyncio.gather(*(self._awaitable(e, timeout_cap, since) for e in entities))
        )

    async def aclose(self) -> None:
        for flight in list(self._flights.values()):
            flight.task.cancel()
        await asyncio.gather(
            *(c.aclose() for c in self._clients.values()), *self._closing, return_exceptions=True
        )
        self._clients.clear()
