"""Edit an assistant's settings file without clobbering it.

Install merges our entries in (hooks, marked by their ``synapse hook``
command; or one MCP server entry, marked by its ``synapse mcp serve``
command) so uninstall removes exactly ours, keeps every key, hook and server
the user had, writes atomically and keeps a backup of the original beside it.
Uninstall restores the original bytes when nothing else changed since, so the
user's file is byte-for-byte what it was. Hooks and the MCP server may share
one file (Gemini's ``settings.json``, Codex's ``config.toml``): the backup is
the file as it was before our first edit of either, and it stays until
nothing of ours is left in the file.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BACKUP_SUFFIX = ".synapse-backup"
CREATED_SUFFIX = ".synapse-created"
OURS = re.compile(r"(^|[\s/])synapse hook [a-z0-9_-]+ [a-z0-9_-]+")
KEY = re.compile(r"synapse hook ([a-z0-9_-]+) ([a-z0-9_-]+)")


class SettingsError(Exception):
    """The assistant's file is not in a shape we can merge into (we never guess)."""


def is_ours(hook: Any) -> bool:
    """True for a hook entry this tool installed."""
    return isinstance(hook, dict) and isinstance(hook.get("command"), str) and bool(OURS.search(hook["command"]))


def hook_key(hook: Any) -> str | None:
    """``synapse hook ASSISTANT EVENT`` for one of our entries (the path before it may move), else None.

    An event may carry more than one hook of ours (Claude Code's Stop: the
    stop hook and the background idle wait); the key tells them apart.
    """
    match = KEY.search(hook["command"]) if is_ours(hook) else None
    return match.group(0) if match else None


@dataclass(slots=True)
class Change:
    """A planned edit: the file, its text before and after."""

    path: Path
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        """A unified diff of the edit (what ``--dry-run`` prints)."""
        lines = difflib.unified_diff(
            (self.before or "").splitlines(keepends=True),
            (self.after or "").splitlines(keepends=True),
            fromfile=f"{self.path} (now)",
            tofile=f"{self.path} (after)",
        )
        return "".join(lines) or f"{self.path}: no change\n"


def _load(path: Path) -> tuple[str | None, dict[str, Any]]:
    if not path.exists():
        return None, {}
    text = path.read_text()
    if not text.strip():
        return text, {}
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise SettingsError(f"{path} is not valid JSON ({exc}); fix it first, nothing was changed") from None
    if not isinstance(doc, dict):
        raise SettingsError(f"{path} does not hold a JSON object; nothing was changed")
    return text, doc


def _indent(text: str | None) -> int:
    match = re.search(r"\n( +)\S", text or "")
    return len(match.group(1)) if match else 2


def _dump(doc: dict[str, Any], like: str | None) -> str:
    return json.dumps(doc, indent=_indent(like), ensure_ascii=False) + "\n"


