"""End to end: simulated imaging servers, the exporter, a real Prometheus running the committed
rule file and a real Alertmanager configured from the committed example, down to a webhook.

The simulators, the exporter and the webhook run in one event loop in a background thread so
that the test can switch "Public" off and on while Prometheus and Alertmanager run as processes.
Only the rules' ``for`` durations (minutes become seconds) and Alertmanager's timers and
receiver addresses differ from the committed files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from medulla_imaging_exporter.config import Config, Entity, TLSConfig
from medulla_imaging_exporter.httpserver import App, Handler, Request, Response, Server
from medulla_imaging_exporter.runtime import Runtime
from medulla_imaging_exporter.simulator import Behaviour, LocalCA, SimulatedServer
from tests.alerting import (
    ALERTMANAGER_EXAMPLE,
    JOB,
    RULES,
    alertmanager_for_test,
    load,
    shortened_rules,
)
from tests.helpers import free_port, process, serving, wait_http
from tests.helpers import prometheus as prometheus_server

T = TypeVar("T")

# Minutes of the real rules become seconds: ordering and ratios between alerts are kept.
FOR_SCALE = 1 / 60
INTERVAL = "1s"
# The stalled server's probe deadline: its probes last it all, so it is "near its timeout".
STALLED_TIMEOUT_SECONDS = 0.3
WAIT_SECONDS = 60.0


class LoopThread:
    """An event loop in a daemon thread; ``run`` executes a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=WAIT_SECONDS)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@dataclass(frozen=True)
class Notification:
    received: float  # time.monotonic()
    receiver: str
    payload: dict[str, Any]

    def alerts(self, status: str, alertname: str, entity: str) -> list[dict[str, Any]]:
        return [
            a
            for a in self.payload["alerts"]
            if a["status"] == status
            and a["labels"]["alertname"] == alertname
            and a["labels"].get("entity") == entity
        ]


class Webhook:
    """Alertmanager's receivers all post here, at /<receiver name>."""

    def __init__(self) -> None:
        self.inbox: queue.Queue[Notification] = queue.Queue()
        self.seen: list[Notification] = []

    def app(self) -> App:
        async def receive(request: Request, _: Handler) -> Response:
            payload = json.loads(request.body)
            self.inbox.put(Notification(time.monotonic(), request.path.lstrip("/"), payload))
            return Response.text("ok")

        return App(middleware=receive)  # every path is a receiver's

    def wait_for(
        self, status: str, alertname: str, entity: str
    ) -> tuple[Notification, dict[str, Any]]:
        """The first notification carrying that alert in that status, waiting for it."""
        for notification in self.seen:
            if found := notification.alerts(status, alertname, entity):
                return notification, found[0]
        deadline = time.monotonic() + WAIT_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            try:
                notification = self.inbox.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(notification)
            if found := notification.alerts(status, alertname, entity):
                return notification, found[0]
        raise AssertionError(f"no {status} {alertname} for {entity}; got {self.summary()}")

    def drain(self) -> None:
        while not self.inbox.empty():
            self.seen.append(self.inbox.get_nowait())

    def summary(self) -> list[tuple[str, str, str, str | None]]:
        return [
            (n.receiver, a["status"], a["labels"]["alertname"], a["labels"].get("entity"))
            for n in self.seen
            for a in n.payload["alerts"]
        ]


@dataclass
class World:
    public: SimulatedServer
    exporter: str
    webhook: str


async def start_world(
    stack: contextlib.AsyncExitStack, ca: LocalCA, ca_file: Path, webhook: Webhook
) -> World:
    """Public available, Private stalled (connection error), the root entity without server."""
    public = await SimulatedServer(None, Behaviour.OK, ca).start()
    stack.push_async_callback(public.close)
    private = await SimulatedServer(None, Behaviour.STALL_REPLY, ca).start()
    stack.push_async_callback(private.close)
    tls = TLSConfig(ca_file=ca_file)
    config = Config(
        entities=(
            Entity(name="Siveo Medulla", uuid="UUID1"),
            Entity(name="Public", uuid="UUID2", url=public.url, tls=tls),
            Entity(
                name="Private",
                uuid="UUID3",
                url=private.url,
                timeout=STALLED_TIMEOUT_SECONDS,
                tls=tls,
            ),
        )
    )
    exporter = await stack.enter_async_context(serving(Runtime(lambda: config)))
    receiver = Server(webhook.app())
    await receiver.start("127.0.0.1", 0)
    stack.push_async_callback(receiver.close)
    return World(public, exporter, f"http://127.0.0.1:{receiver.port}")


