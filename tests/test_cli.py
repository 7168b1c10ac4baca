"""The real ``synapse`` CLI as a subprocess against a real hub: exit codes and output."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from websockets.asyncio.server import serve

from synapse_channel.hub.server import Hub

from .conftest import (
    SYNAPSE,
    HubFactory,
    RawFactory,
    finish,
    needs,
    open_raw,
    read_line_containing,
    run_cli,
    start_cli,
    start_waiter,
)

DEAD_URI = "ws://127.0.0.1:9"  # discard port: nothing listens


async def test_help_lists_commands() -> None:
    """`synapse --help` lists every command without importing them."""
    code, out, _ = await run_cli("--help")
    assert code == 0
    for name in ("hub", "send", "wait", "who", "listen", "health"):
        assert name in out


async def test_send_to_live_waiter_exits_0_and_wakes_it(hub: Hub) -> None:
    """A directed send to a live waiter: send exits 0, wait prints and exits 0."""
    waiter = await start_waiter(hub.uri, "--name", "alice", "--timeout", "20")
    code, out, err = await run_cli("send", "--uri", hub.uri, "--target", "alice", "hello alice")
    assert (code, out) == (0, ""), err
    wcode, wout, _ = await finish(waiter)
    assert wcode == 0
    assert wout.strip().endswith(": hello alice")
    assert wout.startswith("send-")


async def test_send_to_offline_recipient_is_queued_exit_0(hub: Hub) -> None:
    """Nobody online for a directed message: it is queued in the mailbox, which is success (exit 0)."""
    code, out, _ = await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "api/claude-1", "hi")
    assert code == 0  # a fresh hub: nobody in project api has been seen yet
    code, out, _ = await run_cli("wait", "--uri", hub.uri, "--name", "api/claude-1", "--timeout", "5")
    assert (code, out) == (0, "boss: hi\n")  # now api is a known project (claude-1 waited)
    code, out, _ = await run_cli("send", "--uri", hub.uri, "--target", "api/claude-2", "anyone?")
    assert (code, out) == (0, "queued for api/claude-2 (offline); it reaches them when they next wait\n")
    code, out, _ = await run_cli("send", "--uri", hub.uri, "--target", "bob", "--json", "again?")
    reply = json.loads(out)
    assert code == 0 and reply["outcome"] == "queued" and reply["queued"] is True and reply["delivered"] is False
    assert reply["ok"] is True and reply["recipient_known"] is False


async def test_send_to_a_name_never_seen_says_so(hub: Hub) -> None:
    """A typo (no such name or project seen by the hub) is still queued, exit 0, but the line says so."""
    code, out, _ = await run_cli("wait", "--uri", hub.uri, "--name", "api/claude-1", "--timeout", "0.5")
    assert code == 2  # claude-1 has been online: project api is known from now on
    code, out, _ = await run_cli("send", "--uri", hub.uri, "--target", "apj/claude-1", "typo")
    assert code == 0 and "queued for apj/claude-1 (offline), but the hub does not know that name" in out, out
    code, out, _ = await run_cli("send", "--uri", hub.uri, "--target", "api/claude-9", "--json", "new seat")
    reply = json.loads(out)
    assert code == 0 and (reply["outcome"], reply["recipient_known"]) == ("queued", True)  # a known project
    code, out, _ = await run_cli("send", "--uri", hub.uri, "--target", "api/claude-1,apj/x", "--json", "one typo")
    assert code == 0 and json.loads(out)["recipient_known"] is False  # every part of a list must be known


async def test_send_json_outcome_tells_delivered_from_broadcast(hub: Hub) -> None:
    """--json adds "outcome": delivered for a live recipient, broadcast for an accepted broadcast."""
    waiter = await start_waiter(hub.uri, "--name", "carol", "--timeout", "20")
    code, out, _ = await run_cli("send", "--uri", hub.uri, "--target", "carol", "--json", "hi carol")
    assert code == 0 and json.loads(out)["outcome"] == "delivered"
    await finish(waiter)
    code, out, _ = await run_cli("send", "--uri", hub.uri, "--json", "hi all")
    assert code == 0 and json.loads(out)["outcome"] == "broadcast"


async def test_broadcast_send_exits_0_when_accepted(hub: Hub) -> None:
    """A broadcast exits 0 once the hub has accepted it, with nobody else online."""
    code, _, err = await run_cli("send", "--uri", hub.uri, "everyone")
    assert code == 0, err


async def test_send_require_recipient_broadcast_alone_exits_4(hub: Hub) -> None:
    """--require-recipient with nobody else online: nothing is kept, exit 4 ("no_recipient")."""
    code, out, _ = await run_cli("send", "--uri", hub.uri, "--require-recipient", "anyone")
    assert code == 4 and "no online recipient" in out
    code, out, _ = await run_cli("send", "--uri", hub.uri, "--require-recipient", "--json", "anyone")
    assert code == 4 and json.loads(out)["outcome"] == "no_recipient"


async def test_send_unreachable_exits_1() -> None:
    """Nothing listening: exit 1 with a one-line message, no traceback."""
    code, _, err = await run_cli("send", "--uri", DEAD_URI, "--target", "x", "hi")
    assert code == 1
    assert "could not reach hub" in err and "Traceback" not in err


async def test_send_name_conflict_exits_1(hub: Hub, raw: RawFactory) -> None:
    """Sending as a name that is online is refused (4009) with exit 1."""
    await raw("dave")
    code, _, err = await run_cli("send", "--uri", hub.uri, "--name", "dave", "--target", "x", "hi")
    assert code == 1 and "name already online" in err


async def test_send_outcome_unknown_exits_3() -> None:
    """A peer that welcomes but never answers: exit 3 (outcome unknown)."""

    async def silent(ws: object) -> None:
        await ws.send('{"type":"welcome","sender":"SynapseHub","target":"self","hub_id":"x"}')  # type: ignore[attr-defined]
        await ws.wait_closed()  # type: ignore[attr-defined]

    async with serve(silent, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        code, out, _ = await run_cli(
            "send", "--uri", f"ws://127.0.0.1:{port}", "--target", "x", "--receipt-timeout", "0.5", "hi"
        )
    assert code == 3 and "delivery unknown" in out


async def test_wait_timeout_exits_2(hub: Hub) -> None:
    """Nothing arrives: exit 2 after --timeout, nothing on stdout."""
    code, out, _ = await run_cli("wait", "--uri", hub.uri, "--name", "erin", "--timeout", "0.5")
    assert (code, out) == (2, "")


async def test_wait_unreachable_exits_1() -> None:
    """A bounded wait with no hub exits 1."""
    code, _, err = await run_cli("wait", "--uri", DEAD_URI, "--name", "x", "--timeout", "2")
    assert code == 1 and "could not reach" in err


async def test_wait_superseded_exits_4(hub: Hub) -> None:
    """A newer waiter for the same name takes over; the old one yields with 4."""
    first = await start_waiter(hub.uri, "--name", "frank", "--timeout", "20")
    second = await start_waiter(hub.uri, "--name", "frank", "--timeout", "20")
    code, _, err = await finish(first)
    assert code == 4 and "superseded" in err
    second.terminate()
    await finish(second)


async def test_wait_exits_3_when_hub_shuts_down(hub_factory: HubFactory) -> None:
    """A bounded waiter whose hub goes away exits 3 (re-arm)."""
    hub = await hub_factory()
    waiter = await start_waiter(hub.uri, "--name", "killa", "--timeout", "30")
    await hub.stop()
    code, _, err = await finish(waiter)
    assert code == 3 and "re-arm" in err


async def test_wait_directed_only_ignores_broadcast_but_wakes_on_priority(hub: Hub) -> None:
    """--directed-only: a plain broadcast does not wake; a priority one does."""
    waiter = await start_waiter(hub.uri, "--name", "carol", "--directed-only", "--timeout", "20", "--wake-jitter", "0")
    assert (await run_cli("send", "--uri", hub.uri, "routine broadcast"))[0] == 0
    assert (await run_cli("send", "--uri", hub.uri, "--priority", "urgent broadcast"))[0] == 0
    code, out, _ = await finish(waiter)
    assert code == 0
    assert "urgent broadcast" in out and "routine" not in out


async def test_wait_directed_only_wakes_on_operator(hub: Hub) -> None:
    """--directed-only also wakes on a broadcast from the operator (CEO)."""
    waiter = await start_waiter(hub.uri, "--name", "dan", "--directed-only", "--timeout", "20", "--wake-jitter", "0")
    assert (await run_cli("send", "--uri", hub.uri, "--name", "CEO", "all hands"))[0] == 0
    code, out, _ = await finish(waiter)
    assert (code, out.strip()) == (0, "CEO: all hands")


async def test_wait_ignores_own_messages(hub: Hub) -> None:
    """A waiter is not woken by its own identity's sends."""
    waiter = await start_waiter(hub.uri, "--name", "self1", "--timeout", "1.5", "--wake-jitter", "0")
    await run_cli("send", "--uri", hub.uri, "--name", "self1", "talking to myself")
    code, out, _ = await finish(waiter)
    assert (code, out) == (2, "")


