"""The tmux bridge against the real, pinned assistant TUIs in a real tmux server.

Each test starts its own tmux server (``tmux -S <tmp socket>``) with one real
TUI (Claude Code, Codex or Gemini CLI) in a pane, talking to its fake model
API (every request recorded), and runs the real ``synapse tmux-bridge
--socket`` against a real hub in the test's event loop. What is asserted is
what the bridge did to the real pane and what the model was then sent:

* idle: the wake prompt is typed once, and the next model request carries it;
* busy (the fake model holds its answer mid-turn): nothing is typed while
  the TUI works, then the wake is typed once when it is idle again;
* a fresh Gemini session (start-up tips, the project-hooks "do not trust
  this project" warning) does not block the wake; its trust dialog is never
  typed into, and once answered its leftover above the relaunched CLI does
  not block the wake either;
* Gemini running a hook ("Executing Hook: ... (esc to cancel)" above a
  still-visible placeholder) is busy; a wake whose message synapse's own
  AfterAgent hook handed over meanwhile is dropped;
* a numbered answer on screen above the checked window: typed once (the
  checks before and after typing read the same window);
* after a bridge restart, a pending wake whose message a hook has meanwhile
  handed to the agent is dropped, not typed; the next message still wakes it.

Interactive set-up the fakes' ``setup()`` does not do is done here: Codex
runs with ``--no-daemon`` (its TUI otherwise starts a shared background app
server that outlives the pane); Gemini's project folder is trusted (its
``setup()`` leaves it untrusted, and the trust dialog would cover the
composer) except in the trust-dialog test, which also lets "Trust folder"
relaunch the CLI (``GEMINI_CLI_NO_RELAUNCH`` unset: with it, Gemini exits
199 instead); the fresh-session tests turn Gemini's tips and banner back on.

The hub runs in the test's event loop (the TUIs' hooks call it), so every
wait here yields to the loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from synapse_channel.hub.server import Hub

from ..conftest import SYNAPSE, needs, run_cli
from . import fake_anthropic, fake_gemini, fake_openai
from .conftest import installed
from .fakebase import FakeModelServer, _decoded

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins"))

from synapse_tmux_bridge.bridge import DEFAULT_PROMPT  # noqa: E402
from synapse_tmux_bridge.patterns import PaneRules  # noqa: E402

START_TIMEOUT = 60.0
TURN_TIMEOUT = 60.0
#: Variables that change Gemini's trust decision or strip its hooks' environment (see test_gemini.py).
SCRUB = ("GEMINI_CLI_TRUST_WORKSPACE", "GEMINI_RESTRICTED_MODE", "GEMINI_CLI_HOME", "GITHUB_SHA", "SURFACE", "TMUX")
#: Markers of a CI machine that turn the TUIs headless (Gemini: CI or GITHUB_ACTIONS "true").
HEADLESS = ("CI", "GITHUB_ACTIONS")


@dataclass(frozen=True, slots=True)
class Assistant:
    """One real TUI: its pin, fake model API, adapter, bridge rules and extra arguments."""

    pin: str
    fake: ModuleType
    adapter: str
    agent: str
    identity: str
    args: tuple[str, ...] = ()
    install: tuple[str, ...] = ()

    @property
    def prompt(self) -> str:
        return DEFAULT_PROMPT.format(identity=self.identity)


ASSISTANTS = {
    "claude": Assistant("claude-code", fake_anthropic, "claude-code", "claude", "api/claude-1"),
    "codex": Assistant("codex", fake_openai, "codex", "codex", "api/codex-1", ("--no-daemon",), ("--trust",)),
    "gemini": Assistant("gemini", fake_gemini, "gemini", "gemini", "api/gemini-1", (), ("--trust",)),
}


async def until(check: Callable[[], bool], what: str, timeout: float = TURN_TIMEOUT, detail: Any = None) -> None:
    """Poll ``check`` (in a thread: it may run tmux) without blocking the hub; fail on timeout."""
    try:
        async with asyncio.timeout(timeout):
            while not await asyncio.to_thread(check):
                await asyncio.sleep(0.1)
    except TimeoutError:
        extra = detail() if callable(detail) else ""
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{extra}") from None


@dataclass(slots=True)
class Pane:
    """A private tmux server (``-S socket``) with one session, ``agent``, running the TUI."""

    socket: Path
    rules: PaneRules
    started: tuple[list[str], dict[str, str], Path] | None = None

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        """Start the server and the TUI (through a script, so the environment is exactly ``env``)."""
        self.started = (argv, env, cwd)
        script = self.socket.with_name("run-tui.sh")
        unsets = "".join(f"unset {k}\n" for k in os.environ if k not in env and re.fullmatch(r"\w+", k))
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items() if re.fullmatch(r"\w+", k))
        script.write_text(f"#!/bin/sh\n{unsets}{exports}cd {shlex.quote(str(cwd))}\nexec {shlex.join(argv)}\n")
        script.chmod(0o755)
        server_env = {k: v for k, v in os.environ.items() if k != "TMUX"}
        subprocess.run(
            ["tmux", "-S", str(self.socket), "new-session", "-d", "-s", "agent", "-x", "120", "-y", "40", str(script)],
            check=True,
            env=server_env,
            timeout=10,
        )
        self.tmux("set-option", "-t", "agent", "remain-on-exit", "on")  # a crashed TUI stays readable

    def restart(self) -> None:
        """Kill the server and start the same TUI again."""
        self.kill()
        assert self.started is not None
        self.start(*self.started)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", "agent")

    def history(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "agent")

    def idle(self) -> bool:
        return self.rules.safe_to_type(self.screen())

    def settled(self) -> bool:
        """Idle, and the same window a moment later (Gemini flashes its composer before its trust dialog)."""
        first = self.screen()
        time.sleep(0.4)
        second = self.screen()
        same = self.rules.window(first) == self.rules.window(second)
        return same and self.rules.safe_to_type(first) and self.rules.safe_to_type(second)

    def type_line(self, text: str) -> None:
        """Type as the user does: the text, then Enter (a moment later: Codex takes a burst with Enter as a paste)."""
        self.tmux("send-keys", "-t", "agent", "-l", text)
        time.sleep(0.5)
        self.tmux("send-keys", "-t", "agent", "Enter")

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True, check=False, timeout=10)


@dataclass(slots=True)
class BridgeRun:
    """A running ``synapse tmux-bridge`` whose log lines are collected as they come."""

    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, hub: Hub, pane: Pane, who: Assistant, *extra: str) -> BridgeRun:
        proc = await asyncio.create_subprocess_exec(
            SYNAPSE,
            "tmux-bridge",
            "--session",
            "agent",
            "--identity",
            who.identity,
            "--agent",
            who.agent,
            "--uri",
            hub.uri,
            "--socket",
            str(pane.socket),
            *extra,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if k != "TMUX"},
        )
        run = cls(proc)
        run.reader = asyncio.create_task(run._read())
        core = hub.core
        assert core is not None
        armed = f"{who.identity}-pane-rx"
        # (A bridge that exits at once, e.g. after typing a stale wake with --once, is left to the caller's checks.)
        await until(lambda: armed in core.roster.names or proc.returncode is not None, "the bridge to arm", 20, run.log)
        return run

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode().rstrip())

    def log(self) -> str:
        return "bridge log:\n" + "\n".join(self.lines)

    def said(self, needle: str) -> list[str]:
        return [line for line in self.lines if needle in line]

    async def line(self, *needles: str, timeout: float = TURN_TIMEOUT) -> str:
        """The first log line with one of ``needles`` (fails if the bridge exits or times out first)."""

        def found() -> bool:
            return any(n in line for line in self.lines for n in needles) or self.proc.returncode is not None

        await until(found, f"the bridge to log {needles}", timeout, self.log)
        hits = [line for line in self.lines if any(n in line for n in needles)]
        assert hits, f"the bridge exited ({self.proc.returncode}) without logging {needles}\n{self.log()}"
        return hits[0]

    async def exit_code(self, timeout: float = TURN_TIMEOUT) -> int:
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"the bridge did not exit within {timeout}s\n{self.log()}") from None
        if self.reader is not None:
            await self.reader
        return code

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        if self.reader is not None:
            await self.reader


@contextmanager
def tui(who: Assistant, tmp_path: Path, env: dict[str, str], cwd: Path) -> Iterator[Pane]:
    """The real TUI ``who`` in a pane of a private tmux server, killed afterwards."""
    pane = Pane(tmp_path / "tmux.sock", PaneRules.for_agent(who.agent))
    try:
        pane.start([str(installed(who.pin).path), *who.args], env, cwd)
        yield pane
    finally:
        pane.kill()


def max_copies(model: FakeModelServer, text: str) -> int:
    """The most user turns carrying ``text`` in any one request (2 would mean it was submitted twice)."""
    best = 0
    for body in model.bodies():
        try:
            doc = json.loads(body)
        except ValueError:
            continue
        best = max(best, sum(text in s for s in _strings(doc)))
    return best


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def first_request_with(model: FakeModelServer, text: str) -> int:
    bodies = model.bodies()
    return next(i for i, body in enumerate(bodies) if text in body or text in _decoded(body))


async def send(hub: Hub, who: Assistant, text: str) -> None:
    code, out, err = await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", who.identity, text)
    assert code in (0, 1), out + err  # 1: only the bridge's receiver was online; the message is in the mailbox


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh git repository as the working directory (``synapse adapters`` acts on its root)."""
    needs(shutil.which("tmux") is not None, "tmux")
    root = tmp_path / "proj"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    monkeypatch.chdir(root)
    for var in SCRUB:
        monkeypatch.delenv(var, raising=False)
    return root


