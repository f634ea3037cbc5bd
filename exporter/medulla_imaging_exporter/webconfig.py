"""The exporter's own endpoint security: ``--web.config.file`` in the exporter-toolkit format.

The same file format as node_exporter's or blackbox_exporter's, so that one habit (and one
file) protects them all: ``tls_server_config`` for HTTPS and client certificates,
``basic_auth_users`` with bcrypt hashes. One key of our own, ``health_checks_without_auth``,
lets container and load-balancer probes reach ``/-/healthy`` and ``/-/ready`` without
credentials; nothing is exempt unless the file says so.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from medulla_imaging_exporter.config import (
    ConfigError,
    Reader,
    boolean,
    join_key,
    non_empty_string,
    read_yaml,
)
from medulla_imaging_exporter.httpserver import Handler, HTTPError, Request, Response

HEALTH_PATHS = frozenset({"/-/healthy", "/-/ready"})
REALM = 'Basic realm="medulla-imaging-exporter"'

# exporter-toolkit's names; the two that accept an unverified certificate cannot be done
# with Python's ssl module, so they are refused rather than silently weakened.
CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNSUPPORTED_AUTH_TYPES = {"RequestClientCert", "RequireAnyClientCert"}
_BCRYPT = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")
# Checked against when the user is unknown, so that the reply time does not tell which
# user names exist.
_DUMMY_HASH = bcrypt.hashpw(b"unknown user", bcrypt.gensalt(rounds=10))

_TOP_KEYS = {"tls_server_config", "basic_auth_users", "health_checks_without_auth"}
_TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "client_auth_type"}


@dataclass(frozen=True)
class WebConfig:
    source: str = "<memory>"
    ssl_context: ssl.SSLContext | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    health_checks_without_auth: bool = False
    # True when a client certificate is required but the handshake only asks for one, so
    # that health checks without a certificate get through; the middleware enforces it.
    client_cert_checked_per_request: bool = False
    # Digests of credentials already verified: bcrypt is slow on purpose, scrapes are frequent.
    _verified: set[bytes] = field(default_factory=set, compare=False, repr=False)

    async def check_basic_auth(self, header: str | None) -> bool:
        credentials = _decode_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        digest = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        if digest in self._verified:
            return True
        hashed = self.users.get(user, _DUMMY_HASH)
        ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed)
        ok = ok and user in self.users
        if ok:
            self._verified.add(digest)
        return ok

    async def authenticate(self, request: Request, handler: Handler) -> Response:
        """The server's middleware: every route but the exempt health checks."""
        if not (self.health_checks_without_auth and request.path in HEALTH_PATHS):
            if self.client_cert_checked_per_request and not request.peer_certificate:
                raise HTTPError(403, "a client certificate is required\n")
            if self.users and not await self.check_basic_auth(request.headers.get("authorization")):
                raise HTTPError(401, "Unauthorized\n", {"WWW-Authenticate": REALM})
        return await handler(request)


def _decode_basic(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _bcrypt_hash(value: object) -> bytes:
    # Never echo the value: a plain-text password put there by mistake must not reach logs.
    if not isinstance(value, str) or not _BCRYPT.match(value):
        raise ValueError(
            "expected a bcrypt hash such as $2y$10$... (make one with "
            "htpasswd -nBC 10 '' | tr -d ':\\n', or Python's bcrypt.hashpw)"
        )
    return value.encode()


def _users(reader: Reader, raw: object) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    if raw is None:
        return users
    if not isinstance(raw, Mapping):
        reader.problems.append(f"basic_auth_users: expected a mapping, got {type(raw).__name__}")
        return users
    for user, hashed in raw.items():
        where = join_key("basic_auth_users", user)
        if not isinstance(user, str) or not user or ":" in user:
            reader.problems.append(f"{where}: a user name must be a non-empty string without ':'")
            continue
        value = reader.field(where, _bcrypt_hash, hashed)
        if value is not None:
            users[user] = value
    return users


def _tls_context(
    reader: Reader, raw: Mapping[str, Any], health_exempt: bool
) -> tuple[ssl.SSLContext | None, bool]:
    where = "tls_server_config"
    before = len(reader.problems)
    paths = {
        key: reader.field(join_key(where, key), reader.path, raw[key])
        for key in ("cert_file", "key_file", "client_ca_file")
        if key in raw
    }
    for key in ("cert_file", "key_file"):
        if key not in raw:
            reader.problems.append(f"{join_key(where, key)}: required to serve HTTPS")
    auth_type: str | None = "NoClientCert"
    if "client_auth_type" in raw:
        auth_type = reader.field(
            join_key(where, "client_auth_type"), non_empty_string, raw["client_auth_type"]
        )
        if auth_type in _UNSUPPORTED_AUTH_TYPES:
            reader.problems.append(
                f"{where}.client_auth_type: {auth_type} accepts unverified certificates and is "
                "not supported; use RequireAndVerifyClientCert or VerifyClientCertIfGiven"
            )
        elif auth_type is not None and auth_type not in CLIENT_AUTH_TYPES:
            known = ", ".join(CLIENT_AUTH_TYPES)
            reader.problems.append(
                f"{where}.client_auth_type: expected one of {known}, got {auth_type!r}"
            )
    if len(reader.problems) > before or auth_type is None:
        return None, False
    verify_mode = CLIENT_AUTH_TYPES[auth_type]
    if verify_mode != ssl.CERT_NONE and "client_ca_file" not in raw:
        reader.problems.append(f"{where}.client_ca_file: required with {auth_type}")
        return None, False
    if verify_mode == ssl.CERT_NONE and "client_ca_file" in raw:
        reader.problems.append(
            f"{where}.client_auth_type: client_ca_file is set but nothing checks client "
            "certificates; set RequireAndVerifyClientCert or VerifyClientCertIfGiven"
        )
        return None, False
    per_request = verify_mode == ssl.CERT_REQUIRED and health_exempt
    try:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(paths["cert_file"]), str(paths["key_file"]))
        if paths.get("client_ca_file"):
            ctx.load_verify_locations(cafile=str(paths["client_ca_file"]))
        ctx.verify_mode = ssl.CERT_OPTIONAL if per_request else verify_mode
    except (ssl.SSLError, OSError) as err:
        reader.problems.append(f"{where}: cannot load the certificate files: {err}")
        return None, False
    return ctx, per_request


def parse_web_config(
    data: object, source: str = "<memory>", base_dir: Path | None = None
) -> WebConfig:
    """Validate an already-decoded document; every problem is reported at once."""
    reader = Reader(base_dir or Path.cwd())
    top = reader.mapping(data, "", _TOP_KEYS)
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(source, reader.problems)
    exempt = False
    if "health_checks_without_auth" in top:
        exempt = bool(
            reader.field("health_checks_without_auth", boolean, top["health_checks_without_auth"])
        )
    users = _users(reader, top.get("basic_auth_users"))
    ctx, per_request = None, False
    if top.get("tls_server_config") is not None:
        raw_tls = reader.mapping(top["tls_server_config"], "tls_server_config", _TLS_KEYS)
        if isinstance(top["tls_server_config"], Mapping):
            ctx, per_request = _tls_context(reader, raw_tls, exempt)
    if reader.problems:
        raise ConfigError(source, reader.problems)
    return WebConfig(source, ctx, users, exempt, per_request)


def load_web_config(path: str | Path) -> WebConfig:
    path = Path(path)
    return parse_web_config(read_yaml(path), source=str(path), base_dir=path.parent)
