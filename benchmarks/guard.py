"""What the git guard adds to ``git commit``: 1,000 staged files against 10,000 live claims.

Starts our hub on a free loopback port (a tmp database and ``SYN_HOME``),
fills it with 10,000 live claims held by ten other agents in the repository's
worktree, on sibling files in the same directories as the staged ones (so
every lookup walks the path trie down to the file; none overlaps, so the
commit is allowed: the common case, and the one that must check every file).
The repository has a ``synapse.toml`` (the guard reads the project config, as
in real use), 1,000 staged changes and the guard installed.

Rows, medians and p95 over ``--runs`` (commits with and without the guard
alternate, so a load spike hits both):

- ``git commit`` without the guard (``core.hooksPath`` at an empty directory)
  and with it; the difference is what the guard adds (its ``pre-commit`` plus
  the forwarders it installs for every other hook git runs);
- the ``pre-commit`` hook alone: nothing staged, 1,000 staged, and 1,000
  staged with the package's ``.py`` compiled at every start (no bytecode
  cache: ``PYTHONDONTWRITEBYTECODE`` and no ``__pycache__``);
- the refusal: one of the 10,000 claims overlaps one staged file;
- the ``claim_check`` round trip alone (in-process, blocking client).

Each commit is undone with ``git reset --soft HEAD~1`` (untimed), so every run
commits the same 1,000 staged changes. Subprocesses get a private
``PYTHONPYCACHEPREFIX`` warmed before timing: bytecode is cached, as after
``pip install``.

    python benchmarks/guard.py [--runs N] [--claims N] [--files N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import OUR_BIN, fmt_s, free_port, summary, wait_for_hub, write_results

OWNERS = 10
DIRS = 10


def sh(*args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
    subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True)


def run(args: list[str], cwd: Path, env: dict[str, str], expect: int = 0) -> float:
    """Seconds ``args`` took; fails unless it exited with ``expect``."""
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True)
    took = time.perf_counter() - start
    if done.returncode != expect:
        raise RuntimeError(f"{args} exited {done.returncode}, not {expect}: {done.stderr.decode()[-800:]}")
    return took


def timed(args: list[str], cwd: Path, env: dict[str, str], runs: int, expect: int = 0) -> list[float]:
    return [run(args, cwd, env, expect) for _ in range(runs)]


def stats(samples: list[float]) -> dict[str, Any]:
    """:func:`benchlib.summary` plus the p95 this benchmark reports."""
    s = sorted(samples)
    return {**summary(samples), "p95": s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]}


async def fill(uri: str, worktree: str, claims: int) -> float:
    """``claims`` live one-path claims by ten agents, next to the staged files; returns seconds taken."""
    from synapse_channel.api import Session

    async def owner(k: int) -> None:
        async with Session(f"bench/other-{k}", uri=uri) as s:
            for i in range(k, claims, OWNERS):
                await s.claim(f"T-{i}", [f"src/m{i % DIRS}/claimed{i}.py"], worktree=worktree, ttl=7200)

    start = time.perf_counter()
    await asyncio.gather(*(owner(k) for k in range(OWNERS)))
    return time.perf_counter() - start


async def claim_one(uri: str, worktree: str, path: str) -> None:
    from synapse_channel.api import Session

    async with Session("bench/blocker", uri=uri) as s:
        await s.claim("T-blocker", [path], worktree=worktree, ttl=7200)


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


#: The hook's work in stages, timed inside one fresh interpreter (run in the repository, as git runs it).
STAGES = """
import os, sys, time
marks = [("start", time.perf_counter())]
def mark(label):
    marks.append((label, time.perf_counter()))
