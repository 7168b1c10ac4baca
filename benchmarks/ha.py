"""High availability on PostgreSQL: failover time, fencing, and durable claim grants/s (real processes).

1. Failover: two ``synapse hub`` processes on one PostgreSQL database; 16
   clients storm the leader with directed chats (receipt requested) and
   claims. The leader is SIGKILLed; the time until the standby answers a
   ``who`` (register, ``who_request``, ``who_snapshot``) is measured. The
   killed hub restarts as the new standby and the next round kills the
   other one. After all rounds every acknowledged chat and claim must be in
   the log exactly once.
2. Pause: SIGSTOP the leader for ``--pause`` seconds; the standby takes over
   when the lease ends; after SIGCONT the old leader must exit without
   having appended anything (chats sent to it while paused are absent).
3. Durable claim grants/s, 16 clients each claiming a new path and waiting
   for ``claim_granted`` (sent only after the commit), PostgreSQL (same
   host, ``fsync=on``) against SQLite (``synchronous=FULL``).

    python benchmarks/ha.py [--rounds 20] [--pause 10] [--seconds 5] [--runs 3] [--quick] [--only grants]

Writes ``benchmarks/results/ha.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchlib import OUR_BIN, RESULTS, free_port, summary, wait_for_hub, write_results
from tests.pgcluster import Cluster, find_bindir

SYNAPSE = str(Path(OUR_BIN, "synapse"))
CLIENTS = 16


class Hub:
    """One ``synapse hub`` process; its stderr is collected so takeovers can be seen."""

    def __init__(self, db: str, *extra: str) -> None:
        self.db, self.extra = db, extra
        self.port = free_port()
        self.uri = f"ws://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.log: list[str] = []
        self._drainer: asyncio.Future[None] | None = None

    async def start(self) -> None:
        self.log = []
        self.proc = await asyncio.create_subprocess_exec(
            SYNAPSE,
            "hub",
            "--port",
            str(self.port),
            "--db",
            self.db,
            "--relay-log",
            "",
            *self.extra,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        while "listening on" not in (line := (await self.proc.stderr.readline()).decode()):
            self.log.append(line)
            if not line:
                raise RuntimeError(f"hub exited: {''.join(self.log)[-2000:]}")
        self.log.append(line)
        self._drainer = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.log.append(line.decode())

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)

    async def kill(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            await self.proc.wait()


def frame(sender: str, ftype: str, target: str = "System", payload: str = "", **extra: Any) -> str:
    """One client frame as JSON (every field the hub requires)."""
    body = {"sender": sender, "target": target, "type": ftype, "payload": payload, "timestamp": time.time()}
    return json.dumps({**body, **extra})


async def open_ws(uri: str) -> Any:
    from websockets.asyncio.client import connect

    return await connect(uri, compression=None, max_queue=None, close_timeout=0.5, open_timeout=2)


async def expect(ws: Any, ftype: str, **match: Any) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame.get("type") == ftype and all(frame.get(k) == v for k, v in match.items()):
            return frame


async def serves_who(uri: str) -> None:
    """Return once ``uri`` registers a client and answers ``who`` (retrying refusals and 4018 closes)."""
    while True:
        try:
            ws = await open_ws(uri)
            try:
                await ws.send(frame("bench/who", "heartbeat", payload="online"))
                await expect(ws, "welcome")
                await ws.send(frame("bench/who", "who_request"))
                await expect(ws, "who_snapshot")
                return
            finally:
                await ws.close()
        except Exception:  # refused, or closed 4018 by a standby: try again
            await asyncio.sleep(0.01)


async def storm(uri: str, acked: dict[str, Any], prefix: str) -> None:
    """16 clients: a directed chat then a claim, each waiting for its acknowledgement, until the hub goes."""

    async def one(i: int) -> None:
        try:
            ws = await open_ws(uri)
            name = f"storm/{prefix}-{i}"
            await ws.send(frame(name, "heartbeat", payload="online"))
            n = 0
            while True:
                tag = f"{prefix}-{i}-{n}"
                await ws.send(frame(name, "chat", f"box/{i % 4}", tag, client_msg_id=tag, receipt_requested=True))
                acked["chat"][tag] = (await expect(ws, "delivery_receipt", client_msg_id=tag))["message_seq"]
                paths = [f"{prefix}/{i}/{n}"]
                await ws.send(frame(name, "claim", task_id=f"K{tag}", paths=paths, worktree="/w"))
                acked["claim"][f"K{tag}"] = (await expect(ws, "claim_granted", task_id=f"K{tag}"))["epoch"]
                n += 1
        except Exception:  # the leader was killed under us: that is the point
            pass

    await asyncio.gather(*(one(i) for i in range(CLIENTS)))


async def stored(url: str) -> list[tuple[int, str, dict[str, Any]]]:
    import asyncpg

    con = await asyncpg.connect(url)
    try:
        rows = await con.fetch("SELECT seq, kind, data FROM events ORDER BY seq")
    finally:
        await con.close()
    return [(int(r["seq"]), str(r["kind"]), json.loads(r["data"])) for r in rows]


async def failovers(cluster: Cluster, rounds: int) -> dict[str, Any]:
    url = cluster.create_db()
    a, b = Hub(url), Hub(url)
    await a.start()
    await b.start()
    leader, standby = a, b
    acked: dict[str, Any] = {"chat": {}, "claim": {}}
    times: list[float] = []
    try:
        for r in range(rounds):
            task = asyncio.ensure_future(storm(leader.uri, acked, f"r{r}"))
            await asyncio.sleep(0.5)
            t0 = time.perf_counter()
            leader.signal(signal.SIGKILL)
            try:
                await asyncio.wait_for(serves_who(standby.uri), 60)
            except TimeoutError:
                raise RuntimeError(f"no takeover; standby log: {''.join(standby.log)[-3000:]}") from None
            times.append(time.perf_counter() - t0)
            await task
            assert leader.proc is not None
            await leader.proc.wait()
            await leader.start()  # back as the standby
            leader, standby = standby, leader
            print(f"  failover {r + 1}: {times[-1] * 1000:.0f} ms", flush=True)
    finally:
        await a.kill()
        await b.kill()
    rows = await stored(url)
    chats: dict[str, list[int]] = {}
    for seq, kind, d in rows:
        if kind == "chat":
            chats.setdefault(str(d["frame"].get("client_msg_id")), []).append(seq)
    claims: dict[str, list[int]] = {}
    for _, kind, d in rows:
        if kind == "claim":
            claims.setdefault(str(d["claim"]["task_id"]), []).append(int(d["claim"]["epoch"]))
    lost = [t for t, s in acked["chat"].items() if chats.get(t) != [s]]
    lost += [t for t, e in acked["claim"].items() if claims.get(t) != [e]]
    duplicated = sum(len(v) - 1 for v in (*chats.values(), *claims.values()))
    return {
        "rounds": rounds,
        "clients": CLIENTS,
        "to_who_seconds": summary(times),
        "acked_chats": len(acked["chat"]),
        "acked_claims": len(acked["claim"]),
        "lost": len(lost),
        "duplicated": duplicated,
    }


async def pause(cluster: Cluster, seconds: float) -> dict[str, Any]:
    url = cluster.create_db()
    old, new = Hub(url), Hub(url)
    await old.start()
    await new.start()
    try:
        ws = await open_ws(old.uri)
        await ws.send(frame("p/old", "heartbeat", payload="online"))
        await expect(ws, "welcome")
        t0 = time.perf_counter()
        old.signal(signal.SIGSTOP)
        for i in range(10):
            await ws.send(frame("p/old", "chat", "p/x", f"late{i}", client_msg_id=f"l{i}"))
        await serves_who(new.uri)
        takeover = time.perf_counter() - t0
        await asyncio.sleep(max(0.0, seconds - takeover))
        old.signal(signal.SIGCONT)
        assert old.proc is not None
        rc = await asyncio.wait_for(old.proc.wait(), 30)
        with_close = None
        try:
            await asyncio.wait_for(ws.wait_closed(), 5)
            with_close = (ws.close_code, ws.close_reason)
        except TimeoutError:
            pass
    finally:
        await old.kill()
        await new.kill()
    rows = await stored(url)
    late = [d for _, k, d in rows if k == "chat" and str(d["frame"].get("payload", "")).startswith("late")]
    return {
        "paused_seconds": seconds,
        "takeover_seconds": takeover,
        "old_leader_exit": rc,
        "old_leader_stepped_down": any("stepped down" in line for line in old.log),
        "late_writes_appended": len(late),
        "client_close": list(with_close) if with_close else None,
    }


async def grants(db: str, seconds: float) -> float:
    hub = Hub(db, "--max-claims-per-agent", "0", "--log-level", "WARNING")
    await hub.start()
    await wait_for_hub(hub.uri, 30)
    counts = [0] * CLIENTS

    async def one(i: int, until: float) -> None:
        ws = await open_ws(hub.uri)
        name = f"g/{i}"
        await ws.send(frame(name, "heartbeat", payload="online"))
        await expect(ws, "welcome")
        n = 0
        while time.monotonic() < until:
            await ws.send(frame(name, "claim", task_id=f"G{i}-{n}", paths=[f"g{i}/{n}"], worktree="/w"))
            await expect(ws, "claim_granted", task_id=f"G{i}-{n}")
            n += 1
        counts[i] = n
        await ws.close()

    try:
        t0 = time.monotonic()
        await asyncio.gather(*(one(i, t0 + seconds) for i in range(CLIENTS)))
        elapsed = time.monotonic() - t0
    finally:
        await hub.kill()
    return sum(counts) / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--pause", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", help="comma-separated: failover,pause,grants (keeps the others of ha.json)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.pause, args.seconds, args.runs = 3, 6.0, 2.0, 1
    bindir = find_bindir()
    if bindir is None:
        sys.exit("benchmarks/ha.py: PostgreSQL server binaries not found (apt-get install postgresql)")
    only = set(args.only.split(",")) if args.only else {"failover", "pause", "grants"}
    previous = json.loads((RESULTS / "ha.json").read_text()) if args.only and (RESULTS / "ha.json").exists() else {}
    results: dict[str, Any] = {k: previous[k] for k in ("failover", "pause", "grants") if k in previous}
    cluster = Cluster(bindir, fsync=True).start()
    try:
        if "failover" in only:
            print(f"== {args.rounds} failovers under a {CLIENTS}-client storm", flush=True)
            results["failover"] = fail = await failovers(cluster, args.rounds)
            print(f"   to who: {fail['to_who_seconds']}; lost {fail['lost']}, duplicated {fail['duplicated']}")
        if "pause" in only:
            print(f"== SIGSTOP the leader {args.pause:g} s", flush=True)
            results["pause"] = await pause(cluster, args.pause)
            print(f"   {results['pause']}")
        if "grants" in only:
            results["grants"] = await grant_runs(cluster, args.runs, args.seconds)
        version = (bindir / "postgres").resolve().parent.parent.name
        load = list(os.getloadavg())
        write_results("ha", {"postgresql": version, **results, "quick": args.quick, "load": load})
    finally:
        cluster.stop()


async def grant_runs(cluster: Cluster, runs: int, seconds: float) -> dict[str, Any]:
    """Alternate PostgreSQL and SQLite runs so both see the same background load."""
    pg_rates, lite_rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            pg_rates.append(await grants(cluster.create_db(), seconds))
            lite_rates.append(await grants(str(Path(tmp, f"g{run}.db")), seconds))
            print(f"== grants/s run {run + 1}: PostgreSQL {pg_rates[-1]:,.0f}, SQLite {lite_rates[-1]:,.0f}")
    return {
        "clients": CLIENTS,
        "seconds": seconds,
        "runs": runs,
        "postgresql": summary(pg_rates),
        "sqlite": summary(lite_rates),
        "load_at_end": list(os.getloadavg()),
    }


if __name__ == "__main__":
    asyncio.run(main())
