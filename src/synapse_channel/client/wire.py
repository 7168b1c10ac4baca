"""A small RFC 6455 client transport on asyncio streams.

Why not the ``websockets`` client: agents run ``synapse send`` from hooks many
times a minute, and importing ``websockets`` (with the ``importlib.metadata``
it pulls in) costs about 60 ms, half of the command's start-up. The hub keeps
using ``websockets``; clients need only this subset: the upgrade handshake,
masked text frames, fragmentation, ping/pong and the close handshake. No
extensions are offered, so the hub never compresses.

A reader task owns the stream and queues whole messages, so :meth:`recv` can
be cancelled or time out without desynchronising the frame stream.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
from typing import Any
from urllib.parse import urlsplit

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 16 * 2**20
ABNORMAL = 1006


class WireClosed(Exception):
    """The connection is closed; ``code``/``reason`` come from the peer's close frame."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"closed ({code}) {reason}".strip())
        self.code = code
        self.reason = reason


class HandshakeError(OSError):
    """The server did not accept the WebSocket upgrade."""


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(n, "little")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    head = bytearray([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head.append(0x80 | n)
    elif n < 65536:
        head.append(0x80 | 126)
        head += struct.pack("!H", n)
    else:
        head.append(0x80 | 127)
        head += struct.pack("!Q", n)
    key = os.urandom(4)
    return bytes(head) + key + _mask(payload, key)


class WebSocketStream:
    """A client WebSocket connection over asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._messages: asyncio.Queue[str | bytes | WireClosed] = asyncio.Queue()
        self._close_sent = False
        self.closed: WireClosed | None = None
        self._task = asyncio.create_task(self._read_loop())

    @classmethod
    async def open(cls, uri: str, *, ssl_context: Any = None) -> WebSocketStream:
        """Connect to ``ws://`` or ``wss://`` ``uri`` and complete the upgrade."""
        parts = urlsplit(uri)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise HandshakeError(f"not a ws:// or wss:// URI: {uri!r}")
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        ssl_arg: Any = None
        if secure:
            import ssl

            ssl_arg = ssl_context or ssl.create_default_context()
        reader, writer = await asyncio.open_connection(
            parts.hostname, port, ssl=ssl_arg, server_hostname=parts.hostname if secure else None
        )
        try:
            await _handshake(reader, writer, parts.hostname, port, parts.path or "/", secure)
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer)

    async def send(self, text: str) -> None:
        """Send one text message."""
        if self.closed is not None or self._close_sent:
            raise self.closed or WireClosed(ABNORMAL, "")
        self._writer.write(encode_frame(OP_TEXT, text.encode()))
        try:
            await self._writer.drain()
        except (ConnectionError, OSError):
            raise WireClosed(ABNORMAL, "") from None

    async def recv(self) -> str | bytes:
        """The next whole message; raises :class:`WireClosed` once closed."""
        if self.closed is not None and self._messages.empty():
            raise self.closed
        item = await self._messages.get()
        if isinstance(item, WireClosed):
            self._messages.put_nowait(item)  # later calls see the close too
            raise item
        return item

    async def close(self, code: int = 1000, reason: str = "", timeout: float = 1.0) -> None:
        """Start the close handshake and wait (bounded) for the peer's answer."""
        if self.closed is None and not self._close_sent:
            self._close_sent = True
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                self._writer.write(encode_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()))
                await self._writer.drain()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    async def _read_loop(self) -> None:
        closed = WireClosed(ABNORMAL, "")
        try:
            closed = await self._read_messages()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except ValueError as exc:  # protocol violation by the peer
            closed = WireClosed(1002, str(exc))
        finally:
            self.closed = closed
            self._messages.put_nowait(closed)
            self._writer.close()  # the TCP connection is done either way

    async def _read_messages(self) -> WireClosed:
        buffer: list[bytes] = []
        kind = OP_TEXT
        size = 0
        while True:
            fin, opcode, payload = await self._read_frame()
            if opcode == OP_PING:
                self._writer.write(encode_frame(OP_PONG, payload))
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                return await self._on_close(payload)
            if opcode in (OP_TEXT, OP_BINARY):
                buffer, kind, size = [], opcode, 0
            elif opcode != OP_CONT:
                raise ValueError(f"unknown opcode {opcode}")
            buffer.append(payload)
            size += len(payload)
            if size > MAX_MESSAGE:
                raise ValueError("message too big")
            if fin:
                data = b"".join(buffer)
                self._messages.put_nowait(data.decode() if kind == OP_TEXT else data)

    async def _read_frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = await self._reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self._reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self._reader.readexactly(8))
        if n > MAX_MESSAGE:
            raise ValueError("frame too big")
        key = await self._reader.readexactly(4) if b1 & 0x80 else b""
        payload = await self._reader.readexactly(n)
        if key:
            payload = _mask(payload, key)
        return bool(b0 & 0x80), b0 & 0x0F, payload

    async def _on_close(self, payload: bytes) -> WireClosed:
        code, reason = 1005, ""
        if len(payload) >= 2:
            (code,) = struct.unpack("!H", payload[:2])
            reason = payload[2:].decode(errors="replace")
        if not self._close_sent:
            self._close_sent = True
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                self._writer.write(encode_frame(OP_CLOSE, payload[:2]))
                await self._writer.drain()
        return WireClosed(code, reason)


async def _handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int, path: str, secure: bool
) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    default_port = 443 if secure else 80
    authority = host if port == default_port else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        authority = f"[{host}]" if port == default_port else f"[{host}]:{port}"
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: synapse-channel\r\n\r\n"
    )
    writer.write(request.encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or status[1] != "101":
        raise HandshakeError(f"server refused the WebSocket upgrade: {lines[0]}")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()  # RFC 6455
    if headers.get("sec-websocket-accept") != expected:
        raise HandshakeError("server sent a wrong Sec-WebSocket-Accept")
