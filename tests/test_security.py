"""The hostile-tenant suite: least privilege on a real hub, open and seated.

For every verb that reads or changes per-identity state, a second connection
(open hub) and a second seat (seated hub) try it against another identity and
are refused with ``FORBIDDEN``; afterwards the victim's mailbox still replays
every message and its pending count is unchanged. Bystanders never receive a
directed chat to someone else. Observers change nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from synapse_channel.hub import server
from synapse_channel.hub.config import HubConfig, InsecureBindError
from synapse_channel.hub.server import Hub
from synapse_channel.protocol import name_problem
from synapse_channel.seats import SeatStore

from .conftest import TIMEOUT, HubFactory, Raw, needs, open_raw, read_line_containing, run_cli, start_cli


async def register(uri: str, name: str, **reg: Any) -> Raw:
    """Open a socket, register ``name`` and read its ``welcome``."""
    client = await open_raw(uri, name)
    await client.send("heartbeat", payload="online", protocol_version=7, **reg)
    await client.expect("welcome")
    return client


async def fill_mailbox(uri: str, victim: str, n: int = 3, **reg: Any) -> list[int]:
    """``n`` directed chats to ``victim`` while it is offline; return their seqs."""
    sender = await register(uri, "carol", **reg)
    seqs = []
    for i in range(n):
        await sender.send("chat", victim, f"secret {i} for {victim}", receipt_requested=True, client_msg_id=f"m{i}")
        seqs.append((await sender.expect("delivery_receipt", client_msg_id=f"m{i}"))["message_seq"])
    await sender.close()
    return seqs


async def pending(uri: str, identity: str, **reg: Any) -> int:
    who = await register(uri, "counter", quiet=True, **reg)
    await who.send("who_request")
    snap = await who.expect("who_snapshot")
    await who.close()
    return int(snap["mailbox_pending"].get(identity, 0))


async def replay(uri: str, identity: str, n: int, **reg: Any) -> list[str]:
    """What ``identity``'s own waiter gets replayed from its mailbox."""
    waiter = await register(uri, f"{identity}-rx", mailbox=True, mailbox_for=identity, **reg)
    got = [(await waiter.expect("chat"))["payload"] for _ in range(n)]
    await waiter.close()
    return got


async def forbidden(client: Raw) -> dict[str, Any]:
    return await client.expect("error", code="FORBIDDEN")


async def cross_identity_attempts(attacker: Raw, victim: str, seq: int) -> None:
    """Every per-identity verb, aimed at ``victim``: each is refused and leaks nothing."""
    await attacker.send("ack", seq=seq, mailbox_for=victim)
    await forbidden(attacker)
    await attacker.send("history_request", inbox_query={"identity": victim, "since_seq": 0})
    await forbidden(attacker)
    await attacker.send("history_request", limit=500)
    history = (await attacker.expect("history_snapshot"))["history"]
    assert not [f for f in history if f["target"] == victim], "history leaked another identity's directed chats"
    await attacker.send("resume_request", since=0)
    messages = (await attacker.expect("resume_snapshot"))["messages"]
    assert not [f for f in messages if f["target"] == victim], "resume leaked another identity's directed chats"
    await attacker.send("message_status_request", seq=seq)
    assert (await attacker.expect("message_status"))["state"] == "unknown"


def audit_rows(db: Path, kind: str) -> list[dict[str, Any]]:
    con = sqlite3.connect(db)
    try:
        return [json.loads(d) for (d,) in con.execute("SELECT data FROM events WHERE kind = ?", (kind,))]
    finally:
        con.close()


# --------------------------------------------------------------------------- open hub


async def test_open_hub_second_connection_cannot_touch_another_mailbox(hub: Hub, tmp_path: Path) -> None:
    seqs = await fill_mailbox(hub.uri, "alice")
    before = await pending(hub.uri, "alice")
    assert before == 3
    attacker = await open_raw(hub.uri, "mallory")
    await attacker.send("heartbeat", payload="online", mailbox=True, mailbox_for="alice")
    await attacker.expect("welcome")
    await forbidden(attacker)
    await attacker.nothing("chat", within=0.3)  # no replay of alice's mail
    await cross_identity_attempts(attacker, "alice", seqs[-1])
    await attacker.send("chat", "all", "still usable")  # the connection stays usable after refusals
    await attacker.close()
    assert await pending(hub.uri, "alice") == before
    assert await replay(hub.uri, "alice", 3) == [f"secret {i} for alice" for i in range(3)]
    denied = audit_rows(tmp_path / "hub.db", "access_denied")
    assert {d["verb"] for d in denied} >= {"mailbox_for", "ack", "inbox_query"}
    assert all(d["name"] == "mallory" and d["remote"] == "127.0.0.1" for d in denied)


