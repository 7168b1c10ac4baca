"""Bundled adapter: Codex CLI (``.codex/hooks.json``; trust recorded in ``$CODEX_HOME/config.toml``).

Codex reads the same envelope as Claude Code (``hookSpecificOutput`` with
``additionalContext``; Stop: ``decision: "block"`` + ``reason``) but rejects
an empty stdout on some events, so "nothing to say" is ``{}``.

Codex (tested: 0.171.0) runs a hook only when it is trusted: the user
config's ``[hooks.state."<hooks.json path>:<event>:<group>:<handler>"]``
table must hold ``trusted_hash`` equal to the hash Codex computes over the
hook's event, matcher, command and timeout (see :mod:`.trust`). A project's
``.codex/`` layer, hooks included, loads only when the project root is
trusted (``[projects."<root>"] trust_level = "trusted"``). Untrusted hooks are
skipped silently, so readiness reports it and ``--trust`` writes exactly what
Codex writes when the user approves. Hooks are on by default in current Codex;
install writes no feature flag and removes the marked ``[features]`` lines
older installs wrote (they could make Codex refuse to start).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from synapse_channel.adapters import Change, HookAdapter, Readiness, TrustCheck, project_root
from synapse_channel.adapters.settings_file import SettingsError, apply
from synapse_channel.hookspecs import hookimpl

from . import trust as codex_trust
from .wake import is_our_notify, notify_command

DEFAULT_WAKE_SECONDS = 600.0
#: The marker older installs put on the feature-flag lines they added to config.toml.
MARK = "# synapse-channel: codex hooks"


def codex_home() -> Path:
    """``$CODEX_HOME`` or ``~/.codex``, with symlinks resolved as Codex resolves it (trust keys are its paths)."""
    return Path(os.environ.get("CODEX_HOME") or str(Path("~/.codex").expanduser())).resolve()


def without_flag(text: str) -> str:
    """``config.toml`` text without the marked flag lines older installs wrote.

    A marked ``[features]`` header that now heads other keys the user added
    stays (unmarked), so those keys do not slide into the table above.
    """
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    for i, line in enumerate(lines):
        if MARK not in line:
            out.append(line)
            continue
        if line.lstrip().startswith("[") and _table_has_other_keys(lines, i):
            out.append(line.split(MARK)[0].rstrip() + "\n")
    return "".join(out)


def _table_has_other_keys(lines: list[str], header: int) -> bool:
    for line in lines[header + 1 :]:
        stripped = line.strip()
        if stripped.startswith("["):
            return False
        if stripped and not stripped.startswith("#") and MARK not in line:
            return True
    return False


class Codex(HookAdapter):
    """Codex CLI: hooks.json beside the config layer, JSON in and out, timeouts in seconds."""

    name = "codex"
    title = "Codex CLI"
    events: ClassVar[dict[str, str]] = {"session-start": "SessionStart", "prompt": "UserPromptSubmit", "stop": "Stop"}
    empty_output = "{}"
    docs_url = "https://developers.openai.com/codex/hooks"
    edit_event = "PreToolUse"
    edit_matcher = "apply_patch"

    def config_path(self, scope: str) -> Path:
        return (codex_home() if scope == "user" else project_root() / ".codex") / "hooks.json"

    def edit_paths(self, payload: dict[str, Any]) -> list[str]:
        """``apply_patch`` carries its patch in ``tool_input.command`` (a string, or argv whose last item is it)."""
        tool_input = payload.get("tool_input")
        command = tool_input.get("command") if isinstance(tool_input, dict) else None
        if isinstance(command, list):
            command = "\n".join(c for c in command if isinstance(c, str))
        return patch_paths(command) if isinstance(command, str) else []

    def user_config(self) -> Path:
        """Codex's user ``config.toml``: where it records hook and project trust."""
        return codex_home() / "config.toml"

    def extra_changes(self, scope: str, installing: bool) -> list[Change]:
        """Install: drop the legacy flag lines. Uninstall: also drop the trust records of our hooks."""
        path = self.user_config()
        before = path.read_text() if path.exists() else None
        text = without_flag(before) if before is not None and MARK in before else before or ""
        notify = codex_trust.read_config_text(text).get("notify")
        if notify is not None and not is_our_notify(notify) and installing and self.queue_wake():
            raise SettingsError(
                f"{path} already has notify = {notify!r}; [adapters.codex] queue_wake needs that setting"
                " (Codex runs one notify program); nothing was changed"
            )
        if installing:
            # notify is user-wide and the wake program checks queue_wake per project, so a project with it
            # off leaves another project's notify alone (uninstall removes it).
            wanted = notify_command() if self.queue_wake() else notify
            if wanted != notify:
                text = codex_trust.set_top_level(text, "notify", wanted)
            return [Change(path, before, text if before is not None or text else None)]
        if before is None:
            return [Change(path, None, None)]
        if is_our_notify(notify):
            text = codex_trust.set_top_level(text, "notify", None)
        keys = [key for key, _ in codex_trust.our_hooks(self.config_path(scope))]
        project = project_root().resolve() if scope == "project" else None
        text = codex_trust.forget(text, keys, backup=_backup_text(path), project=project)
        created = path.with_name(path.name + ".synapse-created").exists()
        return [Change(path, before, None if created and not text.strip() else text)]

    # ------------------------------------------------------------------ opt-in idle wake (codex queue)

    def _setting(self, key: str) -> Any:
        from synapse_channel.api import setting

        return setting(f"adapters.codex.{key}")

    def queue_wake(self) -> bool:
        """``[adapters.codex] queue_wake``: after each turn, wait for mail and ``codex queue`` it (default off)."""
        return self._setting("queue_wake") is True

    def queue_wake_seconds(self) -> float:
        """``[adapters.codex] queue_wake_seconds``: how long one wait after a turn lasts."""
        value = self._setting("queue_wake_seconds")
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
        return float(value) if ok else DEFAULT_WAKE_SECONDS

    def queue_wake_remote(self) -> str | None:
        """``[adapters.codex] queue_wake_remote``: the app server holding the threads, when not the local daemon."""
        value = self._setting("queue_wake_remote")
        return value if isinstance(value, str) and value else None

    def readiness(self, scope: str) -> Readiness:
        """The hooks' readiness; with ``queue_wake`` on, also whether Codex's ``notify`` runs our wait."""
        ready = super().readiness(scope)
        if not ready.installed or not self.queue_wake():
            return ready
        try:
            notify = codex_trust.read_config(self.user_config()).get("notify")
        except SettingsError:
            return ready  # the trust check already says what is wrong with the file
        if is_our_notify(notify):
            return ready
        why = f"queue_wake is on but {self.user_config()} does not run the synapse wait as its notify program"
        return replace(ready, current=False, step=self.install_step(scope), why=why)

    # ------------------------------------------------------------------ Codex's trust gate

    def trust_check(self, scope: str) -> TrustCheck:
        """What Codex itself will decide: each of our hooks trusted by its current hash; the project trusted."""
        step = self.trust_step(scope)
        try:
            config = codex_trust.read_config(self.user_config())
        except SettingsError as exc:
            return TrustCheck(False, f"fix {self.user_config()} (Codex cannot start with it)", str(exc))
        off = codex_trust.hooks_switched_off(config)
        if off:
            return TrustCheck(False, f"remove {off} from {self.user_config()}", f"hooks are turned off ({off})")
        problems = []
        if scope == "project":
            root = project_root().resolve()
            level = codex_trust.project_trust_level(config, root)
            if level is not None and level != "trusted":
                # the user's own decision about this folder: say so, never override it
                why = f"the project {root} is marked {level!r} in Codex, so it ignores {root / '.codex'}"
                fix = f'set trust_level = "trusted" under [projects."{root}"] in {self.user_config()}'
                return TrustCheck(False, fix, why)
            if level is None:
                problems.append(f"the project {root} is not trusted in Codex (it ignores its .codex/ folder)")
        states = codex_trust.hook_states(config)
        ours = codex_trust.our_hooks(self.config_path(scope))
        disabled = [key for key, _ in ours if states.get(key, {}).get("enabled") is False]
        if disabled:  # the user switched them off in Codex: say so, never switch them back on
            fix = f'remove enabled = false from [hooks.state."{disabled[0]}"] in {self.user_config()}'
            return TrustCheck(False, fix, f"{len(disabled)} of our hooks are disabled in Codex")
        untrusted = [key.rsplit(":", 3)[1] for key, digest in ours if states.get(key, {}).get("trusted_hash") != digest]
        if untrusted:
            problems.append(f"Codex has not trusted these hooks as they are now ({', '.join(untrusted)})")
        if problems:
            why = "; ".join(problems) + "; Codex skips them silently"
            return TrustCheck(False, step, why)
        return TrustCheck(True)

    def trust_step(self, scope: str) -> str:
        """The one command that completes the trust step."""
        return f"synapse adapters install {self.name} --trust" + (" --scope user" if scope == "user" else "")

    def trust(self, scope: str) -> list[Change]:
        """Record trust the way Codex does when the user approves (its hooks review and folder-trust prompt).

        Writes ``[hooks.state."<key>"] trusted_hash`` for each of our hooks
        (the hash Codex computes) and, for the project scope, the project's
        ``trust_level = "trusted"`` unless the user marked it otherwise, into
        ``$CODEX_HOME/config.toml`` with a format-preserving edit.
        """
        path = self.user_config()
        before = path.read_text() if path.exists() else None
        project = project_root().resolve() if scope == "project" else None
        after = codex_trust.record(before or "", codex_trust.our_hooks(self.config_path(scope)), project)
        change = Change(path, before, after)
        apply(change, installing=True)
        return [change]


