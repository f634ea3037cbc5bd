"""The container image, without Docker: hadolint on the Dockerfile, then the Dockerfile's own
install and start steps, read from the file itself, run in a fresh virtual environment."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import httpx
import trustme

from medulla_imaging_exporter import __version__
from tests.helpers import REPO, demo_exporter, free_port, process, wait_http

DOCKERFILE = REPO / "Dockerfile"
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def json_form(self, keyword: str) -> list[str]:
        """The exec (JSON) form of CMD, ENTRYPOINT or HEALTHCHECK ... CMD."""
        args = self.all(keyword)[-1]
        array: list[str] = json.loads(args[args.index("[") :])
        return array

    def env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` with this stage's ENV lines applied in order, expanded as Docker does."""
        env = dict(env)
        for line in self.all("ENV"):
            for pair in shlex.split(line):
                name, _, value = pair.partition("=")
                env[name] = _VARIABLE.sub(lambda m: env.get(m.group(1), ""), value)
        return env


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    stages: list[Stage] = []
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        keyword, _, args = (logical + line).partition(" ")
        logical = ""
        if keyword.upper() == "FROM":
            stages.append(Stage(args.strip()))
        else:
            stages[-1].instructions.append((keyword.upper(), " ".join(args.split())))
    return stages


def test_hadolint_finds_nothing_at_warning_level() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_multi_stage_non_root_and_exposes_the_default_port() -> None:
    build, final = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    assert build.base.endswith(" AS build")
    assert any(c.startswith("--from=build ") for c in final.all("COPY"))
    assert final.all("USER") and final.all("USER")[-1] not in ("root", "0")
    assert final.all("EXPOSE") == ["9867"]
    assert "/-/healthy" in " ".join(final.json_form("HEALTHCHECK"))
    assert any("-c constraints.txt" in run for run in build.all("RUN"))


def _shim_python(bin_dir: Path) -> Path:
    """A ``python`` on PATH that is the base interpreter, as in the python image."""
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    return bin_dir


def _build_context(stage: Stage, root: Path) -> Path:
    """Copy what the stage's COPY lines copy into its WORKDIR (Docker's build context)."""
    workdir = root / stage.all("WORKDIR")[-1].lstrip("/")
    workdir.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for copy in stage.all("COPY"):
        *sources, dest = copy.split()
        for source in sources:
            src, target = REPO / source, workdir / dest
            if src.is_dir():
                shutil.copytree(src, target, ignore=ignore)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target / src.name)
    return workdir


def test_image_install_and_start_steps_work_in_a_fresh_venv(tmp_path: Path) -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    image_venv = parse_dockerfile(text)[0].env({})["VIRTUAL_ENV"]
    venv = tmp_path / "venv"
    build, final = parse_dockerfile(text.replace(image_venv, str(venv)))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    base_env["PATH"] = f"{_shim_python(tmp_path / 'bin')}:/usr/local/bin:/usr/bin:/bin"

    workdir = _build_context(build, tmp_path / "context")
    build_env = build.env(base_env)
    for run in build.all("RUN"):
        result = subprocess.run(
            ["/bin/sh", "-c", run], cwd=workdir, env=build_env, capture_output=True, text=True
        )
        assert result.returncode == 0, f"RUN {run}\n{result.stdout}\n{result.stderr}"

    env = final.env(base_env)
    entrypoint = final.json_form("ENTRYPOINT")
    version = subprocess.run(
        [*entrypoint, "--version"], env=env, capture_output=True, text=True, check=True
    )
    assert version.stdout.split() == ["medulla-imaging-exporter", __version__]
    code = "import importlib.metadata as m; print(m.version('medulla-imaging-exporter'))"
    metadata = subprocess.run(
        ["python", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert metadata.stdout.strip() == __version__  # the package's version is __version__

    # `docker run -v ...`: the configuration at the path CMD names, served on a free port.
    cmd = final.json_form("CMD")
    config = tmp_path / "mounted" / Path(cmd[cmd.index("--config.file") + 1]).name
    config.parent.mkdir()
    config.write_text("entities:\n  - name: Siveo Medulla\n", encoding="utf-8")
    cmd[cmd.index("--config.file") + 1] = str(config)
    port = free_port()
    args = [*entrypoint, *cmd, "--web.listen-address", f"127.0.0.1:{port}"]
    with process(args, tmp_path / "exporter.log", env=env) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/-/ready", process=proc)
        metrics = httpx.get(f"{base}/metrics").text
        assert f'medulla_imaging_exporter_build_info{{version="{__version__}"}} 1.0' in metrics
        assert 'medulla_imaging_server_status{entity="Siveo Medulla",status="not_linked"} 1.0' in (
            metrics
        )
        healthcheck = final.json_form("HEALTHCHECK")
        url = f"{base}/-/healthy"
        ok = subprocess.run(healthcheck, env={**env, "HEALTHCHECK_URL": url}, capture_output=True)
        assert ok.returncode == 0, ok.stderr
        # The same check fails when nothing healthy answers.
        down = f"http://127.0.0.1:{free_port()}/-/healthy"
        failed = subprocess.run(
            healthcheck, env={**env, "HEALTHCHECK_URL": down}, capture_output=True
        )
        assert failed.returncode != 0


def test_healthcheck_reaches_an_https_exporter_when_health_checks_are_exempt(
    tmp_path: Path,
) -> None:
    """The documented HTTPS set-up: HEALTHCHECK_URL on https, health_checks_without_auth."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "exporter.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "exporter.key"))
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web_config = tmp_path / "web-config.yml"
    web_config.write_text(
        "tls_server_config: {cert_file: exporter.crt, key_file: exporter.key}\n"
        f"basic_auth_users: {{prometheus: '{hashed}'}}\n"
        "health_checks_without_auth: true\n",
        encoding="utf-8",
    )
    healthcheck = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))[-1].json_form(
        "HEALTHCHECK"
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    verify = ssl.create_default_context()
    ca.configure_trust(verify)
    flags = ("--web.config.file", str(web_config))
    with demo_exporter(tmp_path, *flags, scheme="https", verify=verify) as base:
        for path, healthy in (("/-/healthy", True), ("/metrics", False)):
            url = {"HEALTHCHECK_URL": f"{base}{path}"}
            result = subprocess.run(healthcheck, env={**env, **url}, capture_output=True)
            assert (result.returncode == 0) is healthy, (path, result.stderr)
