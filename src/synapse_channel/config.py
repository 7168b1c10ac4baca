"""Settings resolution: flag > environment > project TOML > user TOML > default.

The project file is ``synapse.toml`` at the project root, found by walking up
from the working directory (a ``[tool.synapse]`` table in ``pyproject.toml``
is the second choice). The user file is ``$XDG_CONFIG_HOME/synapse/config.toml``.
Every key is declared (core keys here, plugin tables through the
``register_settings`` hook), so an unknown key is an error that names the file
and line. Every value remembers which source it came from, which is what
``synapse config show`` prints.

Tokens are never stored in a config file: only ``hub.token_file`` is. And a
project file is written by whoever wrote the repository: unless the user file
trusts its root (``[trust] projects``), its ``hub.token_file``, ``paths.home``,
a non-loopback ``hub.uri`` and any ``trust.*`` are ignored with a one-line
warning (see
:mod:`synapse_channel.trust`). Flags and the environment are the user's own and
are always honoured.

The records here are plain ``__slots__`` classes, not dataclasses: the git
guard loads the config on every commit, and importing ``dataclasses`` (it
pulls in ``inspect``) would cost it ~9 ms.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a commit ~3 ms
if TYPE_CHECKING:
    from typing import Any, Final

PROJECT_FILE = "synapse.toml"


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and line."""


class Setting:
    """One declared key: ``table.key``, its type, default, environment variable and help."""

    __slots__ = ("default", "env", "help", "key", "owner", "type")

    def __init__(
        self, key: str, type: type, default: Any, help: str, env: str | None = None, owner: str = "core"
    ) -> None:
        self.key: Final = key
        self.type: Final = type
        self.default: Final = default
        self.help: Final = help
        self.env: Final = env
        self.owner: Final = owner

    def _fields(self) -> tuple[Any, ...]:
        return (self.key, self.type, self.default, self.help, self.env, self.owner)

    def __eq__(self, other: object) -> bool:
        return type(other) is Setting and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((self.key, self.type, self.help, self.env, self.owner))  # a default may be a list

    def __repr__(self) -> str:
        return "Setting(key={!r}, type={!r}, default={!r}, help={!r}, env={!r}, owner={!r})".format(*self._fields())


CORE_SETTINGS = (
    Setting("hub.uri", str, "ws://localhost:8876", "Hub URI (ws:// or wss://).", "SYNAPSE_URI"),
    Setting(
        "hub.token_file",
        str,
        None,
        "File holding the hub token (owner-only). Never put the token itself here.",
        "SYNAPSE_TOKEN_FILE",
    ),
    Setting(
        "identity.project", str, None, "Project name: the part of an identity before the first '/'.", "SYN_PROJECT"
    ),
    Setting("identity.seat", str, None, "This seat within the project (identity = project/seat)."),
    Setting("identity.name", str, None, "Full identity (project/seat); overrides project + seat.", "SYN_IDENTITY"),
    Setting("wake.jitter", float, 8.0, "Seconds over which one-to-many wakes are spread."),
    Setting("wake.policy", str, "uniform", "Wake delay policy: uniform, none or offset (per-identity)."),
    Setting("wake.directed_only", bool, False, "Waits ignore plain broadcasts."),
    Setting("paths.home", str, "~/synapse", "Coordination home: database, feed, cursors.", "SYN_HOME"),
    Setting("plugins.disabled", list, [], "Plugins (entry-point names) not to load."),
    Setting("adapters.enabled", list, [], "Assistant adapters this project uses."),
    Setting("presence.enabled", bool, True, "Hold the project's presence when installing services."),
    Setting(
        "guard.refuse_offline",
        bool,
        False,
        "Git and edit guards refuse (instead of warn and allow) when the hub cannot be reached.",
        "SYNAPSE_GUARD_REFUSE_OFFLINE",
    ),
    Setting("guard.timeout", float, 2.0, "Seconds a guard waits for the hub before treating it as unreachable."),
    Setting(
        "guard.edits",
        bool,
        True,
        "`synapse adapters install` adds the assistants' pre-edit hook refusing files other agents claimed.",
    ),
    Setting(
        "claims.auto",
        bool,
        False,
        "The assistants' pre-edit hook claims an unclaimed file on its first edit (guard.edits must be on).",
        "SYNAPSE_CLAIMS_AUTO",
    ),
    Setting(
        "claims.auto_release",
        str,
        "turn",
        "When auto-claims end: turn (the agent's turn ends) or merge (its branch is merged; the lease bounds it).",
    ),
    Setting("claims.auto_ttl", float, 1800.0, "Lease of an auto-claim, renewed by the agent's next edits."),
    Setting(
        "guard.enforce_shell",
        bool,
        False,
        "`synapse adapters install` adds a shell-tool hook that runs each of the assistant's shell commands "
        "under `synapse run --enforce` (Linux Landlock: writes only inside your claims). Claude Code and Gemini CLI.",
        "SYNAPSE_GUARD_ENFORCE_SHELL",
    ),
    Setting(
        "trust.projects",
        list,
        [],
        "Project roots (absolute, ~ allowed) whose synapse.toml may set hub.token_file and a non-loopback "
        "hub.uri. Read from the user config only.",
    ),
)


