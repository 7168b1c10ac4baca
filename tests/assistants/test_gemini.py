"""The real Gemini CLI (pinned) against a real hub, through the installed synapse hooks.

Each test runs the real ``synapse adapters install gemini`` and the real
``gemini -p`` (headless) in a temporary git project, with Gemini's model API
replaced by :mod:`.fake_gemini`. What reached the model is read from the
fake's recorded requests: a synapse message "arrived" only if Gemini sent it
to the model. Gemini runs in an asyncio subprocess because the hub runs in
this test's event loop and must answer the hooks meanwhile.

Gemini facts these tests pin (0.61.0): folder trust is on by default; in an
untrusted folder a headless run exits 55 and ``--skip-trust`` runs without
loading project settings (so without our hooks); the "Trust folder" rule in
``<home>/.gemini/trustedFolders.json`` turns both scopes on; ``GEMINI_CLI_HOME``
moves Gemini's home.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import struct
import subprocess
import termios
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from synapse_channel.hub.server import Hub
from synapse_gemini.trust import check

from ..conftest import run_cli
from .conftest import installed
from .fake_gemini import serve, setup, trust_folder
from .fakebase import FakeModelServer
from .install import Pin

IDENTITY = "gem/agent-1"
GEMINI_TIMEOUT = 90.0
UNTRUSTED_EXIT = 55  # Gemini's FatalUntrustedWorkspaceError
STEP = "synapse adapters install gemini --trust"

#: Variables that change Gemini's trust decision or strip the hooks' environment
#: (GITHUB_SHA / SURFACE=Github turn on Gemini's strict env redaction: SYN_* would not reach the hook).
SCRUB = ("GEMINI_CLI_TRUST_WORKSPACE", "GEMINI_RESTRICTED_MODE", "GEMINI_CLI_HOME", "GITHUB_SHA", "SURFACE")
#: Gemini runs headless (never its interactive UI, even on a terminal) when either is "true".
HEADLESS = ("CI", "GITHUB_ACTIONS")


def interactive(env: dict[str, str]) -> dict[str, str]:
    """``env`` for Gemini's interactive UI: without the CI markers a CI machine sets (a user's terminal has none)."""
    return {k: v for k, v in env.items() if k not in HEADLESS}


_checked: list[Pin] = []


@pytest.fixture
def pin() -> Pin:
    """The pinned Gemini CLI, its version checked once per run (inside a test: $HOME is a temp dir)."""
    if not _checked:
        _checked.append(installed("gemini"))
    return _checked[0]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh git repository as the working directory (``synapse adapters`` acts on its root)."""
    root = tmp_path / "proj"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    monkeypatch.chdir(root)
    for var in SCRUB:
        monkeypatch.delenv(var, raising=False)
    return root


