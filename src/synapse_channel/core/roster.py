"""Presence: which connection holds which name, takeover and liveness.

Pure state. Connection ids are opaque integers the hub assigns; the roster
never sees a socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from ..protocol import base_identity, owner_of, project_of, target_parts

if TYPE_CHECKING:
    from .access import Grant

_GLOB = frozenset("*?[")
PRESENCE = "presence"
PRESENCE_SUFFIX = "-presence"


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
    quiet: bool = False
    grant: Grant | None = None
    remote: str = ""
    #: The peer's OS user when the hub could learn it (loopback on Linux); None: unknown.
    peer_uid: int | None = None
    uid_checked: bool = False
    #: Set when the hub refused this connection's registration; later frames are ignored.
    refused: bool = False


#: Identities (and projects) remembered as seen, oldest forgotten first: bounds what a name flood can cost.
SEEN_MEMORY = 65536

#: Takeover stamps kept before a sweep; stamps older than the horizon are dropped then.
TAKEOVER_MEMORY = 1024
TAKEOVER_HORIZON = 300.0


@dataclass(slots=True)
class Roster:
    """Names bound to connections, plus takeover bookkeeping."""

    conns: dict[int, Conn] = field(default_factory=dict)
    names: dict[str, int] = field(default_factory=dict)
    last_takeover: dict[str, float] = field(default_factory=dict)
    sweep_takeovers_at: int = TAKEOVER_MEMORY
    by_owner: dict[str, set[int]] = field(default_factory=dict)
    by_project: dict[str, set[int]] = field(default_factory=dict)
    by_role: dict[str, set[int]] = field(default_factory=dict)
    last_left: dict[str, float] = field(default_factory=dict)
    #: Named connections of admin seats: they also receive directed chats.
    admins: set[int] = field(default_factory=set)
    #: Identity -> its live ``IDENTITY~tag`` listeners (not quiet): they see its directed chats
    #: without being counted as recipients.
    watchers: dict[str, set[int]] = field(default_factory=dict)
    #: Base identity (sidecar suffixes and ``~tag`` stripped) -> every connection speaking for it.
    by_base: dict[str, set[int]] = field(default_factory=dict)
    #: Identities and projects bound since the hub started (at most SEEN_MEMORY, oldest dropped first),
    #: so a receipt can tell an offline agent from a misspelt one. Not persisted: mailbox watermarks are.
    seen: dict[str, None] = field(default_factory=dict)

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

    def bind(self, conn: Conn, name: str, roles: tuple[str, ...] = ()) -> None:
        """Bind ``name`` (and ``roles``) to ``conn``; the caller checked for conflicts."""
        conn.name = name
        conn.roles = roles
        self.names[name] = conn.conn_id
        owner = owner_of(name)
        self.by_owner.setdefault(owner, set()).add(conn.conn_id)
        self.by_base.setdefault(base_identity(name), set()).add(conn.conn_id)
        self._remember(base_identity(name))
        if "/" in owner:
            self.by_project.setdefault(project_of(owner), set()).add(conn.conn_id)
        for role in roles:
            self.by_role.setdefault(role, set()).add(conn.conn_id)
        if conn.grant is not None and conn.grant.is_admin:
            self.admins.add(conn.conn_id)
        if "~" in name and not conn.quiet:
            self.watchers.setdefault(name.split("~", 1)[0], set()).add(conn.conn_id)

    def _remember(self, identity: str) -> None:
        for key in (identity, project_of(identity)):
            if key in self.seen:
                continue
            if len(self.seen) >= SEEN_MEMORY:
                del self.seen[next(iter(self.seen))]
            self.seen[key] = None

    def _unindex(self, conn: Conn) -> None:
        if conn.name is None:
            return
        self.admins.discard(conn.conn_id)
        if "~" in conn.name:
            watching = self.watchers.get(conn.name.split("~", 1)[0])
            if watching is not None:
                watching.discard(conn.conn_id)
                if not watching:
                    del self.watchers[conn.name.split("~", 1)[0]]
        owner = owner_of(conn.name)
        keys = [(self.by_owner, owner), (self.by_base, base_identity(conn.name))]
        keys += [(self.by_role, r) for r in conn.roles]
        if "/" in owner:
            keys.append((self.by_project, project_of(owner)))
        for index, key in keys:
            members = index.get(key)
            if members is not None:
                members.discard(conn.conn_id)
                if not members:
                    del index[key]

    def recipients(self, target: str, exclude: int) -> list[Conn]:
        """Named connections ``target`` reaches (by name, waiter, project, role or glob).

        Uses the indexes, so a directed message costs O(recipients), not
        O(connections); only globs scan.
        """
        t = target.strip()
        ids: set[int] = set()
        parts = target_parts(t)
        if t in ("", "all") or "all" in parts:
            ids = set(self.names.values())
        else:
            for part in parts:
                if not _GLOB.isdisjoint(part):
                    ids.update(self._glob(part))
                    continue
                for index in (self.by_owner, self.by_role, self.by_project if "/" not in part else {}):
                    ids.update(index.get(part, ()))
                if part in self.names:
                    ids.add(self.names[part])
        ids.discard(exclude)
        # A presence holder keeps a project on the roster but never consumes messages.
        return [self.conns[i] for i in sorted(ids) if self.conns[i].wake_capability != PRESENCE]

    def presence_holder(self, target: str) -> str | None:
        """The presence holder's name for the project ``target`` addresses, if one is online."""
        for part in target_parts(target):
            if not _GLOB.isdisjoint(part) or part == "all":
                continue
            name = f"{project_of(part)}{PRESENCE_SUFFIX}"
            cid = self.names.get(name)
            if cid is not None and self.conns[cid].wake_capability == PRESENCE:
                return name
        return None

    def _glob(self, pattern: str) -> list[int]:
        return [
            c.conn_id
            for c in self.named()
            if c.name is not None
            and (
                fnmatchcase(owner_of(c.name), pattern)
                or fnmatchcase(c.name, pattern)
                or any(fnmatchcase(r, pattern) for r in c.roles)
            )
        ]

    def takeover(self, conn: Conn, name: str, now: float, roles: tuple[str, ...] = ()) -> Conn:
        """Atomically move ``name`` to ``conn``; return the displaced connection.

        The name is rebound before the old socket is closed, so no message
        addressed to it can be routed to the dying socket.
        """
        old = self.conns[self.names[name]]
        self._unindex(old)
        old.superseded = True
        old.name = None
        self.bind(conn, name, roles)
        stamps = self.last_takeover
        stamps[name] = now
        if len(stamps) > self.sweep_takeovers_at:
            # Only stamps younger than the longest cooldown matter; drop the rest in one sweep.
            # The next sweep waits until the dict has doubled, so sweeps stay amortised O(1).
            for old_name in [n for n, t in stamps.items() if now - t > TAKEOVER_HORIZON]:
                del stamps[old_name]
            self.sweep_takeovers_at = max(TAKEOVER_MEMORY, 2 * len(stamps))
        return old

    def remove(self, conn_id: int) -> Conn | None:
        """Forget a closed connection; return it if it still held its name."""
        conn = self.conns.pop(conn_id, None)
        if conn is None or conn.name is None:
            return None
        if self.names.get(conn.name) == conn_id:
            self._unindex(conn)
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
