"""The layering contract: bundled plugins use only the public API, and the API never leans on the CLI.

A plugin that imports CLI or hub internals breaks the day those are
refactored; the bundled plugins are the example third-party authors copy,
so CI holds them to the same door. The check walks each module's AST, so a
function-level (lazy) import counts as much as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "synapse_channel"

#: What a plugin may import from synapse_channel, and why each is public.
PUBLIC = {
    "synapse_channel.api": "sessions, wait, typed results and errors, identity/URI/token resolution (docs/api.md)",
    "synapse_channel.api.cli": "the click options and run/say helpers every hub-facing command shares",
    "synapse_channel.hookspecs": "hookimpl and the hook contract itself (docs/plugins.md)",
    "synapse_channel.events": "the immutable objects hooks receive (HubInfo, ClientInfo, frozen frames)",
    "synapse_channel.adapters": "the wake-adapter toolkit: HookAdapter, Seat, settings-file merging (docs/adapters.md)",
    "synapse_channel.config": "the Config a configure() hook receives and load_config for plugin tables",
    "synapse_channel.paths": "$SYN_HOME, mailbox cursor files and owner-only writes, shared with `synapse wait`",
    "synapse_channel.resources": "the packaged data files (hooks, shell, deploy) a plugin installs",
}

#: Internal layers: named here so a new internal package must be classified, not silently allowed.
INTERNAL = (
    "synapse_channel.cli",
    "synapse_channel.client",
    "synapse_channel.core",
    "synapse_channel.hub",
    "synapse_channel.store",
)


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """``(line, absolute module)`` for every import in ``source`` (relative imports resolved against ``module``)."""
    found: list[tuple[int, str]] = []
    package = module.rsplit(".", 1)[0] if not module.endswith(".__init__") else module.removesuffix(".__init__")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def plugin_violations(source: str, module: str) -> list[str]:
    """Imports of ``synapse_channel`` that are not on the public allow-list."""
    out = []
    for line, name in imported_modules(source, module):
        if not _under(name, PACKAGE) or name == PACKAGE:
            continue
        if not any(_under(name, public) for public in PUBLIC):
            out.append(f"{module}:{line} imports {name}")
    return out


def api_violations(source: str, module: str) -> list[str]:
    """Imports of the CLI from the public API (the CLI builds on the API, never the reverse)."""
    return [
        f"{module}:{line} imports {name}"
        for line, name in imported_modules(source, module)
        if _under(name, "synapse_channel.cli")
    ]


def modules(folder: Path, prefix: str) -> list[tuple[str, Path]]:
    out = []
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder).with_suffix("")
        out.append((".".join((prefix, *rel.parts)) if prefix else ".".join(rel.parts), path))
    return out


def test_bundled_plugins_import_only_the_public_api() -> None:
    found = modules(ROOT / "plugins", "")
    assert len(found) > 10  # the walk sees the plugins (an empty walk would pass anything)
    bad = [v for module, path in found for v in plugin_violations(path.read_text(), module)]
    assert not bad, "plugins must use the public API only:\n" + "\n".join(bad)


@pytest.mark.parametrize("public", sorted(PUBLIC))
def test_public_modules_never_import_the_cli(public: str) -> None:
    """The CLI is built on the public layer, never the reverse (a plugin importing the API must not load the CLI)."""
    rel = Path(*public.split(".")[1:])
    folder = ROOT / "src" / PACKAGE / rel
    found = modules(folder, public) if folder.is_dir() else [(public, folder.with_suffix(".py"))]
    assert found
    bad = [v for module, path in found for v in api_violations(path.read_text(), module)]
    assert not bad, "\n".join(bad)


def test_public_names_are_not_internal() -> None:
    """The allow-list and the internal layers do not overlap, and every public module exists."""
    for public in PUBLIC:
        assert not any(_under(public, internal) for internal in INTERNAL), public
        rel = public.split(".")[1:]
        assert (ROOT / "src" / PACKAGE / Path(*rel)).with_suffix(".py").exists() or (
            ROOT / "src" / PACKAGE / Path(*rel) / "__init__.py"
        ).exists(), public


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("from synapse_channel.cli.common import connection_options\n", "synapse_x"),
        ("def f():\n    from synapse_channel.client.connection import HubClient\n", "synapse_x.inner"),
        ("import synapse_channel.core.claims\n", "synapse_x"),
        ("from synapse_channel.hub import server\n", "synapse_x"),
        ("from synapse_channel import store\n", "synapse_x"),
        ("from synapse_channel.store import Journal\n", "synapse_x"),
        ("from synapse_channel.protocol import owner_of\n", "synapse_x"),
    ],
)
def test_the_plugin_check_catches_a_bad_import(source: str, module: str) -> None:
    """Each kind of reach into internals is reported, top-level or inside a function."""
    assert plugin_violations(source, module)


def test_the_plugin_check_passes_public_imports() -> None:
    source = (
        "from synapse_channel.api import Session\nfrom synapse_channel.api.cli import connection_options\n"
        "from synapse_channel.hookspecs import hookimpl\nimport click\nfrom . import helper\n"
    )
    assert plugin_violations(source, "synapse_x.__init__") == []


def test_the_api_check_catches_a_relative_cli_import() -> None:
    assert api_violations("from ..cli.common import settings\n", "synapse_channel.api.session")
    assert api_violations("from ..cli import common\n", "synapse_channel.api.session")
    assert not api_violations("from ..client import context\n", "synapse_channel.api.session")