async def test_directed_wake_ignores_jitter(hub: Hub) -> None:
    """A directed wake is immediate even with a huge --wake-jitter."""
    waiter = await start_waiter(hub.uri, "--name", "j1", "--timeout", "60", "--wake-jitter", "1000")
    await run_cli("send", "--uri", hub.uri, "--target", "j1", "direct")
    code, out, _ = await finish(waiter, timeout=10)  # a jittered wake would take minutes
    assert (code, out.strip().split(": ", 1)[1]) == (0, "direct")


async def test_broadcast_wake_is_held_back_by_jitter(hub: Hub) -> None:
    """A broadcast wake waits inside the jitter window (P(<0.5 s of 1000 s) is 0.05%)."""
    waiter = await start_waiter(hub.uri, "--name", "j2", "--timeout", "60", "--wake-jitter", "1000")
    assert (await run_cli("send", "--uri", hub.uri, "fleet update"))[0] == 0
    await asyncio.sleep(0.5)
    assert waiter.returncode is None
    waiter.terminate()
    await finish(waiter)


async def test_who_lists_agents_and_waiters(hub: Hub, raw: RawFactory) -> None:
    """`synapse who` shows agents, waiters and the --project filter."""
    await raw("proj/a1")
    await raw("proj/a1-rx", wake_capability="passive")
    await raw("other/c3")
    code, out, _ = await run_cli("who", "--uri", hub.uri)
    assert code == 0
    assert "proj/a1  (direct agent)" in out and "proj/a1-rx  (passive receiver)" in out
    code, out, _ = await run_cli("who", "--uri", hub.uri, "--project", "proj")
    assert code == 0 and "other/c3" not in out and "Online in proj (1 agents · 1 waiters)" in out


