"""Start, wait for and stop processes: shared by the tests and the benchmarks.

Only the standard library and httpx, so that ``benchmarks/`` can import it without pytest.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(
    url: str,
    timeout: float = 20.0,
    process: subprocess.Popen[bytes] | None = None,
    verify: ssl.SSLContext | bool = True,
) -> None:
    """Poll until the URL answers 200; fail early if the process died."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1, verify=verify).status_code == 200:
                return
        except httpx.HTTPError as err:
            last = err
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout}s: {last}")


def exporter_command(port: int, *args: str | Path) -> list[str]:
    """The real CLI, listening on 127.0.0.1:``port``, with these further arguments."""
    listen = ["--web.listen-address", f"127.0.0.1:{port}"]
    return [sys.executable, "-m", "medulla_imaging_exporter", *listen, *map(str, args)]


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate exactly this process, then kill it if it does not go within 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def process(args: Sequence[str], log_path: Path, **kw: object) -> Iterator[subprocess.Popen[bytes]]:
    """Start a process with its output in a file; stop exactly that process at the end."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(list(args), stdout=log, stderr=subprocess.STDOUT, **kw)  # type: ignore[call-overload]
        try:
            yield proc
        finally:
            stop(proc)
