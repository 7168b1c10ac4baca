"""Gemini CLI's folder trust, read and written the way Gemini CLI 0.61.0 itself does.

Why this exists: in a folder Gemini does not trust it loads no project
settings and registers no hooks at all (user hooks included), and a headless
``gemini -p`` refuses to start (exit 55). Installing hooks there would be
silently off.

What Gemini does (``packages/core/src/utils/trust.ts``, ``paths.ts``,
``config/storage.ts``, ``packages/cli/src/config/trustedFolders.ts`` and
``settings.ts`` in the 0.61.0 bundle):

* **home**: ``$GEMINI_CLI_HOME`` if set, else the OS home; Gemini's own
  directory is ``<home>/.gemini`` (user settings ``<home>/.gemini/settings.json``).
* **enabled?** ``security.folderTrust.enabled``, default **true**, merged
  schema default < system defaults < user settings < system settings
  (workspace settings cannot turn it off: they are what trust guards). System
  settings: ``$GEMINI_CLI_SYSTEM_SETTINGS_PATH`` or ``/etc/gemini-cli/settings.json``
  (macOS ``/Library/Application Support/GeminiCli``); system defaults:
  ``$GEMINI_CLI_SYSTEM_DEFAULTS_PATH`` or ``system-defaults.json`` beside it.
* **environment first**: ``GEMINI_RESTRICTED_MODE=true`` or
  ``GEMINI_CLI_TRUST_WORKSPACE=false`` distrust; ``GEMINI_CLI_TRUST_WORKSPACE=true``
  (what ``--skip-trust`` sets, too late to load project settings) trusts.
* **the file**: ``$GEMINI_CLI_TRUSTED_FOLDERS_PATH`` or
  ``<home>/.gemini/trustedFolders.json``: a JSON object (comments allowed)
  mapping an absolute path to ``TRUST_FOLDER``, ``TRUST_PARENT`` (the rule's
  parent directory is trusted) or ``DO_NOT_TRUST``. A folder is covered by a
  rule whose (real) path is it or an ancestor; the rule with the longest key
  wins; no rule means untrusted (the interactive CLI asks). Any other value
  makes the file invalid and Gemini refuses to start.
* **trusting**: the dialog's "Trust folder" re-reads the file, sets
  ``<absolute cwd>: "TRUST_FOLDER"`` and writes it back (2-space JSON, mode
  0600, temp file + rename) under a ``proper-lockfile`` lock (a
  ``<file>.lock`` directory).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from synapse_channel.adapters import Change
from synapse_channel.adapters.settings_file import SettingsError

LEVELS = ("TRUST_FOLDER", "TRUST_PARENT", "DO_NOT_TRUST")
LOCK_STALE_SECONDS = 10.0  # proper-lockfile's default


@dataclass(frozen=True, slots=True)
class Verdict:
    """Gemini's answer for one folder: trusted (None: folder trust has nothing to say), why, the fix."""

    trusted: bool | None
    why: str
    step: str | None = None


# ---------------------------------------------------------------------------- where Gemini keeps things


def gemini_home() -> Path:
    """Gemini's home: ``$GEMINI_CLI_HOME`` or the OS home (its ``homedir()``)."""
    return Path(os.environ.get("GEMINI_CLI_HOME") or Path.home())


def user_settings_path() -> Path:
    return gemini_home() / ".gemini" / "settings.json"


def trusted_folders_path() -> Path:
    found = os.environ.get("GEMINI_CLI_TRUSTED_FOLDERS_PATH")
    if found:
        return Path(found)
    runtime = gemini_home() / ".cache" / ".gemini" if os.environ.get("SANDBOX") == "sandbox-exec" else None
    return (runtime or gemini_home() / ".gemini") / "trustedFolders.json"


def system_settings_path() -> Path:
    found = os.environ.get("GEMINI_CLI_SYSTEM_SETTINGS_PATH")
    if found:
        return Path(found)
    if sys.platform == "darwin":
        return Path("/Library/Application Support/GeminiCli/settings.json")
    if sys.platform == "win32":
        return Path("C:\\ProgramData\\gemini-cli\\settings.json")
    return Path("/etc/gemini-cli/settings.json")


