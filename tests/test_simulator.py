"""The simulator speaks exactly as a Medulla package server does, quirks included."""

from __future__ import annotations

import ssl
import xmlrpc.client
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from medulla_imaging_exporter.parsing import REQUEST_BODY
from medulla_imaging_exporter.simulator import (
    FAILED,
    FAULT_8002,
    FAULT_STRUCT,
    Behaviour,
    ServerData,
)
from tests.conftest import MakeServer
from tests.helpers import fixture_bytes


def test_replies_are_byte_for_byte_those_of_a_medulla_server() -> None:
    assert ServerData().body() == fixture_bytes("replies/public-procps-ng.xml")
    assert FAILED.body() == fixture_bytes("replies/all-sections-failed.xml")
    assert ServerData(space_available=None).body() == fixture_bytes(
        "replies/no-space-available.xml"
    )
    assert fixture_bytes("replies/fault-struct.xml") == FAULT_STRUCT
    assert fixture_bytes("replies/fault-8002.xml") == FAULT_8002


@pytest.fixture
async def http(ca_file: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca_file))) as client:
        yield client


async def test_post_gets_the_reply_with_twisted_headers(
    make_server: MakeServer, http: httpx.AsyncClient
) -> None:
    server = await make_server()
    response = await http.post(
        server.url, content=REQUEST_BODY, headers={"Content-Type": "text/xml"}
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/xml"
    assert "TWISTED_SESSION" in response.headers["Set-Cookie"]
    assert response.content == ServerData().body()


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/imaging_api", b"", 500),  # Twisted parses the empty body and fails
        ("POST", "/imaging_api", xmlrpc.client.dumps((), "noSuchMethod").encode(), 500),
        ("POST", "/imaging_api", b"not xml", 500),
        ("POST", "/other", REQUEST_BODY, 404),
    ],
)
async def test_quirks(
    make_server: MakeServer,
    http: httpx.AsyncClient,
    method: str,
    path: str,
    body: bytes,
    status: int,
) -> None:
    server = await make_server()
    url = server.url.replace("/imaging_api", path)
    response = await http.request(method, url, content=body)
    assert response.status_code == status


async def test_fault_struct_comes_in_a_successful_reply(
    make_server: MakeServer, http: httpx.AsyncClient
) -> None:
    server = await make_server(Behaviour.FAULT)
    response = await http.post(server.url, content=REQUEST_BODY)
    assert response.status_code == 200
    (value,), _ = xmlrpc.client.loads(response.content)
    assert isinstance(value, dict)
    assert value["faultCode"].startswith("<class 'OSError'>")


async def test_refuse_stops_listening_on_the_same_port(
    make_server: MakeServer, http: httpx.AsyncClient
) -> None:
    server = await make_server()
    port = server.port
    await server.set_behaviour(Behaviour.REFUSE)
    with pytest.raises(httpx.ConnectError):
        await http.post(server.url, content=REQUEST_BODY)
    await server.set_behaviour(Behaviour.OK)
    assert server.port == port
    assert (await http.post(server.url, content=REQUEST_BODY)).status_code == 200
