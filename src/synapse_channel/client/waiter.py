"""The wake loop primitive behind ``synapse wait``.

A waiter connects as ``X-rx`` with takeover, asks the hub's mailbox for every
directed message after its cursor, and exits as soon as something for ``X``
arrives, so the assistant that started it is re-invoked. The cursor is
advanced (and the hub acked) only past messages that were actually printed,
so a message is surfaced exactly once even across hub restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocol import WakeFilter, is_one_to_many
from .connection import (
    EXIT_DROPPED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_TIMEOUT,
    Forbidden,
    HubClient,
    HubError,
    HubUnreachable,
)

STALE_REPLAY_SECONDS = 900
DRAIN_WINDOW = 0.01
RETRY_MIN, RETRY_MAX = 0.2, 5.0
#: With several addresses the gap is a failover measured in seconds: retry sooner (a refusal costs ~nothing).
RETRY_MAX_FAILOVER = 2.0


@dataclass(slots=True)
class WaitSpec:
    """What to wait for and how."""

    uri: str
    for_name: str
    connect_name: str
    token: str | None = None
    timeout: float = 0.0  # 0 waits forever, across hub restarts
    directed_only: bool = False
    jitter: float = 8.0
    roles: tuple[str, ...] = ()
    mailbox: bool = True
    cursor_path: Path | None = None
    pm: Any = None
    ack: bool = True  # False: a bystander (a tmux bridge) that must not move the identity's hub watermark
    quiet: bool = False  # no status lines on stderr (the API reports through exceptions instead)
    as_json: bool = False  # print the wake as one JSON object (``synapse wait --json``) instead of text lines


@dataclass(slots=True)
class Waiter:
    """One ``synapse wait`` run; :meth:`run` returns the exit code."""

    spec: WaitSpec
    seen: set[int] = field(default_factory=set)
    cursor: int = 0
    final: bool = False  # the last attempt failed in a way retrying cannot fix (an insecure transport)
    #: Where surfaced frames go (default: printed on stdout, as lines or ``as_json``).
    output: Callable[[list[dict[str, Any]]], None] | None = None
    #: The failure behind the last non-zero exit code (None after a wake or a timeout).
    error: HubError | None = None
    #: The configured address to try first on the next attempt (the leader a stepping-down hub named).
    prefer: str | None = None

    @property
    def last_error(self) -> str:
        """What the last failed attempt said (for ``--json``)."""
        return "" if self.error is None else str(self.error)

    @property
    def last_unreachable(self) -> bool:
        """Whether nothing answered at all on the last failed attempt."""
        return isinstance(self.error, HubUnreachable)

    def __post_init__(self) -> None:
        from ..paths import read_int

        if self.spec.cursor_path is not None:
            self.cursor = read_int(self.spec.cursor_path)

    @property
    def filter(self) -> WakeFilter:
        """The client-side wake rule for this waiter."""
        s = self.spec
        return WakeFilter(s.for_name, s.connect_name, s.roles, s.directed_only)

    async def run(self) -> int:
        """Wait once (or forever with ``timeout=0``, re-arming after drops).

        With several hub addresses (a failover pair), a bounded wait also
        re-arms after its connection drops, on whichever address answers
        (or the leader a standby names), until its deadline: the cursor is
        the same, so nothing is lost and nothing surfaces twice.
        """
        deadline = None if self.spec.timeout <= 0 else time.monotonic() + self.spec.timeout
        delay = RETRY_MIN
        connected_once = False
        failover = len(_split(self.spec.uri)) > 1
        while True:
            code = await self._attempt(deadline)
            if code is None:
                connected_once = True
                code = EXIT_DROPPED
            if self.final or code not in (EXIT_DROPPED, EXIT_REFUSED):
                return code
            if deadline is not None:
                riding = failover and connected_once and (code == EXIT_DROPPED or self.last_unreachable)
                if not riding or time.monotonic() + delay >= deadline:
                    return code
            if code == EXIT_REFUSED and not connected_once:
                pass  # unbounded waits also ride out a hub that is not up yet
            await asyncio.sleep(delay * (0.5 + random.random()))  # jitter, not crypto
            delay = min(RETRY_MAX_FAILOVER if failover else RETRY_MAX, delay * 2)

    async def _attempt(self, deadline: float | None) -> int | None:
        """One connection. None means it dropped after being ready (re-arm)."""
        s = self.spec
        registration: dict[str, Any] = {"takeover": True}
        if s.roles:
            registration["roles"] = list(s.roles)
        if s.mailbox:
            registration.update(mailbox=True, since_seq=self.cursor, mailbox_for=s.for_name)
        client = HubClient(
            s.uri,
            s.connect_name,
            token=s.token,
            wake_capability="passive",
            registration=registration,
            pm=s.pm,
            prefer=self.prefer,
        )
        self.prefer = None
        try:
            await client.connect()
            at = f" at {client.address}" if client.address and client.address != s.uri else ""  # a list: say which
            self._say(f"waiting for messages to {s.for_name}{at}")
            frames = await self._collect(client, deadline)
            self.error = None
            if frames is None:
                return EXIT_TIMEOUT
            self._surface(frames)
            await self._ack(client, frames)
            return EXIT_OK
        except HubError as exc:
            self.error = exc
            where = client.address or s.uri
            self._say(str(exc) if isinstance(exc, HubUnreachable) else f"{exc} ({where})")
            self.final = not exc.retryable
            if getattr(exc, "ready", False) and exc.exit_code == EXIT_DROPPED:
                self.prefer = _leader(exc, s.uri)
                return None
            return exc.exit_code
        finally:
            await client.close()

    async def _collect(self, client: HubClient, deadline: float | None) -> list[dict[str, Any]] | None:
        """Frames that wake us, in ``seq`` order; None on timeout.

        A connection that drops during the jitter or drain window still
        surfaces what was collected: a wake is never thrown away.
        """
        wake = self.filter
        frames: list[dict[str, Any]] = []
        batch: set[int] = set()
        while not frames:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining == 0.0:
                return None
            frame = await client.recv(remaining)
            if frame is None:
                return None
            if frame.get("type") == "error" and frame.get("code") == "FORBIDDEN":
                raise Forbidden(f"the hub refused: {frame.get('payload')}")  # e.g. --for another identity
            if wake.wakes(frame) and self._fresh(frame, batch):
                frames.append(frame)
        delay = self._delay(frames[0])
        if self.spec.pm is not None:
            from ..dispatch import notify

            await notify(self.spec.pm, "wake_requested", identity=self.spec.for_name, frame=frames[0], delay=delay)
        until = time.monotonic() + max(delay, DRAIN_WINDOW)
        try:
            while (remaining := until - time.monotonic()) > 0:
                frame = await client.recv(remaining)
                if frame is not None and wake.wakes(frame) and self._fresh(frame, batch):
                    frames.append(frame)
        except HubError:
            pass  # the wake stands; the cursor is saved locally and the next ack catches the hub up
        return sorted(frames, key=lambda f: f["seq"] if isinstance(f.get("seq"), int) else 0)

    def _fresh(self, frame: dict[str, Any], batch: set[int]) -> bool:
        """Not surfaced before (``seen`` holds only printed seqs) and not already in this batch."""
        seq = frame.get("seq")
        if not isinstance(seq, int):
            return True
        if seq in self.seen or seq in batch or (frame.get("replayed") and seq <= self.cursor):
            return False
        batch.add(seq)
        return True

    def _delay(self, frame: dict[str, Any]) -> float:
        """The wake delay: the ``wake_delay`` hook, else immediate for directed wakes."""
        target = str(frame.get("target", ""))
        one_to_many = is_one_to_many(target) or ("/" not in target and "/" in self.spec.for_name)
        if self.spec.pm is not None:
            from ..dispatch import decide

            value = decide(
                self.spec.pm,
                "wake_delay",
                None,
                identity=self.spec.for_name,
                frame=frame,
                one_to_many=one_to_many,
                jitter=self.spec.jitter,
            )
            if value is not None:
                return max(0.0, float(value))
        return random.uniform(0, self.spec.jitter) if one_to_many and self.spec.jitter > 0 else 0.0

    def _say(self, message: str) -> None:
        if not self.spec.quiet:
            _say(self.spec.connect_name, message)

    def _surface(self, frames: list[dict[str, Any]]) -> None:
        """Hand the frames to ``output``, or print each as ``sender: payload`` and flush before anything else."""
        self.seen.update(f["seq"] for f in frames if isinstance(f.get("seq"), int))
        if self.output is not None:
            self.output(frames)
            return
        now = time.time()
        lines = []
        for f in frames:
            prefix = ""
            ts = f.get("timestamp")
            if f.get("replayed") and isinstance(ts, int | float) and now - ts > STALE_REPLAY_SECONDS:
                prefix = f"[replayed {int((now - ts) // 60)}m ago] "
            lines.append(f"{prefix}{f.get('sender')}: {f.get('payload')}")
        if self.spec.as_json:
            import json

            lines = [json.dumps({"ok": True, "outcome": "woken", "messages": frames}, sort_keys=True, default=str)]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()

    async def _ack(self, client: HubClient, frames: list[dict[str, Any]]) -> None:
        """Advance the cursor past what was printed and tell the hub."""
        seqs = [f["seq"] for f in frames if isinstance(f.get("seq"), int)]
        if not seqs or not self.spec.mailbox:
            return
        top = max(seqs)
        if top > self.cursor:
            self.cursor = top
            if self.spec.cursor_path is not None:
                from ..paths import write_private

                write_private(self.spec.cursor_path, f"{top}\n")
        if self.spec.ack:
            with contextlib.suppress(HubError):  # the cursor is saved; the hub catches up on the next ack
                await client.send(client.frame("ack", "all", "", seq=top, mailbox_for=self.spec.for_name))
        if self.spec.pm is not None:
            from ..dispatch import notify

            await notify(self.spec.pm, "wake_delivered", identity=self.spec.for_name, frames=frames)


def _split(uri: str) -> list[str]:
    from .addresses import split_addresses

    return split_addresses(uri)


def _leader(exc: HubError, uri: str) -> str | None:
    """The configured address a hub named as leader when it dropped us with the standby close, else None."""
    from .addresses import AddressError, listed, parse_addresses, standby_hint

    hint = standby_hint(getattr(exc, "code", None), getattr(exc, "reason", ""))
    if not hint:
        return None
    try:
        return listed(hint, parse_addresses(uri))
    except AddressError:
        return None


def _say(name: str, message: str) -> None:
    sys.stderr.write(f"[{name}] {message}\n")
    sys.stderr.flush()
