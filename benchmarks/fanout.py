"""Fan-out and idle-connection memory, ours vs the reference hub, in one run.

Fan-out: 1 sender, N connected receivers (10/100/500), spread over two
receiver processes. Broadcast: every receiver gets every message. Directed:
each message names one receiver (both hubs, by default, still send it to
every socket; we count the intended delivery). Latency is send time (in the
payload) to receive time, same clock; throughput is messages per second
until the last intended delivery.

Memory: the hub's RSS with 0, 100, 1,000 and 2,000 idle registered
connections, and per connection.

    python benchmarks/fanout.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import contextlib

from benchlib import OUR_BIN, free_port, ref_available, ref_hub_args, summary, write_results


def start_hub(label: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if label == "ours":
        args = [
            str(Path(OUR_BIN, "synapse")),
            "hub",
            "--port",
            str(port),
            "--db",
            str(tmp / "h.db"),
            "--relay-log",
            str(tmp / "feed.ndjson"),
            "--max-clients",
            "5000",
            "--log-level",
            "WARNING",
        ]
    else:
        args = ref_hub_args(port, tmp / "r.db", "--relay-log", str(tmp / "feed.ndjson"), "--max-clients", "5000")
    env = {**os.environ, "HOME": str(tmp), "SYN_HOME": str(tmp), "SYNAPSE_NO_UPDATE_CHECK": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                time.sleep(0.3)
                return proc, f"ws://127.0.0.1:{port}"
        time.sleep(0.05)
    raise RuntimeError(f"{label} hub did not start")


async def connect(uri: str, name: str) -> Any:
    from synapse_channel.client.wire import WebSocketStream

    ws = await WebSocketStream.open(uri)
    await ws.send(
        json.dumps(
            {
                "sender": name,
                "target": "System",
                "type": "heartbeat",
                "payload": "online",
                "timestamp": time.time(),
                "wake_capability": "passive",
                "protocol_version": 7,
            }
        )
    )
    return ws


def receiver_main(uri: str, names: list[str], expect: int, mode: str, ready: Any, done: Any) -> None:
    """A receiver process: hold ``names``' sockets and record intended-delivery latencies."""
    asyncio.run(_receive(uri, names, expect, mode, ready, done))


