"""Load: slow consumers, connection floods, and memory over many connect/disconnect cycles."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ..conftest import HubFactory, open_raw, open_ws, report
from ..hubproc import HubProcess


async def test_slow_consumer_does_not_delay_others(hub_factory: HubFactory) -> None:
    """A client that never reads fills only its own bounded queue and is dropped; others keep up."""
    hub = await hub_factory(max_frame_bytes=256 * 1024, max_queue_bytes=800_000, relay_log=None)
    slow = await open_raw(hub.uri, "slow")
    await slow.send("heartbeat")
    await slow.expect("welcome")
    slow.ws.transport.pause_reading()  # alive, but reads nothing
    fast = await open_raw(hub.uri, "fast")
    await fast.send("heartbeat")
    sender = await open_raw(hub.uri, "sender")
    big = "x" * 4000
    t0 = time.monotonic()
    for i in range(1500):
        await sender.send("chat", "all", f"{i} {big}")
    got = 0
    while got < 1500:
        frame = await fast.recv(timeout=30)
        if frame["type"] == "chat" and frame["sender"] == "sender":
            got += 1
    elapsed = time.monotonic() - t0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while "slow" in hub.core.roster.names:
        assert loop.time() < deadline, "the slow consumer was never closed"
        await asyncio.sleep(0.05)
    report(f"slow consumer: fast client got 1500 x 4 KB broadcasts in {elapsed:.2f}s; slow one closed")
    slow.ws.transport.abort()
    await fast.close()
    await sender.close()


async def test_max_clients_and_per_host_cap_hold_under_a_flood(hub_factory: HubFactory) -> None:
    """300 simultaneous connects: at most --max-connections-per-host stay; the rest get 4015; the hub still answers."""
    hub = await hub_factory(max_clients=200, max_per_host=50)
    results = await asyncio.gather(*(open_ws(hub.uri) for _ in range(300)), return_exceptions=True)
    sockets = [ws for ws in results if not isinstance(ws, BaseException)]
    await asyncio.sleep(0.5)
    codes: dict[int | None, int] = {}
    alive = 0
    for ws in sockets:
        rcvd = ws.protocol.close_rcvd
        if rcvd is None:
            alive += 1
        else:
            codes[rcvd.code] = codes.get(rcvd.code, 0) + 1
    report(f"flood: {alive} admitted, closes {codes}")
    assert alive == 50 and codes.get(4015, 0) == len(sockets) - 50
    for ws in sockets:
        await ws.close()
    check = await open_raw(hub.uri, "after-flood")
    await check.send("who_request")
    await check.expect("who_snapshot")
    await check.close()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def churn(uri: str, cycles: int) -> None:
    async def one(i: int) -> None:
        c = await open_raw(uri, f"churn{i % 50}-{i}")
        await c.send("heartbeat")
        await c.expect("welcome")
        await c.ws.close()

    for start in range(0, cycles, 50):
        await asyncio.gather(*(one(i) for i in range(start, min(cycles, start + 50))))


@pytest.mark.slow
async def test_idle_connection_memory_stays_flat(tmp_path: Path) -> None:
    """10,000 connect/disconnect cycles: the hub's RSS does not keep growing (slow; CI runs it)."""
    hub = HubProcess(tmp_path / "h.db")
    await hub.start()
    assert hub.proc is not None
    await churn(hub.uri, 2000)  # warm up allocator pools
    before = rss_kb(hub.proc.pid)
    await churn(hub.uri, 10_000)
    after = rss_kb(hub.proc.pid)
    report(f"memory: RSS {before} kB after 2,000 cycles, {after} kB after 10,000 more ({after - before:+d} kB)")
    await hub.stop()
    assert after - before < 8 * 1024, "RSS grew by more than 8 MB over 10,000 cycles"


async def test_connect_cycles_leave_no_state_behind(hub_factory: HubFactory) -> None:
    """1,000 cycles in the default run: every per-connection structure is empty afterwards."""
    hub = await hub_factory()
    await churn(hub.uri, 1000)
    await asyncio.sleep(0.2)
    report(f"churn: 1000 cycles, links={len(hub._links)}, conns={len(hub.core.roster.conns)}")
    assert not hub._links and not hub.core.roster.conns and not hub.core.roster.names
    assert not hub.core.roster.by_owner and not hub._per_host
