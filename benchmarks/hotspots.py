#!/usr/bin/env python3
"""Where a scrape's CPU goes: the real CLI, sampled by py-spy while it is scraped.

``instructions.py`` and ``cli_instructions.py`` say how much a scrape costs; this says
where. py-spy samples the CLI from outside its process, so cheap calls are not inflated as
a tracing profiler (cProfile) inflates them. The CLI serves ``bench.py``'s farm of N
simulated servers and is scraped K times as Prometheus scrapes (its ``Accept`` header);
only the samples taken while its event loop runs count, not start-up. Prints the files,
then the functions, with the most samples of their own, and the exporter's functions with
the most samples in all (their callees included), and writes the table and the sampled
stacks (collapsed format, for speedscope or flamegraph.pl) under ``benchmarks/results/``.

The sampler is not invisible. py-spy stops the process for each sample (unless
``--nonblocking``), which more than doubled the CLI's CPU time at 100 samples a second, and
reads its memory, which contends in the kernel with what the process reads of itself:
prometheus_client's process collector (three reads of ``/proc/self``, about 2 % of a
scrape of ten timed alone) took 3.1 % of the samples at 100 a second, 8.6 % at 500 and
8.7 % with ``--nonblocking``. Read the shares as where to look, and confirm a finding with
the instruction counts or a timing of the piece alone.

    python benchmarks/hotspots.py                         # N = 10, 4,000 scrapes, ~30 s
    python benchmarks/hotspots.py --entities 1000 --scrapes 40

Needs py-spy (a test dependency) and the right to trace the process it starts.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import httpx
from bench import HERE, PROMETHEUS_ACCEPT, Farm, exporter_config  # puts the repository on the path
from instructions import write_table

from tests.processes import exporter_command, free_port, stop, wait_http

RESULTS = HERE / "results" / "hotspots.txt"
STACKS = HERE / "results" / "hotspots.collapsed"
# A frame of the event loop: samples without it are start-up or shutdown.
SERVING = "_run_once ("
EXPORTER = "(medulla_imaging_exporter/"


def py_spy() -> str:
    """py-spy beside this interpreter (a virtual environment's), else on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy not found: pip install py-spy")
    return found


def child_pid(pid: int) -> int:
    """The one process that ``pid`` started (Linux)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    if len(children) != 1:
        raise RuntimeError(f"expected one child of py-spy, found {children}")
    return int(children[0])


def record(entities: int, scrapes: int, sampler: Sequence[str], stacks: Path, work: Path) -> None:
    """Samples of the CLI serving ``scrapes`` scrapes of ``entities`` entities, into ``stacks``;
    ``sampler`` is py-spy's command line up to its output."""
    farm = Farm(entities, work)
    try:
        config = exporter_config(farm, work / "exporter.yml")
        port = free_port()
        cli = exporter_command(port, "--config.file", config, "--log.level", "warn")
        command = [*sampler, "--output", str(stacks), "--", *cli]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/-/ready", timeout=60, process=proc)
            with httpx.Client(timeout=60, headers={"Accept": PROMETHEUS_ACCEPT}) as client:
                for _ in range(scrapes):
                    client.get(f"{base}/metrics").raise_for_status()
            # Stopping the CLI ends the recording: py-spy writes its file when its child exits.
            os.kill(child_pid(proc.pid), signal.SIGTERM)
            if proc.wait(timeout=60) != 0:
                raise RuntimeError(f"py-spy exited with {proc.returncode}")
        finally:
            stop(proc)
    finally:
        farm.close()


def where(frame: str) -> str:
    """A frame's file, as py-spy names it: its path below the import path it came from
    ('medulla_imaging_exporter/parsing.py', 'asyncio/base_events.py')."""
    return frame.rpartition(" (")[2].rpartition(":")[0]


def tally(lines: Iterable[str]) -> tuple[int, dict[str, collections.Counter[str]]]:
    """Samples while serving, and their counts by file and by function, self and in all."""
    counts: dict[str, collections.Counter[str]] = {
        "file": collections.Counter(),
        "function": collections.Counter(),
        "exporter's function, callees included": collections.Counter(),
    }
    total = 0
    for line in lines:
        stack, _, number = line.rpartition(" ")
        frames = stack.split(";")
        if not number.isdigit() or not any(SERVING in f for f in frames):
            continue
        samples = int(number)
        total += samples
        counts["file"][where(frames[-1])] += samples
        counts["function"][frames[-1]] += samples
        for name in {f for f in frames if EXPORTER in f}:
            counts["exporter's function, callees included"][name] += samples
    return total, counts


def table(total: int, counts: dict[str, collections.Counter[str]], top: int) -> list[str]:
    lines = [f"{total:,} samples while serving.", ""]
    for kind, counter in counts.items():
        lines += ["", f"| share | samples | {kind} |", "|---:|---:|---|"]
        lines += [
            f"| {100 * n / total:.1f} % | {n:,} | `{name}` |"
            for name, n in counter.most_common(top)
        ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entities", type=int, default=10, help="simulated servers (10)")
    parser.add_argument("--scrapes", type=int, default=4000, help="scrapes of /metrics (4000)")
    parser.add_argument("--rate", type=int, default=100, help="samples per second (100)")
    parser.add_argument("--top", type=int, default=25, help="rows per table (25)")
    parser.add_argument(
        "--nonblocking", action="store_true", help="py-spy's: sample without stopping the CLI"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"table file ({RESULTS})")
    parser.add_argument("--stacks", type=Path, default=STACKS, help=f"stacks file ({STACKS})")
    args = parser.parse_args(argv)
    if args.entities < 1 or args.scrapes < 1:
        parser.error("--entities and --scrapes must be 1 or more")
    args.stacks.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sampler = [py_spy(), "record", "--rate", str(args.rate), "--format", "raw", "--function"]
        if args.nonblocking:
            sampler.append("--nonblocking")
        record(args.entities, args.scrapes, sampler, args.stacks, Path(tmp))
    total, counts = tally(args.stacks.read_text().splitlines())
    if not total:
        raise SystemExit(f"no sample taken while serving: see {args.stacks}")
    lines = table(total, counts, args.top)
    print("\n".join(lines))
    write_table(lines, args.output)
    print(f"stacks written to {args.stacks}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
