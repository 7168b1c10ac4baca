"""What the hub counts for ``/metrics`` and ``/healthz``, and the page it renders.

Counting happens where frames pass (``Hub._on_frame``, ``Hub._deliver``)
and costs a dict update; gauges (connections, live claims, pending mail,
database size) are read from the state when a scrape asks, so a hub nobody
scrapes pays almost nothing. Event-loop lag is sampled by one task that
sleeps :data:`LAG_INTERVAL` and measures how late it woke.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..metrics import Exposition, LabelledCounter

if TYPE_CHECKING:
    from .server import Hub

#: Seconds between event-loop lag samples.
LAG_INTERVAL = 0.5


@dataclass(slots=True)
class HubMetrics:
    """Counters the hub bumps as it works; read by :func:`render`."""

    started: float = field(default_factory=time.time)
    frames_in: LabelledCounter = field(default_factory=LabelledCounter)
    frames_out: LabelledCounter = field(default_factory=LabelledCounter)
    #: Refused credentials by door (``websocket``, ``http``).
    auth_refusals: LabelledCounter = field(default_factory=LabelledCounter)
    #: HTTP responses by route and status, e.g. ``metrics_200``.
    http: LabelledCounter = field(default_factory=LabelledCounter)
    loop_lag: float = 0.0
    loop_lag_max: float = 0.0
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling event-loop lag (call from the running loop)."""
        self.started = time.time()
        if self._task is None:
            self._task = asyncio.create_task(self._watch_lag())

    async def stop(self) -> None:
        """Stop the lag sampler (safe to call twice)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_INTERVAL)
            self.loop_lag = max(0.0, loop.time() - before - LAG_INTERVAL)
            self.loop_lag_max = max(self.loop_lag_max, self.loop_lag)

    def uptime(self) -> float:
        """Seconds since the hub started serving."""
        return max(0.0, time.time() - self.started)


def health(hub: Hub) -> dict[str, Any]:
    """The ``/healthz`` body: enough for a probe, nothing secret."""
    failed = hub.failure is not None or (hub.journal is not None and hub.journal.failed is not None)
    body: dict[str, Any] = {
        "ok": not failed and hub.role == "leader",
        "hub_id": hub.core.hub_id if hub.core is not None else None,
        "uptime_seconds": round(hub.metrics.uptime(), 3),
    }
    if hub.ha is not None:  # PostgreSQL: a standby answers 503 so a load balancer skips it
        body.update(hub.ha.health())
    return body


def render(hub: Hub) -> str:
    """The ``/metrics`` page in the Prometheus text format (0.0.4)."""
    from ..compaction import file_bytes

    m, core, journal = hub.metrics, hub.core, hub.journal
    assert core is not None
    page = Exposition()
    page.gauge("hub_info", "The hub's id (always 1).", 1, {"hub_id": core.hub_id})
    page.gauge("uptime_seconds", "Seconds since the hub started.", m.uptime())
    page.gauge("connections", "Open WebSocket connections (registered or not).", hub.connection_count)
    page.gauge("agents_online", "Names registered and announced on the roster.", len(core.roster.online()))
    page.labelled("frames_in", "counter", "Frames received, by type.", "type", m.frames_in.counts.items())
    sent = m.frames_out.counts.items()
    page.labelled("frames_out", "counter", "Frames queued for connections, by type.", "type", sent)
    page.gauge("claims_live", "Live file-scope claims.", len(core.claims.live))
    page.gauge("mailbox_pending_messages", "Directed messages kept until acked.", len(core.mailbox.messages))
    page.gauge("mailbox_pending_bytes", "Bytes of directed messages kept until acked.", core.mailbox.total_bytes)
    page.gauge("attention_open", "Questions waiting for a human (ask-human).", core.attention.open_count())
    page.gauge("journal_seq", "The newest event's sequence number.", core.seq)
    if journal is not None:
        commits = journal.commit_seconds
        page.histogram("journal_commit_seconds", "Seconds per durable journal commit (fsync).", commits)
        page.gauge("journal_last_commit_seconds", "Seconds the latest journal commit took.", commits.last)
    if hub.ha is not None:
        ha = hub.ha.health()
        roles = [("leader", int(ha["role"] == "leader")), ("standby", int(ha["role"] != "leader"))]
        page.labelled("ha_role", "gauge", "This hub's role on its PostgreSQL journal (1 = current).", "role", roles)
        page.gauge("ha_epoch", "The leadership epoch (bumped at every takeover).", ha["epoch"])
        page.gauge("ha_lag_events", "Events the leader committed that this hub has not applied.", ha["lag_events"])
    page.gauge("event_loop_lag_seconds", "How late the hub's event loop ran a timer, latest sample.", m.loop_lag)
    page.gauge("event_loop_lag_max_seconds", "Largest event-loop lag seen since start.", m.loop_lag_max)
    refusals = dict(m.auth_refusals.counts)
    for door in ("websocket", "http"):
        refusals.setdefault(door, 0)
    page.labelled("auth_refusals", "counter", "Refused credentials, by door.", "door", refusals.items())
    responses = sorted(key.rsplit("_", 1) for key in m.http.counts)
    page.samples(
        "http_requests",
        "counter",
        "Plain HTTP requests answered, by route and status.",
        (({"route": route, "status": status}, m.http.counts[f"{route}_{status}"]) for route, status in responses),
    )
    page.counter("internal_errors", "Frames a core bug kept from being applied.", hub.internal_errors)
    path = getattr(journal, "path", None)
    if path is not None:
        page.gauge("db_bytes", "The database's size on disk, WAL included.", file_bytes(path))
    return page.render()


def dashboard_numbers(hub: Hub) -> dict[str, Any]:
    """The health panel's numbers: the ones ``/metrics`` exposes, as one small JSON object."""
    from ..compaction import file_bytes

    m, core, journal = hub.metrics, hub.core, hub.journal
    assert core is not None
    path = getattr(journal, "path", None)
    return {
        **health(hub),
        "connections": hub.connection_count,
        "agents_online": len(core.roster.online()),
        "claims_live": len(core.claims.live),
        "mailbox_pending": len(core.mailbox.messages),
        "attention_open": core.attention.open_count(),
        "loop_lag_seconds": round(m.loop_lag, 6),
        "loop_lag_max_seconds": round(m.loop_lag_max, 6),
        "last_fsync_seconds": None if journal is None else journal.commit_seconds.last,
        "db_bytes": None if path is None else file_bytes(path),
        "journal_seq": core.seq,
    }
