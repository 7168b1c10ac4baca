"""``synapse backup``, ``synapse db check`` and ``db migrate``: the event log from the outside.

Both read the database file directly (no hub needed). ``backup`` uses
SQLite's online backup API, which copies a consistent snapshot even while the
hub is writing.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import click

from ..paths import syn_home


def _default_db(db: Path | None) -> Path:
    return db if db is not None else syn_home() / "hub.db"


def _open_ro(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise click.ClickException(f"no database at {path}")
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot open {path}: {exc}") from None


@click.command()
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--db", type=click.Path(dir_okay=False, path_type=Path), help="Database to copy [default: $SYN_HOME/hub.db]."
)
@click.option("--force", is_flag=True, help="Overwrite DEST if it exists.")
def backup(dest: Path, db: Path | None, force: bool) -> None:
    """Copy the hub's database to DEST consistently, even while the hub runs."""
    src_path = _default_db(db)
    if dest.exists() and not force:
        raise click.ClickException(f"{dest} exists; pass --force to overwrite it")
    src = _open_ro(src_path)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
    try:
        out = sqlite3.connect(tmp)
        try:
            src.backup(out)
            out.execute("PRAGMA journal_mode=DELETE")
            events, top = out.execute("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM events").fetchone()
            ok = out.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            out.close()
        if ok != "ok":
            raise click.ClickException(f"the copy failed its integrity check: {ok}")
        os.replace(tmp, dest)
    finally:
        src.close()
        if tmp.exists():
            tmp.unlink()
    click.echo(f"backed up {events} events (through seq {top}) from {src_path} to {dest}")


@click.group()
def db() -> None:
    """Inspect the hub's event log."""


@db.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def check(path: Path | None, as_json: bool) -> None:
    """Verify a database file: SQLite integrity, row checksums, snapshot, meta."""
    from ..compaction import compacted_through
    from ..snapshots import check_sync as check_snapshot
    from ..store import checksum

    path = _default_db(path)
    con = _open_ro(path)
    problems: list[str] = []
    report: dict[str, object] = {"path": str(path)}
    try:
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        if integrity != "ok":
            problems.append(f"sqlite integrity: {integrity}")
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        report["hub_id"] = meta.get("hub_id")
        report["schema_version"] = meta.get("schema_version")
        if "hub_id" not in meta:
            problems.append("meta has no hub_id")
        count, bad, first_bad, top = 0, 0, None, 0
        for seq, _ts, kind, data, crc in con.execute("SELECT seq, ts, kind, data, crc FROM events ORDER BY seq"):
            count += 1
            top = seq
            try:
                json.loads(data)
                good = checksum(kind, data) == crc
            except ValueError:
                good = False
            if not good:
                bad += 1
                first_bad = first_bad or seq
        report.update(events=count, last_seq=top, bad_rows=bad)
        if bad:
            problems.append(f"{bad} event rows fail their checksum or do not parse (first at seq {first_bad})")
        snap_seq, snap_problem = check_snapshot(con)
        report["snapshot_seq"] = snap_seq
        if snap_problem:
            problems.append(snap_problem)
        report["quarantined"] = con.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        report["compacted_through"] = base = compacted_through(con)
        if base and (snap_seq or 0) < base:
            problems.append(f"compacted through seq {base} but the newest snapshot is at {snap_seq}")
    except sqlite3.Error as exc:
        problems.append(f"sqlite error: {exc}")
    finally:
        con.close()
    report["problems"] = problems
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(
            f"{path}: hub {report.get('hub_id')}, {report.get('events')} events through seq "
            f"{report.get('last_seq')}, snapshot at {report.get('snapshot_seq')}, "
            f"{report.get('quarantined')} quarantined"
            + (f", compacted through seq {report['compacted_through']}" if report.get("compacted_through") else "")
        )
        click.echo("ok" if not problems else "\n".join(f"PROBLEM: {p}" for p in problems))
    if problems:
        raise SystemExit(1)


@db.command("compact")
@click.option(
    "--db", type=click.Path(dir_okay=False, path_type=Path), help="Database to compact [default: $SYN_HOME/hub.db]."
)
@click.option(
    "--retain-days",
    default=7.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Days chats, acked mail and audit refusals are kept after the snapshot covers them.",
)
def compact(db: Path | None, retain_days: float) -> None:
    """Drop journal rows the newest snapshot covers, then VACUUM (the hub must be stopped)."""
    from ..compaction import compact_file
    from ..store import DatabaseBusy

    path = _default_db(db)
    if not path.exists():
        raise click.ClickException(f"no database at {path}")
    try:
        report = compact_file(path, retain_days)
    except DatabaseBusy:
        raise click.ClickException(
            f"{path} is in use by a running hub; stop it first (the hub compacts on its own)"
        ) from None
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot compact {path}: {exc}") from None
    if not report.through_seq:
        click.echo(
            f"{path}: no snapshot to rely on, nothing dropped (start and stop the hub once to write one); vacuumed"
        )
    click.echo(f"{path}: {report}")


@db.command("migrate")
@click.option(
    "--to", "url", required=True, metavar="URL", help="An empty PostgreSQL database: postgresql://user@host/db"
)
@click.option(
    "--db", type=click.Path(dir_okay=False, path_type=Path), help="SQLite database to copy [default: $SYN_HOME/hub.db]."
)
def migrate(url: str, db: Path | None) -> None:
    """Copy a SQLite event log (stop its hub first) into PostgreSQL, for `synapse hub --db postgresql://...`."""
    import asyncio

    from ..pgmigrate import MigrateError
    from ..pgmigrate import migrate as run_migrate
    from ..pgstore import NoDriver, is_url, redact

    if not is_url(url):
        raise click.BadParameter(f"{url!r} is not a postgresql:// URL", param_hint="--to")
    path = _default_db(db)
    if not path.exists():
        raise click.ClickException(f"no database at {path}")
    try:
        done = asyncio.run(run_migrate(path, url))
    except (MigrateError, NoDriver) as exc:
        raise click.ClickException(str(exc)) from None
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    except Exception as exc:
        if not (type(exc).__module__ or "").startswith("asyncpg") and not isinstance(exc, OSError):
            raise
        raise click.ClickException(f"cannot use {redact(url)}: {type(exc).__name__}: {exc}") from None
    click.echo(f"migrated {path} to {redact(url)}: {done}")
