"""The hub's pure state machine: frames in, :class:`Outcome` out.

Live frames go through :meth:`HubCore.receive`, which decides and emits
events; every event is applied through :meth:`HubCore.apply`, the same path
replay uses on start, so the state after a restart equals the state before it.
The clock is passed in; nothing here does I/O.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

from ..protocol import (
    DEFAULT_PRIORITY_SENDERS,
    PROTOCOL_VERSION,
    REASON_BAD_NAME,
    REASON_COOLDOWN,
    REASON_NAME_CONFLICT,
    REASON_NAME_OWNED,
    REASON_RESERVED,
    REASON_ROLE,
    REASON_SEAT_NAME,
    REASON_SUPERSEDED,
    Close,
    Command,
    ProtocolError,
    Registration,
    base_identity,
    encode,
    hub_frame,
    int_field,
    is_broadcast,
    is_fleet_wide,
    is_reserved,
    name_problem,
    owner_of,
    project_of,
    registration_of,
    target_parts,
)
from . import access, catchup, paging, presence, searching, who
from . import attention as attention_verbs
from . import board as board_verbs
from . import claims as claim_verbs
from . import protocol_text as text
from .access import Grant
from .attention import Attention
from .board import Board
from .claims import Claims
from .mailbox import Mailbox, MailboxLimits, is_directed_chat
from .outcome import Event, Outcome, compact_json
from .roster import Conn, Roster

#: Fields a client may put on a frame that must never be relayed or journalled.
SECRET_FIELDS = ("token", "owner_lease", "auth", "signature", "identity_public_key")

#: Presence frames list the whole roster only up to this many names (see ``_presence``).
PRESENCE_ROSTER_LIMIT = 200

Handler = Callable[["HubCore", Conn, Command, float, Outcome], None]

#: Seconds a departed name has to come back before others hear it ``left``.
PRESENCE_GRACE = 1.0

#: Bytes of recent chats kept for ``history_request`` and resume (besides the count bound):
#: 500 chats of 1 MiB would otherwise pin 500 MiB and ride in every snapshot.
HISTORY_MAX_BYTES = 16 * 1024 * 1024

#: The ``error`` code for a chat refused because the mailbox is at one of its bounds.
MAILBOX_FULL = "MAILBOX_FULL"


class HubCore:
    """Roster, chat and mailbox state for one hub."""

    def __init__(
        self,
        hub_id: str,
        *,
        compat_fanout: bool = False,
        takeover_cooldown: float = 2.0,
        allowed_roles: frozenset[str] = frozenset(),
        priority_senders: frozenset[str] = frozenset(DEFAULT_PRIORITY_SENDERS),
        max_claims_per_agent: int = claim_verbs.MAX_CLAIMS_PER_OWNER,
        presence_grace: float = PRESENCE_GRACE,
        mailbox_limits: MailboxLimits | None = None,
        history_max_bytes: int = HISTORY_MAX_BYTES,
        max_frame_bytes: int = paging.DEFAULT_MAX_FRAME_BYTES,
        replay_budget: int = 8 * paging.DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self.hub_id = hub_id
        self.compat_fanout = compat_fanout
        self.takeover_cooldown = takeover_cooldown
        self.allowed_roles = allowed_roles
        self.priority_senders = priority_senders
        #: Largest frame the hub sends; list replies are paged below it, bigger chats refused.
        self.max_frame_bytes = max_frame_bytes
        #: Bytes of mailbox replay queued at one registration; the rest follows the next one.
        self.replay_budget = replay_budget
        #: What the hub enforces, told to every client in ``welcome`` (set by the hub).
        self.security: dict[str, Any] = {"auth": "open", "directed": self.directed_mode}
        self.roster = Roster()
        #: A name that leaves is announced ``left`` only after this many seconds
        #: without coming back, so a ``wait`` re-arm is silent for everyone else.
        self.presence_grace = presence_grace
        self.leaving: dict[str, float] = {}
        #: Joins and leaves not broadcast yet (see :meth:`flush_presence`).
        self.presence = presence.PresenceBatch()
        self.mailbox = Mailbox(limits=mailbox_limits or MailboxLimits())
        self.seq = 0
        self.msg_id = 0
        self.history: deque[dict[str, Any]] = deque()
        self.history_sizes: deque[int] = deque()
        self.history_bytes = 0
        self.history_max_bytes = history_max_bytes
        self.handlers: dict[str, Handler] = dict(BASE_HANDLERS)
        self.appliers: dict[str, Callable[[Event], None]] = {
            "chat": self._apply_chat,
            "mailbox_watermark": self._apply_watermark,
        }
        self.claims = Claims(max_claims_per_agent)
        self.board = Board()
        self.attention = Attention()
        claim_verbs.install(self)
        board_verbs.install(self)
        attention_verbs.install(self)

    # ------------------------------------------------------------------ events

    def emit(self, out: Outcome, kind: str, data: dict[str, Any], now: float, text: str | None = None) -> Event:
        """Create the next event, apply it, and queue it for the journal (``text``: ``data`` already encoded)."""
        event = Event(self.seq + 1, now, kind, data, len(text) if text else 0, text)
        self.apply(event)
        out.events.append(event)
        return event

    def apply(self, event: Event) -> None:
        """Fold one journalled event into the state (live and replay alike)."""
        applier = self.appliers.get(event.kind)
        if applier is not None:
            applier(event)
        if event.seq > self.seq:
            self.seq = event.seq

    def _apply_chat(self, event: Event) -> None:
        frame = event.data["frame"]
        msg_id = frame.get("msg_id", 0)
        if msg_id > self.msg_id:
            self.msg_id = msg_id
        self._remember(frame, event.size)
        if is_directed_chat(frame):
            self.mailbox.store(frame, event.size)
            if event.data.get("recipients"):
                self.mailbox.delivered.add(event.seq)

    def _remember(self, frame: dict[str, Any], size: int) -> None:
        """Add a chat to the recent history, dropping the oldest past the count or byte bound."""
        history, sizes = self.history, self.history_sizes
        size = size or len(compact_json(frame))
        self.history_bytes += size
        history.append(frame)
        sizes.append(size)
        limit, budget = catchup.HISTORY_LIMIT, self.history_max_bytes
        while len(history) > limit or (self.history_bytes > budget and len(history) > 1):
            history.popleft()
            self.history_bytes -= sizes.popleft()

    @property
    def directed_mode(self) -> str:
        """``private`` (directed chats reach only their addressees) or ``compat-fanout``."""
        return "compat-fanout" if self.compat_fanout else "private"

    def _apply_watermark(self, event: Event) -> None:
        self.mailbox.ack(event.data["identity"], int(event.data["through_seq"]))

    def snapshot(self) -> dict[str, Any]:
        """The replayable state as JSON-ready data (connections are not state)."""
        return {
            "seq": self.seq,
            "msg_id": self.msg_id,
            "mailbox": self.mailbox.dump(),
            "history": list(self.history),
            "history_sizes": list(self.history_sizes),
            "claims": self.claims.dump(),
            "board": self.board.dump(),
            "attention": self.attention.dump(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot`; events after ``state["seq"]`` are replayed next."""
        self.seq = int(state["seq"])
        self.msg_id = int(state["msg_id"])
        self.mailbox.load(state["mailbox"])
        self.history.clear()
        self.history_sizes.clear()
        self.history_bytes = 0
        history = state.get("history", [])
        for frame, size in zip(history, state.get("history_sizes") or [0] * len(history), strict=True):
            self._remember(frame, size)
        self.claims.load(state.get("claims", {"live": [], "epoch": 0, "operations": []}))
        self.board.load(state.get("board", {"tasks": [], "progress": []}))
        self.attention.load(state.get("attention", {}))

    def expire(self, now: float) -> Outcome:
        """Journal and announce every lease that has run out by ``now``; announce settled departures."""
        out = Outcome()
        claim_verbs.expire(self, now, out)
        self._settle(now)
        return out

    def settle_all(self, now: float) -> Outcome:
        """Announce every departure still in its grace, and every change not broadcast yet (the hub is stopping)."""
        self._settle(now, everyone=True)
        return self.flush_presence(now)

    def _settle(self, now: float, everyone: bool = False) -> None:
        if self.leaving:
            for name, left_at in list(self.leaving.items()):
                if everyone or now - left_at >= self.presence_grace:
                    del self.leaving[name]
                    if name not in self.roster.names:
                        self._presence("left", name)

    def next_deadline(self) -> float | None:
        """When :meth:`expire` next has work: a lease running out or a departure settling."""
        lease = self.claims.next_deadline()
        if not self.leaving:
            return lease
        settle = min(self.leaving.values()) + self.presence_grace
        return settle if lease is None else min(lease, settle)

    # ------------------------------------------------------------------ connections

    def frame(self, ftype: str, target: str, payload: Any, now: float, **extra: Any) -> dict[str, Any]:
        """A hub frame stamped with this hub's id."""
        return hub_frame(ftype, target, payload, now=now, hub_id=self.hub_id, **extra)

    def open(self, conn_id: int, now: float, *, grant: Grant | None = None, remote: str = "") -> Outcome:
        """Admit a connection (authenticated as ``grant``, if any) and greet it with ``welcome``."""
        roster = self._roster_field()
        conn = Conn(conn_id, now, self.seq, last_seen=now, grant=grant, remote=remote)
        self.roster.conns[conn_id] = conn
        extra: dict[str, Any] = {"security": self.security}
        if grant is not None:
            extra["seat"] = grant.public()
        out = Outcome()
        out.send(
            conn_id,
            self.frame(
                "welcome",
                "self",
                "Welcome to Synapse",
                now,
                connected_clients=len(self.roster.conns),
                **roster,
                protocol_version=PROTOCOL_VERSION,
                **extra,
            ),
        )
        return out

    def audit(self, out: Outcome, kind: str, now: float, **data: Any) -> None:
        """Journal a refusal (or other security fact) as an audit event; never a secret."""
        self.emit(out, kind, data, now)

    def deny(self, out: Outcome, conn: Conn, verb: str, message: str, now: float) -> None:
        """Refuse a cross-identity or out-of-role request: audit it, answer ``error`` FORBIDDEN."""
        self._access_denied(out, conn, conn.name, verb, message, now)
        self.error(out, conn, message, now, code=access.FORBIDDEN)

    def _access_denied(self, out: Outcome, conn: Conn, name: str | None, verb: str, reason: str, now: float) -> None:
        """The one shape of an ``access_denied`` audit event (the name is capped: it may be hostile)."""
        seat = conn.grant.seat if conn.grant else None
        name = name[:200] if name else name
        self.audit(out, "access_denied", now, name=name, seat=seat, remote=conn.remote, verb=verb, reason=reason)

    def uid_checks(self, conn_id: int, cmd: Command) -> list[Conn]:
        """Connections whose OS user must be known before this registration is decided.

        On a hub without seats, an identity's names belong to the OS user whose
        connection holds them (see ``_owned_elsewhere``). The hub looks the
        peers up (an I/O step the core cannot do) only when another
        connection of the same identity is online, so a plain registration
        costs nothing.
        """
        conn = self.roster.conns.get(conn_id)
        if conn is None or conn.name is not None or conn.grant is not None or not conn.remote:
            return []
        others = self._same_identity(cmd.sender, conn_id)
        if not others:
            return []
        return [c for c in (conn, *others) if not c.uid_checked]

    def _same_identity(self, name: str, exclude: int) -> list[Conn]:
        ids = set(self.roster.by_base.get(base_identity(name), ()))
        holder = self.roster.names.get(name)
        if holder is not None:
            ids.add(holder)
        ids.discard(exclude)
        return [self.roster.conns[i] for i in sorted(ids) if i in self.roster.conns]

    def close(self, conn_id: int, now: float) -> Outcome:
        """Forget a closed connection; announce ``left`` if it held its name."""
        out = Outcome()
        conn = self.roster.remove(conn_id)
        if conn is not None and conn.name is not None:
            owner = owner_of(conn.name)
            if owner in self.claims.per_owner:
                self.roster.last_left[owner] = now  # how long a claim holder has been away (state_request)
            else:
                self.roster.last_left.pop(owner, None)  # nothing to report: keep no per-name state
            out.notify("client_left", name=conn.name)
            if not conn.quiet:
                if self.presence_grace > 0:
                    self.leaving[conn.name] = now  # announced by expire() unless the name comes back
                else:
                    self._presence("left", conn.name)
        return out

    def _presence(self, event: str, agent: str) -> None:
        """Note a join or leave; the hub broadcasts the batch with :meth:`flush_presence`.

        Broadcasting each change at once costs O(N) frames per join, O(N^2)
        as a fleet connects; batched, every socket gets one frame per flush.
        """
        self.presence.note(agent, event)

    def flush_presence(self, now: float) -> Outcome:
        """Broadcast every presence change noted since the last flush (nothing if none).

        The full roster rides along only while it is small: with N sockets a
        roster in every presence frame costs O(N^2) bytes per ramp-up (2,000
        joins x 2,000 recipients x 2,000 names). Above the limit the frame
        carries ``online_count`` instead; ``who`` always has the full list.
        """
        out = Outcome()
        if not self.presence:
            return out
        online = self.roster.online()
        roster = self._roster_field(online)

        def make(payload: str, **fields: Any) -> dict[str, Any]:
            return self.frame("presence_update", "all", payload, now, **fields)

        presence.flush_into(out, self.presence, self.roster.all_ids(), online, roster, make, self.max_frame_bytes // 3)
        return out

    def _roster_field(self, online: list[str] | None = None) -> dict[str, Any]:
        """``online_agents`` while the roster is small, else ``online_count`` (presence and welcome).

        Above the limit the sorted list is never built: a ``welcome`` per
        registration listing everyone was O(N) work and bytes per socket, O(N^2)
        as 10k agents connect.
        """
        count = len(self.roster.names)
        if count > PRESENCE_ROSTER_LIMIT:
            return {"online_count": count}
        names = self.roster.online() if online is None else online
        if paging.encoded_size(names) > self.max_frame_bytes // 3:
            return {"online_count": count}  # long names: the list would crowd the frame past its budget
        return {"online_agents": names}

    # ------------------------------------------------------------------ frames

    def receive(self, conn_id: int, cmd: Command, now: float) -> Outcome:
        """Apply one validated client frame from an admitted connection."""
        out = Outcome()
        conn = self.roster.conns.get(conn_id)
        if conn is None:
            return out
        conn.last_seen = now
        try:
            if conn.refused:
                return out  # being closed: one refusal (and one audit row) is enough
            if conn.name is None:
                if not self._register(conn, cmd, now, out):
                    conn.refused = True
                    return out
            elif cmd.sender != conn.name:
                raise ProtocolError(
                    "SENDER_MISMATCH",
                    f"sender {cmd.sender!r} does not match this connection's name {conn.name!r}",
                )
            handler = self.handlers.get(cmd.type)
            if handler is None:
                raise ProtocolError("UNSUPPORTED", f"frame type {cmd.type!r} is not supported by this hub")
            if not access.verb_allowed(conn, cmd.type):
                self.deny(out, conn, cmd.type, f"an observer seat may not send {cmd.type!r}", now)
                return out
            handler(self, conn, cmd, now, out)
        except ProtocolError as exc:
            self.error(out, conn, str(exc), now, code=exc.code)
        return out

    def error(self, out: Outcome, conn: Conn, message: str, now: float, **extra: Any) -> None:
        """Queue a private ``error`` frame for ``conn``."""
        out.send(conn.conn_id, self.frame("error", conn.name or "self", message, now, **extra))

    def _register(self, conn: Conn, cmd: Command, now: float, out: Outcome) -> bool:
        """Bind the first frame's sender; False when the connection is refused."""
        reg = registration_of(cmd.raw)
        name = cmd.sender
        if not self._admissible(conn, name, reg, now, out):
            return False
        holder = self.roster.holder(name)
        if holder is not None and not reg.takeover:
            self._refuse(
                out, conn, name, text.CONFLICT.format(name=name), Close.NAME_CONFLICT, REASON_NAME_CONFLICT, now
            )
            return False
        owned = self._owned_elsewhere(conn, name)
        if owned is not None:
            self._access_denied(out, conn, name, "register", owned, now)
            self._refuse(out, conn, name, owned, Close.NAME_OWNED, REASON_NAME_OWNED, now)
            return False
        conn.quiet = reg.quiet  # before binding: quiet one-shots are not listeners (Roster.watchers)
        if holder is not None:
            last = self.roster.last_takeover.get(name, -math.inf)
            if now - last < self.takeover_cooldown:
                out.close(conn.conn_id, Close.TAKEOVER_COOLDOWN, REASON_COOLDOWN)
                return False
            old = self.roster.takeover(conn, name, now, reg.roles)
            out.close(old.conn_id, Close.SUPERSEDED, REASON_SUPERSEDED)
        else:
            self.roster.bind(conn, name, reg.roles)
        conn.wake_capability = reg.wake_capability
        out.notify("client_joined", name=name, wake_capability=reg.wake_capability)
        if holder is None and not reg.quiet and self.leaving.pop(name, None) is None:
            self._presence("joined", name)  # not a re-arm within the grace: a real join
        if reg.mailbox:
            self._replay_mailbox(conn, reg, now, out)
        return True

    def _admissible(self, conn: Conn, name: str, reg: Registration, now: float, out: Outcome) -> bool:
        """The name grammar, the seat's names and the granted roles; refusals are audited."""
        if is_reserved(name):
            self._refuse(out, conn, name, text.RESERVED.format(name=name), Close.NAME_CONFLICT, REASON_RESERVED, now)
            return False
        problem = name_problem(name)
        if problem is not None:
            self._access_denied(out, conn, name, "register", problem, now)
            self.error(out, conn, f"cannot register {name!r}: {problem}", now, code="BAD_NAME")
            out.close(conn.conn_id, Close.IDENTITY_REFUSED, REASON_BAD_NAME)
            return False
        if not access.seat_allows_name(conn.grant, name):
            assert conn.grant is not None
            seat = conn.grant.seat
            message = f"seat {seat!r} may not use the name {name!r}; connect as {seat} or a name granted to it"
            self._access_denied(out, conn, name, "register", message, now)
            out.send(conn.conn_id, self.frame("auth_denied", name, message, now))
            out.close(conn.conn_id, Close.SUPERSEDED, REASON_SEAT_NAME)
            return False
        refused = [r for r in reg.roles if r not in self.allowed_roles]
        if refused:
            message = f"role(s) {', '.join(map(repr, refused))} are not granted by this hub (hub --role)"
            self._access_denied(out, conn, name, "register", message, now)
            self.error(out, conn, message, now, code="ROLE_REFUSED")
            out.close(conn.conn_id, Close.IDENTITY_REFUSED, REASON_ROLE)
            return False
        return True

    def _owned_elsewhere(self, conn: Conn, name: str) -> str | None:
        """Why another connection's owner keeps ``name`` from ``conn``, or None.

        With seats, a name is owned by the seats it is granted to (checked in
        :meth:`_admissible`). Without seats, an online identity belongs to the
        OS user whose connection holds it: another local user may not take
        it over or attach a waiter to it. Where the hub cannot learn a peer's
        user (not Linux, not loopback), this rule cannot apply.
        """
        if conn.grant is not None:
            return None
        for other in self._same_identity(name, conn.conn_id):
            if other.grant is not None:
                return f"Name {name!r} is held by seat {other.grant.seat!r}; connect with that seat's secret."
            if conn.peer_uid is not None and other.peer_uid is not None and other.peer_uid != conn.peer_uid:
                return (
                    f"Name {name!r} belongs to another OS user's online session. "
                    "Choose your own --name, or use a seat (synapse seat add)."
                )
        return None

    def _refuse(self, out: Outcome, conn: Conn, name: str, message: str, code: int, reason: str, now: float) -> None:
        out.send(conn.conn_id, self.frame("name_conflict", name, message, now))
        out.close(conn.conn_id, code, reason)

    def _replay_mailbox(self, conn: Conn, reg: Registration, now: float, out: Outcome) -> None:
        assert conn.name is not None
        identity = reg.mailbox_for or owner_of(conn.name)
        if not access.speaks_for(conn, identity):
            self.deny(out, conn, "mailbox_for", f"{conn.name!r} may not read the mailbox of {identity!r}", now)
            return
        budget = self.replay_budget
        for frame in self.mailbox.pending_for(identity, conn.roles, reg.since_seq):
            if self.compat_fanout and frame["seq"] > conn.admitted_seq:
                continue  # this socket already received it live (compatibility fan-out)
            replayed = {**frame, "replayed": True}
            data = encode(replayed)
            size = len(data.encode())
            if size > self.max_frame_bytes:
                replayed = paging.chat_stub(replayed, size)
                data = encode(replayed)
                size = len(data.encode())
            if size > budget and budget < self.replay_budget:
                break  # the waiter acks what it got; its next registration replays the rest
            budget -= size
            self.mailbox.delivered.add(frame["seq"])
            out.send(conn.conn_id, replayed, encoded=data)
            out.notify("message_delivered", message=frame, recipients=[identity])

    def post_chat(self, out: Outcome, conn: Conn, frame: dict[str, Any], now: float) -> None:
        """Journal and deliver a chat the hub composes for ``conn`` (an ``ask-human`` answer).

        It takes the path of a sent chat: stored in the mailbox when directed,
        delivered to whoever is online for its target, seen by admins and
        waiters. A mailbox at its bounds refuses it before anything is
        journalled (``MAILBOX_FULL``).
        """
        frame.update(timestamp=now, hub_id=self.hub_id, msg_id=self.msg_id + 1, seq=self.seq + 1)
        wire = encode(frame)
        recips = self.recipients(frame["target"], conn.conn_id)
        names = sorted({owner_of(c.name) for c in recips if c.name})
        encoded = f'{{"frame":{wire},"recipients":{compact_json(names)}}}'
        refused = self.mailbox.refusal(frame["target"], frame["sender"], len(encoded))
        if refused is not None:
            raise ProtocolError(MAILBOX_FULL, f"the mailbox of {frame['target']!r} is full: {refused[1]}")
        self.emit(out, "chat", {"frame": frame, "recipients": names}, now, encoded)
        if self.compat_fanout:
            audience = self.roster.all_ids()
        else:
            ids = {c.conn_id for c in recips} | self.roster.admins
            for identity in {*names, *target_parts(frame["target"])}:
                ids.update(self.roster.watchers.get(identity, ()))
            audience = tuple(sorted(ids))
        out.send(audience, frame, public=True, encoded=wire)
        out.notify("message_received", message=frame, recipients=names)
        if names:
            out.notify("message_delivered", message=frame, recipients=names)

    # ------------------------------------------------------------------ audiences

    def recipients(self, target: str, sender_conn: int) -> list[Conn]:
        """Named connections (other than the sender's) that ``target`` reaches."""
        return self.roster.recipients(target, sender_conn)


# ---------------------------------------------------------------------- handlers


def _heartbeat(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    """Keepalive; the registration part was handled when the name was bound."""


def _chat(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    raw = cmd.raw
    target = cmd.target
    frame = {k: v for k, v in raw.items() if k not in SECRET_FIELDS}
    if "timestamp" in raw:
        frame["client_timestamp"] = raw["timestamp"]
    seq = core.seq + 1
    msg_id = core.msg_id + 1
    frame.update(timestamp=now, hub_id=core.hub_id, msg_id=msg_id, seq=seq)
    if base_identity(cmd.sender) in core.priority_senders:
        frame["priority"] = True
    wire = encode(frame)
    limit = paging.chat_limit(core.max_frame_bytes)
    if len(wire) * 4 > limit and (size := len(wire.encode())) > limit:
        raise ProtocolError(
            "TOO_LARGE",
            f"chat refused: it would be a {size}-byte frame, over this hub's limit of {limit} bytes "
            "(--max-frame-bytes less room for paging); nothing was stored. Split it or send a file path.",
        )
    recips = core.recipients(target, conn.conn_id)
    names = sorted({owner_of(c.name) for c in recips if c.name})
    data = {"frame": frame, "recipients": names}
    encoded = f'{{"frame":{wire},"recipients":{compact_json(names)}}}'  # == compact_json(data), frame encoded once
    if is_directed_chat(frame) and _mailbox_refuses(core, conn, cmd, len(encoded), now, out):
        return
    core.emit(out, "chat", data, now, encoded)
    if core.compat_fanout or is_fleet_wide(target):
        audience = core.roster.all_ids()
    else:
        ids = {c.conn_id for c in recips} | core.roster.admins
        watchers = core.roster.watchers
        if watchers:
            for identity in {*names, *target_parts(target)}:
                ids.update(watchers.get(identity, ()))
        ids.discard(conn.conn_id)
        audience = tuple(sorted(ids))
    out.send(audience, frame, public=True, encoded=wire)
    out.notify("message_received", message=frame, recipients=names)
    if names and not is_broadcast(target):
        out.notify("message_delivered", message=frame, recipients=names)
    if raw.get("receipt_requested") is True:
        out.send(conn.conn_id, _receipt(core, conn, frame, recips, names, now))


def _mailbox_refuses(core: HubCore, conn: Conn, cmd: Command, size: int, now: float, out: Outcome) -> bool:
    """Refuse a directed chat the mailbox may not keep: ``error`` MAILBOX_FULL to the sender, nothing journalled.

    A bound that refuses is what keeps one client from filling the hub's
    memory and disk (and, before snapshots were chunked, from bricking it).
    """
    refused = core.mailbox.refusal(cmd.target, cmd.sender, size)
    if refused is None:
        return False
    limit, why = refused
    message = f"message to {cmd.target!r} not stored: {why} (the hub's mailbox bounds); its recipients must ack first"
    extra: dict[str, Any] = {"code": MAILBOX_FULL, "limit": limit, "message_target": cmd.target}
    if isinstance(cmd.raw.get("client_msg_id"), str):
        extra["client_msg_id"] = cmd.raw["client_msg_id"]
    core.error(out, conn, message, now, **extra)
    return True


def _receipt(
    core: HubCore, conn: Conn, frame: dict[str, Any], recips: list[Conn], names: list[str], now: float
) -> dict[str, Any]:
    target = frame["target"]
    delivered = bool(names)
    directed = is_directed_chat(frame)
    held_by = None if delivered or not directed else core.roster.presence_holder(target)
    if delivered:
        payload = text.DELIVERED.format(names=", ".join(names))
        phase = "immediate_delivered"
    elif held_by:
        payload = text.QUEUED.format(target=target, holder=held_by)
        phase = "queued"
    else:
        payload = text.UNDELIVERED.format(target=target)
        phase = "pending"
    caps = {owner_of(c.name): c.wake_capability for c in recips if c.name}
    return core.frame(
        "delivery_receipt",
        conn.name or "self",
        payload,
        now,
        client_msg_id=frame.get("client_msg_id", ""),
        message_target=target,
        message_id=frame["msg_id"],
        message_seq=frame["seq"],
        delivered=delivered,
        dead_lettered=not delivered and not held_by,
        deferred=bool(held_by),
        queued=not delivered and directed,
        held_by=held_by,
        reason="" if delivered else ("queued_for_presence" if held_by else "no_online_recipient"),
        recipient_known=delivered or bool(held_by) or not directed or recipient_known(core, target),
        matched_recipients=names,
        recipients=names,
        stale_recipients=[],
        recipient_wake_capabilities=caps,
        receipt_notification_id=f"delivery-receipt:{frame['seq']}:{phase}",
    )


def recipient_known(core: HubCore, target: str) -> bool:
    """Whether every named part of ``target`` is a name this hub knows, so a typo is not just "queued".

    Known: seen online since the hub started (as an identity or a project;
    :attr:`Roster.seen`, bounded), a mailbox that has waited (an ack
    watermark, kept across restarts), a role online, or the owner of a live
    claim. A name in a known project counts as known, so a new seat of a
    known project is not flagged. Globs are not judged.
    """
    roster, mailbox = core.roster, core.mailbox
    for part in target_parts(target):
        if part == "all" or any(c in part for c in "*?["):
            continue
        owner = owner_of(part)
        project = project_of(owner)
        if not (
            owner in roster.seen
            or project in roster.seen
            or owner in mailbox.watermarks
            or project in mailbox.readers
            or part in roster.by_role
            or core.claims.per_owner.get(owner)
        ):
            return False
    return True


def _ack(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    seq = int_field(cmd.raw, "seq")
    identity = cmd.raw.get("mailbox_for") or owner_of(conn.name or "")
    if not isinstance(identity, str) or not identity:
        raise ProtocolError("BAD_FIELD", "field 'mailbox_for' must be a non-empty string")
    if not access.speaks_for(conn, identity):
        core.deny(out, conn, "ack", f"{conn.name!r} may not ack the mailbox of {identity!r}", now)
        return
    if seq < 0 or seq > core.seq:
        raise ProtocolError("BAD_FIELD", f"cannot ack seq {seq}: the journal ends at {core.seq}")
    if seq > core.mailbox.watermarks.get(identity, 0):
        core.emit(out, "mailbox_watermark", {"identity": identity, "through_seq": seq, "source": "ack"}, now)
        out.notify("message_acked", identity=identity, seq=seq)


BASE_HANDLERS: dict[str, Handler] = {
    "heartbeat": _heartbeat,
    "chat": _chat,
    "who_request": who.handle_who,
    "ack": _ack,
    "history_request": catchup.history,
    "resume_request": catchup.resume,
    "message_status_request": catchup.message_status,
    "search_request": searching.handle,
}
