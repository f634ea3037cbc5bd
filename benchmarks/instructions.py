#!/usr/bin/env python3
"""Instructions per operation, counted by valgrind: a figure that machine load cannot move.

CPU time on a shared virtual machine moves by a quarter from one run to the next, which
hides a 5 % saving; hardware counters are not available there. Valgrind's cachegrind
counts the user-space instructions the process executes (system calls count as one,
so this leaves out the kernel's share, small here). Each operation runs K1 and then K2
times in a fresh interpreter under valgrind; the difference divided by K2 - K1 leaves
out start-up and imports. Operations:

- ``request``: ``ImagingClient.call`` on a kept-alive TLS connection to a simulated
  server (in a child process, not counted);
- ``parse``: ``parse_body`` of the simulator's reply (the Public fixture, byte for byte),
  and its two halves: ``decode`` (``decode_response``, the XML-RPC) and ``sections``
  (``parse_reply``, the commands' outputs);
- ``encode``: the exposition (OpenMetrics) of one entity, in a scrape of 1,000 that follows
  another, as on ``/metrics``;
- ``scrape``: all of it, per probe: ``Prober.probe_all`` of 100 entities on kept-alive
  connections to one simulated server, then their exposition, with the cyclic collector
  paused as ``/metrics`` does (the HTTP server that answers ``/metrics`` left out);
  ``SCRAPE_ENTITIES=10`` in the environment makes it 10 entities;

Needs Debian's ``valgrind``. Prints a table and writes it to
``benchmarks/results/instructions.txt``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "instructions.txt"
ENTITIES = 1000
# (K1, K2) per operation: enough repetitions for the difference to dwarf the noise.
COUNTS = {
    "request": (20, 420),
    "parse": (100, 1100),
    "decode": (100, 1100),
    "sections": (100, 1100),
    "encode": (1, 4),
    "scrape": (2, 12),
}
SCRAPE_ENTITIES = int(os.environ.get("SCRAPE_ENTITIES", "100"))
PER = {
    "request": 1,
    "parse": 1,
    "decode": 1,
    "sections": 1,
    "encode": ENTITIES,
    "scrape": SCRAPE_ENTITIES,
}
OPENMETRICS = "application/openmetrics-text"


def _requests(count: int) -> None:
    sys.path.insert(0, str(HERE))
    from client import simulated_server  # the same server as benchmarks/client.py

    from medulla_imaging_exporter.config import Entity
    from medulla_imaging_exporter.transport import ImagingClient, WireEvents

    async def run(entity: Entity) -> None:
        client = ImagingClient(entity)
        try:
            for _ in range(count):
                exchange = await client.call(5.0, WireEvents())
                if exchange.status_code != 200:
                    raise RuntimeError(f"the simulated server answered {exchange!r}")
        finally:
            await client.aclose()

    with simulated_server() as (entity, _):
        asyncio.run(run(entity))


def _parsing(step: str) -> Callable[[int], None]:
    """``count`` calls of one step of parsing the simulator's reply."""

    def run(count: int) -> None:
        from medulla_imaging_exporter.parsing import decode_response, parse_body, parse_reply
        from medulla_imaging_exporter.simulator import ServerData

        body = ServerData().body()
        value = decode_response(body)
        calls: dict[str, Callable[[], object]] = {
            "parse": lambda: parse_body(body),
            "decode": lambda: decode_response(body),
            "sections": lambda: parse_reply(value),
        }
        call = calls[step]
        for _ in range(count):
            call()

    return run


