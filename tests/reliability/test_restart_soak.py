"""Restart soak: 20 hub restarts (SIGTERM and SIGKILL) while directed messages flow
to waiters that re-arm. Every message the hub acknowledged reaches its agent
exactly once: none lost, none delivered twice.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from ..conftest import SYNAPSE, open_raw, report
from ..hubproc import HubProcess

AGENTS = ["soak/a", "soak/b", "soak/c"]


async def agent_loop(uri: str, identity: str, seen: list[str], stop: asyncio.Event) -> None:
    """An agent's wake loop: wait, read what woke it, re-arm."""
    while not stop.is_set():
        proc = await asyncio.create_subprocess_exec(
            SYNAPSE,
            "wait",
            "--uri",
            uri,
            "--name",
            identity,
            "--timeout",
            "0",
            "--wake-jitter",
            "0",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        waiting = asyncio.ensure_future(proc.communicate())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            proc.terminate()
            await waiting
            stopping.cancel()
            return
        stopping.cancel()
        out, _ = waiting.result()
        seen.extend(line.split(": ", 1)[1] for line in out.decode().splitlines() if ": " in line)


async def sender_loop(hub: HubProcess, acked: set[str], maybe: set[str], stop: asyncio.Event) -> None:
    """Send numbered directed messages; a receipt means the hub stored it."""
    n = 0
    while not stop.is_set():
        try:
            client = await open_raw(hub.uri, "soak-sender")
            await client.send("heartbeat")
            await client.expect("welcome", timeout=3)
            while not stop.is_set():
                text = f"m{n}"
                target = AGENTS[n % len(AGENTS)]
                n += 1
                maybe.add(text)
                await client.send("chat", target, text, client_msg_id=text, receipt_requested=True)
                await client.expect("delivery_receipt", client_msg_id=text, timeout=5)
                acked.add(text)
                await asyncio.sleep(0.01)
        except Exception:  # the hub went away mid-send: reconnect and go on
            await asyncio.sleep(0.1)


async def test_restart_soak_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    """20 restarts under traffic: 0 acknowledged messages lost, 0 delivered twice."""
    hub = HubProcess(tmp_path / "soak.db")
    await hub.start()
    stop_agents, stop_sender = asyncio.Event(), asyncio.Event()
    seen: dict[str, list[str]] = {a: [] for a in AGENTS}
    acked: set[str] = set()
    maybe: set[str] = set()
    agents = [asyncio.create_task(agent_loop(hub.uri, a, seen[a], stop_agents)) for a in AGENTS]
    sender = asyncio.create_task(sender_loop(hub, acked, maybe, stop_sender))
    rng = random.Random(5)
    restarts = 0
    for i in range(20):
        await asyncio.sleep(rng.uniform(0.2, 0.5))
        if i % 2:
            await hub.kill()
        else:
            await hub.stop()
        await hub.start()
        restarts += 1
    stop_sender.set()
    await sender
    everything = set(acked)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not everything <= {m for lines in seen.values() for m in lines}:
        if loop.time() > deadline:
            import json
            import sqlite3

            lost = sorted(everything - {m for v in seen.values() for m in v})
            con = sqlite3.connect(tmp_path / "soak.db")
            for seq, kind, data in con.execute("SELECT seq, kind, data FROM events ORDER BY seq"):
                d = json.loads(data)
                if kind == "mailbox_watermark" or (kind == "chat" and d["frame"]["payload"] in lost[:3]):
                    print(
                        seq,
                        kind,
                        d.get("identity"),
                        d.get("through_seq"),
                        d.get("frame", {}).get("payload"),
                        d.get("recipients"),
                    )
            print("seen c:", seen["soak/c"][:60])
            raise AssertionError(f"lost: {lost[:5]}")
        await asyncio.sleep(0.2)
    stop_agents.set()
    await asyncio.gather(*agents)
    await hub.stop()
    delivered: list[str] = [m for lines in seen.values() for m in lines]
    duplicates = {m for m in delivered if delivered.count(m) > 1}
    unexpected = set(delivered) - maybe
    stats: dict[str, Any] = {
        "restarts": restarts,
        "acked": len(acked),
        "delivered": len(delivered),
        "unacked_but_delivered": len(set(delivered) - acked),
        "duplicates": len(duplicates),
    }
    report(f"restart soak: {stats}")
    assert restarts == 20 and len(acked) > 50
    assert not duplicates, f"delivered twice: {sorted(duplicates)[:5]}"
    assert not unexpected
    for agent, lines in seen.items():
        assert all(int(m[1:]) % len(AGENTS) == AGENTS.index(agent) for m in lines), "a message reached the wrong agent"
