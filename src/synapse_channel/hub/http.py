"""Plain HTTP on the hub's own port: ``/healthz``, ``/metrics``, and room for the dashboard.

The websockets server hands every opening request to :class:`HttpSurface`
(its ``process_request`` hook) before the handshake. A request that asks to
upgrade to WebSocket goes on untouched, on any path, so every client,
0.99 ones included, connects as before; any other request is answered here
and the connection closed. Routes live in one table, each with the access it
needs, so the dashboard's pages can be added as rows.

Access follows the same rule as the WebSocket door and reuses its check
(:meth:`Hub.credential`): on a hub with seats or a token, a route that is
not public needs ``Authorization: Bearer <secret>`` of an observer or admin
seat (or the shared token); on the open hub it is served to loopback peers
only. A secret is never taken from the URL and never logged; refusals are
journalled like the WebSocket door's (``synapse audit``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING

from ..core.access import ADMIN, OBSERVER
from ..trust import is_loopback_host
from . import metrics

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection
    from websockets.http11 import Request, Response

    from .server import Hub

JSON = "application/json"
ALLOWED_METHODS = "GET"


@dataclass(frozen=True, slots=True)
class Page:
    """A route's answer before it becomes an HTTP response."""

    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    """One path: how to answer it and who may read it.

    ``seated``: an observer or admin seat's bearer secret (loopback peers on
    the open hub); ``session``: a dashboard session cookie, on every hub,
    the open one included (see :mod:`.dashboard`).
    """

    name: str
    answer: Callable[[Hub, Request], Page]
    seated: bool = False
    session: bool = False


def _healthz(hub: Hub, request: Request) -> Page:
    body = metrics.health(hub)
    return Page(200 if body["ok"] else 503, json.dumps(body) + "\n", JSON)


def _metrics(hub: Hub, request: Request) -> Page:
    from ..metrics import Exposition

    return Page(200, metrics.render(hub), Exposition.CONTENT_TYPE)


#: Every dashboard response: scripts and styles from this hub only, never framed, no Referer (the login URL).
DASHBOARD_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)


def _login(hub: Hub, request: Request) -> Page:
    """Spend a one-time nonce: set the session cookie and redirect to the page (no secret left in the URL)."""
    from urllib.parse import parse_qs, urlsplit

    from . import dashboard

    nonce = (parse_qs(urlsplit(request.path).query).get("nonce") or [""])[0]
    made = hub.dashboard.redeem(nonce)
    if made is None:
        why = "this login link was already used or has expired; run `synapse dashboard` for a new one\n"
        return Page(401, why, headers=DASHBOARD_HEADERS)
    cookie = dashboard.set_cookie(made[0], secure=hub.config.tls)
    headers = (*DASHBOARD_HEADERS, ("Location", "/dashboard"), ("Set-Cookie", cookie))
    return Page(303, "logged in; see /dashboard\n", headers=headers)


def _logout(hub: Hub, request: Request) -> Page:
    """End the session the request carries.

    A GET (the websockets server speaks no other method), so only a request
    that carries a live session cookie does anything: the cookie is
    ``SameSite=Strict``, so a link on another site arrives without it and
    cannot log the user out.
    """
    from . import dashboard

    header = cookie_header(request)
    if hub.dashboard.lookup(header) is None:
        return Page(200, "not logged in\n", headers=DASHBOARD_HEADERS)
    hub.dashboard.end(header)
    cookie = dashboard.clear_cookie(secure=hub.config.tls)
    return Page(200, "logged out\n", headers=(*DASHBOARD_HEADERS, ("Set-Cookie", cookie)))


def _asset(path: str) -> Callable[[Hub, Request], Page]:
    def answer(hub: Hub, request: Request) -> Page:
        from . import dashboard

        name = dashboard.ASSETS[path]
        return Page(200, dashboard.asset(name), dashboard.content_type(name), DASHBOARD_HEADERS)

    return answer


def _whoami(hub: Hub, request: Request) -> Page:
    session = hub.dashboard.lookup(cookie_header(request))
    assert session is not None  # the route needs a session
    body = {**session.public(), "hub_id": hub.core.hub_id if hub.core else None}
    return Page(200, json.dumps(body) + "\n", JSON, DASHBOARD_HEADERS)


ROUTES: dict[str, Route] = {
    "/healthz": Route("healthz", _healthz),
    "/metrics": Route("metrics", _metrics, seated=True),
    "/dashboard/login": Route("dashboard_login", _login),
    "/dashboard/logout": Route("dashboard_logout", _logout),
    "/dashboard": Route("dashboard", _asset("/dashboard"), session=True),
    "/dashboard/app.js": Route("dashboard_asset", _asset("/dashboard/app.js"), session=True),
    "/dashboard/app.css": Route("dashboard_asset", _asset("/dashboard/app.css"), session=True),
    "/dashboard/session": Route("dashboard_session", _whoami, session=True),
}


def cookie_header(request: Request) -> str | None:
    """The request's one ``Cookie`` header (None when absent or repeated)."""
    try:
        return request.headers.get("Cookie")
    except Exception:  # several Cookie headers: no single session
        return None


def wants_websocket(request: Request) -> bool:
    """True for a WebSocket opening request (the handshake decides the rest)."""
    try:
        upgrade = request.headers.get("Upgrade")
    except Exception:  # repeated Upgrade headers: let the handshake refuse it
        return True
    return upgrade is not None and upgrade.strip().lower() == "websocket"


