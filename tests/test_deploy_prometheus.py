"""End to end with Debian's real Prometheus and the real CLI's demo: the scrape
configurations of examples/prometheus/ as shipped, only pointed at 127.0.0.1 and sped up."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import trustme
import yaml

from tests.helpers import REPO, demo_exporter, prometheus, prometheus_query, wait_until

EXAMPLES = REPO / "examples" / "prometheus"
EXAMPLE_ADDRESS = "medulla-exporter.example.org:9867"
DEMO_ENTITIES = {"Siveo Medulla", "Public", "Private", "General"}


def example(name: str, exporter: str, workdir: Path | None = None) -> dict[str, Any]:
    """An example configuration aimed at ``exporter`` (host:port), scraping every second."""
    text = (EXAMPLES / name).read_text(encoding="utf-8").replace(EXAMPLE_ADDRESS, exporter)
    config: dict[str, Any] = yaml.safe_load(text)
    config["global"].update(scrape_interval="1s", scrape_timeout="1s")
    config.pop("rule_files")  # checked by promtool in test_examples; not needed to scrape
    for job in config["scrape_configs"]:
        for sd in job.get("http_sd_configs", []):
            sd["refresh_interval"] = "1s"
        if workdir is not None and "tls_config" in job:  # files next to the example
            job["tls_config"]["ca_file"] = str(workdir / job["tls_config"]["ca_file"])
            job["basic_auth"]["password_file"] = str(workdir / job["basic_auth"]["password_file"])
    return config


def up_by_entity(base: str, job: str) -> dict[str, float]:
    series = prometheus_query(base, f'up{{job="{job}"}}')
    return {s["metric"]["entity"]: float(s["value"][1]) for s in series}


def test_sd_discovers_every_entity_and_scrapes_each_through_probe(tmp_path: Path) -> None:
    with demo_exporter(tmp_path) as exporter:
        address = exporter.removeprefix("http://")
        with prometheus(tmp_path / "prom", example("sd.yml", address)) as prom:
            wait_until(
                lambda: (
                    up_by_entity(prom, "medulla-imaging-sd") == dict.fromkeys(DEMO_ENTITIES, 1.0)
                ),
                timeout=30,
            )
            status = prometheus_query(prom, "medulla_imaging_server_status == 1")
            states = {s["metric"]["entity"]: s["metric"]["status"] for s in status}
            assert states == {
                "Siveo Medulla": "not_linked",
                "Public": "available",
                "Private": "connection_error",
                "General": "offline",
            }
            # Each target scraped /probe for its own entity only, under its own label.
            assert all(s["metric"]["job"] == "medulla-imaging-sd" for s in status)
            assert prometheus_query(prom, '{exported_entity!=""}') == []
            targets = httpx.get(f"{prom}/api/v1/targets", timeout=5).json()["data"]
            urls = sorted(t["scrapeUrl"] for t in targets["activeTargets"])
            assert urls == sorted(
                str(httpx.URL(f"{exporter}/probe", params={"entity": e})) for e in DEMO_ENTITIES
            )


def test_two_servers_with_hashmod_cover_every_entity_exactly_once(tmp_path: Path) -> None:
    with demo_exporter(tmp_path) as exporter:
        address = exporter.removeprefix("http://")
        with (
            prometheus(tmp_path / "p0", example("sharded-0.yml", address)) as p0,
            prometheus(tmp_path / "p1", example("sharded-1.yml", address)) as p1,
        ):

            def shares() -> list[set[str]]:
                """Each server's scraped entities, once all of its targets have an ``up``."""
                kept = []
                for prom in (p0, p1):
                    targets = httpx.get(f"{prom}/api/v1/targets", timeout=5).json()["data"]
                    up = up_by_entity(prom, "medulla-imaging-sd")
                    kept.append(set(up) if len(targets["activeTargets"]) == len(up) else set())
                return kept

            wait_until(lambda: set.union(*shares()) == DEMO_ENTITIES, timeout=30)
            share0, share1 = shares()
            assert share0 & share1 == set()
            assert share0 and share1  # a real split, not one server doing everything
            for prom, shard in ((p0, "0"), (p1, "1")):
                config = httpx.get(f"{prom}/api/v1/status/config", timeout=5).json()
                assert f'shard: "{shard}"' in config["data"]["yaml"]


