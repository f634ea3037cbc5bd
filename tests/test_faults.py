"""Fault injection over real TLS sockets: one misbehaving server next to a healthy one.

Each case checks that the scrape still succeeds, the healthy entity is untouched,
the bad entity gets the right status and reason (or failed sections), and that no
exception reached the web server's error log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from medulla_imaging_exporter.config import Config, Entity
from medulla_imaging_exporter.model import Reason, Section, Status
from medulla_imaging_exporter.runtime import Runtime
from medulla_imaging_exporter.simulator import PUBLIC_UPTIME, Behaviour, RawReply
from tests.conftest import MakeServer
from tests.helpers import fixture_bytes, metric_samples, sample, serving


@dataclass(frozen=True)
class Case:
    behaviour: Behaviour
    status: Status = Status.CONNECTION_ERROR
    reason: Reason | None = None
    failed: frozenset[Section] = frozenset()  # sections that must fail when available
    reply: str | None = None  # fixture under replies/, sent as it is
    content_type: str = "text/xml"
    entity: dict[str, object] = field(default_factory=dict)


def _malformed(reply: str, content_type: str = "text/xml") -> Case:
    return Case(Behaviour.RAW, reason=Reason.MALFORMED, reply=reply, content_type=content_type)


def _available(reply: str, *failed: Section) -> Case:
    """A reply that is read, with these sections failed and the others kept."""
    return Case(Behaviour.RAW, status=Status.AVAILABLE, failed=frozenset(failed), reply=reply)


CASES: dict[str, Case] = {
    "reset mid-reply": Case(Behaviour.RESET, reason=Reason.RESET),
    "one byte per second": Case(Behaviour.DRIBBLE, reason=Reason.TIMEOUT, entity={"timeout": 1.0}),
    "declared body over the cap": Case(
        Behaviour.OK, reason=Reason.TOO_LARGE, entity={"max_reply_bytes": 512}
    ),
    "chunked body over the cap": Case(
        Behaviour.CHUNKED, reason=Reason.TOO_LARGE, entity={"max_reply_bytes": 512}
    ),
    "chunked body within the cap": Case(Behaviour.CHUNKED, status=Status.AVAILABLE),
    "truncated body": Case(Behaviour.TRUNCATED, reason=Reason.RESET),
    "wrong content type": _malformed("public-procps-ng.xml", content_type="text/html"),
    "entity expansion bomb": _malformed("xml-bomb.xml"),
    "external entity": _malformed("external-entity.xml"),
    "invalid UTF-8": _malformed("invalid-utf8.xml"),
    "not a struct": _malformed("not-a-struct.xml"),
    "deep nesting": _available("deep-nesting.xml", Section.SPACE_AVAILABLE),
    "every field of the wrong type": _available("wrong-types.xml", *Section),
    "negative values": _available(
        "negative-values.xml", Section.UPTIME, Section.SPACE_AVAILABLE, Section.STATS
    ),
    "huge values": _available("huge-values.xml", Section.MEM_INFO, Section.UPTIME, Section.STATS),
    "non-numeric values and uptime": _available(
        "non-numeric-values.xml", Section.UPTIME, Section.SPACE_AVAILABLE, Section.STATS
    ),
    "df and free with garbage lines": _available("garbage-lines.xml"),
    "df and free with unknown headers": _available(
        "unknown-headers.xml", Section.DISK_INFO, Section.MEM_INFO
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_one_bad_server_among_good_ones(
    case: Case,
    make_server: MakeServer,
    entity_for: Callable[..., Entity],
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = await make_server()
    bad = await make_server(case.behaviour)
    if case.reply is not None:
        bad.raw = RawReply(fixture_bytes(f"replies/{case.reply}"), case.content_type)
    config = Config((entity_for(good, "Good"), entity_for(bad, "Bad", **case.entity)))
    runtime = Runtime(lambda: config)
    caplog.set_level(logging.ERROR)
    async with serving(runtime) as base, httpx.AsyncClient(base_url=base) as client:
        response = await client.get("/metrics")
        assert response.status_code == 200
        samples = metric_samples(response.text)
        # The exporter keeps serving after the bad probe.
        assert (await client.get("/-/healthy")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
    await runtime.aclose()

    assert sample(samples, "medulla_imaging_server_up", entity="Good") == 1
    assert sample(samples, "medulla_imaging_uptime_seconds", entity="Good") == float(
        PUBLIC_UPTIME.split()[0]
    )
    assert sample(samples, "medulla_imaging_server_status", entity="Bad", status=case.status) == 1
    reasons = {
        r
        for r in Reason
        if sample(samples, "medulla_imaging_probe_failure_reason", entity="Bad", reason=r) == 1
    }
    assert reasons == ({case.reason} if case.reason else set())
    if case.status is Status.AVAILABLE:
        failed = {
            s
            for s in Section
            if sample(samples, "medulla_imaging_section_up", entity="Bad", section=s) == 0
        }
        assert failed == case.failed
    assert [r.getMessage() for r in caplog.records] == []


async def test_garbage_lines_keep_the_values(
    make_server: MakeServer, entity_for: Callable[..., Entity]
) -> None:
    """Lines of no known shape are skipped; the real filesystems and memory remain."""
    server = await make_server(Behaviour.RAW)
    server.raw = RawReply(fixture_bytes("replies/garbage-lines.xml"))
    runtime = Runtime(lambda: Config((entity_for(server, "Bad"),)))
    async with serving(runtime) as base, httpx.AsyncClient(base_url=base) as client:
        samples = metric_samples((await client.get("/metrics")).text)
    await runtime.aclose()
    size = "medulla_imaging_filesystem_size_bytes"
    assert sample(samples, size, entity="Bad", device="/dev/vda3", mountpoint="/") == (
        102858595 * 1024
    )
    assert sample(samples, "medulla_imaging_memory_total_bytes", entity="Bad") == 8178893 * 1024
    assert not [k for k in samples if k[0] == size and ("device", "/dev/vdb1") in k[1]]
