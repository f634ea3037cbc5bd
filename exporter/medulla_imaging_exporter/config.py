"""Configuration: YAML validated at load into frozen, typed objects.

Every bad field gives one error naming the file and the key, all of them at
once, so that an administrator fixes a file in one pass.
"""

from __future__ import annotations

import functools
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_REPLY_BYTES = 1 << 20
DEFAULT_DATABASE_NAME = "imaging"
DEFAULT_DATABASE_PORT = 3306
DEFAULT_DB_CONNECT_TIMEOUT_SECONDS = 5.0
DEFAULT_DB_QUERY_TIMEOUT_SECONDS = 10.0
DEFAULT_DB_REFRESH_INTERVAL_SECONDS = 60.0
DISCOVERY_SOURCES = ("database",)

REDACTED = "<redacted>"
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*:(?://)?)?.*@")
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")

T = TypeVar("T")


class ConfigError(Exception):
    """Raised with every problem of a configuration file, one per line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


@dataclass(frozen=True)
class TLSConfig:
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class Entity:
    name: str
    uuid: str | None = None
    url: str | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES
    tls: TLSConfig = field(default_factory=TLSConfig)

    def __hash__(self) -> int:
        return self._hash

    @functools.cached_property
    def _hash(self) -> int:
        """Computed once: the prober looks an entity up in its dictionaries five times a probe."""
        return hash(tuple(getattr(self, f.name) for f in fields(self)))


@dataclass(frozen=True)
class DatabaseConfig:
    """Medulla's ``imaging`` database: where it is and how long a refresh may take."""

    user: str
    host: str | None = None
    port: int = DEFAULT_DATABASE_PORT
    unix_socket: str | None = None
    password: str | None = field(default=None, repr=False)
    name: str = DEFAULT_DATABASE_NAME
    connect_timeout: float = DEFAULT_DB_CONNECT_TIMEOUT_SECONDS
    query_timeout: float = DEFAULT_DB_QUERY_TIMEOUT_SECONDS
    refresh_interval: float = DEFAULT_DB_REFRESH_INTERVAL_SECONDS
    tls: TLSConfig | None = None


@dataclass(frozen=True)
class Config:
    entities: tuple[Entity, ...]
    source: str = "<memory>"
    database: DatabaseConfig | None = None
    discovery: str | None = None
    # The ``defaults`` section as an entity without a name: the template of discovered entities.
    defaults: Entity = field(default_factory=lambda: Entity(name=""))

    def entity(self, name: str) -> Entity | None:
        return next((e for e in self.entities if e.name == name), None)


def parse_duration(value: object) -> float:
    """Prometheus-style duration ("10s", "1m30s", "500ms") or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 10s, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value and (m := _DURATION.match(value)):
        h, mi, s, ms = m.groups()
        seconds = int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0) + int(ms or 0) / 1000
    else:
        raise ValueError(f"expected a duration such as 10s, 1m30s or 500ms, got {value!r}")
    if not seconds > 0:
        raise ValueError(f"must be positive, got {value!r}")
    return seconds


@functools.lru_cache(maxsize=4096)  # every entity's URL, at every scrape
def redact_url(url: str) -> str:
    """The URL without user, password or query values, for labels, pages, logs and errors."""
    return _redact_query(_redact_userinfo(url))


def _redact_userinfo(url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if parts is None or (parts.username is None and "@" in url):
        # A password holding '/', '?' or '#' ends the host early: cut up to the last '@'.
        return _USERINFO.sub(r"\1", url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def _redact_query(url: str) -> str:
    """Each value of the query hidden, its name kept: a token may ride there (``?token=``)."""
    before, hash_mark, fragment = url.partition("#")
    head, mark, query = before.partition("?")
    if not mark:
        return url
    params = (p.partition("=") for p in query.split("&"))
    shown = "&".join(f"{name}={REDACTED}" if eq else REDACTED for name, eq, _ in params)
    return f"{head}?{shown}{hash_mark}{fragment}"


class Reader:
    """Walks the YAML tree, collecting one problem per bad key instead of stopping."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[str] = []

    def mapping(self, value: object, where: str, allowed: set[str]) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problems.append(f"{where}: expected a mapping, got {type(value).__name__}")
            return {}
        for key in value:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                self.problems.append(f"{join_key(where, key)}: unknown key (known keys: {known})")
        return {k: v for k, v in value.items() if k in allowed}

    def field(self, where: str, convert: Callable[[object], T], value: object) -> T | None:
        try:
            return convert(value)
        except ValueError as err:
            self.problems.append(f"{where}: {err}")
            return None

    def path(self, value: object) -> Path:
        if not isinstance(value, str) or not value:
            raise ValueError(f"expected a file path, got {value!r}")
        path = Path(value)
        path = path if path.is_absolute() else self.base_dir / path
        try:
            path.read_bytes()
        except OSError as err:
            raise ValueError(f"cannot read {path}: {err.strerror or err}") from None
        return path


def join_key(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)


def non_empty_string(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return value


def _url(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a URL such as https://host:9990/imaging_api, got {value!r}")
    try:
        parts = urlsplit(value)
    except ValueError as err:
        raise ValueError(f"bad URL {redact_url(value)!r}: {err}") from None
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:  # its message quotes the port, which may be part of a password
        raise ValueError(f"bad URL {redact_url(value)!r}: bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"expected an http:// or https:// URL with a host, got {redact_url(value)!r}"
        )
    if parts.fragment:
        raise ValueError(f"a URL fragment is not allowed in {redact_url(value)!r}")
    return value


_TLS_KEYS = {"ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify"}
_ENTITY_KEYS = {"name", "uuid", "url", "timeout", "max_reply_bytes", "tls_config"}
_DEFAULT_KEYS = {"timeout", "max_reply_bytes", "tls_config"}
_TOP_KEYS = {"defaults", "entities", "database", "discovery"}
_DATABASE_KEYS = {
    "host",
    "port",
    "unix_socket",
    "user",
    "password_file",
    "password_env",
    "name",
    "connect_timeout",
    "query_timeout",
    "refresh_interval",
    "tls_config",
}


def _tls(reader: Reader, raw: Mapping[str, Any], where: str, base: TLSConfig) -> TLSConfig:
    before = len(reader.problems)
    values: dict[str, Any] = {}
    for key in ("ca_file", "cert_file", "key_file"):
        if key in raw:
            values[key] = reader.field(join_key(where, key), reader.path, raw[key])
    if "server_name" in raw:
        values["server_name"] = reader.field(
            join_key(where, "server_name"), non_empty_string, raw["server_name"]
        )
    if "insecure_skip_verify" in raw:
        values["insecure_skip_verify"] = reader.field(
            join_key(where, "insecure_skip_verify"), boolean, raw["insecure_skip_verify"]
        )
    if len(reader.problems) > before:
        return base
    tls = replace(base, **values)
    if (tls.cert_file is None) != (tls.key_file is None):
        reader.problems.append(f"{where}: cert_file and key_file must be given together")
    elif values:
        _check_loads(reader, tls, where)
    return tls


def _check_loads(reader: Reader, tls: TLSConfig, where: str) -> None:
    """Load the PEM files once now, so a bad one is reported at load and not at 3 a.m."""
    try:
        ssl_context(tls)
    except (ssl.SSLError, OSError) as err:
        reader.problems.append(f"{where}: cannot load the certificate files: {err}")


def ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """An SSL context for these settings (verification on unless turned off)."""
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert_file and tls.key_file:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return ctx


def _settings(reader: Reader, raw: Mapping[str, Any], where: str, base: Entity) -> dict[str, Any]:
    """The settings shared by ``defaults`` and each entity, over those of ``base``."""
    out: dict[str, Any] = {
        "timeout": base.timeout,
        "max_reply_bytes": base.max_reply_bytes,
        "tls": base.tls,
    }
    if "timeout" in raw:
        out["timeout"] = reader.field(join_key(where, "timeout"), parse_duration, raw["timeout"])
    if "max_reply_bytes" in raw:
        out["max_reply_bytes"] = reader.field(
            join_key(where, "max_reply_bytes"), _positive_int, raw["max_reply_bytes"]
        )
    if "tls_config" in raw:
        tls_where = join_key(where, "tls_config")
        out["tls"] = _tls(
            reader, reader.mapping(raw["tls_config"], tls_where, _TLS_KEYS), tls_where, base.tls
        )
    return {k: v for k, v in out.items() if v is not None}


def _port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError(f"expected a TCP port from 1 to 65535, got {value!r}")
    return value


def _environment_password(value: object) -> str:
    name = non_empty_string(value)
    password = os.environ.get(name)
    if password is None:
        raise ValueError(f"the environment variable {name} is not set")
    return password


def _file_password(reader: Reader) -> Callable[[object], str]:
    def read(value: object) -> str:
        path = reader.path(value)
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except UnicodeDecodeError as err:
            raise ValueError(f"cannot read {path}: {err}") from None

    return read


def _database(reader: Reader, value: object) -> DatabaseConfig | None:
    """The ``database`` block; the password comes from a file or the environment, never inline."""
    where = "database"
    before = len(reader.problems)
    raw = reader.mapping(value, where, _DATABASE_KEYS)
    if value is not None and not isinstance(value, Mapping):
        return None
    out: dict[str, Any] = {}
    for key, convert in (
        ("host", non_empty_string),
        ("unix_socket", non_empty_string),
        ("user", non_empty_string),
        ("name", non_empty_string),
        ("port", _port),
        ("connect_timeout", parse_duration),
        ("query_timeout", parse_duration),
        ("refresh_interval", parse_duration),
        ("password_env", _environment_password),
        ("password_file", _file_password(reader)),
    ):
        if key in raw:
            out[key] = reader.field(join_key(where, key), convert, raw[key])
    if ("host" in raw) == ("unix_socket" in raw):
        reader.problems.append(f"{where}: give exactly one of host and unix_socket")
    if "user" not in raw:
        reader.problems.append(f"{where}.user: missing (the read-only user of docs/database.md)")
    if "password_env" in raw and "password_file" in raw:
        reader.problems.append(f"{where}: give password_file or password_env, not both")
    if "port" in raw and "unix_socket" in raw:
        reader.problems.append(f"{where}.port: not used with unix_socket")
    if "tls_config" in raw:
        tls_where = join_key(where, "tls_config")
        tls_raw = reader.mapping(raw["tls_config"], tls_where, _TLS_KEYS)
        if "server_name" in tls_raw:
            reader.problems.append(
                f"{tls_where}.server_name: not supported for the database; "
                "use the host name of the certificate as host"
            )
        out["tls"] = _tls(reader, tls_raw, tls_where, TLSConfig())
    if len(reader.problems) > before:
        return None
    from_env, from_file = out.pop("password_env", None), out.pop("password_file", None)
    out["password"] = from_env if from_env is not None else from_file
    return DatabaseConfig(**out)


def parse_config(data: object, source: str = "<memory>", base_dir: Path | None = None) -> Config:
    """Validate an already-decoded YAML document."""
    reader = Reader(base_dir or Path.cwd())
    top = reader.mapping(data, "", _TOP_KEYS)
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(source, reader.problems)
    defaults_raw = reader.mapping(top.get("defaults"), "defaults", _DEFAULT_KEYS)
    template = Entity(name="", **_settings(reader, defaults_raw, "defaults", Entity(name="")))

    entities: list[Entity] = []
    raw_entities = top.get("entities")
    if raw_entities is None:
        raw_entities = []
    if not isinstance(raw_entities, list):
        reader.problems.append(f"entities: expected a list, got {type(raw_entities).__name__}")
        raw_entities = []
    seen: set[str] = set()
    for index, item in enumerate(raw_entities):
        where = f"entities[{index}]"
        raw = reader.mapping(item, where, _ENTITY_KEYS)
        if not isinstance(item, Mapping):
            continue
        name = reader.field(join_key(where, "name"), non_empty_string, raw.get("name"))
        if name is not None:
            if name in seen:
                reader.problems.append(f"{where}.name: duplicate entity name {name!r}")
            seen.add(name)
        uuid = (
            reader.field(join_key(where, "uuid"), non_empty_string, raw["uuid"])
            if "uuid" in raw
            else None
        )
        url = (
            reader.field(join_key(where, "url"), _url, raw["url"])
            if raw.get("url") is not None
            else None
        )
        settings = _settings(reader, raw, where, template)
        if name is not None:
            entities.append(Entity(name=name, uuid=uuid, url=url, **settings))
    database = _database(reader, top["database"]) if "database" in top else None
    discovery = top.get("discovery")
    if discovery is not None and discovery not in DISCOVERY_SOURCES:
        reader.problems.append(f"discovery: expected one of {DISCOVERY_SOURCES}, got {discovery!r}")
    elif discovery == "database" and "database" not in top:
        reader.problems.append("discovery: 'database' needs a database block")
    if reader.problems:
        raise ConfigError(source, reader.problems)
    return Config(
        entities=tuple(entities),
        source=source,
        database=database,
        discovery=discovery,
        defaults=template,
    )


def read_yaml(path: Path) -> object:
    """The decoded YAML document, or a ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(str(path), [f"cannot read the file: {err}"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(str(path), [f"not valid YAML: {err}"]) from None


def load_config(path: str | Path) -> Config:
    path = Path(path)
    return parse_config(read_yaml(path), source=str(path), base_dir=path.parent)