@contextlib.contextmanager
def background_world(
    ca: LocalCA, ca_file: Path, webhook: Webhook
) -> Iterator[tuple[LoopThread, World]]:
    loop = LoopThread()
    stack = contextlib.AsyncExitStack()
    try:
        yield loop, loop.run(start_world(stack, ca, ca_file, webhook))
    finally:
        loop.run(stack.aclose())
        loop.close()


@contextlib.contextmanager
def alertmanager(tmp_path: Path, webhook_base: str) -> Iterator[str]:
    config = alertmanager_for_test(load(ALERTMANAGER_EXAMPLE), webhook_base, INTERVAL)
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    args = [
        "prometheus-alertmanager",
        f"--config.file={tmp_path / 'alertmanager.yml'}",
        f"--storage.path={tmp_path / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with process(args, tmp_path / "alertmanager.log") as proc:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/-/ready", process=proc)
        yield base


@contextlib.contextmanager
def prometheus(tmp_path: Path, exporter: str, alertmanager_url: str) -> Iterator[str]:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(shortened_rules(load(RULES), FOR_SCALE)))
    config = {
        "global": {
            "scrape_interval": INTERVAL,
            "scrape_timeout": INTERVAL,
            "evaluation_interval": INTERVAL,
        },
        "rule_files": [str(tmp_path / "rules.yml")],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}
            ]
        },
        "scrape_configs": [
            {
                "job_name": JOB,
                "static_configs": [{"targets": [exporter.removeprefix("http://")]}],
            }
        ],
    }
    with prometheus_server(
        tmp_path / "prometheus", config, "--rules.alert.resend-delay=1s"
    ) as base:
        yield base


def poll(what: str, check: Callable[[], T | None]) -> T:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if (result := check()) is not None:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def am_alert(alertmanager_url: str, alertname: str, entity: str) -> dict[str, Any] | None:
    alerts = httpx.get(
        f"{alertmanager_url}/api/v2/alerts",
        params={"filter": [f'alertname="{alertname}"', f'entity="{entity}"']},
        timeout=5,
    ).json()
    return alerts[0] if alerts else None


def firing_in_prometheus(prometheus_url: str, alertname: str, entity: str) -> bool | None:
    alerts = httpx.get(f"{prometheus_url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return (
        any(
            a["state"] == "firing"
            and a["labels"]["alertname"] == alertname
            and a["labels"].get("entity") == entity
            for a in alerts
        )
        or None
    )


