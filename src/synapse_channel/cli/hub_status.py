"""``synapse hub status``: each hub's role, epoch and lag, read from its ``/healthz``.

``/healthz`` is public and answers on a standby too (503), so this needs no
credential and no WebSocket registration: it works while the hub turns every
client away. Several URIs (comma-separated, as a failover list) give one line
per hub.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click


def _health_url(uri: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    scheme = "https" if parts.scheme.lower() == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, "/healthz", "", ""))


def fetch_health(uri: str, timeout: float) -> dict[str, Any]:
    """The hub's ``/healthz`` body (any status code), or ``{"ok": false, "error": ...}`` when unreachable."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(_health_url(uri), timeout=timeout) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
        except ValueError:
            body = {"ok": False, "error": f"HTTP {exc.code}"}
    except (OSError, ValueError) as exc:
        return {"uri": uri, "ok": False, "role": "unreachable", "error": str(getattr(exc, "reason", exc))}
    if not isinstance(body, dict):
        body = {"ok": False, "error": "not a JSON object"}
    body.setdefault("role", "leader" if body.get("ok") else "unknown")  # a SQLite hub always leads
    return {"uri": uri, **body}


def _line(h: dict[str, Any]) -> str:
    if h["role"] == "unreachable":
        return f"{h['uri']}: unreachable ({h.get('error')})"
    parts = [f"{h['uri']}: {h['role']}"]
    if "epoch" in h:
        parts.append(f"epoch {h['epoch']}")
    if "seq" in h:
        parts.append(f"seq {h['seq']}")
    if "lag_events" in h:
        parts.append(f"lag {h['lag_events']} events")
    if h.get("role") != "leader" and h.get("leader"):
        parts.append(f"leader {h['leader']}")
    if not h.get("ok") and h.get("role") == "leader":
        parts.append("UNHEALTHY")
    return ", ".join(parts)


@click.command("status")
@click.option(
    "--uri",
    envvar="SYNAPSE_URI",
    help="Hub URI, or several separated by commas; env SYNAPSE_URI, then [hub] uri.",
)
@click.option("--timeout", default=3.0, show_default=True, type=click.FloatRange(0.1), help="Seconds per hub.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hub (a list for several).")
def status(uri: str | None, timeout: float, as_json: bool) -> None:
    """Show each hub's role (leader/standby), epoch and lag in events; exit 0 when one healthy leader answers."""
    from ..api.cli import checked_uri
    from ..client.addresses import split_addresses
    from ..client.context import settings

    uris = [checked_uri(u) for u in split_addresses(uri or str(settings().get("hub.uri")))]
    found = [fetch_health(u, timeout) for u in uris]
    if as_json:
        click.echo(json.dumps(found[0] if len(found) == 1 else found, sort_keys=True))
    else:
        for h in found:
            click.echo(_line(h))
    sys.exit(0 if any(h.get("ok") and h.get("role") == "leader" for h in found) else 1)
