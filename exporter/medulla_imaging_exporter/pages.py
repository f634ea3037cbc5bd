"""The status page (HTML) and the probe debug view (plain text), from plain values.

Rendering knows nothing of HTTP or sockets. Every value is escaped when it is put
into a template unless it is already ``Html``; names come from the configuration
and text from remote servers, so an entity called ``<script>`` is shown as text.
The pages load nothing from elsewhere: no script, no font, no image.
"""

from __future__ import annotations

import dataclasses
import html
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from medulla_imaging_exporter.config import Entity, redact_url
from medulla_imaging_exporter.history import ProbeRecord
from medulla_imaging_exporter.model import EntityStatus, Reply, Stats, Status
from medulla_imaging_exporter.translations import (
    Language,
    format_bytes,
    format_duration,
    format_uptime,
    status_label,
    text,
)

REFRESH_SECONDS = 30


class Html(str):
    """Markup that is already safe to insert."""


def escape(value: object) -> Html:
    return value if isinstance(value, Html) else Html(html.escape(str(value), quote=True))


def render(template: str, **values: object) -> Html:
    """Fill a literal template; each value is escaped unless it is already ``Html``."""
    return Html(template.format(**{k: escape(v) for k, v in values.items()}))


def join(parts: Iterable[object]) -> Html:
    return join_with("", parts)


def join_with(separator: str, parts: Iterable[object]) -> Html:
    return Html(escape(separator).join(escape(p) for p in parts))


def utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


@dataclass(frozen=True)
class IndexView:
    """Everything the landing page shows, gathered by the web layer."""

    lang: Language
    lang_forced: bool  # chosen by ?lang=, so links keep it
    entities: Sequence[Entity]  # every configured entity, for the selector
    selected: str | None
    shown: Sequence[tuple[Entity, EntityStatus]]
    history: Sequence[ProbeRecord]
    version: str


_CSS = Html(
    """
body{font:15px/1.4 "DejaVu Sans",Arial,sans-serif;margin:0 auto;max-width:70em;padding:1em;
color:#222;background:#f4f5f7}
header{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:baseline}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin:0 0 .4em}
h3{font-size:1em;margin:.8em 0 .3em}
a{color:#0b57a4}
form.selector{margin:.6em 0}
.notice{color:#555;font-size:.9em}
.entity{background:#fff;border-left:.5em solid #999;border-radius:4px;padding:.8em 1em;
margin:.8em 0;box-shadow:0 1px 2px #0002}
.entity.status-available{border-left-color:#2e7d32}
.entity.status-offline{border-left-color:#c62828}
.entity.status-connection_error{border-left-color:#e65100}
.entity.status-not_linked{border-left-color:#757575}
.badge{display:inline-block;padding:.1em .6em;border-radius:1em;color:#fff;font-weight:bold}
.badge.status-available{background:#2e7d32}
.badge.status-offline{background:#c62828}
.badge.status-connection_error{background:#e65100}
.badge.status-not_linked{background:#757575}
.error{color:#c62828;font-weight:bold}
.server,.probe,.links{color:#555;font-size:.9em;word-break:break-all}
.bar{display:flex;height:.9em;background:#dfe3e8;border-radius:3px;overflow:hidden}
.bar span{display:block;height:100%}
.bar .used{background:#1e88e5}.bar .cache{background:#90caf9}
.gauge{margin:.3em 0 .6em}
.details{display:grid;grid-template-columns:repeat(auto-fit,minmax(19em,1fr));gap:0 2em}
.device{color:#666}
ul{margin:.2em 0;padding-left:1.4em}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.9em}
th,td{border-bottom:1px solid #e0e0e0;padding:.25em .5em;text-align:left;vertical-align:top}
tr.failed td{background:#fdecea}
footer{color:#666;font-size:.85em;margin-top:1.5em}
"""
)

_PAGE = """<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title} · medulla-imaging-exporter</title>
<style>{css}</style>
</head>
<body>
<header><h1>{title}</h1>
<nav>{lang_links} · <a href="metrics">{metrics}</a></nav></header>
<form class="selector" method="get">
<label for="entity">{selected_entity}</label>
<select id="entity" name="entity">{options}</select>{lang_input}
<button type="submit">{show}</button>
</form>
<p class="notice">{before_imaging}</p>
{unknown}<main>{cards}</main>
<section id="recent"><h2>{recent}</h2><p class="notice">{recent_note}</p>{history}</section>
<footer>{refresh_note} medulla-imaging-exporter {version}</footer>
</body>
</html>
"""


