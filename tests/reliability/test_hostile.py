"""Hostile input: the core and a real hub against 100k+ generated frames.

Random bytes (invalid UTF-8), huge and non-finite numbers, deep nesting, wrong
types, oversized frames, unknown verbs, spoofed sender and hub_id, path
traversal in claim paths. The hub never crashes; state changes only through
valid frames; every bad frame gets an ``error`` (or a close with a documented
code); everything the hub sends is valid JSON.
"""

from __future__ import annotations

import json
import random
import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from synapse_channel.core import HubCore
from synapse_channel.protocol import KNOWN_TYPES, ProtocolError, encode, parse_frame

from ..conftest import HubFactory, open_raw, report

NAMES = ["a", "p/a", "p/b", "SynapseHub", "", "x" * 300, "sp ace", "all", "p/a-rx"]
VERBS = [*sorted(KNOWN_TYPES), "warp", "", "CHAT", "chat ", None, 5]
PATHS = ["src/a.py", "../etc/passwd", "/etc/shadow", "a/../../b", "", ".", "a\x00b", "~/x", "src/", 7, None]


def hostile_value(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value chosen to hurt: huge numbers, deep nesting, odd types."""
    kind = rng.randrange(10)
    if kind == 0:
        return rng.choice([10**30, -(10**30), 1e308, -1e308, 0, -1, 2**63, 2**64 + 1])
    if kind == 1:
        return "".join(rng.choice(string.printable + "\u2603\ud7ff") for _ in range(rng.randrange(0, 40)))
    if kind == 2 and depth < 4:
        return [hostile_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    if kind == 3 and depth < 4:
        return {rng.choice(["task_id", "paths", "seq", "x"]): hostile_value(rng, depth + 1) for _ in range(3)}
    if kind == 4:
        return rng.choice([True, False, None])
    if kind == 5:
        return rng.choice(PATHS)
    return rng.random() * rng.choice([1, 1e6, -1e-6])


def hostile_frame(rng: random.Random) -> str | bytes:
    """One generated frame (text or bytes)."""
    roll = rng.random()
    if roll < 0.08:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))  # binary / invalid UTF-8
    if roll < 0.12:
        return rng.choice(["{", "[]", "null", '"x"', '{"a":NaN}', '{"timestamp": 1e999}', "[" * 5000])
    if roll < 0.15:
        return "{" * 3000 + "}" * 3000
    frame: dict[str, Any] = {
        "sender": rng.choice([*NAMES, hostile_value(rng)]),
        "target": rng.choice(["all", "p/a", "p", "*", "p/*,q", "", "System", hostile_value(rng)]),
        "type": rng.choice(VERBS),
        "payload": hostile_value(rng),
        "timestamp": rng.choice([1.0, 1e308, -5, "now", None, 10**40]),
    }
    for key in rng.sample(
        [
            "seq",
            "task_id",
            "paths",
            "worktree",
            "epoch",
            "idem_key",
            "ttl_seconds",
            "hub_id",
            "mailbox",
            "since_seq",
            "mailbox_for",
            "takeover",
            "token",
            "roles",
            "to",
            "status",
            "depends_on",
            "expected_version",
            "inbox_query",
            "limit",
            "since",
        ],
        rng.randrange(0, 6),
    ):
        frame[key] = hostile_value(rng) if key != "paths" else [rng.choice(PATHS) for _ in range(3)]
    if rng.random() < 0.3:
        frame["hub_id"] = "syn-spoofed"
    return json.dumps(frame)


def feed_core(core: HubCore, conn: int, data: str | bytes, now: float) -> tuple[bool, list[dict[str, Any]]]:
    """Apply one frame; return (accepted, frames sent). Raises only on a real defect."""
    try:
        cmd = parse_frame(data)
    except ProtocolError:
        return False, []
    out = core.receive(conn, cmd, now)
    for send in out.sends:
        json.loads(encode(send.frame))  # everything the hub sends must be valid, finite JSON
    return True, [s.frame for s in out.sends]


def state_of(core: HubCore) -> str:
    """Everything but ``seq`` (a refusal is journalled as an audit event, which takes a seq)."""
    snap = core.snapshot()
    snap.pop("seq")
    return json.dumps(snap, sort_keys=True)


def test_core_survives_100k_generated_frames() -> None:
    """100,000 hostile frames: no crash, refusals change no state, every output is valid JSON."""
    rng = random.Random(20261128)
    core = HubCore("syn-fuzz")
    conns = list(range(1, 9))
    for cid in conns:
        core.open(cid, 0.0)
    counts = {"frames": 0, "parse_errors": 0, "errors": 0, "accepted": 0}
    for i in range(100_000):
        cid = rng.choice(conns)
        if cid not in core.roster.conns:
            core.open(cid, float(i))
        before = state_of(core) if i % 50 == 0 else None
        accepted, sent = feed_core(core, cid, hostile_frame(rng), float(i))
        counts["frames"] += 1
        if not accepted:
            counts["parse_errors"] += 1
        elif any(f["type"] == "error" for f in sent) and not any(f["type"] != "error" for f in sent):
            counts["errors"] += 1
            if before is not None:
                assert state_of(core) == before, "a refused frame changed state"
        else:
            counts["accepted"] += 1
        if rng.random() < 0.01:
            core.close(cid, float(i))
    report(f"hostile core fuzz: {counts}")
    assert counts["frames"] == 100_000 and counts["parse_errors"] > 1000 and counts["errors"] > 1000
    for wt, paths in core.claims.scope.values():
        assert all(".." not in part and not part.startswith("/") for path in paths for part in path), wt


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=3000, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "sender",
                "target",
                "type",
                "payload",
                "timestamp",
                "seq",
                "task_id",
                "paths",
                "epoch",
                "inbox_query",
                "since_seq",
                "roles",
                "mailbox",
            ]
        ),
        json_values,
        max_size=8,
    ),
    st.sampled_from(sorted(KNOWN_TYPES)),
)
def test_core_structured_fuzz(extra: dict[str, Any], verb: str) -> None:
    """Hypothesis: any field values on any verb are refused cleanly or applied; never an exception."""
    core = HubCore("syn-fuzz")
    core.open(1, 0.0)
    feed_core(core, 1, json.dumps({"sender": "p/a", "target": "System", "type": "heartbeat"}), 1.0)
    frame = {"sender": "p/a", "target": "System", "type": verb, "payload": "", **extra}
    feed_core(core, 1, json.dumps(frame), 2.0)


async def test_real_hub_survives_hostile_frames(hub_factory: HubFactory) -> None:
    """5,000 hostile frames over real sockets: the hub answers afterwards; closes use documented codes."""
    hub = await hub_factory(max_msg_kb=64)
    rng = random.Random(7)
    documented = {1009, 4009, 4010, 4013, 4014, 1000, 1001}
    closes: dict[int | None, int] = {}
    sent = 0
    while sent < 5000:
        client = await open_raw(hub.uri, "fuzz")
        try:
            for _ in range(250):
                data = hostile_frame(rng) if rng.random() > 0.002 else "x" * 70_000
                await client.send_raw(data)
                sent += 1
        except Exception:  # the hub closed us (e.g. 1009 for an oversized frame)
            pass
        await client.ws.close()
        code = client.ws.protocol.close_rcvd.code if client.ws.protocol.close_rcvd else None
        closes[code] = closes.get(code, 0) + 1
    report(f"hostile socket fuzz: {sent} frames, closes by code {closes}, internal errors {hub.internal_errors}")
    assert hub.internal_errors == 0
    assert all(code in documented or code is None for code in closes)
    check = await open_raw(hub.uri, "after-fuzz")
    await check.send("heartbeat")
    await check.send("who_request")
    assert (await check.expect("who_snapshot"))["target"] == "after-fuzz"
    await check.close()


async def test_paging_under_a_tiny_frame_budget_never_leaks_another_identitys_mail(hub_factory: HubFactory) -> None:
    """Mallory pages history, resume, inboxes and mailbox replay under a 16 KiB frame budget.

    Alice's directed mail is interleaved with Mallory's own and with
    broadcasts, each chat ~3 KB, so every answer is cut into many pages.
    Whatever Mallory asks for and however it follows the cursors, no page
    holds a chat addressed only to Alice; Mallory still gets all of its own.
    """
    from synapse_channel.hub.config import MIN_FRAME_BYTES

    hub = await hub_factory(max_frame_bytes=MIN_FRAME_BYTES, max_queue_bytes=4 * MIN_FRAME_BYTES)
    sender = await open_raw(hub.uri, "team/boss")
    await sender.send("heartbeat")
    secret, mine = "alice-secret", "for-mallory"
    for i in range(30):
        await sender.send("chat", "team/alice", f"{secret} {i} " + "s" * 3000)
        await sender.send("chat", "team/mallory", f"{mine} {i} " + "m" * 3000)
        if i % 5 == 0:
            await sender.send("chat", "all", f"broadcast {i} " + "b" * 3000)
    await sender.sync()
    mallory = await open_raw(hub.uri, "team/mallory")
    await mallory.send("heartbeat")
    pages: list[dict[str, Any]] = []

    async def ask(ftype: str, reply: str, **fields: Any) -> dict[str, Any]:
        await mallory.send(ftype, **fields)
        got = await mallory.expect(reply)
        pages.append(got)
        return got

    history = await ask("history_request", "history_snapshot", limit=500)
    assert history.get("has_more")  # the budget really cuts it
    cursor, resumed = history["cursor"], 0
    while True:  # follow history with resume pages until the end
        page = await ask("resume_request", "resume_snapshot", since=cursor)
        resumed += 1
        if not page.get("has_more"):
            break
        cursor = page["cursor"]
    inbox, own = 0, []
    query: dict[str, Any] = {"version": 1, "identity": "team/mallory", "since_seq": 0, "limit": 100}
    while True:  # its own inbox, every page
        body = (await ask("history_request", "history_snapshot", inbox_query=query))["inbox_page"]
        own += [m["payload"].split(" ")[1] for m in body["messages"]]
        inbox += 1
        if not body["has_more"]:
            break
        query = {**query, "since_seq": body["cursor"]}
    assert inbox > 2 and resumed > 2 and own == [str(i) for i in range(30)]
    # Asking for Alice's inbox is refused, with nothing in the answer.
    await mallory.send(
        "history_request", inbox_query={"version": 1, "identity": "team/alice", "since_seq": 0, "limit": 100}
    )
    refused = await mallory.expect("error")
    assert refused["code"] == "FORBIDDEN" and secret not in json.dumps(refused)
    # A second socket of Mallory's asking to replay Alice's mailbox is refused too.
    spy = await open_raw(hub.uri, "team/mallory-rx")
    await spy.send("heartbeat", mailbox=True, since_seq=0, mailbox_for="team/alice")
    await spy.send("message_status_request", seq=1)
    while (got := await spy.recv())["type"] != "message_status":
        assert secret not in json.dumps(got), got
        pages.append(got)
    assert got["state"] == "unknown"  # seq 1 is Alice's: its state is not Mallory's to know
    leaked = [p for p in pages if secret in json.dumps(p)]
    assert not leaked, leaked[0]
    report(f"hostile paging: {len(pages)} pages under a {MIN_FRAME_BYTES}-byte budget, none with another's mail")
    for ws in (sender, mallory, spy):
        await ws.close()
