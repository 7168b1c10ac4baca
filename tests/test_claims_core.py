"""Claims and board in the pure core: scope rules, fencing, replay, refusals (hypothesis)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from synapse_channel.core import HubCore
from synapse_channel.core.scope_index import ScopeError, ScopeIndex, normalise_path
from synapse_channel.protocol import parse_frame


@pytest.mark.parametrize(
    ("raw", "worktree", "expected"),
    [
        ("src/a.py", "", ("src", "a.py")),
        ("src/", "", ("src",)),
        ("./src//a.py", "", ("src", "a.py")),
        ("a/../b", "", ("b",)),
        ("", "", ()),
        (".", "/repo", ()),
        ("/repo/src/a.py", "/repo", ("src", "a.py")),
        ("/repo", "/repo/", ()),
    ],
)
def test_paths_are_normalised(raw: str, worktree: str, expected: tuple[str, ...]) -> None:
    """Claimed paths become trie components relative to the worktree."""
    assert normalise_path(raw, worktree) == expected


@pytest.mark.parametrize("raw", ["../x", "src/../../x", "/etc/passwd", "/repo2/a", "a\x00b", 5])
def test_bad_paths_are_refused(raw: Any) -> None:
    """Escaping, foreign absolute and malformed paths raise, never pass silently."""
    with pytest.raises(ScopeError):
        normalise_path(raw, "/repo")


def test_scope_index_ancestors_descendants_and_worktrees() -> None:
    """A path conflicts with itself, ancestors and descendants, only in its worktree."""
    idx = ScopeIndex()
    idx.add("/r", "T1", [("src", "a.py")])
    assert idx.conflict("/r", [("src", "a.py")]) == "T1"
    assert idx.conflict("/r", [("src",)]) == "T1"
    assert idx.conflict("/r", [()]) == "T1"
    assert idx.conflict("/r", [("src", "b.py")]) is None
    assert idx.conflict("/other", [("src", "a.py")]) is None
    assert idx.conflict("/r", [("src", "a.py")], exclude="T1") is None
    idx.add("/r", "T2", [("docs",)])
    assert idx.conflict("/r", [("docs", "x", "y.md")]) == "T2"
    idx.remove("/r", "T1", [("src", "a.py")])
    assert idx.conflict("/r", [("src",)]) is None
    idx.remove("/r", "T2", [("docs",)])
    assert idx.conflict("/r", [()]) is None


def frame(sender: str, ftype: str, **extra: Any) -> str:
    return json.dumps({"sender": sender, "target": "System", "type": ftype, "payload": "", **extra})


OWNERS = ["p/a", "p/b", "q/c"]
PATHS = st.lists(st.sampled_from(["", "src", "src/a.py", "src/b.py", "docs", "docs/x/y.md", "src/a.py/z"]), max_size=3)


def overlaps(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


class ClaimMachine(RuleBasedStateMachine):
    """Random claims, releases, renewals, handoffs and expiries against the pure core."""

    def __init__(self) -> None:
        super().__init__()
        self.core = HubCore("syn-test")
        self.events: list[Any] = []
        self.epochs: list[int] = []
        self.now = 1000.0
        for cid, owner in enumerate(OWNERS, start=1):
            self.core.open(cid, 0.0)
            self.core.receive(cid, parse_frame(frame(owner, "heartbeat")), 0.0)

    def send(self, owner: str, ftype: str, **extra: Any) -> Any:
        cid = OWNERS.index(owner) + 1
        before = json.dumps(self.core.snapshot()["claims"]["live"], sort_keys=True)
        out = self.core.receive(cid, parse_frame(frame(owner, ftype, **extra)), self.now)
        self.events += out.events
        refused = [s.frame for s in out.sends if s.frame["type"] in ("claim_denied", "release_denied", "error")]
        if refused:
            after = json.dumps(self.core.snapshot()["claims"]["live"], sort_keys=True)
            assert before == after, "a refusal changed state"
        for ev in out.events:
            if ev.kind in ("claim", "claim_updated") and ev.data["claim"]["epoch"] not in self.epochs:
                self.epochs.append(ev.data["claim"]["epoch"])
        return out

    @rule(
        owner=st.sampled_from(OWNERS),
        task=st.sampled_from(["T1", "T2", "T3", "T4"]),
        wt=st.sampled_from(["", "/r1", "/r2"]),
        paths=PATHS,
        ttl=st.sampled_from([5, 50, 3600]),
    )
    def claim(self, owner: str, task: str, wt: str, paths: list[str], ttl: int) -> None:
        self.send(owner, "claim", task_id=task, worktree=wt, paths=paths, ttl_seconds=ttl)

    @rule(owner=st.sampled_from(OWNERS), task=st.sampled_from(["T1", "T2", "T3", "T4"]), stale=st.booleans())
    def release(self, owner: str, task: str, stale: bool) -> None:
        live = self.core.claims.live.get(task)
        epoch = (live["epoch"] - 1 if stale else live["epoch"]) if live else None
        self.send(owner, "release", task_id=task, epoch=epoch, idem_key=f"k{len(self.events)}")

    @rule(owner=st.sampled_from(OWNERS), task=st.sampled_from(["T1", "T2"]), to=st.sampled_from(OWNERS))
    def handoff(self, owner: str, task: str, to: str) -> None:
        live = self.core.claims.live.get(task)
        self.send(owner, "handoff", task_id=task, to=to, epoch=live["epoch"] if live else 1)

    @rule(owner=st.sampled_from(OWNERS), task=st.sampled_from(["T1", "T2"]))
    def renew(self, owner: str, task: str) -> None:
        live = self.core.claims.live.get(task)
        self.send(owner, "renew", task_id=task, ttl_seconds=100, epoch=live["epoch"] if live else 1)

    @rule(dt=st.sampled_from([1.0, 10.0, 60.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.events += self.core.expire(self.now).events

    @invariant()
    def no_overlap_in_a_worktree(self) -> None:
        scopes = list(self.core.claims.scope.items())
        for i, (t1, (wt1, p1)) in enumerate(scopes):
            for t2, (wt2, p2) in scopes[i + 1 :]:
                if wt1 == wt2:
                    assert not any(overlaps(a, b) for a in p1 for b in p2), (t1, t2)

    @invariant()
    def epochs_strictly_increase(self) -> None:
        assert self.epochs == sorted(self.epochs) and len(set(self.epochs)) == len(self.epochs)
        assert all(c["lease_expires_at"] > self.now for c in self.core.claims.live.values())

    @invariant()
    def replay_rebuilds_the_same_state(self) -> None:
        again = HubCore("syn-test")
        for ev in self.events:
            again.apply(ev)
        assert again.snapshot()["claims"] == json.loads(json.dumps(self.core.snapshot()["claims"]))


ClaimMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestClaimMachine = ClaimMachine.TestCase


def test_board_cycles_unknown_deps_and_cas() -> None:
    """The board refuses unknown deps and cycles; expected_version is compare-and-set."""
    core = HubCore("syn-test")
    core.open(1, 0.0)

    def send(ftype: str, **extra: Any) -> dict[str, Any]:
        out = core.receive(1, parse_frame(frame("p/a", ftype, **extra)), 1.0)
        return out.sends[-1].frame

    assert send("ledger_task", task_id="A", title="a")["type"] == "ledger_task_posted"
    assert send("ledger_task", task_id="B", title="b", depends_on=["A"])["type"] == "ledger_task_posted"
    assert send("ledger_task", task_id="C", title="c", depends_on=["Z"])["code"] == "UNKNOWN_DEPENDENCY"
    assert send("ledger_task_update", task_id="A", depends_on=["B"])["code"] == "DEPENDENCY_CYCLE"
    assert send("ledger_task_update", task_id="A", depends_on=["A"])["code"] == "DEPENDENCY_CYCLE"
    board = send("board_request")["board"]
    assert [t["task_id"] for t in board["ready"]] == ["A"]
    assert send("ledger_task_update", task_id="A", status="done", expected_version=1)["task"]["version"] == 2
    assert send("ledger_task_update", task_id="A", status="open", expected_version=1)["code"] == "VERSION_CONFLICT"
    assert [t["task_id"] for t in send("board_request")["board"]["ready"]] == ["B"]
    assert send("ledger_task_update", task_id="B", status="finished")["code"] == "BAD_FIELD"
    assert send("ledger_progress", task_id="B", payload="half way")["note"]["text"] == "half way"
    assert send("ledger_progress", task_id="nope", payload="x")["code"] == "UNKNOWN_TASK"


def test_renewals_to_the_same_deadline_expire_once() -> None:
    """Two renewals at one instant leave equal heap entries: the lease still expires once (was a KeyError)."""
    core = HubCore("syn-test")
    core.open(1, 0.0)
    core.receive(1, parse_frame(frame("a", "heartbeat")), 0.0)
    out = core.receive(1, parse_frame(frame("a", "claim", task_id="T1", paths=["x"], ttl_seconds=100)), 1000.0)
    epoch = out.events[-1].data["claim"]["epoch"]
    for _ in range(2):
        core.receive(1, parse_frame(frame("a", "renew", task_id="T1", ttl_seconds=100, epoch=epoch)), 1010.0)
    expired = [e for e in core.expire(1200.0).events if e.kind == "claim_expired"]
    assert [e.data["task_id"] for e in expired] == ["T1"] and "T1" not in core.claims.live
