"""``synapse dashboard``: open the hub's web dashboard with a one-time login link.

The command asks the hub, over the WebSocket and with the credential it
already holds (an observer or admin seat's secret, the shared token, or
nothing on the open loopback hub), for a nonce that works once within a
minute; the link carries only that nonce, and the browser swaps it for an
``HttpOnly`` session cookie. No secret ends up in the URL, the browser's
history or a log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import click

from .common import connection_options
from .requests import Verdict, ask, caller, emit_json, run_request


def login_url(uri: str, reply: dict[str, Any]) -> str:
    """The browser link for a ``dashboard_login`` reply: the hub's own host and port, over HTTP(S)."""
    parts = urlsplit(uri)
    scheme = "https" if parts.scheme == "wss" else "http"
    path = str(reply.get("path") or "/dashboard/login")
    return f"{scheme}://{parts.netloc}{path}?nonce={quote(str(reply.get('nonce', '')), safe='')}"


@click.command()
@connection_options()
@click.option("--print-url", is_flag=True, help="Print the link instead of opening a browser (headless machines).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the link (implies --print-url).")
def dashboard(
    uri: str, name: str | None, token: str | None, token_file: Path | None, print_url: bool, as_json: bool
) -> None:
    """Open the web dashboard in a browser (a one-time login link, valid 60 s).

    Needs an observer or admin seat (--name and its secret), the hub token,
    or, on the open loopback hub, nothing: you are the local operator.
    """
    who = caller(uri, name, token, token_file)
    if "~" not in who.name:
        who = type(who)(who.uri, f"{who.name}~dashboard", who.token)  # never collides with the identity's own socket

    async def go() -> int:
        where: list[str] = []
        reply = await ask(who, "dashboard_login_request", lambda f: f.get("type") == "dashboard_login", where=where)
        if not reply.get("nonce"):
            raise Verdict("the hub did not hand out a login link (is it older than this synapse?)")
        url = login_url(where[0] if where else who.uri, reply)  # the nonce is good on the hub that issued it
        expires = reply.get("expires_in", 60)
        if as_json:
            emit_json({"ok": True, "url": url, "expires_in": expires})
        elif print_url:
            click.echo(url)
            click.echo(f"(works once, within {expires:g} s)", err=True)
        else:
            import webbrowser

            if webbrowser.open(url):
                click.echo("opened the dashboard in your browser", err=True)
            else:
                click.echo(url)
                click.echo(f"no browser found: open this link (works once, within {expires:g} s)", err=True)
        return 0

    run_request(go(), as_json)
