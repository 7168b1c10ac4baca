"""Codex's hook trust, read and written the way Codex itself does it (tested against 0.171.0).

Codex keys each hook by where it stands,
``<absolute hooks.json path>:<event label>:<group index>:<handler index>``,
and trusts it when the user config's ``hooks.state.<key>.trusted_hash`` equals
the hook's current hash: the SHA-256 (``sha256:<hex>``) of the compact,
key-sorted JSON of ``{"event_name": <label>, "matcher"?: ..., "hooks":
[<normalized handler>]}``, where the handler is ``type``, ``command``,
``timeout`` (default 600), ``async`` (default false) and ``statusMessage`` if
set; ``UserPromptSubmit`` and ``Stop`` carry no matcher. So moving the
virtualenv (the command) or changing ``stop_wait_seconds`` (the timeout)
makes a hook untrusted again. When the user approves, Codex upserts
``{trusted_hash = <hash>}`` under ``hooks.state`` in ``$CODEX_HOME/config.toml``
(its app server's ``config/batchWrite``); folder trust is
``[projects."<project root>"] trust_level = "trusted"`` in the same file.

Edits here go through tomlkit (format-preserving, imported only when
writing) and are checked by re-parsing: the result must mean exactly the
old document plus our keys, or nothing is written.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

from synapse_channel.adapters.settings_file import SettingsError, is_ours

#: Codex's event labels in trust keys and hashes, by the hooks.json event name.
LABELS = {
    "PreToolUse": "pre_tool_use",
    "PermissionRequest": "permission_request",
    "PostToolUse": "post_tool_use",
    "PreCompact": "pre_compact",
    "PostCompact": "post_compact",
    "SessionStart": "session_start",
    "SessionEnd": "session_end",
    "UserPromptSubmit": "user_prompt_submit",
    "SubagentStart": "subagent_start",
    "SubagentStop": "subagent_stop",
    "Stop": "stop",
}
#: Events whose matcher Codex ignores (and so leaves out of the hash).
NO_MATCHER = {"UserPromptSubmit", "Stop"}
DEFAULT_TIMEOUT = 600


def hook_hash(event: str, group: dict[str, Any], hook: dict[str, Any]) -> str:
    """The hash Codex computes for one command hook (its ``currentHash``)."""
    timeout = hook.get("timeout", hook.get("timeoutSec"))
    handler: dict[str, Any] = {
        "type": "command",
        "command": hook["command"],
        "timeout": max(1, int(timeout)) if isinstance(timeout, int | float) else DEFAULT_TIMEOUT,
        "async": bool(hook.get("async", False)),
    }
    if isinstance(hook.get("statusMessage"), str):
        handler["statusMessage"] = hook["statusMessage"]
    identity: dict[str, Any] = {"event_name": LABELS[event], "hooks": [handler]}
    matcher = group.get("matcher")
    if event not in NO_MATCHER and isinstance(matcher, str):
        identity["matcher"] = matcher
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def our_hooks(hooks_file: Path) -> list[tuple[str, str]]:
    """``(trust key, current hash)`` for each of our hooks in ``hooks_file``, as Codex will key them."""
    try:
        doc = json.loads(hooks_file.read_text())
    except (OSError, ValueError):
        return []
    hooks = doc.get("hooks") if isinstance(doc, dict) else None
    hooks_file = hooks_file.resolve()  # Codex keys the file by its canonical path
    out = []
    for event, groups in (hooks or {}).items():
        if event not in LABELS or not isinstance(groups, list):
            continue
        for gi, group in enumerate(groups):
            entries = group.get("hooks") if isinstance(group, dict) else None
            for hi, hook in enumerate(entries if isinstance(entries, list) else []):
                if is_ours(hook):
                    out.append((f"{hooks_file}:{LABELS[event]}:{gi}:{hi}", hook_hash(event, group, hook)))
    return out


# ---------------------------------------------------------------------- reading Codex's config


def read_config(path: Path) -> dict[str, Any]:
    """The parsed user ``config.toml`` (empty when absent); SettingsError when Codex could not parse it."""
    try:
        return tomllib.loads(path.read_text()) if path.exists() else {}
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path} is not valid TOML ({exc})") from None


def hook_states(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    hooks = config.get("hooks")
    state = hooks.get("state") if isinstance(hooks, dict) else None
    return {k: v for k, v in state.items() if isinstance(v, dict)} if isinstance(state, dict) else {}


def project_trust_level(config: dict[str, Any], root: Path) -> str | None:
    """``trust_level`` Codex has for the project root (exact key: a parent's trust does not count)."""
    projects = config.get("projects")
    entry = projects.get(str(root)) if isinstance(projects, dict) else None
    level = entry.get("trust_level") if isinstance(entry, dict) else None
    return level if isinstance(level, str) else None


def hooks_switched_off(config: dict[str, Any]) -> str | None:
    """The user's own ``features.hooks = false`` (or the legacy name), which we never override."""
    features = config.get("features")
    if isinstance(features, dict):
        for name in ("hooks", "codex_hooks"):
            if features.get(name) is False:
                return f"features.{name} = false"
    return None


# ---------------------------------------------------------------------- writing it


def record(text: str, hooks: list[tuple[str, str]], project: Path | None) -> str:
    """``text`` with each hook's trusted hash upserted (and the project trusted, unless the user set a level)."""
    try:
        wanted = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config.toml is not valid TOML ({exc}); fix it first, nothing was changed") from None
    for key, digest in hooks:
        _dig(wanted, "hooks", "state", key)["trusted_hash"] = digest
    project_key = str(project) if project is not None else None
    if project_key is not None and project_trust_level(wanted, Path(project_key)) is None:
        _dig(wanted, "projects", project_key)["trust_level"] = "trusted"
    if wanted == tomllib.loads(text):
        return text

    import tomlkit

    doc = tomlkit.parse(text)
    for key, digest in hooks:
        _child(_child(_child(doc, "hooks"), "state"), key)["trusted_hash"] = digest
    if project_key is not None and project_trust_level(tomllib.loads(text), Path(project_key)) is None:
        _child(_child(doc, "projects"), project_key)["trust_level"] = "trusted"
    after = tomlkit.dumps(doc)
    if _means(after, wanted):
        return after
    # tomlkit can misplace a new table among dotted keys; append whole tables at the end instead.
    after = _append_tables(text, wanted)
    if _means(after, wanted):
        return after
    raise SettingsError(
        "could not record Codex trust in config.toml without changing what it means; nothing was changed"
    )


def forget(text: str, keys: list[str], backup: str | None, project: Path | None = None) -> str:
    """``text`` without the trust records of ``keys`` (our hooks, on uninstall); the backup's bytes when equal.

    The project's trust goes too when ``--trust`` added it: the user's
    original (the backup kept at our first edit) did not have it.
    """
    try:
        current = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return text
    wanted = copy.deepcopy(current)
    state = hook_states(wanted)
    present = [k for k in keys if k in state]
    if present:
        table = wanted["hooks"]["state"]
        for key in present:
            del table[key]
        if not table and not _had_empty(backup, "hooks", "state"):
            del wanted["hooks"]["state"]
            if not wanted["hooks"] and not _had_empty(backup, "hooks"):
                del wanted["hooks"]
    root = str(project) if project is not None else None
    ours_project = (
        root is not None
        and _parses(backup)
        and project_trust_level(wanted, Path(root)) == "trusted"
        and not _had_empty(backup, "projects", root)
    )
    if ours_project:
        del wanted["projects"][root]
        if not wanted["projects"] and not _had_empty(backup, "projects"):
            del wanted["projects"]
    if backup is not None:
        try:
            if tomllib.loads(backup) == wanted:
                return backup
        except tomllib.TOMLDecodeError:
            pass
    if not present and not ours_project:
        return text

    import tomlkit

    doc = tomlkit.parse(text)
    if present:
        table = doc["hooks"]["state"]
        for key in present:
            del table[key]
        if "state" not in wanted.get("hooks", {}):
            del doc["hooks"]["state"]
        if "hooks" not in wanted:
            del doc["hooks"]
    if ours_project:
        del doc["projects"][root]
        if "projects" not in wanted:
            del doc["projects"]
    after = tomlkit.dumps(doc)
    return after if _means(after, wanted) else text


def _dig(doc: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        doc = doc.setdefault(key, {})
    return doc


def _child(parent: Any, key: str) -> Any:
    """``parent[key]``, created as the kind of table its parent can hold (inline inside inline)."""
    import tomlkit
    from tomlkit.items import InlineTable

    if key not in parent:
        parent[key] = tomlkit.inline_table() if isinstance(parent, InlineTable) else tomlkit.table()
    return parent[key]


def _means(text: str, wanted: dict[str, Any]) -> bool:
    try:
        return tomllib.loads(text) == wanted
    except tomllib.TOMLDecodeError:
        return False


def _parses(text: str | None) -> bool:
    """Is ``text`` a readable original (an unreadable one tells us nothing about what was there)?"""
    try:
        return text is not None and isinstance(tomllib.loads(text), dict)
    except tomllib.TOMLDecodeError:
        return False


def _had_empty(backup: str | None, *keys: str) -> bool:
    """Did the user's original file have this container (so emptying it must keep it)?"""
    try:
        node: Any = tomllib.loads(backup) if backup is not None else {}
    except tomllib.TOMLDecodeError:
        return False
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _append_tables(text: str, wanted: dict[str, Any]) -> str:
    """``text`` plus ``[hooks.state."<key>"]`` / ``[projects."<root>"]`` tables for what it lacks."""
    have = tomllib.loads(text)
    blocks = []
    for key, entry in hook_states(wanted).items():
        if hook_states(have).get(key) != entry:
            blocks.append(f"[hooks.state.{json.dumps(key)}]\n" + _body(entry))
    for root, entry in (wanted.get("projects") or {}).items():
        if (have.get("projects") or {}).get(root) != entry:
            blocks.append(f"[projects.{json.dumps(root)}]\n" + _body(entry))
    sep = "" if not text or text.endswith("\n") else "\n"
    return text + sep + "".join(f"\n{b}" for b in blocks)


def _body(entry: dict[str, Any]) -> str:
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in entry.items())


def set_top_level(text: str, key: str, value: Any) -> str:
    """``text`` with the root-table ``key`` set to ``value`` (removed when None), everything else as it was."""
    try:
        wanted = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config.toml is not valid TOML ({exc}); fix it first, nothing was changed") from None
    if value is None:
        wanted.pop(key, None)
    else:
        wanted[key] = value
    if wanted == tomllib.loads(text):
        return text

    import tomlkit

    doc = tomlkit.parse(text)
    if value is None:
        del doc[key]
    else:
        doc[key] = value
    after = tomlkit.dumps(doc)
    if _means(after, wanted):
        return after
    if value is not None and key not in tomllib.loads(text):
        after = f"{key} = {json.dumps(value)}\n{text}"  # a line at the very top is always in the root table
        if _means(after, wanted):
            return after
    raise SettingsError(f"could not set {key} in config.toml without changing what else it means; nothing was changed")


def read_config_text(text: str) -> dict[str, Any]:
    """``text`` parsed (empty when it does not parse: the edit that follows reports that)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {}
