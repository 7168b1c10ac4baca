"""Claim-check cost at 10 to 100k live claims: the path-trie index vs a linear scan.

Each live claim holds one file in a tree shaped like a real repository
(``pkgNN/modNN/fileNNN.py``, a few worktrees). A check is for a new,
non-overlapping path (the common case: the whole index must say "free").
The linear scan compares against every live claim, as the reference does.

    python benchmarks/claims.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import summary, write_results

from synapse_channel.core.scope_index import ScopeIndex, normalise_path

SIZES = (10, 100, 1_000, 10_000, 100_000)
WORKTREES = ("/repo/a", "/repo/b", "/repo/c", "/repo/d")


def claim_path(i: int) -> tuple[str, tuple[str, ...]]:
    wt = WORKTREES[i % len(WORKTREES)]
    return wt, normalise_path(f"pkg{i % 97:02d}/mod{(i // 97) % 89:02d}/file{i}.py", wt)


def overlaps(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def linear(claims: list[tuple[str, tuple[str, ...]]], wt: str, path: tuple[str, ...]) -> bool:
    return any(w == wt and overlaps(p, path) for w, p in claims)


def indexed(index: ScopeIndex) -> Any:
    return lambda wt, p: index.conflict(wt, [p])


def scanning(claims: list[tuple[str, tuple[str, ...]]]) -> Any:
    return lambda wt, p: linear(claims, wt, p)


def time_per_check(fn: Any, probes: list[tuple[str, tuple[str, ...]]], budget: float) -> float:
    n = 0
    t0 = time.perf_counter()
    while True:
        for wt, path in probes:
            fn(wt, path)
        n += len(probes)
        elapsed = time.perf_counter() - t0
        if elapsed > budget:
            return elapsed / n


def main() -> None:
    results: dict[str, Any] = {"sizes": {}}
    probes = [claim_path(10**7 + k) for k in range(64)]  # new files: never overlapping
    print(f"{'live claims':>12}{'index µs':>14}{'linear µs':>14}{'speed-up':>10}")
    for size in SIZES:
        claims = [claim_path(i) for i in range(size)]
        index = ScopeIndex()
        for i, (wt, path) in enumerate(claims):
            index.add(wt, f"T{i}", [path])
        assert all(index.conflict(wt, [p]) is None for wt, p in probes)
        assert index.conflict(*((claims[0][0], [claims[0][1]]))) == "T0"
        runs = 5
        budget = 0.2 if size < 10_000 else 1.0
        idx = [time_per_check(indexed(index), probes, 0.2) for _ in range(runs)]
        lin = [time_per_check(scanning(claims), probes[:4], budget) for _ in range(runs)]
        results["sizes"][str(size)] = {"index_s": summary(idx), "linear_s": summary(lin)}
        i_med, l_med = summary(idx)["median"], summary(lin)["median"]
        print(f"{size:>12,}{i_med * 1e6:>14.2f}{l_med * 1e6:>14.1f}{l_med / i_med:>9.0f}x")
    path = write_results("claims", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