class Value:
    """An effective value and where it came from."""

    __slots__ = ("source", "value")

    def __init__(self, value: Any, source: str) -> None:
        self.value, self.source = value, source

    def __eq__(self, other: object) -> bool:
        return type(other) is Value and (self.value, self.source) == (other.value, other.source)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return f"Value(value={self.value!r}, source={self.source!r})"


class Ignored:
    """A project-file setting that was not applied, and why (``synapse doctor`` lists these)."""

    __slots__ = ("file", "key", "reason")

    def __init__(self, key: str, file: str, reason: str) -> None:
        self.key: Final = key
        self.file: Final = file
        self.reason: Final = reason

    def __eq__(self, other: object) -> bool:
        return type(other) is Ignored and (self.key, self.file, self.reason) == (other.key, other.file, other.reason)

    def __hash__(self) -> int:
        return hash((self.key, self.file, self.reason))

    def __repr__(self) -> str:
        return f"Ignored(key={self.key!r}, file={self.file!r}, reason={self.reason!r})"


class Config:
    """The merged settings for one working directory."""

    __slots__ = ("deferred", "ignored", "project_file", "project_trusted", "settings", "user_file", "values")

    def __init__(
        self,
        settings: dict[str, Setting],
        values: dict[str, Value] | None = None,
        project_file: Path | None = None,
        user_file: Path | None = None,
        deferred: dict[str, Value] | None = None,
        project_trusted: bool = False,
        ignored: list[Ignored] | None = None,
    ) -> None:
        self.settings = settings
        self.values: dict[str, Value] = {} if values is None else values
        self.project_file = project_file
        self.user_file = user_file
        self.deferred: dict[str, Value] = {} if deferred is None else deferred
        self.project_trusted = project_trusted
        self.ignored: list[Ignored] = [] if ignored is None else ignored

    def __repr__(self) -> str:
        return (
            f"Config(project_file={self.project_file!r}, user_file={self.user_file!r}, "
            f"project_trusted={self.project_trusted!r}, values={self.values!r})"
        )

    def get(self, key: str) -> Any:
        """The effective value of ``key`` (its default when nothing set it)."""
        return self.values[key].value if key in self.values else self.settings[key].default

    def source(self, key: str) -> str:
        """``flag``, ``env:VAR``, a file path, or ``default``."""
        return self.values[key].source if key in self.values else "default"

    def override(self, key: str, value: Any, source: str = "flag") -> None:
        """Apply a command-line flag (highest precedence) when it was given."""
        if value is not None:
            self.values[key] = Value(value, source)

    def table(self, name: str) -> dict[str, Any]:
        """Every effective value of one table, e.g. ``config.table("wake")``."""
        prefix = name + "."
        return {k[len(prefix) :]: self.get(k) for k in self.settings if k.startswith(prefix)}

    @property
    def identity(self) -> str | None:
        """``identity.name``, else ``project/seat`` when both are set."""
        name = self.get("identity.name")
        if name:
            return str(name)
        project, seat = self.get("identity.project"), self.get("identity.seat")
        return f"{project}/{seat}" if project and seat else None

    @property
    def project(self) -> str | None:
        """``identity.project``, else the prefix of the identity."""
        project = self.get("identity.project")
        if project:
            return str(project)
        ident = self.identity
        return ident.split("/", 1)[0] if ident else None

    @property
    def home(self) -> Path:
        """The coordination home as a path."""
        return Path(str(self.get("paths.home"))).expanduser()


# --------------------------------------------------------------------------- finding files


