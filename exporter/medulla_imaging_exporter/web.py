"""HTTP endpoints, on aiohttp's server: /metrics, /probe, the landing page, health and reload."""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Sequence
from urllib.parse import quote

from aiohttp import web
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from medulla_imaging_exporter import __version__
from medulla_imaging_exporter.collector import ExporterCollector, ScrapeCollector
from medulla_imaging_exporter.config import ConfigError, Entity
from medulla_imaging_exporter.model import EntityStatus
from medulla_imaging_exporter.runtime import Runtime

log = logging.getLogger(__name__)

RUNTIME = web.AppKey("runtime", Runtime)
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"

# The process's own metrics, shared by every per-request registry.
_PROCESS_COLLECTORS: list[Collector] = [
    ProcessCollector(registry=None),
    PlatformCollector(registry=None),
    GCCollector(registry=CollectorRegistry()),
]


def _exposition(request: web.Request, collectors: Sequence[Collector]) -> web.Response:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encoder(registry), headers={"Content-Type": content_type})


def _scrape(request: web.Request, entities: Sequence[Entity]) -> Awaitable[list[EntityStatus]]:
    runtime = request.app[RUNTIME]
    cap = runtime.timeout_cap(request.headers.get(SCRAPE_TIMEOUT_HEADER))
    return runtime.prober.probe_all(entities, cap)


async def metrics(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    entities = runtime.config.entities
    statuses = await _scrape(request, entities)
    return _exposition(
        request,
        [
            ScrapeCollector(entities, statuses),
            ExporterCollector(runtime.reload_state),
            *_PROCESS_COLLECTORS,
        ],
    )


async def probe(request: web.Request) -> web.Response:
    """One entity, blackbox style; only configured entities, never a URL from the request."""
    runtime = request.app[RUNTIME]
    name = request.query.get("entity")
    if not name:
        raise web.HTTPBadRequest(text="missing parameter: entity\n")
    entity = runtime.config.entity(name)
    if entity is None:
        raise web.HTTPBadRequest(text=f"unknown entity: {name!r}\n")
    statuses = await _scrape(request, [entity])
    return _exposition(request, [ScrapeCollector([entity], statuses)])


async def index(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    links = "".join(
        f'<li><a href="probe?entity={quote(e.name)}">{html.escape(e.name)}</a></li>'
        for e in runtime.config.entities
    )
    body = (
        "<!doctype html><html><head><meta charset=utf-8>"
        "<title>Medulla imaging exporter</title></head><body>"
        f"<h1>Medulla imaging exporter {html.escape(__version__)}</h1>"
        '<p><a href="metrics">Metrics</a></p>'
        f"<h2>Entities</h2><ul>{links}</ul></body></html>"
    )
    return web.Response(text=body, content_type="text/html")


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


def create_app(runtime: Runtime) -> web.Application:
    app = web.Application()
    app[RUNTIME] = runtime
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/probe", probe)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)

    async def close_runtime(app: web.Application) -> None:
        await app[RUNTIME].aclose()

    app.on_cleanup.append(close_runtime)
    return app
