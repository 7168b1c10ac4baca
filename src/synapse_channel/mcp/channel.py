"""Claude Code channel push (``synapse mcp serve --channel``): new mail into a running session.

Claude Code's channels (research preview) let a stdio MCP server that
declares the experimental ``claude/channel`` capability send
``notifications/claude/channel`` notifications (``{"content": TEXT,
"meta": {KEY: VALUE}}``); Claude Code queues each as the next prompt of the
session, wrapped as ``<channel source="SERVER" KEY="VALUE" ...>TEXT</channel>``,
so an idle session wakes. Meta keys must be identifiers (letters, digits,
``_``): Claude Code drops any other key.

While the MCP session is open, :class:`Channel` waits for directed mail to
the server's identity the way ``synapse wait`` does (the ``IDENTITY-rx``
receiver, directed and priority mail only, the identity's mailbox cursor) and
pushes each message as one notification. A message is handed over once,
whichever path gets it first: the decision, the push and the cursor move
happen under the same cursor lock the Stop, prompt and idle-wait hooks take,
so a message pushed here is not handed over again by a hook (and one a hook
took is not pushed). Pushed messages are acked, like every other hand-over.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import mcp.types as types
from pydantic import BaseModel

from synapse_channel import api

if TYPE_CHECKING:
    from .server import Tools

#: The capability key Claude Code looks for under ``capabilities.experimental``.
CAPABILITY = "claude/channel"
METHOD = "notifications/claude/channel"
#: What the server declares with ``--channel``.
EXPERIMENTAL: dict[str, dict[str, Any]] = {CAPABILITY: {}}
#: The flag that lets Claude Code load a channel server that is not on Anthropic's allowlist.
DEV_FLAG = "--dangerously-load-development-channels"
#: The name ``synapse mcp install`` gives the server in Claude Code's config (``server:synapse``).
SERVER_NAME = "synapse"
#: Seconds one push may take before the client counts as not reading (the hooks' lock is held meanwhile).
SEND_TIMEOUT = 10.0
#: Backoff bounds (seconds) for taking the receiver back after another waiter took it over.
RETAKE_MIN, RETAKE_MAX = 1.0, 30.0


class ChannelParams(BaseModel):
    """The notification's params as Claude Code validates them: text, and string-to-string meta."""

    content: str
    meta: dict[str, str] = {}


class ChannelNotification(types.Notification[dict[str, Any], Literal["notifications/claude/channel"]]):
    """``notifications/claude/channel``: a vendor method, sent like the SDK's own notifications.

    Its params are a plain dict (``ChannelParams`` dumped): the SDK's params
    base class reserves the attribute ``meta`` for ``_meta``.
    """

    method: Literal["notifications/claude/channel"] = "notifications/claude/channel"


def render(m: api.Message) -> ChannelParams:
    """One message as a channel event: ``sender -> target: text``, and its facts as meta attributes."""
    meta = {
        "sender": m.sender,
        "target": m.target,
        "seq": str(m.seq),
        "priority": "true" if m.priority else "false",
        "sent_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(m.timestamp)) if m.timestamp else "",
    }
    mark = "[priority] " if m.priority else ""
    return ChannelParams(content=f"{mark}{m.sender} -> {m.target}: {m.text}", meta=meta)


def _note(message: str) -> None:
    """A line on stderr (Claude Code keeps a server's stderr in its MCP logs)."""
    sys.stderr.write(f"synapse mcp channel: {message}\n")
    sys.stderr.flush()


