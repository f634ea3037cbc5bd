"""Load, leaks and reloads: concurrent scrapes, failing servers, SIGHUP storms.

The long version of the leak check (thousands of scrapes against the real CLI) is
``benchmarks/soak.py``, run by CI; these are its short, always-run counterparts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from medulla_imaging_exporter.config import Config, Entity
from medulla_imaging_exporter.runtime import Runtime
from medulla_imaging_exporter.simulator import Behaviour, LocalCA
from tests.conftest import MakeServer
from tests.helpers import (
    FAILING,
    cli_process,
    metric_samples,
    open_fds,
    rss_bytes,
    sample,
    serving,
    simulators,
    write_config,
)


async def test_50_concurrent_scrapes_make_one_request_per_server(
    make_server: MakeServer, entity_for: Callable[..., Entity]
) -> None:
    servers = [await make_server(b) for b in (Behaviour.OK, Behaviour.HTTP_500, Behaviour.FAULT)]
    for server in servers:
        server.delay = 1.0  # every scrape arrives while the first probe is still running
    config = Config(tuple(entity_for(s, f"E{i}") for i, s in enumerate(servers)))
    runtime = Runtime(lambda: config)
    async with serving(runtime) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        responses = await asyncio.gather(*(http.get("/metrics") for _ in range(50)))
    await runtime.aclose()
    assert {r.status_code for r in responses} == {200}
    assert {
        sample(metric_samples(r.text), "medulla_imaging_server_up", entity="E0") for r in responses
    } == {1}
    for server in servers:
        assert server.max_in_flight == 1
        assert server.requests < 10  # 50 without the shared flight
        assert server.connections == 1


async def test_failing_servers_leave_fds_and_memory_flat(
    make_server: MakeServer, entity_for: Callable[..., Entity]
) -> None:
    servers = [await make_server(b) for b in FAILING]
    big = await make_server()  # its reply is over the cap given below: read up to it, dropped
    entities = [entity_for(s, f"E{i}", timeout=0.1) for i, s in enumerate(servers)]
    entities.append(entity_for(big, "Big", max_reply_bytes=512))
    runtime = Runtime(lambda: Config(tuple(entities)))

    async def scrapes(http: httpx.AsyncClient, count: int) -> None:
        for _ in range(count // 25):  # 25 at a time: the stalled servers cost their timeout
            responses = await asyncio.gather(*(http.get("/metrics") for _ in range(25)))
            assert {r.status_code for r in responses} == {200}
        await asyncio.sleep(0.2)  # let the simulators close their side of finished connections

    # No keep-alive to the exporter: only the exporter's own connections remain between rounds.
    pool = httpx.Limits(max_keepalive_connections=0)
    async with (
        serving(runtime) as base,
        httpx.AsyncClient(base_url=base, timeout=30, limits=pool) as http,
    ):
        await scrapes(http, 50)  # warm up: connections, caches, lazily built objects
        fds, rss = open_fds(), rss_bytes()
        await scrapes(http, 250)
        fds_after, rss_after = open_fds(), rss_bytes()
        print(
            f"open fds {fds} -> {fds_after}, RSS {rss / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB"
        )
        samples = metric_samples((await http.get("/metrics")).text)
    await runtime.aclose()

    assert {sample(samples, "medulla_imaging_server_up", entity=e.name) for e in entities} == {0}
    assert fds_after - fds <= 2, (fds, fds_after)
    assert rss_after - rss < 16 * 2**20, (rss, rss_after)


def test_sighup_storm_and_reloads_under_load_lose_no_scrape(
    local_ca: LocalCA, ca_file: Path, tmp_path: Path
) -> None:
    """Reloads switch between two configurations (one changes Public's timeout, one adds an
    entity) while scrapes run; every scrape sees a whole configuration and Public up."""
    config = tmp_path / "config.yml"
    with simulators(local_ca, Behaviour.OK, Behaviour.HTTP_500, Behaviour.OK) as servers:
        for server in servers:
            server.delay = 0.05  # probes in flight when the reloads land
        public, broken, extra = (
            {"name": n, "url": s.url}
            for n, s in zip(("Public", "Broken", "Extra"), servers, strict=True)
        )
        variants = [
            [public, broken],
            [{**public, "timeout": "4s"}, broken, extra],
        ]
        tls = {"ca_file": str(ca_file)}

        def write(index: int) -> None:
            write_config(config, variants[index % 2], timeout="3s", tls_config=tls)

        write(0)
        seen: list[tuple[int, frozenset[str], float | None]] = []
        errors: list[BaseException] = []  # a scrape that did not even get an answer
        stop = threading.Event()
        with cli_process(tmp_path, "--config.file", config) as (proc, base):

            def scrape() -> None:
                with httpx.Client(base_url=base, timeout=30) as http:
                    while not stop.is_set():
                        try:
                            response = http.get("/metrics")
                        except httpx.HTTPError as err:
                            errors.append(err)
                            continue
                        samples = metric_samples(response.text)
                        entities = {
                            dict(labels)["entity"]
                            for name, labels in samples
                            if name == "medulla_imaging_server_status"
                        }
                        up = sample(samples, "medulla_imaging_server_up", entity="Public")
                        seen.append((response.status_code, frozenset(entities), up))

            scrapers = [threading.Thread(target=scrape) for _ in range(3)]
            for thread in scrapers:
                thread.start()
            try:
                with httpx.Client(base_url=base, timeout=30) as http:
                    for i in range(200):
                        write(i)
                        if i % 4 == 3:
                            assert http.post("/-/reload").status_code == 200
                        else:
                            os.kill(proc.pid, signal.SIGHUP)
                        stop.wait(0.01)
                    write(0)
                    assert http.post("/-/reload").status_code == 200
                    final = metric_samples(http.get("/metrics").text)
            finally:
                stop.set()
                for thread in scrapers:
                    thread.join()
            assert proc.poll() is None

    assert errors == []
    assert len(seen) >= 30
    assert {status for status, _, _ in seen} == {200}
    assert {entities for _, entities, _ in seen} <= {
        frozenset({"Public", "Broken"}),
        frozenset({"Public", "Broken", "Extra"}),
    }
    assert {up for _, _, up in seen} == {1}
    assert sample(final, "medulla_imaging_exporter_config_last_reload_successful") == 1
