"""--web.config.file: validation with clear errors, then real HTTPS, basic auth and client
certificates on 127.0.0.1."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import trustme

from medulla_imaging_exporter.config import Config, ConfigError, Entity
from medulla_imaging_exporter.runtime import Runtime
from medulla_imaging_exporter.webconfig import WebConfig, load_web_config, parse_web_config
from tests.helpers import FIXTURES, serving

BAD = FIXTURES / "webconfig"
PASSWORD = "s3cret"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("unknown_key.yml", "basic_auth_user: unknown key (known keys: basic_auth_users, "),
        ("plain_password.yml", "basic_auth_users.prometheus: expected a bcrypt hash"),
        ("user_with_colon.yml", "basic_auth_users.prom:etheus: a user name must be"),
        ("users_not_mapping.yml", "basic_auth_users: expected a mapping, got list"),
        ("missing_key_file.yml", "tls_server_config.key_file: required to serve HTTPS"),
        ("unreadable_cert.yml", "tls_server_config.cert_file: cannot read "),
        ("bad_pem.yml", "tls_server_config: cannot load the certificate files"),
        ("unsupported_client_auth.yml", "RequireAnyClientCert accepts unverified certificates"),
        ("unknown_client_auth.yml", "tls_server_config.client_auth_type: expected one of"),
        ("client_auth_without_ca.yml", "tls_server_config.client_ca_file: required with Require"),
        ("ca_without_client_auth.yml", "client_ca_file is set but nothing checks client"),
        ("health_not_bool.yml", "health_checks_without_auth: expected true or false, got 'yes'"),
        ("not_mapping.yml", ": expected a mapping, got list"),
        ("not_yaml.yml", ": not valid YAML"),
    ],
)
def test_bad_file_is_refused_naming_file_and_key(name: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_web_config(BAD / name)
    assert str(err.value).startswith(f"{BAD / name}: ")
    assert expected in str(err.value)


def test_a_plain_text_password_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as err:
        load_web_config(BAD / "plain_password.yml")
    assert "hunter2" not in str(err.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        load_web_config(BAD / "several_problems.yml")
    assert sorted(line.split(": ")[1] for line in str(err.value).splitlines()) == [
        "basic_auth_users.prometheus",
        "health_checks_without_auth",
        "tls_server_config.key_file",
        "tls_server_config.min_version",
    ]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_web_config(tmp_path / "absent.yml")


def test_the_shipped_example_loads_with_its_certificates(tmp_path: Path, pki: Pki) -> None:
    example = (Path(__file__).parent.parent / "examples" / "web-config.yml").read_text()
    (tmp_path / "web-config.yml").write_text(example)
    for name in ("exporter.crt", "exporter.key"):
        (tmp_path / name).write_bytes((pki.dir / name).read_bytes())
    config = load_web_config(tmp_path / "web-config.yml")
    assert config.ssl_context is not None
    assert set(config.users) == {"prometheus"}
    assert config.health_checks_without_auth


@dataclass
class Pki:
    dir: Path
    server_ca: trustme.CA
    client_ca: trustme.CA
    client: trustme.LeafCert

    def client_context(self, with_cert: bool, ca: trustme.CA | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.server_ca.configure_trust(ctx)
        if with_cert:
            (ca.issue_cert("intruder") if ca else self.client).configure_cert(ctx)
        return ctx


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    server_ca, client_ca = trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("127.0.0.1")
    directory = tmp_path / "pki"
    directory.mkdir()
    server.cert_chain_pems[0].write_to_path(str(directory / "exporter.crt"))
    server.private_key_pem.write_to_path(str(directory / "exporter.key"))
    client_ca.cert_pem.write_to_path(str(directory / "clients-ca.pem"))
    return Pki(directory, server_ca, client_ca, client_ca.issue_cert("prometheus"))


def web_config(pki: Pki, **extra: Any) -> WebConfig:
    tls = {"cert_file": "exporter.crt", "key_file": "exporter.key"}
    tls.update(extra.pop("tls", {}))
    data = {"tls_server_config": tls, **extra}
    return parse_web_config(data, source="web.yml", base_dir=pki.dir)


def users() -> dict[str, str]:
    return {"prometheus": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()}


@pytest.fixture
def runtime() -> Runtime:
    return Runtime(lambda: Config(entities=(Entity(name="Siveo Medulla"),)))


@pytest.fixture
async def basic_auth(pki: Pki, runtime: Runtime) -> AsyncIterator[str]:
    async with serving(runtime, web_config(pki, basic_auth_users=users())) as base:
        yield base


@pytest.mark.parametrize(
    ("auth", "headers"),
    [
        (None, {}),
        (("prometheus", "wrong"), {}),
        (("nobody", PASSWORD), {}),
        (None, {"Authorization": "Bearer s3cret"}),
        (None, {"Authorization": "Basic not-base64!"}),
        (None, {"Authorization": "Basic cHJvbWV0aGV1cw=="}),  # "prometheus", no colon
    ],
)
async def test_basic_auth_refuses_bad_credentials_with_401(
    basic_auth: str, pki: Pki, auth: tuple[str, str] | None, headers: dict[str, str]
) -> None:
    async with httpx.AsyncClient(verify=pki.client_context(False), headers=headers) as client:
        for path in ("/metrics", "/probe?entity=Siveo+Medulla", "/sd", "/", "/-/healthy"):
            reply = await client.get(f"{basic_auth}{path}", auth=auth)
            assert reply.status_code == 401, path
            assert reply.headers["WWW-Authenticate"].startswith("Basic realm=")


async def test_basic_auth_accepts_the_right_password_again_and_again(
    basic_auth: str, pki: Pki
) -> None:
    assert basic_auth.startswith("https://")
    async with httpx.AsyncClient(verify=pki.client_context(False)) as client:
        for _ in range(3):
            reply = await client.get(f"{basic_auth}/metrics", auth=("prometheus", PASSWORD))
            assert reply.status_code == 200
            assert "medulla_imaging_server_status" in reply.text


async def test_health_checks_are_exempt_only_if_the_file_says_so(
    pki: Pki, runtime: Runtime
) -> None:
    exempt = web_config(pki, basic_auth_users=users(), health_checks_without_auth=True)
    async with (
        serving(runtime, exempt) as base,
        httpx.AsyncClient(verify=pki.client_context(False)) as client,
    ):
        assert (await client.get(f"{base}/-/healthy")).status_code == 200
        assert (await client.get(f"{base}/-/ready")).status_code == 200
        assert (await client.get(f"{base}/metrics")).status_code == 401
        assert (await client.post(f"{base}/-/reload")).status_code == 401


async def test_client_certificate_required_at_the_handshake(pki: Pki, runtime: Runtime) -> None:
    config = web_config(
        pki,
        tls={"client_ca_file": "clients-ca.pem", "client_auth_type": "RequireAndVerifyClientCert"},
    )
    async with serving(runtime, config) as base:
        async with httpx.AsyncClient(verify=pki.client_context(True)) as client:
            assert (await client.get(f"{base}/metrics")).status_code == 200
        for context in (pki.client_context(False), pki.client_context(True, trustme.CA())):
            async with httpx.AsyncClient(verify=context) as client:
                with pytest.raises(httpx.TransportError):
                    await client.get(f"{base}/-/healthy")


async def test_client_certificate_required_except_for_exempt_health_checks(
    pki: Pki, runtime: Runtime
) -> None:
    config = web_config(
        pki,
        tls={"client_ca_file": "clients-ca.pem", "client_auth_type": "RequireAndVerifyClientCert"},
        health_checks_without_auth=True,
    )
    async with serving(runtime, config) as base:
        async with httpx.AsyncClient(verify=pki.client_context(False)) as client:
            assert (await client.get(f"{base}/-/healthy")).status_code == 200
            assert (await client.get(f"{base}/metrics")).status_code == 403
        async with httpx.AsyncClient(verify=pki.client_context(True)) as client:
            assert (await client.get(f"{base}/metrics")).status_code == 200
        async with httpx.AsyncClient(verify=pki.client_context(True, trustme.CA())) as client:
            with pytest.raises(httpx.TransportError):
                await client.get(f"{base}/metrics")


async def test_client_certificate_verified_if_given(pki: Pki, runtime: Runtime) -> None:
    config = web_config(
        pki, tls={"client_ca_file": "clients-ca.pem", "client_auth_type": "VerifyClientCertIfGiven"}
    )
    async with serving(runtime, config) as base:
        for with_cert in (False, True):
            async with httpx.AsyncClient(verify=pki.client_context(with_cert)) as client:
                assert (await client.get(f"{base}/metrics")).status_code == 200
        async with httpx.AsyncClient(verify=pki.client_context(True, trustme.CA())) as client:
            with pytest.raises(httpx.TransportError):
                await client.get(f"{base}/metrics")


async def test_an_empty_file_changes_nothing(runtime: Runtime) -> None:
    async with serving(runtime, parse_web_config(None)) as base:
        assert base.startswith("http://")
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{base}/metrics")).status_code == 200


def test_cli_refuses_to_start_with_a_bad_web_config() -> None:
    bad = BAD / "plain_password.yml"
    result = subprocess.run(
        [sys.executable, "-m", "medulla_imaging_exporter", "--demo", "--web.config.file", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "invalid web configuration" in result.stderr
    assert f"{bad}: basic_auth_users.prometheus: expected a bcrypt hash" in result.stderr
