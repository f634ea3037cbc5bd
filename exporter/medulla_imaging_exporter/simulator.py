"""A simulated Medulla imaging server: XML-RPC over TLS on 127.0.0.1, with its quirks.

A peer of the transport, not a mock inside it: tests and the demo reach it through
real sockets and real TLS. It answers like Twisted's ``MyXmlrpc`` resource of the
package server (HTTP 500 on GET and unknown methods, fault structs in successful
replies, 404 when the imaging API is not loaded) and can play every failure the
exporter must classify. HTTP is parsed by h11, never by hand.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import xmlrpc.client
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import h11
import trustme

IMAGING_API_PATH = "/imaging_api"

# The "Public" entity of the seed page's screenshot, as the commands print it (LANG=C).
PUBLIC_DF_K = """\
Filesystem     1K-blocks     Used Available Use% Mounted on
udev             4066220        0   4066220   0% /dev
tmpfs             817640     1012    816628   1% /run
/dev/vda3      102858595 17301504  80425780  18% /
tmpfs            4088196        0   4088196   0% /dev/shm
tmpfs               5120        0      5120   0% /run/lock
/dev/vda1         126668    11878    114790  10% /boot/efi
tmpfs             817636        0    817636   0% /run/user/0
"""
PUBLIC_FREE = """\
               total        used        free      shared  buff/cache   available
Mem:         8178893     3250586      734003      120000     4194304     4928307
Swap:        2097148      524288     1572860
"""
PUBLIC_UPTIME = "1123602.57 4318201.12"


class Behaviour(StrEnum):
    """What the simulated server does with the next connection or request."""

    OK = "ok"
    REFUSE = "refuse"  # nothing listens: connection refused
    STALL_TLS = "stall_tls"  # accepts TCP, never answers the TLS handshake
    STALL_REPLY = "stall_reply"  # reads the request, never answers
    DROP = "drop"  # reads the request, closes the connection without a word
    UNTRUSTED = "untrusted"  # a certificate from a CA nobody trusts
    HTTP_404 = "http_404"  # package server up, imaging API not loaded
    HTTP_500 = "http_500"
    FAULT = "fault"  # an exception in the method: a fault struct in a 200 reply
    FAULT_8002 = "fault_8002"  # a real <fault>: the result could not be marshalled
    GARBAGE = "garbage"  # 200 with a body that is not XML-RPC
    RAW = "raw"  # 200 with the server's ``raw`` reply, byte for byte (odd replies, attacks)
    # Wire-level failures, applied to the reply the server would otherwise send:
    CHUNKED = "chunked"  # no Content-Length: chunked encoding, so only the bytes tell the size
    TRUNCATED = "truncated"  # declares a longer Content-Length than it sends, then closes
    RESET = "reset"  # sends the first half of the reply, then a TCP reset
    DRIBBLE = "dribble"  # sends the reply one byte per second


@dataclass(frozen=True)
class RawReply:
    """A reply body sent as it is, with its content type."""

    body: bytes
    content_type: str = "text/xml"


@dataclass(frozen=True)
class ServerData:
    """What the server's commands print; an int is the ``-1`` of a failed section."""

    df_k: str | int = PUBLIC_DF_K
    free: str | int = PUBLIC_FREE
    uptime: str | int = PUBLIC_UPTIME
    space_available: tuple[int, int] | None = (18, 78540)
    stats: Mapping[str, int] = field(default_factory=lambda: {"rescue": 0, "master": 0, "total": 0})

    def struct(self) -> dict[str, Any]:
        """The reply struct, built the way ``status.py`` of the package server builds it."""
        out: dict[str, Any] = {}
        if self.space_available is not None:
            out["space_available"] = list(self.space_available)
        out["mem_info"] = self.free.split("\n") if isinstance(self.free, str) else self.free
        out["disk_info"] = self.df_k.split("\n") if isinstance(self.df_k, str) else self.df_k
        out["uptime"] = self.uptime
        out["stats"] = dict(self.stats)
        return out

    def body(self) -> bytes:
        return xmlrpc.client.dumps((self.struct(),), methodresponse=True).encode()


