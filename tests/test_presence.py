"""The presence holder: roster, queued receipts, restarts, SIGKILL, and sd_notify."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from pathlib import Path

from synapse_channel.hub.server import Hub

from .conftest import finish, run_cli, start_cli
from .hubproc import HubProcess


async def online(uri: str, name: str, timeout: float = 15) -> None:
    """Poll `who --json` until ``name`` is online."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        code, out, _ = await run_cli("who", "--uri", uri, "--json", "--timeout", "2")
        if code == 0 and name in json.loads(out)["online_agents"]:
            return
        assert loop.time() < deadline, f"{name} did not come online"
        await asyncio.sleep(0.1)


async def test_holder_keeps_project_on_roster_and_queues(hub: Hub) -> None:
    """With only the holder online: who --project shows it; a send is queued (exit 0), via the holder or not."""
    holder = await start_cli("presence", "proj", "--uri", hub.uri)
    try:
        await online(hub.uri, "proj-presence")
        code, out, _ = await run_cli("who", "--uri", hub.uri, "--project", "proj")
        assert code == 0 and "Presence holders (1): proj-presence" in out
        code, out, _ = await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "proj/seat1", "do it")
        assert code == 0 and "queued for proj/seat1" in out and "proj-presence" in out
        code, out, _ = await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "proj", "all of you")
        assert code == 0 and "queued" in out
        code, out, _ = await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "prjo/seat1", "typo")
        assert code == 0 and "queued for prjo/seat1 (offline)" in out and "presence" not in out
        code, out, _ = await run_cli(
            "wait", "--uri", hub.uri, "--name", "proj/seat1", "--timeout", "10", "--wake-jitter", "0"
        )
        assert code == 0 and "boss: do it" in out and "boss: all of you" in out
    finally:
        holder.send_signal(signal.SIGTERM)
        code, _, _ = await finish(holder)
    assert code == 0


async def test_holder_survives_hub_restart_and_its_own_sigkill(tmp_path: Path) -> None:
    """Back online after a hub SIGKILL+restart, and a restarted holder takes over its stale name."""
    hub = HubProcess(tmp_path / "h.db")
    await hub.start()
    holder = await start_cli("presence", "proj", "--uri", hub.uri)
    await online(hub.uri, "proj-presence")
    await hub.kill()
    await hub.start()
    await online(hub.uri, "proj-presence", timeout=20)
    holder.send_signal(signal.SIGKILL)
    await holder.wait()
    again = await start_cli("presence", "proj", "--uri", hub.uri)
    await online(hub.uri, "proj-presence")
    again.send_signal(signal.SIGTERM)
    code, _, err = await finish(again)
    assert code == 0 and "4009" not in err
    await hub.stop()


async def test_second_holder_takes_over_and_the_first_yields(hub: Hub) -> None:
    """Two holders for one project do not fight: the older one exits 4 (yield)."""
    first = await start_cli("presence", "proj", "--uri", hub.uri)
    await online(hub.uri, "proj-presence")
    second = await start_cli("presence", "proj", "--uri", hub.uri)
    code, _, _ = await finish(first, timeout=20)
    assert code == 4
    second.send_signal(signal.SIGTERM)
    assert (await finish(second))[0] == 0


async def test_sd_notify_ready_watchdog_stopping(hub: Hub, tmp_path: Path) -> None:
    """Under systemd the holder sends READY=1, WATCHDOG=1 and, on SIGTERM, STOPPING=1."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"}
    holder = await start_cli("presence", "proj", "--uri", hub.uri, env=env)
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    async def until(state: str) -> None:
        async with asyncio.timeout(15):
            while not any(state in s for s in seen):
                seen.append((await loop.sock_recv(sock, 4096)).decode())

    try:
        await until("READY=1")
        await until("WATCHDOG=1")
        holder.send_signal(signal.SIGTERM)
        await until("STOPPING=1")
        assert (await finish(holder))[0] == 0
    finally:
        sock.close()
        if holder.returncode is None:
            holder.kill()
    assert any("STATUS=holding presence for proj" in s for s in seen)
    assert "WATCHDOG_USEC" not in os.environ
