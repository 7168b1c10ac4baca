"""Fleet-scale costs, wire-level against real ``synapse hub`` processes.

Two measures so far (issue: bounded and fail-safe at fleet scale):

* ``who``: round-trip time of ``who_request`` with many retained directed
  messages to many offline targets, and the event-loop lag the hub shows
  meanwhile (the worst round trip of a cheap probe request sent every 10 ms
  from another socket, minus its idle median);
* presence: ``presence_update`` frames an idle observer receives while
  waiters re-arm (each re-arm = disconnect and register again, as
  ``synapse wait`` does), with ``--presence-grace 0`` (the old behaviour)
  and the default grace;
* largest frame: the biggest frame the hub sends for any request (inbox
  pages over 24 stored 900 KB chats, history, resume, mailbox replay, who,
  state over many claims, board), against ``--max-frame-bytes``;
* slow consumer: 500 sockets chatting to each other (every chat copied to
  ``bench/slow``); their delivery p99 with and without a ``bench/slow`` socket
  that never reads, how it was closed, and the hub's peak RSS.

``--hub LABEL=PYTHONPATH`` runs the hub from another source tree (e.g. a
``git worktree`` of an older commit) for a before/after pair; the default is
this tree. Prints a table and writes ``results/scale.json``; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
            if i % 5000 == 4999 or i == messages - 1:
                # A barrier per batch: all stored, and the hub's keepalive pings are not stuck behind
                # a hundred thousand pipelined frames (it would close us 1011).
                await ws.send(frame("bench/sender", "message_status_request", seq=1))
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
    flags = ("--max-clients", str(2 * waiters + 16), *(("--presence-grace", grace) if grace else ()))
    async with HubRun(pythonpath, *flags) as hub:
        seen = 0
        async with connect(hub.uri, max_size=None, compression=None, ping_interval=None) as observer:
            await observer.send(frame("bench/observer", "heartbeat"))
            # The waiters never read: an unbounded client queue keeps websockets' flow control from
            # stalling their close handshake (10 s), which would turn every re-arm into a real leave.
            socks = []
            for i in range(waiters):  # each registers at once (a silent socket is closed after --auth-timeout)
                socks.append(await connect(hub.uri, compression=None, max_queue=None))
                await socks[-1].send(frame(f"fleet/w{i}", "heartbeat"))
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
                    socks[i] = await connect(hub.uri, compression=None, max_queue=None)
                    await socks[i].send(frame(f"fleet/w{i}", "heartbeat"))
            await asyncio.sleep(2.0)  # let any grace settle: late leaves count too
            seen = sum(1 for f in observer_frames[start:] if f.get("type") == "presence_update")
            reader.cancel()
            for ws in socks:
                await ws.close()
    total = rearms * waiters
    return {"waiters": waiters, "rearms": total, "presence_frames": seen, "per_rearm": seen / total}


def rss_mb(pid: int) -> dict[str, float]:
    """Current and peak resident memory of ``pid`` (Linux), in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return {"rss_mb": out.get("VmRSS", 0.0), "peak_rss_mb": out.get("VmHWM", 0.0)}