@pytest.fixture
def secured(tmp_path: Path) -> tuple[Path, Path]:
    """A web config with HTTPS and one bcrypt user, and the files Prometheus needs."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    web = tmp_path / "web"
    web.mkdir()
    cert.cert_chain_pems[0].write_to_path(str(web / "exporter.crt"))
    cert.private_key_pem.write_to_path(str(web / "exporter.key"))
    ca.cert_pem.write_to_path(str(web / "medulla-exporter-ca.pem"))
    (web / "medulla-exporter.password").write_text("s3cret\n", encoding="utf-8")
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    config = yaml.safe_load((REPO / "examples" / "web-config.yml").read_text(encoding="utf-8"))
    config["basic_auth_users"] = {"prometheus": hashed}
    (web / "web-config.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return web, web / "web-config.yml"


@contextlib.contextmanager
def secured_demo(
    tmp_path: Path, secured: tuple[Path, Path]
) -> Iterator[tuple[str, ssl.SSLContext]]:
    """The demo behind the secured web config; yields its HTTPS URL and the CA to trust."""
    web, web_config = secured
    ca = ssl.create_default_context(cafile=web / "medulla-exporter-ca.pem")
    flags = ("--web.config.file", str(web_config))
    with demo_exporter(tmp_path, *flags, scheme="https", verify=ca) as exporter:
        yield exporter, ca


def test_prometheus_scrapes_over_tls_with_basic_auth_and_a_wrong_password_gets_401(
    tmp_path: Path, secured: tuple[Path, Path]
) -> None:
    web, _ = secured
    with secured_demo(tmp_path, secured) as (exporter, ca):
        address = exporter.removeprefix("https://")
        # Directly: no password and a wrong one are refused, the right one works.
        assert httpx.get(f"{exporter}/metrics", verify=ca).status_code == 401
        wrong = httpx.get(f"{exporter}/metrics", verify=ca, auth=("prometheus", "wrong"))
        assert wrong.status_code == 401
        assert wrong.headers["WWW-Authenticate"].startswith("Basic")
        right = httpx.get(f"{exporter}/metrics", verify=ca, auth=("prometheus", "s3cret"))
        assert right.status_code == 200
        assert "medulla_imaging_exporter_build_info" in right.text

        good = example("secured.yml", address, web)
        bad_job = yaml.safe_load(yaml.safe_dump(good["scrape_configs"][0]))
        bad_job["job_name"] = "wrong-password"
        (web / "wrong.password").write_text("wrong\n", encoding="utf-8")
        bad_job["basic_auth"]["password_file"] = str(web / "wrong.password")
        good["scrape_configs"].append(bad_job)
        with prometheus(tmp_path / "prom", good) as prom:

            def targets() -> list[dict[str, Any]]:
                found: list[dict[str, Any]] = httpx.get(f"{prom}/api/v1/targets", timeout=5).json()[
                    "data"
                ]["activeTargets"]
                return found

            wait_until(
                lambda: (
                    {t["labels"]["job"]: t["health"] for t in targets()}
                    == {"medulla-imaging": "up", "wrong-password": "down"}
                ),
                timeout=30,
            )
            scraped = targets()
            wrong_target = next(t for t in scraped if t["labels"]["job"] == "wrong-password")
            assert "401" in wrong_target["lastError"]
            assert all(t["scrapeUrl"].startswith("https://") for t in scraped)
            build = prometheus_query(prom, "medulla_imaging_exporter_build_info")
            assert [b["metric"]["job"] for b in build] == ["medulla-imaging"]
            up = prometheus_query(prom, "up")
            assert {s["metric"]["job"]: s["value"][1] for s in up} == {
                "medulla-imaging": "1",
                "wrong-password": "0",
            }


def test_discovery_and_probes_from_a_secured_exporter(
    tmp_path: Path, secured: tuple[Path, Path]
) -> None:
    """docs/deployment.md: /sd over HTTPS with basic auth, then /probe with the same."""
    web, _ = secured
    with secured_demo(tmp_path, secured) as (exporter, _ca):
        address = exporter.removeprefix("https://")
        credentials = example("secured.yml", address, web)["scrape_configs"][0]
        config = example("sd.yml", address)
        job = config["scrape_configs"][0]
        sd = job["http_sd_configs"][0]
        sd["url"] = sd["url"].replace("http://", "https://")
        for target in (job, sd):
            target["tls_config"] = credentials["tls_config"]
            target["basic_auth"] = credentials["basic_auth"]
        job["scheme"] = "https"
        with prometheus(tmp_path / "prom", config) as prom:
            wait_until(
                lambda: (
                    up_by_entity(prom, "medulla-imaging-sd") == dict.fromkeys(DEMO_ENTITIES, 1.0)
                ),
                timeout=30,
            )
            status = prometheus_query(prom, 'medulla_imaging_server_status{status="available"}')
            assert {s["metric"]["entity"]: s["value"][1] for s in status}["Public"] == "1"