def tui_env(who: Assistant, model: FakeModelServer, project: Path, hub: Hub, *, trust: bool = True) -> dict[str, str]:
    """The assistant in the test's temp HOME, pointed at the fake model; its hooks (if any) at the hub.

    Gemini's ``setup()`` leaves the folder untrusted (its trust dialog would
    cover the composer); ``trust`` trusts it as "Trust folder" does.
    """
    home = Path(os.environ["HOME"])
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **who.fake.setup(model, home, project)}
    if trust and who.fake is fake_gemini:
        fake_gemini.trust_folder(home, project)
    env.update(SYN_IDENTITY=who.identity, SYNAPSE_URI=hub.uri)
    for var in HEADLESS:  # as on a user's terminal: Gemini is headless whenever CI=true
        env.pop(var, None)
    return env


async def install_hooks(who: Assistant, env: dict[str, str]) -> None:
    code, out, err = await run_cli("adapters", "install", who.adapter, *who.install, env=env)
    assert code == 0 and "they will run" in out, out + err


def pending_state(who: Assistant) -> dict[str, Any]:
    from urllib.parse import quote

    path = Path(os.environ["SYN_HOME"]) / "tmux-bridge" / f"{quote(who.identity, safe='')}.json"
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


# ---------------------------------------------------------------------------- idle and busy, every TUI


