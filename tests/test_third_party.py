"""A real third-party plugin, built and installed from tests/example_plugin, in a real hub and wait.

Also: the built wheel carries the bundled plugins and the hooks/shell/deploy
files, and ``resources.data_path`` finds them there.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import run_cli, start_waiter
from .hubproc import HubProcess

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/example_plugin built and installed into its own folder (put on PYTHONPATH)."""
    site = tmp_path_factory.mktemp("example-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(ROOT / "tests" / "example_plugin"),
        ],
        check=True,
        capture_output=True,
    )
    return site


async def test_third_party_plugin_hooks_fire_in_hub_and_wait(
    plugin_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its hooks fire in a real hub and a real wait; its raising and hanging hooks break neither."""
    log = tmp_path / "hooks.ndjson"
    monkeypatch.setenv("PYTHONPATH", str(plugin_site))
    monkeypatch.setenv("SYNAPSE_EXAMPLE_LOG", str(log))
    code, out, _ = await run_cli("plugins", "--json")
    assert code == 0
    listed = {p["name"]: p for p in json.loads(out)["plugins"]}
    assert listed["example"]["version"] == "1.2.3" and "message_received" in listed["example"]["hooks"]
    assert "example_broken" in listed
    hub = HubProcess(tmp_path / "h.db")
    await hub.start()
    waiter = await start_waiter(hub.uri, "--name", "p/w", "--timeout", "20")
    assert (await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "p/w", "hi plugin"))[0] == 0
    out, err = await asyncio.wait_for(waiter.communicate(), 20)
    assert waiter.returncode == 0 and out.decode() == "boss: hi plugin\n", err
    assert (await run_cli("who", "--uri", hub.uri))[0] == 0  # the hub still answers
    assert await hub.stop() == 0
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    hooks = {entry["hook"] for entry in seen}
    assert {"hub_started", "message_received", "presence_changed", "wake_requested", "wake_delivered"} <= hooks
    assert {"hook": "wake_delivered", "identity": "p/w", "payloads": ["hi plugin"]} in seen


async def test_disabled_plugin_is_not_loaded_and_its_settings_validate(
    plugin_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[plugins] disabled blocks a plugin by name; a plugin's own keys are accepted in synapse.toml."""
    monkeypatch.setenv("PYTHONPATH", str(plugin_site))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "synapse.toml").write_text('[plugins]\ndisabled = ["example_broken"]\n\n[example]\ngreeting = "hi"\n')
    code, out, err = await run_cli("plugins", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert "example_broken" not in {p["name"] for p in data["plugins"]} and data["disabled"] == ["example_broken"]
    code, out, _ = await run_cli("config", "get", "example.greeting")
    assert (code, out.strip()) == (0, "hi")


async def test_a_plugin_that_fails_to_import_is_reported_and_others_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken entry point is named in `synapse plugins`; the bundled ones still load."""
    dist = tmp_path / "site" / "synapse_bad-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: synapse-bad\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[synapse_channel]\nbad = synapse_bad_missing_module\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    code, out, _ = await run_cli("plugins", "--json")
    data = json.loads(out)
    assert code == 0
    assert [f["name"] for f in data["failed"]] == ["bad"] and "ModuleNotFoundError" in data["failed"][0]["error"]
    assert {"wake_jitter", "presence", "shell", "announce", "systemd"} <= {p["name"] for p in data["plugins"]}


def test_wheel_carries_plugins_and_data_files(tmp_path: Path) -> None:
    """The built wheel holds every bundled plugin and hooks/, shell/, deploy/ under _data/."""
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("synapse_channel-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "synapse_channel/_data/shell/synapse.bash",
        "synapse_channel/_data/shell/syn-wait",
        "synapse_channel/_data/deploy/synapse-hub.service",
        "synapse_channel/_data/deploy/Dockerfile",
        "synapse_channel/_data/hooks/README.md",
        "synapse_presence/holder.py",
        "synapse_wake_jitter/__init__.py",
        "synapse_systemd/__init__.py",
        "synapse_channel/hub/dashboard_assets/index.html",  # the dashboard is served from the wheel, no CDN
        "synapse_channel/hub/dashboard_assets/app.js",
        "synapse_channel/hub/dashboard_assets/app.css",
    ):
        assert expected in names, expected
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "presence = synapse_presence" in text and "synapse = synapse_channel.cli:main" in text
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    probe = "from synapse_channel.resources import data_path; print(data_path('shell'))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(site)},
        cwd=tmp_path,
    ).stdout.strip()
    assert out == str(site / "synapse_channel" / "_data" / "shell")