def _query(view: IndexView, **params: str) -> str:
    """A link to the landing page with these parameters, keeping ?lang= if it was given."""
    if view.lang_forced and "lang" not in params:
        params["lang"] = view.lang
    return "?" + urlencode(params, quote_via=quote) if params else "./"


def _probe_link(entity: str, debug: bool) -> str:
    params = {"entity": entity, **({"debug": "true"} if debug else {})}
    return "probe?" + urlencode(params, quote_via=quote)


def render_index(view: IndexView) -> str:
    lang = view.lang
    selected = {"entity": view.selected} if view.selected else {}
    lang_links = join_with(
        " · ",
        (
            render(
                '<a href="{href}" hreflang="{code}">{code}</a>',
                href=_query(view, **selected, lang=code),
                code=code,
            )
            if code != lang
            else render("<strong>{code}</strong>", code=code)
            for code in ("fr", "en")
        ),
    )
    options = join(
        [
            render('<option value="">{label}</option>', label=text(lang, "all_entities")),
            *(
                render(
                    '<option value="{name}"{sel}>{name}</option>',
                    name=e.name,
                    sel=Html(" selected") if e.name == view.selected else "",
                )
                for e in view.entities
            ),
        ]
    )
    known = {e.name for e in view.entities}
    unknown = (
        render('<p class="error">{msg}</p>', msg=text(lang, "unknown_entity", name=view.selected))
        if view.selected and view.selected not in known
        else ""
    )
    return render(
        _PAGE,
        lang=lang,
        refresh=REFRESH_SECONDS,
        title=text(lang, "title"),
        css=_CSS,
        lang_links=lang_links,
        metrics=text(lang, "metrics"),
        selected_entity=text(lang, "selected_entity"),
        options=options,
        lang_input=render('<input type="hidden" name="lang" value="{lang}">', lang=lang)
        if view.lang_forced
        else "",
        show=text(lang, "show"),
        before_imaging=text(lang, "before_imaging"),
        unknown=unknown,
        cards=join(_card(view, entity, status) for entity, status in view.shown),
        recent=text(lang, "recent"),
        recent_note=text(lang, "recent_note"),
        history=_history(view),
        refresh_note=text(lang, "refresh", seconds=REFRESH_SECONDS),
        version=view.version,
    )


def _card(view: IndexView, entity: Entity, status: EntityStatus) -> Html:
    lang = view.lang
    st = status.status
    parts: list[object] = [
        render("<h2>{heading}</h2>", heading=text(lang, "server_of", name=entity.name)),
        render(
            '<p class="status">{label}: <span class="badge status-{st}">{badge}</span> '
            "{meaning}</p>",
            label=text(lang, "status"),
            st=st.value,
            badge=status_label(lang, st),
            meaning=text(lang, f"meaning.{st.value}"),
        ),
    ]
    if entity.url is not None:
        parts.insert(1, render('<p class="server">{url}</p>', url=redact_url(entity.url)))
    if st in (Status.OFFLINE, Status.CONNECTION_ERROR):
        parts.append(render('<p class="error">{msg}</p>', msg=text(lang, "cannot_connect")))
        parts.append(
            render(
                '<p class="action"><strong>{label}</strong> {action}</p>',
                label=text(lang, "recommended_action"),
                action=text(lang, f"action.{st.value}"),
            )
        )
    if status.reply is not None:
        parts.append(_reply(lang, entity.name, status.reply))
    if status.started_at is not None:
        parts.append(_last_probe(lang, status))
    parts.append(
        render(
            '<p class="links">{label}: <a href="{debug}">debug</a> · '
            '<a href="{probe}">/probe</a></p>',
            label=text(lang, "probe_links"),
            debug=_probe_link(entity.name, debug=True),
            probe=_probe_link(entity.name, debug=False),
        )
    )
    return render(
        '<section class="entity status-{st}" data-entity="{name}" data-status="{st}">'
        "{body}</section>\n",
        st=st.value,
        name=entity.name,
        body=join(parts),
    )


def _bar(segments: Sequence[tuple[str, float]]) -> Html:
    """A horizontal bar; each segment is a CSS class and a fraction of the whole."""
    return Html(
        '<div class="bar">'
        + "".join(
            f'<span class="{cls}" style="width:{max(0.0, min(1.0, frac)) * 100:.1f}%"></span>'
            for cls, frac in segments
        )
        + "</div>"
    )