@pytest.mark.parametrize("name", sorted(ASSISTANTS))
async def test_idle_pane_is_woken_once(name: str, project: Path, hub: Hub, tmp_path: Path) -> None:
    """A message for an idle TUI: the fixed prompt typed once, without the message; the model gets the prompt."""
    who = ASSISTANTS[name]
    with who.fake.serve() as model, tui(who, tmp_path, tui_env(who, model, project, hub), project) as pane:
        await until(pane.settled, f"{name} at its composer", START_TIMEOUT, pane.screen)
        bridge = await BridgeRun.start(hub, pane, who, "--once")
        try:
            await send(hub, who, "secret: rotate the staging keys")
            assert await bridge.exit_code() == 0, bridge.log()
            await until(lambda: model.seen(who.prompt), "the wake prompt in a model request", detail=pane.screen)
        finally:
            await bridge.stop()
        assert len(bridge.said("woke")) == 1 and not bridge.said("pane changed while typing"), bridge.log()
        assert max_copies(model, who.prompt) == 1
        assert not model.seen("rotate the staging keys")  # no message text is ever typed
        assert "rotate the staging keys" not in pane.history()


@pytest.mark.parametrize("name", sorted(ASSISTANTS))
async def test_busy_pane_waits_then_is_woken_once(name: str, project: Path, hub: Hub, tmp_path: Path) -> None:
    """The model holds its answer mid-turn: nothing typed while the TUI works; typed once when it is idle."""
    who = ASSISTANTS[name]
    with who.fake.serve() as model, tui(who, tmp_path, tui_env(who, model, project, hub), project) as pane:
        await until(pane.settled, f"{name} at its composer", START_TIMEOUT, pane.screen)
        bridge = await BridgeRun.start(hub, pane, who, "--once")
        try:
            model.hold()
            pane.type_line("refactor the parser")
            await until(
                lambda: model.seen("refactor the parser"), "the user's turn to reach the model", detail=pane.screen
            )
            await until(lambda: not pane.idle(), f"{name} to show it is busy", detail=pane.screen)
            await send(hub, who, "secret: rotate the staging keys")
            await bridge.line("wake for")
            await bridge.line("is not idle")  # the bridge looked at the busy pane and held the wake
            await asyncio.sleep(2.0)  # four more looks at the busy pane
            assert not bridge.said("woke") and not bridge.said("pane changed while typing"), bridge.log()
            assert who.prompt[:40] not in pane.history()
            assert not pane.idle(), pane.screen()  # still busy: the looks above were all at a busy pane
            model.release()
            assert await bridge.exit_code() == 0, bridge.log()
            await until(lambda: model.seen(who.prompt), "the wake prompt in a model request", detail=pane.screen)
        finally:
            model.release()
            await bridge.stop()
        assert len(bridge.said("woke")) == 1 and not bridge.said("pane changed while typing"), bridge.log()
        assert max_copies(model, who.prompt) == 1
        # The wake is its own turn, after the held one.
        assert first_request_with(model, who.prompt) > first_request_with(model, "refactor the parser")


