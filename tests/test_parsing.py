from __future__ import annotations

import pytest

from medulla_imaging_exporter.model import Filesystem, MastersStorage, Memory, Section, Stats
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
from tests.helpers import fixture_bytes

KIB = 1024

# What the "Public" screenshot implies, in bytes.
PUBLIC_FILESYSTEMS = (
    Filesystem("/dev/vda3", "/", 102858595 * KIB, 17301504 * KIB, 80425780 * KIB),
    Filesystem("/dev/vda1", "/boot/efi", 126668 * KIB, 11878 * KIB, 114790 * KIB),
)
PUBLIC_MEMORY = Memory(
    total_bytes=8178893 * KIB,
    used_bytes=3250586 * KIB,
    free_bytes=734003 * KIB,
    buff_cache_bytes=4194304 * KIB,
    available_bytes=4928307 * KIB,
    swap_total_bytes=2097148 * KIB,
    swap_used_bytes=524288 * KIB,
)


def lines(name: str) -> list[str]:
    """A command output as the server puts it in the reply: split on newlines."""
    return fixture_bytes(f"commands/{name}").decode().split("\n")


@pytest.mark.parametrize("name", ["public-procps-ng.xml", "public-procps-old.xml"])
def test_public_reply_has_the_screenshot_values(name: str) -> None:
    reply = parse_body(fixture_bytes(f"replies/{name}"))
    assert reply.section_errors == {}
    assert reply.filesystems == PUBLIC_FILESYSTEMS
    assert reply.memory == PUBLIC_MEMORY
    assert reply.uptime_seconds == 1123602.57
    assert reply.masters_storage == MastersStorage(used_ratio=0.18, avail_bytes=78540 * 1024 * 1024)
    assert reply.stats == Stats(0, 0, 0)


def test_screenshot_figures() -> None:
    """16.5 GiB used / 76.7 GiB available on /, 11.6 MiB / 112.1 MiB on /boot/efi."""
    root, efi = PUBLIC_FILESYSTEMS
    assert round(root.used_bytes / 2**30, 1) == 16.5
    assert round(root.avail_bytes / 2**30, 1) == 76.7
    assert round(efi.used_bytes / 2**20, 1) == 11.6
    assert round(efi.avail_bytes / 2**20, 1) == 112.1
    assert round(PUBLIC_MEMORY.used_bytes / 2**30, 1) == 3.1
    assert round(PUBLIC_MEMORY.total_bytes / 2**30, 1) == 7.8


def test_both_free_layouts_give_the_same_memory() -> None:
    assert parse_free(lines("free-procps-ng.txt")) == PUBLIC_MEMORY
    assert parse_free(lines("free-procps-old.txt")) == PUBLIC_MEMORY


def test_free_is_read_by_header_names_not_positions() -> None:
    wide = [
        "          total     used     free   shared  buffers    cache available",
        "Mem:    8178893  3250586   734003   120000   412000  3782304   4928307",
        "Swap:              0           0           0",
    ]
    memory = parse_free(wide)
    assert memory.buff_cache_bytes == 4194304 * KIB
    assert memory.available_bytes == 4928307 * KIB
    assert memory.swap_total_bytes == 0


