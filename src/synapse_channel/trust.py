"""Who may decide where a secret goes: the config trust boundary and the transport rule.

Two rules guard the same thing, the hub token (and any seat secret):

* A project's ``synapse.toml`` (or ``[tool.synapse]``) lives in a repository
  anyone may have written. Unless the user's own config lists the project's
  root under ``[trust] projects``, it may not choose where the token is read
  from (``hub.token_file``) nor point clients at a hub off this machine
  (a non-loopback ``hub.uri``). ``trust.*`` itself is read from the user file
  only, so a project can never vouch for itself.
* A secret never travels in clear text off this machine: over ``ws://`` it may
  go to a loopback host only; ``wss://`` may go anywhere.

Everything here is pure and stdlib-only: it runs on every command's start-up.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

#: Keys an untrusted project file may not set (``hub.uri`` only when it is not loopback).
#: ``paths.home`` holds the feed that ``syn-inbox`` shows an assistant: a repository
#: that chose it could plant "messages" there.
GUARDED_KEYS = ("hub.token_file", "hub.uri", "paths.home")
#: The table that only the user file may set.
USER_ONLY_TABLE = "trust"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def is_loopback_host(host: str | None) -> bool:
    """True for hosts only this machine can reach (``localhost``, 127.0.0.0/8, ``::1``).

    ``0.0.0.0`` and names that merely resolve to loopback do not count: the
    rule must be decidable from the URI alone, before any lookup.
    """
    if not host:
        return False
    host = host.strip("[]").lower().rstrip(".")
    if host in LOOPBACK_NAMES:
        return True
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def uri_host(uri: str) -> str | None:
    """The host part of ``uri`` (None when it has none or does not parse)."""
    try:
        return urlsplit(uri).hostname
    except ValueError:
        return None


def _elements(uri: str) -> list[str]:
    """The addresses of a hub URI or comma-separated list (see :mod:`synapse_channel.client.addresses`)."""
    from .client.addresses import split_addresses

    return split_addresses(uri) or [uri]


def _is_loopback_one(uri: str) -> bool:
    try:
        scheme = urlsplit(uri).scheme
    except ValueError:
        return False
    return scheme in ("ws", "wss") and is_loopback_host(uri_host(uri))


def is_loopback_uri(uri: str) -> bool:
    """True when ``uri`` is a ``ws://``/``wss://`` URI whose host is this machine (for a list: every one)."""
    return all(_is_loopback_one(u) for u in _elements(uri))


def is_tls_uri(uri: str) -> bool:
    """True for ``wss://`` (the transport encrypts whatever it carries); for a list, every address."""
    return all(u.lower().startswith("wss://") for u in _elements(uri))


def transport_problem(uri: str) -> str | None:
    """Why a secret may not be sent to ``uri`` (any address of a list), or None when it may.

    The only refusal is plain ``ws://`` to a host that is not loopback: anyone
    on the path could read the token out of the registration frame.
    """
    for one in _elements(uri):
        if is_tls_uri(one) or _is_loopback_one(one):
            continue
        host = uri_host(one) or one
        return (
            f"refusing to send the hub token over plain ws:// to {host}, which is not this machine; "
            "use a wss:// URI (or a loopback hub)"
        )
    return None


def project_refusal(key: str, value: object, *, trusted: bool) -> str | None:
    """Why a project file may not set ``key`` to ``value`` (None: it may).

    ``trust.*`` is refused even from a trusted project: trust is granted by
    the user's own file, never by the thing being trusted.
    """
    if key.split(".", 1)[0] == USER_ONLY_TABLE:
        return "trust is read from the user config only"
    if trusted:
        return None
    if key == "hub.token_file":
        return "an untrusted project may not choose the token file"
    if key == "hub.uri" and not is_loopback_uri(str(value)):  # a list: every address must be loopback
        return "an untrusted project may not point clients at a non-loopback hub"
    if key == "paths.home":
        return "an untrusted project may not move the coordination home (feed, cursors, database)"
    if key == "adapters.codex.queue_wake_remote":
        return "an untrusted project may not choose the server that message text is sent to"
    if key.startswith("adapters.tmux_bridge."):
        return "an untrusted project may not change which screens the tmux bridge types into"
    return None


def trusted_root(root: Path, entries: Iterable[object]) -> bool:
    """True when ``root`` (a project's folder) is one of the user's trusted project roots.

    Entries are absolute paths after ``~`` expansion; the match is exact
    (after resolving symlinks): trusting ``~/src`` does not trust
    ``~/src/vendored-thing``.
    """
    here = root.resolve()
    for entry in entries:
        path = Path(str(entry)).expanduser()
        if path.is_absolute() and path.resolve() == here:
            return True
    return False
