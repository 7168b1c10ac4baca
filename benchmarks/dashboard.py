"""How live the dashboard is: from a hub event to the page's DOM, in the Debian chromium.

A hub runs as a subprocess; ``synapse dashboard --print-url`` makes the
login link; Playwright drives ``/usr/bin/chromium`` (headless) to it. Then,
one at a time, an agent registers (until its roster row shows), claims a
task (until the claim shows), releases it (until it is gone) and sends a
fleet-wide chat (until the stream shows it). Each figure is the time from
sending the frame to the element's change, as the page's own
``MutationObserver`` sees it, so Playwright's round trips are not counted.

    python benchmarks/dashboard.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import free_port, summary, wait_for_hub, write_results
from fanout import stop_hub
from websockets.asyncio.client import connect

CHROMIUM = os.environ.get("SYNAPSE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SYNAPSE = str(Path(sys.executable).parent / "synapse")

#: Resolves with performance.now() once ``selector`` matches (or stops matching, with ``gone``), and,
#: when ``text`` is given, an element it matches holds that text.
WATCH = """([selector, gone, text]) => new Promise((resolve) => {
  const found = () => [...document.querySelectorAll(selector)].some((n) => !text || n.textContent.includes(text));
  const hit = () => found() !== gone;
  if (hit()) return resolve(performance.now());
  const obs = new MutationObserver(() => { if (hit()) { obs.disconnect(); resolve(performance.now()); } });
  obs.observe(document.body, { childList: true, subtree: true, characterData: true });
})"""


async def measure(page: Any, selector: str, act: Any, gone: bool = False, text: str = "") -> float:
    """Seconds from ``act()`` to the DOM change (both clocks are the page's)."""
    watch = asyncio.ensure_future(page.evaluate(WATCH, [selector, gone, text]))
    await asyncio.sleep(0.05)  # the observer is installed before the frame goes out
    start = await page.evaluate("performance.now()")
    await act()
    end = await watch
    return float(end - start) / 1000


async def frame_sender(ws: Any, name: str, ftype: str, payload: str = "", target: str = "System", **extra: Any) -> None:
    """Send one frame as ``name``."""
    frame = {"sender": name, "target": target, "type": ftype, "payload": payload, "timestamp": 1.0}
    await ws.send(json.dumps({**frame, **extra}))


async def run(uri: str, rounds: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    link = [SYNAPSE, "dashboard", "--print-url", "--uri", uri]
    out = subprocess.run(link, capture_output=True, text=True, check=True)
    joins: list[float] = []
    claims: list[float] = []
    releases: list[float] = []
    chats: list[float] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await browser.new_page()
        started = time.perf_counter()
        await page.goto(out.stdout.strip())
        await page.locator("#status.on").wait_for()
        await page.locator("#roster p.muted").first.wait_for()
        first_view = time.perf_counter() - started
        sockets = []
        for i in range(rounds):
            name = f"bench/a{i}"
            ws = await connect(uri, compression=None)
            sockets.append(ws)
            send = functools.partial(frame_sender, ws, name)
            task, text = f"T-{i}", f"round {i} done"
            selector = f'.claim[data-task="{task}"]'
            joins.append(await measure(page, f'[data-agent="{name}"]', functools.partial(send, "heartbeat", "online")))
            claim = functools.partial(send, "claim", task_id=task, paths=[f"src/m{i}/"])
            claims.append(await measure(page, selector, claim))
            release = functools.partial(send, "release", task_id=task, epoch=i + 1)
            releases.append(await measure(page, selector, release, gone=True))
            chat = functools.partial(send, "chat", text, target="all")
            chats.append(await measure(page, "#stream li.msg", chat, text=text))
        for ws in sockets:
            await ws.close()
        await browser.close()
    return {
        "rounds": rounds,
        "first_view_seconds": first_view,
        "join_to_roster": summary(joins),
        "claim_to_tree": summary(claims),
        "release_to_gone": summary(releases),
        "chat_to_stream": summary(chats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {**os.environ, "SYN_HOME": tmp}
        log = Path(tmp, "hub.log")
        with log.open("w") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "synapse_channel", "hub", "--port", str(port), "--db", f"{tmp}/hub.db"],
                env=env,
                stderr=sink,
            )
        uri = f"ws://127.0.0.1:{port}"
        try:
            asyncio.run(wait_for_hub(uri, 30, proc=proc, log=log))
            data = asyncio.run(run(uri, args.rounds))
        finally:
            stop_hub(proc)
    path = write_results("dashboard", data)
    print(f"login link to first full view: {data['first_view_seconds'] * 1e3:.0f} ms")
    for key, label in (
        ("join_to_roster", "agent registers -> roster row"),
        ("claim_to_tree", "claim -> claims tree"),
        ("release_to_gone", "release -> claim gone"),
        ("chat_to_stream", "chat -> message stream"),
    ):
        s = data[key]
        spread = f"p90 {s['p90'] * 1e3:.1f}, max {s['max'] * 1e3:.1f}, n={s['n']}"
        print(f"{label}: median {s['median'] * 1e3:.1f} ms ({spread})")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