async def test_own_mailbox_still_works_for_waiter_and_ack(hub: Hub) -> None:
    seqs = await fill_mailbox(hub.uri, "alice", 2)
    waiter = await register(hub.uri, "alice-rx", mailbox=True, mailbox_for="alice")
    assert (await waiter.expect("chat"))["seq"] == seqs[0]
    await waiter.send("history_request", inbox_query={"identity": "alice", "since_seq": 0})
    page = (await waiter.expect("history_snapshot"))["inbox_page"]
    assert [m["seq"] for m in page["messages"]] == seqs
    await waiter.send("ack", seq=seqs[-1], mailbox_for="alice")
    await waiter.close()
    assert await pending(hub.uri, "alice") == 0


async def test_bystander_never_receives_directed_chat(hub: Hub) -> None:
    alice = await register(hub.uri, "proj/alice")
    bystander = await register(hub.uri, "proj/carol")
    listener = await open_raw(hub.uri, "unnamed")  # admitted, not registered: hears broadcasts only
    bob = await register(hub.uri, "bob")
    await bob.send("chat", "proj/alice", "for alice only")
    assert (await alice.expect("chat"))["payload"] == "for alice only"
    await bob.send("chat", "all", "for everyone")
    assert (await bystander.expect("chat"))["payload"] == "for everyone"  # ordered after the directed one
    await bystander.send("history_request", limit=50)
    assert [f["payload"] for f in (await bystander.expect("history_snapshot"))["history"]] == ["for everyone"]
    await listener.send_raw("")
    for client in (bystander, listener):
        await client.ws.close()
    await bob.send("chat", "proj", "project-wide")  # a project target reaches the project's seats
    await alice.expect("chat", payload="project-wide")


async def test_compat_fanout_is_an_explicit_option(hub_factory: HubFactory) -> None:
    hub = await hub_factory(compat_fanout=True)
    bystander = await register(hub.uri, "carol")
    bob = await register(hub.uri, "bob")
    await bob.send("chat", "alice", "copied to everyone")
    assert (await bystander.expect("chat"))["payload"] == "copied to everyone"


@pytest.mark.parametrize(
    "name",
    [
        "a,b",
        "api/*",
        "who?",
        "x[1]",
        "../x",
        "api/../x",
        "has space",
        "tab\there",
        "evil\u202eexe",
        "x" * 129,
        "",
        "/lead",
        "trail/",
        "caf\u00e9",
        "ALL",
        "All",
        "self",
        "System",
        "SynapseHub2",
    ],
)
async def test_bad_names_are_refused_at_registration(hub: Hub, name: str) -> None:
    assert name_problem(name) is not None
    client = await open_raw(hub.uri, name)
    await client.send("heartbeat", payload="online")
    await client.expect("welcome")
    if name.casefold() in ("", "all", "self", "system") or name.startswith("SynapseHub"):
        assert "reserved" in (await client.expect("name_conflict"))["payload"]
        assert await client.closed() == (4009, "reserved identity")  # as the 0.99 clients expect
    elif name.strip() and len(name) <= 200 and not any(c.isspace() or ord(c) < 32 for c in name):
        assert (await client.expect("error"))["code"] == "BAD_NAME"
        assert await client.closed() == (4013, "identity refused: invalid name")
    else:  # the envelope check refuses it even before registration
        assert (await client.expect("error"))["code"] in ("BAD_FIELD", "BAD_NAME")


@pytest.mark.parametrize("name", ["api/claude-1", "api/claude-1-rx", "CEO", "send-1234", "a.b@c+d=e_f", "p/a~who-12"])
def test_good_names_pass_the_grammar(name: str) -> None:
    assert name_problem(name) is None


