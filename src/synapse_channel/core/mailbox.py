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
from .pending import RunningCounts, encode_key

#: Directed messages kept in memory for replay; older ones stay in the journal until compaction
#: (``--retain-days`` after a snapshot covers them).
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

    ``running`` keeps the pending count of every name with mail waiting (a
    ``by_target`` key or a named part of a ``group`` message), moved by each
    store and ack, so ``who`` reads counts instead of computing them.
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
    running: RunningCounts = field(default_factory=RunningCounts)
    waiting: dict[int, set[str]] = field(default_factory=dict)
    readers: dict[str, set[str]] = field(default_factory=dict)
    _restored: dict[int, set[str]] = field(default_factory=dict)
    group_names: dict[str, int] = field(default_factory=dict)
    _bulk: bool = False

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
            if "/" not in exact:  # a project (or a slash-less name): freed once all it waits for have acked
                waiting = self._addressees(exact, sender, seq)
                if not waiting:
                    return
                self.waiting[seq] = waiting
            elif seq <= self.watermarks.get(exact, 0):
                return  # already acked by its only recipient
            _push(self.by_target, exact, seq)  # a note to oneself too: its ack frees it
            self.target_bytes[exact] = self.target_bytes.get(exact, 0) + size
            if "/" not in exact or exact == sender:  # a sender's own mail is never pending for it
                _push(self.own, (exact, sender), seq)
            if not self._bulk:
                self._count_exact(exact, sender, seq)
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
                if not self._bulk:
                    for part in named:
                        self._count_exact(part, sender, seq)
            else:
                _insert(self.group, seq)
                for part in _named_parts(target):
                    self.group_names[part] = self.group_names.get(part, 0) + 1
                if not self._bulk:
                    self.messages[seq] = frame
                    self._count_group(frame)
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
            self.group_names.clear()
            for seq in self.group:
                for part in _named_parts(self.messages[seq].get("target", "")):
                    self.group_names[part] = self.group_names.get(part, 0) + 1
            if not self._bulk:
                self._recount()

    def _drop(self, seq: int) -> None:
        self.total_bytes -= self.sizes.pop(seq, 0)
        self.messages.pop(seq, None)
        self.delivered.discard(seq)
        self.refs.pop(seq, None)
        self.waiting.pop(seq, None)

    def ack(self, identity: str, seq: int) -> bool:
        """Move ``identity``'s watermark forward; False when it would not move.

        Messages addressed to exactly this identity, up to ``seq``, are
        dropped from memory (the journal keeps them until compaction); a list message once
        its last named recipient has acked it.
        """
        old_floor = self.watermarks.get(identity, 0)
        if seq <= old_floor:
            return False
        if identity not in self.watermarks and "/" in identity:
            self.readers.setdefault(identity.split("/", 1)[0], set()).add(identity)
        self.watermarks[identity] = seq
        mine = self.by_target.get(identity)
        if mine:
            cut = bisect_right(mine, seq)
            kept, freed = [], 0
            for old in mine[:cut]:
                size = self.sizes.get(old, 0)
                left = self.refs.get(old)
                if left is not None and left > 1:
                    self.refs[old] = left - 1
                elif not self._still_waits(old, identity):
                    self._free(old)
                else:
                    kept.append(old)  # project mail its members have not all acked yet
                    continue
                freed += size
            mine[:cut] = kept
            self._unlist(identity, freed)
        if "/" in identity:
            self._ack_project(identity, old_floor, seq)
        self._compact()
        self._settle(identity)
        return True

    def _unlist(self, key: str, freed: int) -> None:
        """``freed`` bytes left ``by_target[key]``; forget the key once it is empty."""
        self.target_bytes[key] -= freed
        if not self.by_target[key]:
            del self.by_target[key]
            del self.target_bytes[key]

    def _free(self, seq: int) -> None:
        """A message every recipient it waited for has acked leaves memory (it stays in the journal)."""
        frame = self.messages.get(seq)
        if frame is not None and seq in self.waiting:
            project = frame.get("target", "").strip()
            self.running.stale.add(project)  # its members counted it
            self.running.stale.update(self.running.members.get(project, ()))
        self._unown(seq)
        self._drop(seq)
        self.recent_acked.append(seq)

    def _addressees(self, project: str, sender: str, seq: int) -> set[str]:
        """Whom a message to ``project`` waits for before acks may free it (none: every one has acked).

        Its identities known to the mailbox when it is stored: those that
        have acked mail here (``readers``), but not the sender. The project
        name itself is waited for when it has acked mail too, or when no
        identity of the project is known (then it alone frees the message, as
        a plain name's ack does). Restored from the snapshot on reload.
        """
        restored = self._restored.pop(seq, None)
        if restored is not None:
            return restored
        marks = self.watermarks
        known = [m for m in self.readers.get(project, ()) if m != sender]
        waiting = {m for m in known if marks[m] < seq}
        if (project in marks or not known) and marks.get(project, 0) < seq:
            waiting.add(project)
        return waiting

    def _still_waits(self, seq: int, identity: str) -> bool:
        """Take ``identity`` off what project message ``seq`` waits for; True while others remain."""
        waiting = self.waiting.get(seq)
        if waiting is None:
            return False
        waiting.discard(identity)
        return bool(waiting)

    def _ack_project(self, identity: str, old_floor: int, seq: int) -> None:
        """A member's ack covers its project's mail in ``(old_floor, seq]``; free what no one else waits for."""
        project = identity.split("/", 1)[0]
        seqs = self.by_target.get(project)
        if not seqs:
            return
        lo, hi = bisect_right(seqs, old_floor), bisect_right(seqs, seq)
        kept, freed = [], 0
        for old in seqs[lo:hi]:
            waiting = self.waiting.get(old)
            if waiting is not None and identity in waiting and not self._still_waits(old, identity):
                freed += self.sizes.get(old, 0)
                self._free(old)
            else:
                kept.append(old)
        if freed or len(kept) < hi - lo:
            seqs[lo:hi] = kept
            self._unlist(project, freed)

    # ------------------------------------------------------------------ running counts

    def count_for(self, ident: str) -> int:
        """``ident``'s pending count from the indexes (bisects; only ``group`` messages are read)."""
        floor = self.watermarks.get(ident, 0)
        count = _above(self.by_target.get(ident), floor) - _above(self.own.get((ident, ident)), floor)
        if "/" in ident:
            project = ident.split("/", 1)[0]
            count += _above(self.by_target.get(project), floor) - _above(self.own.get((project, ident)), floor)
        for seq in self.group:
            frame = self.messages.get(seq)
            if frame is not None and seq > floor and frame.get("sender") != ident:
                count += addresses(frame.get("target", ""), ident, directed_only=True)
        return count

    def _tracked(self, name: str) -> bool:
        """Names ``who`` reports whether online or not: those with mail waiting."""
        return name in self.by_target or name in self.group_names

    def _count_exact(self, name: str, sender: str, seq: int) -> None:
        """A message just stored for ``name`` (an exact target or a named part of a list)."""
        running = self.running
        if name not in running.counts:
            running.set(name, self.count_for(name))
        elif name != sender:
            running.add(name, 1)
        if "/" not in name:  # a project message: pending for its members with mail too
            for member in running.members.get(name, ()):
                if member != sender and seq > self.watermarks.get(member, 0):
                    running.add(member, 1)

    def _count_group(self, frame: dict[str, Any]) -> None:
        """A message only matching can attribute: O(names with mail), and rare."""
        running, seq, sender, target = self.running, frame["seq"], frame.get("sender"), frame.get("target", "")
        for name in list(running.counts):
            if seq > self.watermarks.get(name, 0) and name != sender and addresses(target, name, directed_only=True):
                running.add(name, 1)
        for part in _named_parts(target):
            if part not in running.counts:
                running.set(part, self.count_for(part))

    def _settle(self, identity: str) -> None:
        """After an ack: recount ``identity`` and the members it freed mail for; forget names with no mail."""
        running = self.running
        running.stale.add(identity)
        for name in running.stale:
            if self._tracked(name):
                running.set(name, self.count_for(name))
            else:
                running.drop(name)
        running.stale.clear()

    def _recount(self) -> None:
        """Every running count from the indexes (after expiry and on load: both already O(messages)).

        Counts that did not change keep their encoded fragment.
        """
        running = self.running
        running.stale.clear()
        for name in [n for n in running.counts if not self._tracked(n)]:
            running.drop(name)
        for name in (*self.by_target, *self.group_names):
            running.set(name, self.count_for(name))

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

        The names with mail come from the running counts (no work per call);
        only the ``identities`` without mail are counted here, from the indexes.
        """
        out = dict(self.running.counts)
        for ident in identities:
            if ident not in out:
                out[ident] = self.count_for(ident)
        return out

    def pending_json(self, identities: set[str]) -> str:
        """:meth:`pending_counts` encoded as a JSON object: the names with mail are encoded once per change."""
        extra = [f"{_key(i)}:{self.count_for(i)}" for i in identities if i not in self.running.counts]
        body = self.running.encoded()
        if extra:
            body = ",".join([body, *extra]) if body else ",".join(extra)
        return "{" + body + "}"

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
            "waiting": {str(s): sorted(self.waiting[s]) for s in kept if s in self.waiting},
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
        self.group_names.clear()
        self.total_bytes = 0
        self.waiting.clear()
        self.readers.clear()
        self.watermarks = {str(k): int(v) for k, v in state["watermarks"].items()}
        for name in self.watermarks:
            if "/" in name:
                self.readers.setdefault(name.split("/", 1)[0], set()).add(name)
        # whom each project message waits for; a snapshot from before this field recomputes it from today's readers
        self._restored = {int(k): set(v) for k, v in (state.get("waiting") or {}).items()}
        sizes = state.get("sizes") or [0] * len(state["messages"])  # none in snapshots before the bounds
        self._bulk = True
        try:
            for frame, size in zip(state["messages"], sizes, strict=True):
                self.store(frame, size)
        finally:
            self._bulk = False
            self._restored = {}
        self._recount()
        self.delivered = set(state["delivered"]) & set(self.messages)
        self.recent_acked.clear()
        self.recent_acked.extend(state.get("recent_acked", []))


def _named_parts(target: str) -> list[str]:
    """The glob-free parts of a ``group`` target: names ``who`` lists while it waits."""
    return [p for p in dict.fromkeys(target_parts(target)) if _GLOB.isdisjoint(p)]


def _key(name: str) -> str:
    return encode_key(name)


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
