"""HTTP/1.1 heads of the usual shape, read without h11: the probe's replies, the server's requests.

h11's state machine validates every line of every head with many small Python calls:
for the same few heads again and again, that was 38 % of a probe's request and 56 % of a
request served (docs/performance.md, items 15 and 16). These
functions read the heads that Twisted and Prometheus send (HTTP/1.1, header lines of the
usual bytes, a simple framing) with a regular expression a line, and answer None for any
other, which the caller then leaves to h11 on the very same bytes. Each pattern is
narrower than h11's grammar, so that what is read here, h11 reads alike (tested with
hypothesis against h11 itself).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_VCHARS = rb"[\x21-\x7e\x80-\xff]+"
HEADER_LINE = re.compile(
    rb"(" + _TOKEN + rb"):[ \t]*((?:" + _VCHARS + rb"(?:[ \t]+" + _VCHARS + rb")*)?)[ \t]*"
)
# What h11 lets a header we send be: a token, and a value without whitespace at its ends.
_NAME = re.compile(_TOKEN)
_VALUE = re.compile(rb"(?:" + _VCHARS + rb"(?:[ \t]+" + _VCHARS + rb")*)?")
_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([2-9][0-9]{2})(?: [ \t\x21-\x7e\x80-\xff]*)?")
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.1")
# h11's own default limit on a head still incomplete (431 for a request past it).
MAX_HEAD_BYTES = 16 * 1024
HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Fields:
    """Header lines, as sent, and what frames the message."""

    headers: list[tuple[bytes, bytes]]
    length: int | None  # Content-Length, None without one
    keep_alive: bool


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A reply's status and headers; ``length`` and ``keep_alive`` only when read here."""

    status_code: int
    headers: list[tuple[bytes, bytes]]
    length: int = 0
    keep_alive: bool = False


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: bytes
    target: bytes
    fields: Fields


async def read_head(buffer: bytes, read: Callable[[], Awaitable[bytes]]) -> tuple[bytes, int]:
    """``buffer`` and what ``read`` adds to it until a head ends, and where it ends: -1 where
    h11 must say what is wrong (too long, not beginning with a letter as start lines do, or
    the peer closing, which an empty buffer then tells)."""
    while (end := buffer.find(HEAD_END)) < 0:
        if len(buffer) > MAX_HEAD_BYTES or (buffer and not buffer[:1].isalpha()):
            break
        data = await read()
        if not data:
            break
        buffer += data
    return buffer, end


def plain_fields(lines: Sequence[bytes]) -> Fields | None:
    """Header lines of the usual bytes, at most one Content-Length of digits and no
    Transfer-Encoding; None for any other (a folded line, an odd byte...)."""
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    keep_alive = True
    for line in lines:
        field = HEADER_LINE.fullmatch(line)
        if field is None:
            return None
        name, value = field.groups()
        lower = name.lower()
        if lower == b"content-length":
            if length is not None or not value.isdigit() or len(value) > 20:
                return None
            length = int(value)
        elif lower == b"transfer-encoding":
            return None
        elif lower == b"connection" and b"close" in [
            token.strip().lower() for token in value.split(b",")
        ]:
            keep_alive = False
        headers.append((name, value))
    return Fields(headers, length, keep_alive)


def plain_response(head: bytes) -> ResponseHead | None:
    """The head (the lines before the blank one) of a reply framed by its Content-Length
    alone, as Twisted sends them; None for any other (1xx, 204, 304, chunked, no length...)."""
    status_line, *lines = head.split(b"\r\n")
    status = _STATUS_LINE.fullmatch(status_line)
    if status is None or status[1] in (b"204", b"304"):  # 204 and 304 have no body
        return None
    fields = plain_fields(lines)
    if fields is None or fields.length is None:
        return None
    return ResponseHead(int(status[1]), fields.headers, fields.length, fields.keep_alive)


def plain_request(head: bytes) -> RequestHead | None:
    """The head of a request without a body, one Host and no Expect, as Prometheus and
    browsers send them; None for any other (HTTP/1.0, a body, chunked, no Host...)."""
    request_line, *lines = head.split(b"\r\n")
    request = _REQUEST_LINE.fullmatch(request_line)
    if request is None:
        return None
    fields = plain_fields(lines)
    if fields is None or fields.length not in (None, 0):
        return None
    names = [name.lower() for name, _ in fields.headers]
    if names.count(b"host") != 1 or b"expect" in names:
        return None
    return RequestHead(request[1], request[2], fields)


def header_line(name: str, value: str) -> bytes:
    """``Name: value`` to send; ``ValueError`` for what h11 would refuse to send (a line
    break in a value, a name that is not a token, a character that is not ASCII)."""
    raw_name, raw_value = name.encode("ascii"), value.encode("ascii")
    if _NAME.fullmatch(raw_name) is None or _VALUE.fullmatch(raw_value) is None:
        raise ValueError(f"header not sent: {name!r}: {value!r}")
    return raw_name + b": " + raw_value
