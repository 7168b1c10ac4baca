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


@dataclass(frozen=True, slots=True)
class Route:
    """One path: how to answer it and whether it needs an observer or admin seat."""

    name: str
    answer: Callable[[Hub], Page]
    seated: bool


def _healthz(hub: Hub) -> Page:
    body = metrics.health(hub)
    return Page(200 if body["ok"] else 503, json.dumps(body) + "\n", JSON)


def _metrics(hub: Hub) -> Page:
    from ..metrics import Exposition

    return Page(200, metrics.render(hub), Exposition.CONTENT_TYPE)


ROUTES: dict[str, Route] = {
    "/healthz": Route("healthz", _healthz, seated=False),
    "/metrics": Route("metrics", _metrics, seated=True),
}


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
            return None
        path = request.path.split("?", 1)[0]
        route = self.routes.get(path)
        label = route.name if route is not None else "other"
        if request.method != "GET":
            page = Page(405, f"{request.method} is not allowed here; use GET\n")
        elif route is None:
            page = self._not_found(path)
        else:
            refused = await self._refusal(connection, request, route)
            page = refused if refused is not None else route.answer(self.hub)
        self.hub.metrics.http.add(f"{label}_{page.status}")
        return self._response(connection, page)

    @staticmethod
    def _not_found(path: str) -> Page:
        if path == "/":
            return Page(426, "this is a synapse hub: connect with a WebSocket client; GET /healthz or /metrics\n")
        return Page(404, "not found; this hub serves /healthz and /metrics\n")

    async def _refusal(self, connection: ServerConnection, request: Request, route: Route) -> Page | None:
        """None when the peer may read ``route``; else the refusal (401 no/wrong secret, 403 wrong role)."""
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
        if page.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="synapse"'
        elif page.status == 405:
            headers["Allow"] = ALLOWED_METHODS
        return response
