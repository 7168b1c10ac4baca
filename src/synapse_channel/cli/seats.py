"""``synapse seat`` and ``synapse audit``: per-agent credentials and the security log.

Both work on the hub's database, not through a hub (the hub need not be
running): its SQLite file on the hub's host, or its PostgreSQL database
(``--db postgresql://...``, read by every hub of the group). Whoever can write
that database owns the hub. A running hub picks seat changes up within half
a second.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ..paths import syn_home

DB_OPTION = click.option(
    "--db",
    envvar="SYNAPSE_HUB_DB",
    metavar="PATH|URL",
    help="The hub's database: its SQLite file or postgresql://user@host/db (env SYNAPSE_HUB_DB) "
    "[default: $SYN_HOME/hub.db].",
)
AUDIT_KINDS = ("auth_denied", "access_denied", "claim_denial", "release_denial")


def _is_url(db: str | None) -> bool:
    return db is not None and db.startswith(("postgresql://", "postgres://"))


def _path(db: str | None) -> Path:
    if db == ":memory:":
        raise click.ClickException("a hub with --db :memory: keeps no seats; give it a database file or URL")
    return Path(db) if db else syn_home() / "hub.db"


@contextlib.contextmanager
def _store(db: str | None) -> Iterator[Any]:
    """The hub's seat tables; a refused request or an unusable database becomes a one-line error."""
    from ..seats import SeatError, SeatStore

    if db is not None and _is_url(db):
        from ..pgseats import PgSeatClient

        with _pg_errors(db):
            try:
                yield PgSeatClient(db)
            except SeatError as exc:
                raise click.ClickException(str(exc)) from None
        return
    path = _path(db)
    try:
        store = SeatStore(path)
    except (OSError, sqlite3.Error) as exc:
        raise click.ClickException(f"cannot open the hub database {path}: {exc}") from None
    try:
        yield store
    except SeatError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


@contextlib.contextmanager
def _pg_errors(url: str) -> Iterator[None]:
    """An unreachable or refusing PostgreSQL (or no asyncpg) is one line naming the URL without its password."""
    from ..pgstore import NoDriver, redact

    try:
        yield
    except NoDriver as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        if not (type(exc).__module__ or "").startswith("asyncpg") and not isinstance(exc, OSError | TimeoutError):
            raise
        raise click.ClickException(f"cannot use {redact(url)}: {type(exc).__name__}: {exc}") from None


def _by() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment: the change is still logged
        return ""


@click.group()
def seat() -> None:
    """Manage seats: per-agent credentials (secrets are shown once, stored hashed)."""


@seat.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["agent", "observer", "admin"]),
    default="agent",
    show_default=True,
    help="agent: its own mail, claims, tasks, chat; observer: read-only; admin: everything.",
)
@click.option(
    "--names",
    "patterns",
    multiple=True,
    metavar="PATTERN",
    help="More identities this seat may register, globs allowed (e.g. 'api/*'); repeatable.",
)
@DB_OPTION
def add(name: str, role: str, patterns: tuple[str, ...], db: str | None) -> None:
    """Create seat NAME and print its secret, alone on the last line (shown only now)."""
    with _store(db) as store:
        secret = store.add(name, role, tuple(p for ps in patterns for p in ps.split(",") if p), by=_by())
    click.echo(
        f"seat {name} ({role}) created; give the agent this secret as SYNAPSE_TOKEN (shown only once):", err=True
    )
    click.echo(secret)


@seat.command("rotate")
@click.argument("name")
@DB_OPTION
def rotate(name: str, db: str | None) -> None:
    """Give seat NAME a new secret (printed on the last line); the old one stops working."""
    with _store(db) as store:
        secret = store.rotate(name, by=_by())
    click.echo(f"seat {name} rotated; its live connections are closed. New secret (shown only once):", err=True)
    click.echo(secret)


@seat.command("revoke")
@click.argument("name")
@DB_OPTION
def revoke(name: str, db: str | None) -> None:
    """Disable seat NAME; a running hub closes its connections within a second."""
    with _store(db) as store:
        store.revoke(name, by=_by())
    click.echo(f"seat {name} revoked")


@seat.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@DB_OPTION
def list_seats(as_json: bool, db: str | None) -> None:
    """List seats with their role and names (never their secrets)."""
    with _store(db) as store:
        seats = [s.public() for s in store.seats()]
    if as_json:
        click.echo(json.dumps(seats, indent=2, sort_keys=True))
        return
    if not seats:
        click.echo("no seats: the hub is open (or uses a shared token). Add one: synapse seat add NAME")
        return
    for s in seats:
        state = "active" if s["active"] else "revoked"
        names = ", ".join(s["names"]) or "-"
        click.echo(f"{s['name']:<28} {s['role']:<9} {state:<8} key {s['key_id']}  also: {names}")


@click.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1), help="Newest entries to show.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@DB_OPTION
def audit(limit: int, as_json: bool, db: str | None) -> None:
    """Show refused authentication, refused cross-identity access and seat changes."""
    if db is not None and _is_url(db):
        with _store(db) as store:
            entries = store.audit(AUDIT_KINDS, limit)
        entries.sort(key=lambda e: e["ts"])
        entries = entries[-limit:]
    else:
        path = _path(db)
        if not path.exists():
            raise click.ClickException(f"no database at {path}")
        entries = _audit_entries(path, limit)
    for entry in entries:
        if as_json:
            click.echo(json.dumps(entry, sort_keys=True))
        else:
            click.echo(_render(entry))
    if not entries and not as_json:
        click.echo("nothing in the audit log")


def _audit_entries(path: Path, limit: int) -> list[dict[str, Any]]:
    from ..seats import seat_changes

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    entries: list[dict[str, Any]] = []
    try:
        marks = ",".join("?" * len(AUDIT_KINDS))
        query = f"SELECT seq, ts, kind, data FROM events WHERE kind IN ({marks}) ORDER BY seq DESC LIMIT ?"
        for seq, ts, kind, data in _rows(con, query, (*AUDIT_KINDS, limit)):
            entries.append({"ts": ts, "kind": kind, "seq": seq, **json.loads(data)})
        entries += seat_changes(con, limit)
    finally:
        con.close()
    entries.sort(key=lambda e: e["ts"])
    return entries[-limit:]


def _rows(con: sqlite3.Connection, query: str, args: tuple[Any, ...]) -> list[Any]:
    try:
        return con.execute(query, args).fetchall()
    except sqlite3.OperationalError:  # a table this database does not have yet
        return []


def _render(entry: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry["ts"]))
    skip = {"ts", "kind", "seq"}
    rest = " ".join(f"{k}={v}" for k, v in sorted(entry.items()) if k not in skip and v not in (None, "", []))
    return f"{when} {entry['kind']:<15} {rest}"