def test_free_without_swap_line() -> None:
    memory = parse_free(lines("free-procps-ng.txt")[:2])
    assert memory.swap_total_bytes is None and memory.swap_used_bytes is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, r"failed \(-1\)"),
        ([], "empty free output"),
        (["  total used", "Swap: 1 2 3"], "no Mem: line"),
        (["  total used free", "Mem: 1 2"], "does not match"),
        (["  gesamt benutzt frei", "Mem: 1 2 3"], "unknown free header"),
        (["  total used free shared", "Mem: 1 2 3 4"], "no buffers/cache column"),
        ("total", "expected an array of strings"),
        ([1, 2], "expected an array of strings"),
    ],
)
def test_bad_free(value: object, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_free(value)


def test_df_skips_header_pseudo_and_empty_filesystems() -> None:
    assert parse_df(lines("df-k.txt")) == PUBLIC_FILESYSTEMS


def test_df_joins_a_wrapped_device_and_keeps_mount_points_with_spaces() -> None:
    df = [
        "Filesystem     1K-blocks     Used Available Use% Mounted on",
        "/dev/mapper/imaging--vg-masters--with--a--very--long--name",
        "               209715200 10485760 199229440   5% /var/lib/pulse2/imaging masters",
        "/dev/sdb1          1000      500       500  50% /mnt/My Disk",
        "proc                  0        0         0    - /proc",
        "/dev/loop0            0        0         0    - /snap/core/1",
        "this line is garbage",
        "",
    ]
    assert parse_df(df) == (
        Filesystem(
            "/dev/mapper/imaging--vg-masters--with--a--very--long--name",
            "/var/lib/pulse2/imaging masters",
            209715200 * KIB,
            10485760 * KIB,
            199229440 * KIB,
        ),
        Filesystem("/dev/sdb1", "/mnt/My Disk", 1000 * KIB, 500 * KIB, 500 * KIB),
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "failed"),
        ([""], "empty df output"),
        (["Filesystem 1M-blocks Used Available Use% Mounted on"], "unexpected df header"),
        (7, "expected an array of strings"),
    ],
)
def test_bad_df(value: object, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_df(value)


def test_uptime() -> None:
    assert parse_uptime(fixture_bytes("commands/proc-uptime.txt").decode()) == 1123602.57


@pytest.mark.parametrize("value", [-1, "", "abc 1", "-5 1", "nan 1", "inf", 12, None])
def test_bad_uptime(value: object) -> None:
    with pytest.raises(ParseError):
        parse_uptime(value)


def test_space_available() -> None:
    assert parse_space_available([18, 78540]) == MastersStorage(0.18, 78540 * 2**20)
    assert parse_space_available(["5", "10"]) == MastersStorage(0.05, 10 * 2**20)


@pytest.mark.parametrize("value", [[-1, -1], [101, 1], [-3, 5], [1], "18 78540", [1.5, 2]])
def test_bad_space_available(value: object) -> None:
    with pytest.raises(ParseError):
        parse_space_available(value)


def test_stats_accept_the_numeric_strings_of_medulla_agent() -> None:
    assert parse_stats({"total": "3", "rescue": 1, "master": "2"}) == Stats(3, 1, 2)


@pytest.mark.parametrize(
    "value",
    [
        {"total": 1, "rescue": 1},
        {"total": -1, "rescue": 0, "master": 0},
        [1, 2, 3],
        {"total": True, "rescue": 0, "master": 0},
        {"total": "x", "rescue": 0, "master": 0},
    ],
)
def test_bad_stats(value: object) -> None:
    with pytest.raises(ParseError):
        parse_stats(value)


def test_every_failed_section_is_reported_and_the_others_kept() -> None:
    reply = parse_body(fixture_bytes("replies/all-sections-failed.xml"))
    assert set(reply.section_errors) == {
        Section.DISK_INFO,
        Section.MEM_INFO,
        Section.UPTIME,
        Section.SPACE_AVAILABLE,
    }
    assert (reply.filesystems, reply.memory, reply.uptime_seconds, reply.masters_storage) == (
        None,
        None,
        None,
        None,
    )
    assert reply.stats == Stats(0, 0, 0)


def test_missing_space_available_is_one_failed_section() -> None:
    reply = parse_body(fixture_bytes("replies/no-space-available.xml"))
    assert reply.section_errors == {Section.SPACE_AVAILABLE: "missing from the reply"}
    assert reply.filesystems == PUBLIC_FILESYSTEMS
    assert reply.memory == PUBLIC_MEMORY


def test_partial_section_garbage_keeps_the_rest() -> None:
    reply = parse_reply(
        {
            "uptime": "up a while",
            "stats": {"total": 1, "rescue": 0, "master": 2},
            "mem_info": -1,
            "disk_info": lines("df-k.txt"),
            "space_available": [1, 2],
        }
    )
    assert set(reply.section_errors) == {Section.UPTIME, Section.MEM_INFO}
    assert reply.filesystems == PUBLIC_FILESYSTEMS
    assert reply.stats == Stats(1, 0, 2)


@pytest.mark.parametrize(
    ("name", "message"),
    [("fault-struct.xml", "Cannot allocate memory"), ("fault-8002.xml", "XML-RPC fault 8002")],
)
def test_faults(name: str, message: str) -> None:
    with pytest.raises(FaultReply, match=message):
        parse_body(fixture_bytes(f"replies/{name}"))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html><body>Proxy Error</body></html>",
        b"<?xml version='1.0'?><methodResponse><params><param><value><int>x</int></value>"
        b"</param></params></methodResponse>",
        b"<?xml version='1.0'?><methodResponse><params><param><value><array><data>"
        b"<value><int>1</int></value></data></array></value></param></params></methodResponse>",
    ],
)
def test_not_an_xmlrpc_struct(body: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_body(body)
    assert not isinstance(info.value, FaultReply)


def test_entity_expansion_is_refused() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<methodResponse><params><param><value><string>&b;</string></value>"
        b"</param></params></methodResponse>"
    )
    with pytest.raises(ParseError, match="DTD"):
        decode_response(bomb)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("xml-bomb.xml", "DTD refused"),
        ("external-entity.xml", "DTD refused"),
        ("invalid-utf8.xml", "not well-formed"),
    ],
)
def test_hostile_replies_are_refused(name: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        decode_response(fixture_bytes(f"replies/{name}"))
    assert not isinstance(info.value, FaultReply)


# Python's codec names and what the XML declaration says (expat's own names).
ENCODINGS = {
    "utf-16": "UTF-16",
    "utf-16-be": "UTF-16BE",
    "utf-8-sig": "UTF-8",
    "latin-1": "ISO-8859-1",
}


def _encoded(text: str, encoding: str) -> bytes:
    declared = text.replace("version='1.0'", f"version='1.0' encoding='{ENCODINGS[encoding]}'")
    return declared.encode(encoding)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_dtd_is_refused_in_every_encoding(encoding: str) -> None:
    """A byte scan for ``<!DOCTYPE`` would miss UTF-16; expat reads the prolog decoded.

    An internal entity: ElementTree's parser alone would expand it without a word.
    """
    text = (
        "<?xml version='1.0'?><!DOCTYPE r [<!ENTITY a 'expanded'>]><methodResponse><params>"
        "<param><value><string>&a;</string></value></param></params></methodResponse>"
    )
    body = _encoded(text, encoding)
    with pytest.raises(ParseError, match="DTD refused"):
        decode_response(body)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_reply_reads_the_same_in_every_encoding(encoding: str) -> None:
    text = fixture_bytes("replies/public-procps-ng.xml").decode()
    body = _encoded(text, encoding)
    assert parse_body(body) == parse_body(fixture_bytes("replies/public-procps-ng.xml"))


def test_deep_nesting_is_read_and_fails_only_its_section() -> None:
    """3000 nested arrays: too deep for the tree reader's recursion, read by the stdlib's."""
    reply = parse_body(fixture_bytes("replies/deep-nesting.xml"))
    assert set(reply.section_errors) == {Section.SPACE_AVAILABLE}
    assert reply.section_errors[Section.SPACE_AVAILABLE].startswith("expected [used percent")
    assert reply.filesystems == PUBLIC_FILESYSTEMS


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<i8>9223372036854775807</i8>", 2**63 - 1),
        ("<biginteger>-5</biginteger>", -5),
        ("  spaced  ", "  spaced  "),
        ("<string>a<![CDATA[<b>]]>&amp;</string>", "a<b>&"),
        ("<ex:nil xmlns:ex='urn:x'/>", None),
        ("<double> 2.5 </double>", 2.5),
    ],
)
def test_uncommon_values_read_as_the_standard_library_does(value: str, expected: object) -> None:
    body = (
        "<?xml version='1.0'?><methodResponse><params><param>"
        f"<value>{value}</value></param></params></methodResponse>"
    ).encode()
    assert decode_response(body) == expected


def test_a_pseudo_filesystem_row_with_a_number_too_long_still_fails_df() -> None:
    df = ["Filesystem 1K-blocks Used Available Use% Mounted on", f"tmpfs {'9' * 5000} 0 0 0% /x"]
    with pytest.raises(ParseError, match="number too long: 5000 digits"):
        parse_df(df)
