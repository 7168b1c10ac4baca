"""The Codex adapter against the real, pinned ``codex`` CLI, a fake Responses API and a real hub.

``synapse adapters install codex`` (the real CLI, as a subprocess) writes the
hooks into a throw-away git project; ``codex exec`` then runs there against
:mod:`.fake_openai` (every model request is recorded) with ``SYN_IDENTITY``
and ``SYNAPSE_URI`` pointing its hooks at the in-process hub. Codex's own
verdict on our hooks comes from its app server (``hooks/list``: the key,
the hash Codex computes and its trust status), and its own way of recording
an approval (``config/batchWrite`` under ``hooks.state``) is compared with
what ``--trust`` writes.

The hub runs in the test's event loop, so Codex (whose hooks call the hub) is
always driven with ``asyncio.create_subprocess_exec``; waits on the fake
server run in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from synapse_channel.hub.server import Hub
from synapse_codex.trust import our_hooks

from ..conftest import run_cli
from .conftest import installed
from .fake_openai import serve, setup
from .fakebase import FakeModelServer, Recorded, _decoded
from .install import Pin

ID = "api/codex-1"
RUN_TIMEOUT = 90.0
STEP = "synapse adapters install codex --trust"


@pytest.fixture
def codex() -> Pin:
    return installed("codex")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh git repository as the working directory (where ``adapters install`` writes)."""
    root = tmp_path / "proj"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def model() -> Iterator[FakeModelServer]:
    with serve() as server:
        yield server


def codex_env(model: FakeModelServer, project: Path, hub: Hub) -> dict[str, str]:
    """Codex in the test's temp HOME (CODEX_HOME inside it) pointed at the fake model; hooks at the hub as ``ID``."""
    home = Path(os.environ["HOME"])
    return {**os.environ, **setup(model, home, project), "SYN_IDENTITY": ID, "SYNAPSE_URI": hub.uri}


def config_toml(env: dict[str, str]) -> Path:
    return Path(env["CODEX_HOME"]) / "config.toml"