def system_defaults_path() -> Path:
    found = os.environ.get("GEMINI_CLI_SYSTEM_DEFAULTS_PATH")
    return Path(found) if found else system_settings_path().with_name("system-defaults.json")


# ---------------------------------------------------------------------------- reading


def strip_json_comments(text: str) -> str:
    """``//`` and ``/* */`` comments removed outside strings (Gemini's files are JSONC)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def read_jsonc(path: Path) -> Any:
    """The parsed file; None when it does not exist; raises ValueError when Gemini could not read it either."""
    if not path.exists():
        return None
    return json.loads(strip_json_comments(path.read_text()))


def folder_trust_setting() -> tuple[bool, str]:
    """``security.folderTrust.enabled`` as Gemini merges it, and the file that decided it."""
    enabled, source = True, "Gemini's default"
    for path in (system_defaults_path(), user_settings_path(), system_settings_path()):
        try:
            doc = read_jsonc(path)
        except (OSError, ValueError):
            continue  # Gemini reports it and refuses to start; trust is not what to fix first
        value = ((doc or {}).get("security") or {}).get("folderTrust", {}) if isinstance(doc, dict) else {}
        if isinstance(value, dict) and isinstance(value.get("enabled"), bool):
            enabled, source = value["enabled"], str(path)
    return enabled, source


def normalize(path: str | Path) -> str:
    """Gemini's ``normalizePath``: absolute, and lower-case where the file system folds case."""
    absolute = os.path.abspath(str(path))
    return absolute.lower() if sys.platform in ("darwin", "win32") else absolute


def _real(path: str) -> str:
    return normalize(os.path.realpath(path)) if os.path.exists(path) else normalize(path)


def load_rules(path: Path) -> dict[str, str]:
    """The rules in ``path`` (empty when absent); raises SettingsError where Gemini would refuse to start."""
    try:
        doc = read_jsonc(path)
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{path} is not valid JSON ({exc}); Gemini refuses to start until it is fixed") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise SettingsError(f"{path} is not a JSON object; Gemini refuses to start until it is fixed")
    bad = {k: v for k, v in doc.items() if v not in LEVELS}
    if bad:
        key, value = next(iter(bad.items()))
        raise SettingsError(
            f"{path}: invalid trust level {value!r} for {key!r} (possible: {', '.join(LEVELS)}); "
            "Gemini refuses to start until it is fixed"
        )
    return {normalize(k): v for k, v in doc.items()}


def matching_rule(rules: dict[str, str], folder: Path) -> tuple[str, str] | None:
    """The rule Gemini applies to ``folder``: covering it, longest key first."""
    location = PurePath(_real(str(folder)))
    best: tuple[str, str] | None = None
    for key, level in rules.items():
        effective = os.path.dirname(key) if level == "TRUST_PARENT" else key
        base = PurePath(_real(effective))
        if (location == base or base in location.parents) and (best is None or len(key) > len(best[0])):
            best = (key, level)
    return best


def env_distrust() -> str | None:
    """The variable that makes Gemini distrust every folder in this environment, if any."""
    if os.environ.get("GEMINI_RESTRICTED_MODE") == "true":
        return "GEMINI_RESTRICTED_MODE"
    if os.environ.get("GEMINI_CLI_TRUST_WORKSPACE") == "false":
        return "GEMINI_CLI_TRUST_WORKSPACE"
    return None


