"""The hub: a websockets server around the pure core and the journal.

Data flows one way. A frame arrives, :mod:`protocol` validates it, the core
decides and returns an :class:`Outcome`; the hub submits its events to the
journal (group commit, fsync) and only when they are durable queues the
replies and fan-out on each connection's :class:`Link`, appends public frames
to the relay feed and notifies plugins. Outcomes are delivered in the order
the core produced them, so every socket sees frames in ``seq`` order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import math
import secrets
import ssl
import time
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ..core import HubCore, Outcome
from ..core import protocol_text as text
from ..dispatch import Dispatcher
from ..events import HubInfo, freeze
from ..protocol import (
    REASON_AUTH_DENIED,
    REASON_AUTH_TIMEOUT,
    REASON_CAPACITY,
    REASON_HOST_CAP,
    REASON_REGISTER_TIMEOUT,
    REASON_SEAT_REVOKED,
    REASON_SEATS_REQUIRED,
    Close,
    ProtocolError,
    encode,
    hub_frame,
    parse_frame,
)
from ..trust import is_loopback_host
from .config import REMOTE_PER_HOST, HubConfig, check_exposure, check_limits
from .fanout import PresenceFanout
from .link import Link
from .metrics import HubMetrics

if TYPE_CHECKING:
    from pathlib import Path

    import pluggy

    from ..core.access import Grant
    from ..core.searching import SearchQuery
    from ..feed import FeedWriter
    from ..pgsearch import PgSearcher
    from ..search import Searcher
    from ..seats import SeatSource, SeatTable
    from ..store import Journal
    from .compactor import AutoCompactor
    from .dashboard import DashSession
    from .ha import Leadership
    from .indexer import Indexer

log = logging.getLogger("synapse_channel.hub")
EXPIRY_POLL = 0.5
#: How often the hub looks for seat changes made by ``synapse seat`` (revocation takes effect within this).
SEAT_POLL = 0.5
#: Seconds between ``dashboard_health`` frames to open dashboard pages.
DASHBOARD_HEALTH_EVERY = 2.0


class _NoDebug(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets' logger without DEBUG: those lines print request headers and frames, secrets included."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


def new_hub_id() -> str:
    """A fresh ``syn-<8 hex>`` identifier (stored, so it is stable across restarts)."""
    return f"syn-{secrets.token_hex(4)}"


class Hub:
    """A running hub. Use ``async with Hub(config) as hub`` or start()/stop()."""

    def __init__(self, config: HubConfig, *, pm: pluggy.PluginManager | None = None) -> None:
        self.config = config
        self.pm = pm
        self.core: HubCore | None = None
        self.journal: Journal | None = None
        self.feed: FeedWriter | None = None
        self._server: Server | None = None
        self._links: dict[int, Link] = {}
        #: Sockets that have not sent their first frame yet, oldest first.
        self._pending: OrderedDict[int, Link] = OrderedDict()
        self._ids = itertools.count(1)
        self._last_commit: asyncio.Future[None] | None = None
        self._dispatcher: Dispatcher | None = None
        self._info: HubInfo | None = None
        self._expirer: asyncio.Task[None] | None = None
        self.stopped = asyncio.Event()
        self._stop_requested = False
        self.internal_errors = 0
        #: Why the hub stopped on its own (a fatal journal error); None after a clean stop.
        self.failure: str | None = None
        self._per_host: dict[str, int] = {}
        self._stop_task: asyncio.Future[None] | None = None
        #: Where seats are read from: the SQLite file or the PostgreSQL database (None: in memory, no seats).
        self._seat_source: SeatSource | None = None
        self._seats: SeatTable | None = None
        self._seat_mark: int | None = None
        self._seat_watch: asyncio.Task[None] | None = None
        self._addrs: dict[int, tuple[Any, Any]] = {}
        #: Compacts the journal after each snapshot (None: in memory, or ``compaction`` off).
        self.compactor: AutoCompactor | None = None
        #: Counters behind ``/metrics`` (frames, refusals, event-loop lag).
        self.metrics = HubMetrics()
        from .dashboard import Sessions

        #: Web dashboard logins and sessions (memory only: a restart logs browsers out).
        self.dashboard = Sessions(valid=self._grant_valid)
        #: Upgrades that authenticated with a dashboard cookie, until their handler picks them up.
        self.dashboard_sockets: weakref.WeakKeyDictionary[ServerConnection, DashSession] = weakref.WeakKeyDictionary()
        #: Upgrades that carried an ``Origin`` (browser pages), until their handler picks them up.
        self.browser_sockets: weakref.WeakSet[ServerConnection] = weakref.WeakSet()
        self._browsers: set[int] = set()
        #: Connections of dashboard pages (they get ``dashboard_health`` every few seconds).
        self._dashboards: set[int] = set()
        self._health_push: asyncio.Task[None] | None = None
        #: Runs ``search_request`` queries on a read-only connection (None: in memory).
        self.searcher: Searcher | PgSearcher | None = None
        #: The pending presence broadcast, and when (loop time) the last one went out.
        self._presence_timer: asyncio.TimerHandle | None = None
        self._presence_sent_at = -math.inf
        #: Seconds the last presence broadcast kept the loop busy (see ``_schedule_presence``).
        self._presence_cost = 0.0
        self._fanout = PresenceFanout(self._links, self._presence_sent)
        #: Indexes the journal behind its commits for search (None: in memory).
        self.indexer: Indexer | None = None
        #: Leader election on a PostgreSQL journal (None: SQLite or memory, where this hub always leads).
        self.ha: Leadership | None = None
        #: ``leader`` while serving agents; ``standby`` while another hub leads (PostgreSQL only).
        self.role = "leader"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the journal, replay it, and start listening."""
        from ..store import open_journal

        cfg = self.config
        check_limits(cfg)
        self.journal = await open_journal(
            cfg.database_url or cfg.db,
            hub_id=cfg.hub_id or new_hub_id(),
            snapshot_every=cfg.snapshot_every,
            group_commit=cfg.group_commit,
            lease=cfg.lease,
        )
        try:
            await self._load_seats()
            warning = check_exposure(cfg, seated=self._seats is not None and self._seats.configured)
        except BaseException:
            await self.journal.close()
            await self._close_seat_source()
            raise
        if warning:
            log.warning("%s", warning)
        try:
            if hasattr(self.journal, "try_lead"):
                leading = await self._start_ha()
            else:
                await self._open_and_listen()
                leading = True
        except BaseException:
            await self._abort_start()
            raise
        if leading:
            self._info = self._make_info()
            self._emit("hub_started")
        if self._stop_requested:
            await self.stop()

    async def _open_and_listen(self) -> None:
        """Replay the journal into a fresh core, start the background tasks, bind the socket."""
        assert self.journal is not None
        self._make_core()
        await self.journal.replay(self._core)
        self._start_serving()
        await self._bind()
        self._start_compactor()  # after binding: a compaction at start never delays the first connection

    async def _start_ha(self) -> bool:
        """Bind at once, then lead (the lock was free) or wait as a warm standby; True when leading."""
        from ..pgstore import PostgresJournal
        from .ha import Leadership

        assert isinstance(self.journal, PostgresJournal)
        self._make_core()
        self.role = "standby"
        self._start_seat_watch()  # a standby keeps its seats current too: /metrics, and the takeover
        self.metrics.start()
        await self._bind()
        self.journal.on_deposed = self._deposed
        self.ha = Leadership(self, self.journal)
        if not await self.ha.start():
            return False
        await self.journal.replay(self._core)
        await self.journal.settle_tail(self._core)
        self._start_serving()
        self.role = "leader"
        self._start_compactor()
        return True

    async def take_over(self) -> None:
        """A standby got the lock: finish catching up, start serving (called by :class:`~.ha.Leadership`)."""
        from ..pgstore import PostgresJournal

        assert isinstance(self.journal, PostgresJournal)
        await self._refresh_seats()  # the seats as of now, before the first client is served
        caught = await self.journal.catch_up(self._core)
        await self.journal.settle_tail(self._core)
        self._start_serving()
        self.role = "leader"
        self._start_compactor()
        self._info = self._make_info()
        self._emit("hub_started")
        log.warning(
            "now leading at epoch %d (applied %d events at takeover; seq %d)",
            self.journal.epoch,
            caught,
            self._core.seq,
        )

    def _deposed(self, why: str) -> None:
        """The journal lost leadership: stop serving at once (the process exits; see :mod:`.ha`)."""
        self.role = "standby"
        self.fail(f"stepped down: {why}")

    def fail(self, why: str) -> None:
        """Stop on our own with ``why`` as the failure (the CLI exits non-zero)."""
        if self._stop_task is None:
            self.failure = why
            self._stop_task = asyncio.ensure_future(self.stop())

    def _make_core(self) -> None:
        cfg = self.config
        assert self.journal is not None
        self.core = HubCore(
            self.journal.hub_id,
            compat_fanout=cfg.compat_fanout,
            takeover_cooldown=cfg.takeover_cooldown,
            allowed_roles=cfg.allowed_roles,
            priority_senders=cfg.priority_senders,
            max_claims_per_agent=cfg.max_claims_per_agent,
            presence_grace=cfg.presence_grace,
            mailbox_limits=cfg.mailbox_limits,
            max_frame_bytes=cfg.max_frame_bytes,
            replay_budget=cfg.max_queue_bytes // 2,
        )
        self._update_security()
        self.core.handlers["dashboard_login_request"] = self._dashboard_login

    def _start_serving(self) -> None:
        """Journal snapshots, feed, search, plugins and the background tasks of a leading hub."""
        from ..feed import open_feed

        cfg = self.config
        assert self.journal is not None
        self.journal.snapshot_source = self._core.snapshot
        self.feed = open_feed(cfg.relay_log, cfg.relay_max_lines, cfg.relay_max_bytes)
        self._start_search()
        if self.pm is not None:
            self._dispatcher = Dispatcher(self.pm)
        self._expirer = asyncio.create_task(self._run_expiry())
        self._start_seat_watch()
        self.metrics.start()
        self._health_push = asyncio.create_task(self._push_health())

    def _start_search(self) -> None:
        """The search backend of the store: FTS5 beside a SQLite journal, a tsvector table on PostgreSQL.

        On PostgreSQL only the leader gets here (a standby turns clients away),
        so only the leader indexes and answers searches.
        """
        from ..pgstore import PostgresJournal
        from .indexer import IndexBackend, Indexer, PostgresIndex

        assert self.journal is not None
        path = getattr(self.journal, "path", None)
        backend: IndexBackend | Path
        if isinstance(self.journal, PostgresJournal):
            from ..pgsearch import PgSearcher

            self.searcher = PgSearcher(self.journal.url)
            backend = PostgresIndex(self.journal.url)
        elif path is not None:
            from ..search import Searcher

            self.searcher = Searcher(path)
            backend = path
        else:
            return
        self.indexer = Indexer(backend, turn=getattr(self.journal, "turn", None))
        self.journal.on_commit = self.indexer.wake
        self.indexer.start()  # catches up from the stored watermark in the background

    async def _bind(self) -> None:
        from .http import HttpSurface

        cfg = self.config
        self._server = await serve(
            self._handle,
            cfg.host,
            cfg.port,
            process_request=HttpSurface(self),
            logger=_NoDebug(logging.getLogger("websockets.server"), {}),
            ssl=self._ssl_context(),
            ping_interval=cfg.ping_interval,
            ping_timeout=cfg.ping_timeout,
            close_timeout=cfg.close_timeout,
            max_size=cfg.max_msg_kb * 1024,
            compression=None,
        )

    def _start_compactor(self) -> None:
        """Offer every snapshot for compaction; after a start from a snapshot alone, compact at once.

        On PostgreSQL only the leader calls this (at start or takeover): a standby never writes.
        """
        from ..compaction import keep_of
        from ..pgstore import PostgresJournal
        from .compactor import AutoCompactor, Backend, PostgresBackend

        if not self.config.compaction or self.journal is None or self.core is None or self.compactor is not None:
            return
        path = getattr(self.journal, "path", None)
        target: Path | Backend
        if isinstance(self.journal, PostgresJournal):
            target = PostgresBackend(self.journal)
        elif path is not None:
            target = path
        else:
            return
        self.compactor = AutoCompactor(target, self.config.retain_days)
        self.journal.snapshot_source = self.compactor.watch(self.core.snapshot)
        report = self.journal.report
        if report.snapshot_seq and report.snapshot_seq == self.core.seq:
            self.compactor.offer(keep_of(self.core.snapshot()))
        self.compactor.start()

    async def _close_searcher(self) -> None:
        if self.indexer is not None:
            indexer, self.indexer = self.indexer, None
            if self.journal is not None:
                self.journal.on_commit = None
            await indexer.stop()
        if self.searcher is not None:
            searcher, self.searcher = self.searcher, None
            await searcher.close()

    async def _stop_compactor(self) -> None:
        if self.compactor is not None:
            await self.compactor.stop()

    async def _abort_start(self) -> None:
        """Undo a start that failed (e.g. the port is taken) so the process can exit at once.

        Without this the journal's writer and the expiry task outlive the
        failure and ``synapse hub`` hangs after printing its error.
        """
        for task in (self._expirer, self._seat_watch, self._health_push):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._expirer = self._seat_watch = self._health_push = None
        if self.ha is not None:
            await self.ha.stop()
        if self._server is not None:
            server, self._server = self._server, None
            server.close(close_connections=True)
        await self.metrics.stop()
        await self._stop_compactor()
        await self._close_searcher()
        await self._close_seat_source()
        if self.feed is not None:
            await self.feed.close()
        if self.journal is not None:
            self.journal.snapshot_source = None  # nothing was served: leave the stored snapshot alone
            await self.journal.close()

    def _ssl_context(self) -> ssl.SSLContext | None:
        cfg = self.config
        if cfg.tls_certfile is None:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cfg.tls_certfile, cfg.tls_keyfile)
        return ctx

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connection_count(self) -> int:
        """Open WebSocket connections, registered or still silent."""
        return len(self._links)

    @property
    def uri(self) -> str:
        """A URI clients on this machine can use."""
        scheme = "wss" if self.config.tls else "ws"
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    async def stop(self) -> None:
        """Close every socket with 1001, flush the journal and stop."""
        if self._server is None:
            self._stop_requested = True  # a signal during start(): stop once started
            return
        server, self._server = self._server, None
        self._emit("hub_stopping")
        if self.ha is not None:
            await self.ha.stop()
            if self.role != "leader":
                await self._turn_away_all()
        server.close(close_connections=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), self.config.close_timeout + 0.5)
        for link in list(self._links.values()):
            await link.stop()
        if self._expirer is not None:
            self._expirer.cancel()
        if self._health_push is not None:
            self._health_push.cancel()
        await self.metrics.stop()
        if self._presence_timer is not None:
            self._presence_timer.cancel()
            self._presence_timer = None
        await self._fanout.stop()
        if self.core is not None and self.role == "leader" and (self.core.leaving or self.core.presence):
            with contextlib.suppress(Exception):  # the feed and plugins hear the last departures
                await self._commit_and_deliver(self.core.settle_all(time.time()))
        if self._seat_watch is not None:
            self._seat_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._seat_watch
        await self._close_seat_source()
        if self._dispatcher is not None:
            await self._dispatcher.drain(timeout=1.0)
        await self._stop_compactor()
        await self._close_searcher()
        if self.journal is not None:
            await self.journal.close()
        if self.feed is not None:
            await self.feed.close()
        self.stopped.set()

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ connections

    def _host_cap(self, host: str) -> int | None:
        cap = self.config.max_per_host
        if cap:
            return cap
        return None if is_loopback_host(host) else REMOTE_PER_HOST

    async def _turn_away_all(self) -> None:
        """A deposed leader: tell every client where the new leader is (4018) before the sockets close."""
        assert self.ha is not None
        reason = self.ha.close_reason()
        if reason.endswith("="):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ha.journal.leader_address(), 1.0)
                reason = self.ha.close_reason()
        links = list(self._links.values())
        for link in links:
            link.close(Close.STANDBY, reason)
        if links:  # each close frame goes out after what was queued, before the server's own 1001
            await asyncio.wait([link.task for link in links], timeout=self.config.close_timeout)

    async def _handle(self, ws: ServerConnection) -> None:
        if self.role != "leader":
            assert self.ha is not None
            await ws.close(Close.STANDBY, self.ha.close_reason())
            return
        if len(self._links) - len(self._pending) >= self.config.max_clients:
            await ws.close(Close.CAPACITY, REASON_CAPACITY)
            return
        host = str(ws.remote_address[0]) if ws.remote_address else ""
        cap = self._host_cap(host)
        if cap is not None and self._per_host.get(host, 0) >= cap:
            await ws.close(Close.HOST_CAP, REASON_HOST_CAP)
            return
        self._per_host[host] = self._per_host.get(host, 0) + 1
        try:
            await self._serve_connection(ws, host)
        finally:
            self._per_host[host] -= 1
            if not self._per_host[host]:
                del self._per_host[host]

    async def _serve_connection(self, ws: ServerConnection, host: str) -> None:
        conn_id = next(self._ids)
        link = Link(ws, self.config.max_queue_bytes)
        self._links[conn_id] = link
        self._addrs[conn_id] = (ws.remote_address, ws.local_address)
        self._hold_pending(conn_id, link)
        admitted = False
        dash = self.dashboard_sockets.pop(ws, None)
        if ws in self.browser_sockets:
            self.browser_sockets.discard(ws)
            self._browsers.add(conn_id)
        try:
            if dash is not None:
                first, grant = await self._dashboard_first_frame(ws, link, host, dash)
                if first is not None:
                    self._dashboards.add(conn_id)
            elif self.secured:
                first, grant = await self._first_frame(ws, link, host)
            else:
                # An open hub greets at once (0.99 clients may wait for the welcome before registering).
                admitted = True
                await self._commit_and_deliver(self._core.open(conn_id, time.time(), grant=None, remote=host))
                first, grant = await self._recv_first(ws, link), None
            self._pending.pop(conn_id, None)
            if first is None:
                return
            if len(self._links) - len(self._pending) > self.config.max_clients:
                link.close(Close.CAPACITY, REASON_CAPACITY)  # filled up while this one was registering
                return
            if not admitted:
                admitted = True
                await self._commit_and_deliver(self._core.open(conn_id, time.time(), grant=grant, remote=host))
            await self._on_frame(conn_id, first)
            async for data in ws:
                await self._on_frame(conn_id, data)
        except ConnectionClosed:
            pass
        finally:
            if admitted:
                await self._commit_and_deliver(self._core.close(conn_id, time.time()))
            self._links.pop(conn_id, None)
            self._pending.pop(conn_id, None)
            self._addrs.pop(conn_id, None)
            self._dashboards.discard(conn_id)
            self._browsers.discard(conn_id)
            if link.closing:  # let our own close frame (e.g. 4009) go out first
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(link.task), self.config.close_timeout)
            await link.stop()

    def _hold_pending(self, conn_id: int, link: Link) -> None:
        """Track a socket that has not sent its first frame; evict the oldest when too many wait.

        Sockets that connect and stay silent must not take the slots of
        agents (they do not count against ``max_clients``), and a flood of
        them cannot pin the waiting room either: a real client sends its
        registration within milliseconds, so the oldest silent one goes first.
        """
        while len(self._pending) >= max(self.config.max_clients, 16):
            _, oldest = self._pending.popitem(last=False)
            oldest.close(Close.AUTH_TIMEOUT, self._timeout_reason)
        self._pending[conn_id] = link

    async def _recv_first(self, ws: ServerConnection, link: Link) -> str | bytes | None:
        """The socket's first frame, or None once it stayed silent past ``auth_timeout`` (closed with 4012)."""
        try:
            return await asyncio.wait_for(ws.recv(), self.config.auth_timeout)
        except TimeoutError:
            link.close(Close.AUTH_TIMEOUT, self._timeout_reason)
            return None

    @property
    def _timeout_reason(self) -> str:
        return REASON_AUTH_TIMEOUT if self.secured else REASON_REGISTER_TIMEOUT

    @property
    def secured(self) -> bool:
        """True when every connection must present the shared token or a seat secret."""
        return bool(self.config.token) or (self._seats is not None and self._seats.configured)

    async def _first_frame(
        self, ws: ServerConnection, link: Link, remote: str
    ) -> tuple[str | bytes | None, Grant | None]:
        """On a secured hub, read the first frame (within ``auth_timeout``) and check its token or seat secret.

        Returns ``(frame, grant)`` once the credential checks out (``grant`` is None for the legacy shared token),
        and ``(None, None)`` when the connection was refused (and is being
        closed; the refusal is journalled with the peer address, never the
        secret).
        """
        data = await self._recv_first(ws, link)
        if data is None:
            return None, None
        offered: Any = None
        sender = "self"
        with contextlib.suppress(ProtocolError):
            cmd = parse_frame(data)
            offered, sender = cmd.raw.get("token"), cmd.sender
        accepted, grant = self.credential(offered)
        if not accepted and isinstance(offered, str) and offered and await self._refresh_seats():
            accepted, grant = self.credential(offered)  # a seat added since the last poll
        if accepted:
            return data, grant
        message = text.AUTH_INVALID if offered else text.AUTH_REQUIRED
        await self.refuse_credential("websocket", sender, remote, bool(offered))
        link.put(encode(hub_frame("auth_denied", sender, message, now=time.time(), hub_id=self._core.hub_id)))
        link.close(Close.SUPERSEDED, REASON_AUTH_DENIED)
        return None, None

    async def _dashboard_first_frame(
        self, ws: ServerConnection, link: Link, remote: str, session: DashSession
    ) -> tuple[str | bytes | None, Grant | None]:
        """A dashboard page's socket (its cookie checked at the upgrade): it must register as its session's name.

        Its credential is the session's seat (still valid, or the upgrade was
        refused); the name is fixed per session, so a page cannot speak as
        anyone else whatever its seat's patterns allow.
        """
        data = await self._recv_first(ws, link)
        if data is None:
            return None, None
        sender = None
        with contextlib.suppress(ProtocolError):
            sender = parse_frame(data).sender
        if isinstance(sender, str) and (sender == session.name or sender.startswith(session.name + "-")):
            return data, session.grant  # one session, several tabs: NAME-<tab>
        message = f"a dashboard session registers only as {session.name!r}"
        await self.audit("access_denied", seat=session.seat, remote=remote, verb="register", reason=message)
        link.put(encode(hub_frame("auth_denied", "self", message, now=time.time(), hub_id=self._core.hub_id)))
        link.close(Close.SUPERSEDED, REASON_AUTH_DENIED)
        return None, None

    def _grant_valid(self, grant: Grant) -> bool:
        """Is ``grant``'s seat still active with the same secret (dashboard sessions end with their seat)?"""
        return self._seats is not None and self._seats.still_valid(grant)

    def _dashboard_login(self, core: HubCore, conn: Any, cmd: Any, now: float, out: Outcome) -> None:
        """``dashboard_login_request``: a one-time login nonce for an observer or admin (or seatless operator)."""
        from .dashboard import NONCE_TTL, may_log_in

        grant = conn.grant
        if not may_log_in(grant):
            why = f"seat {grant.seat!r} is an agent seat; the dashboard needs an observer or admin seat"
            core.deny(out, conn, cmd.type, why, now)
            return
        if conn.conn_id in self._browsers:
            # A web page (any site, DNS rebinding included) must not mint itself a session.
            core.deny(out, conn, cmd.type, "a browser page cannot ask for a login link; run `synapse dashboard`", now)
            return
        if grant is None and not self.secured and not is_loopback_host(conn.remote):
            core.deny(out, conn, cmd.type, "the open hub serves the dashboard to loopback peers only; add seats", now)
            return
        nonce = self.dashboard.issue_nonce(grant)
        extra: dict[str, Any] = {"nonce": nonce, "expires_in": NONCE_TTL, "path": "/dashboard/login"}
        if isinstance(cmd.raw.get("request_id"), str):
            extra["request_id"] = cmd.raw["request_id"]
        frame = core.frame("dashboard_login", conn.name or "self", "one-time dashboard login", now, **extra)
        out.send(conn.conn_id, frame)

    async def _push_health(self) -> None:
        """Every few seconds, send open dashboard pages the health numbers (the page never polls)."""
        from . import metrics as hub_metrics

        while True:
            await asyncio.sleep(DASHBOARD_HEALTH_EVERY)
            if not self._dashboards or self.core is None:
                continue
            frame = hub_frame("dashboard_health", "self", "health", now=time.time(), hub_id=self.core.hub_id)
            frame["health"] = hub_metrics.dashboard_numbers(self)
            data = encode(frame)
            for cid in list(self._dashboards):
                link = self._links.get(cid)
                if link is not None:
                    link.put(data)
                    self.metrics.frames_out.add("dashboard_health")

    def credential(self, offered: object) -> tuple[bool, Grant | None]:
        """Check a presented secret: ``(True, None)`` for the shared token, ``(True, grant)`` for a seat.

        The one check every door uses (the WebSocket registration and the HTTP
        routes), so a seat revoked for one is revoked for all.
        """
        if not isinstance(offered, str) or not offered:
            return False, None
        token = self.config.token
        if token and hmac.compare_digest(offered.encode(), token.encode()):
            return True, None
        grant = self._seats.verify(offered) if self._seats else None
        return grant is not None, grant

    async def refuse_credential(self, door: str, name: str, remote: str, offered: bool) -> None:
        """Count, log and journal a refused credential (the peer and the reason, never the secret)."""
        reason = "wrong token" if offered else "no token"
        self.metrics.auth_refusals.add(door)
        log.info("auth denied for %r from %s (%s)", name, remote, reason)
        await self.audit("auth_denied", name=name[:200], remote=remote, reason=reason)

    async def audit(self, kind: str, **data: Any) -> None:
        """Journal a security fact (``synapse audit`` lists it) and wait until it is durable."""
        out = Outcome()
        self._core.audit(out, kind, time.time(), **data)
        await self._commit_and_deliver(out)

    # ------------------------------------------------------------------ seats

    async def _load_seats(self) -> None:
        """Open the seat reader on the hub's database (SQLite file or PostgreSQL) and read the active seats."""
        if self.config.database_url is not None:
            from ..pgseats import PgSeatSource

            self._seat_source = PgSeatSource(self.config.database_url)
        elif self.config.db is not None:
            from ..seats import SqliteSeatSource

            self._seat_source = SqliteSeatSource(self.config.db)
        else:
            return
        self._seat_mark = await self._seat_source.mark()
        self._seats = await self._seat_source.table()

    def _start_seat_watch(self) -> None:
        if self._seat_source is not None and self._seat_watch is None:
            self._seat_watch = asyncio.create_task(self._watch_seats())

    async def _close_seat_source(self) -> None:
        source, self._seat_source = self._seat_source, None
        if source is not None:
            await source.close()

    def _update_security(self) -> None:
        cfg = self.config
        seats = self._seats is not None and self._seats.configured
        auth = {(True, True): "token+seats", (True, False): "token", (False, True): "seats"}.get(
            (bool(cfg.token), seats), "open"
        )
        self._core.security = {
            "auth": auth,
            "directed": self._core.directed_mode,
            "tls": cfg.tls,
            "loopback_only": is_loopback_host(cfg.host),
        }
        if self._info is not None and self._server is not None:
            self._info = self._make_info()  # hooks see the security the hub now advertises

    async def _watch_seats(self) -> None:
        """Apply seat changes made while the hub runs; drop sockets of revoked or rotated seats."""
        while True:
            await asyncio.sleep(SEAT_POLL)
            await self._refresh_seats()

    async def _refresh_seats(self) -> bool:
        """Re-read the seat table if ``seat_log`` moved; True when it did.

        Also called before refusing a secret, so a seat added a moment ago
        works at once rather than after the next poll.
        """
        source = self._seat_source
        if source is None:
            return False
        try:
            mark = await source.mark()
            if mark == self._seat_mark:
                return False
            was_secured = self.secured
            self._seats = await source.table()
            self._seat_mark = mark
        except Exception:
            log.exception("could not reload seats; keeping the previous table")
            return False
        self._update_security()
        self._drop_invalid_grants(unauthenticated=not was_secured and self.secured)
        return True

    def _drop_invalid_grants(self, *, unauthenticated: bool) -> None:
        """Close sockets whose seat was revoked or rotated; with ``unauthenticated``
        (an open hub just got its first seat) also every socket that never authenticated."""
        seats = self._seats
        for conn in list(self._core.roster.conns.values()):
            link = self._links.get(conn.conn_id)
            if link is None:
                continue
            if conn.grant is None and unauthenticated:
                log.info("closing %r: the hub now requires a seat", conn.name)
                link.close(Close.SUPERSEDED, REASON_SEATS_REQUIRED)
            elif conn.grant is not None and (seats is None or not seats.still_valid(conn.grant)):
                log.info("closing %r: seat %r was revoked or rotated", conn.name, conn.grant.seat)
                link.close(Close.SUPERSEDED, REASON_SEAT_REVOKED)

    def _peer_uids(self, conn_id: int, cmd: Any) -> None:
        """Learn the OS users the core needs to decide this registration (see ``HubCore.uid_checks``).

        Done inline, not in a thread: frames must reach the core in arrival
        order, and the lookup (one read of ``/proc/net/tcp``) only happens when
        a registration joins an identity that is already online.
        """
        conns = self._core.uid_checks(conn_id, cmd)
        if not conns:
            return
        from .peercred import SocketTable

        table = SocketTable.read()  # one read of /proc/net/tcp{,6} serves every connection asked about
        for conn in conns:
            conn.uid_checked = True
            addrs = self._addrs.get(conn.conn_id)
            if addrs and addrs[0] and addrs[1]:
                peer, local = addrs
                conn.peer_uid = table.peer_uid((str(peer[0]), int(peer[1])), (str(local[0]), int(local[1])))

    async def _on_frame(self, conn_id: int, data: str | bytes) -> None:
        core = self._core
        try:
            cmd = parse_frame(data)
        except ProtocolError as exc:
            self.metrics.frames_in.add("invalid")
            conn = core.roster.conns.get(conn_id)
            out = Outcome()
            if conn is not None:
                core.error(out, conn, str(exc), time.time(), code=exc.code)
            await self._commit_and_deliver(out)
            return
        self.metrics.frames_in.add(cmd.type if cmd.type in core.handlers else "other")
        conn = core.roster.conns.get(conn_id)
        if conn is not None and conn.name is None:
            self._peer_uids(conn_id, cmd)
        try:
            out = core.receive(conn_id, cmd, time.time())
        except Exception:  # a core bug must not kill the connection or the hub; it is logged loudly
            log.exception("internal error handling a %r frame", cmd.type)
            self.internal_errors += 1
            out = Outcome()
            conn = core.roster.conns.get(conn_id)
            if conn is not None:
                core.error(out, conn, "internal error; the frame was not applied", time.time(), code="INTERNAL")
        await self._commit_and_deliver(out)
        for query in out.queries:
            await self._answer_search(query)

    async def _answer_search(self, query: SearchQuery) -> None:
        """Run a ``search_request`` off the loop and send its reply to the asker.

        Awaited by the asker's own frame loop, so its later frames wait for
        the answer (replies stay in request order) while other connections
        carry on; the query reads the database as of after this
        connection's earlier frames were committed, once the indexer has
        reached what was committed then (waiting at most
        :data:`~.indexer.WAIT_SECONDS`; ``indexed_through`` in the reply says
        how far it got).
        """
        if self.searcher is None:
            reply = query.error(
                "SEARCH_UNAVAILABLE",
                "this hub keeps no database (--db :memory:): nothing to search",
            )
        else:
            if self.indexer is not None and self.journal is not None:
                # what was committed when the request was read, so a chat acked just before it is found
                query.reply["indexed_through"] = await self.indexer.wait_for(self.journal.committed_seq)
            try:
                reply = await self.searcher.search(query)
            except Exception:
                log.exception("search failed")
                self.internal_errors += 1
                reply = query.error("INTERNAL", "internal error; the search was not run")
        out = Outcome()
        out.send(query.conn_id, reply)
        self._deliver(out)

    @property
    def _core(self) -> HubCore:
        assert self.core is not None, "hub not started"
        return self.core

    # ------------------------------------------------------------------ delivery

    async def _commit_and_deliver(self, out: Outcome) -> None:
        """Make ``out``'s events durable, then deliver it, in core order."""
        self._schedule_presence()
        if out.events:
            assert self.journal is not None
            self._last_commit = self.journal.submit(out.events)
        pending = self._last_commit
        if pending is not None:
            try:
                await asyncio.shield(pending)  # returns at once when that commit is already done
            except Exception as exc:
                if self._stop_task is None:
                    log.critical("journal write failed: %s; stopping (no snapshot) so a restart replays the log", exc)
                    self.fail(f"journal write failed: {exc}")
                return  # nothing that depends on an unwritten event is ever sent
        self._deliver(out)

    def _deliver(self, out: Outcome) -> None:
        budget = self.config.max_frame_bytes
        if (self._fanout.busy or (self.core is not None and self.core.presence)) and any(s.public for s in out.sends):
            # Everyone hears who joined before anything broadcast after it (0.99 order); the
            # flush costs no more than the broadcast that triggers it.
            self._fanout.drain()
            if self._core.presence:
                self._flush_presence(at_once=True)
        sent = self.metrics.frames_out
        for send in out.sends:
            sent.add(str(send.frame.get("type")), len(send.to))
            data = send.encoded if send.encoded is not None else encode(send.frame)
            size = len(data) if len(data) * 4 <= budget else len(data.encode())  # UTF-8: at most 4 bytes a char
            if size > budget:
                self._refuse_oversize(send.frame, send.to, size)
                continue
            for cid in send.to:
                link = self._links.get(cid)
                if link is not None:
                    link.put(data, size)
            if send.public and self.feed is not None:
                self.feed.append(send.frame)
        for cid, code, reason in out.closes:
            link = self._links.get(cid)
            if link is not None:
                link.close(code, reason)
        for notice in out.notices:
            self._emit(notice.hook, **notice.kwargs)

    def _refuse_oversize(self, frame: dict[str, Any], to: tuple[int, ...], size: int) -> None:
        """The last guard of ``--max-frame-bytes``: a frame over it is replaced by an ``error``.

        Every list reply is paged below the budget and oversized chats are
        refused at send time, so this fires only for a reply nothing pages
        yet (e.g. a ``who`` over a huge roster); it is logged so it gets fixed.
        """
        ftype = frame.get("type")
        log.warning(
            "not sending a %s frame of %d bytes (over --max-frame-bytes %d)", ftype, size, self.config.max_frame_bytes
        )
        core = self._core
        for cid in to:
            conn = core.roster.conns.get(cid)
            link = self._links.get(cid)
            if conn is None or link is None:
                continue
            error = core.frame(
                "error",
                conn.name or "self",
                f"the {ftype} reply would be {size} bytes, over this hub's frame limit of "
                f"{self.config.max_frame_bytes}; ask for less",
                time.time(),
                code="FRAME_TOO_LARGE",
                request_type=ftype,
            )
            link.put(encode(error))

    def _schedule_presence(self) -> None:
        """Broadcast the core's pending presence changes at the next tick, or one window after the last broadcast.

        A lone join goes out at once; a storm of them (1,000 agents
        connecting) becomes one frame per socket per ``presence_window``
        instead of one per join, which was O(N^2) frames.
        """
        core = self.core
        if self._presence_timer is not None or self._server is None or core is None or not core.presence:
            return
        if self._fanout.busy:
            return  # the running broadcast schedules the next one when it is done
        loop = asyncio.get_running_loop()
        # Never closer than twice what the last broadcast cost: with 10k sockets one costs ~0.3 s, and
        # presence churn must not take more than a third of the loop whatever the window.
        spacing = max(self.config.presence_window, 2 * self._presence_cost)
        delay = max(0.0, self._presence_sent_at + spacing - loop.time())
        self._presence_timer = loop.call_later(delay, self._flush_presence)

    def _flush_presence(self, *, at_once: bool = False) -> None:
        """Send the batch: ``at_once`` to every socket now, else a chunk of sockets per tick.

        Presence frames carry no journalled event, so nothing waits for a commit.
        """
        if self._presence_timer is not None:
            self._presence_timer.cancel()
            self._presence_timer = None
        if self._server is None:
            return  # stopping: stop() announces what is left
        out = self._core.flush_presence(time.time())
        if at_once:
            started = time.perf_counter()
            self._deliver(out)
            self._presence_sent(time.perf_counter() - started)
            return
        for send in out.sends:
            self.metrics.frames_out.add(str(send.frame.get("type")), len(send.to))
            data = encode(send.frame)
            size = len(data.encode())
            if size > self.config.max_frame_bytes:  # the core sizes presence frames; this is the last guard
                self._refuse_oversize(send.frame, send.to, size)
                continue
            self._fanout.add(data, size, send.to)
            if self.feed is not None:
                self.feed.append(send.frame)
        for notice in out.notices:
            self._emit(notice.hook, **notice.kwargs)

    def _presence_sent(self, spent: float) -> None:
        """A presence broadcast finished after ``spent`` seconds of writing: space the next one by it."""
        self._presence_sent_at = asyncio.get_running_loop().time()
        self._presence_cost = spent
        self._schedule_presence()

    def _emit(self, hook: str, **kwargs: Any) -> None:
        """Queue a hook with ``hub`` as a :class:`~synapse_channel.events.HubInfo` (plugins never get the Hub)."""
        if self._dispatcher is not None and self._info is not None:
            self._dispatcher.emit(hook, hub=self._info, **kwargs)

    def _make_info(self) -> HubInfo:
        from .. import __version__

        return HubInfo(self.uri, self._core.hub_id, __version__, freeze(self._core.security))

    async def _run_expiry(self) -> None:
        """Expire leases and announce settled departures when due (re-checked at least every half second)."""
        while True:
            deadline = self._core.next_deadline()
            now = time.time()
            if deadline is not None and deadline <= now:
                await self._commit_and_deliver(self._core.expire(now))
                continue
            await asyncio.sleep(EXPIRY_POLL if deadline is None else min(EXPIRY_POLL, deadline - now))
