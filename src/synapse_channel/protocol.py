"""The synapse-channel wire protocol: envelope, verbs, close codes, validation.

Sans-I/O: this module turns raw text frames into typed commands and builds
hub frames as plain dicts. It never touches a socket or the clock (callers pass
``now``), so the hub, the client and the tests share one definition of the
wire. The protocol is the one the synapse-channel 0.99.x clients speak; see
``docs/protocol.md``.

Its records are plain ``__slots__`` classes, not dataclasses: the git guard
imports this module on every commit, and ``dataclasses`` (with ``inspect``)
would cost it ~9 ms.
"""

from __future__ import annotations

import json
import math
import re
from enum import IntEnum
from fnmatch import fnmatchcase

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a commit ~3 ms
if TYPE_CHECKING:
    from typing import Any, Final

PROTOCOL_VERSION = 7
HUB_SENDER = "SynapseHub"
SYSTEM_TARGET = "System"
OPERATOR = "CEO"
BROADCAST_TARGETS = frozenset({"", "all"})
RESERVED_NAMES = frozenset({HUB_SENDER, SYSTEM_TARGET, "all", "self", ""})
MAX_NAME_LEN = 200
#: Registered names are shorter than this (see :func:`name_problem`).
MAX_IDENTITY_LEN = 128
WAITER_SUFFIXES = ("-pane-rx", "-rx")
#: Suffixes of side connections that speak for the identity they are attached to.
SIDECAR_SUFFIXES = ("-pane-rx", "-rx", "-who")
#: Default priority senders: their chats are stamped ``priority: true`` by the hub.
DEFAULT_PRIORITY_SENDERS = (OPERATOR,)


class Close(IntEnum):
    """WebSocket close codes. 4xxx meanings are shared with the 0.99.x clients,
    which also read the reason text, so reasons are part of the contract."""

    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    NAME_CONFLICT = 4009
    SUPERSEDED = 4010  # also "auth denied"; clients split on the reason
    AUTH_TIMEOUT = 4012
    CAPACITY = 4013
    IDENTITY_REFUSED = 4013  # same code; 0.99 clients tell it apart by "identity" in the reason
    TAKEOVER_COOLDOWN = 4014
    HOST_CAP = 4015
    NAME_OWNED = 4016
    SLOW_CONSUMER = 4017  # ours: more than --max-queue-bytes waited unsent for this socket
    STANDBY = 4018  # ours: a standby hub (PostgreSQL HA); the reason is "standby; leader=<uri>"


REASON_SUPERSEDED = "superseded"
REASON_AUTH_DENIED = "auth denied"
REASON_AUTH_TIMEOUT = "auth timeout"
REASON_REGISTER_TIMEOUT = "registration timeout"
REASON_NAME_CONFLICT = "name conflict"
REASON_RESERVED = "reserved identity"
REASON_COOLDOWN = "takeover cooldown"
REASON_CAPACITY = "hub at capacity"
REASON_HOST_CAP = "too many connections from this host"
REASON_NAME_OWNED = "name owned"
REASON_SEAT_NAME = "auth denied: name not granted to this seat"
REASON_SEAT_REVOKED = "auth denied: seat revoked or rotated"
REASON_SEATS_REQUIRED = "auth denied: this hub now requires a seat"
REASON_BAD_NAME = "identity refused: invalid name"
REASON_ROLE = "identity refused: role not granted"
REASON_SLOW_CONSUMER = "slow consumer: send queue over limit"
#: A standby hub's close reason (4018) starts with this; the leader's advertised URI follows (may be empty).
REASON_STANDBY_PREFIX = "standby; leader="


