"""Command line, in the style of Prometheus' own tools."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from medulla_imaging_exporter import __version__, gcpolicy, logs
from medulla_imaging_exporter.config import ConfigError, load_config
from medulla_imaging_exporter.history import DEFAULT_LIMIT
from medulla_imaging_exporter.httpserver import Server
from medulla_imaging_exporter.runtime import Runtime
from medulla_imaging_exporter.web import create_app
from medulla_imaging_exporter.webconfig import WebConfig, load_web_config

if TYPE_CHECKING:
    from medulla_imaging_exporter.demo import Demo

DEFAULT_PORT = 9867
log = logging.getLogger("medulla_imaging_exporter")


def parse_listen_address(value: str) -> tuple[str | None, int]:
    """``host:port``, ``:port`` (every interface) or ``[v6]:port``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected host:port or :port, got {value!r}")
    host = host.strip("[]")
    return (host or None), int(port)


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="medulla-imaging-exporter",
        description="Prometheus exporter for the imaging servers of Medulla.",
    )
    p.add_argument(
        "--config.file",
        dest="config_file",
        metavar="PATH",
        help="YAML configuration file (see examples/config.yml).",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="Run on simulated imaging servers reproducing the seed page's entities "
        "(listens on 127.0.0.1 unless --web.listen-address says otherwise).",
    )
    p.add_argument(
        "--web.listen-address",
        dest="listen_address",
        type=parse_listen_address,
        default=None,
        metavar="ADDR",
        help=f"Address to listen on (default :{DEFAULT_PORT}).",
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="PATH",
        help="exporter-toolkit web configuration: TLS and basic authentication "
        "(see examples/web-config.yml).",
    )
    p.add_argument(
        "--scrape.timeout-offset",
        dest="timeout_offset",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="Subtracted from Prometheus' scrape timeout to get the probe deadline (default 0.5).",
    )
    p.add_argument(
        "--history.limit",
        dest="history_limit",
        type=_positive_int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help="Recent probes kept for the status page, and as many failed ones "
        f"(default {DEFAULT_LIMIT}).",
    )
    p.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="Validate the configuration file, then exit 0 (valid) or 1.",
    )
    p.add_argument("--log.level", dest="log_level", choices=list(logs.LEVELS), default="info")
    p.add_argument(
        "--log.format", dest="log_format", choices=list(logs.FORMATTERS), default="logfmt"
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


async def serve(args: argparse.Namespace) -> int:
    try:
        web_config = load_web_config(args.web_config_file) if args.web_config_file else None
    except ConfigError as err:
        log.error("invalid web configuration", extra={"err": str(err)})
        return 1
    demo = await _start_demo() if args.demo else None
    try:
        if demo is not None:
            runtime = Runtime(lambda: demo.config, args.timeout_offset, args.history_limit)
        else:
            path = args.config_file
            runtime = Runtime(lambda: load_config(path), args.timeout_offset, args.history_limit)
    except ConfigError as err:
        log.error("invalid configuration", extra={"err": str(err)})
        if demo is not None:
            await demo.aclose()
        return 1
    gcpolicy.tune()
    default_host = "127.0.0.1" if demo is not None else None
    host, port = args.listen_address or (default_host, DEFAULT_PORT)
    server = Server(create_app(runtime, web_config), _ssl_context(web_config))
    try:
        await server.start(host, port)
        log.info(
            "listening",
            extra={
                "address": f"{host or ''}:{port}",
                "version": __version__,
                "entities": len(runtime.config.entities),
                "demo": demo is not None,
                "tls": _ssl_context(web_config) is not None,
            },
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload(runtime))
        await stop.wait()
        log.info("shutting down")
    finally:
        await server.close()
        if demo is not None:
            await demo.aclose()
    return 0


async def _start_demo() -> Demo:
    """Imported only with ``--demo``: the simulator needs trustme and cryptography (9 MB)."""
    from medulla_imaging_exporter.demo import start_demo

    return await start_demo()


def _ssl_context(web_config: WebConfig | None) -> ssl.SSLContext | None:
    return web_config.ssl_context if web_config else None


def _reload(runtime: Runtime) -> None:
    with contextlib.suppress(ConfigError):  # already logged; the running config stays
        runtime.reload()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log_level, args.log_format)
    if args.demo == bool(args.config_file):
        print("medulla-imaging-exporter: give either --config.file PATH or --demo", file=sys.stderr)
        return 2
    if args.config_check:
        if args.demo:
            print("--config.check needs --config.file", file=sys.stderr)
            return 2
        try:
            config = load_config(args.config_file)
        except ConfigError as err:
            print(err, file=sys.stderr)
            return 1
        print(f"{config.source}: OK, {len(config.entities)} entities")
        return 0
    try:
        return asyncio.run(serve(args))
    except OSError as err:  # e.g. address already in use
        log.error("cannot start", extra={"err": str(err)})
        return 1
