"""The status page, the debug view and the probe history over real HTTP, in this event loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import httpx
import pytest

from medulla_imaging_exporter import web
from medulla_imaging_exporter.config import Config, Entity
from medulla_imaging_exporter.runtime import Runtime
from medulla_imaging_exporter.simulator import Behaviour, SimulatedServer
from tests.conftest import MakeServer
from tests.helpers import serving

EntityFor = Callable[..., Entity]


def _with_credentials(server: SimulatedServer) -> str:
    return server.url.replace("https://", "https://zorglub:s3cret@")


async def _runtime(*entities: Entity) -> Runtime:
    return Runtime(lambda: Config(entities=entities))


async def test_debug_view_shows_the_probe_and_its_metrics_without_secrets(
    make_server: MakeServer, entity_for: EntityFor
) -> None:
    ok = await make_server()
    entity = replace(entity_for(ok), url=_with_credentials(ok))
    async with serving(await _runtime(entity)) as base, httpx.AsyncClient() as client:
        reply = await client.get(f"{base}/probe", params={"entity": "Public", "debug": "true"})
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    body = reply.text
    assert "s3cret" not in body and "zorglub" not in body
    assert f"Server: {ok.url}" in body
    assert "Status: available" in body and "HTTP status: 200" in body
    assert "connection.connect_tcp.started" in body
    assert "connection.start_tls.complete" in body
    assert "uptime_seconds: 1123602.57" in body
    assert "mountpoint=/boot/efi" in body
    assert "Metrics that would have been returned:" in body
    assert 'medulla_imaging_server_up{entity="Public"} 1.0' in body
    assert ok.requests == 1


async def test_debug_view_of_a_failure(make_server: MakeServer, entity_for: EntityFor) -> None:
    missing = await make_server(Behaviour.HTTP_404)
    async with (
        serving(await _runtime(entity_for(missing, name="Private"))) as base,
        httpx.AsyncClient() as client,
    ):
        body = (await client.get(f"{base}/probe?entity=Private&debug=true")).text
    assert "Status: connection_error" in body
    assert "Reason: http_404" in body and "HTTP status: 404" in body
    assert "Parsed reply:\n  (none)" in body
    assert 'medulla_imaging_probe_failure_reason{entity="Private",reason="http_404"} 1.0' in body


async def test_logs_show_a_kept_probe(make_server: MakeServer, entity_for: EntityFor) -> None:
    refused = await make_server(Behaviour.REFUSE)
    runtime = await _runtime(entity_for(refused, name="General"))
    async with serving(runtime) as base, httpx.AsyncClient() as client:
        await client.get(f"{base}/metrics")
        (record,) = runtime.prober.history.records()
        kept = await client.get(f"{base}/logs", params={"id": str(record.id)})
        gone = await client.get(f"{base}/logs", params={"id": str(record.id + 1)})
        bad = await client.get(f"{base}/logs", params={"id": "one"})
        page = await client.get(f"{base}/")
    assert kept.status_code == 200
    assert f"(probe #{record.id})" in kept.text and "Reason: refused" in kept.text
    assert gone.status_code == 404 and "not kept" in gone.text
    assert bad.status_code == 400 and "expected ?id=N" in bad.text
    assert f'href="logs?id={record.id}"' in page.text


async def test_language_from_accept_language_or_query(entity_for: EntityFor) -> None:
    async with (
        serving(await _runtime(entity_for(None, name="Siveo Medulla"))) as base,
        httpx.AsyncClient() as client,
    ):
        french = await client.get(f"{base}/", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
        forced = await client.get(f"{base}/?lang=en", headers={"Accept-Language": "fr"})
        default = await client.get(f"{base}/")
    assert french.headers["Content-Language"] == "fr"
    assert "Statut du serveur d&#x27;imaging" in french.text
    assert "Pas de serveur d&#x27;imaging disponible pour l&#x27;association." in french.text
    assert forced.headers["Content-Language"] == "en"
    assert "No imaging server available for association." in forced.text
    # ?lang= is kept by the selector and the language links.
    assert '<input type="hidden" name="lang" value="en">' in forced.text
    assert '<input type="hidden" name="lang"' not in default.text
    assert default.headers["Content-Language"] == "en"
    csp = default.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp


async def test_page_reuses_recent_probes_and_probes_stale_ones(
    make_server: MakeServer, entity_for: EntityFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok = await make_server()
    async with serving(await _runtime(entity_for(ok))) as base, httpx.AsyncClient() as client:
        first = await client.get(f"{base}/")  # never probed: the page probes
        assert ok.requests == 1
        await client.get(f"{base}/metrics")
        assert ok.requests == 2
        again = await client.get(f"{base}/")  # Prometheus just scraped: no new probe
        assert ok.requests == 2
        monkeypatch.setattr(web, "PAGE_MAX_AGE_SECONDS", -1.0)
        await client.get(f"{base}/")
        assert ok.requests == 3
    for page in (first, again):
        assert 'data-entity="Public" data-status="available"' in page.text


async def test_unknown_selected_entity(entity_for: EntityFor) -> None:
    async with (
        serving(await _runtime(entity_for(None, name="Siveo Medulla"))) as base,
        httpx.AsyncClient() as client,
    ):
        reply = await client.get(f"{base}/", params={"entity": "<nope>"})
    assert reply.status_code == 404
    assert "Unknown entity: &lt;nope&gt;" in reply.text
    assert 'class="entity' not in reply.text


async def test_debug_view_of_an_entity_without_a_server(entity_for: EntityFor) -> None:
    async with (
        serving(await _runtime(entity_for(None, name="Siveo Medulla"))) as base,
        httpx.AsyncClient() as client,
    ):
        reply = await client.get(f"{base}/probe?entity=Siveo%20Medulla&debug=true")
    assert reply.status_code == 200
    assert "Server: (no imaging server linked)" in reply.text
    assert "Status: not_linked" in reply.text and "Wire events" not in reply.text
    assert 'medulla_imaging_server_status{entity="Siveo Medulla",status="not_linked"} 1.0' in (
        reply.text
    )
