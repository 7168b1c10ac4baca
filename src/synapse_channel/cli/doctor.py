"""``synapse doctor``: which protections are in force here, and which are broken.

It answers the questions a user should not have to work out from the config
precedence rules: where will my token go, where did it come from, does this
repository's ``synapse.toml`` get a say, and what does the hub enforce. The
secret itself is never printed. Exit 0 unless a protection is actively broken
(an exposed token file, a token bound for plain ``ws://`` off this machine);
an unreachable hub or an ignored project key is reported, not an error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

Report = dict[str, Any]

OLDER_HUB = "unknown (older hub)"


@click.command()
@click.option("--uri", help="Check this hub URI instead of the configured one (as --uri would for a command).")
@click.option("--token", help="Check with this token (as --token would for a command; never printed).")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), help="Check this token file.")
@click.option("--no-hub", is_flag=True, help="Do not contact the hub.")
@click.option("--timeout", default=3.0, show_default=True, type=click.FloatRange(0.1), help="Seconds to wait for it.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor(
    uri: str | None, token: str | None, token_file: Path | None, no_hub: bool, timeout: float, as_json: bool
) -> None:
    """Report the protections in force: hub URI, token origin, project trust, what the hub enforces.

    Exit 0 normally; 1 when a protection is broken (a token file others can
    read, or a token bound for plain ws:// to a host that is not this machine).
    """
    from ..config import load_config

    config = load_config(strict=False, warn=False)  # the report names ignored keys itself
    report = local_report(config, uri, token, token_file)
    report["hub"] = hub_report(report, token, token_file, config, timeout) if not no_hub else {"contacted": False}
    _hub_warnings(report)
    report["adapters"] = adapters_report(report["warnings"])
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(render(report))
    sys.exit(1 if report["problems"] else 0)


def local_report(config: Any, uri: str | None, token: str | None, token_file: Path | None) -> Report:
    """Everything that can be said without the hub."""
    from ..trust import is_loopback_uri, is_tls_uri, transport_problem
    from .common import token_file_problem, token_origin

    hub_uri = uri or str(config.get("hub.uri"))
    origin = token_origin(token, token_file, config)
    problems: list[str] = []
    warnings: list[str] = []
    token_info: Report = {"source": origin.source, "file": str(origin.file) if origin.file else None}
    if origin.file is not None:
        issue = token_file_problem(origin.file)
        kind = issue[0] if issue else None
        token_info["owner_only"] = {None: True, "empty": True, "exposed": False}.get(kind)  # unreadable: unknown
        if issue is not None:
            (problems if issue[0] == "exposed" else warnings).append(issue[1])
    from ..client.addresses import AddressError, parse_addresses

    try:
        parse_addresses(hub_uri)  # a list is fine; every element must be a hub URI
    except AddressError as exc:
        problems.append(f"hub uri: {exc}")
    configured = origin.source != "none"
    refusal = transport_problem(hub_uri) if configured else None
    if refusal is not None:
        problems.append(f"a token is configured for {hub_uri}: {refusal}")
    return {
        "uri": {
            "value": hub_uri,
            "source": "flag" if uri else config.source("hub.uri"),
            "loopback": is_loopback_uri(hub_uri),
            "tls": is_tls_uri(hub_uri),
        },
        "token": token_info,
        "token_sent": configured and refusal is None,
        "project": _project_section(config, warnings),
        "user_file": str(config.user_file) if config.user_file else None,
        "problems": problems,
        "warnings": warnings,
    }


def _project_section(config: Any, warnings: list[str]) -> Report:
    ignored = [{"key": i.key, "reason": i.reason} for i in config.ignored]
    if ignored:
        keys = ", ".join(i["key"] for i in ignored)
        warnings.append(f"{config.project_file} tried to set {keys}; ignored (the protection is working)")
    pfile = config.project_file
    return {
        "file": str(pfile) if pfile else None,
        "root": str(pfile.parent) if pfile else None,
        "trusted": bool(config.project_trusted) if pfile else None,
        "ignored": ignored,
    }


def hub_report(report: Report, token: str | None, token_file: Path | None, config: Any, timeout: float) -> Report:
    """Connect once (with the token only where it may travel) and read the hub's ``welcome``."""
    import asyncio

    secret: str | None = None
    if report["token_sent"]:
        from .common import resolve_token

        try:
            secret = resolve_token(token, token_file, config)
        except click.UsageError as exc:
            report["token_sent"] = False
            report["warnings"].append(f"token not used: {exc.format_message()}")
    elif report["token"]["source"] != "none":
        return {"contacted": False, "reason": "not contacted: the token may not travel to this URI"}
    from ..protocol import one_shot_name

    name = one_shot_name("doctor", os.environ.get("SYN_IDENTITY") or config.identity, os.getpid())
    return asyncio.run(_ask_hub(report["uri"]["value"], name, secret, timeout))


async def _ask_hub(uri: str, name: str, token: str | None, timeout: float) -> Report:
    """The hub's ``welcome`` as a report section (a seated hub admits ``IDENTITY~doctor-PID``)."""
    from ..api import Closed, Forbidden, Session, SynapseError

    session = None
    try:
        session = Session(name, uri=uri, token=token, timeout=timeout, anonymous=token is None)
        welcome = await session.connect()
    except SynapseError as exc:
        # The hub closed the socket (a refused credential included): it is there, just not welcoming.
        if isinstance(exc, Closed) or (isinstance(exc, Forbidden) and exc.code == "AUTH_DENIED"):
            text = "unknown (no welcome)"
            return {"contacted": True, "reachable": True, "error": str(exc), "security": None, "security_text": text}
        return {"contacted": True, "reachable": False, "error": str(exc)}
    finally:
        if session is not None:
            await session.close()
    security = welcome.get("security")
    if not isinstance(security, dict):
        security = None
    return {
        "contacted": True,
        "reachable": True,
        "hub_id": welcome.get("hub_id"),
        "protocol_version": welcome.get("protocol_version"),
        "security": security,
        "security_text": OLDER_HUB if security is None else _security_text(security),
    }


def _security_text(security: dict[str, Any]) -> str:
    def yes(key: str) -> str:
        value = security.get(key)
        return "?" if value is None else ("yes" if value else "no")

    return (
        f"auth={security.get('auth', '?')} directed={security.get('directed', '?')} "
        f"tls={yes('tls')} loopback_only={yes('loopback_only')}"
    )


def _hub_warnings(report: Report) -> None:
    """What the hub says that weakens a protection (reported, not an error: the hub's operator chose it)."""
    security = report["hub"].get("security") or {}
    if security.get("auth") == "open" and security.get("loopback_only") is False:
        report["warnings"].append("the hub accepts anyone who can reach it (open and not loopback-only)")
    if security.get("auth") == "open" and report["token_sent"]:
        report["warnings"].append("a token is configured but the hub does not check tokens")
    if security.get("directed") == "compat-fanout":
        report["warnings"].append("the hub shows directed messages to every client (compat-fanout)")


def adapters_report(warnings: list[str]) -> list[Report]:
    """Every assistant adapter installed here (either scope): trusted, will it run, the step left.

    Hooks that are installed but will not run are the silent failure users
    cannot see from the assistant (Codex and Gemini skip untrusted hooks
    without a word), so each one is a warning with its one remaining step.
    """
    import contextlib
    import io

    from .adapters import all_adapters

    out: list[Report] = []
    # Loading the plugins reloads the config, which would warn again about the
    # ignored project keys this report already names: keep stderr clean.
    with contextlib.redirect_stderr(io.StringIO()):
        found = sorted(all_adapters().items())
        rows = [(scope, _readiness(a, scope, warnings)) for _, a in found for scope in ("project", "user")]
    for scope, ready in rows:
        if ready is None or not ready["events"]:
            continue
        out.append(ready)
        if not ready["will_run"] or not ready["current"]:
            warnings.append(f"{ready['adapter']} hooks ({scope}) {ready['why']}: {ready['step']}")
    return out


def _readiness(adapter: Any, scope: str, warnings: list[str]) -> Report | None:
    try:
        return dict(adapter.readiness(scope).as_dict())
    except Exception as exc:  # a third-party adapter must not break the report
        warnings.append(f"adapter {getattr(adapter, 'name', adapter)}: could not check ({type(exc).__name__}: {exc})")
        return None


def render(report: Report) -> str:
    """The report for people: one fact per line, problems last."""
    u, t, p, h = report["uri"], report["token"], report["project"], report["hub"]
    transport = ("loopback" if u["loopback"] else "NOT loopback") + (", TLS" if u["tls"] else ", no TLS")
    lines = [f"hub uri:     {u['value']} (from {u['source']}; {transport})"]
    token_line = f"token:       from {t['source']}" if t["source"] != "none" else "token:       none"
    if t["file"]:
        owner = {True: "owner-only", False: "READABLE BY OTHERS", None: "unreadable"}[t.get("owner_only")]
        token_line += f" ({t['file']}, {owner})"
    lines.append(token_line + ("; sent to the hub" if report["token_sent"] else ""))
    if p["file"]:
        ignored = ", ".join(i["key"] for i in p["ignored"]) or "nothing"
        lines.append(f"project:     {p['file']} ({'trusted' if p['trusted'] else 'untrusted'}; ignored: {ignored})")
    else:
        lines.append("project:     no synapse.toml here or above")
    lines.append(f"hub says:    {_hub_line(h)}")
    for ready in report.get("adapters", []):
        trusted = {True: "trusted", False: "NOT trusted", None: "no trust gate"}[ready["trusted"]]
        run = "will run" if ready["will_run"] else "will NOT run"
        lines.append(f"adapter:     {ready['adapter']} ({ready['scope']}): {trusted}, {run}")
    lines += [f"warning:     {w}" for w in report["warnings"]]
    lines += [f"PROBLEM:     {x}" for x in report["problems"]]
    if not report["problems"]:
        lines.append("ok:          no broken protection found")
    return "\n".join(lines)


def _hub_line(hub: Report) -> str:
    if not hub.get("contacted"):
        return str(hub.get("reason") or "not contacted (--no-hub)")
    if not hub.get("reachable"):
        return f"not reachable ({hub.get('error')})"
    if hub.get("error"):
        return f"{hub['error']}; security {hub['security_text']}"
    return f"{hub['security_text']} (hub {hub.get('hub_id')})"
