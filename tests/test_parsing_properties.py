"""Property tests of every parser: only ``ParseError`` ever escapes, and outputs parse back.

The values are what ``xmlrpc.client`` can hand over (nil, booleans, ints, doubles
including nan and inf, strings, binaries, arrays, structs), and lines built from the
very words df and free print, so that the generated input reaches deep into the parsers.
"""

from __future__ import annotations

import contextlib
import math
import xmlrpc.client
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medulla_imaging_exporter.model import Filesystem, MastersStorage, Memory, Stats
from medulla_imaging_exporter.parsing import (
    ParseError,
    parse_body,
    parse_df,
    parse_free,
    parse_reply,
    parse_space_available,
    parse_stats,
    parse_uptime,
)

KIB = 1024
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Words of real df and free outputs, numbers of every size, and noise.
WORDS = st.one_of(
    st.sampled_from(
        [
            "Filesystem",
            "1K-blocks",
            "Used",
            "Available",
            "Use%",
            "Mounted",
            "on",
            "total",
            "used",
            "free",
            "shared",
            "buff/cache",
            "buffers",
            "cached",
            "cache",
            "available",
            "Mem:",
            "Swap:",
            "-/+",
            "buffers/cache:",
            "-",
            "/",
            "/dev/vda1",
            "tmpfs",
            "50%",
            "-1",
        ]
    ),
    st.integers(min_value=0).map(str),
    st.just("9" * 5000),
    st.text(max_size=8),
)
NUMBERS = st.integers(min_value=0).map(str) | st.sampled_from(["-1", "9" * 5000, "1e3", "٣"])
# Rows shaped like free's ("Mem: 1 2 3") and df's ("/dev/x 1 2 3 4% /"), with odd numbers.
FREE_ROWS = st.tuples(st.sampled_from(["Mem:", "Swap:", "-/+ buffers/cache:"]), st.lists(NUMBERS))
DF_ROWS = st.tuples(st.sampled_from(["/dev/vda1", ""]), st.lists(NUMBERS, max_size=3), WORDS)
LINE = (
    st.lists(WORDS, max_size=8).map(" ".join)
    | st.text(max_size=40)
    | FREE_ROWS.map(lambda row: " ".join([row[0], *row[1]]))
    | DF_ROWS.map(lambda row: " ".join([row[0], *row[1], "10%", row[2]]))
)
HEADERS = st.sampled_from(
    [
        "Filesystem 1K-blocks Used Available Use% Mounted on",
        "total used free shared buff/cache available",
        "total used free shared buffers cached",
    ]
)
LINES = st.lists(LINE, max_size=8) | st.tuples(HEADERS, st.lists(LINE, max_size=6)).map(
    lambda t: [t[0], *t[1]]
)


def _value(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=8), children, max_size=4
    )


XMLRPC_VALUES: st.SearchStrategy[object] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**31), max_value=2**31 - 1)  # what dumps() can send
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=8).map(xmlrpc.client.Binary)
    | LINES,
    _value,
    max_leaves=12,
)
SECTION_NAMES = st.sampled_from(
    ["space_available", "mem_info", "disk_info", "uptime", "stats", "faultCode"]
)
STRUCTS = st.dictionaries(SECTION_NAMES, XMLRPC_VALUES | LINES)

ANY = XMLRPC_VALUES | st.integers()
# Each parser with the inputs most likely to reach deep into it, and anything else.
PARSERS: dict[str, tuple[Callable[[object], object], st.SearchStrategy[object]]] = {
    "df": (parse_df, LINES | ANY),
    "free": (parse_free, LINES | ANY),
    "uptime": (parse_uptime, LINE | NUMBERS | ANY),
    "space_available": (parse_space_available, st.lists(NUMBERS | ANY, max_size=3)),
    "stats": (
        parse_stats,
        st.dictionaries(st.sampled_from(["total", "rescue", "master"]), NUMBERS | ANY) | ANY,
    ),
    "reply": (parse_reply, STRUCTS | ANY),
}


def _only_parse_errors(parse: Callable[[object], object], value: object) -> None:
    with contextlib.suppress(ParseError):
        parse(value)


@pytest.mark.parametrize("name", PARSERS)
@SETTINGS
@given(data=st.data())
def test_parsers_raise_only_parse_error(name: str, data: st.DataObject) -> None:
    parse, values = PARSERS[name]
    _only_parse_errors(parse, data.draw(values))


@SETTINGS
@given(body=st.binary(max_size=300))
def test_any_bytes_raise_only_parse_error(body: bytes) -> None:
    _only_parse_errors(lambda b: parse_body(b), body)  # type: ignore[arg-type]


@SETTINGS
@given(value=STRUCTS | XMLRPC_VALUES)
def test_any_xmlrpc_reply_raises_only_parse_error(value: object) -> None:
    body = xmlrpc.client.dumps((value,), methodresponse=True, allow_none=True).encode()  # type: ignore[arg-type]
    _only_parse_errors(lambda b: parse_body(b), body)  # type: ignore[arg-type]


# --- round trips -------------------------------------------------------------------------

KIB_COUNTS = st.integers(min_value=0, max_value=2**50)
NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=12)
DEVICES = st.lists(NAME, min_size=1, max_size=3).map(lambda parts: "/dev/" + "-".join(parts))
# A mount point may hold spaces (never at its end: df's column is stripped).
MOUNTS = st.lists(st.lists(NAME, min_size=1, max_size=2).map(" ".join), max_size=3).map(
    lambda parts: "/" + "/".join(parts)
)


