"""Typed values shared by parsing, classification, collection and the web pages.

Every consumer (metrics, status page, debug view) reads the same immutable
``EntityStatus`` so that they can never disagree about what a probe saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    """The four situations of Medulla's status page."""

    AVAILABLE = "available"
    OFFLINE = "offline"
    CONNECTION_ERROR = "connection_error"
    NOT_LINKED = "not_linked"


class Reason(StrEnum):
    """Why a probe failed: a fixed list so that alerts and dashboards can rely on it."""

    # offline: no TCP connection could be made
    REFUSED = "refused"
    DNS = "dns"
    UNREACHABLE = "unreachable"
    CONNECT_TIMEOUT = "connect_timeout"
    # connection_error: TCP connected, then something failed
    TLS_TIMEOUT = "tls_timeout"
    TLS_VERIFY = "tls_verify"
    TLS = "tls"
    TIMEOUT = "timeout"
    RESET = "reset"
    TOO_LARGE = "too_large"
    HTTP_404 = "http_404"
    HTTP_500 = "http_500"
    HTTP_STATUS = "http_status"
    FAULT = "fault"
    MALFORMED = "malformed"

    @property
    def status(self) -> Status:
        return Status.OFFLINE if self in _OFFLINE_REASONS else Status.CONNECTION_ERROR


_OFFLINE_REASONS = frozenset(
    {Reason.REFUSED, Reason.DNS, Reason.UNREACHABLE, Reason.CONNECT_TIMEOUT}
)


class Section(StrEnum):
    """Members of the ``imagingServerStatus`` reply; each one can fail on its own."""

    SPACE_AVAILABLE = "space_available"
    MEM_INFO = "mem_info"
    DISK_INFO = "disk_info"
    UPTIME = "uptime"
    STATS = "stats"


@dataclass(frozen=True, slots=True)
class Filesystem:
    device: str
    mountpoint: str
    size_bytes: int
    used_bytes: int
    avail_bytes: int


@dataclass(frozen=True, slots=True)
class Memory:
    total_bytes: int
    used_bytes: int
    free_bytes: int
    buff_cache_bytes: int
    available_bytes: int
    swap_total_bytes: int | None
    swap_used_bytes: int | None


@dataclass(frozen=True, slots=True)
class MastersStorage:
    used_ratio: float
    avail_bytes: int


@dataclass(frozen=True, slots=True)
class Stats:
    clients_registered: int
    clients_with_rescue_image: int
    masters_available: int


@dataclass(frozen=True, slots=True)
class Reply:
    """The parsed reply; a section is ``None`` exactly when it is in ``section_errors``."""

    filesystems: tuple[Filesystem, ...] | None = None
    memory: Memory | None = None
    uptime_seconds: float | None = None
    masters_storage: MastersStorage | None = None
    stats: Stats | None = None
    section_errors: Mapping[Section, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EntityStatus:
    """What one probe of one entity found, at one moment."""

    entity: str
    status: Status
    reason: Reason | None = None
    detail: str = ""
    started_at: float | None = None
    duration_seconds: float | None = None
    reply: Reply | None = None
    cert_not_after: float | None = None
    timeout_seconds: float | None = None  # the deadline the probe ran under


@dataclass(frozen=True, slots=True)
class DiscoveredEntity:
    """An entity of Medulla's imaging database and the URL of its associated server, if any."""

    name: str
    uuid: str
    url: str | None


@dataclass(frozen=True, slots=True)
class DatabaseSnapshot:
    """The last refresh from the imaging database: every scrape reads it, none waits for it."""

    up: bool = False
    duration_seconds: float | None = None
    # By entity uuid; None unless the last refresh succeeded (absent, never zeros).
    stats: Mapping[str, Stats] | None = None
    # The last good entity list, kept when a refresh fails; None until one succeeded.
    entities: tuple[DiscoveredEntity, ...] | None = None
    error: str = ""