FAILED = ServerData(df_k=-1, free=-1, uptime=-1, space_available=(-1, -1))

FAULT_STRUCT = xmlrpc.client.dumps(
    (
        {
            "faultString": "imagingServerStatus ()",
            "faultCode": "<class 'OSError'>: [Errno 12] Cannot allocate memory ",
            "faultTraceback": "Traceback (most recent call last):\n  ...\n"
            "OSError: [Errno 12] Cannot allocate memory\n",
        },
    ),
    methodresponse=True,
).encode()
FAULT_8002 = xmlrpc.client.dumps(
    xmlrpc.client.Fault(
        8002, "can't serialize output: cannot marshal None unless allow_none is enabled"
    ),
    methodresponse=True,
).encode()
NO_SUCH_RESOURCE = (
    b"<html><head><title>404 - No Such Resource</title></head><body>"
    b"<h1>No Such Resource</h1><p>No such child resource.</p></body></html>"
)


class LocalCA:
    """A throwaway CA for the simulated servers, and a second one that nobody trusts."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self._trusted = self.ca.issue_cert("127.0.0.1", "localhost")
        self._untrusted = trustme.CA().issue_cert("127.0.0.1", "localhost")

    def server_context(self, trusted: bool = True, client_auth: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        (self._trusted if trusted else self._untrusted).configure_cert(ctx)
        if client_auth:  # the package server's verifypeer = 1
            ctx.verify_mode = ssl.CERT_REQUIRED
            self.ca.configure_trust(ctx)
        return ctx

    def write_client_cert(self, directory: Path) -> tuple[Path, Path]:
        """A client certificate signed by this CA, for servers that demand one."""
        issued = self.ca.issue_cert("medulla-imaging-exporter@example.org")
        cert, key = directory / "client.pem", directory / "client.key"
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        return cert, key

    def write_ca(self, path: Path) -> Path:
        self.ca.cert_pem.write_to_path(str(path))
        return path


class SimulatedServer:
    """One imaging server listening on 127.0.0.1; ``behaviour`` can change at any time."""

    def __init__(
        self,
        data: ServerData | None = None,
        behaviour: Behaviour = Behaviour.OK,
        ca: LocalCA | None = None,
        client_auth: bool = False,
    ) -> None:
        self.data = data or ServerData()
        self.behaviour = behaviour
        self.raw = RawReply(b"")
        self.delay = 0.0  # seconds to wait before answering each request
        self._tls = ca.server_context(client_auth=client_auth) if ca else None
        self._untrusted = ca.server_context(trusted=False) if ca else None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0
        self.connections = 0
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests this server was answering at once

    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{IMAGING_API_PATH}"

    async def start(self) -> SimulatedServer:
        if self.behaviour is not Behaviour.REFUSE:
            await self._listen()
        else:
            # Reserve a port that refuses: bound, never listening.
            self.port = await self._reserve_port()
        return self

    async def _reserve_port(self) -> int:
        probe = await asyncio.start_server(self._handle, "127.0.0.1", 0, reuse_address=True)
        port: int = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        return port

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def set_behaviour(self, behaviour: Behaviour) -> None:
        """Switch; going to or from REFUSE stops or restarts listening on the same port."""
        self.behaviour = behaviour
        if behaviour is Behaviour.REFUSE and self._server is not None:
            await self._stop_listening()
        elif behaviour is not Behaviour.REFUSE and self._server is None:
            await self._listen()

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        # Let every handler see its connection drop and end, so none is left to cancel.
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def close(self) -> None:
        await self._stop_listening()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        try:
            await self._serve(reader, writer)
        except (OSError, ssl.SSLError, h11.ProtocolError, asyncio.IncompleteReadError):
            pass  # the client went away or spoke nonsense: as Twisted, drop the connection
        except asyncio.CancelledError:
            pass  # the loop is ending mid-reply (a dribble); asyncio 3.11 logs a cancelled handler
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.behaviour is Behaviour.STALL_TLS:
            await _drain_until_eof(reader)
            return
        if self._tls is not None and self._untrusted is not None:
            ctx = self._untrusted if self.behaviour is Behaviour.UNTRUSTED else self._tls
            await writer.start_tls(ctx)
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        while True:
            request, body = await _read_request(conn, reader)
            if request is None:
                return
            self.requests += 1
            if self.behaviour is Behaviour.DROP:
                return
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.delay)
                answer = self._answer(request, body)
                if answer is None:
                    await _drain_until_eof(reader)
                    return
                if not await self._send(writer, conn, *answer):
                    return
            finally:
                self.in_flight -= 1
            conn.start_next_cycle()

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        conn: h11.Connection,
        status: int,
        content_type: str,
        payload: bytes,
    ) -> bool:
        """Write one reply as the behaviour says; False when the connection must end."""
        behaviour = self.behaviour
        headers = [("Content-Type", content_type)]
        if behaviour is not Behaviour.CHUNKED:  # h11 falls back to chunked encoding
            extra = 1000 if behaviour is Behaviour.TRUNCATED else 0
            headers.append(("Content-Length", str(len(payload) + extra)))
        headers += [
            ("Server", "TwistedWeb/22.4.0"),
            ("Set-Cookie", "TWISTED_SESSION=0123456789abcdef; Path=/"),
        ]
        wire = conn.send(h11.Response(status_code=status, headers=headers)) or b""
        wire += conn.send(h11.Data(data=payload)) or b""
        if behaviour is not Behaviour.TRUNCATED:
            wire += conn.send(h11.EndOfMessage()) or b""
        if behaviour is Behaviour.RESET:
            writer.write(wire[: len(wire) // 2])
            await writer.drain()
            # SO_LINGER 0: close() sends RST instead of FIN.
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        pieces = (
            [wire[i : i + 1] for i in range(len(wire))]
            if behaviour is Behaviour.DRIBBLE
            else [wire]
        )
        for i, piece in enumerate(pieces):
            await asyncio.sleep(1.0 if i else 0.0)
            writer.write(piece)
            await writer.drain()
        return behaviour is not Behaviour.TRUNCATED and conn.our_state is not h11.MUST_CLOSE

    def _answer(self, request: h11.Request, body: bytes) -> tuple[int, str, bytes] | None:
        """Status, content type and body, as the package server would give them."""
        behaviour = self.behaviour
        if behaviour is Behaviour.STALL_REPLY:
            return None
        path = request.target.split(b"?")[0].decode("latin-1")
        if behaviour is Behaviour.HTTP_404 or path != IMAGING_API_PATH:
            return 404, "text/html", NO_SUCH_RESOURCE
        if request.method != b"POST" or behaviour is Behaviour.HTTP_500:
            return 500, "text/html", b"<html><body>Internal Server Error</body></html>"
        try:
            _, method = xmlrpc.client.loads(body)
        except Exception:  # as Twisted: a body that does not parse is a 500
            method = None
        if method != "imagingServerStatus":
            return 500, "text/html", b"<html><body>Internal Server Error</body></html>"
        if behaviour is Behaviour.FAULT:
            return 200, "text/xml", FAULT_STRUCT
        if behaviour is Behaviour.FAULT_8002:
            return 200, "text/xml", FAULT_8002
        if behaviour is Behaviour.GARBAGE:
            return 200, "text/xml", b"<html><body>Proxy Error</body></html>"
        if behaviour is Behaviour.RAW:
            return 200, self.raw.content_type, self.raw.body
        return 200, "text/xml", self.data.body()


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader
) -> tuple[h11.Request | None, bytes]:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return request, bytes(body)
        else:  # ConnectionClosed or PAUSED
            return None, b""


async def _drain_until_eof(reader: asyncio.StreamReader) -> None:
    """Hold the connection, reading and discarding, until the client gives up."""
    while await reader.read(65536):
        pass