async def measure_largest_frame(pythonpath: str | None, big: int, claims: int) -> dict[str, Any]:
    """Every list request, after filling the hub; the largest frame received per request type."""
    largest: dict[str, int] = {}
    async with HubRun(pythonpath, "--max-claims-per-agent", "0") as hub:
        async with connect(hub.uri, max_size=None, compression=None, ping_interval=None) as ws:
            await ws.send(frame("bench/filler", "heartbeat"))
            for i in range(big):
                await ws.send(frame("bench/filler", "chat", "bench/inbox", f"{i} " + "x" * 900_000))
            for i in range(claims):
                await ws.send(frame("bench/filler", "claim", task_id=f"T-{i}", paths=[f"src/{i}/" + "p" * 200]))
                await ws.send(frame("bench/filler", "ledger_task", task_id=f"B-{i}", title="t" * 300))
            for i in range(400):
                await ws.send(frame("bench/filler", "chat", "all", f"b{i} " + "y" * 3000))
            await ws.send(frame("bench/filler", "message_status_request", seq=1))
            while json.loads(await ws.recv()).get("type") != "message_status":
                pass

        async def ask(name: str, key: str, *frames: str, until: str, pages: bool = False) -> None:
            async with connect(hub.uri, max_size=None, compression=None, ping_interval=None) as ws:
                for f in frames:
                    await ws.send(f)
                while True:
                    data = await asyncio.wait_for(ws.recv(), 30)
                    largest[key] = max(largest.get(key, 0), len(data.encode() if isinstance(data, str) else data))
                    reply = json.loads(data)
                    if reply.get("type") != until:
                        continue
                    body = reply.get("inbox_page") or {}
                    if not (pages and body.get("has_more")):
                        return
                    query = {"version": 1, "identity": "bench/inbox", "since_seq": body["cursor"], "limit": 100}
                    await ws.send(frame(name, "history_request", inbox_query=query))

        q = {"version": 1, "identity": "bench/inbox", "since_seq": 0, "limit": 100}
        await ask(
            "bench/inbox~a",
            "inbox pages",
            frame("bench/inbox~a", "history_request", inbox_query=q),
            until="history_snapshot",
            pages=True,
        )
        await ask("bench/h", "history", frame("bench/h", "history_request", limit=500), until="history_snapshot")
        await ask("bench/r", "resume", frame("bench/r", "resume_request", since=0), until="resume_snapshot")
        await ask("bench/s", "state", frame("bench/s", "state_request", payload="snapshot"), until="state_snapshot")
        await ask("bench/b", "board", frame("bench/b", "board_request", payload="board"), until="board_snapshot")
        await ask("bench/w", "who", frame("bench/w", "who_request"), until="who_snapshot")
        reg = frame("bench/inbox-rx", "heartbeat", mailbox=True, since_seq=0, mailbox_for="bench/inbox")
        probe = frame("bench/inbox-rx", "message_status_request", seq=1)
        await ask("bench/inbox-rx", "mailbox replay", reg, probe, until="message_status")
    return {"per_request": largest, "largest": max(largest.values()), "max_frame_bytes": 1 << 20}