def _disk(lang: Language, reply: Reply) -> Html:
    out: list[object] = [render("<h3>{t}</h3>", t=text(lang, "disk"))]
    for fs in reply.filesystems or ():
        out.append(
            render(
                '<div class="gauge fs" data-mount="{mount}"><span class="mount">{mount}</span> '
                '<span class="device">{device}</span> <span class="value">{value}</span>'
                "{bar}</div>",
                mount=fs.mountpoint,
                device=fs.device,
                value=text(
                    lang,
                    "used_available",
                    used=format_bytes(lang, fs.used_bytes),
                    avail=format_bytes(lang, fs.avail_bytes),
                ),
                bar=_bar([("used", fs.used_bytes / max(1, fs.used_bytes + fs.avail_bytes))]),
            )
        )
    if reply.masters_storage is not None:
        ms = reply.masters_storage
        out.append(
            render(
                '<div class="gauge masters"><span class="mount">{label}</span> '
                '<span class="value">{value}</span>{bar}</div>',
                label=text(lang, "masters_storage"),
                value=text(
                    lang,
                    "masters_storage_value",
                    percent=round(ms.used_ratio * 100),
                    avail=format_bytes(lang, ms.avail_bytes),
                ),
                bar=_bar([("used", ms.used_ratio)]),
            )
        )
    return join(out)


def _load(lang: Language, reply: Reply) -> Html:
    out: list[object] = [render("<h3>{t}</h3>", t=text(lang, "load"))]
    if reply.uptime_seconds is not None:
        out.append(
            render(
                '<p class="uptime">{label}: <span class="value">{value}</span></p>',
                label=text(lang, "up_since"),
                value=format_uptime(lang, reply.uptime_seconds),
            )
        )
    if reply.memory is not None:
        mem = reply.memory
        total = max(1, mem.total_bytes)
        out.append(
            render(
                '<div class="gauge memory">{label}: <span class="value">{value}</span>{bar}</div>',
                label=text(lang, "memory"),
                value=text(
                    lang,
                    "memory_value",
                    used=format_bytes(lang, mem.used_bytes),
                    cache=format_bytes(lang, mem.buff_cache_bytes),
                    total=format_bytes(lang, mem.total_bytes),
                ),
                bar=_bar(
                    [("used", mem.used_bytes / total), ("cache", mem.buff_cache_bytes / total)]
                ),
            )
        )
        if mem.swap_total_bytes:
            swap = text(
                lang,
                "swap_value",
                used=format_bytes(lang, mem.swap_used_bytes or 0),
                total=format_bytes(lang, mem.swap_total_bytes),
            )
        else:
            swap = text(lang, "no_swap")
        out.append(
            render(
                '<p class="swap">{label}: <span class="value">{value}</span></p>',
                label=text(lang, "swap"),
                value=swap,
            )
        )
    return join(out)


def _stats(lang: Language, name: str, s: Stats) -> Html:
    return join(
        [
            render("<h3>{t}</h3>", t=text(lang, "stats", name=name)),
            render(
                '<ul class="stats"><li>{a}</li><li>{b}</li><li>{c}</li></ul>',
                a=text(lang, "clients_registered", n=s.clients_registered),
                b=text(
                    lang, "rescue", rescue=s.clients_with_rescue_image, total=s.clients_registered
                ),
                c=text(lang, "masters_available", n=s.masters_available),
            ),
        ]
    )


def _reply(lang: Language, name: str, reply: Reply) -> Html:
    """The disk, load and statistics blocks of Medulla's page, side by side when room allows."""
    blocks = [_disk(lang, reply), _load(lang, reply)]
    if reply.stats is not None:
        blocks.append(_stats(lang, name, reply.stats))
    out: list[object] = [
        render(
            '<div class="details">{blocks}</div>',
            blocks=join(render("<div>{b}</div>", b=b) for b in blocks),
        )
    ]
    if reply.section_errors:
        out.append(
            render(
                '<ul class="section-errors error">{items}</ul>',
                items=join(
                    render(
                        "<li>{msg}</li>",
                        msg=text(lang, "section_failed", section=section.value, error=error),
                    )
                    for section, error in reply.section_errors.items()
                ),
            )
        )
    return join(out)