def check(folder: Path) -> Verdict:
    """Will Gemini trust ``folder`` (and so run its hooks)? Mirrors ``checkPathTrust``."""
    var = env_distrust()
    if var:
        return Verdict(False, f"{var}={os.environ[var]} in this environment: Gemini trusts no folder", f"unset {var}")
    if os.environ.get("GEMINI_CLI_TRUST_WORKSPACE") == "true":
        return Verdict(True, "GEMINI_CLI_TRUST_WORKSPACE=true in this environment (only where it is set)")
    enabled, source = folder_trust_setting()
    if not enabled:
        return Verdict(None, f"folder trust is off (security.folderTrust.enabled=false in {source})")
    path = trusted_folders_path()
    try:
        rules = load_rules(path)
    except SettingsError as exc:
        return Verdict(False, str(exc), f"fix {path}")
    rule = matching_rule(rules, folder)
    if rule is None:
        return Verdict(
            False,
            f"{folder} is not trusted in {path} (folder trust is on: Gemini runs no hooks, "
            "user or project, there, and `gemini -p` refuses to start)",
        )
    key, level = rule
    if level == "DO_NOT_TRUST":
        return Verdict(
            False,
            f"{folder} is marked DO_NOT_TRUST ({key!r} in {path}): Gemini runs no hooks there",
            f"change or remove the DO_NOT_TRUST rule {key!r} in {path} yourself (--trust never overrides it)",
        )
    return Verdict(True, f"{level} {key!r} in {path}")


# ---------------------------------------------------------------------------- writing


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """The lock Gemini's own writer takes (proper-lockfile: ``mkdir <file>.lock``)."""
    lock = path.with_name(path.name + ".lock")
    for _ in range(40):
        try:
            lock.mkdir()
            break
        except FileExistsError:
            try:
                if time.time() - lock.stat().st_mtime > LOCK_STALE_SECONDS:
                    lock.rmdir()
                    continue
            except OSError:
                continue
            time.sleep(0.1)
    else:
        raise SettingsError(f"{lock} is held (is Gemini writing its trust file?); try again")
    try:
        yield
    finally:
        lock.rmdir()


def trust_folder(folder: Path) -> list[Change]:
    """Set ``folder: "TRUST_FOLDER"`` in Gemini's trust file, keeping every other rule.

    Refuses (SettingsError, nothing changed) when the file is one Gemini
    itself would refuse to update. Does nothing when the environment, not the
    file, is what distrusts the folder (no file edit would help there), or
    when a ``DO_NOT_TRUST`` rule covers it: that is the user's own decision.
    """
    if env_distrust():
        return []
    path = trusted_folders_path()
    if path.exists():
        rule = matching_rule(load_rules(path), folder)
        if rule is not None and rule[1] == "DO_NOT_TRUST":
            return []
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = True
    try:  # created as Gemini creates it: "{}", owner-only
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        existed = False
        with os.fdopen(fd, "w") as fh:
            fh.write("{}")
    with _locked(path):
        before = path.read_text()
        load_rules(path)  # refuse a file Gemini would refuse
        doc = json.loads(strip_json_comments(before)) if before.strip() else {}
        doc[normalize(folder)] = "TRUST_FOLDER"
        after = json.dumps(doc, indent=2, ensure_ascii=False)
        if json.loads(after) != json.loads(strip_json_comments(before) or "{}"):
            tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(after)
            os.replace(tmp, path)
        else:
            after = before
    return [Change(path, before if existed else None, after)]


# ---------------------------------------------------------------------------- the hook's environment

#: Gemini's environment redaction (``services/environmentSanitization.ts``): names and values it never passes on.
SECRET_NAMES = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "AUTH", "CREDENTIAL", "CREDS", "PRIVATE", "CERT")
SECRET_VALUES = (
    r"-----BEGIN (RSA|OPENSSH|EC|PGP) PRIVATE KEY-----",
    r"-----BEGIN CERTIFICATE-----",
    r"(https?|ftp|smtp)://[^:\s]{1,1024}:[^@\s]{1,1024}@",
    r"(ghp|gho|ghu|ghs|ghr|github_pat)_[a-zA-Z0-9_]{36,}",
    r"AIzaSy[a-zA-Z0-9_\\-]{33}",
    r"AKIA[A-Z0-9]{16}",
    r"eyJ[a-zA-Z0-9_-]{0,10240}\.[a-zA-Z0-9_-]{0,10240}\.[a-zA-Z0-9_-]{0,10240}",
    r"(s|r)k_(live|test)_[0-9a-zA-Z]{24}",
    r"xox[abpr]-[a-zA-Z0-9-]+",
)
OUR_PREFIXES = ("SYN_", "SYNAPSE_")