@st.composite
def filesystems(draw: st.DrawFn) -> Filesystem:
    return Filesystem(
        device=draw(DEVICES),
        mountpoint=draw(MOUNTS),
        size_bytes=draw(st.integers(min_value=1, max_value=2**50)) * KIB,
        used_bytes=draw(KIB_COUNTS) * KIB,
        avail_bytes=draw(KIB_COUNTS) * KIB,
    )


def df_lines(fss: list[Filesystem], wrap: list[bool]) -> list[str]:
    """What ``df -k`` prints; a long device name goes alone on its line when ``wrap``."""
    out = ["Filesystem     1K-blocks     Used Available Use% Mounted on"]
    for fs, wrapped in zip(fss, wrap, strict=True):
        size, used, avail = fs.size_bytes // KIB, fs.used_bytes // KIB, fs.avail_bytes // KIB
        percent = f"{math.ceil(100 * used / (used + avail))}%" if used + avail else "-"
        numbers = f"{size:>12} {used:>9} {avail:>9} {percent:>4} {fs.mountpoint}"
        out += [fs.device, " " * 15 + numbers] if wrapped else [f"{fs.device:<14} {numbers}"]
    return [*out, ""]


@SETTINGS
@given(fss=st.lists(filesystems(), max_size=6), data=st.data())
def test_df_output_parses_back(fss: list[Filesystem], data: st.DataObject) -> None:
    wrap = data.draw(st.lists(st.booleans(), min_size=len(fss), max_size=len(fss)))
    assert parse_df(df_lines(fss, wrap)) == tuple(fss)


@st.composite
def memories(draw: st.DrawFn) -> Memory:
    swap = draw(st.booleans())
    return Memory(
        total_bytes=draw(KIB_COUNTS) * KIB,
        used_bytes=draw(KIB_COUNTS) * KIB,
        free_bytes=draw(KIB_COUNTS) * KIB,
        buff_cache_bytes=draw(KIB_COUNTS) * KIB,
        available_bytes=draw(KIB_COUNTS) * KIB,
        swap_total_bytes=draw(KIB_COUNTS) * KIB if swap else None,
        swap_used_bytes=draw(KIB_COUNTS) * KIB if swap else None,
    )


def _swap(memory: Memory) -> list[str]:
    if memory.swap_total_bytes is None or memory.swap_used_bytes is None:
        return []
    total, used = memory.swap_total_bytes // KIB, memory.swap_used_bytes // KIB
    return [f"Swap: {total:>14} {used:>11} {max(total - used, 0):>11}"]


def free_ng_lines(memory: Memory, order: list[int], shared: int) -> list[str]:
    """procps-ng's layout, columns in any order (free reads them by name)."""
    columns = {
        "total": memory.total_bytes // KIB,
        "used": memory.used_bytes // KIB,
        "free": memory.free_bytes // KIB,
        "shared": shared,
        "buff/cache": memory.buff_cache_bytes // KIB,
        "available": memory.available_bytes // KIB,
    }
    names = [list(columns)[i] for i in order]
    header = " " * 15 + " ".join(f"{n:>11}" for n in names)
    mem = "Mem:  " + " ".join(f"{columns[n]:>11}" for n in names)
    return [header, mem, *_swap(memory), ""]


def free_old_lines(memory: Memory, buffers: int, shared: int) -> list[str]:
    """procps 3.2's layout: ``used`` counts buffers and cache; the next line does not."""
    cached = memory.buff_cache_bytes // KIB - buffers
    used, free = memory.used_bytes // KIB, memory.free_bytes // KIB
    return [
        "             total       used       free     shared    buffers     cached",
        f"Mem: {memory.total_bytes // KIB:>13} {used + buffers + cached:>10} {free:>10}"
        f" {shared:>10} {buffers:>10} {cached:>10}",
        f"-/+ buffers/cache: {used:>10} {memory.available_bytes // KIB:>10}",
        *_swap(memory),
        "",
    ]


@SETTINGS
@given(memory=memories(), order=st.permutations(range(6)), shared=KIB_COUNTS)
def test_free_ng_output_parses_back(memory: Memory, order: list[int], shared: int) -> None:
    assert parse_free(free_ng_lines(memory, order, shared)) == memory


@SETTINGS
@given(memory=memories(), data=st.data(), shared=KIB_COUNTS)
def test_free_old_output_parses_back(memory: Memory, data: st.DataObject, shared: int) -> None:
    buffers = data.draw(st.integers(min_value=0, max_value=memory.buff_cache_bytes // KIB))
    assert parse_free(free_old_lines(memory, buffers, shared)) == memory


@SETTINGS
@given(seconds=st.floats(min_value=0, max_value=1e12), idle=st.floats(min_value=0, max_value=1e12))
def test_uptime_parses_back(seconds: float, idle: float) -> None:
    text = f"{seconds:.2f} {idle:.2f}\n"
    assert parse_uptime(text) == float(f"{seconds:.2f}")


@SETTINGS
@given(
    percent=st.integers(min_value=0, max_value=100),
    avail=st.integers(min_value=0, max_value=2**40),
    as_text=st.booleans(),
)
def test_space_available_parses_back(percent: int, avail: int, as_text: bool) -> None:
    value: list[object] = [str(percent), str(avail)] if as_text else [percent, avail]
    assert parse_space_available(value) == MastersStorage(percent / 100, avail * 1024 * 1024)


@SETTINGS
@given(counts=st.tuples(*[st.integers(min_value=0, max_value=2**31 - 1)] * 3))
def test_stats_parse_back(counts: tuple[int, int, int]) -> None:
    total, rescue, master = counts
    value = {"total": total, "rescue": str(rescue), "master": master}
    assert parse_stats(value) == Stats(total, rescue, master)