import re, enum
mark("importing re and enum")
import pathlib
mark("importing pathlib (with urllib.parse, ipaddress)")
import socket, json, struct
mark("importing socket and json")
from synapse_channel.guard.__main__ import staged
from synapse_channel.guard import check
import synapse_channel.client.context, synapse_channel.config, synapse_channel.trust
from synapse_channel.client import blocking
mark("importing the guard's modules")
ctx = check.context()
mark("reading the config (identity, URI, token)")
paths = staged()
mark("git diff --cached")
holds = check.ask(ctx, os.path.realpath(os.getcwd()), paths)
check.judge(ctx.identity, paths, holds, strict=False)
mark("the claim_check round trip")
print(repr([(b[0], b[1] - a[1]) for a, b in zip(marks, marks[1:])]))
"""


def stages(repo: Path, env: dict[str, str], runs: int) -> list[tuple[str, float]]:
    """Median seconds of each :data:`STAGES` step, in order."""
    import ast

    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", STAGES], cwd=repo, env=env, capture_output=True, check=True)
        for label, took in ast.literal_eval(done.stdout.decode()):
            samples.setdefault(label, []).append(took)
    return [(label, statistics.median(v)) for label, v in samples.items()]


def commits(repo: Path, env: dict[str, str], bare_hooks: Path, runs: int) -> tuple[list[float], list[float]]:
    """``git commit`` of the staged changes without and with the guard, alternating; each one undone."""
    without, with_guard = [], []
    plain = ["git", "-c", f"core.hooksPath={bare_hooks}", "commit", "-q", "-m", "bench"]
    guarded = ["git", "commit", "-q", "-m", "bench"]
    for _ in range(runs):
        for args, samples in ((plain, without), (guarded, with_guard)):
            samples.append(run(args, repo, env))
            sh("git", "reset", "-q", "--soft", "HEAD~1", cwd=repo, env=env)
    return without, with_guard


def uncached(env: dict[str, str], cache: Path, tmp: Path) -> dict[str, str]:
    """``env`` with the standard library's bytecode cached but not the package's: it is compiled at each start."""
    import synapse_channel

    cold = tmp / "pyc-cold"
    shutil.copytree(cache, cold)
    package = Path(synapse_channel.__file__).resolve().parent
    shutil.rmtree(cold / package.relative_to("/"), ignore_errors=True)
    return {**env, "PYTHONPYCACHEPREFIX": str(cold), "PYTHONDONTWRITEBYTECODE": "1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--claims", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=1_000)
    args = parser.parse_args()
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        uri = f"ws://127.0.0.1:{port}"
        cache = tmp / "pyc"
        env = {
            **os.environ,
            "HOME": str(tmp / "home"),
            "XDG_CONFIG_HOME": str(tmp / "home" / ".config"),
            "SYN_HOME": str(tmp / "syn"),
            "SYN_IDENTITY": "bench/me",
            "SYNAPSE_URI": uri,
            "PYTHONPYCACHEPREFIX": str(cache),
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
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
            (repo / "synapse.toml").write_text('[identity]\nproject = "bench"\n')
            files = [f"src/m{i % DIRS}/f{i}.py" for i in range(args.files)]
            for name in files:
                (repo / name).parent.mkdir(parents=True, exist_ok=True)
                (repo / name).write_text("v1\n")
            sh("git", "add", ".", cwd=repo)
            sh("git", "commit", "-qm", "init", cwd=repo)
            worktree = str(repo.resolve())
            fill_s = asyncio.run(fill(uri, worktree, args.claims))
            sh(f"{OUR_BIN}/synapse", "guard", "install", cwd=repo, env=env)
            hook = str(repo / ".git" / "synapse-guard" / "hooks" / "pre-commit")
            bare_hooks = tmp / "no-hooks"
            bare_hooks.mkdir()
            run([hook], repo, env)  # warm the bytecode cache
            rows["python -c pass"] = stats(timed([sys.executable, "-c", "pass"], repo, env, args.runs))
            rows["hook, nothing staged"] = stats(timed([hook], repo, env, args.runs))
            for name in files:
                (repo / name).write_text("v2\n")
            time.sleep(1.5)  # files older than the index: no "racily clean" entries for git to re-read
            sh("git", "add", ".", cwd=repo)
            run([hook], repo, env)
            without, with_guard = commits(repo, env, bare_hooks, args.runs)
            rows["git commit, no guard"] = stats(without)
            rows["git commit, guard"] = stats(with_guard)
            rows[f"hook, {args.files} staged"] = stats(timed([hook], repo, env, args.runs))
            steps = stages(repo, env, args.runs)
            cold = uncached(env, cache, tmp)
            rows[f"hook, {args.files} staged, no bytecode cache"] = stats(timed([hook], repo, cold, args.runs))
            rows["claim_check round trip (in-process)"] = stats(check_alone(uri, worktree, files, args.runs))
            asyncio.run(claim_one(uri, worktree, files[0]))
            refused = ["git", "commit", "-q", "-m", "bench"]
            rows["git commit, guard, refused (1 file held)"] = stats(timed(refused, repo, env, args.runs, expect=1))
            rows[f"hook, {args.files} staged, refused"] = stats(timed([hook], repo, env, args.runs, expect=1))
        finally:
            hub.terminate()
            hub.wait(10)
    added = stats([g - w for g, w in zip(with_guard, without, strict=True)])  # paired: one run's two commits
    print(f"git guard: {args.files} staged files, {args.claims} live claims ({fill_s:.1f}s to create them)")
    print(f"{'':48} {'median':>10} {'p95':>10}")
    for label, row in rows.items():
        print(f"{label:48} {fmt_s(row['median']):>10} {fmt_s(row['p95']):>10}")
    print(f"{'added to git commit by the guard':48} {fmt_s(added['median']):>10} {fmt_s(added['p95']):>10}")
    print("the hook's steps (medians, one interpreter):")
    for label, took in steps:
        print(f"  {label:46} {fmt_s(took):>10}")
    path = write_results(
        "guard",
        {
            "files": args.files,
            "claims": args.claims,
            "runs": args.runs,
            "fill_seconds": fill_s,
            "rows": rows,
            "order": list(rows),
            "added": added,
            "stages": steps,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