# ---------------------------------------------------------------------------- after a restart, every TUI


@pytest.mark.parametrize("name", sorted(ASSISTANTS))
async def test_restarted_bridge_drops_a_wake_a_hook_delivered(
    name: str, project: Path, hub: Hub, tmp_path: Path
) -> None:
    """A wake left pending by a stopped bridge, whose message the stop hook then handed over, is not typed."""
    who = ASSISTANTS[name]
    with who.fake.serve() as model:
        env = tui_env(who, model, project, hub)
        await install_hooks(who, env)
        with tui(who, tmp_path, env, project) as pane:
            await until(pane.settled, f"{name} at its composer", START_TIMEOUT, pane.screen)
            first = await BridgeRun.start(hub, pane, who)
            try:
                model.hold()
                pane.type_line("refactor the parser")
                await until(
                    lambda: model.seen("refactor the parser"), "the user's turn to reach the model", detail=pane.screen
                )
                await until(lambda: not pane.idle(), f"{name} to show it is busy", detail=pane.screen)
                await send(hub, who, "secret: rotate the staging keys")
                await first.line("wake for")
            finally:
                await first.stop()  # the bridge dies with the wake pending
            seqs = pending_state(who)["seqs"]
            assert pending_state(who)["pending_wake"] and len(seqs) == 1
            model.release()
            # The stop hook hands the message to the agent (a continuation turn) and acks it.
            handed = "the stop hook's continuation"
            await until(lambda: model.seen("rotate the staging keys"), handed, detail=pane.screen)
            await until(pane.settled, f"{name} idle after the continuation", detail=pane.screen)
            second = await BridgeRun.start(hub, pane, who, "--once")
            try:
                line = await second.line("dropped", "woke")
                assert "dropped" in line and str(seqs[0]) in line, second.log()
                assert not model.seen(who.prompt)
                # Still alive: the next message wakes the idle agent, once.
                await send(hub, who, "secret: and the prod keys")
                assert await second.exit_code() == 0, second.log()
                await until(lambda: model.seen(who.prompt), "the wake prompt in a model request", detail=pane.screen)
            finally:
                await second.stop()
            assert len(second.said("woke")) == 1, second.log()
            assert max_copies(model, who.prompt) == 1


# ---------------------------------------------------------------------------- a fresh Gemini session


def show_gemini_tips(home: Path) -> None:
    """Gemini's start-up tips on (``setup()`` hides them): the screen a fresh session really shows."""
    path = home / ".gemini" / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc.setdefault("ui", {}).update(hideTips=False, hideBanner=False)
    path.write_text(json.dumps(doc, indent=2))


