"""HTTP endpoints: /metrics, /probe, the status page, service discovery, health and reload."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.registry import Collector

from medulla_imaging_exporter import __version__
from medulla_imaging_exporter.collector import ExporterCollector, ScrapeCollector, entity_stats
from medulla_imaging_exporter.config import ConfigError, Entity
from medulla_imaging_exporter.exposition import Carried, encode, encode_chunks
from medulla_imaging_exporter.gcpolicy import paused_during_scrape
from medulla_imaging_exporter.history import ProbeRecord
from medulla_imaging_exporter.httpserver import App, HTTPError, Request, Response
from medulla_imaging_exporter.model import DatabaseSnapshot, EntityStatus
from medulla_imaging_exporter.pages import IndexView, render_debug, render_index
from medulla_imaging_exporter.prober import Prober
from medulla_imaging_exporter.runtime import Runtime
from medulla_imaging_exporter.translations import choose_language
from medulla_imaging_exporter.webconfig import WebConfig

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_HEADER = "x-prometheus-scrape-timeout-seconds"

# The process's own metrics, shared by every per-request registry.
_PROCESS_COLLECTORS: list[Collector] = [
    ProcessCollector(registry=None),
    PlatformCollector(registry=None),
    GCCollector(registry=CollectorRegistry()),
]


# The status page may load nothing from elsewhere and runs no script at all.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# The page shows the last probe if it is this recent, else probes: light when Prometheus
# scrapes anyway, still right when nothing else does.
PAGE_MAX_AGE_SECONDS = 60.0


def _registry(collectors: Sequence[Collector]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return registry


def _exposition(request: Request, collectors: Sequence[Collector]) -> Response:
    body, content_type = encode(collectors, request.headers.get("accept", ""))
    return Response(body, content_type=content_type)


def _debug(
    entity: Entity,
    status: EntityStatus,
    record: ProbeRecord | None,
    database: DatabaseSnapshot | None,
) -> Response:
    """Blackbox-style ``debug=true``: what the probe did and what it would export."""
    collector = ScrapeCollector([entity], [status], database)
    exposition = generate_latest(_registry([collector])).decode()
    return Response(
        render_debug(entity, status, record, exposition).encode(), headers=_PAGE_HEADERS
    )


async def _page_statuses(prober: Prober, entities: Sequence[Entity]) -> list[EntityStatus]:
    """The last status of each entity, probing those with none recent enough."""
    oldest = time.time() - PAGE_MAX_AGE_SECONDS
    recent = {
        e.name: s
        for e in entities
        if (s := prober.last.get(e.name)) is not None
        and s.started_at is not None
        and s.started_at >= oldest
    }
    stale = [e for e in entities if e.name not in recent]
    recent.update((s.entity, s) for s in await prober.probe_all(stale))
    return [recent[e.name] for e in entities]


def _with_live_stats(
    entity: Entity, status: EntityStatus, database: DatabaseSnapshot | None
) -> EntityStatus:
    """The page shows the statistics that the metrics export: the database's if configured."""
    if database is None or status.reply is None:
        return status
    stats, _ = entity_stats(entity, status, database)
    return replace(status, reply=replace(status.reply, stats=stats))