class ProtocolError(ValueError):
    """A frame the hub cannot accept. ``code`` is a stable machine-readable tag."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- commands


class Command:
    """A validated client frame. ``raw`` keeps every field the client sent."""

    __slots__ = ("payload", "raw", "sender", "target", "type")

    def __init__(self, type: str, sender: str, target: str, payload: Any, raw: dict[str, Any]) -> None:
        self.type: Final = type
        self.sender: Final = sender
        self.target: Final = target
        self.payload: Final = payload
        self.raw: Final = raw

    def __eq__(self, other: object) -> bool:
        return type(other) is Command and (self.type, self.sender, self.target, self.payload, self.raw) == (
            other.type,
            other.sender,
            other.target,
            other.payload,
            other.raw,
        )

    __hash__ = None  # type: ignore[assignment]  # ``raw`` is a dict

    def __repr__(self) -> str:
        return f"Command(type={self.type!r}, sender={self.sender!r}, target={self.target!r}, payload={self.payload!r})"


class Registration:
    """Optional fields a first frame may carry to shape the connection."""

    __slots__ = ("mailbox", "mailbox_for", "quiet", "roles", "since_seq", "takeover", "token", "wake_capability")

    def __init__(
        self,
        token: str | None = None,
        takeover: bool = False,
        wake_capability: str = "direct",
        roles: tuple[str, ...] = (),
        mailbox: bool = False,
        since_seq: int = 0,
        mailbox_for: str | None = None,
        quiet: bool = False,
    ) -> None:
        self.token: Final = token
        self.takeover: Final = takeover
        self.wake_capability: Final = wake_capability
        self.roles: Final = roles
        self.mailbox: Final = mailbox
        self.since_seq: Final = since_seq
        self.mailbox_for: Final = mailbox_for
        self.quiet: Final = quiet

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.token,
            self.takeover,
            self.wake_capability,
            self.roles,
            self.mailbox,
            self.since_seq,
            self.mailbox_for,
            self.quiet,
        )

    def __eq__(self, other: object) -> bool:
        return type(other) is Registration and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:  # never the token
        return (
            f"Registration(takeover={self.takeover!r}, wake_capability={self.wake_capability!r}, "
            f"roles={self.roles!r}, mailbox={self.mailbox!r}, since_seq={self.since_seq!r}, "
            f"mailbox_for={self.mailbox_for!r}, quiet={self.quiet!r})"
        )


KNOWN_TYPES = frozenset(
    {
        "heartbeat",
        "chat",
        "who_request",
        "ack",
        "history_request",
        "resume_request",
        "state_request",
        "claim_check",
        "claim",
        "release",
        "renew",
        "checkpoint",
        "handoff",
        "ledger_task",
        "ledger_task_update",
        "ledger_progress",
        "board_request",
        "message_status_request",
        "attention_ask",
        "attention_answer",
        "attention_cancel",
        "attention_request",
        "dashboard_login_request",
        "search_request",
    }
)

_STRING_FIELDS = ("sender", "target", "type")


def parse_frame(data: str | bytes) -> Command:
    """Parse one client text frame into a :class:`Command`.

    Raises :class:`ProtocolError` for anything a well-behaved client would not
    send: binary or non-UTF-8 data, invalid JSON, a non-object, a missing or
    wrong-typed envelope field, non-finite numbers or an unknown verb.
    """
    if isinstance(data, bytes):
        raise ProtocolError("BINARY_FRAME", "binary frames are not supported; send JSON text")
    try:
        obj = json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    except ProtocolError:
        raise
    except RecursionError:
        raise ProtocolError("MALFORMED_JSON", "frame is nested too deeply") from None
    except ValueError as exc:
        raise ProtocolError("MALFORMED_JSON", f"frame is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("NOT_AN_OBJECT", "frame must be a JSON object")
    for name in _STRING_FIELDS:
        value = obj.get(name)
        if not isinstance(value, str):
            kind = "missing" if value is None else "not a string"
            raise ProtocolError("BAD_FIELD", f"field '{name}' is {kind}")
    ftype = obj["type"]
    if ftype not in KNOWN_TYPES:
        raise ProtocolError("UNKNOWN_TYPE", f"unknown frame type {ftype!r}")
    sender = obj["sender"]
    if len(sender) > MAX_NAME_LEN or any(ord(c) < 32 or c.isspace() for c in sender):
        raise ProtocolError("BAD_FIELD", "field 'sender' must be a short name without spaces")
    ts = obj.get("timestamp")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float)):
        raise ProtocolError("BAD_FIELD", "field 'timestamp' must be a number")
    return Command(ftype, sender, obj["target"], obj.get("payload", ""), obj)


def _reject_constant(name: str) -> float:
    raise ProtocolError("MALFORMED_JSON", f"non-finite number {name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError("MALFORMED_JSON", f"number {text[:20]} is out of range")
    return value


def registration_of(raw: dict[str, Any]) -> Registration:
    """Read the registration fields of a first frame, tolerating absent ones.

    Wrong-typed optional fields raise :class:`ProtocolError` rather than being
    guessed at, so a client bug shows up instead of a silent default.
    """
    token = raw.get("token")
    if token is not None and not isinstance(token, str):
        raise ProtocolError("BAD_FIELD", "field 'token' must be a string")
    roles = raw.get("roles") or []
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise ProtocolError("BAD_FIELD", "field 'roles' must be a list of strings")
    since = raw.get("since_seq", 0)
    if since is None:
        since = 0
    if isinstance(since, bool) or not isinstance(since, int) or since < 0:
        raise ProtocolError("BAD_FIELD", "field 'since_seq' must be a non-negative integer")
    mailbox_for = raw.get("mailbox_for")
    if mailbox_for is not None and not isinstance(mailbox_for, str):
        raise ProtocolError("BAD_FIELD", "field 'mailbox_for' must be a string")
    cap = raw.get("wake_capability", "direct")
    return Registration(
        token=token,
        takeover=raw.get("takeover") is True,
        wake_capability=cap if isinstance(cap, str) else "direct",
        roles=tuple(roles),
        mailbox=raw.get("mailbox") is True,
        since_seq=since,
        mailbox_for=mailbox_for,
        quiet=raw.get("quiet") is True,
    )


def int_field(raw: dict[str, Any], name: str, *, default: int | None = None) -> int:
    """Return an integer field or raise :class:`ProtocolError` naming it."""
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError("BAD_FIELD", f"field '{name}' must be an integer")
    return value


def number_field(raw: dict[str, Any], name: str, default: float) -> float:
    """Return a finite number field (or ``default`` when absent)."""
    value = raw.get(name, default)
    try:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ProtocolError("BAD_FIELD", f"field '{name}' must be a number")
        return float(value)
    except OverflowError:
        raise ProtocolError("BAD_FIELD", f"field '{name}' is out of range") from None


# --------------------------------------------------------------------------- frames


def hub_frame(ftype: str, target: str, payload: Any, *, now: float, hub_id: str, **extra: Any) -> dict[str, Any]:
    """Build a frame as the hub sends it: our sender, clock and ``hub_id``."""
    frame: dict[str, Any] = {
        "sender": HUB_SENDER,
        "target": target,
        "type": ftype,
        "payload": payload,
        "timestamp": now,
        "hub_id": hub_id,
    }
    frame.update(extra)
    return frame


def client_frame(ftype: str, sender: str, target: str, payload: Any, now: float, **extra: Any) -> dict[str, Any]:
    """Build a frame as a client sends it."""
    frame: dict[str, Any] = {
        "sender": sender,
        "target": target,
        "type": ftype,
        "payload": payload,
        "timestamp": now,
    }
    frame.update(extra)
    return frame


def encode(frame: dict[str, Any]) -> str:
    """Serialise a frame compactly (one encoding is shared by every recipient); never emits NaN/Infinity."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# --------------------------------------------------------------------------- addressing


