"""Configuration: every source in its place, and broken files named by file and line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from synapse_channel.hub.server import Hub

from .conftest import run_cli


def show(out: str) -> dict[str, tuple[object, str]]:
    return {row["key"]: (row["value"], row["source"]) for row in json.loads(out)["settings"]}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    (root / "sub" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(root / "sub" / "deeper")
    return root


async def test_precedence_default_user_project_env_flag(project: Path, tmp_path: Path) -> None:
    """default < user file < project file (found walking up) < environment < flag."""
    code, out, _ = await run_cli("config", "show", "--json")
    assert show(out)["wake.jitter"] == (8.0, "default")
    user = tmp_path / "xdg" / "synapse" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text('[wake]\njitter = 3\n[hub]\nuri = "ws://127.0.0.1:1"\n')
    assert show((await run_cli("config", "show", "--json"))[1])["wake.jitter"] == (3.0, str(user))
    (project / "synapse.toml").write_text('[wake]\njitter = 5.5\n[identity]\nproject = "proj"\nseat = "s1"\n')
    values = show((await run_cli("config", "show", "--json"))[1])
    assert values["wake.jitter"] == (5.5, str(project / "synapse.toml"))
    assert values["hub.uri"] == ("ws://127.0.0.1:1", str(user))
    code, out, _ = await run_cli("config", "show", "--json", env={"SYNAPSE_URI": "ws://127.0.0.1:2"})
    assert code == 0
    assert show(out)["hub.uri"] == ("ws://127.0.0.1:2", "env:SYNAPSE_URI")
    assert (await run_cli("config", "get", "identity.name"))[1].strip() == ""
    assert (await run_cli("config", "get", "wake.jitter"))[1].strip() == "5.5"


async def test_flag_beats_env_and_config(project: Path, hub: Hub) -> None:
    """--uri wins over SYNAPSE_URI, which wins over [hub] uri."""
    (project / "synapse.toml").write_text('[hub]\nuri = "ws://127.0.0.1:9"\n')
    assert (await run_cli("health", "--timeout", "1"))[0] == 1  # config: nothing listens on 9
    assert (await run_cli("health", env={"SYNAPSE_URI": hub.uri}))[0] == 0
    assert (await run_cli("health", "--uri", hub.uri, env={"SYNAPSE_URI": "ws://127.0.0.1:9"}))[0] == 0


async def test_hub_uri_may_be_a_toml_array_of_hubs(project: Path, hub: Hub) -> None:
    """``uri = [a, b]`` is the failover list ``a,b``: the dead first address is passed over."""
    (project / "synapse.toml").write_text(f'[hub]\nuri = ["ws://127.0.0.1:9", "{hub.uri}"]\n')
    code, out, err = await run_cli("config", "get", "hub.uri")
    assert (code, out.strip()) == (0, f"ws://127.0.0.1:9,{hub.uri}"), err
    code, out, err = await run_cli("health", "--timeout", "2")
    assert code == 0 and hub.uri in out, err
    (project / "synapse.toml").write_text("[hub]\nuri = [1, 2]\n")
    code, _, err = await run_cli("config", "get", "hub.uri")
    assert code != 0 and "synapse.toml" in err and "hub.uri must be a str" in err and "Traceback" not in err


async def test_identity_from_config_is_used_by_wait_and_send(project: Path, hub: Hub) -> None:
    """[identity] project + seat names the agent when SYN_IDENTITY is unset."""
    (project / "synapse.toml").write_text(f'[hub]\nuri = "{hub.uri}"\n[identity]\nproject = "api"\nseat = "c1"\n')
    await run_cli("send", "--name", "boss", "--target", "api/c1", "configured")
    code, out, _ = await run_cli("wait", "--timeout", "5")
    assert (code, out) == (0, "boss: configured\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[wake]\njitter = 3\nbroken = = 1\n", "synapse.toml:3: invalid TOML"),
        ("[wake]\njiter = 3\n", "synapse.toml:2: unknown key 'wake.jiter' (did you mean 'wake.jitter'?)"),
        ('[hub]\nuri = "x"\ntoken = "s3cret"\n', "synapse.toml:3: unknown key 'hub.token'"),
        ('[wake]\njitter = "soon"\n', "synapse.toml:2: wake.jitter must be a float"),
        ('[claims]\nauto = true\nauto_release = "merged"\n', "synapse.toml:3: claims.auto_release must be one of"),
        ('[wake]\npolicy = "random"\n', "synapse.toml:2: wake.policy must be one of uniform, offset, none"),
    ],
)
async def test_broken_config_names_file_and_line(project: Path, text: str, message: str) -> None:
    """Syntax errors, unknown keys and wrong types: file:line, one line, exit 2, no traceback."""
    (project / "synapse.toml").write_text(text)
    for args in (["config", "show"], ["who", "--uri", "ws://127.0.0.1:9"]):
        code, _, err = await run_cli(*args)
        assert code == 2 and message in err and "Traceback" not in err, err


async def test_pyproject_tool_table_is_a_second_source(project: Path) -> None:
    """[tool.synapse] in pyproject.toml is read when there is no synapse.toml."""
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.synapse.wake]\njitter = 1.5\n')
    values = show((await run_cli("config", "show", "--json"))[1])
    assert values["wake.jitter"] == (1.5, str(project / "pyproject.toml"))


async def test_init_set_get_roundtrip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """init writes a commented starter; set rewrites it with tomli-w; tokens are refused."""
    monkeypatch.chdir(tmp_path)
    code, out, _ = await run_cli("config", "init", "--project", "demo")
    assert code == 0 and (tmp_path / "synapse.toml").read_text().startswith("# synapse.toml")
    assert (await run_cli("config", "get", "identity.project"))[1].strip() == "demo"
    assert (await run_cli("config", "init"))[0] == 2  # exists
    code, out, _ = await run_cli("config", "set", "wake.jitter", "2.5")
    assert code == 0 and "comments are not kept" in out
    assert (await run_cli("config", "get", "wake.jitter"))[1].strip() == "2.5"
    assert (await run_cli("config", "set", "plugins.disabled", "announce,shell"))[0] == 0
    assert (await run_cli("config", "get", "plugins.disabled"))[1].strip() == "announce,shell"
    code, _, err = await run_cli("config", "set", "hub.token", "x")
    assert code == 2 and "unknown key" in err
    code, _, err = await run_cli("config", "set", "wake.jitter", "soon")
    assert code == 2 and "must be a float" in err
    assert "s3cret" not in (tmp_path / "synapse.toml").read_text()
    code, out, _ = await run_cli("config", "set", "--user", "wake.policy", "offset")
    assert code == 0 and (tmp_path / "xdg" / "synapse" / "config.toml").exists()


async def test_home_from_config_moves_the_cursors(
    project: Path, tmp_path: Path, hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[paths] home decides where cursors live when SYN_HOME is unset, once the user trusts the project.

    An untrusted project may not move the home: it holds the feed that syn-inbox shows an assistant.
    """
    monkeypatch.delenv("SYN_HOME")
    home = tmp_path / "elsewhere"
    (project / "synapse.toml").write_text(f'[paths]\nhome = "{home}"\n')
    await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "h1", "x")
    code, _, err = await run_cli("wait", "--uri", hub.uri, "--name", "h1", "--timeout", "5")
    assert code == 0 and "ignored paths.home" in err
    assert not home.exists()
    user = Path(os.environ["XDG_CONFIG_HOME"]) / "synapse" / "config.toml"
    user.parent.mkdir(parents=True, exist_ok=True)
    user.write_text(f'[trust]\nprojects = ["{project}"]\n')
    await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "h1", "y")
    assert (await run_cli("wait", "--uri", hub.uri, "--name", "h1", "--timeout", "5"))[0] == 0
    assert (home / "mailbox-cursor" / "h1").exists()


