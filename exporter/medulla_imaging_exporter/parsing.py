"""Pure functions from the bytes and values of an ``imagingServerStatus`` reply to typed values.

Nothing here knows about HTTP or sockets: the transport hands over bytes, these
functions hand back values or raise ``ParseError``, and tests feed them plain data.
"""

from __future__ import annotations

import math
import re
import reprlib
import sys
import xmlrpc.client
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from typing import Any, NoReturn
from xml.etree.ElementTree import Element, XMLParser
from xml.parsers.expat import ParserCreate, XMLParserType

from medulla_imaging_exporter.model import (
    Filesystem,
    MastersStorage,
    Memory,
    Reply,
    Section,
    Stats,
)

KIB = 1024
MIB = 1024 * 1024

# Filesystems that hold no imaging data; df shows them by device name.
PSEUDO_DEVICES = frozenset(
    {
        "tmpfs",
        "devtmpfs",
        "udev",
        "none",
        "proc",
        "sysfs",
        "cgroup",
        "cgroup2",
        "shm",
        "efivarfs",
        "securityfs",
        "debugfs",
        "tracefs",
        "pstore",
        "bpf",
        "mqueue",
        "hugetlbfs",
        "ramfs",
        "nsfs",
        "devpts",
        "run",
        "rootfs",
    }
)

_DF_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(?:\d+%|-)\s(?P<mount>.*)$")

# Bounded in length and depth: a plain repr of a reply nested thousands deep would recurse.
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 100


class ParseError(ValueError):
    """A reply, or one section of it, that does not have the expected shape."""


class FaultReply(ParseError):
    """The server answered with an XML-RPC fault or a fault struct."""


# --- XML-RPC -----------------------------------------------------------------------------


REQUEST_BODY = xmlrpc.client.dumps((), "imagingServerStatus").encode("utf-8")


def decode_response(body: bytes) -> object:
    """The single value of an XML-RPC methodResponse; any DTD is refused, so no entity expands.

    Replies of the usual shape (what every XML-RPC library writes) are read from a tree
    built by ElementTree's C parser; anything else (faults, errors, odd but accepted
    shapes) goes through the standard library's ``Unmarshaller``, which decides both the
    value and the error exactly as it always did.
    """
    try:
        if _no_dtd_before_root(body):
            return _read_tree(body)
    except ParseError:
        raise
    except Exception:  # an odd shape or an error: the reference reader decides which
        pass
    return _unmarshal(body)


class _Unusual(Exception):
    """A reply shape the tree reader leaves to the standard library's tolerant reader."""


class _RootReached(Exception):
    """Ends the prolog check: a DTD can only come before the root element."""


def _refuse_doctype(name: str, *_: object) -> NoReturn:
    raise ParseError(f"not an XML-RPC reply: DTD refused (<!DOCTYPE {name}>)"[:200])


def _root_reached(*_: object) -> NoReturn:
    raise _RootReached


def _expat() -> XMLParserType:
    """An expat parser that refuses any DOCTYPE, like defusedxml's ``forbid_dtd=True``.

    Entities can only be declared in a DTD, so none can be expanded or fetched; an
    undeclared one is a well-formedness error of expat itself.
    """
    parser = ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse_doctype
    return parser


def _no_dtd_before_root(body: bytes) -> bool:
    """Whether expat reaches the root element with no DOCTYPE before it (``ParseError`` if one).

    ElementTree's parser cannot be told to refuse a DTD, so expat reads the prolog first,
    decoding it as the tree parser will (the same library, for any encoding), and stops
    at the root element; a DOCTYPE can only come before it.
    """
    parser = _expat()
    parser.StartElementHandler = _root_reached
    try:
        parser.Parse(body, True)
    except _RootReached:
        return True
    return False


def _read_tree(body: bytes) -> object:
    """The value of a reply of the usual shape, or ``_Unusual`` (or any error) otherwise."""
    parser = XMLParser()
    parser.feed(body)
    root = parser.close()
    (params,) = root
    (param,) = params
    (value,) = param
    if root.tag != "methodResponse" or params.tag != "params" or param.tag != "param":
        raise _Unusual
    return _tree_value(value)


def _boolean(text: str) -> bool:
    if text == "0" or text == "1":
        return text == "1"
    raise _Unusual


def _binary(text: str) -> xmlrpc.client.Binary:
    binary = xmlrpc.client.Binary()
    binary.decode(text.encode("ascii"))
    return binary


# Leaf types as the Unmarshaller converts their text; ``string`` is tested first, inline.
_SCALARS: dict[str, Callable[[str], object]] = {
    "int": int,
    "i4": int,
    "i8": int,
    "double": float,
    "boolean": _boolean,
    "nil": lambda _: None,
    "base64": _binary,
    "dateTime.iso8601": lambda text: xmlrpc.client.DateTime(text.strip()),
}


