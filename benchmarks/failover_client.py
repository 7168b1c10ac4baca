"""What a hub URI list costs a client, and how fast ``synapse wait`` re-arms after a failover.

Real processes: our ``synapse`` CLI against a real hub on a free loopback
port. Three ``send`` cases, medians over ``--runs``:

* ``one``: ``--uri HUB`` (the baseline);
* ``dead-first``: ``--uri DEAD,HUB`` (the first address refuses);
* ``standby-first``: ``--uri STANDBY,HUB`` where STANDBY is a stand-in that
  closes with 4018 naming HUB (what a PostgreSQL standby answers).

Then ``--failovers`` times: a ``synapse wait --timeout 120`` armed on hub A
of ``A,B`` (both on one SQLite database), A stopped (SIGTERM), B started on
the same database; measured are B's start (to its banner), the waiter's
re-arm after B listens, and the send-to-wake of a message sent through B.
The next round swaps A and B. Nothing is asserted: figures only.

    python benchmarks/failover_client.py [--runs N] [--failovers N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import OUR_BIN, fmt_s, free_port, summary, write_results

SYNAPSE = str(Path(OUR_BIN, "synapse"))


async def run(env: dict[str, str], *args: str) -> float:
    """Wall time of one CLI run (it must exit 0)."""
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        SYNAPSE, *args, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"synapse {' '.join(args)} exited {proc.returncode}: {err.decode()}")
    return time.perf_counter() - start


class HubProc:
    """One hub process on a fixed port and database."""

    def __init__(self, db: Path, env: dict[str, str]) -> None:
        self.db, self.env = db, env
        self.port = free_port()
        self.uri = f"ws://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self._drainer: asyncio.Future[None] | None = None

    async def start(self) -> float:
        """Start and return the seconds to its banner."""
        began = time.perf_counter()
        self.proc = await asyncio.create_subprocess_exec(
            SYNAPSE,
            *("hub", "--host", "127.0.0.1", "--port", str(self.port), "--db", str(self.db), "--relay-log", ""),
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        while b"listening on" not in (line := await self.proc.stderr.readline()):
            if not line:
                raise RuntimeError("hub exited before listening")
        self._drainer = asyncio.ensure_future(self._drain())
        return time.perf_counter() - began

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while await self.proc.stderr.readline():
            pass

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await self.proc.wait()


async def sends(env: dict[str, str], hub: HubProc, runs: int) -> dict[str, Any]:
    async def standby(ws: ServerConnection) -> None:
        await ws.close(4018, f"standby; leader={hub.uri}")

    server = await serve(standby, "127.0.0.1", 0)
    standby_uri = f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}"
    cases = {
        "one": hub.uri,
        "dead-first": f"ws://127.0.0.1:{free_port()},{hub.uri}",
        "standby-first": f"{standby_uri},{hub.uri}",
    }
    out: dict[str, Any] = {}
    try:
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for i in range(runs):  # interleaved, so drift on a shared machine hits every case alike
            for name, uri in cases.items():
                args = ("send", "--uri", uri, "--name", "bench/b", "--target", "bench/a", f"{name} {i}")
                samples[name].append(await run(env, *args))
        out = {name: summary(s) for name, s in samples.items()}
    finally:
        server.close()
        await server.wait_closed()
    return out


async def failovers(env: dict[str, str], home: Path, rounds: int) -> dict[str, Any]:
    db = home / "ha.db"
    a, b = HubProc(db, env), HubProc(db, env)
    uris = f"{a.uri},{b.uri}"
    start_s: list[float] = []
    rearm_s: list[float] = []
    wake_s: list[float] = []
    await a.start()
    live, other = a, b
    try:
        for i in range(rounds):
            waiter = await asyncio.create_subprocess_exec(
                SYNAPSE,
                *("wait", "--uri", uris, "--name", "bench/a", "--timeout", "120"),
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            assert waiter.stderr is not None and waiter.stdout is not None
            while f"at {live.uri}".encode() not in await waiter.stderr.readline():
                pass
            await live.stop()
            start_s.append(await other.start())
            listening = time.perf_counter()
            while f"at {other.uri}".encode() not in (line := await waiter.stderr.readline()):
                if not line:
                    raise RuntimeError("the waiter exited before re-arming")
            rearm_s.append(time.perf_counter() - listening)
            sent = time.perf_counter()
            await run(env, "send", "--uri", other.uri, "--name", "bench/b", "--target", "bench/a", f"after {i}")
            line = await waiter.stdout.readline()
            wake_s.append(time.perf_counter() - sent)
            if line.decode().strip() != f"bench/b: after {i}":
                raise RuntimeError(f"woke with {line!r}, expected round {i}'s message")
            await waiter.wait()
            live, other = other, live
    finally:
        await a.stop()
        await b.stop()
    return {
        "standby_start_to_banner_s": summary(start_s),
        "rearm_after_new_hub_listens_s": summary(rearm_s),
        "send_to_wake_after_failover_s": summary(wake_s),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--failovers", type=int, default=5)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = {**os.environ, "HOME": str(home), "SYN_HOME": str(home / "synapse"), "XDG_CONFIG_HOME": str(home)}
        env.pop("SYNAPSE_URI", None)
        hub = HubProc(home / "hub.db", env)
        await hub.start()
        try:
            send = await sends(env, hub, opts.runs)
        finally:
            await hub.stop()
        fail = await failovers(env, home, opts.failovers)
    print(f"{'synapse send':34s} {'median':>10s} {'p90':>10s}")
    for name, s in send.items():
        print(f"  --uri {name:26s} {fmt_s(s['median']):>10s} {fmt_s(s['p90']):>10s}")
    print(f"wait across {opts.failovers} failovers (SQLite, SIGTERM A, start B on the same db):")
    for name, s in fail.items():
        print(f"  {name:32s} {fmt_s(s['median']):>10s} {fmt_s(s['p90']):>10s}")
    path = write_results("failover_client", {"runs": opts.runs, "send": send, "failovers": fail})
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
