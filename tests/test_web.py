"""The endpoints, served by the real app on 127.0.0.1, probing simulated servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from medulla_imaging_exporter.config import Config, load_config
from medulla_imaging_exporter.runtime import Runtime
from medulla_imaging_exporter.simulator import Behaviour, SimulatedServer
from tests.conftest import MakeServer
from tests.helpers import serving


def write_config(
    path: Path, ca_file: Path, servers: dict[str, SimulatedServer | None], timeout: str = "2s"
) -> None:
    lines = [f"defaults:\n  timeout: {timeout}\n  tls_config:\n    ca_file: {ca_file}\nentities:"]
    for name, server in servers.items():
        lines.append(f"  - name: {name}")
        if server is not None:
            lines.append(f"    url: {server.url}")
    path.write_text("\n".join(lines) + "\n")


def series(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {
        frozenset(s.labels.items()): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def entities_in(text: str) -> set[str]:
    return {dict(labels)["entity"] for labels in series(text, "medulla_imaging_server_status")}


class Site:
    def __init__(self, base: str, runtime: Runtime, config: Path) -> None:
        self.base = base
        self.runtime = runtime
        self.config = config
        self.http = httpx.AsyncClient(base_url=base, timeout=30)


@pytest.fixture
async def site(make_server: MakeServer, ca_file: Path, tmp_path: Path) -> AsyncIterator[Site]:
    servers = {
        "Public": await make_server(),
        "Private": await make_server(Behaviour.HTTP_404),
        "General": await make_server(Behaviour.REFUSE),
        "Siveo Medulla": None,
    }
    config = tmp_path / "config.yml"
    write_config(config, ca_file, servers)
    runtime = Runtime(lambda: load_config(config))
    async with serving(runtime) as base:
        s = Site(base, runtime, config)
        yield s
        await s.http.aclose()


async def test_metrics_has_every_entity_and_the_exporter_itself(site: Site) -> None:
    response = await site.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert entities_in(text) == {"Public", "Private", "General", "Siveo Medulla"}
    status = series(text, "medulla_imaging_server_status")
    assert status[frozenset({("entity", "General"), ("status", "offline")})] == 1
    assert status[frozenset({("entity", "Private"), ("status", "connection_error")})] == 1
    assert series(text, "medulla_imaging_exporter_config_last_reload_successful") == {
        frozenset(): 1.0
    }
    assert "medulla_imaging_exporter_build_info" in text
    assert "process_resident_memory_bytes" in text
    # written as it is encoded, not held whole in memory first
    assert response.headers["Transfer-Encoding"] == "chunked"


async def test_openmetrics_is_negotiated(site: Site) -> None:
    response = await site.http.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_probe_one_entity(site: Site) -> None:
    response = await site.http.get("/probe", params={"entity": "Public"})
    assert response.status_code == 200
    assert entities_in(response.text) == {"Public"}
    assert "medulla_imaging_exporter_build_info" not in response.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "missing parameter: entity"),
        ({"entity": "Nobody"}, "unknown entity: 'Nobody'"),
        ({"entity": ""}, "missing parameter: entity"),
    ],
)
async def test_probe_errors(site: Site, params: dict[str, str], message: str) -> None:
    response = await site.http.get("/probe", params=params)
    assert response.status_code == 400
    assert message in response.text


async def test_probe_never_takes_a_url_from_the_request(site: Site) -> None:
    response = await site.http.get(
        "/probe", params={"entity": "Nobody", "target": "https://127.0.0.1:1/imaging_api"}
    )
    assert response.status_code == 400


async def test_health_and_landing_page(site: Site) -> None:
    assert (await site.http.get("/-/healthy")).status_code == 200
    assert (await site.http.get("/-/ready")).status_code == 200
    page = await site.http.get("/")
    assert page.status_code == 200
    assert 'href="metrics"' in page.text and "probe?entity=Siveo%20Medulla" in page.text


async def test_reload_with_a_good_file_drops_removed_entities(site: Site, ca_file: Path) -> None:
    before = (await site.http.get("/metrics")).text
    assert "General" in entities_in(before)
    write_config(site.config, ca_file, {"Siveo Medulla": None})
    response = await site.http.post("/-/reload")
    assert response.status_code == 200
    after = (await site.http.get("/metrics")).text
    assert entities_in(after) == {"Siveo Medulla"}
    assert 'entity="Public"' not in after  # no stale series of any family


async def test_reload_with_a_bad_file_keeps_the_running_config(site: Site) -> None:
    site.config.write_text("entities:\n  - name: Public\n    url: ftp://nowhere\n")
    response = await site.http.post("/-/reload")
    assert response.status_code == 500
    assert "entities[0].url" in response.text
    text = (await site.http.get("/metrics")).text
    assert entities_in(text) == {"Public", "Private", "General", "Siveo Medulla"}
    assert series(text, "medulla_imaging_exporter_config_last_reload_successful") == {
        frozenset(): 0.0
    }
    assert (await site.http.get("/-/reload")).status_code == 405


async def test_scrape_timeout_header_caps_a_hung_probe(
    make_server: MakeServer, ca_file: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.yml"
    write_config(
        config,
        ca_file,
        {"Private": await make_server(Behaviour.STALL_REPLY), "Public": await make_server()},
        timeout="60s",
    )
    async with serving(Runtime(lambda: load_config(config))) as base, httpx.AsyncClient() as http:
        response = await http.get(
            f"{base}/metrics", timeout=30, headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}
        )
    text = response.text
    reasons = series(text, "medulla_imaging_probe_failure_reason")
    assert reasons[frozenset({("entity", "Private"), ("reason", "timeout")})] == 1
    duration = series(text, "medulla_imaging_probe_duration_seconds")
    # capped at 1.5 - 0.5 s, far below the entity's 60 s
    assert duration[frozenset({("entity", "Private")})] < 10
    assert series(text, "medulla_imaging_server_up")[frozenset({("entity", "Public")})] == 1


def test_timeout_cap_arithmetic() -> None:
    runtime = Runtime(lambda: Config(entities=()), timeout_offset=0.5)
    assert runtime.timeout_cap(None) is None
    assert runtime.timeout_cap("10") == 9.5
    assert runtime.timeout_cap("0.3") == 0.3  # shorter than the offset: use it whole
    assert runtime.timeout_cap("junk") is None
    assert runtime.timeout_cap("-1") is None


async def test_concurrent_scrapes_share_one_probe_per_server(
    make_server: MakeServer, ca_file: Path, tmp_path: Path
) -> None:
    server = await make_server()
    config = tmp_path / "config.yml"
    write_config(config, ca_file, {"Public": server})
    async with serving(Runtime(lambda: load_config(config))) as base, httpx.AsyncClient() as http:
        responses = await asyncio.gather(*(http.get(f"{base}/metrics") for _ in range(20)))
    assert all(r.status_code == 200 for r in responses)
    assert server.requests < 20
