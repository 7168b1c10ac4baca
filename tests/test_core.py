"""The pure core and protocol helpers: no sockets, no clock, deterministic."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synapse_channel.core import HubCore
from synapse_channel.protocol import Close, WakeFilter, addresses, is_one_to_many, owner_of, parse_frame


def frame(sender: str, ftype: str, target: str = "System", payload: object = "", **extra: object) -> str:
    return json.dumps({"sender": sender, "target": target, "type": ftype, "payload": payload, **extra})


def feed(core: HubCore, conn: int, data: str, now: float = 100.0):  # type: ignore[no-untyped-def]
    return core.receive(conn, parse_frame(data), now)


@pytest.mark.parametrize(
    ("target", "identity", "directed_only", "expected"),
    [
        ("all", "a/b", False, True),
        ("all", "a/b", True, False),
        ("", "a/b", False, True),
        ("a/b", "a/b", True, True),
        ("a", "a/b", True, True),
        ("a", "ab/c", True, False),
        ("a/*", "a/b", True, True),
        ("x,a/b", "a/b", True, True),
        ("x, y", "a/b", False, False),
        ("a/b-rx", "a/b", False, False),
        ("alice", "alice", True, True),
    ],
)
def test_addresses(target: str, identity: str, directed_only: bool, expected: bool) -> None:
    """Target matching: exact, project, glob, list and broadcast rules."""
    assert addresses(target, identity, directed_only=directed_only) is expected


def test_owner_and_one_to_many() -> None:
    """Waiter suffixes map to their owner; lists and globs are one-to-many."""
    assert owner_of("p/a-rx") == "p/a" and owner_of("p/a-pane-rx") == "p/a" and owner_of("-rx") == "-rx"
    assert is_one_to_many("all") and is_one_to_many("a,b") and is_one_to_many("p/*") and not is_one_to_many("p/a")


def test_wake_filter_roles_and_self() -> None:
    """A role wakes its holder; a waiter never wakes on its own identity's frames."""
    wf = WakeFilter("p/a", "p/a-rx", roles=("p/reviewer",), directed_only=True)
    assert wf.wakes({"type": "chat", "sender": "x", "target": "p/reviewer"})
    assert not wf.wakes({"type": "chat", "sender": "p/a", "target": "p/a"})
    assert not wf.wakes({"type": "presence_update", "sender": "x", "target": "p/a"})


def test_register_conflict_takeover_cooldown_are_outcomes() -> None:
    """Name rules are decided by the core and returned as closes."""
    core = HubCore("syn-test")
    for cid in (1, 2, 3, 4):
        core.open(cid, 100.0)
    feed(core, 1, frame("n", "heartbeat"))
    out = feed(core, 2, frame("n", "heartbeat"))
    assert out.closes == [(2, Close.NAME_CONFLICT, "name conflict")]
    out = feed(core, 3, frame("n", "heartbeat", takeover=True), now=101.0)
    assert out.closes == [(1, Close.SUPERSEDED, "superseded")]
    assert core.roster.names["n"] == 3
    out = feed(core, 4, frame("n", "heartbeat", takeover=True), now=102.0)
    assert out.closes == [(4, Close.TAKEOVER_COOLDOWN, "takeover cooldown")]
    out = core.close(1, 103.0)
    assert not out.sends  # the superseded socket leaving announces nothing


def test_per_name_state_stays_bounded() -> None:
    """One-shot names leave nothing behind: takeover stamps are swept, departures kept only for claim holders."""
    from synapse_channel.core.roster import TAKEOVER_HORIZON, TAKEOVER_MEMORY

    core = HubCore("syn-test", presence_grace=0)
    cid, now = 0, 1000.0
    for i in range(3 * TAKEOVER_MEMORY):
        cid += 2
        core.open(cid, now)
        core.open(cid + 1, now)
        feed(core, cid, frame(f"send-{i}", "heartbeat"), now)
        feed(core, cid + 1, frame(f"send-{i}", "heartbeat", takeover=True), now)
        core.close(cid, now)
        core.close(cid + 1, now)
        now += TAKEOVER_HORIZON / TAKEOVER_MEMORY  # a name per ~0.3 s: older stamps pass the horizon
    assert len(core.roster.last_takeover) <= 2 * TAKEOVER_MEMORY + 1
    assert "send-0" not in core.roster.last_takeover and f"send-{3 * TAKEOVER_MEMORY - 1}" in core.roster.last_takeover
    assert core.roster.last_left == {}  # none of them held a claim
    core.open(1, now)
    feed(core, 1, frame("p/a", "claim", task_id="T", paths=["x.py"]), now)
    assert "p/a" in core.claims.per_owner
    core.close(1, now + 1)
    assert core.roster.last_left == {"p/a": now + 1}  # a holder's absence is what state_request reports


