"""Typed, immutable results of :mod:`synapse_channel.api`.

Each result keeps the hub's frame in ``raw`` (a read-only mapping) for
fields this version does not model; the typed fields are the stable part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

Outcome = Literal["delivered", "queued", "broadcast", "no_recipient"]


def frozen(frame: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only copy of a frame (nested values are not copied: treat them as read-only too)."""
    return MappingProxyType(dict(frame or {}))


def _str_list(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


@dataclass(frozen=True, slots=True)
class Message:
    """One chat as the hub relayed it."""

    seq: int
    sender: str
    target: str
    text: str
    timestamp: float
    priority: bool = False
    replayed: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, frame: Mapping[str, Any]) -> Message:
        """From a ``chat`` frame."""
        seq = frame.get("seq")
        ts = frame.get("timestamp")
        return cls(
            seq=seq if isinstance(seq, int) else 0,
            sender=str(frame.get("sender", "")),
            target=str(frame.get("target", "")),
            text=str(frame.get("payload", "")),
            timestamp=float(ts) if isinstance(ts, int | float) else 0.0,
            priority=frame.get("priority") is True,
            replayed=frame.get("replayed") is True,
            raw=frozen(frame),
        )


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the hub said about a chat: ``delivered``, ``queued`` (for an offline recipient), ``broadcast``
    (accepted, no receipt asked) or ``no_recipient`` (nobody matched and nothing was kept)."""

    outcome: Outcome
    client_msg_id: str
    seq: int | None = None
    recipients: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True unless nobody will ever read it."""
        return self.outcome != "no_recipient"


@dataclass(frozen=True, slots=True)
class InboxPage:
    """Directed messages after a cursor, oldest first; ask again with ``after=page.cursor`` while ``has_more``."""

    messages: tuple[Message, ...]
    cursor: int
    has_more: bool


@dataclass(frozen=True, slots=True)
class Roster:
    """Who is online, and what the hub knows about each name."""

    online: tuple[str, ...]
    roles: Mapping[str, tuple[str, ...]]
    #: Per name: ``proven_live``, ``has_live_waiter``, ``last_reaction_age`` and what newer hubs add.
    liveness: Mapping[str, Mapping[str, Any]]
    pending: Mapping[str, int]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, frame: Mapping[str, Any]) -> Roster:
        """From a (merged) ``who_snapshot``."""

        def table(key: str) -> dict[str, Any]:
            value = frame.get(key)
            return value if isinstance(value, dict) else {}

        return cls(
            online=_str_list(frame.get("online_agents")),
            roles=MappingProxyType({k: _str_list(v) for k, v in table("agent_roles").items()}),
            liveness=MappingProxyType(
                {k: MappingProxyType(dict(v)) for k, v in table("agent_liveness").items() if isinstance(v, dict)}
            ),
            pending=MappingProxyType({k: int(v) for k, v in table("mailbox_pending").items() if isinstance(v, int)}),
            raw=frozen(frame),
        )


@dataclass(frozen=True, slots=True)
class Claim:
    """A lease on a task's file scope; present ``epoch`` (the fencing token) to renew or release it."""

    task_id: str
    owner: str
    epoch: int
    lease_expires_at: float
    paths: tuple[str, ...] = ()
    worktree: str = ""
    note: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, frame: Mapping[str, Any]) -> Claim:
        """From ``claim_granted``/``claim_renewed`` or an ``active_claims`` entry."""
        return cls(
            task_id=str(frame.get("task_id", "")),
            owner=str(frame.get("owner", "")),
            epoch=int(frame.get("epoch", 0) or 0),
            lease_expires_at=float(frame.get("lease_expires_at", 0) or 0),
            paths=_str_list(frame.get("paths")),
            worktree=str(frame.get("worktree", "") or ""),
            note=str(frame.get("note", "") or ""),
            raw=frozen(frame),
        )


@dataclass(frozen=True, slots=True)
class Task:
    """A task on the board."""

    task_id: str
    title: str
    status: str
    version: int
    depends_on: tuple[str, ...] = ()
    owner: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, task: Mapping[str, Any]) -> Task:
        """From a board entry (``ledger_task_posted.task`` or ``board_snapshot.board.tasks[]``)."""
        return cls(
            task_id=str(task.get("task_id", "")),
            title=str(task.get("title", "")),
            status=str(task.get("status", "")),
            version=int(task.get("version", 0) or 0),
            depends_on=_str_list(task.get("depends_on")),
            owner=str(task.get("owner") or task.get("suggested_owner") or ""),
            raw=frozen(task),
        )


