"""Assistant wake-loop adapters: the public, plugin-facing toolkit bundled and third-party adapters share.

Part of the public API (like :mod:`synapse_channel.api`): a plugin may import
``synapse_channel.adapters`` (:class:`HookAdapter` and its helpers),
``synapse_channel.adapters.runtime`` (:class:`~synapse_channel.adapters.runtime.Seat`,
``render_messages``, ``cursor_lock``) and ``synapse_channel.adapters.settings_file``.

An adapter installs ``synapse hook <name> <event>`` commands into its
assistant's own config (merged, never clobbered), reports their status, and
turns the assistant's hook input into the output it parses. The shared logic
(identity, mailbox catch-up, acks, the stop-loop guard, failing open) lives in
:mod:`synapse_channel.adapters.runtime`; an adapter only says where its
config lives and how its events and outputs are shaped.

Register one from a plugin::

    @hookimpl
    def register_wake_adapters(register):
        register("my-assistant", MyAdapter())
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from .settings_file import Change, apply, installed_events, plan_install, plan_uninstall

__all__ = ["Change", "HookAdapter", "Readiness", "TrustCheck", "project_root", "synapse_command"]

EVENTS = ("session-start", "prompt", "stop")


def project_root() -> Path:
    """The git top level of the working directory, else the working directory."""
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return Path.cwd()


def synapse_command() -> str:
    """The absolute path of this installation's ``synapse`` (hooks must not depend on PATH)."""
    beside = Path(sys.executable).parent / "synapse"
    return str(beside) if beside.exists() else "synapse"


@dataclass(frozen=True, slots=True)
class TrustCheck:
    """Whether the assistant will run hooks it finds installed, as far as its own files say.

    ``trusted`` is None when the assistant has no trust gate (or none we can
    read); ``step`` is the one thing the user must do when it is False.
    """

    trusted: bool | None = None
    step: str | None = None
    why: str = ""


@dataclass(frozen=True, slots=True)
class Readiness:
    """One adapter in one scope: installed, up to date, trusted, and so: will it run?"""

    adapter: str
    scope: str
    file: str
    events: tuple[str, ...]
    installed: bool
    current: bool
    trusted: bool | None
    will_run: bool
    step: str | None
    why: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["events"] = list(self.events)
        return out