async def test_fresh_gemini_session_with_tips_and_hooks_warning_is_woken(
    project: Path, hub: Hub, tmp_path: Path
) -> None:
    """Tips (a numbered list) and the project-hooks warning ("do not trust this project") do not block the wake."""
    who = ASSISTANTS["gemini"]
    with who.fake.serve() as model:
        env = tui_env(who, model, project, hub)
        show_gemini_tips(Path(env["HOME"]))
        await install_hooks(who, env)
        with tui(who, tmp_path, env, project) as pane:
            # Gemini 0.61 now and then skips its start-up header, tips and hooks warning (a race in its
            # first render, seen under load); this test is about those banners, so start it again.
            for _ in range(3):
                await until(pane.settled, "gemini at its composer", START_TIMEOUT, pane.screen)
                screen = pane.screen()
                if "1. Create GEMINI.md files" in screen:
                    break
                pane.restart()
            assert "1. Create GEMINI.md files" in screen and "do not trust this project" in screen, screen
            bridge = await BridgeRun.start(hub, pane, who, "--once")
            try:
                await send(hub, who, "secret: rotate the staging keys")
                assert await bridge.exit_code() == 0, bridge.log()
                await until(lambda: model.seen(who.prompt), "the wake prompt in a model request", detail=pane.screen)
            finally:
                await bridge.stop()
            assert len(bridge.said("woke")) == 1 and not bridge.said("pane changed while typing"), bridge.log()
            assert max_copies(model, who.prompt) == 1
            assert model.seen("rotate the staging keys")  # the BeforeAgent hook handed the message over


async def test_fresh_gemini_trust_dialog_blocks_then_its_leftover_does_not(
    project: Path, hub: Hub, tmp_path: Path
) -> None:
    """An untrusted folder: the trust dialog is never typed into; once trusted, its leftover on screen is history."""
    who = ASSISTANTS["gemini"]
    with who.fake.serve() as model:
        env = tui_env(who, model, project, hub, trust=False)
        env.pop("GEMINI_CLI_NO_RELAUNCH")  # "Trust folder" relaunches the CLI, as it does for a user
        show_gemini_tips(Path(env["HOME"]))
        with tui(who, tmp_path, env, project) as pane:
            await until(
                lambda: "Do you trust the files in this folder?" in pane.screen(),
                "gemini's trust dialog",
                START_TIMEOUT,
                pane.screen,
            )
            bridge = await BridgeRun.start(hub, pane, who, "--once")
            try:
                await send(hub, who, "secret: rotate the staging keys")
                await bridge.line("is not idle")
                await asyncio.sleep(2.0)  # four more looks at the dialog
                assert not bridge.said("woke") and not bridge.said("pane changed"), bridge.log()
                assert "Do you trust the files in this folder?" in pane.screen()  # nothing answered it
                pane.tmux("send-keys", "-t", "agent", "Enter")  # the user: "1. Trust folder"
                assert await bridge.exit_code() == 0, bridge.log()
                await until(lambda: model.seen(who.prompt), "the wake prompt in a model request", detail=pane.screen)
            finally:
                await bridge.stop()
            assert len(bridge.said("woke")) == 1, bridge.log()
            assert max_copies(model, who.prompt) == 1


# ---------------------------------------------------------------------------- Gemini running a hook


async def test_gemini_running_a_hook_is_busy_and_a_wake_the_hook_delivered_is_dropped(
    project: Path, hub: Hub, tmp_path: Path
) -> None:
    """While the AfterAgent hook waits for mail ("Executing Hook ... (esc to cancel)", placeholder still
    visible) nothing is typed; the hook hands the message over itself, so the pending wake is dropped."""
    who = ASSISTANTS["gemini"]
    (project / "synapse.toml").write_text("[adapters.gemini]\nstop_wait_seconds = 8\n")
    with who.fake.serve() as model:
        env = tui_env(who, model, project, hub)
        await install_hooks(who, env)
        with tui(who, tmp_path, env, project) as pane:
            await until(pane.settled, "gemini at its composer", START_TIMEOUT, pane.screen)
            bridge = await BridgeRun.start(hub, pane, who)
            try:
                pane.type_line("refactor the parser")
                await until(lambda: model.seen("refactor the parser"), "the user's turn", detail=pane.screen)

                def stop_hook_waiting() -> bool:
                    screen = pane.screen()
                    return "Executing Hook" in screen and "hook gemini stop" in screen

                await until(stop_hook_waiting, "the AfterAgent hook to wait for mail", detail=pane.screen)
                assert "Type your message" in pane.screen()  # the idle placeholder alone would have let us type
                await send(hub, who, "secret: rotate the staging keys")
                await bridge.line("wake for")
                handed = "the AfterAgent hook's continuation"
                await until(lambda: model.seen("rotate the staging keys"), handed, detail=pane.screen)
                line = await bridge.line("dropped", "woke")
                assert "dropped" in line, bridge.log()
            finally:
                await bridge.stop()
            assert not bridge.said("woke") and not bridge.said("pane changed while typing"), bridge.log()
            assert not model.seen(who.prompt)
            assert who.prompt[:40] not in pane.history()


