"""Ask the hub who holds a set of paths and judge them for one identity.

Shared by the git guard (``python -m synapse_channel.guard``) and the
assistants' edit guards (``synapse hook ASSISTANT pre-edit``). Kept free of
click, asyncio and dataclasses (importing ``dataclasses`` pulls in ``inspect``:
~9 ms): a guard runs on every commit and every edit, and the records below are
plain ``__slots__`` classes.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a commit ~3 ms
if TYPE_CHECKING:
    from typing import Any, Final

#: Paths sent per ``claim_check`` frame (the hub allows 20,000; smaller frames page less).
BATCH = 5000


class Hold:
    """A live claim covering one checked path."""

    __slots__ = ("epoch", "holder_online", "lease_expires_at", "owner", "path", "task_id")

    def __init__(
        self, path: str, task_id: str, owner: str, epoch: int, lease_expires_at: float, holder_online: bool
    ) -> None:
        self.path: Final = path
        self.task_id: Final = task_id
        self.owner: Final = owner
        self.epoch: Final = epoch
        self.lease_expires_at: Final = lease_expires_at
        self.holder_online: Final = holder_online

    def _key(self) -> tuple[Any, ...]:
        return (self.path, self.task_id, self.owner, self.epoch, self.lease_expires_at, self.holder_online)

    def __eq__(self, other: object) -> bool:
        return type(other) is Hold and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return "Hold({}, {}, {}, epoch={}, lease_expires_at={}, holder_online={})".format(
            *(repr(v) for v in self._key())
        )


class Verdict:
    """What a guard found: paths held by others, and (strict) paths the identity has not claimed."""

    __slots__ = ("identity", "others", "unclaimed")

    def __init__(
        self, identity: str | None, others: list[Hold] | None = None, unclaimed: list[str] | None = None
    ) -> None:
        self.identity = identity
        self.others: list[Hold] = [] if others is None else others
        self.unclaimed: list[str] = [] if unclaimed is None else unclaimed

    def __repr__(self) -> str:
        return f"Verdict({self.identity!r}, others={self.others!r}, unclaimed={self.unclaimed!r})"

    @property
    def ok(self) -> bool:
        """True when nothing blocks the change."""
        return not self.others and not self.unclaimed


class GitFailed(OSError):
    """A git command the guard needs exited non-zero."""


def git(*args: str) -> list[str]:
    """Run git, return its NUL-separated output. posix_spawn, not subprocess: that import alone costs ~10 ms."""
    if not hasattr(os, "posix_spawnp"):  # pragma: no cover - not Linux/macOS
        import subprocess

        done = subprocess.run(["git", *args], capture_output=True)
        out, code = done.stdout, done.returncode
    else:
        read, write = os.pipe()
        try:
            actions = [(os.POSIX_SPAWN_DUP2, write, 1), (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
            pid = os.posix_spawnp("git", ["git", *args], os.environ, file_actions=actions)
        finally:
            os.close(write)
        chunks = []
        with os.fdopen(read, "rb") as pipe:
            while chunk := pipe.read(1 << 16):
                chunks.append(chunk)
        out, code = b"".join(chunks), os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code != 0:
        raise GitFailed(f"git {args[0]} exited with {code}")
    return [p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p]


class HubDown(Exception):
    """The hub could not be asked (unreachable, no answer, refused the question)."""


class Context:
    """Who is asking and where: resolved the way every client resolves it (client/context.py)."""

    __slots__ = ("identity", "refuse_offline", "timeout", "token", "uri")

    def __init__(
        self, *, identity: str | None, uri: str, token: str | None, timeout: float, refuse_offline: bool
    ) -> None:
        self.identity: Final = identity
        self.uri: Final = uri
        self.token: Final = token
        self.timeout: Final = timeout
        self.refuse_offline: Final = refuse_offline

    def __repr__(self) -> str:  # never the token
        return f"Context(identity={self.identity!r}, uri={self.uri!r}, timeout={self.timeout!r})"


def context() -> Context:
    """Identity, URI, token and the ``[guard]`` settings from the environment and config files."""
    from ..client import context as ctx

    cfg = ctx.settings()
    return Context(
        identity=ctx.default_identity(),
        uri=ctx.default_uri(),
        token=ctx.resolve_token(None, None, cfg),
        timeout=float(cfg.get("guard.timeout") or 2.0),
        refuse_offline=bool(cfg.get("guard.refuse_offline")),
    )


def ask(ctx: Context, worktree: str, paths: list[str]) -> list[Hold]:
    """Every live claim overlapping ``paths`` in ``worktree`` (one connection, as many frames as needed)."""
    from ..client.blocking import BlockingClient, Insecure, Unreachable
    from ..protocol import one_shot_name

    name = one_shot_name("guard", ctx.identity, os.getpid())
    client = BlockingClient(ctx.uri, name, token=ctx.token, timeout=ctx.timeout)
    holds: list[Hold] = []
    try:
        left = paths
        first = True
        while True:
            batch = left[:BATCH]
            rid = f"g{len(paths) - len(left)}"
            frame = client.frame("claim_check", worktree=worktree, paths=batch, request_id=rid)
            if first:
                client.open(frame)
                first = False
            else:
                client.send(frame)
            reply = client.wait_for(_answer(rid))
            if reply is None:
                raise HubDown(f"no answer from the hub at {ctx.uri} within {ctx.timeout:g}s")
            if reply.get("type") == "error":
                raise HubDown(f"the hub refused the check: {reply.get('payload')} ({reply.get('code')})")
            holds.extend(_hold(c) for c in reply.get("conflicts") or [] if isinstance(c, dict))
            checked = reply.get("checked")
            done = checked if reply.get("has_more") is True and isinstance(checked, int) and checked > 0 else len(batch)
            left = left[done:]
            if not left:
                return holds
    except (Unreachable, Insecure) as exc:
        raise HubDown(str(exc)) from None
    except (OSError, ConnectionError) as exc:
        raise HubDown(f"lost the hub at {ctx.uri} ({exc})") from None
    finally:
        client.close()


def _answer(rid: str) -> Any:
    return lambda f: f.get("type") == "claim_check_result" and f.get("request_id") == rid


def _hold(entry: dict[str, Any]) -> Hold:
    epoch, until = entry.get("epoch"), entry.get("lease_expires_at")
    return Hold(
        path=str(entry.get("path", "")),
        task_id=str(entry.get("task_id", "")),
        owner=str(entry.get("owner", "")),
        epoch=epoch if isinstance(epoch, int) else 0,
        lease_expires_at=float(until) if isinstance(until, int | float) else 0.0,
        holder_online=entry.get("holder_online") is True,
    )


def judge(identity: str | None, paths: list[str], holds: list[Hold], *, strict: bool) -> Verdict:
    """Split ``holds`` into other agents' claims and (strict) paths ``identity`` has not claimed."""
    from ..protocol import owner_of

    verdict = Verdict(identity)
    mine: set[str] = set()
    seen: set[tuple[str, str]] = set()
    for hold in holds:
        if identity and owner_of(hold.owner) == identity:
            mine.add(hold.path)
        elif (hold.path, hold.task_id) not in seen:
            seen.add((hold.path, hold.task_id))
            verdict.others.append(hold)
    if strict:
        verdict.unclaimed = [p for p in paths if p not in mine]
    return verdict


def lease_left(until: float, now: float | None = None) -> str:
    """``41m12s`` until ``until`` (``expired`` when past)."""
    left = int(until - (time.time() if now is None else now))
    if left <= 0:
        return "expired"
    hours, rest = divmod(left, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def describe(hold: Hold) -> str:
    """One line naming the path, the task, its holder and the lease left."""
    online = "online" if hold.holder_online else "offline"
    return (
        f"{hold.path}: task {hold.task_id} held by {hold.owner} ({online}), "
        f"lease {lease_left(hold.lease_expires_at)} left (epoch {hold.epoch})"
    )