def _hooks(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    hooks = doc.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise SettingsError(f"{path}: 'hooks' is not an object; nothing was changed")
    return hooks


def _refresh(groups: list[Any], wanted: dict[str, Any]) -> bool:
    """Make the hook of ours in ``groups`` with ``wanted``'s command equal ``wanted`` (in place, where it stands).

    Returns False when ``groups`` holds no such hook. A second copy (a
    hand-made duplicate) is dropped so the assistant runs it once.
    """
    key = hook_key(wanted)
    found = False
    emptied: list[int] = []
    for group in groups:
        entries = group.get("hooks") if isinstance(group, dict) else None
        if not isinstance(entries, list):
            continue
        for hook in list(entries):
            if is_ours(hook) and hook_key(hook) == key:
                if found:
                    entries.remove(hook)
                    if not entries:
                        emptied.append(id(group))
                else:
                    entries[entries.index(hook)] = {**hook, **wanted}
                    found = True
    groups[:] = [g for g in groups if id(g) not in emptied]
    return found


def _prune(hooks: dict[str, Any], entries: list[tuple[str, dict[str, Any]]]) -> None:
    """Drop hooks of ours, for the assistants ``entries`` is for, that it no longer asks for (a setting turned off)."""
    wanted: dict[str, set[str | None]] = {}
    for event, group in entries:
        wanted.setdefault(event, set()).update(hook_key(h) for h in group["hooks"])
    assistants = {k.split()[2] for keys in wanted.values() for k in keys if k}
    for event, groups in list(hooks.items()):
        if not isinstance(groups, list):
            continue
        for group in list(groups):
            found = group.get("hooks") if isinstance(group, dict) else None
            if not isinstance(found, list):
                continue
            stale = [
                h for h in found if (k := hook_key(h)) and k.split()[2] in assistants and k not in wanted.get(event, ())
            ]
            if stale:
                emptied = len(stale) == len(found)
                if emptied:
                    groups.remove(group)
                else:
                    group["hooks"] = [h for h in found if h not in stale]
                if emptied and not groups and event not in wanted:
                    del hooks[event]


def plan_install(path: Path, entries: dict[str, dict[str, Any]] | list[tuple[str, dict[str, Any]]]) -> Change:
    """Our hook groups (one per event, or (event, group) pairs), added once or brought up to date; the rest kept.

    A re-install after a setting changed (the stop hook's timeout grows with
    ``stop_wait_seconds``; the command moves with the virtualenv) rewrites our
    entry where it stands instead of reporting "unchanged". An event may take
    several groups of ours (Claude Code's PreToolUse: the edit guard and the
    shell hook, each with its own matcher).
    """
    pairs = list(entries.items()) if isinstance(entries, dict) else list(entries)
    before, doc = _load(path)
    hooks = _hooks(doc, path)
    for event, group in pairs:
        groups = hooks.setdefault(event, [])
        if not isinstance(groups, list):
            raise SettingsError(f"{path}: hooks.{event} is not a list; nothing was changed")
        missing = [hook for hook in group["hooks"] if not _refresh(groups, hook)]
        if missing:
            groups.append({**group, "hooks": missing})
    _prune(hooks, pairs)
    after = _dump(doc, before)
    if before is not None and json.loads(after) == json.loads(before or "{}"):
        after = before  # already installed: leave the bytes alone
    return Change(path, before, after)


def strip_ours(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without our hook entries, and without containers only we emptied.

    A container the user had empty (``"BeforeTool": []``, ``"hooks": {}``)
    stays exactly as it was.
    """
    hooks = doc.get("hooks")
    if not isinstance(hooks, dict):
        return doc
    emptied = False
    for event in list(hooks):
        groups = hooks[event]
        if not isinstance(groups, list):
            continue
        kept, touched = [], False
        for group in groups:
            entries = group.get("hooks") if isinstance(group, dict) else None
            if isinstance(entries, list) and any(is_ours(h) for h in entries):
                touched = True
                rest = [h for h in entries if not is_ours(h)]
                if rest:
                    kept.append({**group, "hooks": rest})
                continue
            kept.append(group)
        if touched and not kept:
            del hooks[event]
            emptied = True
        else:
            hooks[event] = kept
    if emptied and not hooks:
        del doc["hooks"]
    return doc


def _sans_empty(doc: Any) -> Any:
    """``doc`` without empty event lists in ``hooks`` (and without ``hooks`` if that leaves it empty)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("hooks"), dict):
        return doc
    hooks = {k: v for k, v in doc["hooks"].items() if v != []}
    rest = {k: v for k, v in doc.items() if k != "hooks"}
    return {**rest, "hooks": hooks} if hooks else rest


def plan_uninstall(path: Path) -> Change:
    """Remove exactly our entries; restore the original bytes when nothing else changed."""
    before, doc = _load(path)
    if before is None:
        return Change(path, None, None)
    cleaned = strip_ours(doc)
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    created = path.with_name(path.name + CREATED_SUFFIX)
    if backup.exists():
        original = backup.read_text()
        try:
            if _sans_empty(json.loads(original or "{}")) == _sans_empty(cleaned):
                return Change(path, before, original)  # an empty event list the user had comes back too
        except ValueError:
            pass
    if created.exists() and not cleaned:
        return Change(path, before, None)
    after = _dump(cleaned, before)
    return Change(path, before, before if json.loads(after) == json.loads(before or "{}") else after)


def apply(change: Change, *, installing: bool) -> None:
    """Write (or delete) atomically; on the first install keep the original beside it.

    The markers (backup, created) go on uninstall only once nothing of ours
    is left in the file: another of our features may still be installed there.
    """
    path = change.path
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    created = path.with_name(path.name + CREATED_SUFFIX)
    if installing and change.changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        if change.before is None:
            created.touch()
        elif not backup.exists() and not created.exists():
            backup.write_text(change.before)
    if change.after is None:
        if path.exists():
            path.unlink()
    elif change.changed:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(change.after)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    if not installing and not holds_ours(path, change.after):
        for marker in (backup, created):
            if marker.exists():
                marker.unlink()


def holds_ours(path: Path, text: str | None) -> bool:
    """True when ``text`` (``path``'s new content) still carries a hook or an MCP server of ours."""
    if not text or not text.strip():
        return False
    try:
        doc: Any = _parse_toml(text) if path.suffix == ".toml" else json.loads(text)
    except ValueError:
        return False
    if not isinstance(doc, dict):
        return False
    servers = [doc.get(key) for key in SERVER_SECTIONS]
    if any(isinstance(s, dict) and any(is_our_server(e) for e in s.values()) for s in servers):
        return True
    return bool(strip_ours(json.loads(json.dumps(doc, default=str))) != json.loads(json.dumps(doc, default=str)))


# ---------------------------------------------------------------------- one MCP server entry

#: Where each assistant keeps its MCP servers: JSON ``mcpServers`` (Claude Code, Gemini), TOML ``mcp_servers`` (Codex).
SERVER_SECTIONS = ("mcpServers", "mcp_servers")
SERVE = ("mcp", "serve")


def is_our_server(entry: Any) -> bool:
    """True for a server entry this tool installed: a ``synapse`` command whose arguments start ``mcp serve``."""
    if not isinstance(entry, dict):
        return False
    command, args = entry.get("command"), entry.get("args")
    return (
        isinstance(command, str)
        and Path(command).name == "synapse"
        and isinstance(args, list)
        and tuple(args[: len(SERVE)]) == SERVE
    )


def _parse_toml(text: str) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(str(exc)) from None


def _load_any(path: Path) -> tuple[str | None, dict[str, Any]]:
    """``_load`` for JSON or TOML (by suffix)."""
    if path.suffix != ".toml":
        return _load(path)
    if not path.exists():
        return None, {}
    text = path.read_text()
    try:
        return text, _parse_toml(text)
    except ValueError as exc:
        raise SettingsError(f"{path} is not valid TOML ({exc}); fix it first, nothing was changed") from None


def _servers(doc: dict[str, Any], path: Path, section: str) -> dict[str, Any]:
    found = doc.get(section, {})
    if not isinstance(found, dict):
        raise SettingsError(f"{path}: {section!r} is not a table of servers; nothing was changed")
    return found


def plan_server_install(path: Path, section: str, name: str, entry: dict[str, Any]) -> Change:
    """Our MCP server as ``section.name``, added or brought up to date; every other server and key kept.

    A server of that name that is not ours is never overwritten (a
    :class:`SettingsError` says so). Installing what is already there leaves
    the bytes alone (idempotent).
    """
    before, doc = _load_any(path)
    servers = _servers(doc, path, section)
    current = servers.get(name)
    if current is not None and not is_our_server(current):
        raise SettingsError(
            f"{path} already has an MCP server named {name!r} that synapse did not install;"
            f" remove or rename it first, nothing was changed"
        )
    if current == entry:
        return Change(path, before, before)
    if path.suffix == ".toml":
        return Change(path, before, _toml_set_server(before or "", section, name, entry))
    doc.setdefault(section, {})[name] = entry
    return Change(path, before, _dump(doc, before))


def plan_server_uninstall(path: Path, section: str, name: str) -> Change:
    """Remove our ``section.name``; restore the original bytes when nothing else changed since install."""
    before, doc = _load_any(path)
    if before is None:
        return Change(path, None, None)
    servers = _servers(doc, path, section)
    if not is_our_server(servers.get(name)):
        return Change(path, before, before)
    cleaned = json.loads(json.dumps(doc, default=str))
    del cleaned[section][name]
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    created = path.with_name(path.name + CREATED_SUFFIX)
    if not cleaned[section] and not _had_section(backup, section):
        del cleaned[section]
    if backup.exists():
        original = backup.read_text()
        try:
            if _plain(_parse_toml(original) if path.suffix == ".toml" else json.loads(original or "{}")) == cleaned:
                return Change(path, before, original)
        except ValueError:
            pass
    if created.exists() and not cleaned:
        return Change(path, before, None)
    if path.suffix == ".toml":
        return Change(path, before, _toml_drop_server(before, section, name, keep_section=section in cleaned))
    return Change(path, before, _dump(cleaned, before))


def _plain(doc: dict[str, Any]) -> Any:
    """``doc`` as plain JSON values (TOML dates become strings), for comparing two parses."""
    return json.loads(json.dumps(doc, default=str))


def _had_section(backup: Path, section: str) -> bool:
    """True when the original file (the backup) already had ``section``, even empty: it stays."""
    if not backup.exists():
        return False
    try:
        text = backup.read_text()
        doc = _parse_toml(text) if backup.name.endswith(".toml" + BACKUP_SUFFIX) else json.loads(text or "{}")
    except ValueError:
        return False
    return isinstance(doc, dict) and section in doc


def _toml_set_server(text: str, section: str, name: str, entry: dict[str, Any]) -> str:
    """``text`` with ``[section.name]`` set to ``entry``, every other line kept as written (tomlkit)."""
    import tomlkit

    doc = tomlkit.parse(text)
    servers = doc.get(section)
    if servers is None:
        servers = tomlkit.table(is_super_table=True)
        doc[section] = servers
    table = tomlkit.table()
    for key, value in entry.items():
        table[key] = value
    servers[name] = table
    out = tomlkit.dumps(doc)
    return out if out.endswith("\n") else out + "\n"


def _toml_drop_server(text: str, section: str, name: str, *, keep_section: bool) -> str:
    """``text`` without ``[section.name]`` (and without ``section`` when we emptied it)."""
    import tomlkit

    doc = tomlkit.parse(text)
    servers = doc[section]
    del servers[name]
    if not keep_section:
        del doc[section]
    return tomlkit.dumps(doc)


def server_entry(path: Path, section: str, name: str) -> dict[str, Any] | None:
    """Our installed server entry in ``path`` (None when absent, not ours, or the file is unreadable)."""
    try:
        _, doc = _load_any(path)
    except SettingsError:
        return None
    found = doc.get(section)
    entry = found.get(name) if isinstance(found, dict) else None
    return entry if is_our_server(entry) else None


def installed_events(path: Path) -> list[str]:
    """Events that carry one of our hooks in ``path``."""
    try:
        _, doc = _load(path)
    except SettingsError:
        return []
    found = doc.get("hooks")
    hooks: dict[str, Any] = found if isinstance(found, dict) else {}
    return sorted(
        event
        for event, groups in hooks.items()
        if isinstance(groups, list)
        and any(is_ours(h) for g in groups if isinstance(g, dict) for h in g.get("hooks", []))
    )
