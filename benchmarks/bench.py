#!/usr/bin/env python3
"""The exporter against blackbox_exporter, on the same simulated imaging servers.

Three kinds of process, each measured from the outside through /proc so that every
side is counted the same way (user + system CPU of all its threads, peak RSS):

- a *farm*: N simulated imaging servers (one TLS listener each) in one asyncio loop,
  driven over its stdin/stdout pipe (make some servers hang or answer late, count
  connections);
- the exporter, started as the real CLI with a generated configuration;
- Debian's ``prometheus-blackbox-exporter`` with an ``http`` module that POSTs the
  same ``imagingServerStatus`` call, probed one target at a time.

Run ``python benchmarks/bench.py --help``; the table goes to stdout and to
``benchmarks/results/latest.md``. CPU times are medians over batches, since the
machine may be shared; exporter and blackbox batches alternate, and their ratio is the
median over batch pairs, each pair run under the same load. Wall times are medians over
scrapes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from medulla_imaging_exporter.parsing import REQUEST_BODY
from medulla_imaging_exporter.simulator import Behaviour, LocalCA, SimulatedServer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository, for its process helpers
from tests.processes import exporter_command, free_port, process, stop, wait_http  # noqa: E402

RESULTS = HERE / "results" / "latest.md"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BLACKBOX = "prometheus-blackbox-exporter"
MODULE = "imaging"
# Prometheus sends its scrape timeout; the exporter subtracts its offset (0.5 s).
TIMEOUT_OFFSET = 0.5
# What Prometheus 2.42 asks for: OpenMetrics first.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


# --- measuring a process from the outside ---------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid``, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_bytes(pid: int) -> int:
    """VmHWM of ``pid``: the most resident memory it ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def raise_nofile() -> None:
    """Lift the soft limit on open files to the hard one: a farm holds 2 sockets per server."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the farm: many simulated imaging servers in one process ----------------------------


async def farm_main(count: int, directory: Path) -> None:
    """Serve ``count`` simulated servers; answer one JSON line per command on stdin.

    Commands: ``stall I J ...`` (those servers hang after reading the request; every
    other one answers), ``delay SECONDS`` (every server waits that long before each
    answer), ``stats`` (connections and requests served).
    """
    raise_nofile()
    ca = LocalCA()
    ca_file = ca.write_ca(directory / "farm-ca.pem")
    servers = [SimulatedServer(ca=ca) for _ in range(count)]
    for server in servers:
        await server.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(value: object) -> None:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    reply({"ca_file": str(ca_file), "urls": [s.url for s in servers]})
    while line := (await reader.readline()).decode():
        command, *args = line.split()
        if command == "stall":
            stalled = {int(a) for a in args}
            for index, server in enumerate(servers):
                server.behaviour = Behaviour.STALL_REPLY if index in stalled else Behaviour.OK
            reply({"stalled": len(stalled)})
        elif command == "delay":
            for server in servers:
                server.delay = float(args[0])
            reply({"delay": float(args[0])})
        elif command == "stats":
            reply(
                {
                    "connections": sum(s.connections for s in servers),
                    "requests": sum(s.requests for s in servers),
                }
            )
        else:
            reply({"error": f"unknown command {command!r}"})
    for server in servers:
        await server.close()


class Farm:
    """The parent's handle on a farm process."""

    def __init__(self, count: int, directory: Path) -> None:
        args = [sys.executable, __file__, "--farm", str(count), "--dir", str(directory)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        hello = self._read()
        self.ca_file = Path(hello["ca_file"])
        self.urls: list[str] = hello["urls"]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the farm exited with {self.proc.wait()}")
        value: dict[str, Any] = json.loads(line)
        return value

    def command(self, *words: object) -> dict[str, Any]:
        stdin: IO[bytes] | None = self.proc.stdin
        assert stdin is not None
        stdin.write((" ".join(map(str, words)) + "\n").encode())
        stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            stop(self.proc)


# --- the two exporters ------------------------------------------------------------------


def exporter_config(farm: Farm, path: Path) -> Path:
    """Every farm server as an entity, verifying the farm's certificate."""
    entities = [
        {"name": f"entity-{i:04d}", "uuid": f"UUID{i + 1}", "url": url}
        for i, url in enumerate(farm.urls)
    ]
    config = {"defaults": {"tls_config": {"ca_file": str(farm.ca_file)}}, "entities": entities}
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    return path


def blackbox_config(path: Path) -> Path:
    """An ``http`` module POSTing ``imagingServerStatus`` with TLS verification off."""
    module = {
        "prober": "http",
        "timeout": "5s",
        "http": {
            "method": "POST",
            "headers": {"Content-Type": "text/xml"},
            "body": REQUEST_BODY.decode(),
            "valid_status_codes": [200],
            "preferred_ip_protocol": "ip4",
            "tls_config": {"insecure_skip_verify": True},
        },
    }
    path.write_text(json.dumps({"modules": {MODULE: module}}, indent=1))
    return path


def blackbox_command(config: Path, port: int) -> list[str]:
    return [
        BLACKBOX,
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]


# --- measurements -----------------------------------------------------------------------


@dataclass
class Sample:
    """CPU per probe of the prober and of the farm, and the farm's new connections, over
    one batch of probes."""

    prober_cpu: float
    farm_cpu: float
    connections: int


def measure_batch(
    farm: Farm, prober_pid: int, calls: int, probes_per_call: int, call: Callable[[], None]
) -> Sample:
    """Run ``call`` ``calls`` times: CPU per probe of the prober and of the farm."""
    pids = (prober_pid, farm.pid)
    connections = farm.command("stats")["connections"]
    before = [cpu_seconds(p) for p in pids]
    for _ in range(calls):
        call()
    after = [cpu_seconds(p) for p in pids]
    probes = calls * probes_per_call
    prober_cpu, farm_cpu = ((a - b) / probes for a, b in zip(after, before, strict=True))
    return Sample(prober_cpu, farm_cpu, farm.command("stats")["connections"] - connections)


@dataclass
class Scrape:
    wall: float
    up: int
    down: int


def scrape(client: httpx.Client, url: str, scrape_timeout: float | None) -> Scrape:
    headers = {"Accept": PROMETHEUS_ACCEPT}
    if scrape_timeout is not None:
        headers["X-Prometheus-Scrape-Timeout-Seconds"] = str(scrape_timeout)
    t0 = time.perf_counter()
    response = client.get(url, headers=headers)
    wall = time.perf_counter() - t0
    response.raise_for_status()
    up = down = 0
    for line in response.text.splitlines():
        if line.startswith("medulla_imaging_server_up{"):
            if line.endswith(" 1.0"):
                up += 1
            else:
                down += 1
    return Scrape(wall, up, down)


@dataclass
class SizeResult:
    n: int
    probes: int
    wall_cold: float
    wall: list[float] = field(default_factory=list)
    exporter: list[Sample] = field(default_factory=list)
    hang_wall: list[float] = field(default_factory=list)
    hang_healthy_reported: bool = True
    peak_rss: int = 0
    blackbox: list[Sample] = field(default_factory=list)
    blackbox_failed: int = 0
    cold_connections: int = 0
    # server latency (s) -> /metrics wall times with every server answering that late
    latency_wall: dict[float, list[float]] = field(default_factory=dict)


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def medians(samples: Sequence[Sample]) -> tuple[float, float]:
    """Median CPU per probe of the prober and of the farm."""
    return med([s.prober_cpu for s in samples]), med([s.farm_cpu for s in samples])


def paired_ratios(result: SizeResult) -> tuple[float, float]:
    """Median over batch pairs of exporter / blackbox, for the prober and for the farm.

    Each exporter batch runs right before a blackbox batch, so both see the same load
    of the shared machine; the ratio of a pair moves far less than either figure.
    """
    pairs = list(zip(result.exporter, result.blackbox, strict=True))
    return (
        med([ratio(e.prober_cpu, b.prober_cpu) for e, b in pairs]),
        med([ratio(e.farm_cpu, b.farm_cpu) for e, b in pairs]),
    )


def run_size(
    n: int,
    args: argparse.Namespace,
    work: Path,
    blackbox: tuple[subprocess.Popen[bytes], int] | None,
) -> SizeResult:
    repeats = args.big_repeats if n >= 1000 else max(args.repeats, math.ceil(args.probes / n))
    batches = min(repeats, args.batches)
    per_batch = max(1, repeats // batches)
    farm = Farm(n, work)
    try:
        port = free_port()
        config = exporter_config(farm, work / f"exporter-{n}.yml")
        command = exporter_command(port, "--config.file", config, "--log.level", "warn")
        with process(command, work / f"exporter-{n}.log") as proc:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/-/ready", timeout=30, process=proc)
            with httpx.Client(timeout=60) as client, httpx.Client(timeout=30) as bb_client:
                metrics = f"{base}/metrics"
                cold = scrape(client, metrics, None)  # opens the N TLS connections
                if cold.up != n:
                    raise RuntimeError(f"cold scrape: {cold.up} of {n} servers up")
                result = SizeResult(n=n, probes=batches * per_batch * n, wall_cold=cold.wall)
                result.cold_connections = farm.command("stats")["connections"]

                def healthy() -> None:
                    time.sleep(args.pause)
                    s = scrape(client, metrics, None)
                    if s.up != n:
                        raise RuntimeError(f"{s.up} of {n} servers up")
                    result.wall.append(s.wall)

                one_round = (
                    blackbox_round(bb_client, farm, blackbox[1], result, args.pause)
                    if blackbox
                    else None
                )
                if one_round is not None:
                    one_round()  # the blackbox's warm-up, as the exporter's cold scrape
                    result.blackbox_failed = 0
                for _ in range(batches):
                    result.exporter.append(measure_batch(farm, proc.pid, per_batch, n, healthy))
                    if one_round is not None and blackbox is not None:  # right after: same load
                        result.blackbox.append(
                            measure_batch(farm, blackbox[0].pid, per_batch, n, one_round)
                        )
                stalled = list(range(0, n, round(1 / args.hang_fraction)))
                farm.command("stall", *stalled)
                for _ in range(args.hang_repeats):
                    s = scrape(client, metrics, args.timeout + TIMEOUT_OFFSET)
                    result.hang_wall.append(s.wall)
                    if s.up != n - len(stalled) or s.down != len(stalled):
                        result.hang_healthy_reported = False
                farm.command("stall")
                for latency in args.latencies:
                    farm.command("delay", latency)
                    result.latency_wall[latency] = [
                        scrape(client, metrics, None).wall for _ in range(args.latency_repeats)
                    ]
                farm.command("delay", 0)
            result.peak_rss = peak_rss_bytes(proc.pid)
    finally:
        farm.close()
    return result


def blackbox_round(
    client: httpx.Client, farm: Farm, port: int, result: SizeResult, pause: float
) -> Callable[[], None]:
    """One probe of every farm server, one target at a time, as Prometheus would ask."""

    def one_round() -> None:
        for url in farm.urls:
            time.sleep(pause)
            response = client.get(
                f"http://127.0.0.1:{port}/probe", params={"target": url, "module": MODULE}
            )
            if "\nprobe_success 1\n" not in response.text:
                result.blackbox_failed += 1

    return one_round


# --- report -----------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout
    return (
        f"- nproc: {os.cpu_count()}\n- CPU: {cpu}\n- load average at the end (shared machine): "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n- Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}\n- `free -h`:\n\n```text\n{free.rstrip()}\n```\n"
    )


def report(results: list[SizeResult], args: argparse.Namespace, command: str) -> str:
    lines = [
        "| N | probes | /metrics wall, cold | wall, median | wall with "
        f"{args.hang_fraction:.0%} hanging ({args.timeout:g} s timeout) | healthy all reported "
        "| exporter CPU/probe (ms) | simulator CPU/probe (ms) | exporter peak RSS (MB) |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.n} | {r.probes} | {r.wall_cold:.3f} s | {med(r.wall):.3f} s "
            f"| {med(r.hang_wall):.3f} s | {'yes' if r.hang_healthy_reported else 'NO'} "
            f"| {ms(medians(r.exporter)[0])} | {ms(medians(r.exporter)[1])} "
            f"| {r.peak_rss / 1e6:.1f} |"
        )
    if any(r.blackbox for r in results):
        lines += [
            "",
            "| N | blackbox CPU/probe (ms) | simulator CPU/probe under blackbox (ms) "
            "| exporter / blackbox CPU (median of batch pairs) | simulator: exporter / blackbox "
            "| TLS handshakes: exporter / blackbox | blackbox failed probes |",
            "|---:|---:|---:|---:|---:|---|---:|",
        ]
        for r in results:
            if not r.blackbox:
                continue
            b_cpu, b_farm = medians(r.blackbox)
            e_ratio, f_ratio = paired_ratios(r)
            exporter_handshakes = r.cold_connections + sum(x.connections for x in r.exporter)
            blackbox_handshakes = sum(x.connections for x in r.blackbox)
            lines.append(
                f"| {r.n} | {ms(b_cpu)} | {ms(b_farm)} | {e_ratio:.2f} | {f_ratio:.2f} "
                f"| {exporter_handshakes} / {blackbox_handshakes} | {r.blackbox_failed} |"
            )
    if args.latencies:
        lines += [
            "",
            "| N | /metrics wall, median, servers answering at once | "
            + " | ".join(f"servers answering in {x * 1000:g} ms" for x in args.latencies)
            + " |",
            "|---:|---:|" + "---:|" * len(args.latencies),
        ]
        lines += [
            f"| {r.n} | {med(r.wall):.3f} s | "
            + " | ".join(f"{med(r.latency_wall[x]):.3f} s" for x in args.latencies)
            + " |"
            for r in results
        ]
    lines += ["", targets(results, args)]
    paused = (
        f"Each `/metrics` and each `/probe` of the CPU batches waited {args.pause:g} s before it, "
        "to start as cold as under Prometheus, which asks every 15 s or more.\n\n"
        if args.pause
        else ""
    )
    return (
        f"## Probes\n\nMeasured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with\n\n"
        f"```sh\n{command}\n```\n\n{paused}" + "\n".join(lines) + "\n\nMachine:\n\n" + machine()
    )


def targets(results: list[SizeResult], args: argparse.Namespace) -> str:
    by_n = {r.n: r for r in results}
    rows: list[tuple[str, str, bool | None]] = []
    for r in results:
        if r.blackbox:
            e, f = paired_ratios(r)
            rows.append(
                (f"exporter CPU/probe <= 1/4 of blackbox's (N={r.n})", f"{e:.2f}", e <= 0.25)
            )
            rows.append(
                (f"simulator CPU/probe <= 1/3 under blackbox (N={r.n})", f"{f:.2f}", f <= 1 / 3)
            )
    if (big := by_n.get(1000)) is not None:
        limit = args.timeout + 0.25
        worst = max(big.hang_wall)
        rows.append(
            (
                f"N=1000, {args.hang_fraction:.0%} hanging: wall <= {limit:g} s, healthy reported",
                f"max {worst:.3f} s, {'all' if big.hang_healthy_reported else 'NOT all'} reported",
                worst <= limit and big.hang_healthy_reported,
            )
        )
        rows.append(
            ("peak RSS <= 100 MB at N=1000", f"{big.peak_rss / 1e6:.1f} MB", big.peak_rss <= 100e6)
        )
        if (small := by_n.get(100)) is not None:
            growth = ratio(med(big.wall), med(small.wall))
            rows.append(("wall(1000) <= 3 x wall(100)", f"{growth:.2f} x", growth <= 3))
            for latency in args.latencies:
                growth = ratio(med(big.latency_wall[latency]), med(small.latency_wall[latency]))
                rows.append(
                    (
                        f"wall(1000) <= 3 x wall(100), servers answering in {latency * 1000:g} ms",
                        f"{growth:.2f} x",
                        growth <= 3,
                    )
                )
    out = ["| target | measured | holds |", "|---|---|---|"]
    out += [f"| {name} | {value} | {'yes' if ok else 'NO'} |" for name, value, ok in rows]
    return "\n".join(out)


# --- main -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="10,100,1000", help="entity counts (default 10,100,1000)")
    p.add_argument(
        "--probes", type=int, default=6000, help="probes per size below 1000 (default 6000)"
    )
    p.add_argument("--repeats", type=int, default=5, help="least scrapes per size below 1000")
    p.add_argument("--big-repeats", type=int, default=6, help="scrapes at N >= 1000 (default 6)")
    p.add_argument("--batches", type=int, default=6, help="CPU batches per size (median taken)")
    p.add_argument("--hang-fraction", type=float, default=0.1, help="share of hanging servers")
    p.add_argument("--hang-repeats", type=int, default=3, help="scrapes with hanging servers")
    p.add_argument("--timeout", type=float, default=2.0, help="probe timeout with hanging servers")
    p.add_argument(
        "--latencies",
        type=lambda text: [float(x) for x in text.split(",") if x],
        default=[0.05, 0.2],
        help="server latencies in seconds for extra wall-time scrapes (default 0.05,0.2; '' none)",
    )
    p.add_argument("--latency-repeats", type=int, default=3, help="scrapes per latency")
    p.add_argument(
        "--pause",
        type=float,
        default=0.0,
        help="idle seconds before each /metrics and each /probe of the CPU batches (default 0)",
    )
    p.add_argument("--no-blackbox", action="store_true", help="skip blackbox_exporter")
    p.add_argument(
        "--output", type=Path, default=RESULTS, help=f"default {RESULTS.relative_to(HERE.parent)}"
    )
    p.add_argument("--farm", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.farm is not None:
        asyncio.run(farm_main(args.farm, args.dir))
        return 0
    raise_nofile()
    sizes = [int(s) for s in args.sizes.split(",")]
    command = "python benchmarks/bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    use_blackbox = not args.no_blackbox
    if use_blackbox and shutil.which(BLACKBOX) is None:
        print(f"{BLACKBOX} not found: install it or pass --no-blackbox", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="medulla-bench-") as tmp:
        work = Path(tmp)
        with contextlib.ExitStack() as stack:
            blackbox = None
            if use_blackbox:
                port = free_port()
                bb = stack.enter_context(
                    process(
                        blackbox_command(blackbox_config(work / "blackbox.yml"), port),
                        work / "blackbox.log",
                    )
                )
                wait_http(f"http://127.0.0.1:{port}/-/healthy", timeout=30, process=bb)
                blackbox = (bb, port)
            for n in sizes:
                print(f"N={n} ...", file=sys.stderr, flush=True)
                results.append(run_size(n, args, work, blackbox))
    text = report(results, args, command.strip())
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
