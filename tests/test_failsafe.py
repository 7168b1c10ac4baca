"""Fail-safe start-up: a hub that cannot bind or whose database is taken exits at once, non-zero.

Real ``synapse hub`` processes on real ports and SQLite files. Timeouts here
bound a hang (the bug these catch), they are not speed assertions.
"""

from __future__ import annotations

from pathlib import Path

from synapse_channel.hub.config import HubConfig
from synapse_channel.hub.server import Hub
from synapse_channel.store import DatabaseBusy

from .conftest import run_cli
from .hubproc import HubProcess


async def test_hub_exits_non_zero_when_the_port_is_taken(tmp_path: Path) -> None:
    """A second `make hub` used to print "address already in use" and never exit."""
    first = HubProcess(tmp_path / "a.db")
    await first.start()
    try:
        code, _, err = await run_cli("hub", "--port", str(first.port), "--db", str(tmp_path / "b.db"), timeout=20)
        assert code == 1
        assert "cannot listen" in err and "address already in use" in err
        assert "Traceback" not in err
    finally:
        await first.stop()


async def test_a_second_hub_on_the_same_database_refuses_to_start(tmp_path: Path) -> None:
    """Two writers on one journal lost an acked message and replayed an uncommitted one: refuse the second."""
    db = tmp_path / "hub.db"
    first = HubProcess(db)
    await first.start()
    try:
        code, _, err = await run_cli("hub", "--port", "0", "--db", str(db), timeout=20)
        assert code == 1 and "in use by another hub" in err and "Traceback" not in err
        assert first.proc is not None and f"pid {first.proc.pid}" in err
        # the first hub is unharmed: it still takes and keeps a message
        code, out, _ = await run_cli(
            "send", "--uri", first.uri, "--name", "boss", "--target", "w", "--json", "still here"
        )
        assert '"queued": true' in out, out
    finally:
        await first.kill()  # SIGKILL: the kernel drops the lock with the process, no stale lock file
    second = HubProcess(db)
    await second.start()
    try:
        code, out, _ = await run_cli("wait", "--uri", second.uri, "--name", "w", "--timeout", "10")
        assert code == 0 and "still here" in out  # the mailbox survived the refused second hub
    finally:
        await second.stop()


async def test_in_process_hubs_share_the_lock_rule(tmp_path: Path) -> None:
    """The lock is taken by the journal itself, so any embedding of the hub obeys it, and released on stop."""
    config = HubConfig(host="127.0.0.1", port=0, db=tmp_path / "hub.db")
    async with Hub(config):
        try:
            async with Hub(config):
                raise AssertionError("a second hub started on a database already in use")
        except DatabaseBusy as exc:
            assert "in use by another hub" in str(exc)
    async with Hub(config) as again:  # released by the first one's stop()
        assert again.port > 0