async def test_gemini_running_a_slow_hook_is_busy(project: Path, hub: Hub, tmp_path: Path) -> None:
    """A project's own slow BeforeAgent hook ("Executing Hook: ... (esc to cancel)", the placeholder still
    visible below): nothing typed until the hook and the turn are done, then the wake is typed once."""
    who = ASSISTANTS["gemini"]
    done = project / "hook-done"
    slow = "sleep 6; touch hook-done; echo '{}'"  # short: Gemini elides a status line wider than the pane
    (project / ".gemini").mkdir()
    (project / ".gemini" / "settings.json").write_text(
        json.dumps({"hooks": {"BeforeAgent": [{"hooks": [{"type": "command", "command": slow, "timeout": 30000}]}]}})
    )
    with who.fake.serve() as model, tui(who, tmp_path, tui_env(who, model, project, hub), project) as pane:
        await until(pane.settled, "gemini at its composer", START_TIMEOUT, pane.screen)
        bridge = await BridgeRun.start(hub, pane, who, "--once")
        try:
            pane.type_line("refactor the parser")
            await until(lambda: "Executing Hook: sleep 6" in pane.screen(), "the slow hook", detail=pane.screen)
            assert "Type your message" in pane.screen()  # the idle placeholder alone would have let us type
            await send(hub, who, "secret: rotate the staging keys")
            await bridge.line("is not idle")
            await until(done.exists, "the slow hook to finish", 30)
            assert not bridge.said("woke") and not bridge.said("pane changed while typing"), bridge.log()
            assert who.prompt[:40] not in pane.history()
            assert await bridge.exit_code() == 0, bridge.log()
            await until(lambda: model.seen(who.prompt), "the wake prompt in a model request", detail=pane.screen)
        finally:
            await bridge.stop()
        assert len(bridge.said("woke")) == 1, bridge.log()
        assert max_copies(model, who.prompt) == 1
        assert first_request_with(model, who.prompt) > first_request_with(model, "refactor the parser")


# ---------------------------------------------------------------------------- one window before and after typing


async def test_a_numbered_list_above_the_window_does_not_make_the_bridge_loop(
    project: Path, hub: Hub, tmp_path: Path
) -> None:
    """A model's numbered list still on screen but above the checked window: typed once, no type-and-clear loop.

    The check after typing reads the same window as the check before it; when
    it read the whole screen, it found the list the first check had not
    looked at, cleared, and typed again, forever.
    """
    who = ASSISTANTS["gemini"]
    notes = "\n".join(f"Note {n}: nothing else to add." for n in range(1, 23))
    reply = f"Two options:\n\n1. Delete the branch\n2. Keep it\n\n{notes}"
    with (
        who.fake.serve(reply=reply) as model,
        tui(who, tmp_path, tui_env(who, model, project, hub), project) as pane,
    ):
        await until(pane.settled, "gemini at its composer", START_TIMEOUT, pane.screen)
        pane.type_line("what are the options?")
        await until(lambda: "Note 22" in pane.screen() and pane.settled(), "the answer", detail=pane.screen)
        screen = pane.screen()
        assert "1. Delete the branch" in screen and "1. Delete the branch" not in pane.rules.window(screen), screen
        bridge = await BridgeRun.start(hub, pane, who, "--once")
        try:
            await send(hub, who, "secret: rotate the staging keys")
            line = await bridge.line("woke", "pane changed while typing")
            assert "woke" in line, bridge.log()
            assert await bridge.exit_code() == 0, bridge.log()
            await until(lambda: model.seen(who.prompt), "the wake prompt in a model request", detail=pane.screen)
        finally:
            await bridge.stop()
        assert len(bridge.said("woke")) == 1 and not bridge.said("pane changed while typing"), bridge.log()
        assert max_copies(model, who.prompt) == 1
