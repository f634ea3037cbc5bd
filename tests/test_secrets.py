"""Passwords and keys never leave the configuration: not in metrics, pages, logs or errors.

The real CLI runs with debug logging in both formats against servers reached with
credentials in their URLs and a client key, once serving HTTPS with basic auth
(--web.config.file); every page it serves (the status page, the debug views, the
probes in the history), its log, its reload errors and its configuration errors are
scanned for the secrets.
"""

from __future__ import annotations

import base64
import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml

from medulla_imaging_exporter.config import ConfigError, load_config
from medulla_imaging_exporter.simulator import Behaviour, LocalCA
from tests.helpers import (
    FIXTURES,
    cli_process,
    free_port,
    metric_samples,
    sample,
    simulators,
    write_config,
)

PASSWORD = "s3cret"
WRONG = "wr0ng-passw0rd"
TOKEN = "t0ken-in-the-query"  # the imaging server ignores it; a proxy in front may not
DB_PASSWORD = "d4tabase-pa55"  # read from the environment, for a database that refuses
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


def key_body(key_file: Path) -> list[str]:
    return [
        line for line in key_file.read_text().splitlines() if len(line) > 16 and "--" not in line
    ]


def basic(user: str, password: str) -> str:
    """The credentials as an Authorization: Basic header carries them."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def secure_exporter(local_ca: LocalCA, tmp_path: Path) -> tuple[Path, list[str]]:
    """A --web.config.file with HTTPS and a bcrypt user, and the secrets it holds."""
    issued = local_ca.ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "exporter.crt", tmp_path / "exporter.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web_config = tmp_path / "web-config.yml"
    web_config.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": str(cert), "key_file": str(key)},
                "basic_auth_users": {"prometheus": hashed},
                "health_checks_without_auth": True,
            }
        )
    )
    return web_config, [hashed, basic("prometheus", PASSWORD), WRONG, *key_body(key)]


@pytest.mark.parametrize(("log_format", "secured"), [("logfmt", False), ("json", True)])
def test_no_secret_in_pages_logs_or_reload_errors(
    log_format: str,
    secured: bool,
    local_ca: LocalCA,
    ca_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Secured: the exporter also serves HTTPS with basic auth, whose secrets are scanned too."""
    cert, key = local_ca.write_client_cert(tmp_path)
    secrets = [PASSWORD, basic("user", PASSWORD), DB_PASSWORD, TOKEN, *key_body(key)]
    monkeypatch.setenv("MEDULLA_DB_PASSWORD", DB_PASSWORD)
    database = {
        "host": "127.0.0.1",
        "port": free_port(),  # nothing listens: every refresh fails and is logged
        "user": "exporter",
        "password_env": "MEDULLA_DB_PASSWORD",
        "connect_timeout": "1s",
    }
    config = tmp_path / "config.yml"
    args: list[str | Path] = ["--config.file", config, "--log.level", "debug"]
    args += ["--log.format", log_format]
    client: dict[str, Any] = {}
    scheme = "http"
    if secured:
        web_config, more = secure_exporter(local_ca, tmp_path)
        secrets += more
        args += ["--web.config.file", web_config]
        verify = ssl.create_default_context(cafile=str(ca_file))
        client = {"auth": ("prometheus", PASSWORD), "verify": verify}
        scheme = "https"
    behaviours = [b for _, b in ENTITIES]
    with simulators(local_ca, *behaviours, client_auth=True) as servers:
        urls = {
            name: server.url.replace("https://", f"https://user:{PASSWORD}@") + f"?token={TOKEN}"
            for (name, _), server in zip(ENTITIES, servers, strict=True)
        }
        entities: list[dict[str, object]] = [{"name": n, "url": u} for n, u in urls.items()]
        entities.append(
            {"name": "Unreachable", "url": f"https://admin:{PASSWORD}@nowhere.invalid/"}
        )
        tls = {"ca_file": str(ca_file), "cert_file": str(cert), "key_file": str(key)}
        write_config(config, entities, {"database": database}, timeout="2s", tls_config=tls)
        texts: dict[str, str] = {}
        codes: dict[str, int] = {}
        with (
            cli_process(tmp_path, *args, scheme=scheme, verify=client.get("verify", True)) as (
                proc,
                base,
            ),
            httpx.Client(base_url=base, timeout=30, **client) as http,
        ):
            for page in PAGES:
                response = http.get(page)
                assert response.status_code < 500, page
                texts[page] = response.text
                codes[page] = response.status_code
            if secured:  # a wrong password is refused and never written down
                refused = http.get("/metrics", auth=("prometheus", WRONG))
                assert refused.status_code == 401
                texts["refused"] = refused.text
            # A reload that fails on a bad URL holding the password, by HTTP and by SIGHUP.
            good = config.read_text()
            config.write_text((SECRETS_DIR / "slash-in-password.yml").read_text())
            failed = http.post("/-/reload")
            assert failed.status_code == 500
            texts["failed reload"] = failed.text
            os.kill(proc.pid, signal.SIGHUP)
            config.write_text(good)
            assert http.post("/-/reload").status_code == 200
            samples = metric_samples(http.get("/metrics").text)
        assert servers[0].requests > 0  # the credentials and client key were really used
    log = (tmp_path / "exporter.log").read_text()
    texts["log"] = log

    assert sample(samples, "medulla_imaging_server_up", entity="Public") == 1
    assert "probe failed" in log and "reload failed" in log  # the scan covers failures
    assert "imaging database refresh failed" in log
    assert "http_500" in texts["/probe?entity=Broken&debug=true"]
    assert 200 in {codes[f"/logs?id={n}"] for n in range(40)}
    for where, text in texts.items():
        for secret in secrets:
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