def _encode(count: int) -> None:
    from medulla_imaging_exporter.collector import ScrapeCollector
    from medulla_imaging_exporter.config import Entity
    from medulla_imaging_exporter.exposition import Carried, encode
    from medulla_imaging_exporter.model import EntityStatus, Status
    from medulla_imaging_exporter.parsing import parse_body
    from medulla_imaging_exporter.simulator import ServerData

    entities = [
        Entity(f"entity-{i:04d}", uuid=f"UUID{i}", url=f"https://127.0.0.1:{10000 + i}/imaging_api")
        for i in range(ENTITIES)
    ]
    now = time.time()
    statuses = [
        EntityStatus(
            e.name,
            Status.AVAILABLE,
            None,
            "",
            now,
            0.001 * i,
            parse_body(ServerData().body()),
            1.8e9,
            2.0,
        )
        for i, e in enumerate(entities)
    ]
    carried = Carried()  # as /metrics does, from one scrape to the next
    for _ in range(count):
        encode([ScrapeCollector(entities, statuses)], OPENMETRICS, carried)


def _scrapes(count: int) -> None:
    sys.path.insert(0, str(HERE))
    from client import simulated_server

    from medulla_imaging_exporter import gcpolicy
    from medulla_imaging_exporter.collector import ScrapeCollector
    from medulla_imaging_exporter.config import Entity
    from medulla_imaging_exporter.exposition import Carried, encode
    from medulla_imaging_exporter.prober import Prober

    async def run(entities: list[Entity]) -> None:
        prober, carried = Prober(), Carried()
        prober.configure(entities)
        try:
            for _ in range(count + 1):  # the first one connects, whatever the count
                with gcpolicy.paused_during_scrape():
                    statuses = await prober.probe_all(entities)
                    encode([ScrapeCollector(entities, statuses)], OPENMETRICS, carried)
                if any(s.reason is not None for s in statuses):
                    raise RuntimeError(f"a probe failed: {statuses!r}")
        finally:
            await prober.aclose()

    gcpolicy.tune()
    with simulated_server() as (entity, _):
        entities = [replace(entity, name=f"entity-{i:03d}") for i in range(SCRAPE_ENTITIES)]
        asyncio.run(run(entities))


OPERATIONS: dict[str, Callable[[int], None]] = {
    "request": _requests,
    "parse": _parsing("parse"),
    "decode": _parsing("decode"),
    "sections": _parsing("sections"),
    "encode": _encode,
    "scrape": _scrapes,
}


def under_cachegrind(command: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``command`` run by cachegrind counting instructions only, and its environment: a fixed
    hash seed, so that dictionaries and sets lay out the same way at every run."""
    valgrind = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
    ]
    return [*valgrind, *command], {**os.environ, "PYTHONHASHSEED": "0"}


def instruction_count(stderr: str) -> int:
    """The user-space instructions that valgrind reported on its standard error."""
    found = re.search(r"I\s+refs:\s+([\d,]+)", stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def write_table(lines: Sequence[str], output: Path) -> None:
    output.parent.mkdir(exist_ok=True)
    output.write_text("\n".join(lines) + "\n")
    print(f"written to {output}")


def instructions(operation: str, count: int) -> int:
    """User-space instructions of a fresh interpreter running ``operation`` ``count`` times."""
    command, env = under_cachegrind([sys.executable, __file__, "--inner", operation, str(count)])
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return instruction_count(done.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("operations", nargs="*", help=f"among {', '.join(OPERATIONS)} (all)")
    parser.add_argument(
        "--counts", nargs=2, type=int, metavar=("K1", "K2"), help="repetitions, for every operation"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"table file ({RESULTS})")
    parser.add_argument("--inner", nargs=2, metavar=("OPERATION", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inner:
        OPERATIONS[args.inner[0]](int(args.inner[1]))
        return 0
    unknown = set(args.operations) - set(OPERATIONS)
    if unknown:
        parser.error(f"unknown operations: {', '.join(sorted(unknown))}")
    lines = ["| operation | instructions per operation |", "|---|---:|"]
    for operation in args.operations or OPERATIONS:
        low, high = args.counts or COUNTS[operation]
        per = (instructions(operation, high) - instructions(operation, low)) / (high - low)
        lines.append(f"| {operation} | {per / PER[operation]:,.0f} |")
        print(lines[-1], flush=True)
    write_table(lines, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