async def run_codex(pin: Pin, project: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run ``codex ARGS`` to completion in ``project`` (killed, and the test failed, if it hangs)."""
    proc = await start_codex(pin, project, env, *args)
    return await finish(proc)


async def start_codex(pin: Pin, project: Path, env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(pin.path),
        *args,
        cwd=project,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process, timeout: float = RUN_TIMEOUT) -> tuple[int, str, str]:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"codex did not exit within {timeout}s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def app_server(pin: Pin, project: Path, env: dict[str, str], *calls: tuple[str, dict[str, Any]]) -> list[Any]:
    """Call Codex's own app server (JSON-RPC over stdio): initialize, then ``calls`` in order; their results."""
    proc = await asyncio.create_subprocess_exec(
        str(pin.path),
        "app-server",
        cwd=project,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None

    async def call(n: int, method: str, params: dict[str, Any]) -> Any:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": n, "method": method, "params": params}).encode() + b"\n")
        await proc.stdin.drain()
        while True:
            line = await proc.stdout.readline()
            assert line, f"codex app-server exited during {method}"
            reply = json.loads(line)
            if reply.get("id") == n:
                assert "error" not in reply, reply
                return reply["result"]

    results = []
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            await call(0, "initialize", {"clientInfo": {"name": "synapse-tests", "version": "1"}})
            proc.stdin.write(b'{"jsonrpc": "2.0", "method": "initialized"}\n')
            for n, (method, params) in enumerate(calls, start=1):
                results.append(await call(n, method, params))
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    return results


async def codex_hooks(pin: Pin, project: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """The hooks Codex itself sees for ``project`` (``hooks/list``): key, command, timeout, hash, trust status."""
    (listed,) = await app_server(pin, project, env, ("hooks/list", {"cwds": [str(project)]}))
    (entry,) = listed["data"]
    assert not entry["errors"], entry
    found: list[dict[str, Any]] = entry["hooks"]
    return found


async def install(env: dict[str, str], *args: str) -> tuple[int, str]:
    code, out, err = await run_cli("adapters", "install", "codex", *args, env=env)
    assert code in (0, 3), out + err
    return code, out


async def status(env: dict[str, str], scope: str = "project") -> dict[str, Any]:
    code, out, err = await run_cli("adapters", "status", "--json", env=env)
    assert code == 0, err
    row: dict[str, Any] = next(r for r in json.loads(out) if r["adapter"] == "codex")[scope]
    return row


async def send(hub: Hub, text: str) -> None:
    code, out, err = await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", ID, text)
    assert code in (0, 1), out + err  # 1: nobody online, but the message waits in the mailbox


def turns(model: FakeModelServer, marker: str) -> list[Recorded]:
    """The model requests of the session whose prompt carries ``marker``, in order."""
    return [
        r
        for r in list(model.requests)
        if r.method == "POST" and r.path.split("?")[0].endswith("/responses") and marker in _decoded(r.body)
    ]


def text_of(rec: Recorded) -> str:
    return _decoded(rec.body)


# ---------------------------------------------------------------------- the gate is real


async def test_untrusted_install_names_the_step_and_codex_skips_the_hooks(
    codex: Pin, project: Path, model: FakeModelServer, hub: Hub
) -> None:
    """Without --trust: exit 3 and the one step; status says will not run; Codex really runs none of them.

    Then the printed step is run as printed, and the next session gets the message.
    """
    env = codex_env(model, project, hub)
    code, out = await install(env)
    assert code == 3, out
    assert f"one step left: {STEP}" in out
    row = await status(env)
    assert row["installed"] and row["current"]
    assert row["trusted"] is False and row["will_run"] is False and row["step"] == STEP
    listed = await codex_hooks(codex, project, env)  # Codex's own verdict agrees
    # session start, prompt, stop and the pre-edit guard (apply_patch)
    assert sorted(h["trustStatus"] for h in listed) == ["untrusted"] * 4

    await send(hub, "alpha: rebase on main before you start")
    code, out, err = await run_codex(codex, project, env, "exec", "say hi PROMPT-U")
    assert code == 0, err
    (request,) = turns(model, "PROMPT-U")  # one request, no hook context, no Stop continuation
    assert "alpha: rebase on main" not in text_of(request) and "synapse:" not in text_of(request)

    code, out = await install(env, "--trust")  # the printed step, as printed
    assert code == 0 and "they will run" in out, out
    row = await status(env)
    assert row["trusted"] is True and row["will_run"] is True and row["step"] is None
    code, _, err = await run_codex(codex, project, env, "exec", "say hi PROMPT-T")
    assert code == 0, err
    first = text_of(turns(model, "PROMPT-T")[0])
    assert "alpha: rebase on main before you start" in first  # it was still waiting: no hook had run


# ---------------------------------------------------------------------- trusted: the wake loop works


async def test_queued_message_reaches_the_first_model_request(
    codex: Pin, project: Path, model: FakeModelServer, hub: Hub
) -> None:
    """SessionStart: a message waiting in the mailbox is in the context of the session's first request."""
    env = codex_env(model, project, hub)
    code, out = await install(env, "--trust")
    assert code == 0 and "hooks installed and trusted; they will run" in out, out
    await send(hub, "alpha: rebase on main before you start")
    code, out, err = await run_codex(codex, project, env, "exec", "say hi PROMPT-A")
    assert code == 0, err
    assert out.strip().endswith("Done.")
    requests = turns(model, "PROMPT-A")
    assert len(requests) == 1, [text_of(r)[-300:] for r in requests]  # nothing more waited: it just stopped
    first = text_of(requests[0])
    assert "alpha: rebase on main before you start" in first
    assert f"synapse: you are {ID}." in first and f"1 new message(s) for {ID}" in first
    # handed over once: the mailbox cursor moved past it, so the next hook has nothing to say
    code, out, _ = await run_cli("hook", "codex", "prompt", stdin=b"{}", env=env)
    assert (code, out.strip()) == (0, "{}")


async def test_message_sent_while_busy_continues_the_session_then_it_ends(
    codex: Pin, project: Path, model: FakeModelServer, hub: Hub
) -> None:
    """Stop: a message that arrives while the model works becomes the next instruction; then Codex stops."""
    env = codex_env(model, project, hub)
    assert (await install(env, "--trust"))[0] == 0
    model.hold()
    proc = await start_codex(codex, project, env, "exec", "work on it PROMPT-B")
    try:
        await asyncio.to_thread(model.wait_until, lambda: bool(turns(model, "PROMPT-B")), 60, "the first model request")
        await send(hub, "beta: also update the changelog")
    finally:
        model.release()
    code, _, err = await finish(proc)
    assert code == 0, err
    requests = turns(model, "PROMPT-B")
    assert len(requests) == 2, [text_of(r)[-300:] for r in requests]
    assert "beta: also update the changelog" not in text_of(requests[0])
    second = requests[1].json()
    last = json.dumps(second["input"][-1])
    assert "beta: also update the changelog" in _decoded(last)
    assert "Handle these, then stop." in _decoded(last)
    assert second["input"][-1]["role"] == "user" and '<hook_prompt hook_run_id="stop:' in _decoded(
        last
    )  # Stop's reason


async def test_user_scope_through_a_symlinked_codex_home(
    codex: Pin, project: Path, model: FakeModelServer, hub: Hub, tmp_path: Path
) -> None:
    """--scope user writes $CODEX_HOME/hooks.json; trust is keyed by the canonical path Codex uses."""
    env = codex_env(model, project, hub)
    link = tmp_path / "codex-home-link"
    link.symlink_to(env["CODEX_HOME"], target_is_directory=True)
    env = {**env, "CODEX_HOME": str(link)}
    code, out = await install(env, "--scope", "user")
    assert code == 3 and f"one step left: {STEP} --scope user" in out, out
    assert not (project / ".codex").exists()
    code, out = await install(env, "--scope", "user", "--trust")
    assert code == 0 and "they will run" in out, out
    real = Path(env["HOME"]) / ".codex"
    states = tomllib.loads((real / "config.toml").read_text())["hooks"]["state"]
    assert sorted(states) == sorted(
        f"{real.resolve()}/hooks.json:{e}:0:0" for e in ("pre_tool_use", "session_start", "stop", "user_prompt_submit")
    )
    row = await status(env, "user")
    assert row["trusted"] is True and row["will_run"] and row["file"] == str(real.resolve() / "hooks.json")
    await send(hub, "eta: user-wide hooks work")
    code, _, err = await run_codex(codex, project, env, "exec", "say hi PROMPT-H")
    assert code == 0, err
    assert "eta: user-wide hooks work" in text_of(turns(model, "PROMPT-H")[0])


# ---------------------------------------------------------------------- trust as Codex records it


async def test_trust_records_what_codex_itself_records_on_approval(
    codex: Pin, project: Path, model: FakeModelServer, hub: Hub
) -> None:
    """--trust writes what Codex's own approval writes (config/batchWrite under hooks.state), hashes included."""
    env = codex_env(model, project, hub)
    assert (await install(env))[0] == 3
    config = config_toml(env)
    original = config.read_text()
    listed = await codex_hooks(codex, project, env)
    ours = dict(our_hooks(project / ".codex" / "hooks.json"))
    assert ours == {h["key"]: h["currentHash"] for h in listed}  # the key and hash recipe is Codex's
    approval = {h["key"]: {"trusted_hash": h["currentHash"]} for h in listed}
    edit = {"keyPath": "hooks.state", "value": approval, "mergeStrategy": "upsert"}
    params = {"edits": [edit], "filePath": None, "expectedVersion": None, "reloadUserConfig": True}
    await app_server(codex, project, env, ("config/batchWrite", params))
    by_codex = tomllib.loads(config.read_text())
    assert by_codex != tomllib.loads(original)
    config.write_text(original)
    code, out = await install(env, "--trust")
    assert code == 0, out
    assert tomllib.loads(config.read_text()) == by_codex
    assert [h["trustStatus"] for h in await codex_hooks(codex, project, env)] == ["trusted"] * 4


async def test_trust_also_trusts_the_project_folder_and_uninstall_takes_it_back(
    codex: Pin, project: Path, model: FakeModelServer, hub: Hub
) -> None:
    """Codex ignores an untrusted project's .codex/ (hooks included): --trust trusts it; uninstall restores the file."""
    env = codex_env(model, project, hub)
    config = config_toml(env)
    text = config.read_text()
    untrusted = text.replace(f'[projects."{project.resolve()}"]\ntrust_level = "trusted"\n', "")
    assert untrusted != text
    config.write_text(untrusted)
    code, out = await install(env)
    assert code == 3 and f"one step left: {STEP}" in out and f"the project {project} is not trusted" in out, out
    assert await codex_hooks(codex, project, env) == []  # Codex does not even load them
    code, out = await install(env, "--trust")
    assert code == 0, out
    assert tomllib.loads(config.read_text())["projects"] == {str(project): {"trust_level": "trusted"}}
    assert [h["trustStatus"] for h in await codex_hooks(codex, project, env)] == ["trusted"] * 4
    code, out, err = await run_cli("adapters", "uninstall", "codex", env=env)
    assert code == 0, out + err
    assert config.read_text() == untrusted  # byte for byte: hook trust and the folder trust we added are gone
    assert not list(config.parent.glob("config.toml.synapse-*"))


async def test_changed_stop_wait_updates_the_timeout_and_the_trust(
    codex: Pin, project: Path, model: FakeModelServer, hub: Hub
) -> None:
    """Codex's hash covers the timeout: a new stop_wait_seconds makes the stop hook out of date, then untrusted."""
    env = codex_env(model, project, hub)
    assert (await install(env, "--trust"))[0] == 0
    before = {h["eventName"]: h for h in await codex_hooks(codex, project, env)}
    assert before["stop"]["timeoutSec"] == 15 and before["stop"]["trustStatus"] == "trusted"
    (project / "synapse.toml").write_text("[adapters.codex]\nstop_wait_seconds = 5\n")
    row = await status(env)
    assert not row["current"] and row["step"] == "synapse adapters install codex"
    assert row["trusted"] is True and row["will_run"]  # the old hooks, old timeout, still trusted and running
    code, out = await install(env)  # the re-install refreshes the timeout; Codex now sees a modified hook
    assert code == 3 and f"one step left: {STEP}" in out, out
    row = await status(env)
    assert row["current"] and row["trusted"] is False and not row["will_run"] and "(stop)" in row["why"]
    seen = {h["eventName"]: h for h in await codex_hooks(codex, project, env)}
    assert seen["stop"]["timeoutSec"] == 20 and seen["stop"]["trustStatus"] == "modified"
    assert seen["sessionStart"]["trustStatus"] == "trusted"
    code, out = await install(env, "--trust")
    assert code == 0 and "they will run" in out, out
    row = await status(env)
    assert row["trusted"] is True and row["will_run"] and row["step"] is None
    after = {h["eventName"]: h for h in await codex_hooks(codex, project, env)}
    assert after["stop"]["timeoutSec"] == 20 and after["stop"]["trustStatus"] == "trusted"
    assert after["stop"]["currentHash"] != before["stop"]["currentHash"]


# ---------------------------------------------------------------------- install never breaks Codex

LEGACY = "[features]  # synapse-channel: codex hooks\ncodex_hooks = true  # synapse-channel: codex hooks\n"


def dotted_features(base: str) -> str:
    """``base`` with its ``[features]`` table rewritten as dotted keys at the top (as many users write them)."""
    head, rest = base.split("[features]\n", 1)
    _comment, tail = rest.split("daemon_auto_start = false\n", 1)
    return "features.daemon_auto_start = false\nfeatures.web_search = true\n" + head + tail


ELSEWHERE = "/elsewhere/.codex/hooks.json:stop:0:0"
TRICKY = {
    # dotted keys at the top, then plain keys: tomlkit alone would slide a new table in between
    "dotted-keys": lambda base: f'hooks.state."{ELSEWHERE}".trusted_hash = "sha256:00"\n' + dotted_features(base),
    "inline-tables": lambda base: (
        f'hooks = {{ state = {{ "{ELSEWHERE}" = {{ trusted_hash = "sha256:00" }} }} }}\n'
        "tui = { notifications = false }  # inline\n" + base
    ),
    "comments-and-arrays-of-tables": lambda base: (
        "# my codex config\n"
        + base.replace("\n[", "\n# section\n[")
        + '\n[[hooks.PreToolUse]]  # my own hook\nmatcher = "^Bash$"\n\n[[hooks.PreToolUse.hooks]]\n'
        'type = "command"\ncommand = "true"  # keep\n# the end\n'
    ),
    # what older installs wrote beside a dotted features key: Codex refused to start ("duplicate key")
    "legacy-flag": lambda base: dotted_features(base) + LEGACY,
    # an older install's [features] table that the user later put keys of their own into: the header stays
    "legacy-flag-under-user-keys": lambda base: base.replace("[features]\n", LEGACY),
}
#: What each legacy case must mean once the marked lines are gone (other cases: what they meant before).
REPAIRED = {
    "legacy-flag": lambda base: dotted_features(base),
    "legacy-flag-under-user-keys": lambda base: base,
}


@pytest.mark.parametrize("case", sorted(TRICKY))
async def test_tricky_config_toml_keeps_codex_starting_and_uninstall_restores_it(
    case: str, codex: Pin, project: Path, model: FakeModelServer, hub: Hub
) -> None:
    """Install --trust and uninstall on awkward config.toml files: Codex parses each result; the file comes back."""
    env = codex_env(model, project, hub)
    config = config_toml(env)
    base = config.read_text()
    original = TRICKY[case](base)
    meaning = tomllib.loads(REPAIRED.get(case, TRICKY[case])(base))
    config.write_text(original)
    if case == "legacy-flag":
        code, _, err = await run_codex(codex, project, env, "exec", "hi")
        assert code != 0 and "duplicate key" in err  # the breakage this install repairs
    code, out = await install(env, "--trust")
    assert code == 0 and "they will run" in out, out
    assert "synapse-channel: codex hooks" not in config.read_text()
    trusted = tomllib.loads(config.read_text())
    assert {k: v for k, v in meaning.items() if k != "hooks"} == {k: v for k, v in trusted.items() if k != "hooks"}
    listed = await codex_hooks(codex, project, env)  # Codex loads the file and trusts exactly ours
    assert sorted(h["trustStatus"] for h in listed if "synapse hook codex" in (h["command"] or "")) == ["trusted"] * 4
    await send(hub, f"gamma: {case}")
    code, out, err = await run_codex(codex, project, env, "exec", "say hi PROMPT-X")
    assert code == 0 and out.strip().endswith("Done."), err
    assert f"gamma: {case}" in text_of(turns(model, "PROMPT-X")[0])  # the hooks ran
    code, out, err = await run_cli("adapters", "uninstall", "codex", env=env)
    assert code == 0, out + err
    if case in REPAIRED:  # the legacy lines do not come back; the rest means what it meant
        assert tomllib.loads(config.read_text()) == meaning
    else:
        assert config.read_text() == original
    code, _, err = await run_codex(codex, project, env, "exec", "hi")
    assert code == 0, err


# ---------------------------------------------------------------------- codex queue: what it can wake


class AppServer:
    """A JSON-RPC client of ``codex app-server --listen unix://SOCK`` (the way the TUI talks to its daemon)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.inbox: list[dict[str, Any]] = []
        self.n = 0

    async def until(self, match: Any) -> dict[str, Any]:
        """The first message (reply or notification) matching ``match``; fails the test after RUN_TIMEOUT."""
        async with asyncio.timeout(RUN_TIMEOUT):
            while True:
                found = next((m for m in self.inbox if match(m)), None)
                if found is not None:
                    self.inbox.remove(found)
                    return found
                self.inbox.append(json.loads(await self.ws.recv()))

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        self.n += 1
        n = self.n
        await self.ws.send(json.dumps({"jsonrpc": "2.0", "id": n, "method": method, "params": params}))
        reply = await self.until(lambda m: m.get("id") == n)
        assert "error" not in reply, reply
        return reply["result"]

    async def turn(self, thread: str, text: str) -> None:
        """Start a turn and wait for it (and any other running turn) to complete."""
        await self.call("turn/start", {"threadId": thread, "input": [{"type": "text", "text": text}]})
        await self.turn_completed()

    async def turn_completed(self) -> None:
        await self.until(lambda m: m.get("method") == "turn/completed")


@contextlib.asynccontextmanager
async def socket_server(pin: Pin, project: Path, env: dict[str, str], sock: Path) -> AsyncIterator[AppServer]:
    """Codex's app server on ``sock``, initialized; stopped (and with it any notify wait it started) after."""
    from websockets.asyncio.client import unix_connect

    server = await asyncio.create_subprocess_exec(
        str(pin.path),
        "app-server",
        "--listen",
        f"unix://{sock}",
        cwd=project,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            while not sock.exists():
                await asyncio.sleep(0.05)  # the server creates it once it listens
        async with unix_connect(str(sock), uri="ws://localhost/") as ws:
            client = AppServer(ws)
            await client.call("initialize", {"clientInfo": {"name": "synapse-tests", "version": "1"}})
            await ws.send(json.dumps({"jsonrpc": "2.0", "method": "initialized"}))
            yield client
    finally:
        server.terminate()
        await server.wait()


async def test_codex_queue_wakes_an_idle_thread_its_app_server_holds(
    codex: Pin, project: Path, model: FakeModelServer, hub: Hub, tmp_path: Path
) -> None:
    """``codex queue`` to the app server holding an idle thread starts a new turn with the message.

    The interactive TUI holds its threads in such a server (its auto-started
    daemon; here one on a socket of our own), so this is how an idle Codex
    can be woken: the message reaches the model as the next user turn.
    """
    env = codex_env(model, project, hub)
    sock = tmp_path / "app.sock"
    async with socket_server(codex, project, env, sock) as server:
        thread = (await server.call("thread/start", {"cwd": str(project)}))["thread"]["id"]
        await server.turn(thread, "first turn PROMPT-Q")
        assert len(turns(model, "PROMPT-Q")) == 1  # the thread is idle now
        queue = ("queue", "--thread", thread, "--message", "delta: wake up", "--remote", f"unix://{sock}")
        code, out, err = await run_codex(codex, project, env, *queue)
        assert code == 0 and f"for thread {thread}" in out, out + err
        await server.turn_completed()  # a turn nobody typed
    woken = turns(model, "delta: wake up")
    assert len(woken) == 1 and "PROMPT-Q" in text_of(woken[0])  # the same thread, the message as its turn
    last = woken[0].json()["input"][-1]
    assert last["role"] == "user" and _decoded(json.dumps(last)).strip().endswith("delta: wake up")


async def test_codex_queue_without_a_server_waits_for_the_next_resume(
    codex: Pin, project: Path, model: FakeModelServer, hub: Hub
) -> None:
    """With no server holding the thread (``codex exec`` ran and exited), queue only stores the message.

    Nothing reaches the model until the thread is resumed; ``codex exec
    resume`` then runs the queued message as a turn of its own first.
    """
    env = codex_env(model, project, hub)
    code, _, err = await run_codex(codex, project, env, "exec", "first PROMPT-R")
    assert code == 0, err
    thread = next(ln.split(": ", 1)[1] for ln in err.splitlines() if ln.startswith("session id: "))
    queue = ("queue", "--thread", thread, "--message", "epsilon", "--resume")
    code, out, err = await run_codex(codex, project, env, *queue)
    assert code == 0 and f"for thread {thread}" in out, out + err
    assert "could not resume" in err  # no daemon, no --remote: stored only
    assert len(model.requests) == 1
    code, _, err = await run_codex(codex, project, env, "exec", "resume", thread, "second PROMPT-S")
    assert code == 0, err
    bodies = [text_of(r) for r in model.requests[1:]]
    assert len(bodies) == 2 and "epsilon" in bodies[0] and "PROMPT-S" not in bodies[0] and "PROMPT-S" in bodies[1]


def wake_settings(project: Path, remote: str) -> None:
    """queue_wake in the project; the app server in the user's own config (a project may not choose it)."""
    from synapse_channel.config import user_file

    (project / "synapse.toml").write_text("[adapters.codex]\nqueue_wake = true\nqueue_wake_seconds = 60\n")
    user = user_file()
    user.parent.mkdir(parents=True, exist_ok=True)
    user.write_text(f'[adapters.codex]\nqueue_wake_remote = "{remote}"\n')


def wake_log() -> str:
    path = Path(os.environ["SYN_HOME"]) / "hook-state" / "codex-wake.log"
    return path.read_text() if path.exists() else ""


async def until_logged(text: str) -> None:
    """Wait for the notify program's log line (it runs detached from Codex); fails the test after RUN_TIMEOUT."""
    async with asyncio.timeout(RUN_TIMEOUT):
        while text not in wake_log():
            await asyncio.sleep(0.05)


async def test_queue_wake_hands_a_message_to_the_idle_thread_as_a_new_turn(
    codex: Pin, project: Path, model: FakeModelServer, hub: Hub, tmp_path: Path
) -> None:
    """``queue_wake``: after a turn, Codex's notify program waits; a message sent then becomes the next turn.

    The thread lives in an app server on our socket (``queue_wake_remote``),
    as the TUI's live in its daemon; nobody types anything after the first turn.
    """
    env = codex_env(model, project, hub)
    sock = tmp_path / "app.sock"
    wake_settings(project, f"unix://{sock}")
    config = config_toml(env)
    original = config.read_text()
    code, out = await install(env, "--trust")
    assert code == 0 and "they will run" in out, out
    assert tomllib.loads(config.read_text())["notify"][-2:] == ["-m", "synapse_codex.wake"]
    assert (await status(env))["current"]
    async with socket_server(codex, project, env, sock) as server:
        thread = (await server.call("thread/start", {"cwd": str(project)}))["thread"]["id"]
        await server.turn(thread, "work PROMPT-W")
        assert len(turns(model, "PROMPT-W")) == 1  # idle now; the notify program is waiting
        await until_logged(f"thread {thread} (synapse-tests): waiting")
        await send(hub, "zeta: rebase and rerun the tests")
        await server.turn_completed()  # a turn nobody typed
    woken = turns(model, "zeta: rebase and rerun the tests")
    assert len(woken) == 1 and "PROMPT-W" in text_of(woken[0])  # the same thread
    last = _decoded(json.dumps(woken[0].json()["input"][-1]))
    assert f"1 new message(s) for {ID}" in last and last.strip().endswith("Handle these, then stop.")
    assert f"queued seq 1 into thread {thread}" in wake_log()
    code, out, _ = await run_cli("hook", "codex", "prompt", stdin=b"{}", env=env)
    assert (code, out.strip()) == (0, "{}")  # handed over once: acked after codex queue took it
    waits = Path(os.environ["SYN_HOME"]) / "hook-state"
    await asyncio.to_thread(model.wait_until, lambda: not any(waits.glob("codex-wake-*")), 30, "the waits to end")
    code, out, err = await run_cli("adapters", "uninstall", "codex", env=env)
    assert code == 0, out + err
    assert config.read_text() == original  # notify and trust gone, byte for byte


async def test_queue_wake_skips_ephemeral_threads_and_gives_back_what_it_cannot_queue(
    codex: Pin, project: Path, model: FakeModelServer, hub: Hub, tmp_path: Path
) -> None:
    """No wait for a thread Codex does not keep; a message codex queue refuses goes back to the mailbox."""
    env = codex_env(model, project, hub)
    sock = tmp_path / "app.sock"
    wake_settings(project, f"unix://{tmp_path / 'nobody-listens.sock'}")  # every codex queue fails
    assert (await install(env, "--trust"))[0] == 0
    async with socket_server(codex, project, env, sock) as server:
        side = (await server.call("thread/start", {"cwd": str(project), "ephemeral": True}))["thread"]["id"]
        await server.turn(side, "side PROMPT-E")
        thread = (await server.call("thread/start", {"cwd": str(project)}))["thread"]["id"]
        await server.turn(thread, "main PROMPT-M")
        await until_logged(f"thread {thread} (synapse-tests): waiting")
        await send(hub, "iota: do not lose me")
        await until_logged(f"thread {thread}: codex queue failed, seq 1 left for the next hook")
    assert f"thread {side}" not in wake_log()  # the ephemeral thread got no wait at all
    assert not turns(model, "iota: do not lose me")
    code, out, _ = await run_cli("hook", "codex", "prompt", stdin=b"{}", env=env)  # the next turn's hook has it
    assert code == 0 and "iota: do not lose me" in json.loads(out)["hookSpecificOutput"]["additionalContext"]
