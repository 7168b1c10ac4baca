"""One CLI grammar: a contract over the whole click command tree (plugins' commands included).

Every command that talks to a hub takes the connection options from the one
shared decorator (``--uri``, ``--name``, ``--token``, ``--token-file``), with
``--id`` and ``--identity`` as hidden aliases of ``--name``; no command shows
those aliases in its help. A new command that breaks this fails here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from synapse_channel.cli import cli
from synapse_channel.cli.common import CONNECTION_OPTIONS, NAME_ALIASES
from synapse_channel.hub.server import Hub

from .conftest import open_raw, read_line_containing, run_cli, start_cli

# Commands that open a connection to a hub as a client.
TALKS_TO_HUB = {
    "announce",
    "ask-human",
    "attention answer",
    "attention cancel",
    "attention list",
    "board",
    "checkpoint",
    "handoff",
    "health",
    "listen",
    "lock",
    "presence",
    "receipt",
    "release",
    "renew",
    "resume",
    "search",
    "send",
    "state",
    "task declare",
    "task progress",
    "task update",
    "tmux-bridge",
    "wait",
    "who",
    "claim",
    "git-claim",
    "mcp serve",
}
# Take --uri but are not client connections of an agent, and why.
NOT_CLIENTS = {
    "doctor": "reports what a command given --uri/--token/--token-file would do; it has no identity to check",
    "service install": "--uri is written into unit files, not connected to",
    "mcp install": "--uri is written into the assistant's MCP config, not connected to",
    "hub status": "reads each hub's public /healthz over HTTP (a standby turns WebSockets away); no identity",
}


# Hub commands without --json, and why. Every other one prints one JSON object per outcome with --json.
NO_JSON = {
    "announce": "a plugin's fan-out of several chats; `send --json` reports each one",
    "presence": "a long-running presence holder: it has no outcome to report, only a connection to keep",
    "tmux-bridge": "a long-running bridge that types wakes into a tmux pane; `listen --json` is the scriptable stream",
    "resume": "a human digest for a returning agent; `syn-inbox --json`, `state --json`, `board --json` are its parts",
    "mcp serve": "a long-running MCP server speaking JSON-RPC on stdio or HTTP; its replies are structured already",
    "run": "runs CMD under Landlock and exits with its code; its stdout is the command's own, not ours to fill",
}


def commands() -> Iterator[tuple[str, click.Command]]:
    """Every leaf command as ("group sub", command)."""
    ctx = click.Context(cli)

    def walk(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, name
            path = f"{prefix}{name}"
            if isinstance(command, click.Group):
                yield from walk(command, path + " ")
            else:
                yield path, command

    return walk(cli, "")


def options(command: click.Command) -> dict[str, click.Option]:
    return {opt: p for p in command.params if isinstance(p, click.Option) for opt in p.opts}


def test_every_hub_command_takes_the_shared_connection_options() -> None:
    """--uri, --name, --token, --token-file (and the hidden aliases) on every hub client command."""
    seen = dict(commands())
    missing_commands = TALKS_TO_HUB - set(seen)
    assert not missing_commands, missing_commands
    problems = []
    for path, command in seen.items():
        opts = options(command)
        if path in NOT_CLIENTS:
            continue
        if path in TALKS_TO_HUB or "--uri" in opts:
            problems += [f"{path}: no {o}" for o in (*CONNECTION_OPTIONS, *NAME_ALIASES) if o not in opts]
            problems += [f"{path}: {o} is not hidden" for o in NAME_ALIASES if o in opts and not opts[o].hidden]
    assert not problems, problems


def test_every_hub_command_has_json() -> None:
    """Each client command that talks to a hub takes --json, unless NO_JSON says why not."""
    seen = dict(commands())
    hub_commands = {p for p, c in seen.items() if p not in NOT_CLIENTS and (p in TALKS_TO_HUB or "--uri" in options(c))}
    missing = sorted(p for p in hub_commands if "--json" not in options(seen[p]) and p not in NO_JSON)
    assert not missing, f"no --json (add it, or list the command in NO_JSON with a reason): {missing}"
    stale = sorted(p for p in NO_JSON if p not in seen or "--json" in options(seen[p]))
    assert not stale, f"NO_JSON lists commands that are gone or now have --json: {stale}"


def test_no_command_shows_an_odd_name_for_the_identity() -> None:
    """--id and --identity exist only as hidden aliases of --name."""
    shown = [
        f"{path}: {opt}"
        for path, command in commands()
        for opt, param in options(command).items()
        if opt in NAME_ALIASES and not param.hidden
    ]
    assert not shown, shown


async def test_aliases_mean_name() -> None:
    """`inbox --id X` reads X's inbox, and a disagreeing --name is refused (exit 2)."""
    from .conftest import run_cli

    code, _, err = await run_cli("inbox", "--id", "api/x", "--peek")
    assert code == 0, err
    code, _, err = await run_cli("inbox", "--id", "api/x", "--name", "api/y")
    assert code == 2 and "disagree" in err, err


