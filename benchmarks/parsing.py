#!/usr/bin/env python3
"""Wall time of parsing one imaging-server reply: ``parse_body`` on the Public fixture.

Median microseconds per call over many batches, for ``parse_body`` and its two halves
(``decode_response``, the XML-RPC; ``parse_reply``, the commands' outputs). CPU time on
a shared machine moves by a quarter from run to run: for a figure load cannot move,
count instructions with ``benchmarks/instructions.py parse decode sections`` (the same
reply: the simulator's is the fixture byte for byte). Prints the table and writes it to
``benchmarks/results/parsing.txt``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path

from medulla_imaging_exporter.parsing import decode_response, parse_body, parse_reply

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "parsing.txt"
FIXTURE = HERE.parent / "tests" / "fixtures" / "replies" / "public-procps-ng.xml"


def median_microseconds(call: Callable[[], object], batches: int, size: int) -> float:
    times = timeit.repeat(call, number=size, repeat=batches)
    return statistics.median(times) / size * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=31, help="timed batches (median)")
    parser.add_argument("--size", type=int, default=1000, help="calls per timed batch")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"table file ({RESULTS})")
    args = parser.parse_args(argv)
    body = FIXTURE.read_bytes()
    value = decode_response(body)
    calls: dict[str, Callable[[], object]] = {
        "parse_body": lambda: parse_body(body),
        "decode_response": lambda: decode_response(body),
        "parse_reply": lambda: parse_reply(value),
    }
    lines = [
        f"{FIXTURE.name} ({len(body)} bytes), Python {platform.python_version()},"
        f" {platform.machine()}",
        f"{'function':<16} {'median µs':>10}",
    ]
    for name, call in calls.items():
        lines.append(f"{name:<16} {median_microseconds(call, args.batches, args.size):>10.1f}")
    table = "\n".join(lines) + "\n"
    print(table, end="")
    args.output.parent.mkdir(exist_ok=True)
    args.output.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
