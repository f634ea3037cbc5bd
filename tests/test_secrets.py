"""Passwords and keys never leave the configuration: not in metrics, pages, logs or errors.

The real CLI runs with debug logging in both formats against servers reached with
credentials in their URLs and a client key; every page it serves (including the
status page and debug view, whenever they exist), its log, its reload errors and
its configuration errors are scanned for the secrets.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from medulla_imaging_exporter.config import ConfigError, load_config
from medulla_imaging_exporter.simulator import Behaviour, LocalCA
from tests.helpers import (
    FIXTURES,
    cli_process,
    metric_samples,
    sample,
    simulators,
    write_config,
)

PASSWORD = "s3cret"
SECRETS_DIR = FIXTURES / "configs" / "secrets"
# (entity, behaviour of its server): one that answers, and one per kind of failure.
ENTITIES = [
    ("Public", Behaviour.OK),
    ("Broken", Behaviour.HTTP_500),
    ("Reset", Behaviour.RESET),
    ("Faulty", Behaviour.FAULT),
    ("Refused", Behaviour.REFUSE),
]
PAGES = [
    "/",
    "/?lang=fr",
    "/?lang=en",
    "/metrics",
    "/probe",
    "/probe?entity=Unknown",
    "/-/healthy",
    "/-/ready",
    "/no-such-page",
    *(f"/probe?entity={name}" for name, _ in ENTITIES),
    *(f"/probe?entity={name}&debug=true" for name, _ in ENTITIES),
    "/probe?entity=Unreachable&debug=true",
    *(f"/?entity={name}" for name, _ in ENTITIES),
    *(f"/logs?id={n}" for n in range(40)),  # the probes kept in the history
]


def secrets(key_file: Path) -> list[str]:
    """The password, as typed and as sent in a Basic header, and the body of the key."""
    key_lines = [line for line in key_file.read_text().splitlines() if "-----" not in line]
    return [
        PASSWORD,
        base64.b64encode(f"user:{PASSWORD}".encode()).decode(),
        *(line for line in key_lines if len(line) > 16),
    ]


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_no_secret_in_pages_logs_or_reload_errors(
    log_format: str, local_ca: LocalCA, ca_file: Path, tmp_path: Path
) -> None:
    cert, key = local_ca.write_client_cert(tmp_path)
    config = tmp_path / "config.yml"
    behaviours = [b for _, b in ENTITIES]
    with simulators(local_ca, *behaviours, client_auth=True) as servers:
        urls = {
            name: server.url.replace("https://", f"https://user:{PASSWORD}@")
            for (name, _), server in zip(ENTITIES, servers, strict=True)
        }
        entities: list[dict[str, object]] = [{"name": n, "url": u} for n, u in urls.items()]
        entities.append(
            {"name": "Unreachable", "url": f"https://admin:{PASSWORD}@nowhere.invalid/"}
        )
        tls = {"ca_file": str(ca_file), "cert_file": str(cert), "key_file": str(key)}
        write_config(config, entities, timeout="2s", tls_config=tls)
        args: list[str | Path] = [
            "--config.file",
            config,
            "--log.level",
            "debug",
            "--log.format",
            log_format,
        ]
        texts: dict[str, str] = {}
        codes: dict[str, int] = {}
        with cli_process(tmp_path, *args) as (proc, base), httpx.Client(base_url=base) as http:
            for page in PAGES:
                response = http.get(page, timeout=30)
                assert response.status_code < 500, page
                texts[page] = response.text
                codes[page] = response.status_code
            # A reload that fails on a bad URL holding the password, by HTTP and by SIGHUP.
            good = config.read_text()
            config.write_text((SECRETS_DIR / "slash-in-password.yml").read_text())
            failed = http.post("/-/reload")
            assert failed.status_code == 500
            texts["failed reload"] = failed.text
            os.kill(proc.pid, signal.SIGHUP)
            config.write_text(good)
            assert http.post("/-/reload").status_code == 200
            samples = metric_samples(http.get("/metrics", timeout=30).text)
        assert servers[0].requests > 0  # the credentials and client key were really used
    log = (tmp_path / "exporter.log").read_text()
    texts["log"] = log

    assert sample(samples, "medulla_imaging_server_up", entity="Public") == 1
    assert "probe failed" in log and "reload failed" in log  # the scan covers failures
    assert "http_500" in texts["/probe?entity=Broken&debug=true"]
    assert 200 in {codes[f"/logs?id={n}"] for n in range(40)}
    for where, text in texts.items():
        for secret in secrets(key):
            assert secret not in text, f"{secret!r} in {where}"


@pytest.mark.parametrize("name", sorted(p.name for p in SECRETS_DIR.glob("*.yml")))
def test_configuration_errors_hide_the_password(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(SECRETS_DIR / name)
    assert "entities[0].url" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_config_check_and_start_up_hide_the_password() -> None:
    config = SECRETS_DIR / "slash-in-password.yml"
    base = [sys.executable, "-m", "medulla_imaging_exporter", "--config.file", str(config)]
    for extra in (["--config.check"], ["--log.level", "debug", "--log.format", "json"]):
        result = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        assert "entities[0].url" in result.stderr
        assert PASSWORD not in result.stdout + result.stderr
