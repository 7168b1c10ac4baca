"""What the git guard adds to a commit: 1,000 staged files against 10,000 live claims.

Starts our hub on a free loopback port (a tmp database), fills it with
10,000 live claims held by ten other agents in the repository's worktree
(none on the staged files, so the commit is allowed: the common case, and the
one that must check every file), stages a change to 1,000 files and runs the
installed ``pre-commit`` hook exactly as git runs it. Medians over ``--runs``.

Rows: the bare interpreter start, the hook with nothing staged (start-up,
config, ``git diff``), the full hook, and the ``claim_check`` round trip
alone (in-process). The guard's added time to ``git commit`` is the full hook.

    python benchmarks/guard.py [--runs N] [--claims N] [--files N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import OUR_BIN, fmt_s, free_port, summary, wait_for_hub, write_results

OWNERS = 10


def sh(*args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
    subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True)


def timed(args: list[str], cwd: Path, env: dict[str, str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True)
        samples.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.decode()[-500:]}")
    return samples


async def fill(uri: str, worktree: str, claims: int) -> float:
    """``claims`` live one-path claims by ten agents; returns seconds taken."""
    from synapse_channel.api import Session

    async def owner(k: int) -> None:
        async with Session(f"bench/other-{k}", uri=uri) as s:
            for i in range(k, claims, OWNERS):
                await s.claim(f"T-{i}", [f"claimed/d{i // 100}/f{i}.py"], worktree=worktree, ttl=7200)

    start = time.perf_counter()
    await asyncio.gather(*(owner(k) for k in range(OWNERS)))
    return time.perf_counter() - start


def check_alone(uri: str, worktree: str, paths: list[str], runs: int) -> list[float]:
    from synapse_channel.guard.check import Context, ask

    ctx = Context(identity="bench/me", uri=uri, token=None, timeout=10.0, refuse_offline=False)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        holds = ask(ctx, worktree, paths)
        samples.append(time.perf_counter() - start)
        assert holds == [], holds
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--claims", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        uri = f"ws://127.0.0.1:{port}"
        env = {
            **os.environ,
            "HOME": str(tmp / "home"),
            "SYN_HOME": str(tmp / "syn"),
            "SYN_IDENTITY": "bench/me",
            "SYNAPSE_URI": uri,
        }
        log = tmp / "hub.log"
        with open(log, "wb") as out:
            hub = subprocess.Popen(
                [
                    *(f"{OUR_BIN}/synapse", "hub", "--host", "127.0.0.1", "--port", str(port)),
                    *("--db", str(tmp / "h.db"), "--relay-log", "", "--max-claims-per-agent", "0"),
                ],
                env=env,
                stdout=out,
                stderr=out,
            )
        try:
            asyncio.run(wait_for_hub(uri, 20, proc=hub, log=log))
            repo = tmp / "repo"
            repo.mkdir()
            sh("git", "init", "-q", "-b", "main", cwd=repo)
            sh("git", "config", "user.email", "b@example.invalid", cwd=repo)
            sh("git", "config", "user.name", "B", cwd=repo)
            files = [f"src/m{i // 100}/f{i}.py" for i in range(args.files)]
            for name in files:
                (repo / name).parent.mkdir(parents=True, exist_ok=True)
                (repo / name).write_text("v1\n")
            sh("git", "add", ".", cwd=repo)
            sh("git", "commit", "-qm", "init", cwd=repo)
            worktree = str(repo.resolve())
            fill_s = asyncio.run(fill(uri, worktree, args.claims))
            sh(f"{OUR_BIN}/synapse", "guard", "install", cwd=repo, env=env)
            hook = str(repo / ".git" / "synapse-guard" / "hooks" / "pre-commit")
            rows: dict[str, Any] = {
                "python -c pass": summary(timed([sys.executable, "-c", "pass"], repo, env, args.runs)),
                "hook, nothing staged": summary(timed([hook], repo, env, args.runs)),
            }
            for name in files:
                (repo / name).write_text("v2\n")
            sh("git", "add", ".", cwd=repo)
            rows[f"hook, {args.files} staged"] = summary(timed([hook], repo, env, args.runs))
            rows["claim_check round trip (in-process)"] = summary(check_alone(uri, worktree, files, args.runs))
        finally:
            hub.terminate()
            hub.wait(10)
    print(f"git guard: {args.files} staged files, {args.claims} live claims ({fill_s:.1f}s to create them)")
    print(f"{'':40} {'median':>10} {'p90':>10}")
    for label, row in rows.items():
        print(f"{label:40} {fmt_s(row['median']):>10} {fmt_s(row['p90']):>10}")
    path = write_results(
        "guard",
        {"files": args.files, "claims": args.claims, "runs": args.runs, "fill_seconds": fill_s, "rows": rows},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
