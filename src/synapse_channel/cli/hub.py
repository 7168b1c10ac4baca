"""``synapse hub``: run the coordination hub in the foreground."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .common import read_token_file

if TYPE_CHECKING:
    from ..hub.config import HubConfig
    from ..hub.server import Hub


@click.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", default=8876, show_default=True, type=click.IntRange(0, 65535), help="Port (0 picks a free one)."
)
@click.option("--token", envvar="SYNAPSE_TOKEN", help="Shared token clients must present (env SYNAPSE_TOKEN).")
@click.option(
    "--token-file", type=click.Path(dir_okay=False, path_type=Path), help="Read the token from an owner-only file."
)
@click.option(
    "--tls-certfile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Serve wss:// with this certificate.",
)
@click.option(
    "--tls-keyfile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Private key for --tls-certfile.",
)
@click.option("--hub-id", help="Hub id for a new database (default: generated once, then stored).")
@click.option(
    "--db",
    default=None,
    envvar="SYNAPSE_HUB_DB",
    help="Event log: a SQLite path, ':memory:' (no persistence), or postgresql://user@host/db for several hubs "
    "with one leader (env SYNAPSE_HUB_DB). [default: $SYN_HOME/hub.db]",
)
@click.option(
    "--advertise",
    default=None,
    metavar="URI",
    help="PostgreSQL: the ws:// URI standbys send clients to while this hub leads [default: the bound address].",
)
@click.option(
    "--lease",
    default=5.0,
    show_default=True,
    type=click.FloatRange(1.0, 600.0),
    help="PostgreSQL: seconds a paused or cut-off leader keeps leadership before a standby takes over.",
)
@click.option("--relay-log", default=None, help="Relay feed path; '' disables it. [default: $SYN_HOME/feed.ndjson]")
@click.option("--relay-max-lines", default=5000, show_default=True, type=click.IntRange(1), help="Feed trim bound.")
@click.option(
    "--relay-max-mb",
    default=8.0,
    show_default=True,
    type=click.FloatRange(0.0625),
    help="Feed byte bound (MiB); trimmed once it holds twice this.",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option(
    "--max-msg-kb",
    default=1024,
    show_default=True,
    type=click.IntRange(1),
    help="Largest frame accepted (KiB); larger closes 1009.",
)
@click.option(
    "--max-frame-bytes",
    default=1 << 20,
    show_default=True,
    type=click.IntRange(16 * 1024),
    help="Largest frame the hub sends: list replies are paged (has_more) below it; bigger chats are refused.",
)
@click.option(
    "--max-queue-bytes",
    default=16 << 20,
    show_default=True,
    type=click.IntRange(32 * 1024),
    help="Unsent bytes one socket may hold before it is closed as a slow consumer (4017).",
)
@click.option(
    "--max-clients",
    default=256,
    show_default=True,
    type=click.IntRange(1),
    help="Connections beyond this are closed 4013.",
)
@click.option(
    "--max-connections-per-host",
    "max_per_host",
    default=0,
    type=click.IntRange(0),
    help="Connections one host may hold (close 4015 beyond). 0: unlimited on loopback, 64 for remote hosts.",
)
@click.option("--private-directed", is_flag=True, hidden=True, help="Accepted for compatibility: now the default.")
@click.option(
    "--compat-fanout",
    is_flag=True,
    help="Copy every directed chat to every socket, as 0.99 hubs did (leaks private mail to bystanders).",
)
@click.option(
    "--role",
    "roles",
    multiple=True,
    metavar="ROLE",
    help="A role connections may declare and be addressed by (repeatable); undeclared roles are refused.",
)
@click.option(
    "--priority-sender",
    "priority_senders",
    multiple=True,
    metavar="NAME",
    help="Identity whose chats wake every waiter, --directed-only included (repeatable). [default: CEO]",
)
@click.option("--insecure-off-loopback", is_flag=True, help="Allow an off-loopback bind without a token (warns).")
@click.option(
    "--ping-interval",
    default=15.0,
    show_default=True,
    type=click.FloatRange(0.01),
    help="Seconds between keepalive pings.",
)
@click.option(
    "--ping-timeout",
    default=15.0,
    show_default=True,
    type=click.FloatRange(0.01),
    help="Seconds to wait for a pong before reaping.",
)
@click.option(
    "--auth-timeout",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.01),
    help="Seconds a new socket has to send its first frame (its registration), on every hub.",
)
@click.option(
    "--commit-mode",
    type=click.Choice(["group", "each"]),
    default="group",
    hidden=True,
    help="group: one fsync per batch (default); each: one fsync per outcome (for benchmarks).",
)
@click.option(
    "--takeover-cooldown",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0, 300),
    help="Seconds between two takeovers of one name (at most 300).",
)
@click.option(
    "--max-claims-per-agent",
    default=256,
    show_default=True,
    type=click.IntRange(0),
    help="Live claims one agent may hold before QUOTA_EXCEEDED (0 = unlimited).",
)
@click.option(
    "--presence-grace",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds a departed name may come back (a wait re-arm) before others hear 'left'; 0 = at once.",
)
@click.option(
    "--presence-window",
    default=0.1,
    show_default=True,
    type=click.FloatRange(0),
    help="Presence changes are broadcast at most once per this many seconds, batched (0 = every loop tick).",
)
@click.option(
    "--mailbox-max-mb",
    default=128.0,
    show_default=True,
    type=click.FloatRange(0.001),
    help="MiB of unacknowledged directed mail the hub keeps in all; a chat beyond is refused (MAILBOX_FULL).",
)
@click.option(
    "--mailbox-max-messages",
    default=100_000,
    show_default=True,
    type=click.IntRange(1),
    help="Unacknowledged directed messages the hub keeps in all (MAILBOX_FULL beyond).",
)
@click.option(
    "--mailbox-recipient-mb",
    default=32.0,
    show_default=True,
    type=click.FloatRange(0.001),
    help="MiB of unacknowledged mail one recipient may have waiting (MAILBOX_FULL beyond).",
)
@click.option(
    "--mailbox-recipient-messages",
    default=10_000,
    show_default=True,
    type=click.IntRange(1),
    help="Unacknowledged messages one recipient may have waiting (MAILBOX_FULL beyond).",
)
@click.option(
    "--snapshot-every",
    default=10_000,
    type=click.IntRange(1),
    hidden=True,
    help="Events between state snapshots (tests and benchmarks lower it).",
)
@click.option(
    "--compaction/--no-compaction",
    default=True,
    show_default=True,
    help="Compact the journal after each snapshot (off: it keeps every event).",
)
@click.option(
    "--retain-days",
    default=7.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Days chats, acked mail and audit refusals stay in the journal after a snapshot covers them.",
)
@click.pass_context
def hub(
    ctx: click.Context,
    host: str,
    port: int,
    token: str | None,
    token_file: Path | None,
    tls_certfile: Path | None,
    tls_keyfile: Path | None,
    hub_id: str | None,
    db: str | None,
    advertise: str | None,
    lease: float,
    relay_log: str | None,
    relay_max_lines: int,
    relay_max_mb: float,
    log_level: str,
    max_msg_kb: int,
    max_frame_bytes: int,
    max_queue_bytes: int,
    max_clients: int,
    max_per_host: int,
    private_directed: bool,
    compat_fanout: bool,
    roles: tuple[str, ...],
    priority_senders: tuple[str, ...],
    insecure_off_loopback: bool,
    ping_interval: float,
    ping_timeout: float,
    auth_timeout: float,
    commit_mode: str,
    takeover_cooldown: float,
    max_claims_per_agent: int,
    presence_grace: float,
    presence_window: float,
    mailbox_max_mb: float,
    mailbox_max_messages: int,
    mailbox_recipient_mb: float,
    mailbox_recipient_messages: int,
    snapshot_every: int,
    compaction: bool,
    retain_days: float,
) -> None:
    """Run the coordination hub (ws://127.0.0.1:8876, journal in $SYN_HOME/hub.db); `hub status` reports on one."""
    if ctx.invoked_subcommand is not None:
        return
    from ..core.mailbox import MIB
    from ..hub.config import HubConfig, InsecureBindError, check_limits
    from ..paths import syn_home
    from ..protocol import DEFAULT_PRIORITY_SENDERS, name_problem

    _setup_logging(log_level)
    if token_file is not None and not token:
        token = read_token_file(token_file)
    if bool(tls_certfile) != bool(tls_keyfile):
        raise click.UsageError("--tls-certfile and --tls-keyfile go together")
    for role in roles:
        problem = name_problem(role)
        if problem:
            raise click.BadParameter(f"{role!r}: {problem}", param_hint="--role")
    db = db if db is not None else str(syn_home() / "hub.db")
    database_url = db if db.startswith(("postgresql://", "postgres://")) else None
    if database_url is None and "://" in db:  # a URL we do not speak must not become a SQLite file named after it
        raise click.BadParameter(
            f"{db.split('://', 1)[0]}:// is not a supported database; use a SQLite path or postgresql://user@host/db",
            param_hint="--db",
        )
    if advertise is not None and not advertise.startswith(("ws://", "wss://")):
        raise click.BadParameter(f"{advertise!r} is not a ws:// or wss:// URI", param_hint="--advertise")
    relay_log = relay_log if relay_log is not None else str(syn_home() / "feed.ndjson")
    config = HubConfig(
        host=host,
        port=port,
        token=token or None,
        tls_certfile=tls_certfile,
        tls_keyfile=tls_keyfile,
        hub_id=hub_id,
        db=None if db == ":memory:" or database_url else Path(db),
        database_url=database_url,
        advertise=advertise,
        lease=lease,
        relay_log=Path(relay_log) if relay_log else None,
        relay_max_lines=relay_max_lines,
        relay_max_bytes=int(relay_max_mb * MIB),
        max_msg_kb=max_msg_kb,
        max_frame_bytes=max_frame_bytes,
        max_queue_bytes=max_queue_bytes,
        max_clients=max_clients,
        max_per_host=max_per_host,
        compat_fanout=compat_fanout,
        allowed_roles=frozenset(roles),
        priority_senders=frozenset(priority_senders or DEFAULT_PRIORITY_SENDERS),
        insecure_off_loopback=insecure_off_loopback,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        auth_timeout=auth_timeout,
        takeover_cooldown=takeover_cooldown,
        max_claims_per_agent=max_claims_per_agent,
        presence_grace=presence_grace,
        presence_window=presence_window,
        mailbox_max_bytes=int(mailbox_max_mb * MIB),
        mailbox_max_messages=mailbox_max_messages,
        mailbox_max_recipient_bytes=int(mailbox_recipient_mb * MIB),
        mailbox_max_recipient_messages=mailbox_recipient_messages,
        snapshot_every=snapshot_every,
        compaction=compaction,
        retain_days=retain_days,
        group_commit=commit_mode == "group",
    )
    try:
        check_limits(config)
    except ValueError as exc:
        raise click.UsageError(
            str(exc).replace("max_queue_bytes", "--max-queue-bytes").replace("max_frame_bytes", "--max-frame-bytes")
        ) from None
    os.umask(0o077)
    import asyncio

    from ..store import DatabaseBusy, SnapshotMissing

    try:
        asyncio.run(_serve(config))
    except KeyboardInterrupt:
        pass
    except (DatabaseBusy, HubFailed, SnapshotMissing) as exc:
        click.echo(f"synapse hub: {exc}", err=True)
        sys.exit(1)
    except InsecureBindError as exc:
        click.echo(f"synapse hub: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:
        if database_url is not None and _is_database_error(exc):
            from ..pgstore import redact

            click.echo(f"synapse hub: cannot use {redact(database_url)}: {type(exc).__name__}: {exc}", err=True)
            sys.exit(1)
        if not isinstance(exc, OSError):
            raise
        click.echo(f"synapse hub: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", err=True)
        sys.exit(1)


def _is_database_error(exc: BaseException) -> bool:
    """A PostgreSQL problem at start (unreachable, refused, no driver): one line, not a traceback."""
    from ..pgstore import NoDriver

    module = type(exc).__module__ or ""
    return isinstance(exc, NoDriver | ConnectionError | TimeoutError) or module.startswith("asyncpg")


class HubFailed(RuntimeError):
    """The hub stopped on its own after a fatal error (e.g. a journal write failed)."""


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # websockets logs whole frames at DEBUG, tokens included: never let it go below INFO.
    logging.getLogger("websockets").setLevel(logging.INFO if level.upper() == "DEBUG" else logging.WARNING)


async def _serve(config: HubConfig) -> None:
    import asyncio
    import signal

    from ..hub.limits import raise_open_files_limit
    from ..hub.server import Hub
    from .common import runtime

    raise_open_files_limit()
    hub = Hub(config, pm=runtime()[1])
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(hub.stop()))
    await hub.start()
    assert hub.journal is not None
    click.echo(_banner(hub), err=True)  # one write: a supervisor may stop reading after the first line
    await hub.stopped.wait()
    if hub.failure:
        if hub.failure.startswith("stepped down"):
            raise HubFailed(f"{hub.failure}; restart it to serve as a standby")
        raise HubFailed(f"stopped: {hub.failure}; restart it to replay what is on disk")


def _banner(hub: Hub) -> str:
    """The start-up lines: where the hub listens, its journal, and (PostgreSQL) its role."""
    assert hub.journal is not None
    hub_id = hub.core.hub_id if hub.core else ""
    where = str(hub.config.db) if hub.config.db else "memory only"
    if hub.config.database_url:
        from ..pgstore import redact

        where = redact(hub.config.database_url)
        info = hub.ha.health() if hub.ha is not None else {}
        if hub.role != "leader":
            return (
                f"synapse hub {hub_id} listening on {hub.uri} as STANDBY (journal: {where}; leader "
                f"{info.get('leader') or 'unknown'} at epoch {info.get('epoch')}; following at seq {info.get('seq')}); "
                "clients are sent to the leader (close 4018)"
            )
        where += f", leader at epoch {info.get('epoch')}"
    web = hub.uri.replace("ws", "http", 1)
    who = "an observer or admin seat" if hub.secured else "loopback peers"
    return (
        f"synapse hub {hub_id} listening on {hub.uri} (journal: {where}; {hub.journal.report})\n"
        f"synapse hub: {web}/healthz for probes, {web}/metrics for {who}; `synapse dashboard` opens the web view"
    )


def _add_subcommands() -> None:
    from .hub_status import status

    hub.add_command(status)


_add_subcommands()
