#!/usr/bin/env python3
"""Soak: thousands of scrapes of the real CLI against failing servers, FDs and RSS flat.

The exporter runs as a subprocess, measured from the outside through /proc (open
file descriptors, resident memory) at quiet moments between rounds of scrapes. The
simulated servers fail in every way that is quick to fail, and two stall until the
probe's timeout. Exit status 1 when the descriptors or the memory grew after warm-up.

    python benchmarks/soak.py --scrapes 10000 --output soak.json

``tests/test_load.py`` holds the short version run by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from medulla_imaging_exporter.simulator import LocalCA  # noqa: E402
from tests.helpers import (  # noqa: E402
    FAILING,
    cli_process,
    open_fds,
    rss_bytes,
    simulators,
    write_config,
)

MIB = 2**20


async def rounds(
    base: str, pid: int, scrapes: int, concurrency: int, samples: int
) -> list[dict[str, float]]:
    """Scrape in waves of ``concurrency``; after each of ``samples`` rounds, let the
    connections close, then read the exporter's descriptors and memory."""
    # No keep-alive towards the exporter: between rounds only its own sockets remain.
    limits = httpx.Limits(max_keepalive_connections=0)
    table: list[dict[str, float]] = []
    done = 0
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        for index in range(samples):
            target = scrapes * (index + 1) // samples
            while done < target:
                wave = min(concurrency, target - done)
                responses = await asyncio.gather(*(http.get("/metrics") for _ in range(wave)))
                bad = [r.status_code for r in responses if r.status_code != 200]
                if bad:
                    raise SystemExit(f"scrape failed with HTTP {bad[0]} after {done} scrapes")
                done += wave
            await asyncio.sleep(0.3)
            table.append({"scrapes": done, "open_fds": open_fds(pid), "rss_bytes": rss_bytes(pid)})
            print(
                f"{done:>7} scrapes  {table[-1]['open_fds']:>4} fds  "
                f"{table[-1]['rss_bytes'] / MIB:7.1f} MiB",
                flush=True,
            )
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--samples", type=int, default=10, help="measurements, the first one after warm-up"
    )
    parser.add_argument("--max-rss-growth-mib", type=float, default=10.0)
    parser.add_argument("--max-fd-spread", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("soak-result.json"))
    args = parser.parse_args()

    started = time.monotonic()
    ca = LocalCA()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, simulators(ca, *FAILING) as servers:
        tmp_path = Path(tmp)
        ca_file = ca.write_ca(tmp_path / "ca.pem")
        entities = [{"name": f"{s.behaviour}", "url": s.url} for s in servers]
        config = write_config(
            tmp_path / "config.yml", entities, timeout="100ms", tls_config={"ca_file": str(ca_file)}
        )
        with cli_process(tmp_path, "--config.file", config) as (proc, base):
            table = asyncio.run(
                rounds(base, proc.pid, args.scrapes, args.concurrency, args.samples)
            )
    warm, last = table[0], table[-1]
    # Descriptors must not even wander: a socket left to the garbage collector shows as spread.
    fds = [row["open_fds"] for row in table]
    fd_growth = int(max(fds) - min(fds))
    rss_growth = (last["rss_bytes"] - warm["rss_bytes"]) / MIB
    result = {
        "scrapes": args.scrapes,
        "entities": len(FAILING),
        "seconds": round(time.monotonic() - started, 1),
        "fd_spread_after_warm_up": fd_growth,
        "rss_growth_after_warm_up_mib": round(rss_growth, 2),
        "samples": table,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{args.scrapes} scrapes in {result['seconds']} s: "
        f"fds within {fd_growth}, {rss_growth:+.1f} MiB after warm-up ({args.output})"
    )
    if fd_growth > args.max_fd_spread or rss_growth > args.max_rss_growth_mib:
        print("soak: descriptors or memory grew", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
