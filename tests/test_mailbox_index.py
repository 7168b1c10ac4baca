"""The mailbox's indexed pending counts equal a brute-force scan, whatever the traffic.

`who` used to count pending mail by matching every retained message against
every target (66 s for one `who` after 20k directed chats to 2,000 targets).
The counts now come from per-recipient indexes; this checks them against the
scan they replaced, over random stores, acks, expiry and snapshot reloads.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from synapse_channel.core.mailbox import Mailbox, MailboxLimits
from synapse_channel.protocol import addresses

IDS = ["api/a", "api/b", "web/c", "boss"]
ACKERS = [*IDS, "api"]  # "api" as an identity too: its ack frees project mail its members still count
TARGETS = [*IDS, "api", "web", "api/a,api/b", "api/a,web/c,api/a", "api,web/c", "api/?", "web/[c]", "boss,api/b"]


def brute(box: Mailbox, ident: str) -> int:
    floor = box.watermarks.get(ident, 0)
    return sum(
        1
        for seq, frame in box.messages.items()
        if seq > floor
        and frame.get("sender") != ident
        and addresses(frame.get("target", ""), ident, directed_only=True)
    )


def model_waits(target: str, sender: str, marks: dict[str, int]) -> set[str] | None:
    """Whose acks free a message, as docs/protocol.md states the rule (None: only retention frees it)."""
    parts = [p.strip() for p in target.split(",")]
    if any(c in target for c in "*?["):
        return None
    if len(parts) == 1 and "/" not in parts[0]:  # a project: its identities that have acked mail, and
        known = {m for m in marks if m.startswith(parts[0] + "/") and m != sender}
        return known | ({parts[0]} if parts[0] in marks or not known else set())  # the name itself
    if all("/" in p for p in parts):
        return set(parts) - {sender} if len(parts) > 1 else set(parts)
    return None


def freed(seq: int, waits: dict[int, set[str] | None], marks: dict[str, int]) -> bool:
    who = waits[seq]
    return who is not None and all(marks.get(w, 0) >= seq for w in who)


op = st.one_of(
    st.tuples(st.just("send"), st.sampled_from(IDS), st.sampled_from(TARGETS)),
    st.tuples(st.just("ack"), st.sampled_from(ACKERS), st.integers(0, 8)),
    st.tuples(st.just("reload"), st.just(""), st.just("")),
)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(op, max_size=60), retention=st.sampled_from([5, 12, 1000]))
def test_indexed_counts_equal_the_scan(ops: list[tuple[str, str, object]], retention: int) -> None:
    box = Mailbox(retention=retention)
    seq = 0
    sent: list[dict[str, object]] = []  # an independent model: every message ever sent,
    waits: dict[int, set[str] | None] = {}  # whose acks free it (None: only retention does),
    marks: dict[str, int] = {}  # and every identity's watermark
    for kind, who, arg in ops:
        if kind == "send":
            seq += 1
            sent.append({"seq": seq, "sender": who, "target": arg, "type": "chat", "payload": "x" * (seq % 7)})
            waits[seq] = model_waits(str(arg), who, marks)
            box.store(dict(sent[-1]))
        elif kind == "ack":
            through = max(0, seq - int(arg))  # type: ignore[call-overload]
            if through > marks.get(who, 0):
                marks[who] = through
            box.ack(who, through)
        else:
            fresh = Mailbox(retention=retention)
            fresh.load(box.dump())
            box = fresh
        counts = box.pending_counts(set(IDS))
        if retention == 1000:  # nothing expired: the model says what is kept, and never less
            kept_model = [m for m in sent if not freed(int(m["seq"]), waits, marks)]  # type: ignore[call-overload]
            assert sorted(box.messages) == [m["seq"] for m in kept_model], (box.waiting, waits, marks)
        for ident in IDS:
            assert counts[ident] == brute(box, ident), (ident, counts)
            assert counts[ident] == len(box.pending_for(ident))
            if retention == 1000:  # the model says what is still owed to whom
                floor = box.watermarks.get(ident, 0)
                owed = [
                    m
                    for m in kept_model
                    if int(m["seq"]) > floor  # type: ignore[call-overload]
                    and m["sender"] != ident
                    and addresses(str(m["target"]), ident, directed_only=True)
                ]
                assert counts[ident] == len(owed), (ident, counts[ident], owed)
        # the running counts (what `who` reads) are the scan for every name with mail, and only those
        assert set(box.running.counts) == set(box.by_target) | set(box.group_names)
        for name, count in box.running.counts.items():
            assert count == brute(box, name), (name, count)
        assert json.loads(box.pending_json(set(IDS))) == counts
        # every index holds only messages still kept
        kept = set(box.messages)
        assert all(set(v) <= kept for v in box.by_target.values())
        assert all(set(v) <= kept for v in box.own.values())
        assert set(box.group) <= kept and set(box.refs) <= kept
        # the byte accounting the mailbox bounds rely on matches the messages kept, per recipient too
        assert set(box.sizes) == kept and box.total_bytes == sum(box.sizes.values())
        assert set(box.target_bytes) == set(box.by_target)
        for key, seqs in box.by_target.items():
            assert box.target_bytes[key] == sum(box.sizes[s] for s in seqs), key
        # what a restart rebuilds from the snapshot is what the live mailbox holds (acked notes to self too)
        again = Mailbox(retention=retention)
        again.load(box.dump())
        assert again.dump() == box.dump()


def test_who_counts_read_no_message_bodies() -> None:
    """20k single-target messages to 2,000 offline names: counting touches no message."""

    class Untouchable(dict):  # type: ignore[type-arg]
        def __getitem__(self, key: object) -> object:
            raise AssertionError("pending_counts read a message body")

        def get(self, key: object, default: object = None) -> object:
            raise AssertionError("pending_counts read a message body")

    box = Mailbox()
    for seq in range(1, 20_001):
        box.store({"seq": seq, "sender": "boss", "target": f"p/w{seq % 2000}", "payload": "x"})
    box.ack("p/w1", 10_000)
    box.messages = Untouchable(box.messages)
    counts = box.pending_counts({"boss"})
    assert len(counts) == 2001 and counts["p/w2"] == 10 and counts["p/w1"] == 5 and counts["boss"] == 0


def test_refusal_holds_each_bound_and_frees_on_ack() -> None:
    """A chat past a per-recipient or total bound is refused before it is stored; an ack makes room again."""
    box = Mailbox(limits=MailboxLimits(total_bytes=1000, total_messages=5, recipient_bytes=400, recipient_messages=3))
    seq = 0

    def send(target: str, size: int = 100) -> tuple[str, str] | None:
        nonlocal seq
        refused = box.refusal(target, "boss", size)
        if refused is None:
            seq += 1
            box.store({"seq": seq, "sender": "boss", "target": target, "payload": "x"}, size)
        return refused

    assert [send("p/a") for _ in range(3)] == [None, None, None]
    assert send("p/a") == ("recipient_messages", "'p/a' already has 3 unacknowledged messages waiting")
    assert send("p/b", 401) is not None and send("p/b", 401)[0] == "recipient_bytes"  # type: ignore[index]
    assert send("p/b,p/c", 300) is None and send("p/c", 150)[0] == "recipient_bytes"  # type: ignore[index]
    assert send("p/*", 100) is None  # a glob is charged to the totals only
    assert send("p/d", 100)[0] == "total_messages"  # type: ignore[index]
    assert len(box.messages) == 5 and box.total_bytes == 700
    box.ack("p/a", seq)
    assert box.total_bytes == 400 and box.target_bytes == {"p/b": 300, "p/c": 300}
    assert send("p/d", 700)[0] == "total_bytes" and send("p/d", 400) is None  # type: ignore[index]


def test_project_mail_is_freed_once_its_known_identities_acked() -> None:
    """A message to a project waits for the identities that have acked mail here, then leaves memory."""
    box = Mailbox()
    box.store({"seq": 1, "sender": "boss", "target": "api/a", "payload": "x"})
    box.ack("api/a", 1)
    box.store({"seq": 2, "sender": "boss", "target": "api/b", "payload": "x"})
    box.ack("api/b", 2)  # api/a and api/b are known readers now; api/c has never acked
    box.store({"seq": 3, "sender": "boss", "target": "api", "payload": "to the project"})
    assert box.waiting[3] == {"api/a", "api/b"}
    assert box.pending_counts({"api/c"})["api/c"] == 1  # counted for an unknown member while kept
    box.ack("api/a", 3)
    assert 3 in box.messages and box.pending_counts(set())["api"] == 1
    box.ack("api/b", 3)
    assert 3 not in box.messages and box.is_acked_elsewhere(3)
    assert box.pending_counts({"api/c"}) == {"api/c": 0} and not box.by_target


def test_project_mail_without_known_identities_waits_for_its_name() -> None:
    """With no identity of the project known, only the name itself (or retention) frees it, as before."""
    box = Mailbox()
    box.store({"seq": 1, "sender": "boss", "target": "web", "payload": "x"})
    assert box.waiting[1] == {"web"}
    box.ack("web/x", 1)  # not known at store time: its ack does not free it
    assert 1 in box.messages
    box.ack("web", 1)
    assert 1 not in box.messages