async def _receive(uri: str, names: list[str], expect: int, mode: str, ready: Any, done: Any) -> None:
    sockets = [await connect(uri, n) for n in names]
    latencies: list[float] = []
    counted = 0
    finished = asyncio.Event()

    async def drain(ws: Any, name: str) -> None:
        nonlocal counted
        while counted < expect:
            try:
                data = await ws.recv()
            except Exception:
                return
            frame = json.loads(data)
            if frame.get("type") != "chat" or not str(frame.get("payload", "")).startswith("t="):
                continue
            if mode == "directed" and frame.get("target") != name:
                continue
            latencies.append(time.time() - float(frame["payload"][2:].split()[0]))
            counted += 1
            if counted >= expect:
                finished.set()

    if expect == 0:
        finished.set()
    await asyncio.sleep(0.5)
    ready.put(len(sockets))
    tasks = [asyncio.ensure_future(drain(ws, n)) for ws, n in zip(sockets, names, strict=True)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(finished.wait(), 120)
    end = time.time()
    for task in tasks:
        task.cancel()
    done.put((end, latencies))
    for ws in sockets:
        await ws.close(timeout=0.2)


async def send_all(uri: str, targets: list[str]) -> float:
    ws = await connect(uri, "bench-sender")
    await asyncio.sleep(0.2)
    t0 = time.time()
    last = len(targets) - 1
    for i, target in enumerate(targets):
        frame = {
            "sender": "bench-sender",
            "target": target,
            "type": "chat",
            "payload": f"t={time.time()} n={i}",
            "timestamp": time.time(),
        }
        if i == last:  # wait for the hub to have taken everything before closing
            frame.update(client_msg_id="last", receipt_requested=True)
        await ws.send(json.dumps(frame))
        if i % 50 == 49:
            await asyncio.sleep(0)  # let the socket drain
    while True:
        reply = json.loads(await asyncio.wait_for(ws.recv(), 300))
        if reply.get("type") == "delivery_receipt" and reply.get("client_msg_id") == "last":
            break
    await ws.close(timeout=2)
    return t0


def fanout_run(uri: str, clients: int, mode: str, messages: int) -> dict[str, Any]:
    names = [f"fan/r{i}" for i in range(clients)]
    halves = [names[: clients // 2], names[clients // 2 :]]
    ctx = mp.get_context("spawn")
    ready, done = ctx.Queue(), ctx.Queue()
    targets = ["all"] * messages if mode == "broadcast" else [names[(i * 7919) % clients] for i in range(messages)]
    expected = [len(h) * messages if mode == "broadcast" else sum(1 for t in targets if t in h) for h in halves]
    procs = [
        ctx.Process(target=receiver_main, args=(uri, h, e, mode, ready, done))
        for h, e in zip(halves, expected, strict=True)
        if h
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    t0 = asyncio.run(send_all(uri, targets))
    ends, lat = [], []
    for _ in procs:
        end, latencies = done.get(timeout=300)
        ends.append(end)
        lat += latencies
    for p in procs:
        p.join(30)
    lat.sort()
    elapsed = max(ends) - t0
    return {
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
        "deliveries": len(lat),
        "msgs_per_s": messages / elapsed,
        "deliveries_per_s": len(lat) / elapsed,
    }


def stop_hub(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the hub takes too long to shut down."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory_run(proc: subprocess.Popen[bytes], uri: str, counts: list[int]) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {"0": rss_kb(proc.pid)}
        held: list[Any] = []
        for n in counts:
            while len(held) < n:
                batch = await asyncio.gather(
                    *(connect(uri, f"mem/c{len(held) + i}") for i in range(min(100, n - len(held))))
                )
                held += batch
            await asyncio.sleep(1.0)
            out[str(n)] = rss_kb(proc.pid)
        await asyncio.gather(*(ws.close(timeout=1.0) for ws in held))
        return out

    rss = asyncio.run(go())
    top = str(counts[-1])
    rss["per_connection_kb"] = (rss[top] - rss["0"]) / counts[-1]
    return rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sizes = [10, 100] if args.quick else [10, 100, 500]
    sides = ["ours"] + (["ref"] if ref_available() else [])
    results: dict[str, Any] = {"fanout": {}, "memory": {}}
    for side in sides:
        for clients in sizes:
            for mode in ("directed", "broadcast"):
                messages = 100 if mode == "broadcast" else 300
                messages = max(20, messages // (5 if clients >= 500 and mode == "broadcast" else 1))
                runs = []
                for _ in range(args.runs):
                    with tempfile.TemporaryDirectory() as tmp:
                        proc, uri = start_hub(side, Path(tmp))
                        try:
                            runs.append(fanout_run(uri, clients, mode, messages))
                        finally:
                            stop_hub(proc)
                key = f"{side}/{mode}/{clients}"
                results["fanout"][key] = {m: summary([r[m] for r in runs]) for m in runs[0]}
                med = results["fanout"][key]
                print(
                    f"{key:<24} p50 {med['p50_ms']['median']:8.1f} ms  p99 {med['p99_ms']['median']:8.1f} ms  "
                    f"{med['msgs_per_s']['median']:8.0f} msg/s  {med['deliveries_per_s']['median']:9.0f} deliveries/s"
                )
        with tempfile.TemporaryDirectory() as tmp:
            proc, uri = start_hub(side, Path(tmp))
            try:
                results["memory"][side] = memory_run(proc, uri, [100, 1000, 2000])
            finally:
                stop_hub(proc)
        print(f"{side} memory: {results['memory'][side]}")
    print(f"wrote {write_results('fanout', results)}")


if __name__ == "__main__":
    main()
