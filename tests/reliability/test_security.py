"""Security: token refusals, no token in logs, feed or journal, owner-only files, exposure guard."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from ..conftest import SYNAPSE, open_raw, report, run_cli
from ..hubproc import free_port

TOKEN = "s3cret-TOKEN-9f8e7d"


async def test_token_never_leaks_and_files_are_owner_only(tmp_path: Path) -> None:
    """A DEBUG-logging secured hub: refusals work; the token appears in no log, feed, journal or cursor."""
    home = Path(os.environ["SYN_HOME"])
    port = free_port()
    log = tmp_path / "hub.log"
    env = {**os.environ, "SYNAPSE_TOKEN": TOKEN}
    with log.open("w") as fh:
        proc = await asyncio.create_subprocess_exec(
            SYNAPSE,
            "hub",
            "--port",
            str(port),
            "--log-level",
            "DEBUG",
            env=env,
            stdout=fh,
            stderr=fh,
        )
    uri = f"ws://127.0.0.1:{port}"
    try:
        for _ in range(100):
            if (await run_cli("health", "--uri", uri, "--timeout", "0.5", env={"SYNAPSE_TOKEN": TOKEN}))[0] == 0:
                break
        else:
            pytest.fail(f"the hub never answered health at {uri}")
        code, _, err = await run_cli("send", "--uri", uri, "--target", "x", "no token")
        assert code == 1 and "authentication rejected" in err
        code, _, err = await run_cli("send", "--uri", uri, "--token", "wrong-" + TOKEN[::-1], "--target", "x", "bad")
        assert code == 1 and "authentication rejected" in err
        good = {"SYNAPSE_TOKEN": TOKEN}
        assert (await run_cli("send", "--uri", uri, "--name", "boss", "--target", "p/w", "hello", env=good))[0] == 0
        assert (await run_cli("wait", "--uri", uri, "--name", "p/w", "--timeout", "5", env=good))[0] == 0
        raw = await open_raw(uri, "sneaky")
        await raw.send("heartbeat", token=TOKEN)
        await raw.expect("welcome")
        await raw.send("chat", "all", "carrying a token", token=TOKEN, owner_lease="lease-secret")
        await raw.expect("chat")
        await raw.close()
        idle = await open_raw(uri, "idle")  # never authenticates
        await asyncio.sleep(0.1)
        await idle.close()
    finally:
        proc.terminate()
        await proc.wait()
    leaks = []
    for path in [log, *home.rglob("*")]:
        if path.is_file() and TOKEN.encode() in path.read_bytes():
            leaks.append(str(path))
    assert not leaks, f"token found in {leaks}"
    assert b"lease-secret" not in (home / "feed.ndjson").read_bytes()
    for path in home.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
    report(f"security: checked {sum(1 for _ in home.rglob('*'))} files under $SYN_HOME and the DEBUG log")


async def test_exposure_guard() -> None:
    """Off loopback without a token is refused; with a token it starts."""
    code, _, err = await run_cli("hub", "--host", "0.0.0.0", "--port", "0", "--db", ":memory:")
    assert code == 2 and "refusing to bind" in err
    proc = await asyncio.create_subprocess_exec(
        SYNAPSE,
        "hub",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        "--db",
        ":memory:",
        "--relay-log",
        "",
        env={**os.environ, "SYNAPSE_TOKEN": TOKEN},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = await asyncio.wait_for(proc.stderr.readline(), 15)
    while b"listening on" not in line:
        line = await asyncio.wait_for(proc.stderr.readline(), 15)
    proc.terminate()
    assert await proc.wait() == 0