def owner_of(name: str) -> str:
    """The identity a connection name speaks for: ``X-rx`` and ``X-pane-rx`` -> ``X``."""
    return _strip_suffix(name, WAITER_SUFFIXES)


def _strip_suffix(name: str, suffixes: tuple[str, ...]) -> str:
    """``name`` without the first of ``suffixes`` it ends with (never down to nothing)."""
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._@+=-]*"
_NAME_RE = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*(?:~[A-Za-z0-9._-]+)?")
_RESERVED_FOLDED = frozenset(n.casefold() for n in RESERVED_NAMES | {"system", "hub"})


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be registered, or None when it follows the grammar.

    A name is ASCII ``segment(/segment)*`` with an optional ``~tag`` tail for
    one-shot connections; a segment starts with a letter, digit or ``_`` and
    continues with letters, digits and ``. _ @ + = -``. So a name is never a
    target pattern (no ``, * ? [`` or whitespace), never a path escape (no
    ``..`` segment), never a look-alike (no control, format or non-ASCII
    characters), and never ``all`` or another reserved word in any case.
    """
    if not name:
        return "the name is empty"
    if len(name) > MAX_IDENTITY_LEN:
        return f"the name is longer than {MAX_IDENTITY_LEN} characters"
    if not name.isascii() or _NAME_RE.fullmatch(name) is None:
        return (
            "names are ASCII 'project/seat' segments of letters, digits and . _ @ + = - "
            "(no spaces, commas, globs or control characters)"
        )
    if is_reserved(name):
        return f"{name!r} is reserved by the hub"
    return None


def is_reserved(name: str) -> bool:
    """Names only the hub may use (``all``, ``System``, ``SynapseHub...``), in any case."""
    return name.casefold() in _RESERVED_FOLDED or name.casefold().startswith(HUB_SENDER.casefold())


def base_identity(name: str) -> str:
    """The identity a connection name belongs to, for access checks.

    Strips a one-shot ``~tag`` tail and one sidecar suffix (``-rx``,
    ``-pane-rx``, ``-who``): ``api/a1-rx``, ``api/a1-who`` and
    ``api/a1~send-12`` all speak for ``api/a1``. Routing uses
    :func:`owner_of`, which does not strip ``-who`` (a ``who`` is no inbox).
    """
    return _strip_suffix(name.split("~", 1)[0], SIDECAR_SUFFIXES)


def one_shot_name(tag: str, identity: str | None = None, pid: int = 0) -> str:
    """A unique name for a short-lived connection: ``IDENTITY~tag-PID``, or ``tag-PID``.

    The ``~`` tail keeps it attributable to (and, on a seated hub, allowed
    for) the identity it acts for, while never colliding with it or counting
    as a recipient of its mail.
    """
    unique = f"{tag}-{pid}"
    return f"{identity}~{unique}" if identity else unique


def project_of(identity: str) -> str:
    """The project part of ``project/seat`` (the whole name when there is no ``/``)."""
    return identity.split("/", 1)[0]


def target_parts(target: str) -> list[str]:
    """Split a comma list target into its stripped, non-empty parts."""
    return [p.strip() for p in target.split(",") if p.strip()]


def is_broadcast(target: str) -> bool:
    """True for fleet-wide targets: empty, ``all`` or containing a ``*`` glob."""
    t = target.strip()
    return t in BROADCAST_TARGETS or "*" in t


def is_fleet_wide(target: str) -> bool:
    """True when a chat goes to every socket: ``""``, ``all``, ``*`` or a list containing ``all``.

    Narrower than :func:`is_broadcast`: a glob such as ``api/*`` wakes like a
    broadcast but is delivered only to the connections it matches.
    """
    t = target.strip()
    return t in BROADCAST_TARGETS or t == "*" or "all" in target_parts(t)


def is_one_to_many(target: str) -> bool:
    """True when one message can wake many agents (broadcast, glob or comma list)."""
    return is_broadcast(target) or "," in target


def part_addresses(part: str, identity: str, roles: tuple[str, ...] = ()) -> bool:
    """Does one target part address ``identity`` (exactly, by role, project or glob)?"""
    if part == identity or part in roles:
        return True
    if "/" not in part and "/" in identity and project_of(identity) == part:
        return True
    if any(c in part for c in "*?["):
        return fnmatchcase(identity, part) or any(fnmatchcase(r, part) for r in roles)
    return False


def addresses(target: str, identity: str, roles: tuple[str, ...] = (), *, directed_only: bool = False) -> bool:
    """Is ``identity`` a recipient of a chat to ``target``?

    With ``directed_only`` a plain broadcast (``all`` or empty) never matches;
    globs and project names still do, as they name a group the identity is in.
    """
    t = target.strip()
    if t in BROADCAST_TARGETS:
        return not directed_only
    for part in target_parts(t):
        if part == "all":
            if not directed_only:
                return True
            continue
        if part_addresses(part, identity, roles):
            return True
    return False


class WakeFilter:
    """The client-side rule deciding whether a chat wakes a waiter."""

    __slots__ = ("connect_name", "directed_only", "for_name", "ignore_senders", "roles")

    def __init__(
        self,
        for_name: str,
        connect_name: str,
        roles: tuple[str, ...] = (),
        directed_only: bool = False,
        ignore_senders: frozenset[str] = frozenset(),
    ) -> None:
        self.for_name, self.connect_name, self.roles = for_name, connect_name, roles
        self.directed_only, self.ignore_senders = directed_only, ignore_senders

    def __repr__(self) -> str:
        return (
            f"WakeFilter(for_name={self.for_name!r}, connect_name={self.connect_name!r}, roles={self.roles!r}, "
            f"directed_only={self.directed_only!r}, ignore_senders={self.ignore_senders!r})"
        )

    def wakes(self, frame: dict[str, Any]) -> bool:
        """True when ``frame`` is a chat that should wake this waiter."""
        if frame.get("type") != "chat":
            return False
        sender = frame.get("sender")
        if sender in (self.for_name, self.connect_name) or sender in self.ignore_senders:
            return False
        target = frame.get("target")
        if not isinstance(target, str):
            return False
        if addresses(target, self.for_name, self.roles, directed_only=self.directed_only):
            return True
        if self.directed_only and addresses(target, self.for_name, self.roles):
            return frame.get("priority") is True
        return False
