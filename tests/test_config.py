from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from medulla_imaging_exporter.config import (
    ConfigError,
    Entity,
    TLSConfig,
    load_config,
    parse_duration,
    redact_url,
)
from tests.helpers import FIXTURES

BAD = FIXTURES / "configs" / "bad"

# One fixture file per configuration error, with the message it must give.
EXPECTED = {
    "unknown-top-key.yml": (
        "entites: unknown key (known keys: database, defaults, discovery, entities)"
    ),
    "unknown-entity-key.yml": "entities[0].adress: unknown key",
    "unknown-tls-key.yml": "defaults.tls_config.ca: unknown key",
    "duplicate-name.yml": "entities[1].name: duplicate entity name 'Public'",
    "bad-url-scheme.yml": "entities[0].url: expected an http:// or https:// URL with a host",
    "bad-url-port.yml": "entities[0].url: bad URL",
    "bad-url-no-host.yml": "entities[0].url: expected an http:// or https:// URL with a host",
    "bad-url-fragment.yml": "entities[0].url: a URL fragment is not allowed",
    "bad-duration.yml": "entities[0].timeout: expected a duration such as 10s",
    "negative-duration.yml": "entities[0].timeout: must be positive, got -5",
    "defaults-bad-duration.yml": "defaults.timeout: expected a duration",
    "missing-name.yml": "entities[0].name: expected a non-empty string, got None",
    "unreadable-ca.yml": "entities[0].tls_config.ca_file: cannot read",
    "ca-not-pem.yml": "defaults.tls_config: cannot load the certificate files",
    "cert-without-key.yml": "entities[0].tls_config: cert_file and key_file must be given together",
    "bad-insecure-skip-verify.yml": (
        "entities[0].tls_config.insecure_skip_verify: expected true or false, got 'yes'"
    ),
    "empty-server-name.yml": "entities[0].tls_config.server_name: expected a non-empty string",
    "entities-not-list.yml": "entities: expected a list, got dict",
    "entity-not-mapping.yml": "entities[0]: expected a mapping, got str",
    "top-not-mapping.yml": ": expected a mapping, got list",
    "not-yaml.yml": "not valid YAML",
    "bad-max-reply-bytes.yml": "defaults.max_reply_bytes: expected a positive integer, got 0",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_bad_file_gives_its_error_naming_file_and_key(name: str) -> None:
    path = BAD / name
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{path}: " in message
    assert EXPECTED[name] in message
    assert len(info.value.problems) == 1, info.value.problems


def test_every_bad_fixture_is_tested() -> None:
    files = {p.name for p in BAD.glob("*.yml")} - {"several-errors.yml"}
    assert files == set(EXPECTED)


def test_all_errors_of_a_file_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(BAD / "several-errors.yml")
    assert info.value.problems == [
        "entities[0].url: expected an http:// or https:// URL with a host, got 'ftp://x'",
        "entities[0].timeout: expected a duration such as 10s, 1m30s or 500ms, got 'soon'",
        "entities[1].colour: unknown key (known keys: max_reply_bytes, name, timeout, tls_config, "
        "url, uuid)",
        "entities[1].name: duplicate entity name 'Public'",
    ]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yml: cannot read the file"):
        load_config(tmp_path / "missing.yml")


def test_good_file_with_defaults_inherited_and_overridden(tmp_path: Path, ca_file: Path) -> None:
    shutil.copy(FIXTURES / "configs" / "good.yml", tmp_path / "config.yml")
    shutil.copy(ca_file, tmp_path / "ca.pem")
    config = load_config(tmp_path / "config.yml")
    root, public, private = config.entities
    assert (root.name, root.uuid, root.url) == ("Siveo Medulla", "UUID1", None)
    assert public.url == "https://127.0.0.1:9990/imaging_api"
    assert public.timeout == 90.0
    assert public.max_reply_bytes == 65536
    assert public.tls == TLSConfig(ca_file=tmp_path / "ca.pem", server_name="imaging.example.org")
    assert private.name == 'Privé "quoted"'
    assert private.timeout == 0.5
    # entity keys override one by one: the CA and server name of defaults stay
    assert private.tls == TLSConfig(
        ca_file=tmp_path / "ca.pem", server_name="imaging.example.org", insecure_skip_verify=True
    )
    assert config.entity("Public") is public
    assert config.entity("nobody") is None


def test_verification_is_on_by_default(tmp_path: Path) -> None:
    (tmp_path / "c.yml").write_text("entities:\n  - name: A\n    url: https://a:9990/x\n")
    entity = load_config(tmp_path / "c.yml").entities[0]
    assert entity.tls.insecure_skip_verify is False
    assert entity.timeout == 10.0


def test_empty_file_is_an_empty_configuration(tmp_path: Path) -> None:
    (tmp_path / "c.yml").write_text("")
    assert load_config(tmp_path / "c.yml").entities == ()


def test_config_objects_are_frozen(tmp_path: Path) -> None:
    (tmp_path / "c.yml").write_text("entities:\n  - name: A\n")
    entity = load_config(tmp_path / "c.yml").entities[0]
    with pytest.raises(AttributeError):
        entity.name = "B"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("2m", 120.0),
        (3, 3.0),
        (0.25, 0.25),
        ("1.5s", 1.5),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "s", "1x", "0s", True, None, "-1s", "1m1h"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_redact_url() -> None:
    assert redact_url("https://u:pw@h:9990/imaging_api") == "https://h:9990/imaging_api"
    assert redact_url("https://[::1]:9990/x") == "https://[::1]:9990/x"
    assert redact_url("https://u@[::1]/x") == "https://[::1]/x"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://h/x?token=abc", "https://h/x?token=<redacted>"),
        ("https://h/x?a=1&b=&c", "https://h/x?a=<redacted>&b=<redacted>&<redacted>"),
        ("https://u:p@h/x?k=v#frag", "https://h/x?k=<redacted>#frag"),
        ("https://u:p?w@h/x?k=v", "https://h/x?k=<redacted>"),  # '?' in the password
        ("https://h/x?", "https://h/x?<redacted>"),
        ("https://h/x#a?b=c", "https://h/x#a?b=c"),  # no query, only a fragment
    ],
)
def test_query_values_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_example_configuration_is_valid(tmp_path: Path, ca_file: Path) -> None:
    example = Path(__file__).parent.parent / "examples" / "config.yml"
    shutil.copy(example, tmp_path / "config.yml")
    shutil.copy(ca_file, tmp_path / "medulla-imaging-ca.pem")
    config = load_config(tmp_path / "config.yml")
    assert [e.name for e in config.entities] == ["Siveo Medulla", "Public", "Private"]
    assert all(not e.tls.insecure_skip_verify for e in config.entities)


def test_an_entity_hashes_as_its_fields_so_equal_entities_are_one_key() -> None:
    entity = Entity("Public", url="https://imaging.example:9990/imaging_api")
    same = Entity("Public", url="https://imaging.example:9990/imaging_api")
    changed = replace(entity, tls=TLSConfig(server_name="other"))
    assert hash(entity) == hash(same) == hash(entity)  # the second hash is the cached one
    clients = {entity: "connection"}
    assert clients.get(same) == "connection"
    assert clients.get(changed) is None
    assert changed == replace(same, tls=TLSConfig(server_name="other"))
    assert hash(changed) == hash(replace(same, tls=TLSConfig(server_name="other")))
