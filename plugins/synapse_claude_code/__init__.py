"""Bundled adapter: Claude Code (``.claude/settings.json`` hooks).

SessionStart and UserPromptSubmit add ``hookSpecificOutput.additionalContext``;
Stop answers ``{"decision": "block", "reason": ...}`` to keep Claude working on
waiting messages, and honours ``stop_hook_active``. See docs/adapters.md.

Opt-in idle wake (``[adapters.claude_code] idle_wake = true``): SessionStart
and Stop also start ``synapse hook claude-code idle-wait`` as an
``asyncRewake`` hook. Claude Code runs it in the background; it blocks until a
directed message arrives and exits 2 with the message on stderr, which Claude
Code hands to the idle model as a new turn. Tested against Claude Code 2.1.197.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from synapse_channel.adapters import HookAdapter, project_root, synapse_command
from synapse_channel.hookspecs import hookimpl

#: Claude Code events that start the background idle wait: the session going idle at start and after each turn.
IDLE_EVENTS = ("SessionStart", "Stop")
DEFAULT_IDLE_SECONDS = 86400.0
#: Claude Code's own timeout for the background hook, beyond the wait itself (it kills the hook at its timeout).
IDLE_MARGIN_SECONDS = 60


class ClaudeCode(HookAdapter):
    """Claude Code: command hooks in settings.json, JSON in and out, timeouts in seconds."""

    name = "claude-code"
    title = "Claude Code"
    events: ClassVar[dict[str, str]] = {"session-start": "SessionStart", "prompt": "UserPromptSubmit", "stop": "Stop"}
    empty_output = ""
    docs_url = "https://docs.claude.com/en/docs/claude-code/hooks"
    edit_event = "PreToolUse"
    edit_matcher = "Write|Edit|MultiEdit|NotebookEdit"
    shell_event = "PreToolUse"
    shell_matcher = "Bash"

    def config_path(self, scope: str) -> Path:
        if scope == "user":
            base = os.environ.get("CLAUDE_CONFIG_DIR") or str(Path("~/.claude").expanduser())
            return Path(base) / "settings.json"
        return project_root() / ".claude" / "settings.json"

    # ------------------------------------------------------------------ idle wake (opt-in)

    def _setting(self, key: str) -> Any:
        from synapse_channel.api import setting

        return setting(f"adapters.claude_code.{key}")

    def idle_wake(self) -> bool:
        """``[adapters.claude_code] idle_wake``: install the background idle wait (default off)."""
        return self._setting("idle_wake") is True

    def idle_wait_seconds(self) -> float:
        """``[adapters.claude_code] idle_wake_seconds``: how long one idle wait lasts before it gives up quietly."""
        value = self._setting("idle_wake_seconds")
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
        return float(value) if ok else DEFAULT_IDLE_SECONDS

    def entries(self) -> dict[str, dict[str, Any]]:
        """The three hooks, plus (with ``idle_wake``) the ``asyncRewake`` idle wait on SessionStart and Stop."""
        out = super().entries()
        if self.idle_wake():
            idle = {
                "type": "command",
                "command": f"{synapse_command()} hook {self.name} idle-wait",
                "asyncRewake": True,
                "timeout": int(self.idle_wait_seconds()) + IDLE_MARGIN_SECONDS,
            }
            for native in IDLE_EVENTS:
                out[native]["hooks"].append(dict(idle))
        return out

    def idle_wait_check(self) -> tuple[Callable[[], bool] | None, str]:
        """Whether this idle wait runs in Claude Code's background: (session-alive probe, "") or (None, why not).

        Claude Code 2.1.197 backgrounds an ``asyncRewake`` hook only in an
        interactive session or with streamed input (``--input-format
        stream-json``, which the Agent SDKs use); under a plain ``claude -p``
        it runs it in the foreground as an ordinary blocking hook, so waiting
        there would hold up the run. The probe lets the wait end with its
        session instead of outliving it.
        """
        entry = os.environ.get("CLAUDE_CODE_ENTRYPOINT", "")
        found = claude_process()
        if found is None:  # never wait for a session we cannot watch: an orphaned wait would eat mail
            return None, "cannot find the Claude Code process this hook belongs to"
        pid, argv = found
        if entry != "cli" and printing(argv) and not streaming_input(argv):
            return None, "claude -p without --input-format stream-json runs background hooks in the foreground"
        return (lambda: alive(pid)), ""


def process(pid: int) -> tuple[int, list[str], str, str] | None:
    """(parent pid, argv, state letter, executable) of ``pid`` from ``/proc``, else ``ps``; None if unknown."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # state, ppid, ...
        exe = ""
        with contextlib.suppress(OSError):
            exe = os.readlink(f"/proc/{pid}/exe")
        return int(fields[1]), [a.decode(errors="replace") for a in raw.split(b"\0") if a], fields[0], exe
    except (OSError, IndexError, ValueError):
        pass
    try:  # no /proc (macOS, BSD): ps splits the command line on spaces, enough to read flags
        out = subprocess.run(
            ["ps", "-o", "ppid=", "-o", "stat=", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.split()
        return (int(out[0]), out[2:], out[1][:1], "") if len(out) >= 3 else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def is_claude(argv: list[str], exe: str) -> bool:
    """Claude Code's native binary (``claude``), or the older ``node .../claude-code/cli.js``."""
    first = os.path.basename(argv[0]) if argv else ""
    if first.startswith("claude") or os.path.basename(exe).startswith("claude"):
        return True
    return first.startswith("node") and len(argv) > 1 and "claude-code" in argv[1]


def claude_process(max_depth: int = 6) -> tuple[int, list[str]] | None:
    """The nearest live ancestor that is Claude Code, with its argv; None if there is none."""
    pid = os.getppid()
    for _ in range(max_depth):
        info = process(pid) if pid > 1 else None
        if info is None or info[2] == "Z":
            return None
        parent, argv, _, exe = info
        if is_claude(argv, exe):
            return pid, argv
        pid = parent
    return None


def alive(pid: int) -> bool:
    """``pid`` still runs (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    info = process(pid)
    return info is None or info[2] != "Z"


def printing(argv: list[str]) -> bool:
    """``-p`` / ``--print``: a non-interactive run."""
    return "-p" in argv[1:] or "--print" in argv[1:]


def streaming_input(argv: list[str]) -> bool:
    """``--input-format stream-json`` (either spelling)."""
    args = argv[1:]
    return "--input-format=stream-json" in args or any(
        a == "--input-format" and i + 1 < len(args) and args[i + 1] == "stream-json" for i, a in enumerate(args)
    )


@hookimpl
def register_wake_adapters(register: Any) -> None:
    """Offer the Claude Code adapter."""
    register(ClaudeCode.name, ClaudeCode())


@hookimpl
def register_settings(register: Any) -> None:
    """``[adapters.claude_code] stop_wait_seconds``, ``idle_wake``, ``idle_wake_seconds`` and ``channel``."""
    register(
        "adapters.claude_code.stop_wait_seconds",
        float,
        0.0,
        "On Stop with nothing waiting, wait up to this long for a message before letting Claude stop.",
    )
    register(
        "adapters.claude_code.idle_wake",
        bool,
        False,
        "Also install a background (asyncRewake) hook that wakes an idle Claude Code session when a message "
        "arrives (interactive sessions and --input-format stream-json; re-run `synapse adapters install`).",
    )
    register(
        "adapters.claude_code.idle_wake_seconds",
        float,
        DEFAULT_IDLE_SECONDS,
        "How long one idle wait lasts; after it the idle session is reachable again from its next turn.",
    )
    register(
        "adapters.claude_code.channel",
        bool,
        False,
        "`synapse mcp install claude-code` serves with --channel: new mail is pushed into the running session as a "
        "Claude Code channel event (research preview: claude.ai login, started with "
        "--dangerously-load-development-channels server:synapse).",
    )
