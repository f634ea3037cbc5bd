"""HTTP endpoints, on aiohttp's server: /metrics, /probe, the landing page, health and reload."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import replace

from aiohttp import web
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
from medulla_imaging_exporter.model import DatabaseSnapshot, EntityStatus
from medulla_imaging_exporter.pages import IndexView, render_debug, render_index
from medulla_imaging_exporter.prober import Prober
from medulla_imaging_exporter.runtime import Runtime
from medulla_imaging_exporter.translations import choose_language
from medulla_imaging_exporter.webconfig import WebConfig

log = logging.getLogger(__name__)

RUNTIME = web.AppKey("runtime", Runtime)
# The label sets of the last /metrics, for the next (see exposition.Carried).
CARRIED = web.AppKey("carried", Carried)
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"

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


def _exposition(request: web.Request, collectors: Sequence[Collector]) -> web.Response:
    body, content_type = encode(collectors, request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})


def _scrape(request: web.Request, entities: Sequence[Entity]) -> Awaitable[list[EntityStatus]]:
    runtime = request.app[RUNTIME]
    cap = runtime.timeout_cap(request.headers.get(SCRAPE_TIMEOUT_HEADER))
    return runtime.prober.probe_all(entities, cap)


async def metrics(request: web.Request) -> web.StreamResponse:
    """Written as it is encoded, in chunks: a thousand entities make megabytes of text."""
    runtime = request.app[RUNTIME]
    entities = runtime.config.entities
    with paused_during_scrape():
        statuses = await _scrape(request, entities)
        collectors = [
            ScrapeCollector(entities, statuses, runtime.database_snapshot),
            ExporterCollector(runtime.reload_state, runtime.database_snapshot),
            *_PROCESS_COLLECTORS,
        ]
        chunks, content_type = encode_chunks(
            collectors, request.headers.get("Accept", ""), request.app[CARRIED]
        )
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response


async def probe(request: web.Request) -> web.Response:
    """One entity, blackbox style; only configured entities, never a URL from the request."""
    runtime = request.app[RUNTIME]
    name = request.query.get("entity")
    if not name:
        raise web.HTTPBadRequest(text="missing parameter: entity\n")
    entity = runtime.config.entity(name)
    if entity is None:
        raise web.HTTPBadRequest(text=f"unknown entity: {name!r}\n")
    with paused_during_scrape():
        statuses = await _scrape(request, [entity])
    if request.query.get("debug") == "true":
        record = runtime.prober.history.of_status(statuses[0])
        return _debug(entity, statuses[0], record, runtime.database_snapshot)
    return _exposition(request, [ScrapeCollector([entity], statuses, runtime.database_snapshot)])


def _debug(
    entity: Entity,
    status: EntityStatus,
    record: ProbeRecord | None,
    database: DatabaseSnapshot | None,
) -> web.Response:
    """Blackbox-style ``debug=true``: what the probe did and what it would export."""
    collector = ScrapeCollector([entity], [status], database)
    exposition = generate_latest(_registry([collector])).decode()
    return web.Response(
        text=render_debug(entity, status, record, exposition), headers=_PAGE_HEADERS
    )


async def logs(request: web.Request) -> web.Response:
    """The debug view of a probe kept in the history (the status page links here)."""
    try:
        record_id = int(request.query.get("id", ""))
    except ValueError:
        raise web.HTTPBadRequest(
            text="expected ?id=N, a probe number from the status page\n"
        ) from None
    runtime = request.app[RUNTIME]
    record = runtime.prober.history.get(record_id)
    if record is None:
        raise web.HTTPNotFound(text=f"probe #{record_id} is not kept in the history\n")
    return _debug(record.entity, record.status, record, runtime.database_snapshot)


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


async def service_discovery(request: web.Request) -> web.Response:
    """Prometheus HTTP SD: one target group per entity, each scraped through this exporter's
    /probe, so that Prometheus' own ``hashmod`` relabeling can spread entities over servers."""
    runtime = request.app[RUNTIME]
    groups = [
        {"targets": [request.host], "labels": {"__param_entity": e.name, "entity": e.name}}
        for e in runtime.config.entities
    ]
    return web.json_response(groups)


def _with_live_stats(
    entity: Entity, status: EntityStatus, database: DatabaseSnapshot | None
) -> EntityStatus:
    """The page shows the statistics that the metrics export: the database's if configured."""
    if database is None or status.reply is None:
        return status
    stats, _ = entity_stats(entity, status, database)
    return replace(status, reply=replace(status.reply, stats=stats))


async def index(request: web.Request) -> web.Response:
    """The status page: every entity as Medulla's page shows one, and the recent probes."""
    runtime = request.app[RUNTIME]
    lang_query = request.query.get("lang")
    lang = choose_language(lang_query, request.headers.get("Accept-Language"))
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
        history=[r for r in runtime.prober.history.records() if selected in (None, r.entity.name)],
        version=__version__,
    )
    return web.Response(
        text=render_index(view),
        content_type="text/html",
        status=404 if selected and not shown else 200,
        headers={**_PAGE_HEADERS, "Content-Language": lang, "Vary": "Accept-Language"},
    )


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="Healthy.\n")


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="Ready.\n")


async def reload(request: web.Request) -> web.Response:
    try:
        request.app[RUNTIME].reload()
    except ConfigError as err:
        raise web.HTTPInternalServerError(text=f"failed to reload config: {err}\n") from None
    return web.Response(text="Reloaded.\n")


def create_app(runtime: Runtime, web_config: WebConfig | None = None) -> web.Application:
    """The application; ``web_config`` adds the --web.config.file's authentication."""
    app = web.Application(middlewares=[web_config.middleware()] if web_config else [])
    app[RUNTIME] = runtime
    app[CARRIED] = Carried()
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/probe", probe)
    app.router.add_get("/logs", logs)
    app.router.add_get("/sd", service_discovery)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)

    async def close_runtime(app: web.Application) -> None:
        await app[RUNTIME].aclose()

    app.on_cleanup.append(close_runtime)
    return app
