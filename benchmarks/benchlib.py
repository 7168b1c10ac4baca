"""Shared helpers for the benchmark scripts: host context, statistics, JSON output.

Benchmarks print a table and write JSON under ``benchmarks/results/``; they
never assert timings (the machines are shared and noisy).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
REF_BIN = os.environ.get("SYNAPSE_REF_BIN", "")
OUR_BIN = str(Path(sys.executable).parent)


async def wait_for_hub(
    uri: str,
    timeout: float,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    poll: float = 0.01,
) -> None:
    """Poll until a WebSocket upgrade succeeds; with ``proc``, fail at once (with ``log``) if the hub exits."""
    import asyncio

    from synapse_channel.client.wire import WebSocketStream

    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log is not None else ""
            raise RuntimeError(f"hub exited with {proc.returncode}: {tail}")
        try:
            ws = await WebSocketStream.open(uri)
            await ws.close(timeout=0.2)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(poll)


def free_port() -> int:
    """A loopback port that was free a moment ago (the hub under test binds it right away)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ref_hub_args(port: int, db: Path, *extra: str) -> list[str]:
    """The reference hub's command line with every throttle off, so only the hub itself is measured.

    Rate limits, the per-host cap and the durable-ingress quota would otherwise
    cap the reference below what it can do. Both benchmarks that start it use this.
    """
    return [
        str(Path(REF_BIN, "synapse")),
        "hub",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--db",
        str(db),
        "--rate",
        "0",
        "--host-rate",
        "0",
        "--no-durable-ingress-quota",
        "--max-connections-per-host",
        "0",
        "--log-level",
        "WARNING",
        *extra,
    ]


def ref_available() -> bool:
    """True when the reference 0.99.38 client is installed (``make refvenv``)."""
    return bool(REF_BIN) and Path(REF_BIN, "synapse").exists()


def host_context() -> dict[str, Any]:
    """CPU, cores, Python and disk: what a reader needs to compare figures."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    disk = shutil.disk_usage(RESULTS)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "disk_free_gb": round(disk.free / 2**30, 1),
        "fs": _fs_type(RESULTS),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _fs_type(path: Path) -> str:
    try:
        out = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True, check=True).stdout
        return out.splitlines()[1].split()[1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


def summary(samples: list[float]) -> dict[str, Any]:
    """Median and spread of a sample list (seconds or any unit)."""
    s = sorted(samples)
    return {
        "n": len(s),
        "median": statistics.median(s),
        "min": s[0],
        "max": s[-1],
        "p90": s[min(len(s) - 1, round(0.9 * (len(s) - 1)))],
        "p99": s[min(len(s) - 1, round(0.99 * (len(s) - 1)))],
        "stdev": statistics.pstdev(s) if len(s) > 1 else 0.0,
    }


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` with the host context attached."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "host": host_context(), **data}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def fmt_s(value: float) -> str:
    """Seconds as milliseconds text."""
    return f"{value * 1000:.1f} ms"
