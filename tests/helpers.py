"""Shared test helpers: real processes and servers on 127.0.0.1, started and stopped by PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from medulla_imaging_exporter.httpserver import Server
from medulla_imaging_exporter.runtime import Runtime
from medulla_imaging_exporter.simulator import Behaviour, LocalCA, SimulatedServer
from medulla_imaging_exporter.web import create_app
from medulla_imaging_exporter.webconfig import WebConfig
from tests.processes import exporter_command
from tests.processes import free_port as free_port  # re-exported for the tests
from tests.processes import process as process
from tests.processes import wait_http as wait_http

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent
T = TypeVar("T")

# Servers failing in every way that is quick to fail, plus two that stall until the timeout.
FAILING = [
    Behaviour.REFUSE,
    Behaviour.UNTRUSTED,
    Behaviour.RESET,
    Behaviour.TRUNCATED,
    Behaviour.DROP,
    Behaviour.HTTP_500,
    Behaviour.GARBAGE,
    Behaviour.FAULT,
    Behaviour.STALL_TLS,
    Behaviour.STALL_REPLY,
]


def fixture_bytes(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met in {timeout}s")
        time.sleep(0.1)


@contextlib.contextmanager
def cli_process(
    tmp_path: Path,
    *args: str | Path,
    log_name: str = "exporter.log",
    scheme: str = "http",
    verify: ssl.SSLContext | bool = True,
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The real CLI in a subprocess with these arguments; yields the process and its base URL.

    ``scheme`` and ``verify`` (an SSL context) are for an exporter serving HTTPS."""
    port = free_port()
    argv = exporter_command(port, *args)
    with process(argv, tmp_path / log_name, env={**os.environ}) as proc:
        base = f"{scheme}://127.0.0.1:{port}"
        wait_http(f"{base}/-/ready", process=proc, verify=verify)
        yield proc, base


@contextlib.contextmanager
def cli_exporter(
    tmp_path: Path, *args: str, scheme: str = "http", verify: ssl.SSLContext | bool = True
) -> Iterator[str]:
    """The real CLI in a subprocess with these arguments; yields its base URL."""
    with cli_process(tmp_path, *args, scheme=scheme, verify=verify) as (_, base):
        yield base


@contextlib.contextmanager
def demo_exporter(
    tmp_path: Path, *extra: str, scheme: str = "http", verify: ssl.SSLContext | bool = True
) -> Iterator[str]:
    """The real CLI running its demo in a subprocess; yields its base URL."""
    with cli_exporter(tmp_path, "--demo", *extra, scheme=scheme, verify=verify) as base:
        yield base


@contextlib.asynccontextmanager
async def serving(runtime: Runtime, web_config: WebConfig | None = None) -> AsyncIterator[str]:
    """The exporter's web app in this event loop on 127.0.0.1; yields its base URL."""
    ssl_context = web_config.ssl_context if web_config else None
    server = Server(create_app(runtime, web_config), ssl_context)
    await server.start("127.0.0.1", 0)
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{server.port}"
    finally:
        await server.close()


@contextlib.contextmanager
def prometheus(workdir: Path, config: Mapping[str, object], *extra: str) -> Iterator[str]:
    """Debian's real Prometheus on 127.0.0.1 with this configuration; yields its base URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    args = [
        "prometheus",
        f"--config.file={config_file}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={workdir / 'data'}",
        *extra,
    ]
    with process(args, workdir / "prometheus.log") as proc:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/-/ready", process=proc)
        yield base


def prometheus_query(base: str, query: str) -> list[dict[str, Any]]:
    """The instant vector of a PromQL query, as the HTTP API returns it."""
    reply = httpx.get(f"{base}/api/v1/query", params={"query": query}, timeout=5)
    reply.raise_for_status()
    result: list[dict[str, Any]] = reply.json()["data"]["result"]
    return result


@contextlib.contextmanager
def simulators(
    ca: LocalCA, *behaviours: Behaviour, client_auth: bool = False
) -> Iterator[list[SimulatedServer]]:
    """Simulated servers on an event loop of their own, for tests that block on a subprocess.

    Their ``behaviour``, ``raw`` and ``delay`` can be set from the test's thread.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="simulators", daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    servers: list[SimulatedServer] = []
    try:
        for behaviour in behaviours:
            servers.append(run(SimulatedServer(None, behaviour, ca, client_auth).start()))
        yield servers
    finally:
        for server in servers:
            run(server.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metric_samples(exposition: str) -> Samples:
    """Every sample of a text exposition, keyed by name and label set."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def write_config(
    path: Path,
    entities: Sequence[Mapping[str, object]],
    top: Mapping[str, object] | None = None,
    **defaults: object,
) -> Path:
    """A configuration file, replaced atomically so that a concurrent reload never reads half.

    ``top`` adds top-level sections (``database``, ...); the keywords are the defaults."""
    document = {**(top or {}), "defaults": defaults, "entities": [dict(e) for e in entities]}
    partial = path.with_name(path.name + ".partial")
    partial.write_text(yaml.safe_dump(document, sort_keys=False))
    os.replace(partial, path)
    return path


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory, from /proc (the unit there is kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@st.composite
def mutated(
    draw: st.DrawFn, originals: Sequence[bytes], alphabet: bytes, most: int, within: int
) -> bytes:
    """One of ``originals`` with up to ``most`` bytes of ``alphabet`` inserted or replacing
    one, or bytes deleted, among its first ``within``: near misses of a well-formed message."""
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(0, most))):
        at = draw(st.integers(0, min(within, len(data)) - 1))
        byte = draw(st.sampled_from(alphabet))
        action = draw(st.sampled_from(["delete", "insert", "replace"]))
        if action == "insert":
            data.insert(at, byte)
        elif action == "delete":
            del data[at]
        else:
            data[at] = byte
    return bytes(data)
