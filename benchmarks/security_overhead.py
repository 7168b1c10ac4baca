"""What the hub's authorization checks cost: claims/s and directed-chat latency, one hub against another.

The hub runs as a subprocess of any interpreter (``--python``, e.g. the venv
of an older source tree), so the same script measures the hub before and
after a change; the client side is always this script speaking the wire
protocol through this tree's ``WebSocketStream``, identical for both runs.
Every hub holds idle registered bystander connections (10 by default, in
their own process, reading what they are sent), so a hub that fans directed
chats out to every socket pays for it. Compare like with like: a hub that
keeps directed chats private by default against an older one run with
``--hub-arg=--private-directed`` (or the newer one with its fan-out flag
against the older one's default).

1. Claims/s: N = 1, 4, 16 concurrent clients, each claiming then releasing
   its own task ids and paths (never overlapping), one request at a time;
   acknowledged claim+release pairs per second over a fixed number of pairs.
2. Directed latency: one sender, one receiver (``bench/s1`` -> ``bench/r1``),
   1,000 sequential chats; send to receive on one clock, p50/p95/p99.
3. Directed msgs/s: 8 senders each streaming to their own receiver with at
   most ``--window`` chats in flight; messages per second until the last one
   is received.

Each is measured with the journal in a temporary SQLite database (fsync'd
commits: what users get, but fsync jitter dominates the noise) and with
``--db :memory:`` (the hub's CPU alone, where a check's cost shows).
Each repetition starts its own hub; figures are medians over repetitions,
with min, max, spread ((max - min) / median) and sd/median to show the noise.

    python benchmarks/security_overhead.py --python /tmp/synapse-before/.venv/bin/python --label before
    python benchmarks/security_overhead.py --label after
    python benchmarks/security_overhead.py --compare before after

On a shared machine the load drifts between two such runs; ``--hub`` runs
several hubs back to back inside every repetition (who goes first
alternates) and reports per-repetition ratios against the first, which
cancels most of that drift:

    python benchmarks/security_overhead.py \
        --hub before=/tmp/synapse-before/.venv/bin/python,--private-directed --hub after=.venv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import RESULTS, free_port, summary, wait_for_hub, write_results
from fanout import stop_hub

from synapse_channel.client.wire import WebSocketStream

CLAIM_CLIENTS = (1, 4, 16)
STREAM_PAIRS = 8
WORKTREE = "/bench/repo"
REPLY_TIMEOUT = 15.0
Frame = dict[str, Any]


# -- the hub under test ------------------------------------------------------


def start_hub(python: str, tmp: Path, db: str, hub_args: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    """``<python> -m synapse_channel hub`` on a free loopback port, its home (and feed) in ``tmp``."""
    port = free_port()
    args = [
        python,
        "-m",
        "synapse_channel",
        "hub",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--db",
        db,
        "--relay-log",
        str(tmp / "feed.ndjson"),
        "--log-level",
        "WARNING",
        *hub_args,
    ]
    env = {**os.environ, "HOME": str(tmp), "SYN_HOME": str(tmp), "SYNAPSE_NO_UPDATE_CHECK": "1"}
    env.pop("SYNAPSE_TOKEN", None)
    with open(tmp / "hub.log", "wb") as log:
        proc = subprocess.Popen(args, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=log)
    uri = f"ws://127.0.0.1:{port}"
    try:
        asyncio.run(wait_for_hub(uri, 60, proc=proc, log=tmp / "hub.log"))
    except BaseException:
        stop_hub(proc)
        raise
    return proc, uri


def hub_source(python: str) -> dict[str, Any]:
    """Where the hub's package comes from, and its git commit when it lives in a checkout."""
    out = subprocess.run(
        [python, "-c", "import os, synapse_channel as s; print(os.path.dirname(s.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    info: dict[str, Any] = {"python": python, "package": out}
    git = subprocess.run(["git", "-C", out, "rev-parse", "HEAD"], capture_output=True, text=True)
    if git.returncode == 0:
        dirty = subprocess.run(["git", "-C", out, "status", "--porcelain", "--", "."], capture_output=True, text=True)
        info["commit"] = git.stdout.strip()
        info["dirty"] = bool(dirty.stdout.strip())
    return info


# -- wire helpers ------------------------------------------------------------


def frame(name: str, ftype: str, target: str = "System", payload: Any = "", **extra: Any) -> str:
    return json.dumps(
        {"sender": name, "target": target, "type": ftype, "payload": payload, "timestamp": time.time(), **extra}
    )


async def expect(ws: WebSocketStream, name: str, types: tuple[str, ...], **fields: Any) -> Frame:
    """The first frame of one of ``types`` carrying ``fields``; an ``error`` to us or a silent hub is fatal.

    Task ids, operation ids and chat payloads are unique, so equality on them
    picks our reply out of other clients' broadcasts and a fan-out hub's chats.
    """
    while True:
        f = json.loads(await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT))
        if f.get("type") == "error" and f.get("target") in (name, "self"):
            raise RuntimeError(f"{name}: hub error {f.get('code')}: {f.get('payload')}")
        if f.get("type") in types and all(f.get(k) == v for k, v in fields.items()):
            return f  # type: ignore[no-any-return]


async def connect(uri: str, name: str) -> WebSocketStream:
    """Open a socket, register ``name`` with a plain heartbeat, and wait until the hub has bound it.

    A ``who_request`` right behind the registration is answered only after
    the registration was processed, so its snapshot is the barrier.
    """
    ws = await WebSocketStream.open(uri)
    await ws.send(frame(name, "heartbeat", payload="online"))
    await ws.send(frame(name, "who_request"))
    await expect(ws, name, ("who_snapshot",))
    return ws


async def close_all(sockets: list[WebSocketStream]) -> None:
    await asyncio.gather(*(ws.close(timeout=1.0) for ws in sockets))


# -- bystanders --------------------------------------------------------------


def bystanders_main(uri: str, count: int, ready: Any, stop: Any) -> None:
    """A process holding ``count`` idle registered connections that read (and drop) what they get."""
    asyncio.run(_bystanders(uri, count, ready, stop))


async def _bystanders(uri: str, count: int, ready: Any, stop: Any) -> None:
    sockets = [await connect(uri, f"bench/idle{i}") for i in range(count)]

    async def drain(ws: WebSocketStream) -> None:
        with contextlib.suppress(Exception):
            while True:
                await ws.recv()

    tasks = [asyncio.ensure_future(drain(ws)) for ws in sockets]
    ready.put(count)
    await asyncio.get_running_loop().run_in_executor(None, stop.wait)
    for task in tasks:
        task.cancel()
    await close_all(sockets)


# -- the measurements --------------------------------------------------------


async def claim_release(ws: WebSocketStream, name: str, tag: str, pairs: int) -> None:
    """Claim then release ``pairs`` tasks of our own, one request at a time; any refusal is fatal."""
    for k in range(pairs):
        task = f"{tag}-{k}"
        await ws.send(
            frame(name, "claim", payload=task, task_id=task, note="", worktree=WORKTREE, paths=[f"{tag}/f{k}.py"])
        )
        got = await expect(ws, name, ("claim_granted", "claim_denied"), task_id=task)
        if got["type"] != "claim_granted":
            raise RuntimeError(f"{name}: claim of {task} refused: {got.get('payload')} ({got.get('reason_code')})")
        op = f"{tag}-r{k}"
        await ws.send(frame(name, "release", payload=task, task_id=task, idem_key=op, epoch=got["epoch"]))
        got = await expect(ws, name, ("release_granted", "release_denied"), release_operation_id=op)
        if got["type"] != "release_granted":
            raise RuntimeError(f"{name}: release of {task} refused: {got.get('payload')}")


async def claims_rate(uri: str, clients: int, total_pairs: int, warmup: int) -> float:
    """Acknowledged claim+release pairs per second with ``clients`` concurrent claimants."""
    names = [f"bench/c{i}" for i in range(clients)]
    sockets = [await connect(uri, n) for n in names]
    each = max(1, total_pairs // clients)

    async def everyone(phase: str, pairs: int) -> None:
        await asyncio.gather(
            *(claim_release(sockets[i], names[i], f"{phase}{clients}-{i}", pairs) for i in range(clients))
        )

    try:
        await everyone("w", warmup)
        t0 = time.perf_counter()
        await everyone("t", each)
        return each * clients / (time.perf_counter() - t0)
    finally:
        await close_all(sockets)


async def directed_latency(uri: str, count: int, warmup: int) -> list[float]:
    """Send-to-receive seconds of ``count`` sequential directed chats."""
    rx = await connect(uri, "bench/r1")
    tx = await connect(uri, "bench/s1")
    latencies: list[float] = []
    try:
        for i in range(warmup + count):
            text = f"lat {i}"
            t0 = time.perf_counter()
            await tx.send(frame("bench/s1", "chat", "bench/r1", text))
            await expect(rx, "bench/r1", ("chat",), sender="bench/s1", target="bench/r1", payload=text)
            if i >= warmup:
                latencies.append(time.perf_counter() - t0)
    finally:
        await close_all([tx, rx])
    return latencies


async def stream(tx: WebSocketStream, sender: str, rx: WebSocketStream, receiver: str, count: int, window: int) -> None:
    """``count`` chats sender -> receiver with at most ``window`` sent but not yet received."""
    room = asyncio.Semaphore(window)

    async def produce() -> None:
        for i in range(count):
            await room.acquire()
            await tx.send(frame(sender, "chat", receiver, f"tp {i}"))

    async def consume() -> None:
        for _ in range(count):
            await expect(rx, receiver, ("chat",), sender=sender, target=receiver)
            room.release()

    await asyncio.gather(produce(), consume())


async def directed_rate(uri: str, per_pair: int, window: int, warmup: int) -> float:
    """Directed chats per second, ``STREAM_PAIRS`` senders each to their own receiver."""
    rnames = [f"bench/r{i + 1}" for i in range(STREAM_PAIRS)]
    snames = [f"bench/s{i + 1}" for i in range(STREAM_PAIRS)]
    rxs = [await connect(uri, n) for n in rnames]
    txs = [await connect(uri, n) for n in snames]
    pairs = list(zip(txs, snames, rxs, rnames, strict=True))
    try:
        await asyncio.gather(*(stream(t, s, r, n, warmup, window) for t, s, r, n in pairs))
        t0 = time.perf_counter()
        await asyncio.gather(*(stream(t, s, r, n, per_pair, window) for t, s, r, n in pairs))
        return per_pair * STREAM_PAIRS / (time.perf_counter() - t0)
    finally:
        await close_all(txs + rxs)


def percentile(sorted_samples: list[float], q: float) -> float:
    return sorted_samples[min(len(sorted_samples) - 1, round(q * (len(sorted_samples) - 1)))]


async def one_run(uri: str, args: argparse.Namespace) -> dict[str, float]:
    out: dict[str, float] = {}
    for clients in CLAIM_CLIENTS:
        out[f"claims_per_s/{clients}"] = await claims_rate(uri, clients, args.claim_pairs, warmup=3)
    lat = sorted(await directed_latency(uri, args.latency_count, warmup=50))
    for q in (50, 95, 99):
        out[f"latency_ms/p{q}"] = percentile(lat, q / 100) * 1000
    out["directed_per_s/8x8"] = await directed_rate(uri, args.stream_count, args.window, warmup=20)
    return out


@dataclass(frozen=True)
class HubSpec:
    """One hub under test: a label for its results, the interpreter that runs it, extra hub flags."""

    label: str
    python: str
    args: list[str]


def parse_hub(text: str) -> HubSpec:
    """``LABEL=PYTHON[,FLAG...]``, e.g. ``before=/tmp/synapse-before/.venv/bin/python,--private-directed``."""
    label, sep, rest = text.partition("=")
    if not sep or not rest:
        raise argparse.ArgumentTypeError(f"--hub {text!r}: expected LABEL=PYTHON[,FLAG...]")
    python, *flags = rest.split(",")
    return HubSpec(label, python, flags)


def run_once(args: argparse.Namespace, hub: HubSpec, journal: str) -> dict[str, float]:
    """One repetition: a fresh hub and bystanders, every measurement, then tear down."""
    with tempfile.TemporaryDirectory(prefix="synapse-secbench-") as tmp:
        db = str(Path(tmp, "hub.db")) if journal == "disk" else ":memory:"
        proc, uri = start_hub(hub.python, Path(tmp), db, hub.args)
        ctx = mp.get_context("spawn")
        ready, stop = ctx.Queue(), ctx.Event()
        byst = ctx.Process(target=bystanders_main, args=(uri, args.bystanders, ready, stop), daemon=True)
        try:
            byst.start()
            ready.get(timeout=60)
            return {f"{journal}/{k}": v for k, v in asyncio.run(one_run(uri, args)).items()}
        finally:
            stop.set()
            byst.join(10)
            if byst.is_alive():
                byst.kill()
            stop_hub(proc)


# -- output ------------------------------------------------------------------

JOURNALS = {
    "disk": "journal on disk (temp SQLite, fsync'd commits): what a user sees",
    "memory": "no journal (--db :memory:): the hub's CPU alone, where a check's cost shows",
}
ROWS = [
    ("claims_per_s/1", "claim+release pairs/s, 1 client", "{:,.0f}"),
    ("claims_per_s/4", "claim+release pairs/s, 4 clients", "{:,.0f}"),
    ("claims_per_s/16", "claim+release pairs/s, 16 clients", "{:,.0f}"),
    ("latency_ms/p50", "directed latency p50 (ms)", "{:.2f}"),
    ("latency_ms/p95", "directed latency p95 (ms)", "{:.2f}"),
    ("latency_ms/p99", "directed latency p99 (ms)", "{:.2f}"),
    ("directed_per_s/8x8", "directed msgs/s, 8 -> 8", "{:,.0f}"),
]


def spread_pct(s: dict[str, Any]) -> float:
    """(max - min) / median, in percent: how far apart the repetitions landed."""
    return 100 * (s["max"] - s["min"]) / s["median"] if s["median"] else 0.0


def cv_pct(s: dict[str, Any]) -> float:
    """Standard deviation / median, in percent."""
    return 100 * s["stdev"] / s["median"] if s["median"] else 0.0


def print_table(results: dict[str, Any]) -> None:
    src = results["hub"]
    commit = f" @ {src['commit'][:9]}{' (dirty)' if src.get('dirty') else ''}" if "commit" in src else ""
    print(f"\nsecurity_overhead [{results['label']}]  hub: {src['package']}{commit}")
    p = results["params"]
    print(
        f"hub args: {' '.join(results['hub_args']) or '(defaults)'}; {p['bystanders']} idle bystanders; "
        f"{p['claim_pairs']} pairs per client count; {p['latency_count']} sequential chats; "
        f"{STREAM_PAIRS}x{p['stream_count']} streamed, window {p['window']}; median of {p['runs']} runs"
    )
    for journal, title in JOURNALS.items():
        if f"{journal}/{ROWS[0][0]}" not in results["metrics"]:
            continue
        print(f"\n{title}")
        print(f"{'measurement':<36}{'median':>10}{'min':>10}{'max':>10}{'spread':>9}{'sd/med':>8}")
        for key, label, fmt in ROWS:
            s = results["metrics"][f"{journal}/{key}"]
            print(
                f"{label:<36}{fmt.format(s['median']):>10}{fmt.format(s['min']):>10}{fmt.format(s['max']):>10}"
                f"{spread_pct(s):>8.0f}%{cv_pct(s):>7.0f}%"
            )


def compare(before: str, after: str) -> None:
    """Two saved runs (measured at different times): medians, the ratio after/before, each side's spread."""
    a = json.loads((RESULTS / f"security_overhead-{before}.json").read_text())
    b = json.loads((RESULTS / f"security_overhead-{after}.json").read_text())
    for journal, title in JOURNALS.items():
        if f"{journal}/{ROWS[0][0]}" not in a["metrics"] or f"{journal}/{ROWS[0][0]}" not in b["metrics"]:
            continue
        print(f"\n{title}")
        w = max(12, len(before) + 2, len(after) + 2)
        print(f"{'measurement':<36}{before:>{w}}{after:>{w}}{'after/before':>14}{'spreads':>16}")
        for key, label, fmt in ROWS:
            x, y = a["metrics"][f"{journal}/{key}"], b["metrics"][f"{journal}/{key}"]
            ratio = y["median"] / x["median"] if x["median"] else float("nan")
            spreads = f"{spread_pct(x):.0f}% / {spread_pct(y):.0f}%"
            print(
                f"{label:<36}{fmt.format(x['median']):>{w}}{fmt.format(y['median']):>{w}}{ratio:>13.2f}x{spreads:>16}"
            )


def paired(base: str, other: str, runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Per-repetition ratios other/base of hubs measured back to back: background load hits both alike."""
    ratios = {
        key: summary([o[key] / b[key] for b, o in zip(runs[base], runs[other], strict=True)]) for key in runs[base][0]
    }
    for journal, title in JOURNALS.items():
        if f"{journal}/{ROWS[0][0]}" not in ratios:
            continue
        print(f"\n{title}: {other} / {base}, paired per repetition")
        w = max(12, len(base) + 2, len(other) + 2)
        print(f"{'measurement':<36}{base:>{w}}{other:>{w}}{'ratio':>9}{'ratio min-max':>17}")
        for key, label, fmt in ROWS:
            k = f"{journal}/{key}"
            x = statistics.median(r[k] for r in runs[base])
            y = statistics.median(r[k] for r in runs[other])
            r = ratios[k]
            span = f"{r['min']:.2f}-{r['max']:.2f}"
            print(f"{label:<36}{fmt.format(x):>{w}}{fmt.format(y):>{w}}{r['median']:>8.2f}x{span:>17}")
    return {"baseline": base, "ratio": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter whose synapse_channel runs the hub")
    parser.add_argument("--label", default="current", help="names results/security_overhead-<label>.json")
    parser.add_argument(
        "--hub-arg", action="append", default=[], help="extra hub flag, repeatable: --hub-arg=--private-directed"
    )
    parser.add_argument(
        "--hub",
        action="append",
        type=parse_hub,
        default=[],
        metavar="LABEL=PYTHON[,FLAG...]",
        help="instead of --python/--label/--hub-arg: several hubs, run back to back in every repetition "
        "and compared pairwise against the first (repeatable)",
    )
    parser.add_argument("--runs", type=int, default=5, help="repetitions, each with a fresh hub (default 5)")
    parser.add_argument("--bystanders", type=int, default=10, help="idle registered connections (default 10)")
    parser.add_argument("--claim-pairs", type=int, default=600, help="timed claim+release pairs per client count")
    parser.add_argument("--latency-count", type=int, default=1000, help="sequential directed chats timed")
    parser.add_argument("--stream-count", type=int, default=400, help="chats per sender in the 8 -> 8 stream")
    parser.add_argument("--window", type=int, default=8, help="chats in flight per sender in the stream")
    parser.add_argument(
        "--journal", choices=["disk", "memory", "both"], default="both", help="hub journal: temp SQLite, none, or both"
    )
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two saved labels and exit")
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare)
        return
    hubs: list[HubSpec] = args.hub or [HubSpec(args.label, args.python, args.hub_arg)]
    labels = [h.label for h in hubs]
    if len(set(labels)) != len(labels) or not all(re.fullmatch(r"[A-Za-z0-9._-]+", x) for x in labels):
        parser.error("labels must be distinct: letters, digits, '.', '_' and '-' only")
    sources = {h.label: hub_source(h.python) for h in hubs}
    journals = ["disk", "memory"] if args.journal == "both" else [args.journal]
    runs: dict[str, list[dict[str, float]]] = {h.label: [] for h in hubs}
    t0 = time.monotonic()
    load0 = list(os.getloadavg())  # the machine is shared: other work here shows up as noise
    for i in range(args.runs):
        order = hubs[i % len(hubs) :] + hubs[: i % len(hubs)]  # who goes first alternates
        for h in hubs:
            runs[h.label].append({})
        for journal in journals:
            for h in order:
                got = run_once(args, h, journal)
                runs[h.label][i].update(got)
                line = "  ".join(f"{k.split('/', 1)[1]} {v:,.1f}" for k, v in got.items())
                print(f"run {i + 1}/{args.runs} {h.label} {journal}: {line}", flush=True)
    elapsed = round(time.monotonic() - t0, 1)
    load1 = list(os.getloadavg())
    params = {
        "runs": args.runs,
        "bystanders": args.bystanders,
        "claim_pairs": args.claim_pairs,
        "latency_count": args.latency_count,
        "stream_count": args.stream_count,
        "window": args.window,
        "journals": journals,
    }
    results: dict[str, dict[str, Any]] = {}
    for h in hubs:
        results[h.label] = {
            "label": h.label,
            "hub": sources[h.label],
            "hub_args": h.args,
            "params": params,
            "metrics": {key: summary([r[key] for r in runs[h.label]]) for key in runs[h.label][0]},
            "runs": runs[h.label],
            "interleaved_with": [x for x in labels if x != h.label],
            "elapsed_s": elapsed,
            "loadavg_start_end": [load0, load1],
        }
        print_table(results[h.label])
    for h in hubs[1:]:
        results[h.label]["paired"] = paired(hubs[0].label, h.label, runs)
    print(f"\n{elapsed:.0f}s; load average {load0[0]:.2f} at start, {load1[0]:.2f} at end (1 min)")
    for h in hubs:
        print(f"wrote {write_results(f'security_overhead-{h.label}', results[h.label])}")


if __name__ == "__main__":
    main()