async def test_who_json(hub: Hub, raw: RawFactory) -> None:
    """`who --json` prints the snapshot without the asker itself."""
    import json

    await raw("a")
    code, out, _ = await run_cli("who", "--uri", hub.uri, "--json")
    assert code == 0
    assert json.loads(out)["online_agents"] == ["a"]


async def test_health(hub: Hub) -> None:
    """health exits 0 against a hub and 1 against nothing."""
    assert (await run_cli("health", "--uri", hub.uri))[0] == 0
    code, _, err = await run_cli("health", "--uri", DEAD_URI, "--timeout", "1")
    assert code == 1 and "unhealthy" in err


async def test_listen_prints_messages_for_name(hub: Hub) -> None:
    """`listen --for X` prints chats addressed to X until interrupted."""
    proc = await start_cli("listen", "--uri", hub.uri, "--for", "alice")
    assert proc.stderr is not None and proc.stdout is not None
    await read_line_containing(proc.stderr, "listening")
    await run_cli("send", "--uri", hub.uri, "--name", "bob", "--target", "zed", "not for alice")
    await run_cli("send", "--uri", hub.uri, "--name", "bob", "--target", "alice", "for alice")
    line = await read_line_containing(proc.stdout, "alice")
    assert line.strip() == "bob: for alice"
    proc.send_signal(signal.SIGINT)
    code, _, _ = await finish(proc)
    assert code == 0