class HttpSurface:
    """The ``process_request`` hook: answers plain HTTP, passes WebSocket upgrades through."""

    def __init__(self, hub: Hub, routes: dict[str, Route] | None = None) -> None:
        self.hub = hub
        self.routes = dict(ROUTES if routes is None else routes)

    async def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        if wants_websocket(request):
            return self._dashboard_upgrade(connection, request)
        path = request.path.split("?", 1)[0]
        route = self.routes.get(path)
        label = route.name if route is not None else "other"
        if request.method != "GET":
            page = Page(405, f"{request.method} is not allowed here; use GET\n")
        elif route is None:
            page = self._not_found(path)
        else:
            refused = await self._refusal(connection, request, route)
            page = refused if refused is not None else route.answer(self.hub, request)
        self.hub.metrics.http.add(f"{label}_{page.status}")
        return self._response(connection, page)

    def _dashboard_upgrade(self, connection: ServerConnection, request: Request) -> Response | None:
        """A WebSocket upgrade carrying the dashboard cookie: its session is the credential.

        The cookie must name a live session and the ``Origin`` must be this
        hub's own page (a socket from another site never rides on it); a
        refused upgrade gets ``403``. An upgrade with neither cookie nor
        ``Origin`` goes on as before (every non-browser client); one with an
        ``Origin`` but no session is a web page and gets ``403``.
        """
        from . import dashboard

        cookie = cookie_header(request)
        try:
            origin, host = request.headers.get("Origin"), request.headers.get("Host")
        except Exception:  # repeated headers: no single credential
            return self._response(connection, Page(400, "repeated Origin or Host header\n"))
        if origin is not None:
            self.hub.browser_sockets.add(connection)  # a browser page: it is never handed a login nonce
        if dashboard.cookie_value(cookie) is None:
            if origin is None:
                return None  # every CLI, plugin and 0.99 client: no browser, no Origin
            # Any web page the user visits could otherwise open a socket to a loopback hub and act as any
            # name (cross-site WebSocket hijacking): only the hub's own dashboard page, with its session, may.
            self.hub.metrics.auth_refusals.add("browser")
            return self._response(
                connection, Page(403, "web pages may not connect to the hub; run `synapse dashboard` to log in\n")
            )
        session = self.hub.dashboard.lookup(cookie)
        if session is None or not dashboard.same_origin(origin, host, tls=self.hub.config.tls):
            self.hub.metrics.auth_refusals.add("dashboard")
            why = "no dashboard session" if session is None else "the Origin is not this hub's page"
            return self._response(connection, Page(403, f"{why}; run `synapse dashboard` to log in\n"))
        self.hub.dashboard_sockets[connection] = session
        return None

    @staticmethod
    def _not_found(path: str) -> Page:
        if path == "/":
            return Page(426, "this is a synapse hub: connect with a WebSocket client; GET /healthz or /metrics\n")
        return Page(404, "not found; this hub serves /healthz and /metrics\n")

    async def _refusal(self, connection: ServerConnection, request: Request, route: Route) -> Page | None:
        """None when the peer may read ``route``; else the refusal (401 no/wrong secret, 403 wrong role)."""
        if route.session:
            if self.hub.dashboard.lookup(cookie_header(request)) is not None:
                return None
            why = "log in first: run `synapse dashboard` (it opens a one-time login link)\n"
            return Page(401, why, headers=DASHBOARD_HEADERS)
        if not route.seated:
            return None
        hub = self.hub
        remote = str(connection.remote_address[0]) if connection.remote_address else ""
        if not hub.secured:
            if is_loopback_host(remote):
                return None  # the open hub: any local user can already connect and read as much
            return Page(403, "the open hub serves this to loopback peers only; add seats to read it remotely\n")
        try:
            header = request.headers.get("Authorization") or ""
        except Exception:  # several Authorization headers: no single credential
            header = ""
        scheme, _, secret = header.strip().partition(" ")
        offered = secret.strip() if scheme.lower() == "bearer" else ""
        accepted, grant = hub.credential(offered)
        if not accepted:
            await hub.refuse_credential("http", f"GET {route.name}", remote, bool(offered))
            return Page(401, "send an observer or admin seat's secret: Authorization: Bearer <secret>\n")
        if grant is not None and grant.role not in (OBSERVER, ADMIN):
            why = f"seat {grant.seat!r} is an {grant.role} seat; /{route.name} needs an observer or admin seat"
            await hub.audit("access_denied", seat=grant.seat, remote=remote, verb=f"GET /{route.name}", reason=why)
            return Page(403, why + "\n")
        return None

    @staticmethod
    def _response(connection: ServerConnection, page: Page) -> Response:
        response = connection.respond(HTTPStatus(page.status), page.body)
        headers = response.headers
        del headers["Content-Type"]
        headers["Content-Type"] = page.content_type
        headers["Cache-Control"] = "no-store"
        headers["X-Content-Type-Options"] = "nosniff"
        for key, value in page.headers:
            headers[key] = value
        if page.status == 401 and not page.headers:
            headers["WWW-Authenticate"] = 'Bearer realm="synapse"'
        elif page.status == 405:
            headers["Allow"] = ALLOWED_METHODS
        return response