def _last_probe(lang: Language, status: EntityStatus) -> Html:
    assert status.started_at is not None
    when = text(
        lang,
        "probe_time",
        time=utc(status.started_at),
        duration=format_duration(status.duration_seconds or 0.0),
    )
    reason = (
        render(
            '; {label}: <code class="reason">{reason}</code> <span class="detail">{detail}</span>',
            label=text(lang, "reason"),
            reason=status.reason.value,
            detail=status.detail,
        )
        if status.reason is not None
        else ""
    )
    return render(
        '<p class="probe">{label}: {when}{reason}</p>',
        label=text(lang, "last_probe"),
        when=when,
        reason=reason,
    )


def _history(view: IndexView) -> Html:
    lang = view.lang
    if not view.history:
        return render("<p>{msg}</p>", msg=text(lang, "no_probes"))
    head = join(
        render("<th>{t}</th>", t=text(lang, f"col.{c}"))
        for c in ("time", "entity", "status", "reason", "duration", "details")
    )
    rows = join(
        render(
            '<tr class="{cls}" data-id="{id}"><td>{time}</td><td>{entity}</td>'
            '<td><span class="badge status-{st}">{status}</span></td><td>{reason}</td>'
            '<td>{duration}</td><td><a href="logs?id={id}">debug</a></td></tr>',
            cls="failed" if r.failed else "ok",
            id=r.id,
            time=utc(r.status.started_at or 0.0),
            entity=r.entity.name,
            st=r.status.status.value,
            status=status_label(lang, r.status.status),
            reason=r.status.reason.value if r.status.reason else "",
            duration=format_duration(r.status.duration_seconds or 0.0),
        )
        for r in view.history
    )
    return render(
        "<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>", head=head, rows=rows
    )


# --- the debug view ----------------------------------------------------------------------


def render_debug(
    entity: Entity, status: EntityStatus, record: ProbeRecord | None, exposition: str
) -> str:
    """What the probe did and what it would export, as plain text with no secret in it."""
    lines = [f"Probe of entity {entity.name!r}" + (f" (probe #{record.id})" if record else "")]
    lines += [
        f"Server: {redact_url(entity.url) if entity.url else '(no imaging server linked)'}",
        f"Started: {utc(status.started_at) if status.started_at is not None else '-'}",
        f"Duration: {status.duration_seconds:.6f} s"
        if status.duration_seconds is not None
        else "Duration: -",
        f"Status: {status.status.value}",
        f"Reason: {status.reason.value if status.reason else '-'}",
        f"Detail: {status.detail or '-'}",
    ]
    if record is not None:
        lines += [
            f"HTTP status: {record.http_status if record.http_status is not None else '-'}",
            f"Content-Type: {record.content_type or '-'}",
            "Reply size: "
            + (f"{record.reply_bytes} bytes" if record.reply_bytes is not None else "-"),
            "",
            "Wire events (seconds since the probe started):",
            *(f"  {at:9.6f} {name}" for at, name in record.events),
        ]
        if not record.events:
            lines.append("  (none: nothing was sent)")
        elif not any(name.startswith("connection.") for _, name in record.events):
            lines.append("  (no connection events: a kept-alive connection was reused)")
    elif entity.url is not None:
        lines += ["", "Wire events: not kept (this scrape gave up before the probe ended)"]
    lines += ["", "Parsed reply:"]
    reply = status.reply
    if reply is None:
        lines.append("  (none)")
    else:
        for f in dataclasses.fields(reply):
            if f.name != "section_errors":
                lines.append(f"  {f.name}: {_plain(getattr(reply, f.name))}")
        for section, error in reply.section_errors.items():
            lines.append(f"  section {section.value} could not be read: {error}")
    tls = entity.tls
    lines += [
        "",
        "Configuration:",
        f"  name: {entity.name}",
        f"  uuid: {entity.uuid or '-'}",
        f"  url: {redact_url(entity.url) if entity.url else '-'}",
        f"  timeout: {entity.timeout:g}s",
        f"  max_reply_bytes: {entity.max_reply_bytes}",
        f"  tls_config: ca_file={tls.ca_file or '-'} cert_file={tls.cert_file or '-'} "
        f"key_file={tls.key_file or '-'} server_name={tls.server_name or '-'} "
        f"insecure_skip_verify={str(tls.insecure_skip_verify).lower()}",
        "",
        "Metrics that would have been returned:",
        exposition.rstrip("\n"),
    ]
    return "\n".join(lines) + "\n"


def _plain(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ", ".join(f"{f.name}={getattr(value, f.name)}" for f in dataclasses.fields(value))
        return f"{type(value).__name__}({fields})"
    return str(value)
