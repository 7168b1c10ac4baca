"""The client's RFC 6455 transport against the real websockets server and our hub."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.server import ServerConnection, serve

from synapse_channel.client.connection import HubClient, HubUnreachable
from synapse_channel.client.wire import WebSocketStream, WireClosed, encode_frame

from .conftest import HubFactory


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        if message == "fragments":
            await ws.send(["frag", "ment", "ed"])
        elif message == "close-4009":
            await ws.close(4009, "name conflict")
        else:
            await ws.send(message)


@pytest.fixture
async def echo_uri() -> str:
    async with serve(echo, "127.0.0.1", 0, compression=None, max_size=None) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"  # type: ignore[misc]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 3_000_000])
async def test_roundtrip_sizes(echo_uri: str, size: int) -> None:
    """Messages of every length encoding survive masking and framing."""
    ws = await WebSocketStream.open(echo_uri)
    text = "é" * (size // 2) + "x" * (size % 2)
    await ws.send(text)
    assert await ws.recv() == text
    await ws.close()


async def test_fragmented_messages_are_reassembled(echo_uri: str) -> None:
    """A message sent in fragments arrives whole."""
    ws = await WebSocketStream.open(echo_uri)
    await ws.send("fragments")
    assert await ws.recv() == "fragmented"
    await ws.close()


async def test_close_code_and_reason_reach_the_client(echo_uri: str) -> None:
    """The peer's close code and reason are reported, then every recv raises."""
    ws = await WebSocketStream.open(echo_uri)
    await ws.send("close-4009")
    with pytest.raises(WireClosed) as info:
        await ws.recv()
    assert (info.value.code, info.value.reason) == (4009, "name conflict")
    with pytest.raises(WireClosed):
        await ws.recv()


async def test_recv_timeouts_do_not_desynchronise(echo_uri: str) -> None:
    """Cancelled recv calls lose nothing: the reader task owns the stream."""
    ws = await WebSocketStream.open(echo_uri)
    for _ in range(20):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.001)
    await ws.send("still aligned")
    assert await ws.recv() == "still aligned"
    await ws.close()


async def test_client_answers_hub_pings(hub_factory: HubFactory) -> None:
    """A client idle in recv keeps its name across many hub ping cycles."""
    hub = await hub_factory(ping_interval=0.05, ping_timeout=0.2)
    client = HubClient(hub.uri, "pinged")
    await client.connect()
    assert await client.recv(1.0) is not None  # presence_update for ourselves
    await client.recv(1.0)
    assert "pinged" in hub.core.roster.names
    await client.close()


async def test_refused_upgrade_is_unreachable() -> None:
    """An HTTP server that is not a WebSocket endpoint is reported as unreachable."""

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with pytest.raises(HubUnreachable, match="404"):
        await HubClient(f"ws://127.0.0.1:{port}", "x", ready_timeout=2).connect()
    server.close()
    await server.wait_closed()


def test_frames_are_masked() -> None:
    """Client frames carry the mask bit and a 4-byte key (RFC 6455 5.3)."""
    frame = encode_frame(0x1, b"hello")
    assert frame[0] == 0x81 and frame[1] == 0x80 | 5 and len(frame) == 2 + 4 + 5
    assert frame[6:] != b"hello"