# --------------------------------------------------------------------------- --json against a real hub


def one_object(out: str) -> dict[str, Any]:
    """The single JSON object a --json command printed (the last line, for lock whose COMMAND prints first)."""
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines, "no output"
    obj = json.loads(lines[-1])
    assert isinstance(obj, dict) and isinstance(obj.get("ok"), bool) and isinstance(obj.get("outcome"), str), obj
    return obj


async def test_json_outcomes_from_a_real_hub(hub: Hub, repo: Path) -> None:
    """claim, lock, renew, release, handoff, git-claim, task, health, receipt, wait: one object each.

    Exit codes are those of the same command without --json.
    """
    u = ["--uri", hub.uri]
    code, out, err = await run_cli("claim", "--name", "p/a", "--paths", "src/a.py", "src/b.py", "T-1", "--json", *u)
    got = one_object(out)
    assert code == 0 and got["ok"] and got["outcome"] == "claimed", err
    assert (got["task_id"], got["owner"], got["paths"]) == ("T-1", "p/a", ["src/a.py", "src/b.py"])
    code, out, _ = await run_cli("claim", "--name", "p/b", "--paths", "src", "T-2", "--json", *u)
    got = one_object(out)
    assert (code, got["ok"], got["outcome"], got["code"]) == (1, False, "denied", "SCOPE_CONFLICT"), got
    code, out, _ = await run_cli("renew", "T-1", "--name", "p/a", "--json", *u)
    assert code == 0 and one_object(out)["outcome"] == "renewed"
    peer = await open_raw(hub.uri, "p/b")
    await peer.send("heartbeat", payload="online", protocol_version=7)
    await peer.expect("welcome")
    code, out, _ = await run_cli("handoff", "T-1", "--to", "p/b", "--name", "p/a", "--json", *u)
    got = one_object(out)
    assert code == 0 and (got["outcome"], got["owner"], got["from"]) == ("handed_off", "p/b", "p/a"), got
    await peer.close()
    code, out, _ = await run_cli("release", "T-1", "--name", "p/a", "--json", *u)
    got = one_object(out)
    assert (code, got["ok"], got["outcome"]) == (1, False, "refused") and got["code"], got  # p/b holds it now
    code, out, err = await run_cli("lock", "--name", "p/c", "--paths", "docs", "L-1", "--json", *u, "--", "echo", "ran")
    got = one_object(out)
    assert code == 0 and out.splitlines()[0] == "ran", err
    assert (got["outcome"], got["task_id"], got["exit_code"], got["released"]) == ("ran", "L-1", 0, True), got
    code, out, err = await run_cli("git-claim", "--name", "p/c", "--paths", "lib", "G-1", "--json", *u)
    got = one_object(out)
    assert code == 0 and got["git"] == {"branch": "main", "base": "main", "auto_release_on": "merge"}, (got, err)
    code, out, _ = await run_cli("task", "declare", "B-1", "--title", "t", "--name", "p/a", "--json", *u)
    assert code == 0 and one_object(out)["task"]["task_id"] == "B-1"
    code, out, _ = await run_cli("health", "--json", *u)
    got = one_object(out)
    assert code == 0 and got["outcome"] == "healthy" and got["hub_id"] == hub.core.hub_id, got
    code, out, _ = await run_cli("send", "--name", "p/a", "--target", "p/z", "--json", "for z", *u)
    seq = json.loads(out)["message_seq"]
    code, out, _ = await run_cli("receipt", str(seq), "--name", "p/a", "--json", *u)  # the sender may ask
    got = one_object(out)
    assert code == 0 and (got["outcome"], got["seq"]) == ("stored", seq), got
    code, out, _ = await run_cli("wait", "--name", "p/z", "--timeout", "5", "--json", *u)
    got = one_object(out)
    assert code == 0 and got["outcome"] == "woken" and [m["payload"] for m in got["messages"]] == ["for z"], got
    code, out, _ = await run_cli("wait", "--name", "p/z", "--timeout", "0.5", "--json", *u)
    assert (code, one_object(out)["outcome"]) == (2, "timeout")
    code, out, _ = await run_cli("health", "--json", "--uri", "ws://127.0.0.1:9", "--timeout", "1")
    assert (code, one_object(out)["outcome"]) == (1, "unreachable")


