"""Settings resolution: flag > environment > project TOML > user TOML > default.

The project file is ``synapse.toml`` at the project root, found by walking up
from the working directory (a ``[tool.synapse]`` table in ``pyproject.toml``
is the second choice). The user file is ``$XDG_CONFIG_HOME/synapse/config.toml``.
Every key is declared (core keys here, plugin tables through the
``register_settings`` hook), so an unknown key is an error that names the file
and line. Every value remembers which source it came from, which is what
``synapse config show`` prints.

Tokens are never stored in a config file: only ``hub.token_file`` is.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_FILE = "synapse.toml"


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One declared key: ``table.key``, its type, default, environment variable and help."""

    key: str
    type: type
    default: Any
    help: str
    env: str | None = None
    owner: str = "core"


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
)


@dataclass(slots=True)
class Value:
    """An effective value and where it came from."""

    value: Any
    source: str


@dataclass(slots=True)
class Config:
    """The merged settings for one working directory."""

    settings: dict[str, Setting]
    values: dict[str, Value] = field(default_factory=dict)
    project_file: Path | None = None
    user_file: Path | None = None
    deferred: dict[str, Value] = field(default_factory=dict)

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


def _coerce(setting: Setting, value: Any, where: str) -> Any:
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


def _apply_file(config: Config, path: Path, source: str, strict: bool) -> None:
    for key, value in _flatten(read_toml(path)).items():
        setting = config.settings.get(key)
        if setting is None and not strict and _plugin_owned(key):
            config.deferred[key] = Value(value, source)
            continue
        if setting is None:
            hint = _suggest(key, config.settings)
            raise ConfigError(f"{path}:{line_of(path, key)}: unknown key '{key}'{hint}")
        if key.endswith("token"):
            raise ConfigError(f"{path}:{line_of(path, key)}: tokens do not belong in config; use hub.token_file")
        config.values[key] = Value(_coerce(setting, value, f"{path}:{line_of(path, key)}"), source)


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
) -> Config:
    """Merge defaults, the user file, the project file and the environment.

    ``strict=False`` (the fast path for client commands, which do not load
    plugins) still refuses unknown keys in the core tables but leaves plugin
    tables unchecked; commands that load plugins validate everything.
    """
    env = os.environ if environ is None else environ
    settings = {s.key: s for s in (*CORE_SETTINGS, *extra)}
    config = Config(settings)
    ufile = user_file()
    if ufile.is_file():
        config.user_file = ufile
        _apply_file(config, ufile, str(ufile), strict)
    pfile = find_project_file(start)
    if pfile is not None:
        config.project_file = pfile
        _apply_file(config, pfile, str(pfile), strict)
    for setting in settings.values():
        if setting.env and env.get(setting.env):
            config.values[setting.key] = Value(
                _coerce(setting, env[setting.env], f"${setting.env}"), f"env:{setting.env}"
            )
    return config


def plugin_settings(pm: Any) -> tuple[Setting, ...]:
    """Settings declared by plugins through the ``register_settings`` hook."""
    found: list[Setting] = []

    def register(
        key: str, type_: type, default: Any, help: str, env: str | None = None, *, owner: str = "plugin"
    ) -> None:
        found.append(Setting(key, type_, default, help, env, owner))

    pm.hook.register_settings(register=register)
    return tuple(found)