async def test_roles_must_be_granted_by_the_hub(hub_factory: HubFactory) -> None:
    hub = await hub_factory(allowed_roles=frozenset({"reviewer"}))
    sneaky = await open_raw(hub.uri, "mallory")
    await sneaky.send("heartbeat", payload="online", roles=["alice"])
    await sneaky.expect("welcome")
    assert (await sneaky.expect("error"))["code"] == "ROLE_REFUSED"
    assert await sneaky.closed() == (4013, "identity refused: role not granted")
    reviewer = await register(hub.uri, "rev1", roles=["reviewer"])
    bob = await register(hub.uri, "bob")
    await bob.send("chat", "reviewer", "please review")
    assert (await reviewer.expect("chat"))["payload"] == "please review"


async def test_priority_comes_from_the_configured_senders(hub_factory: HubFactory) -> None:
    hub = await hub_factory(priority_senders=frozenset({"lead"}))
    rx = await register(hub.uri, "w1")
    for sender in ("CEO", "lead"):
        client = await register(hub.uri, sender)
        await client.send("chat", "w1", f"from {sender}")
        frame = await rx.expect("chat", payload=f"from {sender}")
        assert frame.get("priority") is (True if sender == "lead" else None)


async def test_impostor_cannot_release_without_the_epoch(hub: Hub) -> None:
    owner = await register(hub.uri, "p/a")
    await owner.send("claim", task_id="T1", paths=["src/a.py"])
    epoch = (await owner.expect("claim_granted"))["epoch"]
    await owner.close()
    impostor = await register(hub.uri, "p/a")  # the owner's name, but not its epoch
    for verb in ("release", "renew", "checkpoint", "handoff"):
        await impostor.send(verb, task_id="T1", to="p/b", checkpoint="x")
        denied = await impostor.expect("release_denied" if verb == "release" else "error")
        assert denied.get("reason_code", denied.get("code")) == "EPOCH_REQUIRED"
    await impostor.send("release", task_id="T1", epoch=epoch)
    await impostor.expect("release_granted")


# --------------------------------------------------------------------------- other OS users


#: A stdlib-only WebSocket client (the venv's interpreter lives under /root, out of nobody's reach):
#: handshake, one masked text frame, then report the close code and reason the hub sends.
NOBODY_CLIENT = """
import base64, json, os, socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((host, port), timeout=10)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET / HTTP/1.1\\r\\nHost: {host}:{port}\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
           f"Sec-WebSocket-Key: {key}\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n").encode())
buf = b""
while b"\\r\\n\\r\\n" not in buf:
    buf += s.recv(4096)
buf = buf.split(b"\\r\\n\\r\\n", 1)[1]
data, mask = sys.argv[3].encode(), os.urandom(4)
size = bytes([0x80 | len(data)]) if len(data) < 126 else bytes([0x80 | 126]) + struct.pack("!H", len(data))
head = bytes([0x81]) + size
s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
def need(n):
    global buf
    while len(buf) < n:
        more = s.recv(65536)
        if not more:
            print(json.dumps([None, ""])); sys.exit(0)
        buf += more
    out, buf = buf[:n], buf[n:]
    return out
while True:
    b0, b1 = need(2)
    n = b1 & 0x7F
    n = struct.unpack("!H", need(2))[0] if n == 126 else struct.unpack("!Q", need(8))[0] if n == 127 else n
    body = need(n)
    if b0 & 0x0F == 8:
        print(json.dumps([struct.unpack("!H", body[:2])[0], body[2:].decode()])); break
"""


