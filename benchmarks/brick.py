"""The brick attempt (issue 12): large directed chats to names that do not exist, then many small events.

Before the mailbox bounds this took a hub from 31 MB to 975 MB and 1 GB on
disk, and the snapshot failed "string or blob too big" so the hub could never
commit again. This script starts a real ``synapse hub`` (default bounds unless
given), floods it, and prints hub RSS and database size before and after, the
refusals, whether it still commits, the event-loop lag meanwhile (``scale.Lag``:
a cheap request every 10 ms from another socket) and SIGTERM-to-exit time;
then writes ``results/brick.json``.

    python benchmarks/brick.py [--chats 500] [--kib 1000] [--events 9500] [hub flags...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import OUR_BIN, free_port, wait_for_hub, write_results
from scale import Lag
from websockets.asyncio.client import connect


def rss(pid: int) -> int:
    """Resident set size in bytes (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def disk(db: Path) -> int:
    """Bytes of the database and its WAL."""
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


async def flood(uri: str, chats: int, kib: int, events: int) -> dict[str, int]:
    """Send the attempt over one socket; count receipts and MAILBOX_FULL refusals."""
    ws = await connect(uri, max_size=None, compression=None)
    name, counts = "flood", {"accepted": 0, "refused": 0, "events_acked": 0}

    async def request(frame: dict[str, Any], tag: str) -> dict[str, Any]:
        await ws.send(json.dumps({"sender": name, "timestamp": time.time(), **frame, "client_msg_id": tag}))
        while True:
            reply = json.loads(await ws.recv())
            if reply.get("client_msg_id") == tag:
                return reply

    await ws.send(json.dumps({"sender": name, "target": "System", "type": "heartbeat", "payload": "online"}))
    big = "x" * (kib * 1024)
    for i in range(chats):
        chat = {"type": "chat", "target": f"ghost-{i}/x", "payload": big, "receipt_requested": True}
        reply = await request(chat, f"big-{i}")
        counts["accepted" if reply["type"] == "delivery_receipt" else "refused"] += 1
    for i in range(events // 2):  # a note to self and its ack: two small events
        reply = await request({"type": "chat", "target": name, "payload": "ok", "receipt_requested": True}, f"s{i}")
        ack = {"sender": name, "target": "System", "type": "ack", "payload": "", "seq": reply["message_seq"]}
        await ws.send(json.dumps(ack))
        counts["events_acked"] += 2
    await ws.close()
    return counts


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=500)
    parser.add_argument("--kib", type=int, default=1000)
    parser.add_argument("--events", type=int, default=9500)
    args, hub_flags = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        db, port = Path(tmp) / "hub.db", free_port()
        log = Path(tmp) / "hub.log"
        cmd = [f"{OUR_BIN}/synapse", "hub", "--port", str(port), "--db", str(db), "--relay-log", "", *hub_flags]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        uri = f"ws://127.0.0.1:{port}"
        await wait_for_hub(uri, 20, proc=proc, log=log)
        before = {"rss": rss(proc.pid), "disk": disk(db)}
        async with Lag(uri) as lag:
            started = time.perf_counter()
            counts = await flood(uri, args.chats, args.kib, args.events)
            took = time.perf_counter() - started
        after = {"rss": rss(proc.pid), "disk": disk(db)}
        alive = proc.poll() is None
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        sigterm = time.perf_counter() - t0
        restart = subprocess.run([f"{OUR_BIN}/synapse", "db", "check", str(db)], capture_output=True, text=True)
    result = {
        "chats": args.chats,
        "kib": args.kib,
        "events": args.events,
        "hub_flags": hub_flags,
        **counts,
        "flood_seconds": round(took, 2),
        "rss_before_mb": round(before["rss"] / 2**20, 1),
        "rss_after_mb": round(after["rss"] / 2**20, 1),
        "disk_before_mb": round(before["disk"] / 2**20, 2),
        "disk_after_mb": round(after["disk"] / 2**20, 2),
        "alive_after": alive,
        "sigterm_exit_code": code,
        "sigterm_to_exit_s": round(sigterm, 3),
        "db_check": restart.stdout.strip().splitlines()[-1] if restart.stdout else restart.stderr.strip(),
        **lag.figures(),
    }
    print(
        f"brick attempt: {args.chats} x {args.kib} KiB to ghosts, then {args.events} small events in {took:.1f} s\n"
        f"  accepted {counts['accepted']}, refused {counts['refused']} (MAILBOX_FULL)\n"
        f"  hub RSS {result['rss_before_mb']} -> {result['rss_after_mb']} MB; "
        f"db+wal {result['disk_before_mb']} -> {result['disk_after_mb']} MB\n"
        f"  still serving: {alive}; SIGTERM -> exit {code} in {sigterm * 1000:.0f} ms; db check: {result['db_check']}\n"
        f"  loop lag max {result['loop_lag_max_ms']:.1f} ms, p99 {result['loop_lag_p99_ms']:.1f} ms"
    )
    print(f"wrote {write_results('brick', result)}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