async def test_listen_json_prints_one_frame_per_line(hub: Hub) -> None:
    """listen --json: each chat as one parseable JSON line."""
    proc = await start_cli("listen", "--uri", hub.uri, "--name", "watcher", "--json")
    assert proc.stderr is not None and proc.stdout is not None
    await read_line_containing(proc.stderr, "listening")
    await run_cli("send", "--uri", hub.uri, "--name", "p/a", "hello json")
    frame = json.loads(await read_line_containing(proc.stdout, "hello json"))
    assert (frame["type"], frame["sender"], frame["payload"]) == ("chat", "p/a", "hello json")
    proc.terminate()
    await proc.communicate()


# --------------------------------------------------------------------------- --paths, as 0.99 users type it


def parsed(command: str, *args: str) -> dict[str, Any]:
    """The parameters click hands ``command`` for ``args`` (no hub: only the grammar runs)."""
    cmd = cli.get_command(click.Context(cli), command)
    assert cmd is not None
    with cmd.make_context(command, list(args)) as ctx:
        return dict(ctx.params)


@pytest.mark.parametrize(
    ("command", "args", "paths", "task", "rest"),
    [
        ("claim", ["T-1", "--paths", "a", "b"], ("a", "b"), "T-1", None),
        ("claim", ["--paths", "a", "b", "T-1"], ("a", "b"), "T-1", None),
        ("claim", ["--name", "n", "--paths", "a", "T-1", "--note", "x"], ("a",), "T-1", None),
        ("claim", ["--paths", "a", "b", "--", "T-1"], ("a", "b"), "T-1", None),
        ("claim", ["--paths", "a", "--paths", "b", "T-1"], ("a", "b"), "T-1", None),
        ("claim", ["--paths=a", "T-1"], ("a",), "T-1", None),
        ("lock", ["--paths", "x", "T-6", "--", "true"], ("x",), "T-6", ("true",)),
        ("lock", ["--paths", "x", "y", "T-6", "--", "make", "test"], ("x", "y"), "T-6", ("make", "test")),
        ("lock", ["T-6", "--paths", "x", "y", "--", "true"], ("x", "y"), "T-6", ("true",)),
        ("lock", ["--paths", "x", "T-6", "echo", "hi"], ("x",), "T-6", ("echo", "hi")),  # no --: one value, as 0.99
        ("git-claim", ["--paths", "a", "b", "T-1"], ("a", "b"), "T-1", None),
        ("git-claim", ["--paths", "a", "b", "--task-id", "T-1"], ("a", "b"), None, None),
    ],
)
def test_paths_grammar(
    command: str, args: list[str], paths: tuple[str, ...], task: str | None, rest: tuple[str, ...] | None
) -> None:
    """--paths takes words up to the next option or --; the last word is TASK when none is given elsewhere."""
    params = parsed(command, *args)
    assert (params["paths"], params["task"]) == (paths, task), params
    if rest is not None:
        assert params["command"] == rest


def test_paths_keeps_at_least_one_path() -> None:
    """`claim --paths T-1` is a missing TASK (exit 2), not a claim of the whole worktree named T-1."""
    with pytest.raises(click.MissingParameter):
        parsed("claim", "--paths", "T-1")
