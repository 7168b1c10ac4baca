"""The web dashboard's logins and sessions: one-time nonces swapped for an ``HttpOnly`` cookie.

``synapse dashboard`` asks the hub over its WebSocket (with the credential
it already holds) for a nonce; the browser opens ``/dashboard/login?nonce=``,
which spends the nonce once and sets a random session cookie. Nonces and
sessions live only in the hub's memory (a restart logs everyone out), are
stored by their SHA-256 (a dict lookup then leaks no timing about a live
secret), expire, and are bounded in number. A session keeps the seat it was
made from, so revoking or rotating that seat ends it.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from importlib import resources

from ..core.access import ADMIN, OBSERVER, Grant

COOKIE = "synapse_dash"
#: Seconds a login link works (once).
NONCE_TTL = 60.0
#: Seconds a browser session lasts.
SESSION_TTL = 12 * 3600.0
MAX_NONCES = 256
MAX_SESSIONS = 256
#: The identity of a seatless session's sockets (``dashboard~<id>``); a seat's are ``SEAT~dash-<id>``.
IDENTITY = "dashboard"
#: A role for sessions without a seat: the open loopback hub's local user, or a shared-token holder.
OPERATOR = "operator"
ASSETS = {"/dashboard": "index.html", "/dashboard/app.js": "app.js", "/dashboard/app.css": "app.css"}
TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class DashSession:
    """A logged-in browser: the name its socket registers with and what it may do."""

    name: str
    role: str
    seat: str | None
    grant: Grant | None
    expires: float

    @property
    def can_answer(self) -> bool:
        """Admins and operators answer questions in the page; observers only watch."""
        return self.role != OBSERVER

    def public(self) -> dict[str, object]:
        """What the page is told about itself (no secret)."""
        return {"name": self.name, "role": self.role, "seat": self.seat, "can_answer": self.can_answer}


def _key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def may_log_in(grant: Grant | None) -> bool:
    """Observer and admin seats (and seatless operators) may open the dashboard; agent seats may not."""
    return grant is None or grant.role in (OBSERVER, ADMIN)


class Sessions:
    """Nonces and sessions, in memory, bounded, expiring."""

    def __init__(self, valid: Callable[[Grant], bool] = lambda g: True, clock: Callable[[], float] = time.time) -> None:
        self._valid = valid
        self._clock = clock
        self._nonces: OrderedDict[str, tuple[Grant | None, float]] = OrderedDict()
        self._sessions: OrderedDict[str, DashSession] = OrderedDict()

    def issue_nonce(self, grant: Grant | None) -> str:
        """A fresh one-time login nonce for ``grant`` (the oldest unused one goes past the bound)."""
        nonce = secrets.token_urlsafe(24)
        self._nonces[_key(nonce)] = (grant, self._clock() + NONCE_TTL)
        while len(self._nonces) > MAX_NONCES:
            self._nonces.popitem(last=False)
        return nonce

    def redeem(self, nonce: str) -> tuple[str, DashSession] | None:
        """Spend ``nonce`` (once, before it expires): a new ``(cookie value, session)``, else None."""
        entry = self._nonces.pop(_key(nonce), None) if nonce else None
        now = self._clock()
        if entry is None or entry[1] < now:
            return None
        grant = entry[0]
        if grant is not None and not self._valid(grant):
            return None
        sid = secrets.token_urlsafe(32)
        tag = secrets.token_hex(4)
        session = DashSession(
            name=f"{IDENTITY}~{tag}" if grant is None else f"{grant.seat}~dash-{tag}",
            role=OPERATOR if grant is None else grant.role,
            seat=None if grant is None else grant.seat,
            grant=grant,
            expires=now + SESSION_TTL,
        )
        self._sessions[_key(sid)] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return sid, session

    def lookup(self, cookie_header: str | None) -> DashSession | None:
        """The live session a ``Cookie`` header carries, or None (expired or revoked ones are forgotten)."""
        sid = cookie_value(cookie_header)
        if not sid:
            return None
        key = _key(sid)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires < self._clock() or (session.grant is not None and not self._valid(session.grant)):
            del self._sessions[key]
            return None
        return session

    def end(self, cookie_header: str | None) -> None:
        """Log out: forget the session the header carries."""
        sid = cookie_value(cookie_header)
        if sid:
            self._sessions.pop(_key(sid), None)


def cookie_value(header: str | None) -> str | None:
    """The dashboard cookie's value in a ``Cookie`` header (None when absent or unparsable)."""
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


def set_cookie(sid: str, *, secure: bool) -> str:
    """The ``Set-Cookie`` value: script cannot read it, no other site sends it."""
    flags = f"{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/; Max-Age={int(SESSION_TTL)}"
    return flags + ("; Secure" if secure else "")


def clear_cookie(*, secure: bool) -> str:
    """A ``Set-Cookie`` value that deletes the session cookie."""
    return f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0" + ("; Secure" if secure else "")


_CACHE: dict[str, str] = {}


def asset(name: str) -> str:
    """A page or script shipped in the wheel (read once)."""
    if name not in _CACHE:
        _CACHE[name] = resources.files(__package__).joinpath("dashboard_assets").joinpath(name).read_text("utf-8")
    return _CACHE[name]


def content_type(name: str) -> str:
    """The ``Content-Type`` of an asset by its extension."""
    return TYPES[name.rsplit(".", 1)[-1]]


def same_origin(origin: str | None, host: str | None, *, tls: bool) -> bool:
    """Is a WebSocket upgrade's ``Origin`` this hub's own page (``scheme://Host``)?"""
    if not origin or not host:
        return False
    scheme = "https" if tls else "http"
    return origin.strip().lower() == f"{scheme}://{host.strip().lower()}"
