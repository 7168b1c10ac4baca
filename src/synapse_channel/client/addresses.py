"""Hub addresses: the one parser for ``--uri`` / ``SYNAPSE_URI`` / ``[hub] uri``, and standby hints.

Why one module: the URI used to be checked in several places (the click
option, the transport rule, the project trust boundary, the connection
itself), and a list would otherwise be split slightly differently by each.
A value is a comma-separated list of ``ws://`` or ``wss://`` URIs, tried in
order; a single URI is a list of one.

A standby hub (PostgreSQL high availability) closes a connection with
:data:`STANDBY_CLOSE` and the reason ``standby; leader=<uri>``. The hint is
followed only when it names an address the user configured: the hub is
trusted to say *which* of the user's hubs leads, never to pick a new place
for the user's token and messages to go.

Stdlib only and cheap: it runs on every command's start-up.
"""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_URI = "ws://localhost:8876"
#: The close code of a standby hub (``Close.STANDBY`` in :mod:`synapse_channel.protocol`).
STANDBY_CLOSE = 4018
#: A standby's close reason starts with this; the leader's URI follows (may be empty).
STANDBY_PREFIX = "standby; leader="
#: Close codes before ``welcome`` that mean "this hub is going down", not "you may not": try the next address.
GOING_DOWN = frozenset({1001, 1006, 1011, 1012, 1013})


class AddressError(ValueError):
    """A hub URI (list) that cannot be used; the message is one line naming the bad element."""


def split_addresses(text: str) -> list[str]:
    """The elements of a comma-separated URI list, stripped, unchecked (empty ones dropped)."""
    return [part.strip() for part in str(text).split(",") if part.strip()]


def address_problem(uri: str) -> str | None:
    """Why ``uri`` is not a hub URI (None when it is one): ``ws://`` or ``wss://``, a host, a valid port."""
    try:
        parts = urlsplit(uri)
        ok = parts.scheme.lower() in ("ws", "wss") and bool(parts.hostname)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        ok = False
    if ok:
        return None
    return f"{uri!r} is not a hub URI; expected ws://HOST:PORT or wss://HOST:PORT (e.g. {DEFAULT_URI})"


def parse_addresses(text: str) -> tuple[str, ...]:
    """Every hub URI in ``text`` in order, duplicates dropped; :class:`AddressError` for a bad element.

    ``ws://h1:8876, ws://h2:8876`` (spaces allowed) is two addresses; an empty
    element (``ws://h1:8876,,ws://h2:8876``) is refused rather than guessed at.
    """
    raw = str(text).split(",")
    if not str(text).strip():
        raise AddressError(f"no hub URI given; expected ws://HOST:PORT or wss://HOST:PORT (e.g. {DEFAULT_URI})")
    out: list[str] = []
    keys: set[tuple[str, str, int, str]] = set()
    for index, part in enumerate(raw, start=1):
        uri = part.strip()
        where = f"element {index} of {text!r}: " if len(raw) > 1 else ""
        if not uri:
            raise AddressError(f"{where}empty; separate hub URIs with single commas")
        problem = address_problem(uri)
        if problem is not None:
            raise AddressError(where + problem)
        key = address_key(uri)
        if key not in keys:
            keys.add(key)
            out.append(uri)
    return tuple(out)


def address_key(uri: str) -> tuple[str, str, int, str]:
    """What makes two spellings the same hub: scheme, host (case-folded), port (default filled in), path."""
    parts = urlsplit(uri.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    port = parts.port or (443 if scheme == "wss" else 80)
    return scheme, host, port, parts.path.rstrip("/") or "/"


def standby_hint(code: int | None, reason: str) -> str | None:
    """The leader a standby's close names ("" when it names none); None when the close is not a standby's."""
    if code != STANDBY_CLOSE:
        return None
    text = (reason or "").strip()
    return text[len(STANDBY_PREFIX) :].strip() if text.startswith(STANDBY_PREFIX) else ""


def listed(hint: str, addresses: tuple[str, ...]) -> str | None:
    """The user's own spelling of ``hint`` when it is one of ``addresses``; None otherwise.

    Only a well-formed ``ws://``/``wss://`` hint can match; the scheme must
    match too, so a hint never downgrades ``wss://`` to ``ws://``.
    """
    if not hint or address_problem(hint) is not None:
        return None
    key = address_key(hint)
    return next((a for a in addresses if address_key(a) == key), None)


def describe_failure(exc: BaseException) -> str:
    """A short reason for a failed connection attempt (the caller names the address)."""
    import socket

    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]
