"""`synapse mcp serve --channel`: Claude Code channel push, driven by the MCP SDK's own client over stdio.

The server is the real console script in a subprocess, the hub is real (ephemeral loopback port), the hooks
are the real `synapse hook claude-code ...` commands. A run against the real Claude Code is not possible here:
Claude Code registers channels only for a claude.ai login (docs/mcp.md). Without the ``mcp`` SDK these tests
skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from synapse_channel.hub.server import Hub

from .conftest import SYNAPSE, TIMEOUT, run_cli
from .test_mcp_server import call, sdk

ME = "proj/bob"
METHOD = "notifications/claude/channel"
#: Runs the server as its child, with this wrapper's own argv standing in for Claude Code's command line.
WRAPPER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[sys.argv.index('--') + 1 :]))"


@asynccontextmanager
async def channel_client(
    hub: Hub,
    *flags: str,
    client: str = "synapse-test",
    launcher: list[str] | None = None,
    errlog: Path | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[Any, asyncio.Queue[Any]]]:
    """An SDK client of `synapse mcp serve --name proj/bob FLAGS` that collects channel notifications."""
    mcp = sdk()
    from mcp.client.extension import ClientExtension, NotificationBinding
    from mcp.client.stdio import stdio_client

    from synapse_channel.mcp.channel import ChannelParams

    pushed: asyncio.Queue[Any] = asyncio.Queue()

    async def got(params: ChannelParams) -> None:
        await pushed.put(params)

    class Channels(ClientExtension):
        identifier = "dev.synapse-test/channels"

        def notifications(self) -> list[NotificationBinding[Any]]:
            return [NotificationBinding(method=METHOD, params_type=ChannelParams, handler=got)]

    serve = [SYNAPSE, "mcp", "serve", "--uri", hub.uri, "--name", ME, *flags]
    command = [*(launcher or []), *serve]
    params = mcp.StdioServerParameters(command=command[0], args=command[1:], env={**os.environ, **(env or {})})
    with open(errlog or os.devnull, "w") as err:
        transport = stdio_client(params, errlog=err)
        info = mcp.types.Implementation(name=client, version="0")
        async with mcp.Client(
            transport,
            read_timeout_seconds=TIMEOUT * 3,
            extensions=[Channels()],
            client_info=info,
            mode="legacy",  # the initialize handshake, as Claude Code connects
        ) as session:
            yield session, pushed


async def send(hub: Hub, text: str, target: str = ME, *extra: str) -> None:
    code, _, err = await run_cli("send", "--uri", hub.uri, "--name", "proj/alice", "--target", target, *extra, text)
    assert code == 0, err


async def prompt_hook(hub: Hub) -> str:
    """What `synapse hook claude-code prompt` hands the model now (empty: nothing new)."""
    payload = {"session_id": "s", "cwd": ".", "hook_event_name": "UserPromptSubmit", "prompt": "go"}
    code, out, err = await run_cli(
        "hook",
        "claude-code",
        "prompt",
        stdin=json.dumps(payload).encode(),
        env={"SYN_IDENTITY": ME, "SYNAPSE_URI": hub.uri},
    )
    assert code == 0, err
    return out


async def next_push(pushed: asyncio.Queue[Any]) -> Any:
    return await asyncio.wait_for(pushed.get(), TIMEOUT * 3)


async def line_in(path: Path, needle: str) -> str:
    """The first line of ``path`` containing ``needle``, once the server has written it."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT * 3
    while True:
        text = path.read_text() if path.exists() else ""
        for line in text.splitlines():
            if needle in line:
                return line
        assert asyncio.get_running_loop().time() < deadline, text
        await asyncio.sleep(0.05)


async def test_the_capability_is_declared_only_with_the_flag(hub: Hub) -> None:
    async with channel_client(hub, "--channel") as (client, _):
        assert (client.server_capabilities.experimental or {}).get("claude/channel") == {}
        assert "<channel" in (client.instructions or "")
    async with channel_client(hub) as (client, _):
        assert "claude/channel" not in (client.server_capabilities.experimental or {})
        assert "<channel" not in (client.instructions or "")


async def test_a_directed_message_is_pushed_once_with_its_meta_and_not_handed_over_again(hub: Hub) -> None:
    from synapse_channel.paths import mailbox_cursor_path, read_int

    async with channel_client(hub, "--channel") as (client, pushed):
        await send(hub, "please review T-4", ME, "--priority")
        params = await next_push(pushed)
        assert params.content == f"[priority] proj/alice -> {ME}: please review T-4", params
        meta = params.meta
        assert (meta["sender"], meta["target"], meta["priority"]) == ("proj/alice", ME, "true"), meta
        seq = int(meta["seq"])
        assert seq > 0 and meta["sent_at"].endswith("Z"), meta
        assert all(k.replace("_", "").isalnum() and not k[0].isdigit() for k in meta), meta  # Claude Code's key rule
        assert read_int(mailbox_cursor_path(ME)) == seq  # handed over: the identity's cursor moved past it
        assert await prompt_hook(hub) == ""  # the prompt hook does not hand it over again
        failed, said = await call(client, "inbox")
        assert not failed and said == "no new messages", said  # acked at the hub too

        await send(hub, "second")
        again = await next_push(pushed)
        assert again.content == f"proj/alice -> {ME}: second" and int(again.meta["seq"]) > seq, again
        assert pushed.empty()


