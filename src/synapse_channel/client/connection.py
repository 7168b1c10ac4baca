"""The async client every command uses: connect, register, request/reply, events.

Registration is pipelined: the registration heartbeat (and any first request)
is written as soon as the socket opens, without waiting for ``welcome``, so a
one-shot command costs one round trip. Close codes are classified once here
into :class:`HubClosed` with the exit code the CLI uses.

The transport rule lives here too, because every caller (CLI commands,
``syn-*`` scripts, assistant hooks, bundled plugins) connects through
:meth:`HubClient.connect`: a client that carries a secret (the hub token or a
seat credential in its registration) refuses plain ``ws://`` to a host that is
not this machine, before opening any socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..protocol import PROTOCOL_VERSION, SYSTEM_TARGET, client_frame
from .addresses import (
    GOING_DOWN,
    STANDBY_CLOSE,
    AddressError,
    describe_failure,
    listed,
    parse_addresses,
    standby_hint,
)
from .wire import WebSocketStream, WireClosed

DEFAULT_URI = "ws://localhost:8876"

# Exit codes shared by the CLI commands (see docs/cli.md).
EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_TIMEOUT = 2
EXIT_DROPPED = 3
EXIT_YIELD = 4

#: A registration field whose name contains one of these carries a secret.
SECRET_WORDS = ("token", "secret", "credential", "password")


class HubError(Exception):
    """A connection-level failure with the exit code a command should return."""

    exit_code = EXIT_REFUSED
    retryable = True


class InsecureTransport(HubError):
    """A secret would cross the network in clear text; refused before any socket was opened.

    Not worth retrying: nothing about it changes until the URI or the token does.
    """

    retryable = False


class Forbidden(HubError):
    """The hub refused a request this identity may not make (``error`` code FORBIDDEN).

    Not worth retrying: the same name asks the same thing of the same hub.
    """

    retryable = False


class HubUnreachable(HubError):
    """Nothing answered at the URI (or the handshake failed); with a list, at none of its addresses."""


class BadAddress(HubError):
    """The URI (list) is malformed: a usage error, not worth retrying."""

    retryable = False


class HubClosed(HubError):
    """The hub closed the socket; ``code`` and ``reason`` say why."""

    def __init__(self, code: int | None, reason: str, *, ready: bool) -> None:
        self.code = code
        self.reason = reason
        self.ready = ready
        self.exit_code, message = classify_close(code, reason, ready=ready)
        super().__init__(message)


def classify_close(code: int | None, reason: str, *, ready: bool) -> tuple[int, str]:
    """Map a close code (and the reason text, which disambiguates) to exit code and text."""
    r = (reason or "").lower()
    if code == 4010 and "not granted" in r:
        return (
            EXIT_REFUSED,
            "this seat may not use that name; pass --name with a name the seat owns (synapse seat list)",
        )
    if code == 4010 and ("revoked" in r or "requires a seat" in r):
        return EXIT_REFUSED, f"the hub closed this connection ({reason}); ask its owner for a seat secret"
    if code == 4010 and "auth" in r:
        return EXIT_REFUSED, "authentication rejected by the secured hub; pass a valid --token or --token-file"
    if code == 4013 and "identity" in r:
        return EXIT_REFUSED, f"the hub refused this name ({reason}); see docs/security.md for the name grammar"
    if code == 4010:
        return EXIT_YIELD, "superseded by a newer connection with this name; yielding"
    if code == 4016:
        return EXIT_YIELD, "name is owned by another session; yielding"
    if code == 4014:
        return EXIT_YIELD, "another connection just took this name over (takeover cooldown); yielding"
    if code == 4009:
        return EXIT_REFUSED, "name already online from another session; use a unique --name"
    if code == 4012:
        return EXIT_REFUSED, "the hub timed out waiting for authentication"
    if code == 4013:
        return EXIT_REFUSED, "the hub is at capacity (--max-clients)"
    if code == 4015:
        return EXIT_REFUSED, "too many connections from this host (--max-connections-per-host)"
    if code == STANDBY_CLOSE:
        return (EXIT_DROPPED if ready else EXIT_REFUSED), f"the hub is a standby now ({reason or 'no leader named'})"
    if ready:
        return EXIT_DROPPED, "connection closed; re-arm the waiter"
    return EXIT_REFUSED, f"the hub closed the connection (code {code}) before it was ready"


def new_client_msg_id() -> str:
    """A unique id the hub echoes in the receipt."""
    return f"cli-{uuid.uuid4().hex}"


@dataclass(slots=True)
class HubClient:
    """One registered connection to a hub.

    ``uri`` may be a comma-separated list: :meth:`connect` tries each address
    in order and follows a standby's leader hint when it names one of them;
    ``address`` is the one that welcomed us.
    """

    uri: str
    name: str
    token: str | None = None
    wake_capability: str = "direct"
    registration: dict[str, Any] = field(default_factory=dict)
    ready_timeout: float = 5.0
    ws: WebSocketStream | None = None
    welcome: dict[str, Any] | None = None
    backlog: list[dict[str, Any]] = field(default_factory=list)
    pm: Any = None
    closed_by: tuple[int | None, str] | None = None
    #: The address that welcomed this client (one element of ``uri``); None before.
    address: str | None = None
    #: An address of ``uri`` to try first (a leader a standby named when it dropped us).
    prefer: str | None = None

    @property
    def hub_id(self) -> str:
        """The hub's id from ``welcome`` ("unknown" before it arrives)."""
        return str((self.welcome or {}).get("hub_id", "unknown"))

    def frame(self, ftype: str, target: str = SYSTEM_TARGET, payload: Any = "", **extra: Any) -> dict[str, Any]:
        """A frame from this client, stamped now."""
        return client_frame(ftype, self.name, target, payload, time.time(), **extra)

    def registration_frame(self) -> dict[str, Any]:
        """The first frame: binds the name and carries token and options."""
        extra: dict[str, Any] = {"wake_capability": self.wake_capability, "protocol_version": PROTOCOL_VERSION}
        if self.token:
            extra["token"] = self.token
        extra.update(self.registration)
        return self.frame("heartbeat", payload="online", **extra)

    def carries_secret(self) -> bool:
        """True when registering would send a credential (the token, or a secret-looking registration field)."""
        return bool(self.token) or any(
            value and any(word in key.lower() for word in SECRET_WORDS) for key, value in self.registration.items()
        )

    def addresses(self) -> tuple[str, ...]:
        """The addresses of ``uri`` in order; :class:`BadAddress` for a malformed element."""
        try:
            return parse_addresses(self.uri)
        except AddressError as exc:
            raise BadAddress(str(exc)) from None

    def check_transport(self) -> None:
        """Raise :class:`InsecureTransport` if registering would send a secret over plain ``ws://`` off-machine.

        Every configured address is checked before any socket opens: the
        list is tried in an order the hubs influence, so one bad element
        is a bad configuration, not a fallback.
        """
        if self.carries_secret():
            from ..trust import transport_problem

            for uri in self.addresses():
                problem = transport_problem(uri)
                if problem is not None:
                    raise InsecureTransport(problem)

    async def connect(self, *pipelined: dict[str, Any]) -> dict[str, Any]:
        """Open, register, send ``pipelined`` frames, and wait for ``welcome``.

        Raises :class:`InsecureTransport` (before connecting) when the
        registration carries a secret and an address is plain ``ws://`` to a
        non-loopback host. With several addresses, one that refuses, times
        out or is a standby (close 4018) passes the turn to the next; a
        standby's leader hint is tried next when it is one of the addresses,
        and never otherwise. When every address fails, :class:`HubUnreachable`
        names each and why, on one line. Any other refusal (a name in use, a
        bad credential) is the hub's answer and is raised at once.
        """
        addresses = self.addresses()
        self.check_transport()
        order = list(addresses)
        if self.prefer in order:
            order.remove(self.prefer)
            order.insert(0, self.prefer)
        tried: list[str] = []
        failures: list[str] = []
        last_close: HubClosed | None = None
        while order:
            uri = order.pop(0)
            if uri in tried:
                continue
            tried.append(uri)
            try:
                return await self._connect_one(uri, pipelined)
            except HubUnreachable as exc:
                self.address = None
                failures.append(f"{uri} ({exc})")
            except HubClosed as exc:
                await self.close()
                self.address = None
                hint = standby_hint(exc.code, exc.reason)
                if hint is None and exc.code in GOING_DOWN:
                    last_close = exc  # a hub on its way down: the next address may be its successor
                    failures.append(f"{uri} (closed before welcome, code {exc.code})")
                    continue
                if hint is None:
                    raise
                leader = listed(hint, addresses)
                if leader is not None and leader not in tried:
                    order.insert(0, leader)
                    failures.append(f"{uri} (a standby; its leader {leader} was tried next)")
                elif leader is not None:
                    failures.append(f"{uri} (a standby; its leader {leader} failed too)")
                elif hint:
                    failures.append(
                        f"{uri} (a standby; its leader {hint} is not in your hub URI list, so it was not contacted:"
                        " add it to --uri/SYNAPSE_URI/[hub] uri if you trust it)"
                    )
                else:
                    failures.append(f"{uri} (a standby; no leader elected yet)")
        if len(failures) == 1 and last_close is not None:
            raise last_close
        if len(failures) == 1:
            raise HubUnreachable(f"could not reach hub at {failures[0]}")
        raise HubUnreachable("could not reach any hub: " + "; ".join(failures))

    async def _connect_one(self, uri: str, pipelined: tuple[dict[str, Any], ...]) -> dict[str, Any]:
        """Connect to one address; :class:`HubUnreachable` carries only the reason (the caller names ``uri``)."""
        self.ws, self.welcome, self.backlog, self.closed_by = None, None, [], None
        try:
            self.ws = await asyncio.wait_for(WebSocketStream.open(uri), self.ready_timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            raise HubUnreachable(describe_failure(exc)) from None
        self.address = uri
        try:
            await self.send(self.registration_frame())
            for frame in pipelined:
                await self.send(frame)
            deadline = time.monotonic() + self.ready_timeout
            while True:
                got = await self._recv(deadline, ready=False)
                if got is None:
                    raise HubUnreachable(f"no welcome within {self.ready_timeout:g}s")
                if got.get("type") == "welcome":
                    self.welcome = got
                    await self._notify("client_connected", welcome=got)
                    return got
                self.backlog.append(got)
        except HubUnreachable:
            await self.close()
            raise

    async def send(self, frame: dict[str, Any]) -> None:
        """Write one frame."""
        assert self.ws is not None
        try:
            await self.ws.send(json.dumps(frame, separators=(",", ":")))
        except WireClosed as exc:
            raise self._closed(exc, ready=self.welcome is not None) from None

    async def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next frame (backlog first); None on timeout. Raises :class:`HubClosed`."""
        if self.backlog:
            return self.backlog.pop(0)
        deadline = None if timeout is None else time.monotonic() + timeout
        return await self._recv(deadline, ready=True)

    async def recv_until(self, stop: asyncio.Event) -> dict[str, Any] | None:
        """The next frame, or None once ``stop`` is set (for long-lived listeners)."""
        if stop.is_set():
            return None
        reader = asyncio.ensure_future(self.recv())
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if reader not in done:
            reader.cancel()
            return None
        return reader.result()

    async def _recv(self, deadline: float | None, *, ready: bool) -> dict[str, Any] | None:
        assert self.ws is not None
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            try:
                data = await asyncio.wait_for(self.ws.recv(), remaining)
            except TimeoutError:
                return None
            except WireClosed as exc:
                raise self._closed(exc, ready=ready) from None
            try:
                frame = json.loads(data)
            except ValueError:
                continue
            if isinstance(frame, dict):
                return frame

    async def request(
        self, frame: dict[str, Any], match: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any] | None:
        """Send ``frame`` and return the first reply ``match`` accepts (None on timeout)."""
        await self.send(frame)
        return await self.wait_for(match, timeout)

    async def follow_pages(
        self,
        reply: dict[str, Any],
        next_request: Callable[[dict[str, Any]], dict[str, Any] | None],
        match: Callable[[dict[str, Any]], bool],
        timeout: float,
        max_pages: int = 100_000,
    ) -> list[dict[str, Any]]:
        """``reply`` and every page after it: the hub splits long replies by bytes (``has_more``).

        ``next_request`` builds the request for the page after the one it is
        given, or returns None when that page was the last. A page that does
        not arrive in time ends the walk (the caller has what came).
        """
        pages = [reply]
        while len(pages) < max_pages and (frame := next_request(pages[-1])) is not None:
            page = await self.request(frame, match, timeout)
            if page is None:
                break
            pages.append(page)
        return pages

    async def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        """Return the first incoming frame ``match`` accepts (None on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(max(0.0, deadline - time.monotonic()))
            if frame is None:
                return None
            if match(frame):
                return frame

    def _closed(self, exc: WireClosed, *, ready: bool) -> HubClosed:
        self.closed_by = (exc.code, exc.reason)
        return HubClosed(exc.code, exc.reason, ready=ready)

    async def _notify(self, hook: str, **kwargs: Any) -> None:
        """Run a client hook with ``client`` as a :class:`~synapse_channel.events.ClientInfo` (never this object)."""
        if self.pm is not None:
            from ..dispatch import notify
            from ..events import ClientInfo

            await notify(self.pm, hook, client=ClientInfo(self.name, self.address or self.uri, self.hub_id), **kwargs)

    async def close(self) -> None:
        """Say goodbye with 1000 (errors on an already-dead socket are ignored)."""
        if self.ws is not None:
            with contextlib.suppress(Exception):  # the socket may already be gone
                await self.ws.close()
            if self.welcome is not None:
                code, reason = self.closed_by or (None, "")
                await self._notify("client_disconnected", code=code, reason=reason)
            self.ws = None


def next_after(client: HubClient, ftype: str, **fields: Any) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """For :meth:`HubClient.follow_pages`: ask ``ftype`` again with ``after`` set to a cut page's ``cursor``."""

    def build(page: dict[str, Any]) -> dict[str, Any] | None:
        cursor = page.get("cursor")
        if page.get("has_more") is not True or not isinstance(cursor, str):
            return None
        return client.frame(ftype, after=cursor, **fields)

    return build


def merge_pages(pages: list[dict[str, Any]], holder: str, *keys: str) -> dict[str, Any]:
    """The ``holder`` body of the first page with the ``keys`` lists of every page joined."""
    body = dict(pages[0].get(holder) or {})
    for key in keys:
        body[key] = [item for page in pages for item in (page.get(holder) or {}).get(key, [])]
    return body


#: The name-keyed maps of a paged ``who_snapshot`` (``online_agents`` is its name list).
WHO_MAPS = ("agent_roles", "agent_liveness", "wake_capabilities", "mailbox_pending")


def merge_who(pages: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``who_snapshot`` from the pages the hub split it into by name (``has_more``)."""
    whole = dict(pages[0])
    whole["online_agents"] = [n for p in pages for n in p.get("online_agents") or []]
    for key in WHO_MAPS:
        if isinstance(pages[0].get(key), dict):
            whole[key] = {k: v for p in pages for k, v in (p.get(key) or {}).items()}
    whole.pop("has_more", None)
    whole.pop("cursor", None)
    return whole


async def whole_snapshot(client: HubClient, frame: dict[str, Any], timeout: float = 2.0) -> dict[str, Any]:
    """A ``state_snapshot`` or ``board_snapshot`` with the pages the hub split off (``has_more``) joined."""
    ftype = frame.get("type")
    if ftype not in ("state_snapshot", "board_snapshot") or not frame.get("has_more"):
        return frame
    verb, holder, keys = (
        ("state_request", "snapshot", ("active_claims",))
        if ftype == "state_snapshot"
        else ("board_request", "board", ("tasks", "ready"))
    )
    pages = await client.follow_pages(frame, next_after(client, verb), lambda f: f.get("type") == ftype, timeout)
    return {**frame, holder: merge_pages(pages, holder, *keys)}
