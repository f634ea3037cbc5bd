"""The heads read without h11 (``http11``), against h11 itself.

What the direct readers take, h11 must read alike: the same status or request line, the
same headers in the same order, the same framing and the same keep-alive. Whatever they
decline, h11 reads on the very same bytes (tests/test_transport.py and
tests/test_httpserver.py show it over sockets).
"""

from __future__ import annotations

import h11
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from medulla_imaging_exporter.http11 import header_line, plain_request, plain_response

SETTINGS = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

STATUS_LINES = st.tuples(
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 "]),
    st.sampled_from([b" 200", b" 204", b" 304", b" 100", b" 101", b" 404", b" 500", b" 999"]),
    st.sampled_from([b"", b" OK", b" ", b" Not Found", b" \x01", b" \xff", b"\tOK", b" a\x7fb"]),
).map(b"".join)
NAMES = st.sampled_from(
    [
        b"Content-Type",
        b"Content-Length",
        b"content-LENGTH",
        b"Transfer-Encoding",
        b"Connection",
        b"Server",
        b"Set-Cookie",
        b"X-Odd_~!",
        b"Bad Name",
        b"",
        b"a\x01",
        b"\xe9t\xe9",
    ]
)
VALUES = st.one_of(
    st.sampled_from(
        [
            b"text/xml",
            b"12",
            b"0",
            b"012",
            b"12, 12",
            b"12,13",
            b"-1",
            b"+1",
            b"1" * 21,
            b"1" * 20,
            b"chunked",
            b"close",
            b"keep-alive",
            b"Keep-Alive, CLOSE",
            b"upgrade ,close",
            b"a\tb",
            b"a  b",
            b"\x01",
            b"x\x7f",
            b"\xff\xfe",
            b"",
        ]
    ),
    st.binary(max_size=6),
)
ODD_LINES = st.one_of(
    st.tuples(
        NAMES,
        st.sampled_from([b":", b": ", b":\t", b" :"]),
        VALUES,
        st.sampled_from([b"", b" ", b"\t ", b"\r", b"\x01", b"\x0b"]),
    ).map(b"".join),
    st.sampled_from([b" folded", b"\tfolded", b""]),  # a continuation line, an empty one
)
# Lines that h11 and the direct reader both take, with values at the edges of the grammar.
USUAL_LINES = st.tuples(
    st.sampled_from([b"Server", b"Set-Cookie", b"X-Odd_~!", b"Connection", b"X-A"]),
    st.sampled_from([b":", b": ", b":\t  "]),
    st.sampled_from([b"", b"a", b"a b", b"a\t \tb", b"\x80\xff", b"~!", b"close", b"x ,Close"]),
    st.sampled_from([b"", b" ", b"\t"]),
).map(b"".join)
# Well-formed lines that change how the reply is framed or kept.
FRAMING_LINES = st.sampled_from(
    [
        b"Transfer-Encoding: chunked",
        b"transfer-encoding: identity",
        b"Content-Length: 7",
        b"Content-Length: 1, 1",
        b"Connection: close",
        b"Connection: keep-alive",
    ]
)


@st.composite
def heads(
    draw: st.DrawFn,
    usual_start: bytes,
    start_lines: st.SearchStrategy[bytes],
    required: st.SearchStrategy[bytes],
    framing: st.SearchStrategy[bytes],
) -> bytes:
    """A head without its blank line. Half begin as the usual heads do (``usual_start`` or
    another start line, a ``required`` line among usual ones, and at most one odd or
    ``framing`` line), so that many are read directly and the others are near misses; the
    other half are any lines at all. One in ten has a bare LF."""
    if draw(st.booleans()):
        lines = [draw(st.just(usual_start) | start_lines), *draw(st.lists(USUAL_LINES, max_size=4))]
        lines.insert(draw(st.integers(1, len(lines))), draw(required))
        if draw(st.booleans()):
            lines.insert(draw(st.integers(1, len(lines))), draw(ODD_LINES | framing))
    else:
        lines = [draw(start_lines), *draw(st.lists(ODD_LINES | framing, max_size=5))]
    separators = [b"\r\n"] * len(lines)
    if draw(st.integers(0, 9)) == 0:
        separators[draw(st.integers(0, len(lines) - 1))] = b"\n"
    return b"".join(line + sep for line, sep in zip(lines, separators, strict=True))[:-2]


def _h11_after_a_post() -> h11.Connection:
    state = h11.Connection(h11.CLIENT)
    state.send(h11.Request(method="POST", target="/", headers=[("Host", "x")]))
    state.send(h11.EndOfMessage())
    return state


@SETTINGS
@given(
    head=heads(
        b"HTTP/1.1 200 OK",
        STATUS_LINES,
        st.integers(0, 99).map(lambda n: b"Content-Length: %d" % n),
        FRAMING_LINES,
    )
)
def test_a_head_read_directly_is_read_alike_by_h11(head: bytes) -> None:
    plain = plain_response(head)
    event("left to h11" if plain is None else "read directly")  # --hypothesis-show-statistics
    if plain is None:
        return  # h11 reads it, on the same bytes
    state = _h11_after_a_post()
    body = b"x" * min(plain.length, 64)
    state.receive_data(head + b"\r\n\r\n" + body)
    response = state.next_event()
    assert type(response) is h11.Response
    assert response.status_code == plain.status_code
    assert response.headers.raw_items() == plain.headers
    if plain.length > len(body):
        return  # too long to send here; the framing is h11's Content-Length all the same
    received = b""
    while type(step := state.next_event()) is h11.Data:
        received += step.data
    assert type(step) is h11.EndOfMessage
    assert received == body
    assert state.their_state is (h11.DONE if plain.keep_alive else h11.MUST_CLOSE)


