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

#: Directed messages kept in memory for replay; older ones stay in the journal.
DEFAULT_RETENTION = 100_000
_GLOB = frozenset("*?[")
#: How many pruned (fully acked) message seqs are remembered for status queries.
ACKED_MEMORY = 10_000


@dataclass(slots=True)
class Mailbox:
    """Directed messages by ``seq``, ack watermarks and delivery state.

    ``order`` may hold seqs already pruned from ``messages``; readers skip
    them and :meth:`_compact` drops them once they dominate.
    """

    retention: int = DEFAULT_RETENTION
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    watermarks: dict[str, int] = field(default_factory=dict)
    delivered: set[int] = field(default_factory=set)
    targets: set[str] = field(default_factory=set)
    by_target: dict[str, list[int]] = field(default_factory=dict)
    recent_acked: deque[int] = field(default_factory=lambda: deque(maxlen=ACKED_MEMORY))

    def store(self, frame: dict[str, Any]) -> None:
        """Keep a directed chat (idempotent by ``seq``). Hot on replay: keep it lean."""
        seq = frame["seq"]
        if seq in self.messages:
            return
        target = frame.get("target", "")
        if "," in target or not _GLOB.isdisjoint(target):
            exact = None
            self.targets.update(p for p in target_parts(target) if _GLOB.isdisjoint(p))
        else:
            exact = target.strip()
            if seq <= self.watermarks.get(exact, 0):
                return  # already acked by its only recipient
            self.targets.add(exact)
            self.by_target.setdefault(exact, []).append(seq)
        self.messages[seq] = frame
        order = self.order
        if not order or seq > order[-1]:
            order.append(seq)
        else:
            order.insert(bisect_right(order, seq), seq)
        if len(self.messages) > self.retention:
            self._expire()

    def _expire(self) -> None:
        """Forget the oldest messages beyond ``retention`` (in chunks, so it stays cheap)."""
        keep = self.retention - self.retention // 10
        live = [s for s in self.order if s in self.messages]
        for old in live[: len(live) - keep]:
            self._drop(old)
        self.order = live[len(live) - keep :]

    def _drop(self, seq: int) -> None:
        self.messages.pop(seq, None)
        self.delivered.discard(seq)

    def ack(self, identity: str, seq: int) -> bool:
        """Move ``identity``'s watermark forward; False when it would not move.

        Messages addressed to exactly this identity, up to ``seq``, are
        dropped from memory (they stay in the journal).
        """
        if seq <= self.watermarks.get(identity, 0):
            return False
        self.watermarks[identity] = seq
        mine = self.by_target.get(identity)
        if mine:
            cut = bisect_right(mine, seq)
            for old in mine[:cut]:
                self._drop(old)
                self.recent_acked.append(old)
            del mine[:cut]
            if not mine:
                del self.by_target[identity]
            self._compact()
        return True

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
        """Unacked directed message counts for each identity of interest."""
        return {ident: len(self.pending_for(ident)) for ident in sorted(identities | self.targets)}

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
        return {
            "messages": [self.messages[s] for s in self.order if s in self.messages],
            "watermarks": self.watermarks,
            "delivered": sorted(self.delivered),
            "recent_acked": list(self.recent_acked),
        }

    def load(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`dump` output."""
        self.messages.clear()
        self.order.clear()
        self.by_target.clear()
        self.watermarks = {str(k): int(v) for k, v in state["watermarks"].items()}
        for frame in state["messages"]:
            self.store(frame)
        self.delivered = set(state["delivered"]) & set(self.messages)
        self.recent_acked.clear()
        self.recent_acked.extend(state.get("recent_acked", []))


def is_directed_chat(frame: dict[str, Any]) -> bool:
    """True for a chat that names recipients (and so belongs in the mailbox)."""
    target = frame.get("target", "")
    return isinstance(target, str) and not is_broadcast(target)
