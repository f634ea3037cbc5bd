#!/usr/bin/env python3
"""Instructions of a whole ``/metrics`` scrape of the real CLI, counted by valgrind.

``instructions.py`` counts operations in process, without the HTTP server that answers
``/metrics``; this script counts everything the exporter does for a scrape. The CLI runs
under cachegrind against ``bench.py``'s farm of N simulated servers and is scraped as
Prometheus scrapes (its ``Accept`` header), K1 times in one run and K2 in another; the
difference divided by K2 - K1 leaves out start-up, the first scrape's TLS handshakes and
shutdown. From two sizes it splits a scrape into what it costs whatever N (the HTTP
exchange, the process's own families, every family's header...) and what each probe
adds; ``/-/healthy`` gives the HTTP exchange alone. This is what sets the CPU ratio at
small N (docs/performance.md).

    python benchmarks/cli_instructions.py            # sizes 1 and 10, about 2 min

Needs Debian's ``valgrind``. Prints a table and writes it to
``benchmarks/results/cli_instructions.txt``.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx
from bench import HERE, PROMETHEUS_ACCEPT, Farm, exporter_config  # puts the repository on the path
from instructions import instruction_count, under_cachegrind, write_table

from tests.processes import exporter_command, free_port, wait_http

RESULTS = HERE / "results" / "cli_instructions.txt"
# Under valgrind the CLI is some fifty times slower: starting it and stopping it take a while.
START_SECONDS = 120.0
STOP_SECONDS = 120.0


def run_instructions(farm: Farm, config: Path, path: str, scrapes: int, work: Path) -> int:
    """User-space instructions of one CLI run that answers ``path`` ``scrapes`` times."""
    port = free_port()
    log = work / f"valgrind-{port}.log"
    command, env = under_cachegrind(
        exporter_command(port, "--config.file", config, "--log.level", "warn")
    )
    with log.open("wb") as stderr:
        proc = subprocess.Popen(command, stderr=stderr, env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/-/ready", timeout=START_SECONDS, process=proc)
            with httpx.Client(timeout=60) as client:
                for _ in range(scrapes):
                    client.get(
                        base + path, headers={"Accept": PROMETHEUS_ACCEPT}
                    ).raise_for_status()
        finally:
            proc.terminate()
            proc.wait(timeout=STOP_SECONDS)
    return instruction_count(log.read_text())


def per_scrape(n: int, path: str, counts: tuple[int, int], work: Path) -> float:
    """Instructions per scrape of ``path`` with ``n`` entities."""
    farm = Farm(n, work)
    try:
        config = exporter_config(farm, work / f"exporter-{n}.yml")
        low, high = (run_instructions(farm, config, path, k, work) for k in counts)
    finally:
        farm.close()
    return (high - low) / (counts[1] - counts[0])


def _sizes(text: str) -> tuple[int, int]:
    try:
        sizes = sorted({int(n) for n in text.split(",")})
    except ValueError:
        sizes = []
    if len(sizes) != 2 or sizes[0] < 1:
        raise argparse.ArgumentTypeError("two different entity counts of 1 or more, as 1,10")
    return sizes[0], sizes[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes", type=_sizes, default=(1, 10), help="two entity counts (default 1,10)"
    )
    parser.add_argument(
        "--counts", nargs=2, type=int, default=(20, 120), metavar=("K1", "K2"), help="scrapes"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"table file ({RESULTS})")
    args = parser.parse_args(argv)
    small, big = args.sizes
    counts = (args.counts[0], args.counts[1])
    lines = ["| what | instructions |", "|---|---:|"]

    def row(name: str, value: float) -> None:
        lines.append(f"| {name} | {value:,.0f} |")
        print(lines[-1], flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        row("`/-/healthy`, the HTTP exchange alone", per_scrape(small, "/-/healthy", counts, work))
        at_small = per_scrape(small, "/metrics", counts, work)
        row(f"`/metrics`, N = {small}", at_small)
        at_big = per_scrape(big, "/metrics", counts, work)
        row(f"`/metrics`, N = {big}", at_big)
    probe = (at_big - at_small) / (big - small)
    row("each probe", probe)
    row("a scrape whatever the number of entities", at_small - small * probe)
    write_table(lines, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