def _tree_value(value: Element) -> object:
    """One ``<value>``: exactly what the Unmarshaller makes of it, if of the usual shape.

    Text around a typed element is ignored by the Unmarshaller too; a leaf with child
    elements, an unknown type or a malformed member is ``_Unusual``.
    """
    if value.tag != "value":
        raise _Unusual
    if not len(value):
        return value.text or ""
    if len(value) != 1:
        raise _Unusual
    typed = value[0]
    tag = typed.tag
    if not len(typed):
        if tag == "string":
            return typed.text or ""
        return {} if tag == "struct" else _SCALARS[tag](typed.text or "")
    if tag == "array" and len(typed) == 1 and typed[0].tag == "data":
        return [_tree_value(item) for item in typed[0]]
    if tag != "struct":
        raise _Unusual
    struct: dict[str, object] = {}
    for member in typed:
        if member.tag != "member" or len(member) != 2 or member[0].tag != "name" or len(member[0]):
            raise _Unusual
        struct[member[0].text or ""] = _tree_value(member[1])
    return struct


def _unmarshal(body: bytes) -> object:
    """The standard library's reader: tolerant of odd shapes, and the source of every error."""
    unmarshaller = xmlrpc.client.Unmarshaller()
    unmarshaller.xml("", None)  # no encoding, as ExpatParser says: expat hands over str
    parser = _expat()
    parser.StartElementHandler = unmarshaller.start
    parser.EndElementHandler = unmarshaller.end
    parser.CharacterDataHandler = unmarshaller.data
    try:
        parser.Parse(body, True)
        values = unmarshaller.close()
    except xmlrpc.client.Fault as fault:
        raise FaultReply(f"XML-RPC fault {fault.faultCode}: {fault.faultString}"[:200]) from None
    except ParseError:
        raise
    except Exception as err:  # expat and the unmarshaller each raise their own
        raise ParseError(f"not an XML-RPC reply: {type(err).__name__}: {err}"[:200]) from None
    if len(values) != 1:
        raise ParseError(f"expected one value in the reply, got {len(values)}")
    return values[0]


# --- sections ----------------------------------------------------------------------------


def _lines(value: object, section: str) -> list[str]:
    if value == -1:
        raise ParseError(f"the server reported that {section} failed (-1)")
    if not isinstance(value, list | tuple) or not all(map(isinstance, value, repeat(str))):
        raise ParseError(f"expected an array of strings, got {type(value).__name__}")
    return list(filter(str.strip, value))


def _show(value: object) -> str:
    """A value of the reply for an error message, short whatever its size or depth."""
    return _REPR.repr(value)


def _int(digits: str) -> int:
    """``int()`` of a run of digits, which Python refuses beyond 4300 digits."""
    try:
        return int(digits)
    except ValueError:
        raise ParseError(f"number too long: {len(digits)} digits") from None


def _ints(numbers: Sequence[str]) -> list[int]:
    """``_int`` of each run of digits, in one C loop unless one is too long."""
    try:
        return list(map(int, numbers))
    except ValueError:
        return [_int(digits) for digits in numbers]


def _count(value: object, what: str) -> int:
    """A non-negative integer, accepting the numeric strings Medulla's agent sends."""
    if isinstance(value, str) and value.strip().isdecimal():  # what regex \d+ matches
        value = _int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParseError(f"{what}: expected a non-negative integer, got {_show(value)}")
    return value


def _skipped(device: str, tail: str) -> bool:
    """A pseudo filesystem's row, skipped before reading it when no number in it can be too long.

    Reading it would only matter for a number ``int()`` refuses, which fails the whole
    section; no row shorter than the lowest limit Python allows can hold one.
    """
    return device in PSEUDO_DEVICES and len(tail) < sys.int_info.str_digits_check_threshold


def parse_df(value: object) -> tuple[Filesystem, ...]:
    """``df -k`` lines to filesystems, skipping pseudo filesystems and empty ones.

    A long device name may sit alone on its line with the numbers on the next; a
    mount point may contain spaces. Lines of any other shape are skipped.
    """
    lines = _lines(value, "df")
    if not lines:
        raise ParseError("empty df output")
    header = lines[0].split()
    if header[:2] != ["Filesystem", "1K-blocks"]:
        raise ParseError(f"unexpected df header {lines[0][:80]!r} (expected 1K-blocks)")
    filesystems: list[Filesystem] = []
    pending_device: str | None = None
    for line in lines[1:]:
        if pending_device is not None and (m := _DF_ROW.match(line)):
            device, rest = pending_device, m
        else:
            device, _, tail = line.strip().partition(" ")
            if not tail.strip():
                pending_device = device or None
                continue
            m = None if _skipped(device, tail) else _DF_ROW.match(tail)
            if m is None:
                pending_device = None
                continue
            rest = m
        pending_device = None
        size, used, avail = _ints(rest.group(1, 2, 3))
        mount = rest["mount"].strip()
        if device in PSEUDO_DEVICES or size == 0 or not mount.startswith("/"):
            continue
        filesystems.append(
            Filesystem(
                device=device,
                mountpoint=mount,
                size_bytes=size * KIB,
                used_bytes=used * KIB,
                avail_bytes=avail * KIB,
            )
        )
    return tuple(filesystems)