async def measure_slow_consumer(pythonpath: str | None, others: int, rounds: int, slow: bool) -> dict[str, Any]:
    """``others`` sockets each send ``rounds`` chats to a neighbour (copied to bench/slow); delivery latency."""
    size = 8000
    async with HubRun(pythonpath, "--max-clients", str(others + 16)) as hub:
        socks = []
        for i in range(others):  # each registers at once: a silent socket is closed after --auth-timeout
            ws = await connect(hub.uri, compression=None, max_size=None)
            await ws.send(frame(f"fleet/w{i}", "heartbeat", quiet=True))
            socks.append(ws)
        lazy = None
        if slow:
            lazy = await connect(hub.uri, compression=None, max_size=None)
            await lazy.send(frame("bench/slow", "heartbeat"))
            await asyncio.sleep(0.2)
            lazy.transport.pause_reading()
        await asyncio.sleep(0.5)
        latencies: list[float] = []
        expected = others * rounds

        async def read(ws: Any) -> None:
            async for data in ws:
                f = json.loads(data)
                if f.get("type") == "chat":
                    latencies.append(time.perf_counter() - float(f["payload"].split(" ", 1)[0]))
                    if len(latencies) >= expected:
                        return

        readers = [asyncio.create_task(read(ws)) for ws in socks]

        async def talk(i: int) -> None:
            ws = socks[i]
            for _ in range(rounds):
                target = f"fleet/w{(i + 1) % others},bench/slow"
                await ws.send(frame(f"fleet/w{i}", "chat", target, f"{time.perf_counter()} " + "z" * size))
                await asyncio.sleep(0.2)

        await asyncio.gather(*(talk(i) for i in range(others)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 60)
        memory = rss_mb(hub.proc.pid)
        closed = None
        if lazy is not None:
            lazy.transport.resume_reading()
            outcome = "not closed (its backlog stayed under the bound)"
            try:
                async with asyncio.timeout(10):
                    async for _ in lazy:
                        pass
            except TimeoutError:
                pass
            except Exception:  # cut off: it did not read its close frame within the grace
                outcome = "dropped after the close grace (close frame never read)"
            rcvd = lazy.protocol.close_rcvd
            logged = hub.log.read_text().count("closing a slow consumer")
            closed = f"{rcvd.code} {rcvd.reason}" if rcvd else outcome
            closed += f"; hub logged {logged} slow-consumer close(s)"
            await lazy.close()
        for ws in socks:
            await ws.close()
    lat = sorted(latencies)
    return {
        "others": others,
        "chats": expected,
        "delivered": len(lat),
        "p50_ms": statistics.median(lat) * 1000 if lat else None,
        "p99_ms": lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))] * 1000 if lat else None,
        "slow_closed": closed,
        **memory,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hub", action="append", default=[], help="LABEL=PYTHONPATH of another source tree")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument(
        "--only", default="who,presence,frames,slow", help="comma-separated rows: who, presence, frames, slow"
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    hubs = [tuple(h.split("=", 1)) for h in args.hub] or [("this tree", "")]
    messages, targets = (20_000, 2_000) if args.quick else (args.messages, args.targets)
    results: dict[str, Any] = {"who": {}, "presence": {}}
    for label, path in hubs if "who" in only else []:
        who = await measure_who(path or None, messages, targets, rounds=20 if args.quick else 50)
        results["who"][label] = who
        print(
            f"{label:<14} who with {messages:,} msgs to {targets:,} offline: p50 {who['who']['median'] * 1000:.1f} ms, "
            f"p99 {who['who_p99'] * 1000:.1f} ms; loop lag max {who['loop_lag_max'] * 1000:.1f} ms, "
            f"p99 {who['loop_lag_p99'] * 1000:.1f} ms",
            flush=True,
        )
    waiters, rearms = (100, 3) if args.quick else (500, 3)
    for grace in ("0", "") if "presence" in only else ():
        label = "grace 0 (old behaviour)" if grace == "0" else "default grace"
        pres = await measure_presence(hubs[0][1] or None, waiters, rearms, grace)
        results["presence"][label] = pres
        print(
            f"{label:<24} {pres['presence_frames']} presence frames for {pres['rearms']} re-arms "
            f"({pres['per_rearm']:.2f} per re-arm)",
            flush=True,
        )
    if "frames" in only:
        frames = await measure_largest_frame(hubs[0][1] or None, 8 if args.quick else 24, 300)
        results["largest_frame"] = frames
        print(
            f"largest frame sent, any request: {frames['largest']:,} bytes (max {frames['max_frame_bytes']:,}); "
            + ", ".join(f"{k} {v:,}" for k, v in frames["per_request"].items()),
            flush=True,
        )
    others = 100 if args.quick else 500
    results["slow_consumer"] = {}
    for slow in (False, True) if "slow" in only else ():
        label = "with slow consumer" if slow else "without"
        run = await measure_slow_consumer(hubs[0][1] or None, others, 5 if args.quick else 10, slow)
        results["slow_consumer"][label] = run
        print(
            f"{label:<20} {run['delivered']}/{run['chats']} chats among {others}: p50 {run['p50_ms']:.1f} ms, "
            f"p99 {run['p99_ms']:.1f} ms; hub RSS {run['rss_mb']:.0f} MB (peak {run['peak_rss_mb']:.0f} MB)"
            + (f"; slow consumer: {run['slow_closed']}" if slow else ""),
            flush=True,
        )
    path = write_results("scale", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