def test_offline_alert_reaches_the_receiver_and_resolves(
    tmp_path: Path, local_ca: LocalCA, ca_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    webhook = Webhook()
    with (
        background_world(local_ca, ca_file, webhook) as (loop, world),
        alertmanager(tmp_path, world.webhook) as am,
        prometheus(tmp_path, world.exporter, am) as prom,
    ):
        # The pipeline works: Private's connection error pages on-call.
        note, alert = webhook.wait_for("firing", "MedullaImagingServerConnectionError", "Private")
        assert note.receiver == "on-call"
        # Stalled after the request; on a loaded machine the handshake may be what times out.
        assert re.search(r"reason: (tls_)?timeout\)", alert["annotations"]["description"])

        # "Public" goes offline.
        loop.run(world.public.set_behaviour(Behaviour.REFUSE))
        failed = time.monotonic()
        note, alert = webhook.wait_for("firing", "MedullaImagingServerOffline", "Public")
        with capsys.disabled():
            print(f"\nfailure to offline notification: {note.received - failed:.1f} s")
        assert note.receiver == "on-call"
        assert note.payload["groupLabels"] == {"job": JOB, "entity": "Public"}
        assert alert["labels"]["severity"] == "critical"
        description = alert["annotations"]["description"]
        assert 'entity "Public"' in description
        assert f"({world.public.url})" in description
        assert "reason: refused" in description
        assert "Recommended action: contact the administrator or technical support." in description
        assert alert["annotations"]["runbook_url"] == "docs/runbooks.md#medullaimagingserveroffline"

        # ... and comes back.
        loop.run(world.public.set_behaviour(Behaviour.OK))
        recovered = time.monotonic()
        note, _ = webhook.wait_for("resolved", "MedullaImagingServerOffline", "Public")
        with capsys.disabled():
            print(f"recovery to resolved notification: {note.received - recovered:.1f} s")
        assert note.receiver == "on-call"

        # Routing by severity: the root entity without a server is an info ticket.
        note, _ = webhook.wait_for("firing", "MedullaImagingServerNotLinked", "Siveo Medulla")
        assert note.receiver == "imaging-tickets"

        # Private's probes last their whole timeout: Prometheus fires the near-timeout
        # warning, Alertmanager holds it back behind the connection error of the same entity.
        poll(
            "ProbeNearTimeout firing in Prometheus",
            lambda: firing_in_prometheus(prom, "MedullaImagingProbeNearTimeout", "Private"),
        )
        suppressed = poll(
            "ProbeNearTimeout inhibited in Alertmanager",
            lambda: (
                a
                if (a := am_alert(am, "MedullaImagingProbeNearTimeout", "Private"))
                and a["status"]["inhibitedBy"]
                else None
            ),
        )
        cause = am_alert(am, "MedullaImagingServerConnectionError", "Private")
        assert cause is not None
        assert suppressed["status"]["state"] == "suppressed"
        assert suppressed["status"]["inhibitedBy"] == [cause["fingerprint"]]
        # Past a few group intervals, it still has not arrived.
        time.sleep(3)
        webhook.drain()
        delivered = {(alertname, entity) for _, _, alertname, entity in webhook.summary()}
        assert ("MedullaImagingProbeNearTimeout", "Private") not in delivered, json.dumps(
            webhook.summary()
        )


def _alert(alertname: str, severity: str, **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": alertname, "severity": severity, **labels}}


def test_every_inhibition_of_the_example_in_a_real_alertmanager(tmp_path: Path) -> None:
    """Alerts posted straight to Alertmanager: exactly the duplicates of an outage are held."""
    down = {"job": JOB, "instance": "down:9867"}
    up = {"job": JOB, "instance": "up:9867"}
    gone = {"job": "medulla-imaging-site2"}
    alerts = [
        _alert("MedullaImagingExporterDown", "critical", **down),
        _alert("MedullaImagingServerOffline", "critical", entity="A", **down),
        _alert("MedullaImagingServerConnectionError", "critical", entity="B", **up),
        _alert("MedullaImagingMemoryPressure", "warning", entity="B", **up),
        _alert("MedullaImagingProbeNearTimeout", "warning", entity="B", **up),
        _alert("MedullaImagingMemoryPressure", "warning", entity="C", **up),
        _alert("MedullaImagingMastersStorageLow", "warning", entity="D", **up),
        _alert("MedullaImagingMastersStorageLow", "critical", entity="D", **up),
        _alert("MedullaImagingMastersStorageFillingUp", "warning", entity="D", **up),
        _alert("MedullaImagingExporterAbsent", "critical", **gone),
        _alert("MedullaImagingServerNotLinked", "info", entity="E", instance="x:9867", **gone),
    ]
    expected = {
        # the exporter down: its entities' alerts
        ("MedullaImagingServerOffline", "critical", "A"),
        # an outage: the same entity's resource and probe alerts
        ("MedullaImagingMemoryPressure", "warning", "B"),
        ("MedullaImagingProbeNearTimeout", "warning", "B"),
        # critical over warning, and over "filling up"
        ("MedullaImagingMastersStorageLow", "warning", "D"),
        ("MedullaImagingMastersStorageFillingUp", "warning", "D"),
        # no exporter in the job at all
        ("MedullaImagingServerNotLinked", "info", "E"),
    }
    with alertmanager(tmp_path, f"http://127.0.0.1:{free_port()}") as am:
        httpx.post(f"{am}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()

        def suppressed() -> set[tuple[str, str, str | None]]:
            return {
                (a["labels"]["alertname"], a["labels"]["severity"], a["labels"].get("entity"))
                for a in httpx.get(f"{am}/api/v2/alerts", timeout=5).json()
                if a["status"]["state"] == "suppressed"
            }

        # Alertmanager takes in posted alerts asynchronously: wait for the expected state,
        # then check it exactly.
        deadline = time.monotonic() + WAIT_SECONDS
        while (got := suppressed()) != expected and time.monotonic() < deadline:
            time.sleep(0.2)
    assert got == expected
