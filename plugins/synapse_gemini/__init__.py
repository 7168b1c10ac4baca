"""Bundled adapter: Gemini CLI (``.gemini/settings.json`` hooks).

SessionStart and BeforeAgent add ``hookSpecificOutput.additionalContext``;
AfterAgent answers ``{"decision": "deny", "reason": ...}``, which Gemini CLI
turns into a new prompt (the equivalent of Claude Code's stop block). stdout
must be JSON only, so "nothing to say" is ``{}``; timeouts are milliseconds.

Gemini runs no hooks at all, project or user, in a folder it does not trust,
and folder trust is on unless a settings file turns it off; so
:meth:`Gemini.trust_check` reads Gemini's own files (see :mod:`.trust`) and
:meth:`Gemini.trust` writes the rule Gemini's own "Trust folder" choice
writes. Checked against Gemini CLI 0.61.0; see docs/adapters.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from synapse_channel.adapters import Change, HookAdapter, TrustCheck, project_root
from synapse_channel.hookspecs import hookimpl

from .trust import check, hooks_switched_off, stripped_for_hooks, trust_folder, user_settings_path


class Gemini(HookAdapter):
    """Gemini CLI: command hooks in settings.json, JSON in and out, timeouts in milliseconds."""

    name = "gemini"
    title = "Gemini CLI"
    events: ClassVar[dict[str, str]] = {"session-start": "SessionStart", "prompt": "BeforeAgent", "stop": "AfterAgent"}
    timeout_in_ms = True
    empty_output = "{}"
    docs_url = "https://geminicli.com/docs/hooks/reference"
    edit_event = "BeforeTool"
    edit_matcher = "write_file|replace"
    shell_event = "BeforeTool"
    shell_matcher = "run_shell_command"

    def config_path(self, scope: str) -> Path:
        """``<project>/.gemini/settings.json``, or Gemini's user file (``$GEMINI_CLI_HOME`` honoured)."""
        if scope == "user":
            return user_settings_path()
        return project_root() / ".gemini" / "settings.json"

    def block_output(self, text: str) -> str:
        return json.dumps({"decision": "deny", "reason": text})

    def edit_paths(self, payload: dict[str, Any]) -> list[str]:
        """``write_file`` and ``replace`` name their target in ``tool_input.file_path`` (absolute or cwd-relative)."""
        tool_input = payload.get("tool_input")
        found = tool_input.get("file_path") if isinstance(tool_input, dict) and self.writes(payload) else None
        return [found] if isinstance(found, str) and found else []

    def shell_input_output(self, tool_input: dict[str, Any]) -> str:
        """BeforeTool: ``hookSpecificOutput.tool_input`` replaces the arguments (the whole input, so none is lost)."""
        return json.dumps({"hookSpecificOutput": {"hookEventName": self.shell_event, "tool_input": tool_input}})

    def deny_edit_output(self, reason: str) -> str:
        """BeforeTool: ``decision: "deny"`` blocks the tool; ``reason`` goes to the model."""
        return json.dumps({"decision": "deny", "reason": reason})

    # ------------------------------------------------------------------ folder trust

    def trust_check(self, scope: str) -> TrustCheck:
        """Will Gemini run our hooks here, with our environment? (Both scopes: user hooks need it too.)

        First the folder: is this project trusted, as Gemini decides it. Then
        Gemini's hook switches (``hooksConfig``). Then the hooks' environment: where Gemini redacts variables (GitHub
        Actions, or redaction turned on) a hook without ``SYN_IDENTITY`` is
        as good as off, so that is reported the same way.
        """
        root = project_root()
        verdict = check(root)
        if verdict.trusted is False:
            return TrustCheck(False, verdict.step or (self.install_step(scope) + " --trust"), verdict.why)
        commands = [hook["command"] for _, group in self.hook_groups() for hook in group["hooks"]]
        off = hooks_switched_off(root, commands)
        if off:
            return TrustCheck(False, off[1], off[0])
        stripped, cause, hopeless = stripped_for_hooks(root)
        if stripped:
            why = f"Gemini strips {', '.join(stripped)} from hooks here ({cause}); they would do nothing"
            if hopeless:
                return TrustCheck(False, f"unset or change {', '.join(hopeless)} (its value looks like a secret)", why)
            names = ", ".join(json.dumps(k) for k in stripped)
            step = f"add {names} to security.environmentVariableRedaction.allowed in {user_settings_path()}"
            return TrustCheck(False, step, why)
        return TrustCheck(verdict.trusted, None, verdict.why)

    def trust(self, scope: str) -> list[Change]:
        """Add ``"<project>": "TRUST_FOLDER"`` to Gemini's trustedFolders.json, as its trust dialog does."""
        return trust_folder(project_root())


@hookimpl
def register_wake_adapters(register: Any) -> None:
    """Offer the Gemini CLI adapter."""
    register(Gemini.name, Gemini())


@hookimpl
def register_settings(register: Any) -> None:
    """``[adapters.gemini] stop_wait_seconds``."""
    register(
        "adapters.gemini.stop_wait_seconds",
        float,
        0.0,
        "On AfterAgent with nothing waiting, wait up to this long for a message before letting Gemini stop.",
    )
