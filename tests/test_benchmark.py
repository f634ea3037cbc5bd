"""The benchmark scripts run end to end on tiny loads (their figures are not checked: timing)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO


def benchmark(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A script of benchmarks/, run to its end with its output captured."""
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_benchmark_runs_and_writes_its_table(tmp_path: Path) -> None:
    output = tmp_path / "latest.md"
    args = [
        *("--sizes", "3", "--probes", "6", "--repeats", "2", "--batches", "1"),
        *("--hang-repeats", "1", "--timeout", "0.5", "--no-blackbox", "--output", str(output)),
        *("--latencies", "0.3", "--latency-repeats", "1", "--pause", "0.01"),
    ]
    run = benchmark("bench.py", *args)
    assert run.returncode == 0, run.stderr
    table = output.read_text()
    assert table.strip() == run.stdout.strip()
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("| 3 |")
    ]
    assert [len(cells) for cells in rows] == [9, 3], table  # the main table, the latency one
    cells, latency = rows
    assert cells[1] == "6"  # probes: 2 scrapes of 3 entities
    assert cells[5] == "yes"  # every healthy server reported while one hung
    assert "servers answering in 300 ms" in table
    assert float(latency[2].removesuffix(" s")) >= 0.3  # the servers did answer late
    assert "nproc: " in table and "benchmarks/bench.py --sizes 3" in table
    assert "each `/probe` of the CPU batches waited 0.01 s before it" in table


def test_the_client_benchmark_runs_against_a_simulated_server() -> None:
    run = benchmark("client.py", "--batches", "2", "--requests", "5", timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("CPU per request (median of 2 batches of 5): client "), run.stdout
    assert run.stdout.rstrip().endswith(" ms")


def test_every_operation_of_the_instruction_count_runs() -> None:
    for operation in ("request", "parse", "decode", "sections", "encode", "scrape"):
        run = benchmark("instructions.py", "--inner", operation, "1")
        assert run.returncode == 0, (operation, run.stderr)


def test_the_instruction_count_is_read_from_valgrind(tmp_path: Path) -> None:
    output = tmp_path / "instructions.txt"
    run = benchmark("instructions.py", "parse", "--counts", "1", "3", "--output", str(output))
    assert run.returncode == 0, run.stderr
    row = run.stdout.splitlines()[0]
    assert row in output.read_text().splitlines()
    assert row.startswith("| parse | "), run.stdout
    assert int(row.split("|")[2].replace(",", "")) > 10_000  # a reply takes many thousands


def test_an_unknown_operation_is_refused() -> None:
    run = benchmark("instructions.py", "parse", "nothing")
    assert run.returncode == 2
    assert "unknown operations: nothing" in run.stderr


def test_the_memory_breakdown_runs_against_a_small_farm() -> None:
    run = benchmark("memory.py", "--entities", "3", "--top", "2")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "3 entities, 3 available after two probes each", run.stdout
    assert re.fullmatch(
        r"one exposition \(0\.\d MB of text, in chunks as /metrics writes it\): "
        r"tracemalloc peak [\d.]+ MB above the probed state",
        lines[-1],
    ), lines[-1]
    assert len([line for line in lines if " blocks " in line]) == 2


def test_the_parsing_benchmark_runs_and_writes_its_table(tmp_path: Path) -> None:
    output = tmp_path / "parsing.txt"
    run = benchmark("parsing.py", "--batches", "1", "--size", "2", "--output", str(output))
    assert run.returncode == 0, run.stderr
    assert output.read_text() == run.stdout
    rows = {line.split()[0] for line in run.stdout.splitlines()[2:]}
    assert rows == {"parse_body", "decode_response", "parse_reply"}


def test_the_cli_instruction_count_splits_a_scrape(tmp_path: Path) -> None:
    output = tmp_path / "cli_instructions.txt"
    # A few scrapes apart: one-off work (a collection, a heap trim) would blur a single one.
    args = ["--sizes", "2,1", "--counts", "2", "6", "--output", str(output)]
    run = benchmark("cli_instructions.py", *args, timeout=600)
    assert run.returncode == 0, run.stderr
    table = output.read_text()
    assert table.splitlines()[2:] == run.stdout.splitlines()[:-1]  # the rows, as printed
    counts = {
        cells[0]: int(cells[1].replace(",", ""))
        for line in table.splitlines()[2:]
        if (cells := [c.strip() for c in line.strip("|").split("|")])
    }
    assert list(counts) == [
        "`/-/healthy`, the HTTP exchange alone",
        "`/metrics`, N = 1",
        "`/metrics`, N = 2",
        "each probe",
        "a scrape whatever the number of entities",
    ]
    # A scrape answers HTTP and probes: more than the HTTP exchange, and more with more entities.
    assert counts["`/metrics`, N = 1"] > counts["`/-/healthy`, the HTTP exchange alone"] > 100_000
    assert counts["each probe"] > 500_000


@pytest.mark.parametrize("sizes", ["3,3", "3", "1,x", "0,2", "1,2,3"])
def test_the_cli_instruction_count_needs_two_sizes(sizes: str) -> None:
    run = benchmark("cli_instructions.py", "--sizes", sizes, timeout=60)
    assert run.returncode == 2
    assert "argument --sizes: two different entity counts of 1 or more" in run.stderr


def test_the_hotspots_of_a_scrape_are_sampled_while_it_serves(tmp_path: Path) -> None:
    """py-spy samples the real CLI: the probe's path is among the samples, start-up is not."""
    output, stacks = tmp_path / "hotspots.txt", tmp_path / "hotspots.collapsed"
    args = ["--entities", "2", "--scrapes", "300", "--rate", "200", "--top", "5"]
    run = benchmark("hotspots.py", *args, "--output", str(output), "--stacks", str(stacks))
    assert run.returncode == 0, run.stderr
    table = output.read_text()
    assert table.strip() in run.stdout
    found = re.fullmatch(r"([\d,]+) samples while serving\.", table.splitlines()[0])
    assert found is not None, table
    served = int(found[1].replace(",", ""))
    sampled = stacks.read_text().splitlines()
    # Start-up (imports, the configuration) was sampled too, and left out of the tables.
    assert sum(int(line.rpartition(" ")[2]) for line in sampled) > served > 0
    assert any("ImagingClient.call (medulla_imaging_exporter/transport.py" in s for s in sampled)
    inclusive = table.split("| exporter's function, callees included |")[1]
    assert "`main (medulla_imaging_exporter/cli.py:" in inclusive
    assert len([row for row in inclusive.splitlines() if row.startswith("| ")]) == 5
