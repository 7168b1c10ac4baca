"""A blocking facade over :class:`~synapse_channel.api.Session` for scripts and plain hooks.

Each :class:`SyncSession` owns a private event loop, so its connection lives
across calls (an ``asyncio.run`` per call would drop it every time). Do not
use it from inside a running event loop: use :class:`Session` there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .session import Session
from .types import Board, Claim, InboxPage, Message, PathHold, Roster, SearchPage, SendResult, Task

T = TypeVar("T")


class SyncSession:
    """The same calls as :class:`Session`, blocking. ``with SyncSession("proj/a") as s: s.send("proj/b", "hi")``."""

    def __init__(self, name: str | None = None, **options: Any) -> None:
        self.session = Session(name, **options)  # first: a refused option leaves no loop open
        self._loop = asyncio.new_event_loop()

    @property
    def name(self) -> str:
        """The name this session registers."""
        return self.session.name

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def __enter__(self) -> SyncSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection and the private loop."""
        if not self._loop.is_closed():
            self._run(self.session.close())
            self._loop.close()

    def send(self, target: str, text: str, *, priority: bool = False, require_recipient: bool = False) -> SendResult:
        """See :meth:`Session.send`."""
        return self._run(self.session.send(target, text, priority=priority, require_recipient=require_recipient))

    def broadcast(self, text: str) -> SendResult:
        """See :meth:`Session.broadcast`."""
        return self._run(self.session.broadcast(text))

    def next_message(self, timeout: float | None = None) -> Message | None:
        """See :meth:`Session.next_message`."""
        return self._run(self.session.next_message(timeout))

    def inbox(self, *, after: int = 0, limit: int = 100, identity: str | None = None) -> InboxPage:
        """See :meth:`Session.inbox`."""
        return self._run(self.session.inbox(after=after, limit=limit, identity=identity))

    def ack(self, through_seq: int, *, identity: str | None = None) -> None:
        """See :meth:`Session.ack`."""
        self._run(self.session.ack(through_seq, identity=identity))

    def search(
        self,
        query: str,
        *,
        sender: str | None = None,
        to: str | None = None,
        since: float | None = None,
        limit: int = 20,
        after: int | None = None,
    ) -> SearchPage:
        """See :meth:`Session.search`."""
        return self._run(self.session.search(query, sender=sender, to=to, since=since, limit=limit, after=after))

    def who(self) -> Roster:
        """See :meth:`Session.who`."""
        return self._run(self.session.who())

    def claim(
        self,
        task: str,
        paths: Iterable[str] = (),
        *,
        worktree: str = "",
        ttl: float | None = None,
        note: str = "",
        git: Mapping[str, str] | None = None,
    ) -> Claim:
        """See :meth:`Session.claim`."""
        return self._run(self.session.claim(task, paths, worktree=worktree, ttl=ttl, note=note, git=git))

    def renew(self, task: str, epoch: int, *, ttl: float | None = None) -> Claim:
        """See :meth:`Session.renew`."""
        return self._run(self.session.renew(task, epoch, ttl=ttl))

    def release(self, task: str, epoch: int | None = None, *, evidence: Iterable[str] = ()) -> None:
        """See :meth:`Session.release`."""
        self._run(self.session.release(task, epoch, evidence=evidence))

    def claims(self) -> tuple[Claim, ...]:
        """See :meth:`Session.claims`."""
        return self._run(self.session.claims())

    def check_paths(self, paths: Iterable[str], *, worktree: str = "") -> tuple[PathHold, ...]:
        """See :meth:`Session.check_paths`."""
        return self._run(self.session.check_paths(paths, worktree=worktree))

    def board(self) -> Board:
        """See :meth:`Session.board`."""
        return self._run(self.session.board())

    def declare_task(self, task_id: str, title: str, **fields: Any) -> Task:
        """See :meth:`Session.declare_task`."""
        return self._run(self.session.declare_task(task_id, title, **fields))

    def update_task(self, task_id: str, **fields: Any) -> Task:
        """See :meth:`Session.update_task`."""
        return self._run(self.session.update_task(task_id, **fields))


def wait(name: str | None = None, *, token_file: Path | None = None, **options: Any) -> tuple[Message, ...]:
    """Blocking :func:`synapse_channel.api.wait`."""
    from .waiting import wait as wait_async

    return asyncio.run(wait_async(name, token_file=token_file, **options))
