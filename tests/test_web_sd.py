"""GET /sd: Prometheus HTTP service discovery, one target group per configured entity."""

from __future__ import annotations

import httpx

from medulla_imaging_exporter.config import Config, Entity
from medulla_imaging_exporter.runtime import Runtime
from tests.helpers import serving


def group(address: str, name: str) -> dict[str, object]:
    return {"targets": [address], "labels": {"__param_entity": name, "entity": name}}


async def test_sd_lists_every_entity_as_a_probe_target_of_this_exporter() -> None:
    names = [["Siveo Medulla", "Public"], ["Public", "Site Nord / été", "Private"]]
    loads = iter(names)
    runtime = Runtime(lambda: Config(entities=tuple(Entity(name=n) for n in next(loads))))
    async with serving(runtime) as base, httpx.AsyncClient() as client:
        address = base.removeprefix("http://")
        reply = await client.get(f"{base}/sd")
        assert reply.headers["Content-Type"].startswith("application/json")
        assert reply.json() == [group(address, n) for n in names[0]]

        # The list follows reloads: a new entity is discovered, a removed one disappears.
        runtime.reload()
        assert (await client.get(f"{base}/sd")).json() == [group(address, n) for n in names[1]]

        # The target is the address Prometheus used to reach the exporter.
        named = await client.get(f"{base}/sd", headers={"Host": "exporter.example.org:9867"})
        assert named.json()[0]["targets"] == ["exporter.example.org:9867"]


async def test_sd_with_no_entities_is_an_empty_list() -> None:
    runtime = Runtime(lambda: Config(entities=()))
    async with serving(runtime) as base, httpx.AsyncClient() as client:
        assert (await client.get(f"{base}/sd")).json() == []
