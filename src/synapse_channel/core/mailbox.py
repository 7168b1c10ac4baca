"""The durable mailbox: directed chats kept for identities that were away.

Every directed chat is journalled; the mailbox is the in-memory projection of
those events plus the per-identity ack watermarks. A returning waiter asks for
everything addressed to it after its cursor and gets exactly that, in ``seq``
order. Broadcasts are never kept here.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..protocol import addresses, is_broadcast, target_parts
from .outcome import compact_json

#: Directed messages kept in memory for replay; older ones stay in the journal.
DEFAULT_RETENTION = 100_000
_GLOB = frozenset("*?[")
#: How many pruned (fully acked) message seqs are remembered for status queries.
ACKED_MEMORY = 10_000
MIB = 1024 * 1024
#: Default mailbox bounds (``synapse hub --mailbox-*``).
MAX_TOTAL_BYTES = 128 * MIB
MAX_RECIPIENT_BYTES = 32 * MIB
MAX_RECIPIENT_MESSAGES = 10_000


@dataclass(frozen=True, slots=True)
class MailboxLimits:
    """Bounds on what the mailbox retains; a chat that would pass one is refused, not stored.

    Sizes are the length of the stored JSON. Per-recipient bounds apply to each
    exact identity, project or named part of a list the message waits for;
    the totals to everything kept.
    """

    total_bytes: int = MAX_TOTAL_BYTES
    total_messages: int = DEFAULT_RETENTION
    recipient_bytes: int = MAX_RECIPIENT_BYTES
    recipient_messages: int = MAX_RECIPIENT_MESSAGES


def frame_size(frame: dict[str, Any]) -> int:
    """A stored message's size when the event did not carry it (an old snapshot)."""
    return len(compact_json(frame))


def _above(seqs: list[int] | None, floor: int) -> int:
    """How many of the sorted ``seqs`` are greater than ``floor`` (no message is read)."""
    return len(seqs) - bisect_right(seqs, floor) if seqs else 0


