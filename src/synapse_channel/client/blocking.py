"""A blocking, asyncio-free hub client for hooks that run on every commit or edit.

Why a second client: importing asyncio alone costs 40-60 ms on a loaded
machine, which is more than the git guard's whole budget. A guard asks one
question and reads one answer, so plain sockets are enough: the upgrade
handshake, masked text frames, fragmentation, ping/pong and close. The
registration frame and the transport rule (no secret over plain ``ws://``
off this machine) are the same as :class:`~synapse_channel.client.connection.HubClient`'s.
"""

from __future__ import annotations

import binascii
import json
import os
import socket
import struct
import time
from urllib.parse import urlsplit

from ..protocol import PROTOCOL_VERSION, SYSTEM_TARGET, client_frame

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a commit ~3 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Frame = dict[str, Any]

OP_CONT, OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x8, 0x9, 0xA
MAX_MESSAGE = 16 * 2**20


class Unreachable(OSError):
    """No hub answered (refused, timed out, not a WebSocket server, closed before welcome)."""


class Insecure(ValueError):
    """A secret would cross the network in clear text; refused before connecting."""


class _Closed(Exception):
    """The peer's close frame (internal: :meth:`BlockingClient.recv` decides what it means)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(n, "little")


def _frame(opcode: int, payload: bytes) -> bytes:
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


class BlockingClient:
    """One short-lived registered connection: ``open``, ``request``, ``close``."""

    def __init__(
        self, uri: str, name: str, *, token: str | None = None, timeout: float = 3.0, quiet: bool = True
    ) -> None:
        self.uri, self.name, self.token, self.timeout = uri, name, token, timeout
        self.quiet = quiet
        self.sock: socket.socket | None = None
        self._buf = b""
        #: The address that answered (one element of ``uri``, which may be a comma-separated list).
        self.address: str | None = None
        self._addresses: tuple[str, ...] = ()
        self._order: list[str] = []
        self._tried: list[str] = []
        self._failures: list[str] = []
        self._pipelined: tuple[Frame, ...] = ()
        self._welcomed = False

    def frame(self, ftype: str, target: str = SYSTEM_TARGET, payload: Any = "", **extra: Any) -> Frame:
        """A frame from this client, stamped now."""
        return client_frame(ftype, self.name, target, payload, time.time(), **extra)

    def open(self, *pipelined: Frame) -> None:
        """Connect, register and write ``pipelined`` frames without waiting for ``welcome``.

        With a list of addresses the first that accepts the socket is used; a
        standby's close (or a close before ``welcome``) is noticed by
        :meth:`recv`, which moves on to the next address (or the standby's
        leader, when it is in the list) and writes ``pipelined`` again there.
        """
        from .addresses import AddressError, parse_addresses

        try:
            self._addresses = parse_addresses(self.uri)
        except AddressError as exc:
            raise Unreachable(str(exc)) from None
        if self.token:
            from ..trust import transport_problem

            for uri in self._addresses:
                problem = transport_problem(uri)
                if problem is not None:
                    raise Insecure(problem)
        self._order = list(self._addresses)
        self._pipelined = pipelined
        self._open_next()

    def _open_next(self) -> None:
        """Open the next untried address and write the registration and pipelined frames there."""
        while self._order:
            uri = self._order.pop(0)
            if uri in self._tried:
                continue
            self._tried.append(uri)
            try:
                self._open_one(uri)
            except (OSError, ValueError) as exc:
                self.close()
                from .addresses import describe_failure

                self._failures.append(f"{uri} ({describe_failure(exc)})")
                continue
            self.address = uri
            return
        self._give_up()

    def _give_up(self) -> None:
        if len(self._failures) == 1:
            raise Unreachable(f"could not reach hub at {self._failures[0]}")
        raise Unreachable("could not reach any hub: " + "; ".join(self._failures))

    def _open_one(self, uri: str) -> None:
        parts = urlsplit(uri)
        secure = parts.scheme == "wss"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        self._buf = b""
        # an ASCII host name as bytes: a str one makes getaddrinfo load the idna codec (~1 ms)
        address = host.encode() if host.isascii() else host
        sock = socket.create_connection((address, port), timeout=self.timeout)  # type: ignore[arg-type]
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small writes: no Nagle/delayed-ACK stall
        if secure:
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self._handshake(parts.netloc or host, parts.path or "/")
        extra: dict[str, Any] = {"wake_capability": "direct", "protocol_version": PROTOCOL_VERSION}
        if self.token:
            extra["token"] = self.token
        if self.quiet:
            extra["quiet"] = True
        frames = (self.frame("heartbeat", payload="online", **extra), *self._pipelined)
        self.sock.sendall(b"".join(_frame(OP_TEXT, json.dumps(f, separators=(",", ":")).encode()) for f in frames))

    def _lost_before_welcome(self, why: str, code: int | None, reason: str) -> None:
        """The hub at ``address`` went away before welcoming us: try the next address (or give up)."""
        from .addresses import listed, standby_hint

        uri = self.address or self.uri
        self.close()
        self.address = None
        hint = standby_hint(code, reason)
        leader = listed(hint, self._addresses) if hint else None
        if leader is not None and leader not in self._tried:
            self._order.insert(0, leader)
            self._failures.append(f"{uri} (a standby; its leader {leader} was tried next)")
        elif hint and leader is None:
            self._failures.append(f"{uri} (a standby; its leader {hint} is not in your hub URI list, not contacted)")
        elif hint is not None:
            self._failures.append(f"{uri} (a standby; no leader {'reachable' if hint else 'elected yet'})")
        else:
            self._failures.append(f"{uri} ({why})")
        self._open_next()

    def _handshake(self, netloc: str, path: str) -> None:
        assert self.sock is not None
        key = binascii.b2a_base64(os.urandom(16), newline=False).decode()  # not base64: one import fewer
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self._buf:
            chunk = self.sock.recv(4096)
            if not chunk or len(self._buf) > 65536:
                raise ValueError("the server did not complete the WebSocket upgrade")
            self._buf += chunk
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ValueError(f"upgrade refused: {head.splitlines()[0].decode(errors='replace')}")

    def send(self, frame: Frame) -> None:
        """Write one text frame."""
        assert self.sock is not None
        self.sock.sendall(_frame(OP_TEXT, json.dumps(frame, separators=(",", ":")).encode()))

    def _read(self, n: int, deadline: float) -> bytes:
        assert self.sock is not None
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise ConnectionError("the hub closed the connection")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def recv(self, deadline: float) -> Frame | None:
        """The next JSON object frame; None at ``deadline``. Raises ConnectionError on close.

        Before ``welcome``, a close (a standby's 4018, a hub going down) moves
        on to the next address instead; :class:`Unreachable` when none is left.
        """
        while True:
            try:
                frame = self._recv_one(deadline)
            except _Closed as exc:
                from .addresses import GOING_DOWN, STANDBY_CLOSE

                if self._welcomed or exc.code not in (*GOING_DOWN, STANDBY_CLOSE):
                    raise ConnectionError(f"the hub closed the connection {exc.reason}".strip()) from None
                self._lost_before_welcome(f"closed before welcome, code {exc.code}", exc.code, exc.reason)
                continue
            except ConnectionError as exc:
                if self._welcomed:
                    raise
                self._lost_before_welcome(str(exc), None, "")
                continue
            if frame is not None and frame.get("type") == "welcome":
                self._welcomed = True
            return frame

    def _recv_one(self, deadline: float) -> Frame | None:
        message = b""
        while True:
            try:
                b0, b1 = self._read(2, deadline)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self._read(2, deadline))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self._read(8, deadline))[0]
                if n > MAX_MESSAGE:
                    raise ConnectionError("message too large")
                payload = self._read(n, deadline)
            except TimeoutError:
                return None
            opcode = b0 & 0x0F
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise _Closed(code, payload[2:].decode(errors="replace") if len(payload) >= 2 else "")
            if opcode == OP_PING:
                assert self.sock is not None
                self.sock.sendall(_frame(OP_PONG, payload))
                continue
            if opcode not in (OP_TEXT, OP_CONT):
                continue
            message += payload
            if not b0 & 0x80:
                continue
            try:
                obj = json.loads(message)
            except ValueError:
                obj = None
            message = b""
            if isinstance(obj, dict):
                return obj

    def wait_for(self, match: Callable[[Frame], bool], timeout: float | None = None) -> Frame | None:
        """The first frame ``match`` accepts, or an ``error`` addressed to this client; None on timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while (frame := self.recv(deadline)) is not None:
            if match(frame) or (frame.get("type") == "error" and frame.get("target") in (self.name, "self")):
                return frame
        return None

    def close(self) -> None:
        """Send a close frame and drop the socket (errors ignored: the hook is done)."""
        if self.sock is not None:
            try:  # noqa: SIM105 - not contextlib: one import fewer on every commit
                self.sock.sendall(_frame(OP_CLOSE, struct.pack("!H", 1000)))
            except OSError:
                pass
            self.sock.close()
            self.sock = None
