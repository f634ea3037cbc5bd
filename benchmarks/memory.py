#!/usr/bin/env python3
"""Where the exporter's memory goes with many entities: tracemalloc and RSS, in process.

``bench.py`` measures the real CLI's peak resident memory from the outside; this script
explains it. It starts ``bench.py``'s farm of simulated servers, loads the same
configuration into a ``Runtime`` in this process, probes every entity twice (the second
probe reuses the kept-alive connections, as a steady scrape does), then encodes one
``/metrics`` exposition, and prints per entity:

- the Python allocations still alive after the probes, grouped by file (tracemalloc);
- the resident memory they and the C libraries (OpenSSL) added;
- the tracemalloc peak while one exposition is encoded (the scrape's own transient).

    python benchmarks/memory.py --entities 1000 --top 15
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import tracemalloc
from pathlib import Path

from bench import Farm, exporter_config, raise_nofile

from medulla_imaging_exporter.collector import ExporterCollector, ScrapeCollector
from medulla_imaging_exporter.config import load_config
from medulla_imaging_exporter.exposition import encode_chunks
from medulla_imaging_exporter.runtime import Runtime

MB = 1e6
OPENMETRICS = "application/openmetrics-text;version=1.0.0"


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def grouped(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, key: str, top: int
) -> list[str]:
    stats = after.compare_to(before, key)
    return [
        f"  {s.size_diff / MB:8.2f} MB  {s.count_diff:+8d} blocks  {s.traceback[0]}"
        for s in stats[:top]
    ]


async def measure(entities: int, key: str, top: int, work: Path) -> None:
    farm = Farm(entities, work)
    try:
        config = load_config(str(exporter_config(farm, work / "exporter.yml")))
        runtime = Runtime(lambda: config)
        gc.collect()
        tracemalloc.start()
        rss0, base = rss_bytes(), tracemalloc.take_snapshot()
        statuses = await runtime.prober.probe_all(config.entities)
        gc.collect()
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        statuses = await runtime.prober.probe_all(config.entities)
        warm_peak = tracemalloc.get_traced_memory()[1] - start
        gc.collect()
        rss1, probed = rss_bytes(), tracemalloc.take_snapshot()
        up = sum(s.status.value == "available" for s in statuses)
        traced = sum(s.size for s in probed.statistics("filename")) - sum(
            s.size for s in base.statistics("filename")
        )
        print(f"{entities} entities, {up} available after two probes each")
        print(f"RSS added by the probes: {(rss1 - rss0) / MB:.1f} MB")
        print(
            f"Python allocations still alive: {traced / MB:.1f} MB, "
            f"{traced / entities / 1e3:.1f} kB per entity; by {key}:"
        )
        print("\n".join(grouped(base, probed, key, top)))
        print(f"tracemalloc peak during the second probe of all: {warm_peak / MB:.1f} MB above")
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        chunks, _ = encode_chunks(
            [
                ScrapeCollector(config.entities, statuses, None),
                ExporterCollector(runtime.reload_state, None),
            ],
            OPENMETRICS,
        )
        size = sum(len(chunk) for chunk in chunks)  # each chunk dropped once sent, as /metrics
        _, peak = tracemalloc.get_traced_memory()
        print(
            f"one exposition ({size / MB:.1f} MB of text, in chunks as /metrics writes it): "
            f"tracemalloc peak {(peak - start) / MB:.1f} MB above the probed state"
        )
        await runtime.aclose()
    finally:
        farm.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=1000)
    parser.add_argument("--top", type=int, default=15, help="lines listed (default 15)")
    parser.add_argument("--key", choices=["filename", "lineno"], default="filename")
    args = parser.parse_args()
    raise_nofile()
    with tempfile.TemporaryDirectory(prefix="medulla-memory-") as work:
        asyncio.run(measure(args.entities, args.key, args.top, Path(work)))


if __name__ == "__main__":
    main()
