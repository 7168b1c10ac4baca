"""docs/api.md cannot rot: every ```python block in it runs against a real hub.

Script blocks run as they are, in a fresh interpreter, with the test hub's
URI put in place of ``ws://localhost:8876``. The plugin block (headed by a
``# package/__init__.py`` comment) is installed under the entry point the
page's ``pyproject.toml`` block declares, and then used for real: its
command through the ``synapse`` CLI, its hook inside a ``synapse hub``
subprocess.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tomllib
from pathlib import Path

import pytest

from synapse_channel.hub.server import Hub

from .conftest import TIMEOUT, run_cli
from .hubproc import HubProcess

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "api.md"
DOC_URI = "ws://localhost:8876"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)
PLUGIN_HEADER = re.compile(r"\A# (\w+)/__init__\.py\n")


def blocks(lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(DOC.read_text()) if kind == lang]


SCRIPTS = [b for b in blocks("python") if not PLUGIN_HEADER.match(b)]
PLUGINS = [b for b in blocks("python") if PLUGIN_HEADER.match(b)]


def test_the_page_has_what_it_promises() -> None:
    """Scripts, exactly one plugin, and every script talks to the hub it is given (so the URI swap matters)."""
    assert len(SCRIPTS) >= 5 and len(PLUGINS) == 1
    assert all(DOC_URI in script for script in SCRIPTS)
    for name in ("Session", "SyncSession", "wait", "Superseded", "Conflict", "Refused", "Unreachable"):
        assert f"`{name}`" in DOC.read_text() or f"{name}(" in DOC.read_text(), name


async def run_python(code: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT * 3)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("index", range(len(SCRIPTS)), ids=lambda i: f"block{i + 1}")
async def test_script_block_runs(index: int, hub: Hub, tmp_path: Path) -> None:
    code, out, err = await run_python(SCRIPTS[index].replace(DOC_URI, hub.uri), tmp_path)
    assert code == 0, f"block {index + 1} failed:\n{err}"
    assert "Traceback" not in err and out.strip(), err


async def test_outputs_say_what_the_comments_promise(hub: Hub, tmp_path: Path) -> None:
    """Spot checks: the claims block really sees both conflicts, the errors block the refusal code."""
    claims = next(s for s in SCRIPTS if "VERSION_CONFLICT" in s)
    code, out, err = await run_python(claims.replace(DOC_URI, hub.uri), tmp_path)
    assert code == 0, err
    assert "refused (SCOPE_CONFLICT)" in out and "refused (VERSION_CONFLICT)" in out
    assert "('API-13', 'done')" in out and "ready: ('WEB-4',)" in out
    errors = next(s for s in SCRIPTS if "NEVER-CLAIMED" in s)
    code, out, err = await run_python(errors.replace(DOC_URI, hub.uri), tmp_path)
    assert code == 0, err
    assert "unreachable:" in out and "retryable=False" in out and out.strip().endswith("queued")
    search = next(s for s in SCRIPTS if "web.search(" in s)
    code, out, err = await run_python(search.replace(DOC_URI, hub.uri), tmp_path)
    assert code == 0, err
    assert "task shop/api -> board: API-14 [Parser]: accept tabs" in out and "db only" not in out, out
    assert "['parser fix is in review']" in out and "True True" in out and "refused (BAD_QUERY)" in out, out


def install_plugin(site: Path) -> tuple[str, str]:
    """Write the page's plugin and an entry point for it (from the page's pyproject block); (entry name, package)."""
    (plugin,) = PLUGINS
    package = PLUGIN_HEADER.match(plugin).group(1)  # type: ignore[union-attr]
    project = tomllib.loads(next(b for b in blocks("toml") if "entry-points" in b))["project"]
    ((entry, target),) = project["entry-points"]["synapse_channel"].items()
    assert target == package
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text(plugin)
    dist = site / f"{package}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (dist / "entry_points.txt").write_text(f"[synapse_channel]\n{entry} = {package}\n")
    return entry, package


async def test_plugin_block_is_a_working_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its command runs through the real CLI; its hook fires in a real hub with read-only arguments."""
    entry, _ = install_plugin(tmp_path / "site")
    log = tmp_path / "nudge.log"
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    monkeypatch.setenv("NUDGE_LOG", str(log))
    code, out, err = await run_cli("plugins")
    assert code == 0 and entry in out, err
    hub = HubProcess(tmp_path / "h.db")
    await hub.start()
    try:
        code, out, err = await run_cli(entry, "--uri", hub.uri, "--name", "shop/api", "shop/web")
        assert (code, out) == (0, "shop/web: queued\n"), err
        code, out, err = await run_cli(entry, "--uri", "http://nowhere", "shop/web")
        assert code == 2 and "ws://" in err and "Traceback" not in err  # the shared options check the URI
        code, out, err = await run_cli(entry, "--uri", "ws://127.0.0.1:9", "--name", "shop/api", "shop/web")
        assert code == 1 and err.startswith("[shop/api] could not reach hub") and "Traceback" not in err
    finally:
        assert await hub.stop() == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and re.fullmatch(r"\S+ #\d+ shop/api -> shop/web", lines[0]), lines