@dataclass(slots=True)
class Mailbox:
    """Directed messages by ``seq``, ack watermarks and delivery state.

    ``order`` may hold seqs already pruned from ``messages``; readers skip
    them and :meth:`_compact` drops them once they dominate.

    Indexes keep ``who``'s pending counts O(names) instead of O(messages x
    names): ``by_target`` lists (sorted seqs) per exact recipient, holding
    single-target messages and each named part of a list of identities (a
    list message is freed once every part has acked it: ``refs``); ``own``
    lists the messages a sender addressed to a slash-less target (a project
    it may belong to) or to itself, so its own mail is not counted for it;
    ``group`` holds the few messages whose recipients can only be found by
    matching (globs, roles, lists with a project part). Every index holds
    only seqs still in ``messages``.

    ``sizes`` holds each kept message's size, ``total_bytes`` their sum and
    ``target_bytes`` the sum per ``by_target`` key (same keys), so
    :meth:`refusal` can hold the mailbox to :class:`MailboxLimits` in O(parts).
    """

    retention: int = DEFAULT_RETENTION
    limits: MailboxLimits = field(default_factory=MailboxLimits)
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    watermarks: dict[str, int] = field(default_factory=dict)
    delivered: set[int] = field(default_factory=set)
    by_target: dict[str, list[int]] = field(default_factory=dict)
    refs: dict[int, int] = field(default_factory=dict)
    own: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    group: list[int] = field(default_factory=list)
    recent_acked: deque[int] = field(default_factory=lambda: deque(maxlen=ACKED_MEMORY))
    sizes: dict[int, int] = field(default_factory=dict)
    total_bytes: int = 0
    target_bytes: dict[str, int] = field(default_factory=dict)

    def refusal(self, target: str, sender: str, size: int) -> tuple[str, str] | None:
        """Why a new directed chat of ``size`` to ``target`` may not be kept: ``(limit, text)``, or None.

        Checked before the chat is journalled, so a refused chat leaves no
        trace; replay never asks (what was journalled is kept whatever the
        bounds are now).
        """
        lim = self.limits
        if len(self.messages) >= lim.total_messages:
            return "total_messages", f"the hub's mailbox holds {len(self.messages)} messages (its bound)"
        if self.total_bytes + size > lim.total_bytes:
            return "total_bytes", f"the hub's mailbox would exceed {_mib(lim.total_bytes)} ({size} bytes more)"
        for part in self._charged_parts(target, sender):
            seqs = self.by_target.get(part)
            if seqs is not None and len(seqs) >= lim.recipient_messages:
                return "recipient_messages", f"{part!r} already has {len(seqs)} unacknowledged messages waiting"
            if self.target_bytes.get(part, 0) + size > lim.recipient_bytes:
                return "recipient_bytes", f"{part!r} would have over {_mib(lim.recipient_bytes)} waiting"
        return None

    @staticmethod
    def _charged_parts(target: str, sender: str) -> list[str]:
        """The ``by_target`` keys a new message to ``target`` would be listed under (see :meth:`store`)."""
        if "," not in target and _GLOB.isdisjoint(target):
            return [target.strip()]
        parts = dict.fromkeys(target_parts(target))
        if all("/" in p and _GLOB.isdisjoint(p) for p in parts):
            return [p for p in parts if p != sender]
        return []

    def store(self, frame: dict[str, Any], size: int = 0) -> None:
        """Keep a directed chat (idempotent by ``seq``). Hot on replay: keep it lean."""
        seq = frame["seq"]
        size = size or frame_size(frame)
        if seq in self.messages:
            return
        target = frame.get("target", "")
        sender = frame.get("sender", "")
        if "," not in target and _GLOB.isdisjoint(target):
            exact = target.strip()
            if seq <= self.watermarks.get(exact, 0):
                return  # already acked by its only recipient
            _push(self.by_target, exact, seq)  # a note to oneself too: its ack frees it
            self.target_bytes[exact] = self.target_bytes.get(exact, 0) + size
            if "/" not in exact or exact == sender:  # a sender's own mail is never pending for it
                _push(self.own, (exact, sender), seq)
        else:
            parts = dict.fromkeys(target_parts(target))
            if all("/" in p and _GLOB.isdisjoint(p) for p in parts):
                named = [p for p in parts if p != sender and seq > self.watermarks.get(p, 0)]
                if not named:
                    return  # every recipient has acked it already
                for part in named:
                    _push(self.by_target, part, seq)
                    self.target_bytes[part] = self.target_bytes.get(part, 0) + size
                self.refs[seq] = len(named)
            else:
                _insert(self.group, seq)
        self.messages[seq] = frame
        self.sizes[seq] = size
        self.total_bytes += size
        _insert(self.order, seq)
        if len(self.messages) > self.retention:
            self._expire()

    def _expire(self) -> None:
        """Forget the oldest messages beyond ``retention`` (in chunks, so it stays cheap)."""
        keep = self.retention - self.retention // 10
        live = [s for s in self.order if s in self.messages]
        gone = live[: len(live) - keep]
        for old in gone:
            self._drop(old)
        self.order = live[len(live) - keep :]
        if gone:
            cutoff = gone[-1]  # every live seq up to here is gone: each index loses a prefix
            for index in (self.by_target, self.own):
                for key in list(index):
                    seqs = index[key]  # type: ignore[index]
                    del seqs[: bisect_right(seqs, cutoff)]
                    if not seqs:
                        del index[key]  # type: ignore[arg-type]
            del self.group[: bisect_right(self.group, cutoff)]
            sizes = self.sizes
            self.target_bytes = {key: sum(sizes[s] for s in seqs) for key, seqs in self.by_target.items()}

    def _drop(self, seq: int) -> None:
        self.total_bytes -= self.sizes.pop(seq, 0)
        self.messages.pop(seq, None)
        self.delivered.discard(seq)
        self.refs.pop(seq, None)

    def ack(self, identity: str, seq: int) -> bool:
        """Move ``identity``'s watermark forward; False when it would not move.

        Messages addressed to exactly this identity, up to ``seq``, are
        dropped from memory (they stay in the journal); a list message once
        its last named recipient has acked it.
        """
        if seq <= self.watermarks.get(identity, 0):
            return False
        self.watermarks[identity] = seq
        mine = self.by_target.get(identity)
        if mine:
            cut = bisect_right(mine, seq)
            freed = 0
            for old in mine[:cut]:
                freed += self.sizes.get(old, 0)
                left = self.refs.get(old)
                if left is not None and left > 1:
                    self.refs[old] = left - 1
                    continue
                self._unown(old)
                self._drop(old)
                self.recent_acked.append(old)
            del mine[:cut]
            self.target_bytes[identity] -= freed
            if not mine:
                del self.by_target[identity]
                del self.target_bytes[identity]
            self._compact()
        return True

    def _unown(self, seq: int) -> None:
        """Take a single-target message out of ``own`` (it is leaving memory)."""
        frame = self.messages.get(seq)
        if frame is None:
            return
        target, sender = frame.get("target", "").strip(), frame.get("sender", "")
        if "," in target or ("/" in target and target != sender):
            return
        key = (target, sender)
        seqs = self.own.get(key)
        if seqs:
            i = bisect_right(seqs, seq) - 1
            if i >= 0 and seqs[i] == seq:
                del seqs[i]
            if not seqs:
                del self.own[key]

    def _compact(self) -> None:
        if len(self.order) > 2 * len(self.messages) + 64:
            self.order = [s for s in self.order if s in self.messages]

    def pending_for(self, identity: str, roles: tuple[str, ...] = (), since: int = 0) -> list[dict[str, Any]]:
        """Directed messages for ``identity`` after ``since`` and its watermark."""
        floor = max(since, self.watermarks.get(identity, 0))
        start = bisect_right(self.order, floor)
        out = []
        for seq in self.order[start:]:
            frame = self.messages.get(seq)
            if frame is None or frame.get("sender") == identity:
                continue
            if addresses(frame.get("target", ""), identity, roles, directed_only=True):
                out.append(frame)
        return out

    def messages_since(self, since: int) -> list[dict[str, Any]]:
        """Every kept directed message with ``seq > since``, in order."""
        start = bisect_right(self.order, since)
        return [self.messages[s] for s in self.order[start:] if s in self.messages]

    def is_acked_elsewhere(self, seq: int) -> bool:
        """True for a message pruned from memory because its recipient acked it."""
        return seq in self.recent_acked

    def pending_counts(self, identities: set[str]) -> dict[str, int]:
        """Unacked directed message counts for ``identities`` and every identity with mail waiting.

        Counted from the indexes (bisects, no message read) except for the
        ``group`` messages, which only matching can attribute.
        """
        group = [self.messages[s] for s in self.group if s in self.messages]
        names = set(identities) | set(self.by_target)
        for frame in group:
            names.update(p for p in target_parts(frame.get("target", "")) if _GLOB.isdisjoint(p))
        out = {}
        for ident in sorted(names):
            floor = self.watermarks.get(ident, 0)
            count = _above(self.by_target.get(ident), floor) - _above(self.own.get((ident, ident)), floor)
            if "/" in ident:
                project = ident.split("/", 1)[0]
                count += _above(self.by_target.get(project), floor) - _above(self.own.get((project, ident)), floor)
            for frame in group:
                if frame["seq"] > floor and frame.get("sender") != ident:
                    count += addresses(frame.get("target", ""), ident, directed_only=True)
            out[ident] = count
        return out

    def state_of(self, seq: int) -> str | None:
        """``stored``, ``delivered`` or ``acked`` for a directed message we keep."""
        frame = self.messages.get(seq)
        if frame is None:
            return None
        parts = [p for p in target_parts(frame.get("target", "")) if p in self.watermarks]
        if parts and all(self.watermarks[p] >= seq for p in parts):
            return "acked"
        return "delivered" if seq in self.delivered else "stored"

    def dump(self) -> dict[str, Any]:
        """JSON-ready state for a snapshot."""
        kept = [s for s in self.order if s in self.messages]
        return {
            "messages": [self.messages[s] for s in kept],
            "sizes": [self.sizes[s] for s in kept],
            "watermarks": dict(self.watermarks),
            "delivered": sorted(self.delivered),
            "recent_acked": list(self.recent_acked),
        }

    def load(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`dump` output."""
        self.messages.clear()
        self.order.clear()
        self.by_target.clear()
        self.refs.clear()
        self.own.clear()
        self.group.clear()
        self.sizes.clear()
        self.target_bytes.clear()
        self.total_bytes = 0
        self.watermarks = {str(k): int(v) for k, v in state["watermarks"].items()}
        sizes = state.get("sizes") or [0] * len(state["messages"])  # none in snapshots before the bounds
        for frame, size in zip(state["messages"], sizes, strict=True):
            self.store(frame, size)
        self.delivered = set(state["delivered"]) & set(self.messages)
        self.recent_acked.clear()
        self.recent_acked.extend(state.get("recent_acked", []))


def _mib(n: int) -> str:
    return f"{n / MIB:g} MiB"


def _push(index: dict[Any, list[int]], key: Any, seq: int) -> None:
    seqs = index.get(key)
    if seqs is None:
        index[key] = [seq]
    else:
        _insert(seqs, seq)


def _insert(seqs: list[int], seq: int) -> None:
    """Keep ``seqs`` sorted; appending is the common case (seqs arrive in order)."""
    if not seqs or seq > seqs[-1]:
        seqs.append(seq)
    else:
        seqs.insert(bisect_right(seqs, seq), seq)


def is_directed_chat(frame: dict[str, Any]) -> bool:
    """True for a chat that names recipients (and so belongs in the mailbox)."""
    target = frame.get("target", "")
    return isinstance(target, str) and not is_broadcast(target)