async def test_token_cli_paths(hub_factory: HubFactory, tmp_path: Path) -> None:
    """Wrong/missing token: exit 1 'authentication rejected'; a token file works."""
    hub = await hub_factory(token="s3cret-0123456789abc")
    code, _, err = await run_cli("health", "--uri", hub.uri)
    assert code == 1
    code, _, err = await run_cli("send", "--uri", hub.uri, "--token", "nope", "x")
    assert code == 1 and "authentication rejected" in err
    tok = tmp_path / "tok"
    tok.write_text("s3cret-0123456789abc\n")
    tok.chmod(0o644)
    code, _, err = await run_cli("health", "--uri", hub.uri, "--token-file", str(tok))
    assert code == 2 and "readable by others" in err
    tok.chmod(0o600)
    assert (await run_cli("health", "--uri", hub.uri, "--token-file", str(tok)))[0] == 0
    assert (await run_cli("health", "--uri", hub.uri, env={"SYNAPSE_TOKEN": "s3cret-0123456789abc"}))[0] == 0


async def test_bad_argument_is_one_line_and_nonzero() -> None:
    """A bad flag value is a usage error, never a traceback."""
    code, _, err = await run_cli("wait", "--name", "x", "--timeout", "soon")
    assert code == 2 and "Traceback" not in err and "soon" in err


# --------------------------------------------------------------------------- hub process


def _start_hub_process(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """Start `synapse hub --port 0 ARGS`; return it and its URI (read from its banner)."""
    proc = subprocess.Popen(
        [SYNAPSE, "hub", "--port", "0", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "listening on" in line:
            proc.stderr.close()
            return proc, line.split("listening on ", 1)[1].split()[0]
    proc.stderr.close()
    raise AssertionError(f"hub did not start (rc={proc.wait()})")


async def test_hub_sigterm_closes_1001_and_exits_0_quickly(tmp_path: Path) -> None:
    """SIGTERM: every socket gets 1001 and the hub exits 0 within a second."""
    proc, uri = _start_hub_process("--db", str(tmp_path / "h.db"))
    try:
        c = await open_raw(uri, "c")
        await c.send("heartbeat")
        await c.expect("welcome")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        proc.send_signal(signal.SIGTERM)
        assert (await c.closed())[0] == 1001
        rc = await asyncio.to_thread(proc.wait, 5)
        assert rc == 0
        assert loop.time() - t0 < 5  # a generous bound: a stuck close would take 10 s+
    finally:
        proc.kill()
        proc.wait()


async def test_hub_refuses_open_off_loopback_bind() -> None:
    """Binding 0.0.0.0 without a token is refused; --insecure-off-loopback warns."""
    code, _, err = await run_cli("hub", "--host", "0.0.0.0", "--port", "0", "--db", ":memory:")
    assert code == 2 and "refusing to bind" in err
    proc, _ = _start_hub_process("--host", "0.0.0.0", "--insecure-off-loopback", "--db", ":memory:")
    proc.terminate()
    assert proc.wait(5) == 0


async def test_tls_hub_and_wss_clients(tmp_path: Path) -> None:
    """--tls-certfile/--tls-keyfile serve wss://, and clients accept wss:// URIs."""
    needs(shutil.which("openssl") is not None, "openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    proc, uri = _start_hub_process("--db", ":memory:", "--tls-certfile", str(cert), "--tls-keyfile", str(key))
    try:
        assert uri.startswith("wss://")
        env = {"SSL_CERT_FILE": str(cert)}
        code, _out, err = await run_cli("health", "--uri", uri, env=env)
        assert code == 0, err
        code, _, _ = await run_cli("health", "--uri", uri.replace("wss://", "ws://"), "--timeout", "1")
        assert code == 1
    finally:
        proc.terminate()
        proc.wait(5)


def test_python_dash_m_runs_the_cli() -> None:
    """`python -m synapse_channel --help` works like the console script."""
    out = subprocess.run(
        [sys.executable, "-m", "synapse_channel", "--help"], capture_output=True, text=True, check=True
    )
    assert "Commands" in out.stdout


async def test_hub_refuses_a_database_url_it_does_not_speak(tmp_path: Path) -> None:
    """``--db mysql://...`` is a usage error, not a SQLite file named ``mysql:/...`` under the working directory."""
    code, _, err = await run_cli("hub", "--port", "0", "--db", "mysql://db.example/x", timeout=15)
    assert code == 2 and "mysql:// is not a supported database" in err and "Traceback" not in err
    assert not Path("mysql:").exists()
