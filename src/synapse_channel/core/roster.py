"""Presence: which connection holds which name, takeover and liveness.

Pure state. Connection ids are opaque integers the hub assigns; the roster
never sees a socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..protocol import owner_of


@dataclass(slots=True)
class Conn:
    """One admitted connection as the core sees it."""

    conn_id: int
    opened_at: float
    admitted_seq: int
    name: str | None = None
    wake_capability: str = "direct"
    roles: tuple[str, ...] = ()
    last_seen: float = 0.0
    superseded: bool = False


@dataclass(slots=True)
class Roster:
    """Names bound to connections, plus takeover bookkeeping."""

    conns: dict[int, Conn] = field(default_factory=dict)
    names: dict[str, int] = field(default_factory=dict)
    last_takeover: dict[str, float] = field(default_factory=dict)

    def online(self) -> list[str]:
        """Every bound name, sorted (waiter sidecars included)."""
        return sorted(self.names)

    def all_ids(self) -> tuple[int, ...]:
        """Every admitted connection, named or not (the compatibility audience)."""
        return tuple(self.conns)

    def named(self) -> list[Conn]:
        """Connections that have bound a name."""
        return [self.conns[cid] for cid in self.names.values()]

    def holder(self, name: str) -> Conn | None:
        """The connection holding ``name``, if any."""
        cid = self.names.get(name)
        return None if cid is None else self.conns[cid]

    def bind(self, conn: Conn, name: str) -> None:
        """Bind ``name`` to ``conn`` (the caller checked for conflicts)."""
        conn.name = name
        self.names[name] = conn.conn_id

    def takeover(self, conn: Conn, name: str, now: float) -> Conn:
        """Atomically move ``name`` to ``conn``; return the displaced connection.

        The name is rebound before the old socket is closed, so no message
        addressed to it can be routed to the dying socket.
        """
        old = self.conns[self.names[name]]
        old.superseded = True
        old.name = None
        self.bind(conn, name)
        self.last_takeover[name] = now
        return old

    def remove(self, conn_id: int) -> Conn | None:
        """Forget a closed connection; return it if it still held its name."""
        conn = self.conns.pop(conn_id, None)
        if conn is None or conn.name is None:
            return None
        if self.names.get(conn.name) == conn_id:
            del self.names[conn.name]
            return conn
        return None

    def wake_capabilities(self) -> dict[str, str]:
        """Name -> how it can be woken (``direct`` agent or ``passive`` waiter)."""
        return {c.name: c.wake_capability for c in self.named() if c.name}

    def roles(self) -> dict[str, list[str]]:
        """Name -> declared roles, for names that declared any."""
        return {c.name: list(c.roles) for c in self.named() if c.name and c.roles}

    def liveness(self, now: float) -> dict[str, dict[str, object]]:
        """Per identity: is it online, and does it have a live waiter (``-rx``)?"""
        out: dict[str, dict[str, object]] = {}
        for conn in self.named():
            assert conn.name is not None
            owner = owner_of(conn.name)
            entry = out.setdefault(owner, {"proven_live": False, "has_live_waiter": False, "last_reaction_age": None})
            if owner != conn.name:
                entry["has_live_waiter"] = True
            else:
                entry["proven_live"] = True
            age = round(max(0.0, now - conn.last_seen), 3)
            prev = entry["last_reaction_age"]
            if prev is None or (isinstance(prev, float) and age < prev):
                entry["last_reaction_age"] = age
        return out
