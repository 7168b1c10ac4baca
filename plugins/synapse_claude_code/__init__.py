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

    def config_path(self, scope: str) -> Path:
        if scope == "user":
            base = os.environ.get("CLAUDE_CONFIG_DIR") or str(Path("~/.claude").expanduser())
            return Path(base) / "settings.json"
        return project_root() / ".claude" / "settings.json"

    # ------------------------------------------------------------------ idle wake (opt-in)

    def _setting(self, key: str) -> Any:
        from synapse_channel.cli.common import settings

        found = settings().deferred.get(f"adapters.claude_code.{key}")
        return found.value if found else None

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
        if found is None:
            if entry == "cli":  # interactive; no /proc to find the process by: watch our parent instead
                parent = os.getppid()
                return (lambda: os.getppid() == parent), ""
            return None, "cannot tell whether Claude Code runs this hook in the background; not waiting"
        pid, argv = found
        if entry != "cli" and printing(argv) and not streaming_input(argv):
            return None, "claude -p without --input-format stream-json runs background hooks in the foreground"
        return (lambda: alive(pid)), ""


def claude_process(max_depth: int = 6) -> tuple[int, list[str]] | None:
    """The nearest ancestor that is Claude Code (by its program name), with its argv; None if not found."""
    pid = os.getppid()
    for _ in range(max_depth):
        if pid <= 1:
            return None
        try:
            argv = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        names = [os.path.basename(argv[0])] if argv else []
        with contextlib.suppress(OSError):
            names.append(os.path.basename(os.readlink(f"/proc/{pid}/exe")))
        if any(n.startswith("claude") for n in names):
            return pid, argv
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after the parenthesised command name
    return None


def printing(argv: list[str]) -> bool:
    """``-p`` / ``--print``: a non-interactive run."""
    return "-p" in argv[1:] or "--print" in argv[1:]


def streaming_input(argv: list[str]) -> bool:
    """``--input-format stream-json`` (either spelling)."""
    args = argv[1:]
    return "--input-format=stream-json" in args or any(
        a == "--input-format" and i + 1 < len(args) and args[i + 1] == "stream-json" for i, a in enumerate(args)
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@hookimpl
def register_wake_adapters(register: Any) -> None:
    """Offer the Claude Code adapter."""
    register(ClaudeCode.name, ClaudeCode())


@hookimpl
def register_settings(register: Any) -> None:
    """``[adapters.claude_code] stop_wait_seconds``, ``idle_wake`` and ``idle_wake_seconds``."""
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