async def test_init_writes_the_identity_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """init --seat writes project and seat and names the identity; without a seat it says what to pass."""
    monkeypatch.chdir(tmp_path)
    code, out, _ = await run_cli("config", "init", "--project", "api", "--seat", "claude-1")
    assert (code, out) == (0, f"wrote {tmp_path / 'synapse.toml'}: project api, identity api/claude-1\n")
    assert (await run_cli("config", "get", "identity.seat"))[1] == "claude-1\n"
    code, out, _ = await run_cli("config", "init", "--force", "--project", "api")
    assert code == 0 and "no seat yet: pass --seat NAME" in out
    code, out, _ = await run_cli("config", "init", "--force", "--project", "api", env={"SYN_IDENTITY": "api/c9"})
    assert code == 0 and out.endswith("identity api/c9\n")
    code, _, err = await run_cli("config", "init", "--force", "--project", "api", "--seat", "a/b")
    assert code == 2 and "--seat 'a/b'" in err


async def test_config_get_and_adapters_list_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config get --json and adapters list --json print stable objects."""
    monkeypatch.chdir(tmp_path)
    code, out, _ = await run_cli("config", "get", "wake.jitter", "--json")
    assert code == 0 and json.loads(out) == {"key": "wake.jitter", "value": 8.0, "source": "default"}
    code, out, _ = await run_cli("adapters", "list", "--json")
    names = [json.loads(line)["name"] for line in out.splitlines()]
    assert code == 0 and {"claude-code", "codex", "gemini"} <= set(names)


def test_parse_cache_serves_an_unchanged_file_and_never_a_changed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard reads the config on every commit; an unchanged file skips tomllib, a changed one never does."""
    import time

    from synapse_channel import config

    monkeypatch.setattr(config, "CACHE_SETTLE_NS", 0)
    toml = tmp_path / "synapse.toml"
    toml.write_text("[wake]\njitter = 3\n")
    assert config.read_toml_cached(toml) == {"wake": {"jitter": 3}}
    entries = json.loads(config.cache_file().read_text())
    assert entries[str(toml)]["data"] == {"wake": {"jitter": 3}}
    entries[str(toml)]["data"] = {"wake": {"jitter": 9}}  # proof that a hit comes from the cache
    config.cache_file().write_text(json.dumps(entries))
    assert config.read_toml_cached(toml) == {"wake": {"jitter": 9}}
    time.sleep(0.05)  # past one tick of the kernel's file clock
    toml.write_text("[wake]\njitter = 4\n")  # same size, new content
    assert config.read_toml_cached(toml) == {"wake": {"jitter": 4}}

    monkeypatch.setattr(config, "CACHE_SETTLE_NS", 10**12)  # just written: parsed, not cached
    fresh = tmp_path / "fresh.toml"
    fresh.write_text("[wake]\njitter = 5\n")
    assert config.read_toml_cached(fresh) == {"wake": {"jitter": 5}}
    assert str(fresh) not in json.loads(config.cache_file().read_text())

    monkeypatch.setattr(config, "CACHE_SETTLE_NS", 0)
    dated = tmp_path / "dated.toml"
    dated.write_text("[x]\nwhen = 2026-12-05\n")  # no JSON form: parsed every time
    assert str(config.read_toml_cached(dated)["x"]["when"]) == "2026-12-05"
    assert str(dated) not in json.loads(config.cache_file().read_text())
    config.cache_file().write_text("not json")  # a broken cache is ignored, then rewritten
    assert config.read_toml_cached(toml) == {"wake": {"jitter": 4}}
    assert str(toml) in json.loads(config.cache_file().read_text())