def _as_nobody(uri: str, frame: dict[str, Any]) -> tuple[int | None, str]:
    """Register ``frame`` from a process running as user ``nobody``; return the close it got."""
    host, port = uri.removeprefix("ws://").rsplit(":", 1)
    out = subprocess.run(
        ["/usr/bin/python3", "-c", NOBODY_CLIENT, host, port, json.dumps(frame)],
        user="nobody",
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    code, reason = json.loads(out.stdout)
    return code, reason


def _need_root() -> None:
    needs(os.geteuid() == 0, "root (to run a client as the OS user 'nobody')")


async def test_other_os_user_cannot_take_over_or_attach_to_an_online_identity(hub: Hub) -> None:
    _need_root()
    waiter = await register(hub.uri, "alice-rx", mailbox=True, takeover=True)
    base = {"target": "System", "type": "heartbeat", "payload": "online", "timestamp": 1.0}
    for name in ("alice-rx", "alice-pane-rx", "alice", "alice~peek", "alice-who"):
        code, reason = await asyncio.to_thread(_as_nobody, hub.uri, {**base, "sender": name, "takeover": True})
        assert (code, reason) == (4016, "name owned"), name
    await waiter.send("heartbeat")  # the real waiter was never displaced
    await waiter.nothing("error", within=0.2)
    same_user = await register(hub.uri, "alice-rx", takeover=True)  # the same OS user still may (a re-armed wait)
    assert await waiter.closed() == (4010, "superseded")
    await same_user.close()


# --------------------------------------------------------------------------- seats


async def seated_hub(hub_factory: HubFactory, tmp_path: Path, **extra: Any) -> tuple[Hub, dict[str, str]]:
    with SeatStore(tmp_path / "hub.db") as store:
        secrets = {
            "alice": store.add("alice", "agent"),
            "carol": store.add("carol", "agent"),
            "mallory": store.add("mallory", "agent"),
            "watcher": store.add("watcher", "observer"),
            "boss": store.add("boss", "admin"),
            "team": store.add("team", "agent", ("api/*",)),
        }
    hub = await hub_factory(**extra)
    return hub, secrets


async def test_seat_secret_only_speaks_for_its_names(hub_factory: HubFactory, tmp_path: Path) -> None:
    hub, secrets = await seated_hub(hub_factory, tmp_path)
    for name in ("alice", "alice-rx", "carol", "api/x"):
        client = await open_raw(hub.uri, name)
        await client.send("heartbeat", payload="online", token=secrets["mallory"])
        await client.expect("welcome")
        denied = await client.expect("auth_denied")
        assert "may not use the name" in denied["payload"]
        assert await client.closed() == (4010, "auth denied: name not granted to this seat")
    for name in ("api/claude-1", "api/claude-1-rx", "api/claude-1-who", "api/claude-1~who-77"):
        await (await register(hub.uri, name, token=secrets["team"])).close()
    for token, why in ((None, "no token"), (secrets["alice"][:-1] + "x", "wrong token"), ("short", "wrong token")):
        client = await open_raw(hub.uri, "alice")
        await client.send("heartbeat", payload="online", **({"token": token} if token else {}))
        await client.expect("auth_denied")
        assert (await client.closed())[0] == 4010
        assert audit_rows(tmp_path / "hub.db", "auth_denied")[-1]["reason"] == why
    raw_db = (tmp_path / "hub.db").read_bytes()
    assert not any(s.encode() in raw_db for s in secrets.values()), "a seat secret is stored in clear"


async def test_second_seat_is_refused_every_cross_identity_verb(hub_factory: HubFactory, tmp_path: Path) -> None:
    hub, secrets = await seated_hub(hub_factory, tmp_path)
    seqs = await fill_mailbox(hub.uri, "alice", token=secrets["carol"])
    before = await pending(hub.uri, "alice", token=secrets["boss"])
    mallory = await open_raw(hub.uri, "mallory")
    await mallory.send("heartbeat", payload="online", token=secrets["mallory"], mailbox=True, mailbox_for="alice")
    await mallory.expect("welcome")
    await forbidden(mallory)
    await cross_identity_attempts(mallory, "alice", seqs[0])
    await mallory.close()
    assert await pending(hub.uri, "alice", token=secrets["boss"]) == before == 3
    got = await replay(hub.uri, "alice", 3, token=secrets["alice"])
    assert got == [f"secret {i} for alice" for i in range(3)]


async def test_observer_reads_but_never_writes(hub_factory: HubFactory, tmp_path: Path) -> None:
    hub, secrets = await seated_hub(hub_factory, tmp_path)
    watcher = await register(hub.uri, "watcher", token=secrets["watcher"])
    for verb, extra in (
        ("chat", {"target": "all"}),
        ("claim", {"task_id": "T"}),
        ("ledger_task", {"task_id": "B", "title": "x"}),
        ("release", {"task_id": "T", "epoch": 1}),
    ):
        await watcher.send(verb, **extra)
        assert "observer" in (await forbidden(watcher))["payload"]
    for verb in ("who_request", "board_request", "state_request"):
        await watcher.send(verb)
        await watcher.expect(
            {"who_request": "who_snapshot", "board_request": "board_snapshot"}.get(verb, "state_snapshot")
        )
    assert hub.core is not None and not hub.core.claims.live and not hub.core.history


async def test_admin_may_act_for_anyone(hub_factory: HubFactory, tmp_path: Path) -> None:
    hub, secrets = await seated_hub(hub_factory, tmp_path)
    seqs = await fill_mailbox(hub.uri, "alice", 2, token=secrets["carol"])
    alice = await register(hub.uri, "alice", token=secrets["alice"])
    await alice.send("claim", task_id="T1", paths=["a"])
    await alice.expect("claim_granted")
    boss = await register(hub.uri, "boss", token=secrets["boss"])
    await boss.send("history_request", inbox_query={"identity": "alice", "since_seq": 0})
    assert [m["seq"] for m in (await boss.expect("history_snapshot"))["inbox_page"]["messages"]] == seqs
    await boss.send("release", task_id="T1")
    await boss.expect("release_granted", task_id="T1")
    carol = await register(hub.uri, "carol", token=secrets["carol"])
    await carol.send("chat", "alice", "admins see directed traffic")
    assert (await boss.expect("chat"))["payload"] == "admins see directed traffic"


async def test_revoke_and_rotate_take_effect_on_a_running_hub(hub_factory: HubFactory, tmp_path: Path) -> None:
    hub, secrets = await seated_hub(hub_factory, tmp_path)
    mallory = await register(hub.uri, "mallory", token=secrets["mallory"])
    alice = await register(hub.uri, "alice", token=secrets["alice"])
    env = {"SYN_HOME": str(tmp_path / "unused")}
    code, _, err = await run_cli("seat", "revoke", "mallory", "--db", str(tmp_path / "hub.db"), env=env)
    assert code == 0, err
    assert await mallory.closed(timeout=3) == (4010, "auth denied: seat revoked or rotated")
    code, out, _ = await run_cli("seat", "rotate", "alice", "--db", str(tmp_path / "hub.db"), env=env)
    assert code == 0
    new_secret = out.strip().splitlines()[-1]
    assert (await alice.closed(timeout=3))[0] == 4010
    for secret, ok in ((secrets["alice"], False), (new_secret, True), (secrets["mallory"], False)):
        client = await open_raw(hub.uri, "alice")
        await client.send("heartbeat", payload="online", token=secret)
        frame = await client.expect("welcome" if ok else "auth_denied")
        assert frame["type"] == ("welcome" if ok else "auth_denied")
        await client.close()


async def test_a_seat_added_to_a_running_hub_works_at_once(
    hub_factory: HubFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`seat add` then the agent's first command: no wait for the seat poll (docs/security.md does this)."""
    monkeypatch.setattr(server, "SEAT_POLL", 3600.0)  # the poll never comes: only the check at auth can help
    hub, _ = await seated_hub(hub_factory, tmp_path)
    with SeatStore(tmp_path / "hub.db") as store:
        secret = store.add("dave", "agent")
    await (await register(hub.uri, "dave", token=secret)).close()
    client = await open_raw(hub.uri, "dave")
    await client.send("heartbeat", payload="online", token=secret[:-1] + "x")
    await client.expect("auth_denied")  # a wrong secret is still refused
    assert (await client.closed())[0] == 4010


async def test_seat_cli_prints_secret_last_and_lists_without_it(tmp_path: Path) -> None:
    db = str(tmp_path / "hub.db")
    code, out, err = await run_cli("seat", "add", "api/claude-1", "--names", "api/claude-1-*", "--db", db)
    assert code == 0, err
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("synseat_") and len(secret) > 40
    code, out, _ = await run_cli("seat", "list", "--json", "--db", db)
    assert code == 0 and secret not in out
    assert json.loads(out)[0]["name"] == "api/claude-1" and json.loads(out)[0]["role"] == "agent"
    code, _, err = await run_cli("seat", "add", "api/claude-1", "--db", db)
    assert code == 1 and "already exists" in err and "Traceback" not in err
    code, _, err = await run_cli("seat", "add", "bad name", "--db", db)
    assert code == 1 and "bad seat name" in err
    code, _, err = await run_cli("seat", "add", "x", "--role", "root", "--db", db)
    assert code == 2 and "root" in err
    code, out, _ = await run_cli("audit", "--json", "--db", db)
    assert code == 0 and [json.loads(line)["kind"] for line in out.splitlines()] == ["seat_added"]


# --------------------------------------------------------------------------- embedding guards


@pytest.mark.parametrize(
    "settings",
    [{"host": "0.0.0.0"}, {"token": " "}, {"token": "short-token"}, {"host": "0.0.0.0", "token": "    " * 5}],
)
async def test_embedded_hub_refuses_unsafe_settings(tmp_path: Path, settings: dict[str, Any]) -> None:
    hub = Hub(HubConfig(port=0, db=tmp_path / "h.db", relay_log=None, **settings))
    with pytest.raises(InsecureBindError):
        await hub.start()


async def test_cli_hub_refuses_a_blank_token(tmp_path: Path) -> None:
    code, _, err = await run_cli("hub", "--port", "0", "--token", " ", "--db", str(tmp_path / "h.db"), timeout=TIMEOUT)
    assert code == 2 and "shorter than 16" in err and "Traceback" not in err


async def test_first_seat_locks_a_running_open_hub_and_revoking_all_never_reopens_it(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    hub = await hub_factory()
    open_conn = await register(hub.uri, "early")
    with SeatStore(tmp_path / "hub.db") as store:
        secret = store.add("alice", "agent")
    assert await open_conn.closed(timeout=3) == (4010, "auth denied: this hub now requires a seat")
    with SeatStore(tmp_path / "hub.db") as store:
        store.revoke("alice")
    await asyncio.sleep(1.2)  # past the hub's seat poll
    for token in (None, secret):
        client = await open_raw(hub.uri, "late")
        await client.send("heartbeat", payload="online", **({"token": token} if token else {}))
        await client.expect("auth_denied")
    assert hub.core is not None and hub.core.security["auth"] == "seats"


async def test_cli_fails_fast_on_forbidden(hub_factory: HubFactory, tmp_path: Path) -> None:
    """An observer's send and a wait for another identity exit 1 at once with the hub's reason, not a timeout."""
    hub, secrets = await seated_hub(hub_factory, tmp_path)
    env = {"SYNAPSE_TOKEN": secrets["watcher"]}
    code, out, _ = await run_cli("send", "--uri", hub.uri, "--name", "watcher", "--target", "alice", "x", env=env)
    assert code == 1 and "refused by the hub (FORBIDDEN)" in out
    env = {"SYNAPSE_TOKEN": secrets["mallory"]}
    args = ("wait", "--uri", hub.uri, "--name", "mallory", "--for", "alice", "--timeout", "0")
    code, _, err = await run_cli(*args, env=env, timeout=TIMEOUT)
    assert code == 1 and "may not read the mailbox of 'alice'" in err


async def test_listen_for_another_seats_identity_is_refused(hub_factory: HubFactory, tmp_path: Path) -> None:
    """`listen --for alice` with mallory's seat would connect as alice~listen-PID: refused, and nothing is read."""
    hub, secrets = await seated_hub(hub_factory, tmp_path)
    await fill_mailbox(hub.uri, "alice", 1, token=secrets["carol"])
    env = {"SYNAPSE_TOKEN": secrets["mallory"]}
    code, out, err = await run_cli("listen", "--uri", hub.uri, "--for", "alice", env=env, timeout=TIMEOUT)
    assert code == 1 and "this seat may not use that name" in err and "secret 0" not in out
    assert audit_rows(tmp_path / "hub.db", "access_denied")[-1]["seat"] == "mallory"
    env = {"SYNAPSE_TOKEN": secrets["alice"]}
    proc = await start_cli("listen", "--uri", hub.uri, "--for", "alice", env=env)
    assert proc.stderr is not None and proc.stdout is not None
    await read_line_containing(proc.stderr, "listening")
    carol = await register(hub.uri, "carol", token=secrets["carol"])
    await carol.send("chat", "alice", "live for alice")
    assert "carol: live for alice" in await read_line_containing(proc.stdout, "live for alice")
    proc.terminate()
    await proc.wait()
