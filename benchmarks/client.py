#!/usr/bin/env python3
"""CPU time of the transport alone: ``ImagingClient.call`` against one simulated server.

The simulated server runs in a child process, so each side's CPU time is its own
process's: what one probe costs the exporter in the HTTP client, TLS included, before
parsing, and what it costs the server. Prints medians over batches of CPU milliseconds
per request; ``--profile FILE`` writes a cProfile (CPU time) of the client instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path

from medulla_imaging_exporter.config import Entity, TLSConfig
from medulla_imaging_exporter.simulator import LocalCA, SimulatedServer
from medulla_imaging_exporter.transport import ImagingClient, WireEvents


def serve(directory: str, pipe: Connection) -> None:
    """Child process: a simulated TLS server; answers each message with its CPU time."""

    async def main() -> None:
        ca = LocalCA()
        server = await SimulatedServer(ca=ca).start()
        pipe.send((server.url, str(ca.write_ca(Path(directory) / "ca.pem"))))
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, pipe.recv):
            pipe.send(time.process_time())
        await server.close()

    asyncio.run(main())


async def batches(
    entity: Entity, pipe: Connection, count: int, size: int, profile: Path | None
) -> list[tuple[float, float]]:
    """(client, server) CPU seconds per request, one pair per batch."""
    client = ImagingClient(entity)
    try:
        exchange = await client.call(5.0, WireEvents())  # connects; not measured
        if exchange.status_code != 200:
            raise RuntimeError(f"the simulated server answered {exchange!r}")
        profiler = cProfile.Profile(time.process_time) if profile else None
        results: list[tuple[float, float]] = []
        for _ in range(count):
            pipe.send(True)
            server_start = pipe.recv()
            if profiler:
                profiler.enable()
            start = time.process_time()
            for _ in range(size):
                await client.call(5.0, WireEvents())
            client_cpu = time.process_time() - start
            if profiler:
                profiler.disable()
            pipe.send(True)
            results.append((client_cpu / size, (pipe.recv() - server_start) / size))
        if profiler and profile:
            profiler.dump_stats(profile)
        return results
    finally:
        await client.aclose()


@contextlib.contextmanager
def simulated_server() -> Iterator[tuple[Entity, Connection]]:
    """An entity for a simulated server in a child process, and the pipe that drives it."""
    with tempfile.TemporaryDirectory() as tmp:
        pipe, child_end = multiprocessing.Pipe()
        child = multiprocessing.get_context("spawn").Process(target=serve, args=(tmp, child_end))
        child.start()
        try:
            url, ca_file = pipe.recv()
            yield Entity("Bench", url=url, tls=TLSConfig(ca_file=Path(ca_file))), pipe
        finally:
            pipe.send(False)
            child.join(10)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--requests", type=int, default=300, help="requests per batch")
    parser.add_argument("--profile", type=Path, help="cProfile the client into this file")
    args = parser.parse_args(argv)
    with simulated_server() as (entity, pipe):
        results = asyncio.run(batches(entity, pipe, args.batches, args.requests, args.profile))
    client = statistics.median(c for c, _ in results) * 1000
    server = statistics.median(s for _, s in results) * 1000
    print(
        f"CPU per request (median of {args.batches} batches of {args.requests}): "
        f"client {client:.3f} ms, simulated server {server:.3f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