@dataclass(frozen=True, slots=True)
class Board:
    """Every task, and the ids of those whose dependencies are done."""

    tasks: tuple[Task, ...]
    ready: tuple[str, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Question:
    """A question in the human attention queue (``ask-human``) and, once closed, how it ended.

    ``status`` is ``open``, ``answered``, ``cancelled`` or ``expired``.
    """

    id: str
    asker: str
    text: str
    status: str
    choices: tuple[str, ...] = ()
    asked_at: float = 0.0
    answer: str | None = None
    answered_by: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_open(self) -> bool:
        """True while nobody has answered or cancelled it."""
        return self.status == "open"

    @property
    def number(self) -> int:
        """The ``n`` of ``q-<n>``: questions sort by it in the order they were asked."""
        tail = self.id.rsplit("-", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    @classmethod
    def of(cls, question: Mapping[str, Any]) -> Question:
        """From the ``question`` object of an ``attention_*`` frame."""
        answer, by, ts = question.get("answer"), question.get("answered_by"), question.get("asked_at")
        return cls(
            id=str(question.get("id", "")),
            asker=str(question.get("asker", "")),
            text=str(question.get("question", "")),
            status=str(question.get("status", "")),
            choices=_str_list(question.get("choices")),
            asked_at=float(ts) if isinstance(ts, int | float) else 0.0,
            answer=answer if isinstance(answer, str) else None,
            answered_by=by if isinstance(by, str) else None,
            raw=frozen(question),
        )


@dataclass(frozen=True, slots=True)
class PathHold:
    """A live claim that covers a checked path (the claim is on the path, an ancestor or a descendant)."""

    path: str
    task_id: str
    owner: str
    epoch: int
    lease_expires_at: float
    holder_online: bool = False

    @classmethod
    def of(cls, entry: Mapping[str, Any]) -> PathHold:
        """From one entry of a ``claim_check_result``'s ``conflicts``."""
        epoch, until = entry.get("epoch"), entry.get("lease_expires_at")
        return cls(
            path=str(entry.get("path", "")),
            task_id=str(entry.get("task_id", "")),
            owner=str(entry.get("owner", "")),
            epoch=epoch if isinstance(epoch, int) else 0,
            lease_expires_at=float(until) if isinstance(until, int | float) else 0.0,
            holder_online=entry.get("holder_online") is True,
        )


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One search result: a chat (``msg_id``), a task version or a progress note (``task_id``).

    ``snippet`` marks the matched words with ``[`` ``]``; ``text`` is the
    whole chat (a task's title and description, a note's text).
    """

    seq: int
    kind: str
    sender: str
    target: str
    text: str
    snippet: str
    timestamp: float
    msg_id: int | None = None
    task_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, result: Mapping[str, Any]) -> SearchHit:
        """From one entry of a ``search_results`` frame's ``results``."""
        seq, ts, msg_id, task_id = result.get("seq"), result.get("ts"), result.get("msg_id"), result.get("task_id")
        text = result.get("text")
        return cls(
            seq=seq if isinstance(seq, int) else 0,
            kind=str(result.get("kind", "")),
            sender=str(result.get("from", "")),
            target=str(result.get("to", "")),
            text=text if isinstance(text, str) else "" if text is None else str(text),
            snippet=str(result.get("snippet") or ""),
            timestamp=float(ts) if isinstance(ts, int | float) else 0.0,
            msg_id=msg_id if isinstance(msg_id, int) else None,
            task_id=task_id if isinstance(task_id, str) else None,
            raw=frozen(result),
        )


@dataclass(frozen=True, slots=True)
class SearchPage:
    """Search hits, newest first; ask again with ``after=page.cursor`` while ``has_more`` for older ones.

    ``indexed_through`` is the last journal ``seq`` the index held when the
    hub answered (None from a hub that does not say): anything newer may not
    be searchable yet.
    """

    hits: tuple[SearchHit, ...]
    has_more: bool
    cursor: int | None
    indexed_through: int | None = None
