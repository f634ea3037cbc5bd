"""The exposition of a scrape, byte for byte as prometheus_client writes it, for less CPU.

A thousand entities make about fifty thousand gauge samples per scrape, and
prometheus_client's encoders spend most of a probe's CPU validating and escaping
the same label names and values again for every sample. Plain gauge, info and counter
families (all the per-entity ones, most of the process's) are written here, in either
text format; any
other family goes through prometheus_client's own encoder, so the output is the
same in every case. ``GaugeFamily`` goes further: it keeps label values and numbers
rather than ``Sample`` objects, and each distinct set of label values is written once.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import cast

from prometheus_client import exposition
from prometheus_client.core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_EOF = "# EOF\n"
# Escaping schemes that leave a legacy metric or label name as it is.
_IDENTITY_ESCAPINGS = (openmetrics.UNDERSCORES, openmetrics.ALLOWUTF8)
# Go's float formatting, as prometheus_client writes values (the function is untyped).
_go_float = cast(Callable[[float], str], floatToGoString)


Row = tuple[tuple[str, ...], float]


class GaugeFamily(Metric):
    """A gauge family kept as rows of label values and a number.

    Fifty thousand ``Sample`` tuples, each with its own label dictionary, cost more to
    build and to write than the text they become. ``samples`` is still made on demand,
    for prometheus_client's encoders and for anyone reading the family.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, documentation, "gauge")
        self.labelnames = tuple(labelnames)
        self._rows: list[Row] = []

    @property
    def rows(self) -> list[Row]:
        return self._rows

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {labels!r}")
        self._rows.append((tuple(labels), value))

    @property
    def samples(self) -> list[Sample]:
        names = self.labelnames
        return [Sample(self.name, dict(zip(names, v, strict=True)), x) for v, x in self.rows]

    @samples.setter
    def samples(self, samples: list[Sample]) -> None:
        if samples:  # Metric.__init__ sets an empty list
            raise TypeError(f"add the samples of a {type(self).__name__} with add_metric")


class StateFamily(GaugeFamily):
    """One series per state, the last label naming it: 1 for the current state, 0 for the rest.

    Kept as each label set's current state: an entity's block of state lines (four
    statuses, fifteen reasons) is the same from one scrape to the next, so it is written
    once and then carried whole (see ``Carried``).
    """

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], states: Sequence[str]
    ) -> None:
        super().__init__(name, documentation, labelnames)
        self.states = tuple(states)
        self.currents: list[tuple[tuple[str, ...], str | None]] = []

    @property
    def rows(self) -> list[Row]:
        return [row for labels, current in self.currents for row in self.block(labels, current)]

    def block(self, labels: tuple[str, ...], current: str | None) -> list[Row]:
        return [((*labels, state), 1.0 if state == current else 0.0) for state in self.states]

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        raise TypeError("a StateFamily takes add_state, with the current state")

    def add_state(self, labels: Sequence[str], current: str | None) -> None:
        """``current`` is one of the states, or None for none of them."""
        if len(labels) + 1 != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames[:-1]}, got {labels!r}")
        self.currents.append((tuple(labels), current))


