from __future__ import annotations

import re
import time
from html.parser import HTMLParser

from medulla_imaging_exporter.config import Entity, TLSConfig
from medulla_imaging_exporter.history import History
from medulla_imaging_exporter.model import (
    EntityStatus,
    Filesystem,
    Reason,
    Reply,
    Section,
    Status,
)
from medulla_imaging_exporter.pages import (
    REFRESH_SECONDS,
    Html,
    IndexView,
    escape,
    render,
    render_debug,
    render_index,
)
from medulla_imaging_exporter.transport import Exchange, WireEvents

HOSTILE = "<script>alert(1)</script>"
QUOTE = '"><img src=x onerror=alert(2)>'
SECRET_URL = "https://zorglub:s3cret@imaging.example.org:9990/imaging_api"


class _Collect(HTMLParser):
    """What a browser's parser would build: element names and text nodes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Collect:
    parser = _Collect()
    parser.feed(page)
    return parser


def test_values_are_escaped_unless_already_html() -> None:
    assert escape(HOSTILE) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert escape(Html("<b>")) == "<b>"
    assert render('<a title="{t}">{t}</a>', t=QUOTE) == (
        '<a title="&quot;&gt;&lt;img src=x onerror=alert(2)&gt;">'
        "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;</a>"
    )


def _hostile_view() -> IndexView:
    reply = Reply(
        filesystems=(Filesystem(HOSTILE, QUOTE, 100, 40, 60),),
        section_errors={Section.STATS: HOSTILE},
    )
    script = Entity(name=HOSTILE)
    quote = Entity(name=QUOTE, url=SECRET_URL)
    now = time.time()
    failed = EntityStatus(QUOTE, Status.CONNECTION_ERROR, Reason.FAULT, HOSTILE, now, 0.1, reply)
    history = History()
    exchange = Exchange(True, False, now, 0.1, 200, "text/xml", b"")
    history.add(quote, failed, exchange, WireEvents(), time.monotonic())
    return IndexView(
        lang="en",
        lang_forced=False,
        entities=[script, quote],
        selected=None,
        shown=[(script, EntityStatus(HOSTILE, Status.NOT_LINKED)), (quote, failed)],
        history=history.records(),
        version="1",
    )


def test_hostile_names_and_server_text_are_shown_as_text() -> None:
    page = render_index(_hostile_view())
    parsed = _parse(page)
    assert "script" not in parsed.tags
    assert "img" not in parsed.tags
    assert not any(name.startswith("on") for name, _ in parsed.attrs)
    text = "".join(parsed.text)
    assert f"Imaging server of the entity {HOSTILE}" in text
    assert f"Imaging server of the entity {QUOTE}" in text
    assert HOSTILE in text and QUOTE in text
    # The selector's values are attributes; the parser gives them back unescaped.
    assert ("value", HOSTILE) in parsed.attrs and ("value", QUOTE) in parsed.attrs
    assert ("data-mount", QUOTE) in parsed.attrs


def test_page_never_shows_credentials_of_a_url() -> None:
    page = render_index(_hostile_view())
    assert "s3cret" not in page and "zorglub" not in page
    assert "https://imaging.example.org:9990/imaging_api" in page


def test_page_loads_nothing_from_elsewhere_and_refreshes_itself() -> None:
    page = render_index(_hostile_view())
    parsed = _parse(page)
    assert ("http-equiv", "refresh") in parsed.attrs
    assert ("content", str(REFRESH_SECONDS)) in parsed.attrs
    urls = [v or "" for k, v in parsed.attrs if k in ("href", "src", "action")]
    assert urls, "the page has links"
    assert all(not re.match(r"^(https?:)?//", u) for u in urls), urls
    assert "script" not in parsed.tags


def test_debug_view_redacts_credentials() -> None:
    entity = Entity(
        name="Public",
        url=SECRET_URL,
        tls=TLSConfig(server_name="imaging.example.org"),
    )
    status = EntityStatus("Public", Status.OFFLINE, Reason.REFUSED, "refused", 1.0, 0.01)
    text = render_debug(entity, status, None, 'x{server="https://imaging.example.org"} 1\n')
    assert "s3cret" not in text and "zorglub" not in text
    assert "Server: https://imaging.example.org:9990/imaging_api" in text
    assert "Reason: refused" in text
    assert "Wire events: not kept" in text
    assert text.endswith('x{server="https://imaging.example.org"} 1\n')
