"""The hub's side of high availability on PostgreSQL: standby until it holds the lock, then leader.

A hub on a ``postgresql://`` database binds its port at once. While another
hub leads it is a *standby*: it follows the log into its own core (warm
state, so a takeover only applies the last few events), answers every
WebSocket with close code 4018 and ``standby; leader=<uri>`` (the leader's
advertised address, empty when unknown) so clients can move on, and
``/healthz`` says 503 with ``"role": "standby"``. When the lock comes free it
bumps the epoch, catches up and starts serving.

A leader that loses the lock or finds a higher epoch (see
:mod:`synapse_channel.pgstore`) *steps down by exiting*: it closes every
socket with 4018 and the new leader's address, writes nothing more, and the
process ends with an error. A supervisor (systemd ``Restart=always``) starts
it again as a standby. Exiting rather than demoting in place means no state
built while leading (unacknowledged, possibly fenced) survives into the
standby's core.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Any

from ..protocol import REASON_STANDBY_PREFIX

if TYPE_CHECKING:
    from ..pgstore import PostgresJournal
    from .server import Hub

log = logging.getLogger("synapse_channel.hub")

#: The close reason's prefix; clients parse ``leader=`` after it (the whole reason fits 123 bytes).
STANDBY_PREFIX = REASON_STANDBY_PREFIX
_MAX_REASON = 123


def standby_reason(address: str) -> str:
    """``standby; leader=<address>``, the address dropped when it would not fit a close frame."""
    reason = STANDBY_PREFIX + address
    return reason if len(reason.encode()) <= _MAX_REASON else STANDBY_PREFIX


def advertised_address(hub: Hub) -> str:
    """The URI other machines should use for this hub: ``--advertise``, else the bound address.

    A wildcard bind (``0.0.0.0``, ``::``) names no reachable host, so the
    machine's host name stands in for it.
    """
    if hub.config.advertise:
        return hub.config.advertise
    host = hub.config.host
    if host in ("0.0.0.0", "::", ""):
        scheme = "wss" if hub.config.tls else "ws"
        return f"{scheme}://{socket.gethostname()}:{hub.port}"
    return hub.uri


class Leadership:
    """Who leads, as this hub knows it; drives the standby-to-leader transition."""

    def __init__(self, hub: Hub, journal: PostgresJournal) -> None:
        self.hub = hub
        self.journal = journal
        self.address = ""
        self._task: asyncio.Task[None] | None = None

    @property
    def role(self) -> str:
        return self.journal.role if self.journal.deposed is None else "deposed"

    async def start(self) -> bool:
        """Try to lead now; as a standby, warm the core and wait for the lock in the background."""
        self.address = advertised_address(self.hub)
        if await self.journal.try_lead(self.address):
            return True
        core = self.hub.core
        assert core is not None
        await self.journal.replay(core)
        log.info(
            "standby: %s leads at epoch %d; following the log (seq %d)",
            self.journal.leader.address or "another hub",
            self.journal.leader.epoch,
            core.seq,
        )
        self._task = asyncio.create_task(self._wait())
        return False

    async def _wait(self) -> None:
        try:
            await self.journal.wait_to_lead(self.address, self.hub.core)
            await self.hub.take_over()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.critical("standby failed: %s", exc)
            self.hub.fail(f"standby failed: {exc}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def close_reason(self) -> str:
        """What a standby (or a deposed leader) tells a client it turns away."""
        leader = self.journal.leader
        address = leader.address if leader.epoch != self.journal.epoch or self.journal.role != "leader" else ""
        return standby_reason(address)

    def health(self) -> dict[str, Any]:
        """Role, epoch and lag for ``/healthz``, ``synapse hub status`` and ``/metrics``."""
        journal, core = self.journal, self.hub.core
        seq = core.seq if core is not None else 0
        leader = journal.leader
        leader_seq = max(leader.seq, seq) if journal.role == "leader" else leader.seq
        return {
            "role": self.role,
            "epoch": journal.epoch if journal.role == "leader" else leader.epoch,
            "leader": self.address if journal.role == "leader" else leader.address,
            "seq": seq,
            "leader_seq": leader_seq,
            "lag_events": max(0, leader_seq - seq),
        }