def parse_free(value: object) -> Memory:
    """``free`` (KiB) in either layout, read by header names, never by column position."""
    lines = _lines(value, "free")
    if not lines:
        raise ParseError("empty free output")
    header = lines[0].split()
    rows: dict[str, list[int]] = {}
    for line in lines[1:]:
        label, _, numbers = line.partition(":")
        fields = numbers.split()
        if fields and all(map(str.isdecimal, fields)) and (name := label.strip()):
            rows[name] = _ints(fields)
    mem = rows.get("Mem")
    if mem is None:
        raise ParseError("no Mem: line in free output")
    if len(mem) != len(header):
        raise ParseError(f"free header {header} does not match the Mem: line")
    col = dict(zip(header, mem, strict=True))
    if not {"total", "used", "free"} <= col.keys():
        raise ParseError(f"unknown free header {lines[0].strip()[:80]!r}")
    if "buff/cache" in col:
        buff_cache = col["buff/cache"]
    elif "buffers" in col and ("cached" in col or "cache" in col):
        buff_cache = col["buffers"] + col.get("cached", col.get("cache", 0))
    else:
        raise ParseError(f"no buffers/cache column in free header {lines[0].strip()[:80]!r}")
    old = rows.get("-/+ buffers/cache")
    if old is not None and len(old) == 2:
        # old procps: "used" includes buffers and cache; this line has the real figures
        used, available = old
    else:
        used = col["used"]
        available = col.get("available", col["free"] + buff_cache)
    swap = rows.get("Swap")
    swap_total, swap_used = (swap[0], swap[1]) if swap and len(swap) >= 2 else (None, None)
    return Memory(
        total_bytes=col["total"] * KIB,
        used_bytes=used * KIB,
        free_bytes=col["free"] * KIB,
        buff_cache_bytes=buff_cache * KIB,
        available_bytes=available * KIB,
        swap_total_bytes=None if swap_total is None else swap_total * KIB,
        swap_used_bytes=None if swap_used is None else swap_used * KIB,
    )


def parse_uptime(value: object) -> float:
    """First field of ``/proc/uptime``: seconds since boot."""
    if value == -1:
        raise ParseError("the server reported that uptime failed (-1)")
    if not isinstance(value, str) or not value.split():
        raise ParseError(f"expected the text of /proc/uptime, got {_show(value)}"[:120])
    try:
        seconds = float(value.split()[0])
    except ValueError:
        raise ParseError(f"uptime is not a number: {value.split()[0]!r}"[:120]) from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ParseError(f"uptime out of range: {seconds!r}")
    return seconds


def parse_space_available(value: object) -> MastersStorage:
    """``[used percent, available MiB]`` of the partition holding the masters."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ParseError(f"expected [used percent, available MiB], got {_show(value)}"[:120])
    if list(value) == [-1, -1]:
        raise ParseError("the server reported that df -m failed ([-1, -1])")
    percent = _count(value[0], "used percent")
    avail = _count(value[1], "available MiB")
    if percent > 100:
        raise ParseError(f"used percent out of range: {percent}")
    return MastersStorage(used_ratio=percent / 100, avail_bytes=avail * MIB)


def parse_stats(value: object) -> Stats:
    if not isinstance(value, Mapping):
        raise ParseError(f"expected a struct, got {type(value).__name__}")
    try:
        return Stats(
            clients_registered=_count(value["total"], "total"),
            clients_with_rescue_image=_count(value["rescue"], "rescue"),
            masters_available=_count(value["master"], "master"),
        )
    except KeyError as err:
        raise ParseError(f"missing member {err}") from None


# (section, its member name, the Reply's attribute, its parser); each name read once, since
# an enum's ``.value`` is a slow property.
_SECTIONS: list[tuple[Section, str, str, Callable[[object], Any]]] = [
    (section, section.value, attribute, parse)
    for section, attribute, parse in [
        (Section.DISK_INFO, "filesystems", parse_df),
        (Section.MEM_INFO, "memory", parse_free),
        (Section.UPTIME, "uptime_seconds", parse_uptime),
        (Section.SPACE_AVAILABLE, "masters_storage", parse_space_available),
        (Section.STATS, "stats", parse_stats),
    ]
]


def parse_reply(value: object) -> Reply:
    """The whole struct; each section that fails is recorded and the rest still kept."""
    if not isinstance(value, Mapping):
        raise ParseError(f"expected a struct, got {type(value).__name__}")
    if "faultCode" in value:
        code = value.get("faultCode")
        code = code if isinstance(code, str) else _show(code)
        raise FaultReply(f"fault struct: {code.strip()}"[:200])
    fields: dict[str, Any] = {}
    errors: dict[Section, str] = {}
    for section, member, attribute, parse in _SECTIONS:
        if member not in value:
            errors[section] = "missing from the reply"
            continue
        try:
            fields[attribute] = parse(value[member])
        except ParseError as err:
            errors[section] = str(err)
    return Reply(**fields, section_errors=errors)


def parse_body(body: bytes) -> Reply:
    return parse_reply(decode_response(body))
