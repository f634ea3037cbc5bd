#!/usr/bin/env python3
"""CPU cost of parsing one imaging-server reply: ``parse_body`` on the Public fixture.

Two figures, since CPU time on a shared machine varies by a quarter from run to run:
the median wall time per call over many batches, and (``--instructions``, needs
valgrind) the instructions per call counted by cachegrind, repeatable to well under
1 %: the difference between two runs of K1 and K2 calls, divided by K2 - K1, so
that Python's start-up cancels out. Prints the table and writes it to
``benchmarks/results/parsing.txt``.
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import statistics
import subprocess
import sys
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path

from medulla_imaging_exporter.parsing import decode_response, parse_body, parse_reply

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "parsing.txt"
FIXTURE = HERE.parent / "tests" / "fixtures" / "replies" / "public-procps-ng.xml"
BODY = FIXTURE.read_bytes()
VALUE = decode_response(BODY)
# What is measured, as a Python statement (for cachegrind) and as a callable (for timeit).
STATEMENTS: dict[str, tuple[str, Callable[[], object]]] = {
    "parse_body": ("parse_body(BODY)", lambda: parse_body(BODY)),
    "decode_response": ("decode_response(BODY)", lambda: decode_response(BODY)),
    "parse_reply": ("parse_reply(VALUE)", lambda: parse_reply(VALUE)),
}


def median_microseconds(call: Callable[[], object], batches: int, size: int) -> float:
    times = timeit.repeat(call, number=size, repeat=batches)
    return statistics.median(times) / size * 1e6


def instructions(statement: str, calls: int) -> int:
    """Instructions cachegrind counts for a Python process making ``calls`` calls."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from parsing import BODY, VALUE, decode_response, parse_body, parse_reply\n"
        f"for _ in range({calls}):\n    {statement}\n"
    )
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no"]
    command += ["--cachegrind-out-file=/dev/null", sys.executable, "-c", code, str(HERE)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output: {done.stderr[-500:]}")
    return int(found[1].replace(",", ""))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=31, help="timed batches (median)")
    parser.add_argument("--size", type=int, default=1000, help="calls per timed batch")
    parser.add_argument(
        "--instructions", action="store_true", help="also count instructions with cachegrind"
    )
    parser.add_argument("--k1", type=int, default=200, help="calls in the first cachegrind run")
    parser.add_argument("--k2", type=int, default=1200, help="calls in the second one")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the table")
    args = parser.parse_args(argv)
    if args.instructions and shutil.which("valgrind") is None:
        parser.error("--instructions needs valgrind (apt-get install valgrind)")
    lines = [
        f"parse_body on {FIXTURE.name} ({len(BODY)} bytes), Python {platform.python_version()},"
        f" {platform.machine()}",
        f"{'function':<16} {'median µs':>10} {'instructions':>13}",
    ]
    for name, (statement, call) in STATEMENTS.items():
        micros = median_microseconds(call, args.batches, args.size)
        counted = "-"
        if args.instructions:
            per_call = (instructions(statement, args.k2) - instructions(statement, args.k1)) / (
                args.k2 - args.k1
            )
            counted = f"{per_call:,.0f}"
        lines.append(f"{name:<16} {micros:>10.1f} {counted:>13}")
    table = "\n".join(lines) + "\n"
    print(table, end="")
    args.output.parent.mkdir(exist_ok=True)
    args.output.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