def _backup_text(path: Path) -> str | None:
    backup = path.with_name(path.name + ".synapse-backup")
    return backup.read_text() if backup.exists() else None


@hookimpl
def register_wake_adapters(register: Any) -> None:
    """Offer the Codex adapter."""
    register(Codex.name, Codex())


@hookimpl
def register_settings(register: Any) -> None:
    """``[adapters.codex] stop_wait_seconds``."""
    register(
        "adapters.codex.stop_wait_seconds",
        float,
        0.0,
        "On Stop with nothing waiting, wait up to this long for a message before letting Codex stop.",
    )
    register(
        "adapters.codex.queue_wake",
        bool,
        False,
        "After each turn, wait for a message and `codex queue` it into the idle thread (Codex's notify program; "
        "the TUI's threads live in its app-server daemon, which runs it; re-run `synapse adapters install codex`).",
    )
    register(
        "adapters.codex.queue_wake_seconds",
        float,
        DEFAULT_WAKE_SECONDS,
        "How long one wait after a turn lasts; after it the idle thread is reachable again from its next turn.",
    )
    register(
        "adapters.codex.queue_wake_remote",
        str,
        "",
        "The app server holding the Codex threads (`codex queue --remote`), e.g. unix:///path/to.sock; "
        "empty: Codex's local daemon.",
    )


__all__ = ["MARK", "Codex", "codex_home", "without_flag"]


PATCH_TARGET = ("*** Update File: ", "*** Add File: ", "*** Delete File: ", "*** Move to: ")


def patch_paths(patch: str) -> list[str]:
    """The files an ``apply_patch`` envelope writes, deletes or moves to."""
    found: dict[str, None] = {}
    for line in patch.splitlines():
        for head in PATCH_TARGET:
            if line.startswith(head) and line[len(head) :].strip():
                found[line[len(head) :].strip()] = None
    return list(found)