@pytest.fixture
def home() -> Path:
    """The test's $HOME (set per test by the autouse fixture)."""
    path = Path(os.environ["HOME"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def gemini_env(server: FakeModelServer, home: Path, project: Path, hub: Hub | None = None) -> dict[str, str]:
    env = {**os.environ, **setup(server, home, project)}
    if hub is not None:
        env.update({"SYN_IDENTITY": IDENTITY, "SYNAPSE_URI": hub.uri})
    return env


async def start_gemini(pin: Pin, env: dict[str, str], cwd: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(pin.path),
        *args,
        cwd=str(cwd),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish_gemini(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    """Wait for gemini to exit (failing, and killing it, if it does not within GEMINI_TIMEOUT)."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), GEMINI_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"gemini did not finish within {GEMINI_TIMEOUT}s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def run_gemini(pin: Pin, env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str, str]:
    return await finish_gemini(await start_gemini(pin, env, cwd, *args))


async def until(check_: Callable[[], bool], what: str, timeout: float = GEMINI_TIMEOUT) -> None:
    """Poll without blocking the event loop (the hub answers meanwhile); fail on timeout."""
    try:
        async with asyncio.timeout(timeout):
            while not check_():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


async def queue(hub: Hub, text: str) -> None:
    """A directed chat to the agent's identity (what a teammate sends): queued in its durable mailbox.

    Nobody holds the seat online, so ``send`` exits 1 ("no online recipient");
    the receipt must still say the hub stored it for the identity.
    """
    code, out, err = await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", IDENTITY, "--json", text)
    receipt = json.loads(out)
    assert receipt["type"] == "delivery_receipt" and receipt["queued"] is True, (code, out, err)
    assert isinstance(receipt["message_seq"], int)


def turns(server: FakeModelServer) -> list[dict[str, object]]:
    """The bodies of the model turns Gemini sent (streamGenerateContent), in order."""
    return [r.json() for r in server.requests if ":streamGenerateContent" in r.path]


def last_user_text(body: dict[str, object]) -> str:
    """The text of the newest user message in a turn (what Gemini was asked this time)."""
    contents = body.get("contents")
    assert isinstance(contents, list) and contents
    last = contents[-1]
    assert last.get("role") == "user", last
    return "\n".join(str(p.get("text", "")) for p in last.get("parts", []))


def gemini_row(status_json: str) -> dict[str, dict[str, object]]:
    rows = json.loads(status_json)
    return next(r for r in rows if r["adapter"] == "gemini")


# ---------------------------------------------------------------------------- (a) the trust gate


async def test_trust_never_overrides_the_users_own_distrust(project: Path, home: Path) -> None:
    """A DO_NOT_TRUST rule covering the project is the user's decision: --trust leaves it, and says what to change."""
    rules = home / ".gemini" / "trustedFolders.json"
    rules.parent.mkdir(parents=True, exist_ok=True)
    rules.write_text(json.dumps({str(project.parent): "DO_NOT_TRUST"}, indent=2))
    before = rules.read_bytes()
    code, out, err = await run_cli("adapters", "install", "gemini", "--trust")
    assert code == 3, (out, err)
    assert "one step left: change or remove the DO_NOT_TRUST rule" in out and str(rules) in out
    assert rules.read_bytes() == before
    code, out, _ = await run_cli("adapters", "status", "--json")
    row = gemini_row(out)["project"]
    assert (row["trusted"], row["will_run"]) == (False, False) and "DO_NOT_TRUST" in row["step"]


async def test_untrusted_folder_gate_then_the_printed_step(pin: Pin, project: Path, home: Path, hub: Hub) -> None:
    """Untrusted: install says so (exit 3, the step), status agrees, and Gemini really runs no hooks.

    Then the printed step, run verbatim, trusts the folder the way Gemini
    does (other rules kept) and the message queued all along reaches the model.
    """
    rules = home / ".gemini" / "trustedFolders.json"
    rules.parent.mkdir(parents=True, exist_ok=True)
    rules.write_text(json.dumps({"/elsewhere/untrusted": "DO_NOT_TRUST"}, indent=2))
    code, out, err = await run_cli("adapters", "install", "gemini")
    assert code == 3, (out, err)
    assert f"one step left: {STEP}\n" in out and "not trusted" in out
    printed = out.split("one step left: ", 1)[1].strip()
    assert (project / ".gemini" / "settings.json").exists()
    code, out, _ = await run_cli("adapters", "status", "--json")
    row = gemini_row(out)["project"]
    assert code == 0 and row["installed"] is True and row["current"] is True
    assert (row["trusted"], row["will_run"], row["step"]) == (False, False, STEP)

    text = f"gate-{uuid.uuid4().hex[:8]}"
    await queue(hub, text)
    with serve() as server:
        env = gemini_env(server, home, project, hub)
        code, _, err = await run_gemini(pin, env, project, "-p", "status?")
        assert code == UNTRUSTED_EXIT and "not running in a trusted directory" in err
        assert not server.requests  # refused before any model call
        code, out, err = await run_gemini(pin, env, project, "-p", "status?", "--skip-trust")
        assert code == 0, err
        assert len(turns(server)) == 1 and not server.seen(text)  # it ran, without our hooks

        program, *args = printed.split()
        assert program == "synapse"
        code, out, err = await run_cli(*args)  # the printed step, verbatim
        assert code == 0 and "they will run" in out, (out, err)
        saved = json.loads(rules.read_text())
        assert saved == {"/elsewhere/untrusted": "DO_NOT_TRUST", str(project): "TRUST_FOLDER"}
        assert rules.stat().st_mode & 0o777 == 0o600
        code, out, _ = await run_cli("adapters", "status", "--json")
        row = gemini_row(out)["project"]
        assert (row["trusted"], row["will_run"], row["step"]) == (True, True, None)

        before = len(turns(server))
        code, _, err = await run_gemini(pin, env, project, "-p", "status?")
        assert code == 0, err
        first = turns(server)[before]
        assert text in last_user_text(first)  # the queued message, at session start


# ---------------------------------------------------------------------------- (b) trusted: both paths


async def test_trusted_session_start_and_after_agent_continuation(
    pin: Pin, project: Path, home: Path, hub: Hub
) -> None:
    """Queued before the session: in the first request. Sent while the model is busy: a new prompt after it."""
    code, out, err = await run_cli("adapters", "install", "gemini", "--trust")
    assert code == 0 and "hooks installed and trusted; they will run" in out, (out, err)
    before_text = f"early-{uuid.uuid4().hex[:8]}"
    busy_text = f"busy-{uuid.uuid4().hex[:8]}"
    await queue(hub, before_text)
    with serve() as server:
        env = gemini_env(server, home, project, hub)
        server.hold()
        proc = await start_gemini(pin, env, project, "-p", "refactor the parser")
        try:
            await until(lambda: len(turns(server)) >= 1, "Gemini's first model request")
            await queue(hub, busy_text)  # durable before the model answers
        finally:
            server.release()
        code, _, err = await finish_gemini(proc)
        assert code == 0, err
        sent = turns(server)
        first = last_user_text(sent[0])
        assert "<hook_context>" in first and before_text in first and "refactor the parser" in first
        assert busy_text not in first
        later = [i for i, body in enumerate(sent) if busy_text in last_user_text(body)]
        assert later and later[0] >= 1, [last_user_text(b) for b in sent]
        continuation = last_user_text(sent[later[0]])
        assert "Handle these, then stop." in continuation  # AfterAgent's deny reason, sent as a new prompt
        assert "refactor the parser" not in continuation
        assert sum(busy_text in last_user_text(b) for b in sent) == 1  # handed over once
        assert len(sent) == later[0] + 1  # then Gemini was allowed to stop


# ---------------------------------------------------------------------------- (c) GEMINI_CLI_HOME, user scope


async def test_user_scope_honours_gemini_cli_home(
    pin: Pin, project: Path, home: Path, hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--scope user`` writes $GEMINI_CLI_HOME/.gemini/settings.json, trusts there, and Gemini runs those hooks."""
    gemini_home = tmp_path / "gemini-home"
    monkeypatch.setenv("GEMINI_CLI_HOME", str(gemini_home))
    user_file = gemini_home / ".gemini" / "settings.json"
    code, out, err = await run_cli("adapters", "install", "gemini", "--scope", "user")
    assert code == 3 and "one step left: synapse adapters install gemini --scope user --trust" in out, (out, err)
    assert "synapse hook gemini stop" in user_file.read_text()
    assert not (home / ".gemini" / "settings.json").exists() and not (project / ".gemini").exists()
    code, out, err = await run_cli("adapters", "install", "gemini", "--scope", "user", "--trust")
    assert code == 0 and "they will run" in out, (out, err)
    rules = json.loads((gemini_home / ".gemini" / "trustedFolders.json").read_text())
    assert rules == {str(project): "TRUST_FOLDER"}
    code, out, _ = await run_cli("adapters", "status", "--json")
    row = gemini_row(out)["user"]
    assert (row["file"], row["trusted"], row["will_run"]) == (str(user_file), True, True)

    text = f"user-scope-{uuid.uuid4().hex[:8]}"
    await queue(hub, text)
    with serve() as server:
        env = {**os.environ, **setup(server, gemini_home, project)}  # Gemini's settings live under its home
        os_home = tmp_path / "os-home"  # a fresh OS home: Gemini must not need (or create) ~/.gemini
        os_home.mkdir()
        env.update({"HOME": str(os_home), "SYN_IDENTITY": IDENTITY, "SYNAPSE_URI": hub.uri})
        code, _, err = await run_gemini(pin, env, project, "-p", "anything new?")
        assert code == 0, err
        assert text in last_user_text(turns(server)[0])
    assert not (os_home / ".gemini").exists()


# ---------------------------------------------------------------------------- our reading == Gemini's decision


def _rules_cases(project: Path) -> dict[str, dict[str, str] | None]:
    parent = str(project.parent)
    return {
        "no file": None,
        "folder": {str(project): "TRUST_FOLDER"},
        "ancestor": {parent: "TRUST_FOLDER"},
        "sibling's parent": {str(project.parent / "sibling"): "TRUST_PARENT"},
        "own parent rule": {str(project): "TRUST_PARENT"},
        "deeper distrust wins": {parent: "TRUST_FOLDER", str(project): "DO_NOT_TRUST"},
        "deeper trust wins": {parent: "DO_NOT_TRUST", str(project): "TRUST_FOLDER"},
        "unrelated": {str(project.parent / "other"): "TRUST_FOLDER"},
    }


@pytest.mark.parametrize(
    "case",
    [
        "no file",
        "folder",
        "ancestor",
        "sibling's parent",
        "own parent rule",
        "deeper distrust wins",
        "deeper trust wins",
        "unrelated",
        "trust disabled",
        "symlinked project",
        "comments",
    ],
)
async def test_trust_check_agrees_with_gemini(case: str, pin: Pin, project: Path, home: Path) -> None:
    """For each rule shape, our trust_check says what the real Gemini then does (runs, or exits 55)."""
    folder = project
    if case == "trust disabled":
        (home / ".gemini").mkdir(parents=True, exist_ok=True)
        (home / ".gemini" / "settings.json").write_text('{"security": {"folderTrust": {"enabled": false}}}')
    elif case == "symlinked project":
        trust_folder(home, project)
        folder = project.parent / "link"
        folder.symlink_to(project)
    elif case == "comments":  # Gemini reads its files as JSON with comments
        (home / ".gemini").mkdir(parents=True, exist_ok=True)
        text = f'{{\n  // mine\n  "{project}": /* yes */ "TRUST_FOLDER"\n}}'
        (home / ".gemini" / "trustedFolders.json").write_text(text)
    else:
        rules = _rules_cases(project)[case]
        if rules is not None:
            (home / ".gemini").mkdir(parents=True, exist_ok=True)
            (home / ".gemini" / "trustedFolders.json").write_text(json.dumps(rules, indent=2))
    verdict = check(folder)
    with serve() as server:
        code, _, err = await run_gemini(pin, gemini_env(server, home, project), folder, "-p", "hi")
    will_run = verdict.trusted is not False
    assert code == (0 if will_run else UNTRUSTED_EXIT), (case, verdict, err[-400:])
    assert (len(turns(server)) == 1) == will_run


async def test_invalid_trust_file_is_reported_and_never_rewritten(pin: Pin, project: Path, home: Path) -> None:
    """A trust level Gemini does not know makes it refuse to start; we say so and --trust leaves the file alone."""
    rules = home / ".gemini" / "trustedFolders.json"
    rules.parent.mkdir(parents=True, exist_ok=True)
    original = json.dumps({str(project): "TRUST_ME"})
    rules.write_text(original)
    code, out, err = await run_cli("adapters", "install", "gemini", "--trust")
    assert code != 0 and "invalid trust level 'TRUST_ME'" in out + err, (out, err)
    assert rules.read_text() == original
    code, out, _ = await run_cli("adapters", "status", "--json")
    row = gemini_row(out)["project"]
    assert (row["trusted"], row["will_run"], row["step"]) == (False, False, f"fix {rules}")
    with serve() as server:
        code, _, err = await run_gemini(pin, gemini_env(server, home, project), project, "-p", "hi")
    assert code not in (0, UNTRUSTED_EXIT) and "TRUST_ME" in err and not server.requests


# ---------------------------------------------------------------------------- the hooks' environment


async def test_redacted_hook_environment_is_reported_then_allowed(
    pin: Pin, project: Path, home: Path, hub: Hub
) -> None:
    """Under GitHub Actions (GITHUB_SHA) Gemini strips SYN_* from hooks: status says so; the step fixes it."""
    github = {"GITHUB_SHA": "0123abc", "SYN_IDENTITY": IDENTITY, "SYNAPSE_URI": hub.uri}
    code, out, err = await run_cli("adapters", "install", "gemini", "--trust", env=github)
    assert code == 3, (out, err)
    names = sorted(k for k in {**os.environ, **github} if k.startswith(("SYN_", "SYNAPSE_")))
    assert {"SYN_HOME", "SYN_IDENTITY", "SYNAPSE_URI"} <= set(names)
    settings = home / ".gemini" / "settings.json"
    quoted = ", ".join(json.dumps(k) for k in names)
    assert f"one step left: add {quoted} to security.environmentVariableRedaction.allowed in {settings}\n" in out
    assert "GITHUB_SHA is set" in out

    text = f"redacted-{uuid.uuid4().hex[:8]}"
    await queue(hub, text)
    with serve() as server:
        env = {**gemini_env(server, home, project, hub), "GITHUB_SHA": "0123abc"}
        code, _, err = await run_gemini(pin, env, project, "-p", "anything?")
        assert code == 0, err
        assert len(turns(server)) == 1 and not server.seen(text)  # the hooks ran without an identity

        doc = json.loads(settings.read_text())
        doc["security"]["environmentVariableRedaction"] = {"allowed": names}  # the printed step
        settings.write_text(json.dumps(doc, indent=2))
        code, out, _ = await run_cli("adapters", "status", "--json", env=github)
        row = gemini_row(out)["project"]
        assert (row["trusted"], row["will_run"], row["step"]) == (True, True, None)
        code, _, err = await run_gemini(pin, env, project, "-p", "anything?")
        assert code == 0, err
        assert text in last_user_text(turns(server)[1])


# ---------------------------------------------------------------------------- the same entry Gemini writes


class Terminal:
    """The real interactive Gemini on a pseudo-terminal (its trust dialog needs one); output kept for matching."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.output = b""
        self.reader = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.output += data

    async def start(self, pin: Pin, env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            str(pin.path), cwd=str(cwd), env={**env, "TERM": "xterm-256color"},
            stdin=self.slave, stdout=self.slave, stderr=self.slave, start_new_session=True,
        )  # fmt: skip
        self.reader.start()
        return proc

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> None:
        for fd in (self.slave, self.master):
            with contextlib.suppress(OSError):
                os.close(fd)


async def test_trust_writes_what_geminis_own_dialog_writes(pin: Pin, project: Path, home: Path) -> None:
    """Choosing "Trust folder" in the real Gemini's dialog and ``install --trust`` leave the same bytes."""
    rules = home / ".gemini" / "trustedFolders.json"
    with serve() as server:
        term = Terminal()
        proc = await term.start(pin, interactive(gemini_env(server, home, project)), project)
        try:
            await until(lambda: b"Do you trust the files in this folder?" in term.output, "Gemini's trust dialog")
            assert b"1. Trust folder (proj)" in term.output
            term.type(b"\r")  # the default choice: 1. Trust folder
            await until(lambda: rules.exists() and str(project) in rules.read_text(), "Gemini's trust rule")
        finally:
            proc.kill()
            await proc.wait()
            term.close()
    theirs, mode = rules.read_bytes(), rules.stat().st_mode & 0o777
    assert json.loads(theirs) == {str(project): "TRUST_FOLDER"}
    rules.unlink()
    code, out, err = await run_cli("adapters", "install", "gemini", "--trust")
    assert code == 0, (out, err)
    assert (rules.read_bytes(), rules.stat().st_mode & 0o777) == (theirs, mode)


# ---------------------------------------------------------------------------- Gemini's own hook switches


async def test_hooks_switched_off_in_gemini_settings_is_reported(pin: Pin, project: Path, home: Path, hub: Hub) -> None:
    """``hooksConfig.enabled: false`` really stops our hooks; status says so, and which file to change."""
    code, out, err = await run_cli("adapters", "install", "gemini", "--trust")
    assert code == 0, (out, err)
    settings = home / ".gemini" / "settings.json"
    settings.write_text(json.dumps({"hooksConfig": {"enabled": False}}))
    code, out, _ = await run_cli("adapters", "status", "--json")
    row = gemini_row(out)["project"]
    assert (row["will_run"], row["step"]) == (False, f"set hooksConfig.enabled to true in {settings}")

    text = f"switched-{uuid.uuid4().hex[:8]}"
    await queue(hub, text)
    with serve() as server:
        env = gemini_env(server, home, project, hub)  # keeps the test's hooksConfig
        code, _, err = await run_gemini(pin, env, project, "-p", "anything?")
        assert code == 0 and len(turns(server)) == 1 and not server.seen(text), err

        doc = json.loads(settings.read_text())
        ours = json.loads((project / ".gemini" / "settings.json").read_text())["hooks"]
        doc["hooksConfig"] = {"enabled": True, "disabled": [ours["SessionStart"][0]["hooks"][0]["command"]]}
        settings.write_text(json.dumps(doc))
        code, out, _ = await run_cli("adapters", "status", "--json")
        row = gemini_row(out)["project"]
        assert row["will_run"] is False and row["step"] == f"remove it from hooksConfig.disabled in {settings}"

        del doc["hooksConfig"]
        settings.write_text(json.dumps(doc))
        code, out, _ = await run_cli("adapters", "status", "--json")
        assert gemini_row(out)["project"]["will_run"] is True
        code, _, err = await run_gemini(pin, env, project, "-p", "anything?")
        assert code == 0, err
        assert text in last_user_text(turns(server)[1])
