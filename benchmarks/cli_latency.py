"""CLI start-up, `send` wall time and send-to-wake latency, ours vs the reference.

Each side runs against its own hub on a free loopback port: our ``synapse``
against our hub, and (when ``SYNAPSE_REF_BIN`` points at a 0.99.38 venv) the
reference CLI against the reference hub, in the same run. Medians over
``--runs`` (default 15) runs.

    python benchmarks/cli_latency.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import OUR_BIN, REF_BIN, fmt_s, free_port, ref_available, summary, write_results


class Side:
    """One implementation: its bin dir, its hub process and its flag quirks."""

    def __init__(self, label: str, bindir: str, home: Path) -> None:
        self.label = label
        self.bin = Path(bindir, "synapse")
        self.home = home
        self.port = free_port()
        self.uri = f"ws://127.0.0.1:{self.port}"
        self.env = {**os.environ, "HOME": str(home), "SYN_HOME": str(home / "synapse"), "SYNAPSE_NO_UPDATE_CHECK": "1"}
        self.hub: subprocess.Popen[bytes] | None = None

    def start_hub(self) -> None:
        db = self.home / "hub.db"
        args = [str(self.bin), "hub", "--host", "127.0.0.1", "--port", str(self.port), "--db", str(db)]
        if self.label == "ours":
            args += ["--relay-log", ""]
        self.hub = subprocess.Popen(args, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 15
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.label} hub did not start")

    def stop_hub(self) -> None:
        if self.hub is not None:
            self.hub.terminate()
            self.hub.wait(10)

    def send_args(self, target: str, text: str, *, linger_flags: bool = True) -> list[str]:
        args = [str(self.bin), "send", "--uri", self.uri, "--target", target]
        if self.label == "ref" and linger_flags:
            args += ["--wait-seconds", "0"]
        return [*args, text]


async def hold(uri: str, name: str) -> Any:
    """A registered raw connection (a live recipient for receipts)."""
    ws = await connect(uri, compression=None, max_queue=None)
    frame = {
        "sender": name,
        "target": "System",
        "type": "heartbeat",
        "payload": "online",
        "timestamp": time.time(),
        "wake_capability": "passive",
        "protocol_version": 7,
    }
    await ws.send(json.dumps(frame))
    return ws


async def online(uri: str, name: str, timeout: float = 15) -> None:
    """Poll who until ``name`` is online."""
    ws = await connect(uri, compression=None, max_queue=None)
    me = f"bench-who-{os.getpid()}"
    try:
        await ws.send(
            json.dumps(
                {
                    "sender": me,
                    "target": "System",
                    "type": "heartbeat",
                    "payload": "online",
                    "timestamp": time.time(),
                    "protocol_version": 7,
                }
            )
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await ws.send(
                json.dumps(
                    {
                        "sender": me,
                        "target": "System",
                        "type": "who_request",
                        "payload": "who",
                        "timestamp": time.time(),
                    }
                )
            )
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
                if frame.get("type") == "who_snapshot":
                    break
            if name in frame.get("online_agents", []):
                return
            await asyncio.sleep(0.01)
        raise RuntimeError(f"{name} never came online")
    finally:
        await ws.close()


def time_cmd(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    rc = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    return time.perf_counter() - t0, rc


async def measure(side: Side, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["help"] = summary([time_cmd([str(side.bin), "--help"], side.env)[0] for _ in range(runs)])
    holder = await hold(side.uri, "bench-target-rx")
    await online(side.uri, "bench-target-rx")
    samples, codes = [], set()
    for _ in range(runs):
        dt, rc = await asyncio.to_thread(time_cmd, side.send_args("bench-target", "ping"), side.env)
        samples.append(dt)
        codes.add(rc)
    out["send_live"] = {**summary(samples), "exit_codes": sorted(codes)}
    if side.label == "ref":
        dt_default = [
            (await asyncio.to_thread(time_cmd, side.send_args("bench-target", "p", linger_flags=False), side.env))[0]
            for _ in range(max(5, runs // 3))
        ]
        out["send_live_default_flags"] = summary(dt_default)
    await holder.close()
    out["send_to_wake"] = summary([await send_to_wake(side, i) for i in range(runs)])
    return out


async def send_to_wake(side: Side, i: int) -> float:
    name = f"wake{i}"
    waiter = await asyncio.create_subprocess_exec(
        str(side.bin),
        "wait",
        "--uri",
        side.uri,
        "--name",
        name,
        "--timeout",
        "60",
        "--wake-jitter",
        "0",
        env=side.env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await online(side.uri, f"{name}-rx")
    t0 = time.perf_counter()
    sender = await asyncio.create_subprocess_exec(
        *side.send_args(name, "wake up"),
        env=side.env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.wait_for(waiter.wait(), 60)
    dt = time.perf_counter() - t0
    await sender.wait()
    return dt


async def main_async(runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {"runs": runs}
    sides = [("ours", OUR_BIN)] + ([("ref", REF_BIN)] if ref_available() else [])
    for label, bindir in sides:
        with tempfile.TemporaryDirectory() as tmp:
            side = Side(label, bindir, Path(tmp))
            side.start_hub()
            try:
                results[label] = await measure(side, runs)
            finally:
                side.stop_hub()
    if "ref" in results:
        results["ratio"] = {
            k: results["ours"][k]["median"] / results["ref"][k]["median"] for k in ("help", "send_live", "send_to_wake")
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    results = asyncio.run(main_async(max(10, args.runs)))
    path = write_results("cli_latency", results)
    print(f"{'metric':<26}{'ours':>12}{'reference':>12}{'ratio':>8}")
    for key in ("help", "send_live", "send_to_wake"):
        ours = results["ours"][key]["median"]
        ref = results.get("ref", {}).get(key, {}).get("median")
        ratio = f"{ours / ref:.2f}x" if ref else "-"
        print(f"{key:<26}{fmt_s(ours):>12}{(fmt_s(ref) if ref else '-'):>12}{ratio:>8}")
    if "ref" in results:
        print(
            f"{'ref send, default flags':<26}{'':>12}{fmt_s(results['ref']['send_live_default_flags']['median']):>12}"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