class _Families(Collector):
    """Already collected families, to hand a single one to prometheus_client's encoder."""

    def __init__(self, metrics: Sequence[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


# The sample name's suffix of each plain family type, as both formats write it.
_SUFFIXES = {"gauge": "", "info": "_info", "counter": "_total"}


def _sample_name(metric: Metric) -> str:
    return metric.name + _SUFFIXES[metric.type]


def _plain_family(metric: Metric) -> bool:
    """A gauge, info or counter family, without unit, with a legacy name (samples are checked
    apart: a counter's ``_created`` sends the family to prometheus_client)."""
    return (
        metric.type in _SUFFIXES and not metric.unit and _METRIC_NAME.match(metric.name) is not None
    )


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


LabelTexts = dict[tuple[str, ...], dict[tuple[str, ...], str]]


# family name -> (label values, current state) -> the lines of that block
Blocks = dict[str, dict[tuple[tuple[str, ...], str | None], str]]


class Carried:
    """The label sets and state blocks written at the last scrape, ready for the next one.

    An entity's sections and filesystems make the same label sets at every scrape, and
    its statuses and reasons the same lines: escaping and joining them again was most of
    the exposition's CPU. Only the last scrape's are kept, so an entity that leaves is
    forgotten at the next.
    """

    def __init__(self) -> None:
        self.label_texts: LabelTexts = {}
        self.blocks: Blocks = {}


class _Memo:
    """Label pairs and numbers already written in this exposition: most come back many times.

    An entity's ``entity="..."`` pair is in every one of its fifty samples, and most
    values are 0 or 1.
    """

    def __init__(self, carried: Carried) -> None:
        self.pairs: dict[tuple[str, str], str] = {}
        self.numbers: dict[float, str] = {}
        # label names -> label values -> '{name="value",...}', for GaugeFamily rows
        self.label_texts: LabelTexts = {}
        self.blocks: Blocks = {}
        self.carried = carried

    def pair(self, name: str, value: str) -> str:
        text = self.pairs.get((name, value))
        if text is None:
            text = self.pairs[name, value] = f'{name}="{_escape_value(value)}"'
        return text

    def number(self, value: float) -> str:
        if value == 0:  # 0.0 and -0.0 are one dictionary key but two texts
            return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
        text = self.numbers.get(value)
        if text is None:
            text = _go_float(value)
            if value == value:  # NaN is never found again
                self.numbers[value] = text
        return text


@functools.lru_cache(maxsize=256)  # the same few dozen families at every scrape
def _header(name: str, kind: str, documentation: str, om: bool) -> str:
    """The HELP and TYPE lines of a plain family."""
    if om:
        doc = _escape_value(documentation)
    else:  # the text format names the family as its samples, and has no info type
        name += _SUFFIXES[kind]
        kind = "counter" if kind == "counter" else "gauge"
        doc = documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"


def _family(metric: Metric, om: bool, memo: _Memo) -> str | None:
    """HELP, TYPE and sample lines of a plain family; ``None`` if a sample is not plain."""
    lines = [_header(metric.name, metric.type, metric.documentation, om)]
    sample_name = _sample_name(metric)
    if isinstance(metric, StateFamily):
        return _states(metric, lines, memo)
    if isinstance(metric, GaugeFamily):
        return _rows(metric, metric.rows, lines, memo)
    pairs = memo.pairs
    for s in metric.samples:
        if s.name != sample_name or s.timestamp is not None or s.exemplar or s.native_histogram:
            return None
        if s.labels:
            texts = []
            for item in sorted(s.labels.items()):
                if item not in pairs and not _LABEL_NAME.match(item[0]):
                    return None
                texts.append(memo.pair(*item))
            lines.append(f"{sample_name}{{{','.join(texts)}}} {memo.number(s.value)}\n")
        else:
            lines.append(f"{sample_name} {memo.number(s.value)}\n")
    return "".join(lines)


@functools.lru_cache(maxsize=256)
def _label_order(names: tuple[str, ...]) -> tuple[int, ...] | None:
    """The positions of the label names in written (sorted) order; None if one is not legacy."""
    if not all(_LABEL_NAME.match(n) for n in names):
        return None
    return tuple(sorted(range(len(names)), key=names.__getitem__))


def _rows(
    metric: GaugeFamily, rows: list[Row], lines: list[str], memo: _Memo, carry: bool = True
) -> str | None:
    """Sample lines of a ``GaugeFamily``, each set of label values escaped once; None if a
    label name is not legacy. ``carry=False`` keeps the label sets for this call only."""
    names = metric.labelnames
    order = _label_order(names)
    if order is None:
        return None
    texts: dict[tuple[str, ...], str] = {}
    carried: dict[tuple[str, ...], str] = {}
    if carry:
        texts = memo.label_texts.setdefault(names, {})
        carried = memo.carried.label_texts.get(names, {})
    name, number, pair, numbers = metric.name, memo.number, memo.pair, memo.numbers
    for values, value in rows:
        text = texts.get(values)
        if text is None:
            text = carried.get(values)
            if text is None:
                pairs = ",".join([pair(names[i], values[i]) for i in order])
                text = f"{{{pairs}}}" if names else ""
            texts[values] = text
        # Zeros are never in ``numbers``: 0.0 and -0.0 are one key but two texts.
        lines.append(f"{name}{text} {numbers.get(value) or number(value)}\n")
    return "".join(lines)


def _states(metric: StateFamily, lines: list[str], memo: _Memo) -> str | None:
    """The lines of a ``StateFamily``, a block per label set, carried from scrape to scrape."""
    if _label_order(metric.labelnames) is None:
        return None
    blocks = memo.blocks.setdefault(metric.name, {})
    carried = memo.carried.blocks.get(metric.name, {})
    for key in metric.currents:
        block = blocks.get(key)
        if block is None:
            block = carried.get(key)
            if block is None:
                # Its label sets are not carried too: the block is (19,000 at 1,000 entities).
                block = cast(str, _rows(metric, metric.block(*key), [], memo, carry=False))
            blocks[key] = block
        lines.append(block)
    return "".join(lines)


# /metrics is written in chunks of about this size: the text of a thousand entities is
# never whole in memory, nor copied twice to join and encode it.
CHUNK_BYTES = 64 * 1024


def encode(
    collectors: Sequence[Collector], accept: str, carried: Carried | None = None
) -> tuple[bytes, str]:
    """The body and content type for this ``Accept`` header, as prometheus_client would give.

    ``carried`` holds what the last call with it wrote, for a series of scrapes of the
    same entities (``/metrics``); it then holds this call's.
    """
    chunks, content_type = encode_chunks(collectors, accept, carried)
    return b"".join(chunks), content_type


def encode_chunks(
    collectors: Sequence[Collector],
    accept: str,
    carried: Carried | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> tuple[Iterator[bytes], str]:
    """``encode``'s body as chunks of whole families, each of ``chunk_bytes`` or more but
    the last, made as they are read; ``carried`` is updated once the last one is made."""
    encoder, content_type = exposition.choose_encoder(accept)
    function = encoder.func if isinstance(encoder, partial) else encoder
    keywords = encoder.keywords if isinstance(encoder, partial) else {}
    known = function in (exposition.generate_latest, openmetrics.generate_latest)
    if not known or keywords.get("escaping", openmetrics.UNDERSCORES) not in _IDENTITY_ESCAPINGS:
        return iter(
            [encoder(_Families([m for c in collectors for m in c.collect()]))]
        ), content_type
    om = function is openmetrics.generate_latest
    return _chunks(collectors, encoder, om, carried, chunk_bytes), content_type


def _chunks(
    collectors: Sequence[Collector],
    encoder: Callable[[Collector], bytes],
    om: bool,
    carried: Carried | None,
    chunk_bytes: int,
) -> Iterator[bytes]:
    parts: list[str] = []
    size = 0
    memo = _Memo(carried if carried is not None else Carried())
    for collector in collectors:
        for metric in collector.collect():
            text = _family(metric, om, memo) if _plain_family(metric) else None
            if text is None:
                text = encoder(_Families([metric])).decode("utf-8")
                text = text.removesuffix(_EOF) if om else text
            parts.append(text)
            size += len(text)
            if size >= chunk_bytes:
                yield "".join(parts).encode("utf-8")
                parts.clear()
                size = 0
    if om:
        parts.append(_EOF)
    if carried is not None:
        carried.label_texts, carried.blocks = memo.label_texts, memo.blocks
    if parts:
        yield "".join(parts).encode("utf-8")