def redaction_setting(project: Path) -> dict[str, Any]:
    """``security.environmentVariableRedaction`` as Gemini merges it: per key, system > project > user > defaults."""
    merged: dict[str, Any] = {}
    for path in _settings_files(project):
        try:
            doc = read_jsonc(path)
        except (OSError, ValueError):
            continue
        found = ((doc.get("security") or {}) if isinstance(doc, dict) else {}).get("environmentVariableRedaction")
        if isinstance(found, dict):
            merged = {**found, **merged}
    return merged


def _redacts(key: str, value: str, allowed: set[str], blocked: set[str], strict: bool) -> bool:
    key = key.upper()
    if key.startswith("GEMINI_CLI_"):
        return False
    if any(re.search(p, value.upper(), re.I) for p in SECRET_VALUES):
        return True
    if key in allowed:
        return False
    if key in blocked or strict:
        return True
    return any(name in key for name in SECRET_NAMES)


def stripped_for_hooks(project: Path, env: dict[str, str] | None = None) -> tuple[list[str], str, list[str]]:
    """Our variables set here that Gemini would not pass to a hook, why, and those no allow-list can pass.

    Redaction is off by default; Gemini turns it on (strictly: everything not
    allowed is dropped) when ``GITHUB_SHA`` is set or ``SURFACE=Github``, or
    when ``security.environmentVariableRedaction.enabled`` is true. A hook
    without ``SYN_IDENTITY`` does nothing (it fails open), so this is as silent
    as an untrusted folder.
    """
    env = dict(os.environ) if env is None else env
    strict = bool(env.get("GITHUB_SHA")) or env.get("SURFACE") == "Github"
    setting = redaction_setting(project)
    if not strict and setting.get("enabled") is not True:
        return [], "", []
    allowed = {str(k).upper() for k in setting.get("allowed") or [] if isinstance(k, str)}
    blocked = {str(k).upper() for k in setting.get("blocked") or [] if isinstance(k, str)}
    ours = sorted(k for k in env if k.upper().startswith(OUR_PREFIXES))
    stripped = [k for k in ours if _redacts(k, env[k], allowed, blocked, strict)]
    hopeless = [k for k in stripped if _redacts(k, env[k], allowed | {k.upper()}, blocked - {k.upper()}, strict)]
    why = "GITHUB_SHA is set (Gemini's strict redaction)" if strict else "security.environmentVariableRedaction.enabled"
    return stripped, why, hopeless


# ---------------------------------------------------------------------------- hooks switched off in settings


def _settings_files(project: Path) -> list[Path]:
    """Gemini's settings files, highest precedence first (the project's counts only in a trusted folder)."""
    return [system_settings_path(), project / ".gemini" / "settings.json", user_settings_path(), system_defaults_path()]


def hooks_switched_off(project: Path, commands: list[str]) -> tuple[str, str] | None:
    """(why, step) when Gemini's settings turn all hooks, or one of ours, off; else None.

    ``hooksConfig.enabled`` (default true) is the switch for every hook;
    ``hooksConfig.disabled`` (merged across files) lists hook names, and a
    command hook's name is its command.
    """
    decided = False
    for path in _settings_files(project):
        try:
            doc = read_jsonc(path)
        except (OSError, ValueError):
            continue
        config = doc.get("hooksConfig") if isinstance(doc, dict) else None
        if not isinstance(config, dict):
            continue
        if not decided and isinstance(config.get("enabled"), bool):
            decided = True
            if config["enabled"] is False:
                why = f"hooksConfig.enabled is false in {path}: Gemini runs no hooks"
                return why, f"set hooksConfig.enabled to true in {path}"
        listed = [c for c in commands if c in (config.get("disabled") or [])]
        if listed:
            why = f"hooksConfig.disabled in {path} lists {listed[0]!r}"
            return why, f"remove it from hooksConfig.disabled in {path}"
    return None