def _argv(pid: int) -> tuple[int, list[str]] | None:
    """(parent pid, argv) of ``pid`` from ``/proc``, else ``ps``; None when neither answers."""
    import subprocess

    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return ppid, [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    except (OSError, IndexError, ValueError):
        pass
    try:  # no /proc (macOS, BSD): ps splits the command line on spaces, enough to read flags
        out = subprocess.run(
            ["ps", "-o", "ppid=", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5
        )
        ppid_text, _, command = out.stdout.strip().partition(" ")
        return int(ppid_text), command.split()
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def dev_channels(argv: list[str]) -> list[str]:
    """The entries given to ``--dangerously-load-development-channels`` in ``argv`` (space- or =-separated)."""
    found: list[str] = []
    for i, arg in enumerate(argv):
        if arg.startswith(DEV_FLAG + "="):
            found += arg.split("=", 1)[1].split()
        elif arg == DEV_FLAG:
            for value in argv[i + 1 :]:
                if value.startswith("-"):
                    break
                found += value.split()
    return found


#: Claude Code's provider switches (inherited by its MCP servers); channels need Anthropic's own API.
THIRD_PARTY = (
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
    "CLAUDE_CODE_USE_ANTHROPIC_AWS",
    "CLAUDE_CODE_USE_MANTLE",
)
#: Where Claude Code reads the managed-settings file, per platform.
MANAGED_DIRS = {"darwin": "/Library/Application Support/ClaudeCode", "win32": "C:\\Program Files\\ClaudeCode"}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _policy_gate() -> str:
    """Why the organisation's managed-settings file turns channels off, or "" (also when there is none).

    Claude Code reads more policy sources (drop-in files, MDM, server-managed
    settings); a file that exists without ``channelsEnabled: true`` is the one
    case seen here that certainly blocks channels for a Console or Team and
    Enterprise login.
    """
    import json

    path = Path(MANAGED_DIRS.get(sys.platform, "/etc/claude-code")) / "managed-settings.json"
    try:
        policy = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    if isinstance(policy, dict) and policy.get("channelsEnabled") is not True:
        return f"{path} does not set channelsEnabled: true"
    return ""


def launch_gate(client: str, name: str = SERVER_NAME) -> str:
    """Why a Claude Code session will ignore our pushes, as far as we can see; "" when it will not.

    Claude Code registers a custom channel server only on Anthropic's own
    API, when policy allows, and when the session was started with
    ``--dangerously-load-development-channels server:NAME``; a push it did
    not register is dropped, and an acked message would then reach nobody.
    So with Claude Code as the client, push only when no provider switch or
    managed-settings file rules channels out and an ancestor process (the
    server's parent, or a wrapper above it) carries the flag for ``name``.
    Other clients asked for ``--channel`` themselves.
    """
    if client != "claude-code":
        return ""
    import os

    if provider := next((v for v in THIRD_PARTY if _truthy(os.environ.get(v))), None):
        return f"Claude Code runs on a third-party provider ({provider}), where channels are not available"
    if why := _policy_gate():
        return why
    pid = os.getppid()
    for _ in range(6):
        found = _argv(pid)
        if found is None:
            return ""  # cannot read process lines here: trust the configuration
        ppid, argv = found
        if any(a == DEV_FLAG or a.startswith(DEV_FLAG + "=") for a in argv):
            entries = dev_channels(argv)
            if f"server:{name}" in entries:
                return ""
            return f"Claude Code was started with {DEV_FLAG} {' '.join(entries)}, which does not list server:{name}"
        if ppid <= 1:
            break
        pid = ppid
    return f"Claude Code was not started with {DEV_FLAG} server:{name}"


@dataclass
class Channel:
    """The push loop of one stdio MCP session (started once the client has initialized)."""

    tools: Tools
    #: Messages pushed so far (for the log line and tests of this object).
    pushed: int = 0
    _session: asyncio.Future[Any] | None = field(default=None, repr=False)
    _resume: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _current: asyncio.Task[tuple[api.Message, ...]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._resume.set()

    def attach(self, session: Any) -> None:
        """The MCP session to push into (from the ``notifications/initialized`` handler)."""
        if self._session is None:
            self._session = asyncio.get_running_loop().create_future()
        if not self._session.done():
            self._session.set_result(session)

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Hand the ``IDENTITY-rx`` receiver to a ``wait`` tool call, and take it back after.

        Both would register the same receiver name, and the hub keeps only
        the newer one; within one server they take turns instead.
        """
        self._resume.clear()
        current = self._current
        if current is not None and not current.done():
            current.cancel()
            with contextlib.suppress(BaseException):
                await current
        try:
            yield
        finally:
            self._resume.set()

    async def run(self) -> None:
        """Push mail until cancelled (the session closed); never raises into the server."""
        try:
            await self._run()
        except Exception as exc:  # the tools must keep working: the push just ends, said on stderr
            _note(f"{type(exc).__name__}: {exc}; channel push is off for this session")

    async def _run(self) -> None:
        tools = self.tools
        if not tools.identity or tools.missing:
            return  # every tool call already says what is missing
        if self._session is None:
            self._session = asyncio.get_running_loop().create_future()
        session = await self._session
        params = getattr(session, "client_params", None)
        client = getattr(getattr(params, "client_info", None), "name", "") or ""
        if why := launch_gate(str(client)):
            _note(f"{why}; channel push is off for this session (hooks and tools still deliver the mail)")
            return
        retake = RETAKE_MIN
        with tempfile.TemporaryDirectory(prefix="synapse-channel-") as scratch:
            mine = Path(scratch) / "cursor"
            while True:
                await self._resume.wait()
                started = time.monotonic()
                task = asyncio.ensure_future(self._listen(mine))
                self._current = task
                try:
                    await asyncio.wait({task})
                finally:
                    if not task.done():  # run() itself is being cancelled
                        task.cancel()
                        with contextlib.suppress(BaseException):
                            await task
                if task.cancelled():
                    continue  # a wait call has the receiver; the loop waits for it to be resumed
                exc = task.exception()
                if isinstance(exc, api.Superseded):
                    if time.monotonic() - started > RETAKE_MAX:
                        retake = RETAKE_MIN  # it held the receiver a good while: a one-off (an idle-wait hook)
                    _note(f"another waiter took {tools.identity}-rx; taking it back in {retake:g}s")
                    await asyncio.sleep(retake)
                    retake = min(RETAKE_MAX, retake * 2)
                    continue
                if isinstance(exc, api.Forbidden):
                    _note(f"the hub refused to let {tools.identity!r} wait ({exc}); channel push is off")
                    return
                if exc is not None:
                    _note(f"{type(exc).__name__}: {exc}; retrying in {RETAKE_MAX:g}s")
                    await asyncio.sleep(RETAKE_MAX)
                    continue
                retake = RETAKE_MIN
                await self._hand_over(session, task.result())

    async def _listen(self, mine: Path) -> tuple[api.Message, ...]:
        """Wait (riding out hub restarts) for directed mail after the identity's cursor.

        The waiter keeps its own scratch cursor file and does not ack: what
        is handed over is decided in :meth:`_hand_over`, under the lock.
        """
        from synapse_channel.adapters.runtime import cursor_lock
        from synapse_channel.paths import mailbox_cursor_path, read_int, write_private

        tools = self.tools
        real = mailbox_cursor_path(tools.identity)
        with cursor_lock(real):
            write_private(mine, f"{read_int(real)}\n")
        return await api.wait(
            tools.identity, uri=tools.uri, token=tools.token, timeout=0, directed_only=True, ack=False, cursor=mine
        )

    async def _hand_over(self, session: Any, got: tuple[api.Message, ...]) -> None:
        """Push what nobody took yet, move the identity's cursor past it, and ack it at the hub."""
        from synapse_channel.adapters.runtime import cursor_lock
        from synapse_channel.paths import mailbox_cursor_path, read_int, write_private

        real = mailbox_cursor_path(self.tools.identity)
        fresh: list[api.Message] = []
        with cursor_lock(real):  # held while sending, so no hook hands these over meanwhile
            cursor = read_int(real)
            for m in (m for m in got if m.seq > cursor):
                note = ChannelNotification(params=render(m).model_dump())
                # The SDK types send_notification to the core notifications, but it serialises any
                # Notification model (method and params): a vendor method goes out the same way.
                try:
                    await asyncio.wait_for(
                        session.send_notification(cast(types.ServerNotification, note)), SEND_TIMEOUT
                    )
                except (TimeoutError, OSError) as exc:  # a client that stopped reading: the rest stays for the hooks
                    _note(f"could not push seq {m.seq} ({type(exc).__name__}); left in the mailbox")
                    break
                fresh.append(m)
            if fresh:
                write_private(real, f"{max(m.seq for m in fresh)}\n")
        if not fresh:
            return  # a hook handed these over meanwhile: wait on
        self.pushed += len(fresh)
        top = max(m.seq for m in fresh)
        self.tools.cursor = max(self.tools.cursor, top)
        try:
            async with self.tools.session() as s:
                await s.ack(top)
        except api.SynapseError as exc:  # the cursor is saved: the next ack from any path catches the hub up
            _note(f"pushed through seq {top} but the hub ack failed ({exc})")