async def test_a_broadcast_is_not_pushed_and_what_a_hook_took_first_is_not_pushed(hub: Hub) -> None:
    """Directed mail only (wait's policy); one hand-over per message, whichever path is first."""
    await send(hub, "taken by the hook")
    assert "taken by the hook" in await prompt_hook(hub)
    async with channel_client(hub, "--channel") as (_, pushed):
        await send(hub, "fleet news", "all")
        await send(hub, "for bob")
        first = await next_push(pushed)
        assert first.content == f"proj/alice -> {ME}: for bob", first
        assert pushed.empty()


async def test_the_wait_tool_takes_turns_with_the_push(hub: Hub) -> None:
    """Both use the IDENTITY-rx receiver; within one server the push steps aside for a wait call."""
    async with channel_client(hub, "--channel") as (client, pushed):
        failed, said = await call(client, "wait", timeout=1)
        assert not failed and said.startswith("no message within"), said
        await send(hub, "after the wait")
        assert (await next_push(pushed)).content.endswith("after the wait")


async def test_claude_code_without_the_launch_flag_gets_no_push_and_the_hooks_deliver(hub: Hub, tmp_path: Path) -> None:
    """Claude Code drops pushes from a server it did not register; the mail must stay for the hooks."""
    errlog = tmp_path / "stderr"
    launcher = [sys.executable, "-c", WRAPPER, "--"]
    async with channel_client(hub, "--channel", client="claude-code", launcher=launcher, errlog=errlog) as (_, pushed):
        line = await line_in(errlog, "channel push is off")
        assert "--dangerously-load-development-channels server:synapse" in line, line
        await send(hub, "kept for the hook")
        assert "kept for the hook" in await prompt_hook(hub)
        assert pushed.empty()


async def test_claude_code_launched_with_the_flag_gets_the_push(hub: Hub) -> None:
    flag = "--dangerously-load-development-channels"
    launcher = [sys.executable, "-c", WRAPPER, flag, "plugin:x@y", "server:synapse", "--"]
    async with channel_client(hub, "--channel", client="claude-code", launcher=launcher) as (_, pushed):
        await send(hub, "through the channel")
        assert (await next_push(pushed)).content.endswith("through the channel")


async def test_claude_code_on_a_third_party_provider_gets_no_push(hub: Hub, tmp_path: Path) -> None:
    """Channels need Anthropic's own API: Claude Code on Bedrock (its env reaches the server) never registers them."""
    errlog = tmp_path / "stderr"
    launcher = [sys.executable, "-c", WRAPPER, "--dangerously-load-development-channels", "server:synapse", "--"]
    async with channel_client(
        hub, "--channel", client="claude-code", launcher=launcher, errlog=errlog, env={"CLAUDE_CODE_USE_BEDROCK": "1"}
    ) as (_, pushed):
        line = await line_in(errlog, "channel push is off")
        assert "third-party provider (CLAUDE_CODE_USE_BEDROCK)" in line, line
        await send(hub, "kept for the hook")
        assert "kept for the hook" in await prompt_hook(hub)
        assert pushed.empty()


def test_the_development_channels_flag_is_read_like_claude_code_reads_it() -> None:
    from synapse_channel.mcp.channel import dev_channels

    flag = "--dangerously-load-development-channels"
    assert dev_channels(["claude", flag, "server:synapse", "plugin:a@b", "-p", "hi"]) == [
        "server:synapse",
        "plugin:a@b",
    ]
    assert dev_channels(["claude", f"{flag}=server:synapse"]) == ["server:synapse"]
    assert dev_channels(["claude", "--channels", "server:synapse"]) == []


async def test_channel_over_http_is_refused_and_install_honours_the_setting(hub: Hub, tmp_path: Path) -> None:
    code, _, err = await run_cli("mcp", "serve", "--http", "--channel", "--uri", hub.uri, "--name", ME)
    assert code == 2 and "--channel works over stdio only" in err and "Traceback" not in err, err

    repo = tmp_path / "repo"
    repo.mkdir()
    import subprocess

    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)

    async def dry_run(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            SYNAPSE, "mcp", "install", *args, "--dry-run", cwd=repo, stdout=-1, stderr=-1, env=dict(os.environ)
        )
        out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await dry_run("claude-code", "--name", ME)
    assert code == 0 and '"--channel"' not in out, out + err
    (repo / "synapse.toml").write_text("[adapters.claude_code]\nchannel = true\n")
    code, out, err = await dry_run("claude-code", "--name", ME)
    assert code == 0 and '"--channel"' in out, out + err
    code, out, err = await dry_run("claude-code", "--name", ME, "--no-channel")
    assert code == 0 and '"--channel"' not in out, out + err
    code, out, err = await dry_run("codex", "--channel")
    assert code == 2 and "claude-code only" in err and "Traceback" not in err, err


async def test_the_push_takes_its_receiver_back_from_another_waiter(hub: Hub) -> None:
    """`synapse wait` (or an idle-wait hook) for the same identity takes IDENTITY-rx; the push takes it back."""
    async with channel_client(hub, "--channel") as (_, pushed):
        await send(hub, "first")
        assert (await next_push(pushed)).content.endswith("first")  # the push holds the receiver now
        code, out, err = await run_cli("wait", "--uri", hub.uri, "--name", ME, "--timeout", "60", timeout=TIMEOUT * 6)
        assert code == 4, (code, out, err)  # taken over: the push took the receiver back
        await send(hub, "second")
        assert (await next_push(pushed)).content.endswith("second")