class _Endpoints:
    """The handlers, around one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # The label sets of the last /metrics, for the next (see exposition.Carried).
        self.carried = Carried()

    def _scrape(
        self, request: Request, entities: Sequence[Entity]
    ) -> Awaitable[list[EntityStatus]]:
        cap = self.runtime.timeout_cap(request.headers.get(SCRAPE_TIMEOUT_HEADER))
        return self.runtime.prober.probe_all(entities, cap)

    async def metrics(self, request: Request) -> Response:
        """Written as it is encoded, in chunks: a thousand entities make megabytes of text."""
        runtime = self.runtime
        entities = runtime.config.entities
        with contextlib.ExitStack() as pause:
            pause.enter_context(paused_during_scrape())
            statuses = await self._scrape(request, entities)
            collectors = [
                ScrapeCollector(entities, statuses, runtime.database_snapshot),
                ExporterCollector(runtime.reload_state, runtime.database_snapshot),
                *_PROCESS_COLLECTORS,
            ]
            chunks, content_type = encode_chunks(
                collectors, request.headers.get("accept", ""), self.carried
            )
            # The pause lasts until the server has written the last chunk (or given up).
            return Response(_Chunks(chunks, pause.pop_all().close), content_type=content_type)

    async def probe(self, request: Request) -> Response:
        """One entity, blackbox style; only configured entities, never a URL from the request."""
        runtime = self.runtime
        name = request.query.get("entity")
        if not name:
            raise HTTPError(400, "missing parameter: entity\n")
        entity = runtime.config.entity(name)
        if entity is None:
            raise HTTPError(400, f"unknown entity: {name!r}\n")
        with paused_during_scrape():
            statuses = await self._scrape(request, [entity])
        if request.query.get("debug") == "true":
            record = runtime.prober.history.of_status(statuses[0])
            return _debug(entity, statuses[0], record, runtime.database_snapshot)
        return _exposition(
            request, [ScrapeCollector([entity], statuses, runtime.database_snapshot)]
        )

    async def logs(self, request: Request) -> Response:
        """The debug view of a probe kept in the history (the status page links here)."""
        try:
            record_id = int(request.query.get("id", ""))
        except ValueError:
            raise HTTPError(400, "expected ?id=N, a probe number from the status page\n") from None
        record = self.runtime.prober.history.get(record_id)
        if record is None:
            raise HTTPError(404, f"probe #{record_id} is not kept in the history\n")
        return _debug(record.entity, record.status, record, self.runtime.database_snapshot)

    async def service_discovery(self, request: Request) -> Response:
        """Prometheus HTTP SD: one target group per entity, each scraped through this exporter's
        /probe, so that Prometheus' own ``hashmod`` relabeling can spread entities over servers."""
        groups = [
            {"targets": [request.host], "labels": {"__param_entity": e.name, "entity": e.name}}
            for e in self.runtime.config.entities
        ]
        return Response(json.dumps(groups).encode(), content_type="application/json")

    async def index(self, request: Request) -> Response:
        """The status page: every entity as Medulla's page shows one, and the recent probes."""
        runtime = self.runtime
        lang_query = request.query.get("lang")
        lang = choose_language(lang_query, request.headers.get("accept-language"))
        selected = request.query.get("entity") or None
        entities = runtime.config.entities
        shown = [e for e in entities if selected in (None, e.name)]
        statuses = [
            _with_live_stats(e, s, runtime.database_snapshot)
            for e, s in zip(shown, await _page_statuses(runtime.prober, shown), strict=True)
        ]
        view = IndexView(
            lang=lang,
            lang_forced=lang_query == lang,
            entities=entities,
            selected=selected,
            shown=list(zip(shown, statuses, strict=True)),
            history=[
                r for r in runtime.prober.history.records() if selected in (None, r.entity.name)
            ],
            version=__version__,
        )
        return Response(
            render_index(view).encode(),
            status=404 if selected and not shown else 200,
            content_type="text/html; charset=utf-8",
            headers={**_PAGE_HEADERS, "Content-Language": lang, "Vary": "Accept-Language"},
        )

    async def reload(self, request: Request) -> Response:
        try:
            self.runtime.reload()
        except ConfigError as err:
            raise HTTPError(500, f"failed to reload config: {err}\n") from None
        return Response.text("Reloaded.\n")


class _Chunks:
    """An exposition's chunks, and what to do once the server has written them or given up."""

    def __init__(self, chunks: Iterator[bytes], close: Callable[[], object]) -> None:
        self._chunks = chunks
        self.close = close

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks


async def healthy(request: Request) -> Response:
    return Response.text("Healthy.\n")


async def ready(request: Request) -> Response:
    return Response.text("Ready.\n")


def create_app(runtime: Runtime, web_config: WebConfig | None = None) -> App:
    """The application; ``web_config`` adds the --web.config.file's authentication."""
    endpoints = _Endpoints(runtime)
    app = App(middleware=web_config.authenticate if web_config else None)
    app.route("GET", "/", endpoints.index)
    app.route("GET", "/metrics", endpoints.metrics)
    app.route("GET", "/probe", endpoints.probe)
    app.route("GET", "/logs", endpoints.logs)
    app.route("GET", "/sd", endpoints.service_discovery)
    app.route("GET", "/-/healthy", healthy)
    app.route("GET", "/-/ready", ready)
    app.route("POST", "/-/reload", endpoints.reload)
    app.on_close.append(runtime.aclose)
    return app
