"""Fleet-scale costs, wire-level against real ``synapse hub`` processes.

Two measures so far (issue: bounded and fail-safe at fleet scale):

* ``who``: round-trip time of ``who_request`` with many retained directed
  messages to many offline targets, and the event-loop lag the hub shows
  meanwhile (the worst round trip of a cheap probe request sent every 10 ms
  from another socket, minus its idle median);
* presence: ``presence_update`` frames an idle observer receives while
  waiters re-arm (each re-arm = disconnect and register again, as
  ``synapse wait`` does), with ``--presence-grace 0`` (the old behaviour)
  and the default grace.

``--hub LABEL=PYTHONPATH`` runs the hub from another source tree (e.g. a
``git worktree`` of an older commit) for a before/after pair; the default is
this tree. Prints a table and writes ``results/scale.json``; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import free_port, summary, wait_for_hub, write_results
from websockets.asyncio.client import connect


def frame(sender: str, ftype: str, target: str = "System", payload: Any = "", **extra: Any) -> str:
    return json.dumps({"sender": sender, "target": target, "type": ftype, "payload": payload, **extra})


class HubRun:
    """One ``synapse hub`` subprocess on a fresh database."""

    def __init__(self, pythonpath: str | None, *flags: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="synapse-scale-"))
        self.port = free_port()
        self.uri = f"ws://127.0.0.1:{self.port}"
        env = dict(os.environ)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        args = [sys.executable, "-m", "synapse_channel", "hub", "--port", str(self.port)]
        args += ["--db", str(self.dir / "hub.db"), "--relay-log", "", "--log-level", "WARNING", *flags]
        self.log = self.dir / "hub.log"
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=self.log.open("w"))

    async def __aenter__(self) -> HubRun:
        await wait_for_hub(self.uri, 30, proc=self.proc, log=self.log)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def seed(uri: str, messages: int, targets: int) -> None:
    """``messages`` directed chats from one sender to ``targets`` offline names, pipelined."""
    async with connect(uri, max_size=None, compression=None, ping_interval=None) as ws:
        await ws.send(frame("bench/sender", "heartbeat"))
        for i in range(messages):
            await ws.send(frame("bench/sender", "chat", f"fleet/w{i % targets}", f"m{i}"))
        await ws.send(frame("bench/sender", "message_status_request", seq=1))  # a barrier: all stored
        while json.loads(await ws.recv()).get("type") != "message_status":
            pass


async def probe(uri: str, stop: asyncio.Event, rtts: list[float]) -> None:
    """A cheap request every 10 ms: its worst round trip shows how long the loop was blocked.

    A hub blocked past its keepalive drops the probe (1011): that wait counts
    as one round trip and the probe reconnects.
    """
    from websockets.exceptions import ConnectionClosed

    while not stop.is_set():
        async with connect(uri, max_size=None, compression=None, ping_interval=None, open_timeout=None) as ws:
            await ws.send(frame("bench/probe", "heartbeat"))
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    await ws.send(frame("bench/probe", "message_status_request", seq=1))
                    while json.loads(await ws.recv()).get("type") != "message_status":
                        pass
                except ConnectionClosed:
                    rtts.append(time.perf_counter() - t0)
                    break
                rtts.append(time.perf_counter() - t0)
                await asyncio.sleep(0.01)


async def who_times(uri: str, rounds: int, budget: float = 120.0) -> list[float]:
    """``rounds`` who round trips, or fewer (at least 3) once ``budget`` seconds are spent (a slow hub)."""
    out: list[float] = []
    start = time.perf_counter()
    async with connect(uri, max_size=None, compression=None, ping_interval=None, open_timeout=None) as ws:
        await ws.send(frame("bench/asker", "heartbeat"))
        for _ in range(rounds):
            if len(out) >= 3 and time.perf_counter() - start > budget:
                break
            t0 = time.perf_counter()
            await ws.send(frame("bench/asker", "who_request"))
            while json.loads(await ws.recv()).get("type") != "who_snapshot":
                pass
            out.append(time.perf_counter() - t0)
    return out


async def measure_who(pythonpath: str | None, messages: int, targets: int, rounds: int) -> dict[str, Any]:
    async with HubRun(pythonpath) as hub:
        await seed(hub.uri, messages, targets)
        idle: list[float] = []
        stop = asyncio.Event()
        task = asyncio.create_task(probe(hub.uri, stop, idle))
        await asyncio.sleep(1.0)
        stop.set()
        await task
        busy: list[float] = []
        stop = asyncio.Event()
        task = asyncio.create_task(probe(hub.uri, stop, busy))
        times = await who_times(hub.uri, rounds)
        stop.set()
        await task
    base = statistics.median(idle)
    lag = sorted(max(0.0, r - base) for r in busy)
    return {
        "messages": messages,
        "targets": targets,
        "rounds": len(times),
        "who": summary(times),
        "who_p99": sorted(times)[min(len(times) - 1, round(0.99 * (len(times) - 1)))],
        "loop_lag_max": lag[-1] if lag else 0.0,
        "loop_lag_p99": lag[min(len(lag) - 1, round(0.99 * (len(lag) - 1)))] if lag else 0.0,
    }


async def measure_presence(pythonpath: str | None, waiters: int, rearms: int, grace: str) -> dict[str, Any]:
    flags = ("--presence-grace", grace) if grace else ()
    async with HubRun(pythonpath, *flags) as hub:
        seen = 0
        async with connect(hub.uri, max_size=None, compression=None, ping_interval=None) as observer:
            await observer.send(frame("bench/observer", "heartbeat"))
            socks = [await connect(hub.uri, compression=None) for _ in range(waiters)]
            for i, ws in enumerate(socks):
                await ws.send(frame(f"fleet/w{i}", "heartbeat"))
            await asyncio.sleep(0.5)
            observer_frames: list[dict[str, Any]] = []

            async def drain() -> None:
                async for data in observer:
                    observer_frames.append(json.loads(data))

            reader = asyncio.create_task(drain())
            await asyncio.sleep(0.3)
            start = len(observer_frames)
            for _ in range(rearms):
                for i in range(waiters):
                    await socks[i].close()
                    socks[i] = await connect(hub.uri, compression=None)
                    await socks[i].send(frame(f"fleet/w{i}", "heartbeat"))
            await asyncio.sleep(2.0)  # let any grace settle: late leaves count too
            seen = sum(1 for f in observer_frames[start:] if f.get("type") == "presence_update")
            reader.cancel()
            for ws in socks:
                await ws.close()
    total = rearms * waiters
    return {"waiters": waiters, "rearms": total, "presence_frames": seen, "per_rearm": seen / total}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hub", action="append", default=[], help="LABEL=PYTHONPATH of another source tree")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--targets", type=int, default=10_000)
    args = parser.parse_args()
    hubs = [tuple(h.split("=", 1)) for h in args.hub] or [("this tree", "")]
    messages, targets = (20_000, 2_000) if args.quick else (args.messages, args.targets)
    results: dict[str, Any] = {"who": {}, "presence": {}}
    for label, path in hubs:
        who = await measure_who(path or None, messages, targets, rounds=20 if args.quick else 50)
        results["who"][label] = who
        print(
            f"{label:<14} who with {messages:,} msgs to {targets:,} offline: p50 {who['who']['median'] * 1000:.1f} ms, "
            f"p99 {who['who_p99'] * 1000:.1f} ms; loop lag max {who['loop_lag_max'] * 1000:.1f} ms, "
            f"p99 {who['loop_lag_p99'] * 1000:.1f} ms",
            flush=True,
        )
    waiters, rearms = (100, 3) if args.quick else (500, 3)
    for grace in ("0", ""):
        label = "grace 0 (old behaviour)" if grace == "0" else "default grace"
        pres = await measure_presence(hubs[0][1] or None, waiters, rearms, grace)
        results["presence"][label] = pres
        print(
            f"{label:<24} {pres['presence_frames']} presence frames for {pres['rearms']} re-arms "
            f"({pres['per_rearm']:.2f} per re-arm)",
            flush=True,
        )
    path = write_results("scale", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