def test_chat_emits_one_event_with_increasing_seq() -> None:
    """Every chat becomes one journalled event; seq and msg_id increase."""
    core = HubCore("syn-test")
    core.open(1, 1.0)
    e1 = feed(core, 1, frame("a", "chat", "b", "one")).events
    e2 = feed(core, 1, frame("a", "chat", "all", "two")).events
    assert [e.kind for e in e1 + e2] == ["chat", "chat"]
    assert e1[0].seq < e2[0].seq
    assert e2[0].data["frame"]["msg_id"] == e1[0].data["frame"]["msg_id"] + 1


def test_refused_frames_change_nothing() -> None:
    """An error outcome emits no event and leaves seq where it was."""
    core = HubCore("syn-test")
    core.open(1, 1.0)
    feed(core, 1, frame("a", "heartbeat"))
    out = feed(core, 1, frame("a", "ack", seq=99))
    assert not out.events and out.sends[0].frame["type"] == "error" and core.seq == 0


names = st.sampled_from(["p/a", "p/b", "q/c", "alice"])
targets = st.sampled_from(["p/a", "p/b", "q/c", "alice", "p", "all", "p/*", "p/a,q/c", "nobody"])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("chat"), names, targets),
        st.tuples(st.just("ack"), names, st.integers(0, 40)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(ops, st.integers(1, 40))
def test_replay_and_snapshot_rebuild_equal_state(script: list[tuple[str, str, object]], cut: int) -> None:
    """Replaying the journal, or a snapshot plus the tail, rebuilds an equal state."""
    live = HubCore("syn-test")
    events = []
    for i, (kind, who, arg) in enumerate(script):
        cid = i + 1
        live.open(cid, float(i))
        if kind == "chat":
            out = feed(live, cid, frame(who, "chat", str(arg), f"m{i}"), now=float(i))
        else:
            out = feed(live, cid, frame(who, "ack", seq=min(int(arg), live.seq), mailbox_for=who), now=float(i))
        events += out.events
        live.close(cid, float(i))
    replayed = HubCore("syn-test")
    for ev in events:
        replayed.apply(ev)
    assert replayed.snapshot() == live.snapshot()
    head = HubCore("syn-test")
    for ev in events[:cut]:
        head.apply(ev)
    restored = HubCore("syn-test")
    restored.restore(json.loads(json.dumps(head.snapshot())))
    for ev in events[cut:]:
        restored.apply(ev)
    assert restored.snapshot() == live.snapshot()
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs))


conn_names = st.sampled_from(["p/a", "p/a-rx", "p/b", "q/c-rx", "alice", "alice-rx", "p", "r/x-pane-rx"])
any_target = st.sampled_from(["p", "p/a", "alice", "q/*", "p/a,q/c", "all", "", "p/reviewer", "x", "*", "alice-rx"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(conn_names, st.booleans()), max_size=8, unique_by=lambda t: t[0]), any_target)
def test_indexed_recipients_equal_a_full_scan(conns: list[tuple[str, bool]], target: str) -> None:
    """The roster's indexes find exactly the connections a scan with `addresses` finds."""
    core = HubCore("syn-test")
    for cid, (name, reviewer) in enumerate(conns, start=1):
        core.open(cid, 0.0)
        roles = ["p/reviewer"] if reviewer else []
        feed(core, cid, frame(name, "heartbeat", roles=roles))
    core.open(99, 0.0)
    expected = sorted(
        c.conn_id
        for c in core.roster.named()
        if c.name and (addresses(target, owner_of(c.name), c.roles) or addresses(target, c.name, c.roles))
    )
    assert [c.conn_id for c in core.recipients(target, 99)] == expected