def find_project_file(start: Path | None = None) -> Path | None:
    """``synapse.toml`` (or a ``pyproject.toml`` with ``[tool.synapse]``) in ``start`` or a parent."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return candidate
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "[tool.synapse" in pyproject.read_text(errors="replace"):
            return pyproject
    return None


def user_file() -> Path:
    """``$XDG_CONFIG_HOME/synapse/config.toml`` (default ``~/.config``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(base) / "synapse" / "config.toml"


# --------------------------------------------------------------------------- loading


def read_toml(path: Path) -> dict[str, Any]:
    """Parse ``path``; a syntax error becomes a :class:`ConfigError` naming file and line."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = match.group(1) if match else "?"
        raise ConfigError(f"{path}:{line}: invalid TOML: {str(exc).split(' (at')[0]}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("synapse", {})
    return data


#: Entries kept in the parse cache (one per config file read; the oldest go first).
CACHE_ENTRIES = 64
#: A file changed less than this long ago is parsed but not cached: file times tick by the
#: kernel's coarse clock, so two same-size writes within one tick would share a stamp.
CACHE_SETTLE_NS = 2_000_000_000
#: Larger files are parsed every time (a repository's file should not bloat the user's cache).
CACHE_MAX_BYTES = 1 << 18


def cache_file() -> Path:
    """``$XDG_CACHE_HOME/synapse-channel/config-cache.json`` (default ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(base) / "synapse-channel" / "config-cache.json"


def read_toml_cached(path: Path) -> dict[str, Any]:
    """:func:`read_toml`, served from the parse cache while the file is unchanged.

    Why: importing tomllib (with typing and datetime) costs ~5 ms, and the git
    guard reads the config on every commit. A cache entry holds the parsed
    data as JSON under the file's device, inode, size, mtime and ctime, taken
    before the read (an edit during the read only makes the next run parse
    again; ctime cannot be set back by hand). A file changed within the last
    :data:`CACHE_SETTLE_NS` is not cached (as git treats a "racily clean"
    index entry), nor is one with TOML dates; a cache that cannot be read or
    written is ignored.
    """
    import json
    import time

    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if st.st_size > CACHE_MAX_BYTES:
        return read_toml(path)
    stamp = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    where = cache_file()
    try:
        cache = json.loads(where.read_text())
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict):
        cache = {}
    hit = cache.get(str(path))
    if isinstance(hit, dict) and hit.get("stamp") == stamp and isinstance(hit.get("data"), dict):
        data: dict[str, Any] = hit["data"]
        return data
    data = read_toml(path)
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < CACHE_SETTLE_NS:
        return data
    try:
        cache.pop(str(path), None)
        cache[str(path)] = {"stamp": stamp, "data": data}
        text = json.dumps(dict(list(cache.items())[-CACHE_ENTRIES:]))
        from .paths import write_private

        write_private(where, text)
    except (OSError, TypeError, ValueError):  # unwritable, or a TOML date: parse again next time
        pass
    return data


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


def line_of(path: Path, key: str) -> int:
    """Best-effort line number of ``key`` (``table.key``) in a TOML file (1 if not found)."""
    table, _, name = key.rpartition(".")
    current = ""
    lines = path.read_text(errors="replace").splitlines()
    if path.name == "pyproject.toml":
        table = f"tool.synapse.{table}" if table else "tool.synapse"
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        header = re.match(r"^\[\s*([^\]]+?)\s*\]$", stripped)
        if header:
            current = header.group(1)
            if current == key or (path.name == "pyproject.toml" and current == f"tool.synapse.{key}"):
                return number
            continue
        assignment = re.match(r"^([A-Za-z0-9_.\"-]+)\s*=", stripped)
        if assignment:
            left = assignment.group(1).strip('"')
            dotted = f"{current}.{left}" if current else left
            if dotted in (f"{table}.{name}" if table else name, key):
                return number
    return 1


#: Core settings that take one of a few words: anything else is a config error naming the
#: file and line, never a silent fall-back to the default (a typo must not change behaviour).
CHOICES: dict[str, tuple[str, ...]] = {
    "claims.auto_release": ("turn", "merge"),
    "wake.policy": ("uniform", "offset", "none"),
}


def _coerce(setting: Setting, value: Any, where: str) -> Any:
    value = _coerce_type(setting, value, where)
    choices = CHOICES.get(setting.key)
    if choices is not None and value is not None and value not in choices:
        raise ConfigError(f"{where}: {setting.key} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _coerce_type(setting: Setting, value: Any, where: str) -> Any:
    if value is None:
        return None
    expected = setting.type
    if expected is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if expected is bool and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    if expected is list and isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if setting.key == "hub.uri" and isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return ",".join(value)  # ["ws://h1:8876", "ws://h2:8876"]: the hub list, as SYNAPSE_URI writes it
    if expected is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
        raise ConfigError(f"{where}: {setting.key} must be a {expected.__name__}, not {value!r}")
    return value


CORE_TABLES = frozenset(s.key.split(".")[0] for s in CORE_SETTINGS)


def _plugin_owned(key: str) -> bool:
    """Keys outside the core tables (or in sub-tables like ``adapters.NAME.*``) belong to plugins."""
    parts = key.split(".")
    return parts[0] not in CORE_TABLES or len(parts) > 2


def _apply_file(config: Config, path: Path, source: str, strict: bool, *, project: bool = False) -> None:
    """Apply one file; for the ``project`` file, keys it may not set are recorded in ``ignored``."""
    from .trust import project_refusal

    for key, value in _flatten(read_toml_cached(path)).items():
        setting = config.settings.get(key)
        if setting is None and not strict and _plugin_owned(key):
            refusal = project_refusal(key, value, trusted=config.project_trusted) if project else None
            if refusal is not None:  # plugin keys obey the same trust boundary as core ones
                config.ignored.append(Ignored(key, str(path), refusal))
                continue
            config.deferred[key] = Value(value, source)
            continue
        if setting is None:
            hint = _suggest(key, config.settings)
            raise ConfigError(f"{path}:{line_of(path, key)}: unknown key '{key}'{hint}")
        if key.endswith("token"):
            raise ConfigError(f"{path}:{line_of(path, key)}: tokens do not belong in config; use hub.token_file")
        coerced = _coerce(setting, value, f"{path}:{line_of(path, key)}")
        refusal = project_refusal(key, coerced, trusted=config.project_trusted) if project else None
        if refusal is not None:
            config.ignored.append(Ignored(key, str(path), refusal))
            continue
        config.values[key] = Value(coerced, source)


def _suggest(key: str, settings: dict[str, Setting]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(settings), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def load_config(
    *,
    start: Path | None = None,
    extra: tuple[Setting, ...] = (),
    environ: dict[str, str] | None = None,
    strict: bool = True,
    warn: bool = True,
) -> Config:
    """Merge defaults, the user file, the project file and the environment.

    ``strict=False`` (the fast path for client commands, which do not load
    plugins) still refuses unknown keys in the core tables but leaves plugin
    tables unchecked; commands that load plugins validate everything.
    With ``warn``, project keys ignored at the trust boundary are named on
    stderr, once per process (hooks run often: one line, never stdout).
    """
    env = os.environ if environ is None else environ
    settings = {s.key: s for s in (*CORE_SETTINGS, *extra)}
    config = Config(settings)
    ufile = user_file()
    if ufile.is_file():
        config.user_file = ufile
        _apply_file(config, ufile, str(ufile), strict)
        _check_trust_entries(config, ufile)
    pfile = find_project_file(start)
    if pfile is not None:
        from .trust import trusted_root

        config.project_file = pfile
        config.project_trusted = trusted_root(pfile.parent, config.get("trust.projects") or [])
        _apply_file(config, pfile, str(pfile), strict, project=True)
    for setting in settings.values():
        if setting.env and env.get(setting.env):
            config.values[setting.key] = Value(
                _coerce(setting, env[setting.env], f"${setting.env}"), f"env:{setting.env}"
            )
    if warn:
        warn_ignored(config)
    return config


def _check_trust_entries(config: Config, path: Path) -> None:
    """``trust.projects`` entries must be absolute paths (after ``~``): a relative one would float."""
    for entry in config.get("trust.projects") or []:
        if not isinstance(entry, str) or not Path(entry).expanduser().is_absolute():
            where = f"{path}:{line_of(path, 'trust.projects')}"
            raise ConfigError(f"{where}: trust.projects entries must be absolute paths, not {entry!r}")


_WARNED: set[tuple[str, str]] = set()


def warn_ignored(config: Config) -> None:
    """One stderr line naming the project file and the keys it was not allowed to set (once per process)."""
    fresh = [i for i in config.ignored if (i.file, i.key) not in _WARNED]
    if not fresh:
        return
    _WARNED.update((i.file, i.key) for i in fresh)
    keys = ", ".join(dict.fromkeys(i.key for i in fresh))
    why = (
        "trust is read from the user config only"
        if config.project_trusted
        else f"the project is not trusted ([trust] projects in {user_file()})"
    )
    sys.stderr.write(f"synapse: warning: ignored {keys} from {fresh[0].file}: {why}; see `synapse doctor`\n")


def plugin_settings(pm: Any) -> tuple[Setting, ...]:
    """Settings declared by plugins through the ``register_settings`` hook."""
    found: list[Setting] = []

    def register(
        key: str, type_: type, default: Any, help: str, env: str | None = None, *, owner: str = "plugin"
    ) -> None:
        found.append(Setting(key, type_, default, help, env, owner))

    pm.hook.register_settings(register=register)
    return tuple(found)