TWISTED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 1906\r\n"
    b"Server: TwistedWeb/22.4.0\r\nDate: Fri, 04 Dec 2026 02:00:00 GMT\r\n"
    b"Set-Cookie: TWISTED_SESSION=0123456789abcdef; Path=/"
)


@pytest.mark.parametrize(
    ("head", "length", "keep_alive"),
    [
        (TWISTED, 1906, True),
        (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0", 0, True),
        (b"HTTP/1.1 200\r\ncontent-length:5\r\nConnection: Upgrade, Close ", 5, False),
    ],
    ids=["twisted", "error-page", "no-reason-and-close"],
)
def test_the_usual_heads_are_read_directly(head: bytes, length: int, keep_alive: bool) -> None:
    """The property above holds trivially if nothing is ever read directly."""
    plain = plain_response(head)
    assert plain is not None
    assert (plain.length, plain.keep_alive) == (length, keep_alive)
    assert [name for name, _ in plain.headers] == [
        line.split(b":")[0] for line in head.split(b"\r\n")[1:]
    ]


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 100 Continue\r\nContent-Length: 0",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 0",
        b"HTTP/1.0 200 OK\r\nContent-Length: 5",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/xml",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: a\r\n b",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\nX-A: b",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: \x01",
    ],
    ids=[
        "informational",
        "no-content",
        "not-modified",
        "http-1.0",
        "chunked",
        "no-length",
        "two-lengths",
        "length-list",
        "folded-line",
        "bare-lf",
        "control-byte",
    ],
)
def test_other_heads_are_left_to_h11(head: bytes) -> None:
    assert plain_response(head) is None


# --- requests, as the HTTP server reads them ---------------------------------------------

REQUEST_LINES = st.tuples(
    st.sampled_from([b"GET", b"HEAD", b"POST", b"get", b"M-SEARCH", b"G(T", b""]),
    st.sampled_from([b" /metrics", b" /probe?entity=a%20b", b" *", b" /a b", b" /\x7f", b"  /"]),
    st.sampled_from([b" HTTP/1.1", b" HTTP/1.0", b" HTTP/2.0", b" http/1.1", b"", b" HTTP/1.1 "]),
).map(b"".join)
REQUEST_FRAMING_LINES = st.sampled_from(
    [
        b"Content-Length: 0",
        b"Content-Length: 3",
        b"Content-Length: 0, 0",
        b"Transfer-Encoding: chunked",
        b"Expect: 100-continue",
        b"Connection: close",
        b"Connection: keep-alive, Upgrade",
        b"Host: second",
    ]
)


@SETTINGS
@given(
    head=heads(
        b"GET /metrics HTTP/1.1",
        REQUEST_LINES,
        st.just(b"Host: 127.0.0.1:9987"),
        REQUEST_FRAMING_LINES,
    )
)
def test_a_request_read_directly_is_read_alike_by_h11(head: bytes) -> None:
    plain = plain_request(head)
    event("left to h11" if plain is None else "read directly")
    if plain is None:
        return
    state = h11.Connection(h11.SERVER)
    state.receive_data(head + b"\r\n\r\n")
    request = state.next_event()
    assert type(request) is h11.Request
    assert (request.method, request.target) == (plain.method, plain.target)
    assert request.headers.raw_items() == plain.fields.headers
    assert type(state.next_event()) is h11.EndOfMessage  # no body
    state.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
    state.send(h11.EndOfMessage())
    assert state.our_state is (h11.DONE if plain.fields.keep_alive else h11.MUST_CLOSE)


@pytest.mark.parametrize(
    "head",
    [
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        b"HEAD / HTTP/1.1\r\nhost: x\r\nContent-Length: 0",
        b"POST /-/reload HTTP/1.1\r\nHost: x\r\nConnection: close",
    ],
    ids=["prometheus", "head-with-empty-length", "reload-and-close"],
)
def test_the_usual_requests_are_read_directly(head: bytes) -> None:
    plain = plain_request(head)
    assert plain is not None
    assert plain.method == head.split(b" ")[0]
    assert plain.fields.keep_alive is (b"close" not in head)


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.0\r\nHost: x",
        b"GET / HTTP/1.1",
        b"GET / HTTP/1.1\r\nHost: x\r\nHost: y",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nExpect: 100-continue",
        b"GET /a b HTTP/1.1\r\nHost: x",
    ],
    ids=["http-1.0", "no-host", "two-hosts", "a-body", "chunked", "expect", "space-in-target"],
)
def test_other_requests_are_left_to_h11(head: bytes) -> None:
    assert plain_request(head) is None


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-Bad", "line\nbreak"), ("X-Bad", " padded"), ("Bad Name", "x"), ("X-Bad", "caf\u00e9")],
)
def test_a_header_h11_would_not_send_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        header_line(name, value)
    with pytest.raises((h11.LocalProtocolError, UnicodeEncodeError)):
        h11.Response(status_code=200, headers=[(name, value)])