class HookAdapter:
    """An assistant whose hooks run commands with JSON on stdin and JSON on stdout."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    #: our event -> the assistant's event name
    events: ClassVar[dict[str, str]] = {}
    timeout_seconds: ClassVar[int] = 15
    timeout_in_ms: ClassVar[bool] = False
    #: what to print when there is nothing to say ("" or "{}", per the assistant's parser)
    empty_output: ClassVar[str] = ""
    docs_url: ClassVar[str] = ""
    #: the assistant's pre-tool event and the matcher naming its file-writing tools ("": no edit guard)
    edit_event: ClassVar[str] = ""
    edit_matcher: ClassVar[str] = ""
    #: the assistant's pre-tool event and the matcher naming its shell tool ("": no shell confinement)
    shell_event: ClassVar[str] = ""
    shell_matcher: ClassVar[str] = ""

    # ------------------------------------------------------------------ where config lives

    def config_path(self, scope: str) -> Path:
        """The settings file for ``scope`` (``project`` or ``user``)."""
        raise NotImplementedError

    def extra_changes(self, scope: str, installing: bool) -> list[Change]:
        """Other files the assistant needs touched (e.g. a feature flag)."""
        return []

    # ------------------------------------------------------------------ install / uninstall / status

    def stop_wait(self) -> float:
        """``[adapters.NAME] stop_wait_seconds`` from the project config (0 when unset)."""
        from ..client.context import settings

        found = settings().deferred.get(f"adapters.{self.name.replace('-', '_')}.stop_wait_seconds")
        value = found.value if found else 0
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0

    def entries(self) -> dict[str, dict[str, Any]]:
        """The hook group we add for each of the assistant's events.

        The stop hook's timeout grows with ``stop_wait_seconds`` so the
        assistant does not kill a hook that is deliberately waiting.
        """
        scale = 1000 if self.timeout_in_ms else 1
        out: dict[str, dict[str, Any]] = {}
        for ours, native in self.events.items():
            seconds = self.timeout_seconds + (int(self.stop_wait()) if ours == "stop" else 0)
            command = f"{synapse_command()} hook {self.name} {ours}"
            out[native] = {"hooks": [{"type": "command", "command": command, "timeout": seconds * scale}]}
        if self.edit_event and self.edit_guard():
            command = f"{synapse_command()} hook {self.name} pre-edit"
            hook = {"type": "command", "command": command, "timeout": self.timeout_seconds * scale}
            out[self.edit_event] = {"matcher": self.edit_matcher, "hooks": [hook]}
        return out

    def hook_groups(self) -> list[tuple[str, dict[str, Any]]]:
        """Every hook group we install, as (assistant event, group): :meth:`entries`, plus the shell hook.

        The shell hook shares its event with the pre-edit guard (a second
        group with its own matcher), so it cannot live in the one-group-per-event
        :meth:`entries`.
        """
        groups = list(self.entries().items())
        if self.shell_event and self.enforce_shell():
            scale = 1000 if self.timeout_in_ms else 1
            command = f"{synapse_command()} hook {self.name} pre-shell"
            hook = {"type": "command", "command": command, "timeout": self.timeout_seconds * scale}
            groups.append((self.shell_event, {"matcher": self.shell_matcher, "hooks": [hook]}))
        return groups

    def enforce_shell(self) -> bool:
        """``[guard] enforce_shell`` (default false): install the hook running shell commands confined."""
        from ..client.context import settings

        return settings().get("guard.enforce_shell") is True

    def edit_guard(self) -> bool:
        """``[guard] edits`` (default true): install the pre-edit hook that refuses other agents' claimed files."""
        from ..client.context import settings

        return settings().get("guard.edits") is not False

    def plan(self, scope: str, installing: bool) -> list[Change]:
        """The edits an install or uninstall would make."""
        path = self.config_path(scope)
        main = plan_install(path, self.hook_groups()) if installing else plan_uninstall(path)
        return [main, *self.extra_changes(scope, installing)]

    def install(self, scope: str = "project") -> list[Change]:
        """Merge our hooks in (idempotent); returns what changed."""
        changes = self.plan(scope, True)
        for change in changes:
            apply(change, installing=True)
        return changes

    def uninstall(self, scope: str = "project") -> list[Change]:
        """Remove exactly our hooks; returns what changed."""
        changes = self.plan(scope, False)
        for change in changes:
            apply(change, installing=False)
        return changes

    def status(self) -> dict[str, Any]:
        """Per scope: the file, which of our events it carries, and whether the assistant will run them."""
        out: dict[str, Any] = {"adapter": self.name, "title": self.title}
        for scope in ("project", "user"):
            out[scope] = self.readiness(scope).as_dict()
        return out

    # ------------------------------------------------------------------ will the assistant run them?

    def trust_check(self, scope: str) -> TrustCheck:
        """The assistant's own gate on installed hooks (subclasses; default: none)."""
        return TrustCheck()

    def trust(self, scope: str) -> list[Change]:
        """Complete the trust step through the assistant's own supported mechanism (``--trust``).

        Returns the edits made; the default assistant has nothing to trust.
        """
        return []

    def install_step(self, scope: str) -> str:
        """The command that installs (or updates) this adapter in ``scope``."""
        return f"synapse adapters install {self.name}" + (" --scope user" if scope == "user" else "")

    def readiness(self, scope: str) -> Readiness:
        """Installed with the current commands and timeouts, trusted, and so: will it run?"""
        from .settings_file import SettingsError

        path = self.config_path(scope)
        events = installed_events(path)
        installed = set(self.events.values()) <= set(events)
        try:
            current = installed and not plan_install(path, self.hook_groups()).changed
        except SettingsError:
            current = False
        check = self.trust_check(scope) if installed else TrustCheck()
        step, why = None, check.why
        if not installed:
            step, why = self.install_step(scope), ("not installed" if not events else "some hooks are missing")
        elif not current:
            step, why = self.install_step(scope), "installed hooks are out of date (command or timeout changed)"
        elif check.trusted is False:
            step = check.step
        return Readiness(
            adapter=self.name,
            scope=scope,
            file=str(path),
            events=tuple(events),
            installed=installed,
            current=current,
            trusted=check.trusted if installed else None,
            will_run=installed and check.trusted is not False,
            step=step,
            why=why,
        )

    # ------------------------------------------------------------------ hook I/O

    def stop_active(self, payload: dict[str, Any]) -> bool:
        """The assistant's own "already continuing because of a stop hook" flag."""
        return payload.get("stop_hook_active") is True

    def context_output(self, event: str, text: str) -> str:
        """Output that adds ``text`` to the model's context for ``event``."""
        import json

        return json.dumps({"hookSpecificOutput": {"hookEventName": self.events[event], "additionalContext": text}})

    def block_output(self, text: str) -> str:
        """Output that keeps the agent going with ``text`` as its next instruction."""
        import json

        return json.dumps({"decision": "block", "reason": text})

    def edit_paths(self, payload: dict[str, Any]) -> list[str]:
        """The files a pre-tool call would write ([] for a tool that writes none).

        Default: Claude Code's tools (``Write``, ``Edit``, ``MultiEdit``:
        ``file_path``; ``NotebookEdit``: ``notebook_path``).
        """
        tool_input = payload.get("tool_input")
        if not isinstance(tool_input, dict) or not self.writes(payload):
            return []
        found = [tool_input.get(key) for key in ("file_path", "notebook_path")]
        return [p for p in found if isinstance(p, str) and p]

    def writes(self, payload: dict[str, Any]) -> bool:
        """Is the call one of the file-writing tools the matcher names? (A hook may be wired more widely.)"""
        return payload.get("tool_name") in self.edit_matcher.split("|")

    def shell_input_output(self, tool_input: dict[str, Any]) -> str:
        """Output that runs the shell tool with ``tool_input`` instead (Claude Code's ``updatedInput``).

        No ``permissionDecision``: Claude Code then applies the new input and
        still runs its own permission checks on it, so nothing is auto-approved.
        """
        import json

        return json.dumps({"hookSpecificOutput": {"hookEventName": self.shell_event, "updatedInput": tool_input}})

    def deny_edit_output(self, reason: str) -> str:
        """Output that refuses the tool call and shows ``reason`` to the model (Claude Code's form)."""
        import json

        return json.dumps(
            {
                "hookSpecificOutput": {
                    "hookEventName": self.edit_event,
                    "permissionDecision": "deny",
                    "permissionDecisionReason": reason,
                }
            }
        )
