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


#: The CLI's remaining reach into ``synapse_channel.client``: (module, imported name) -> why it is still there.
#: This is debt made visible: the list may only shrink. A new CLI import of client internals fails the test
#: below; moving one of these onto ``synapse_channel.api`` fails it too until its row is deleted.
CLI_CLIENT_DEBT = {
    # Token diagnostics (where a token came from, whether its file is owner-only) and the process-wide config
    # runtime: config plumbing that `synapse doctor`/`config` report on, not a hub conversation.
    ("synapse_channel.cli.common", "synapse_channel.client.context.TokenOrigin"): "token diagnostics",
    ("synapse_channel.cli.common", "synapse_channel.client.context.runtime"): "config runtime",
    ("synapse_channel.cli.common", "synapse_channel.client.context.settings"): "config loaded with CLI overrides",
    ("synapse_channel.cli.common", "synapse_channel.client.context.token_file_problem"): "token diagnostics",
    ("synapse_channel.cli.common", "synapse_channel.client.context.token_origin"): "token diagnostics",
    # URI-list helpers: `hub status` lists every address of a failover group, `doctor` checks each element.
    ("synapse_channel.cli.hub_status", "synapse_channel.client.addresses.split_addresses"): "URI list",
    ("synapse_channel.cli.hub_status", "synapse_channel.client.context.settings"): "config",
    ("synapse_channel.cli.doctor", "synapse_channel.client.addresses.AddressError"): "URI check",
    ("synapse_channel.cli.doctor", "synapse_channel.client.addresses.parse_addresses"): "URI check",
    # The wake loop (`synapse wait`): Waiter/WaitSpec are its state machine; api.wait wraps them with fewer knobs.
    ("synapse_channel.cli.waiting", "synapse_channel.client.waiter.Waiter"): "wake loop",
    ("synapse_channel.cli.waiting", "synapse_channel.client.waiter.WaitSpec"): "wake loop",
    # syn-inbox/syn-resume catch-up: a raw HubClient that pages the whole snapshot (not moved yet).
    ("synapse_channel.cli.catchup", "synapse_channel.client.connection.HubClient"): "catch-up",
    ("synapse_channel.cli.catchup", "synapse_channel.client.connection.whole_snapshot"): "catch-up",
}


def cli_client_imports() -> set[tuple[str, str]]:
    """``(module, name)`` for every import of a client name (not just the module) by a CLI module."""
    found = set()
    for module, path in modules(ROOT / "src" / PACKAGE / "cli", "synapse_channel.cli"):
        found |= {(module.removesuffix(".__init__"), name) for name in client_names(path.read_text(), module)}
    return found


def client_names(source: str, module: str) -> set[str]:
    """The client names ``source`` imports: ``from ..client.x import Y`` counts as ``...client.x.Y`` only."""
    seen = imported_modules(source, module)
    return {
        name
        for line, name in seen
        if _under(name, "synapse_channel.client")
        and not any(other.startswith(name + ".") for ln, other in seen if ln == line)
    }


def test_cli_reaches_into_the_client_only_on_the_allow_list() -> None:
    """The CLI stands on the public API; what still imports client internals is listed and cannot grow."""
    found = cli_client_imports()
    assert ("synapse_channel.cli.waiting", "synapse_channel.client.waiter.Waiter") in found  # the walk sees the CLI
    new = sorted(found - set(CLI_CLIENT_DEBT))
    assert not new, "CLI modules must use synapse_channel.api, not client internals:\n" + "\n".join(map(str, new))
    paid = sorted(set(CLI_CLIENT_DEBT) - found)
    assert not paid, "these no longer import client internals; delete their rows from CLI_CLIENT_DEBT:\n" + "\n".join(
        map(str, paid)
    )


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("def go():\n    from ..client.connection import HubClient\n", "synapse_channel.client.connection.HubClient"),
        ("from ..client import connection\n", "synapse_channel.client.connection"),
        ("import synapse_channel.client.waiter\n", "synapse_channel.client.waiter"),
    ],
)
def test_the_cli_check_sees_every_kind_of_client_import(source: str, name: str) -> None:
    assert client_names(source, "synapse_channel.cli.fake") == {name}
    assert not client_names("from ..api import Session\n", "synapse_channel.cli.fake")
