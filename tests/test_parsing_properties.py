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
    FaultReply,
    ParseError,
    decode_response,
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


# --- the XML-RPC decoder against the standard library ------------------------------------


def _shape(value: object) -> object:
    """A value with its exact types, nan equal to itself and dict order kept, for comparing."""
    if isinstance(value, list):
        return ["list", *map(_shape, value)]
    if isinstance(value, dict):
        return ["dict", *[(key, _shape(item)) for key, item in value.items()]]
    if isinstance(value, xmlrpc.client.Binary):
        return ["Binary", value.data]
    if isinstance(value, xmlrpc.client.DateTime):
        return ["DateTime", value.value]
    return [type(value).__name__, repr(value)]


def _stdlib(body: bytes) -> tuple[str, object]:
    """What ``xmlrpc.client.loads`` makes of a body: a value, a fault or an error."""
    try:
        values = xmlrpc.client.loads(body)[0]
    except xmlrpc.client.Fault:
        return "fault", None
    except Exception:
        return "error", None
    return ("value", _shape(values[0])) if len(values) == 1 else ("error", None)


def _decoded(body: bytes) -> tuple[str, object]:
    try:
        return "value", _shape(decode_response(body))
    except FaultReply:
        return "fault", None
    except ParseError:
        return "error", None


# Every value dumps() can write, nested; strings with what XML must escape and any unicode.
MARSHALLABLE: st.SearchStrategy[object] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**31), max_value=2**31 - 1)
    | st.sampled_from([0.0, -0.0, 5e-324, 1.7976931348623157e308, math.inf, -math.inf, math.nan])
    | st.floats()
    | st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from("<>&'\"\r\n\t ]]>"))
    | st.binary(max_size=12).map(xmlrpc.client.Binary)
    | st.builds(xmlrpc.client.DateTime, st.datetimes()),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)


@SETTINGS
@given(value=MARSHALLABLE)
def test_decoder_reads_what_dumps_writes_as_the_standard_library(value: object) -> None:
    body = xmlrpc.client.dumps((value,), methodresponse=True, allow_none=True).encode()  # type: ignore[arg-type]
    assert _decoded(body) == _stdlib(body)


# Odd but well-formed trees: every XML-RPC tag (and unknown, prefixed ones) in any place,
# with numbers of every form, mixed content, whitespace, i8 beyond i4, comments and CDATA.
TAG_NAMES = [
    "value",
    "string",
    "int",
    "i4",
    "i8",
    "i1",
    "biginteger",
    "double",
    "float",
    "boolean",
    "nil",
    "base64",
    "dateTime.iso8601",
    "bigdecimal",
    "array",
    "data",
    "struct",
    "member",
    "name",
    "params",
    "param",
    "fault",
    "methodName",
    "ex:nil",
    "foo",
]
TAGS = st.sampled_from(TAG_NAMES)
TEXT_SAMPLES = [
    "", " ", "\n ", "0", "1", " 1", "0 ", "-7", " 42 ", "1_0", "9223372036854775807", "2.5", "nan",
    "-inf", "AAEC", "A=", "20260101T00:00:00", " x y ", "&amp;&lt;&#233;", "<!--c-->",
    "<![CDATA[<b>]]>", "é\r\n", "faultCode", "faultString",
]  # fmt: skip
TEXTS = st.sampled_from(TEXT_SAMPLES)


def _element(tag: str, inner: str) -> str:
    namespace = ' xmlns:ex="urn:x"' if ":" in tag else ""
    return f"<{tag}{namespace}>{inner}</{tag}>"


SCALAR_TAGS = TAGS.filter(lambda tag: tag not in {"array", "struct", "data", "member"})


def _joined(parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Parts, now and then with text between them (which a reader must ignore or keep)."""
    return st.lists(parts | TEXTS, max_size=4).map("".join)


def _usual(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    members = st.builds(
        lambda name, value: f"<member><name>{name}</name>{value}</member>", TEXTS, children
    )
    return _joined(children).map(
        lambda values: f"<value><array><data>{values}</data></array></value>"
    ) | _joined(members).map(lambda inner: f"<value><struct>{inner}</struct></value>")


def _odd(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    odd = st.builds(_element, TAGS, _joined(children))
    members = st.builds(
        lambda name, value: f"<member><name>{name}</name>{value}</member>", children, children
    )
    return (
        _usual(children)
        | _joined(members).map(lambda inner: f"<value><struct>{inner}</struct></value>")
        | _joined(children | odd).map(lambda inner: f"<value><array>{inner}</array></value>")
        | _joined(odd | SCALARS).map("<value>{}</value>".format)
        | odd
    )


SCALARS = st.builds(_element, SCALAR_TAGS, TEXTS)
LEAVES = (TEXTS | SCALARS).map("<value>{}</value>".format)
# Values of the usual shape (any type tag and text), and trees with odd tags, mixed
# content and misplaced elements here and there.
USUAL = st.recursive(LEAVES, _usual, max_leaves=12)
ODD = st.recursive(LEAVES | TEXTS, _odd, max_leaves=12)


def _canonical(tree: str) -> str:
    return f"<methodResponse><params><param>{tree}</param></params></methodResponse>"


@settings(SETTINGS, max_examples=400)
@given(
    tree=USUAL | ODD,
    wrap=st.sampled_from(
        [
            _canonical,
            "<methodResponse>{}</methodResponse>".format,
            "<methodCall><params><param>{}</param></params></methodCall>".format,
        ]
    ),
)
def test_decoder_agrees_with_the_standard_library_on_odd_replies(
    tree: str, wrap: Callable[[str], str]
) -> None:
    body = f"<?xml version='1.0'?>\n{wrap(tree)}".encode()
    assert _decoded(body) == _stdlib(body)


@SETTINGS
@given(value=MARSHALLABLE, encoding=st.sampled_from(["utf-16", "utf-16-le", "latin-1"]))
def test_decoder_agrees_in_other_encodings(value: object, encoding: str) -> None:
    text = xmlrpc.client.dumps((value,), methodresponse=True, allow_none=True)  # type: ignore[arg-type]
    declared = text.replace("<?xml version='1.0'?>", f"<?xml version='1.0' encoding='{encoding}'?>")
    body = declared.encode(encoding, errors="xmlcharrefreplace")
    assert _decoded(body) == _stdlib(body)


def test_every_leaf_type_with_every_text_as_the_standard_library() -> None:
    for tag in TAG_NAMES:
        for text in TEXT_SAMPLES:
            body = _canonical(_element(tag, text).join(["<value>", "</value>"])).encode()
            assert _decoded(body) == _stdlib(body), (tag, text)
