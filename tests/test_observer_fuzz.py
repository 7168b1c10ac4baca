"""Property: nothing an observer seat sends changes any state.

The core is built with real traffic (directed and broadcast chats, claims, a
board task, an ack), then an observer-seat connection sends generated frames
of every verb with hostile fields. After each one the replayable state (all of
it except ``seq``, which audit events advance) is unchanged, and the observer
never receives a directed chat addressed to someone else.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synapse_channel.core import HubCore
from synapse_channel.core.access import Grant
from synapse_channel.protocol import KNOWN_TYPES, ProtocolError, parse_frame

OBSERVER = Grant("watcher", "observer", ("watch/*",), "k-observer")
NOW = 1_000.0

values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.text(max_size=20) | st.sampled_from(["alice", "T1", "B1"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["identity", "since_seq"]), inner),
    max_leaves=6,
)
fields = st.dictionaries(
    st.sampled_from(
        [
            "seq",
            "task_id",
            "paths",
            "epoch",
            "to",
            "mailbox_for",
            "inbox_query",
            "limit",
            "since",
            "title",
            "status",
            "checkpoint",
            "ttl_seconds",
            "idem_key",
            "roles",
            "takeover",
            "receipt_requested",
        ]
    ),
    values,
    max_size=5,
)


def feed(core: HubCore, conn_id: int, frame: dict[str, Any], now: float = NOW) -> list[dict[str, Any]]:
    """Send one frame through the same parse + receive path the hub uses; return what came back."""
    try:
        cmd = parse_frame(json.dumps(frame))
    except ProtocolError:
        return []
    out = core.receive(conn_id, cmd, now)
    return [s.frame for s in out.sends if conn_id in s.to]


def populated_core() -> HubCore:
    core = HubCore("syn-test")
    for conn_id, name in ((1, "alice"), (2, "bob")):
        core.open(conn_id, NOW)
        feed(core, conn_id, {"sender": name, "target": "System", "type": "heartbeat", "payload": "online"})
    bob: dict[str, Any] = {"sender": "bob", "target": "alice", "type": "chat", "payload": "private"}
    feed(core, 2, bob)
    feed(core, 2, {**bob, "target": "carol", "payload": "for offline carol"})
    feed(core, 2, {**bob, "target": "all", "payload": "public"})
    feed(
        core,
        1,
        {"sender": "alice", "target": "System", "type": "claim", "payload": "", "task_id": "T1", "paths": ["src/a.py"]},
    )
    feed(
        core,
        1,
        {
            "sender": "alice",
            "target": "System",
            "type": "ledger_task",
            "payload": "",
            "task_id": "B1",
            "title": "parser",
        },
    )
    core.open(9, NOW, grant=OBSERVER)
    feed(core, 9, {"sender": "watch/1", "target": "System", "type": "heartbeat", "payload": "online"})
    return core


def state(core: HubCore) -> str:
    snap = core.snapshot()
    del snap["seq"]
    return json.dumps(snap, sort_keys=True)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(KNOWN_TYPES)),
            st.sampled_from(["all", "alice", "carol", "System", "*"]),
            values,
            fields,
        ),
        min_size=1,
        max_size=8,
    )
)
def test_observer_frames_never_change_state(frames: list[tuple[str, str, Any, dict[str, Any]]]) -> None:
    core = populated_core()
    before = state(core)
    assert core.roster.conns[9].name == "watch/1"
    for verb, target, payload, extra in frames:
        frame = {**extra, "sender": "watch/1", "target": target, "type": verb, "payload": payload, "timestamp": 1.0}
        for reply in feed(core, 9, frame):
            if reply.get("type") == "chat":
                assert reply["target"] in ("all", "", "*"), "an observer received someone else's directed chat"
            for listed in reply.get("history", []) + reply.get("messages", []):
                assert listed["target"] in ("all", "", "*"), "history/resume leaked a directed chat"
        assert state(core) == before, f"observer frame {verb} changed state"


def test_observer_cannot_register_outside_its_names() -> None:
    core = HubCore("syn-test")
    core.open(1, NOW, grant=OBSERVER)
    out = core.receive(
        1, parse_frame(json.dumps({"sender": "alice", "target": "System", "type": "heartbeat", "payload": ""})), NOW
    )
    assert out.closes and out.closes[0][1] == 4010
    assert core.roster.names == {}
