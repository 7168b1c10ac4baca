"""What freezing hook arguments costs: per frame, and for a hub whose plugin watches every chat.

Hook arguments are deep read-only copies (``synapse_channel.events.freeze``),
made once per event and only when some plugin implements the hook.

1. ``freeze`` of a relayed chat frame as the hub builds it, in microseconds
   (median of repetitions of 10,000 calls).
2. Directed chats/s through a real in-process hub (``--db :memory:``, one
   sender streaming to one live receiver with a bounded window), without any
   plugin and with one that implements ``message_received`` and
   ``message_delivered`` (a no-op reading ``message["seq"]``), and with that
   plugin but freezing switched off (the dispatcher handing over the live
   frame, as before hooks were frozen): the last two differ by the cost of
   freezing alone. Variants rotate per repetition so drift on a shared
   machine hits all of them.

    python benchmarks/hook_events.py [--quick]

Prints a table and writes ``benchmarks/results/hook_events.json``; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from benchlib import summary, write_results

FRAME: dict[str, Any] = {
    "type": "chat",
    "sender": "shop/api",
    "target": "shop/web",
    "payload": "API-12 is mine until lunch; ping me before touching src/api/routes.py " * 2,
    "timestamp": 1796400000.123,
    "seq": 123456,
    "msg_id": 123456,
    "hub_id": "hub-0123456789abcdef",
    "client_msg_id": "c-0123456789abcdef0123456789abcdef",
    "receipt_requested": True,
    "priority": False,
}


class Watcher:
    """A plugin that reads every chat event, as a logger or a metrics exporter would."""

    from synapse_channel.hookspecs import hookimpl

    @hookimpl
    def message_received(self, message: Any) -> None:
        message["seq"]

    @hookimpl
    def message_delivered(self, message: Any) -> None:
        message["seq"]


def freeze_us(reps: int) -> dict[str, Any]:
    from synapse_channel.events import freeze

    runs = [timeit.timeit(lambda: freeze(FRAME), number=10_000) / 10_000 * 1e6 for _ in range(reps)]
    return summary(runs)


async def chats_per_second(variant: str, count: int, window: int = 64) -> float:
    import synapse_channel.dispatch as dispatch
    from synapse_channel.client.wire import WebSocketStream
    from synapse_channel.events import freeze
    from synapse_channel.hub.config import HubConfig
    from synapse_channel.hub.server import Hub
    from synapse_channel.plugins import make_plugin_manager

    dispatch.freeze = (lambda value: value) if variant == "plugin, unfrozen" else freeze  # type: ignore[assignment]
    pm = make_plugin_manager(entrypoints=False, extra=[] if variant == "no plugin" else [Watcher()])
    hub = Hub(HubConfig(host="127.0.0.1", port=0, db=Path(":memory:")), pm=pm)
    await hub.start()
    try:
        import json

        rx = await WebSocketStream.open(hub.uri)
        tx = await WebSocketStream.open(hub.uri)
        for ws, name in ((rx, "bench/r"), (tx, "bench/s")):
            await ws.send(json.dumps({"type": "heartbeat", "sender": name, "target": "all", "payload": "online"}))
            while json.loads(await ws.recv()).get("type") != "welcome":
                pass
        got = 0
        done = asyncio.Event()

        async def receive() -> None:
            nonlocal got
            while got < count:
                frame = json.loads(await rx.recv())
                if frame.get("type") == "chat":
                    got += 1
            done.set()

        reader = asyncio.create_task(receive())
        start = time.perf_counter()
        for i in range(count):
            while i - got >= window:
                await asyncio.sleep(0)
            chat = {"type": "chat", "sender": "bench/s", "target": "bench/r", "payload": f"m{i}", "timestamp": 0}
            await tx.send(json.dumps(chat))
        await asyncio.wait_for(done.wait(), 120)
        elapsed = time.perf_counter() - start
        reader.cancel()
        await rx.close()
        await tx.close()
        return count / elapsed
    finally:
        await hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    reps, count = (3, 2_000) if args.quick else (5, 10_000)
    freeze = freeze_us(reps)
    variants = ["no plugin", "plugin, frozen", "plugin, unfrozen"]
    rates: dict[str, list[float]] = {v: [] for v in variants}
    for rep in range(reps):
        for variant in variants[rep % 3 :] + variants[: rep % 3]:
            rates[variant].append(asyncio.run(chats_per_second(variant, count)))
    print(f"freeze(chat frame): median {freeze['median']:.2f} us (min {freeze['min']:.2f}, max {freeze['max']:.2f})")
    for label, samples in rates.items():
        s = summary(samples)
        print(f"{label:>16}: median {s['median']:,.0f} chats/s (min {s['min']:,.0f}, max {s['max']:,.0f})")
    path = write_results(
        "hook_events",
        {
            "freeze_us": freeze,
            "chats_per_second": {k: summary(v) for k, v in rates.items()},
            "count": count,
            "repetitions": reps,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
