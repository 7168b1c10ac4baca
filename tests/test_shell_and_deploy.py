"""Shell integration under bash, zsh and fish; announce; systemd units; the container command."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from synapse_channel.hub.server import Hub

from .conftest import HubFactory, finish, needs, run_cli, start_waiter

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def in_shell(shell: str, script: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``script`` in a real ``shell`` with our bin dir on PATH; return stdout."""
    full_env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})}
    for var in ("SYN_IDENTITY", "SYN_PROJECT", "__SYNAPSE_AUTO"):
        full_env.pop(var, None)
    args = [shell, "-c", script] if shell != "zsh" else [shell, "-f", "-c", script]
    done = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


SCRIPTS = {
    "bash": 'eval "$(synapse shell-init bash)"; echo "P=$SYN_PROJECT I=$SYN_IDENTITY"; '
    'cd ..; __synapse_sync; echo "after=${SYN_PROJECT:-unset}"; '
    "type _synapse_completion >/dev/null && echo completion-ok",
    "zsh": 'autoload -Uz compinit && compinit -u; eval "$(synapse shell-init zsh)"; '
    'echo "P=$SYN_PROJECT I=$SYN_IDENTITY"; cd ..; __synapse_sync; echo "after=${SYN_PROJECT:-unset}"; '
    "(( $+functions[_synapse_completion] )) && echo completion-ok",
    "fish": 'synapse shell-init fish | source; echo "P=$SYN_PROJECT I=$SYN_IDENTITY"; cd ..; __synapse_sync; '
    'if set -q SYN_PROJECT; echo "after=$SYN_PROJECT"; else; echo after=unset; end; '
    "complete -c synapse >/dev/null; and echo completion-ok",
}


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_integration_exports_identity_and_completes(shell: str, tmp_path: Path) -> None:
    """shell-init exports SYN_PROJECT/SYN_IDENTITY from synapse.toml, drops them outside, and completes."""
    needs(shutil.which(shell) is not None, shell)
    proj = tmp_path / "api"
    proj.mkdir()
    (proj / "synapse.toml").write_text('[identity]\nproject = "api"\nseat = "claude-1"\n')
    out = in_shell(shell, SCRIPTS[shell], proj)
    assert "P=api I=api/claude-1" in out
    assert "after=unset" in out
    assert "completion-ok" in out


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_explicit_identity_is_not_overridden(shell: str, tmp_path: Path) -> None:
    """An identity set by hand wins over the project file (explicit beats ambient)."""
    needs(shutil.which(shell) is not None, shell)
    (tmp_path / "synapse.toml").write_text('[identity]\nproject = "api"\nseat = "claude-1"\n')
    script = {"fish": "synapse shell-init fish | source; echo I=$SYN_IDENTITY"}.get(
        shell, f'eval "$(synapse shell-init {shell})"; echo I=$SYN_IDENTITY'
    )
    env = {"SYN_IDENTITY": "mine/seat"}
    full = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **env}
    out = subprocess.run(
        [shell, "-c", script], cwd=tmp_path, env=full, capture_output=True, text=True, timeout=60
    ).stdout
    assert "I=mine/seat" in out


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
async def test_prompt_count_and_wrappers(shell: str, hub_factory: HubFactory, tmp_path: Path) -> None:
    """synapse_prompt shows the inbox count without consuming it; shell/ wrappers run under each shell."""
    needs(shutil.which(shell) is not None, shell)
    hub = await hub_factory(relay_log=Path(os.environ["SYN_HOME"]) / "feed.ndjson")
    await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "api/c1", "one")
    await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "api/c1", "two")
    env = {"SYN_IDENTITY": "api/c1", "SYN_PROJECT": "api"}
    init = {"fish": "synapse shell-init fish | source"}.get(shell, f'eval "$(synapse shell-init {shell})"')
    script = f"{init}; synapse_prompt; echo; synapse_prompt; echo; {ROOT}/shell/syn-inbox"
    full = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **env}
    out = subprocess.run(
        [shell, "-c", script], cwd=tmp_path, env=full, capture_output=True, text=True, timeout=60
    ).stdout
    assert out.count("[syn:2]") == 2, out
    assert "boss -> api/c1 (chat): one" in out and "boss -> api/c1 (chat): two" in out
    proc = await asyncio.create_subprocess_exec(
        shell,
        "-c",
        f"{ROOT}/shell/syn-wait --uri {hub.uri} --timeout 5",
        env=full,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    code, out2, _ = await finish(proc)
    assert code == 0 and "boss: one" in out2


async def test_announce_staggers_directed_messages(hub: Hub) -> None:
    """announce sends one directed message per online seat of a project."""
    w1 = await start_waiter(hub.uri, "--name", "fleet/a", "--timeout", "20")
    w2 = await start_waiter(hub.uri, "--name", "fleet/b", "--timeout", "20")
    code, out, err = await run_cli(
        "announce", "--uri", hub.uri, "--name", "ops", "--to", "fleet,solo/x", "--stagger", "0.2", "deploy at noon"
    )
    assert code == 0, err  # solo/x is offline: queued in its mailbox, which is success
    assert "fleet/a: ok" in out and "fleet/b: ok" in out and "queued for solo/x (offline)" in out
    for waiter in (w1, w2):
        wcode, wout, _ = await finish(waiter)
        assert (wcode, wout) == (0, "ops: deploy at noon\n")


# --------------------------------------------------------------------------- systemd and container


async def test_service_install_dry_run_and_real(tmp_path: Path) -> None:
    """service install writes units pointing at this synapse; --dry-run writes nothing."""
    code, out, _ = await run_cli("service", "install", "--hub", "--presence", "api", "--dry-run")
    assert code == 0 and "would write" in out and "enable --now synapse-presence@api.service" in out
    units = tmp_path / "xdg" / "systemd" / "user"
    assert not units.exists()
    code, out, _ = await run_cli("service", "install", "--hub", "--presence", "api")
    assert code == 0
    hub_unit = (units / "synapse-hub.service").read_text()
    assert f"ExecStart={BIN / 'synapse'} hub" in hub_unit
    assert "loginctl enable-linger" in out or "ok: enable" in out
    code, out, _ = await run_cli("service", "status")
    assert "synapse-hub.service: installed" in out
    code, out, _ = await run_cli("service", "uninstall", "--all")
    assert code == 0 and not (units / "synapse-hub.service").exists()
    code, _, err = await run_cli("service", "install")
    assert code == 2 and "--hub" in err


def test_units_are_hardened_and_cycle_free() -> None:
    """The deploy units carry the hardening, a bounded restart budget and no After=default.target."""
    for name in ("synapse-hub.service", "synapse-presence@.service"):
        text = (ROOT / "deploy" / name).read_text()
        for directive in ("NoNewPrivileges=yes", "UMask=0077", "StartLimitBurst=", "Restart=on-failure"):
            assert directive in text, (name, directive)
        directives = [ln for ln in text.splitlines() if not ln.startswith("#")]
        assert not any(ln.startswith("After=") and "default.target" in ln for ln in directives)
    assert "Type=notify" in (ROOT / "deploy" / "synapse-presence@.service").read_text()


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the rendered units."""
    needs(shutil.which("systemd-analyze") is not None, "systemd-analyze")
    sys.path.insert(0, str(ROOT / "plugins"))
    from synapse_systemd import render

    for name, instance in (
        ("synapse-hub.service", "synapse-hub.service"),
        ("synapse-presence@.service", "synapse-presence@demo.service"),
    ):
        text = render(name).replace("%h/synapse", str(tmp_path))
        path = tmp_path / instance
        path.write_text(text)
        done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True)
        newer = ("RestartSteps", "RestartMaxDelaySec")  # systemd >= 254; older ones ignore them
        problems = [ln for ln in done.stderr.splitlines() if ln.strip() and not any(k in ln for k in newer)]
        assert done.returncode == 0 and not problems, done.stderr


def container_command() -> tuple[list[str], list[str]]:
    """ENTRYPOINT + CMD and the HEALTHCHECK command from deploy/Dockerfile."""
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    health = json.loads(re.search(r"HEALTHCHECK .* CMD (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    return entry + cmd, health


async def test_container_command_line_runs(tmp_path: Path) -> None:
    """The image's command (0.0.0.0 with the compose token) starts a hub its health check accepts."""
    from .hubproc import free_port

    command, health = container_command()
    assert command[:2] == ["synapse", "hub"] and "/data/hub.db" in command
    port = str(free_port())
    argv = [a.replace("/data", str(tmp_path)).replace("8876", port) for a in command]
    env = {**os.environ, "SYNAPSE_TOKEN": "compose-token-0123456789", "SYN_HOME": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        str(BIN / argv[0]), *argv[1:], env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(20):
            while b"listening on" not in await proc.stderr.readline():
                pass
        check = [a.replace("8876", port) for a in health]
        code, _, err = await run_cli(*check[1:], env={"SYNAPSE_TOKEN": "compose-token-0123456789"})
        assert code == 0, err
        assert (await run_cli(*check[1:]))[0] == 1  # without the token the hub refuses
    finally:
        proc.terminate()
        await proc.wait()
    compose = (ROOT / "deploy" / "docker-compose.yml").read_text()
    assert '"127.0.0.1:8876:8876"' in compose and "synapse-data:/data" in compose and "SYNAPSE_TOKEN" in compose
