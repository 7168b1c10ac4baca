"""Claims and board through the real CLI against a real hub (restart and expiry included)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from synapse_channel.hub.server import Hub

from .conftest import HubFactory, open_raw, run_cli
from .hubproc import HubProcess
from .test_interop import need_ref, ref


async def test_claim_conflict_release_cycle(hub: Hub, repo: Path) -> None:
    """Overlap is refused with the holder named; after release the scope is free."""
    code, out, err = await run_cli(
        "claim", "T1", "--paths", "src/a.py", "src/b.py", "--uri", hub.uri, "--name", "proj/a1"
    )
    assert code == 0, err
    assert "claimed 'T1' (epoch 1): src/a.py, src/b.py" in out
    code, out, _ = await run_cli("claim", "T2", "--paths", "src", "--uri", hub.uri, "--name", "proj/b2")
    assert code == 1
    assert "conflicts with 'T1' held by proj/a1" in out and "SCOPE_CONFLICT" in out
    code, out, _ = await run_cli("claim", "T1", "--paths", "docs", "--uri", hub.uri, "--name", "proj/b2")
    assert code == 1 and "already claimed by proj/a1" in out
    code, out, _ = await run_cli("release", "T1", "--uri", hub.uri, "--name", "proj/b2")
    assert code == 1 and "owned by proj/a1, not proj/b2" in out
    assert (await run_cli("release", "T1", "--uri", hub.uri, "--name", "proj/a1"))[0] == 0
    code, out, _ = await run_cli("claim", "T2", "--paths", "src", "--uri", hub.uri, "--name", "proj/b2")
    assert code == 0 and "epoch 2" in out
    code, out, _ = await run_cli("release", "T1", "--uri", hub.uri, "--name", "proj/a1")
    assert code == 1 and "not currently claimed" in out


async def test_subdirectory_paths_are_relative_to_the_worktree(
    hub: Hub, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paths given from a subfolder are claimed relative to the git top level."""
    monkeypatch.chdir(repo / "src")
    assert (await run_cli("claim", "T1", "--paths", "a.py", "--uri", hub.uri, "--name", "p/a"))[0] == 0
    code, out, _ = await run_cli("state", "--uri", hub.uri, "--json")
    claim = json.loads(out)[0]
    assert claim["paths"] == ["src/a.py"] and claim["worktree"] == str(repo.resolve())
    code, _, err = await run_cli("claim", "T2", "--paths", "../../elsewhere", "--uri", hub.uri, "--name", "p/a")
    assert code == 2 and "outside the worktree" in err


async def test_bad_path_is_refused_with_a_reason(hub: Hub) -> None:
    """A raw claim escaping its worktree is denied (CLAIM_DENIED), not silently accepted."""
    c = await open_raw(hub.uri, "p/a")
    await c.send("claim", task_id="T", worktree="/r", paths=["../etc/passwd"])
    denied = await c.expect("claim_denied")
    assert denied["reason_code"] == "CLAIM_DENIED" and "escapes the worktree" in denied["payload"]
    await c.send("claim", paths=["x"])
    assert (await c.expect("claim_denied"))["reason_code"] == "TASK_ID_REQUIRED"
    await c.close()


async def test_lock_runs_command_and_releases_even_on_failure(hub: Hub, repo: Path) -> None:
    """lock exits with the command's code and always releases."""
    code, _, _ = await run_cli(
        "lock", "L1", "--paths", "src", "--uri", hub.uri, "--name", "p/a", "--", "sh", "-c", "exit 7"
    )
    assert code == 7
    code, out, _ = await run_cli("state", "--uri", hub.uri)
    assert "Active claims: none" in out
    await run_cli("claim", "HOLD", "--paths", "src/a.py", "--uri", hub.uri, "--name", "p/b")
    code, _, err = await run_cli(
        "lock", "L2", "--paths", "src", "--uri", hub.uri, "--name", "p/a", "--", "touch", "ran"
    )
    assert code == 1 and "Could not acquire lock 'L2'" in err and not (repo / "ran").exists()


async def test_renew_checkpoint_handoff_and_stale_epoch(hub: Hub, repo: Path) -> None:
    """Renew and checkpoint by the owner; handoff to an online agent; a stale epoch is refused."""
    await run_cli("claim", "T", "--paths", "src", "--uri", hub.uri, "--name", "p/a", "--ttl", "60")
    code, out, _ = await run_cli("renew", "T", "--ttl", "7200", "--uri", hub.uri, "--name", "p/a")
    assert code == 0 and "renewed 'T'" in out
    assert (await run_cli("checkpoint", "T", "parser half done", "--uri", hub.uri, "--name", "p/a"))[0] == 0
    code, out, _ = await run_cli("handoff", "T", "--to", "p/b", "--uri", hub.uri, "--name", "p/a")
    assert code == 1 and "not online" in out
    b = await open_raw(hub.uri, "p/b")
    await b.send("heartbeat")
    code, out, _ = await run_cli("handoff", "T", "--to", "p/b", "--uri", hub.uri, "--name", "p/a")
    assert code == 0 and "handed 'T' to p/b (epoch 2)" in out
    state = json.loads((await run_cli("state", "--uri", hub.uri, "--json"))[1])[0]
    assert state["owner"] == "p/b" and state["checkpoint"] == "parser half done" and state["epoch"] == 2
    await b.close()  # the receiver's own shell has no epoch file: it must say which epoch it means
    code, out, err = await run_cli("release", "T", "--uri", hub.uri, "--name", "p/b")
    assert code == 1 and "EPOCH" not in err and "--epoch" in out + err
    b = await open_raw(hub.uri, "p/b")
    await b.send("heartbeat")
    await b.send("release", task_id="T", epoch=1, idem_key="k1")
    stale = await b.expect("release_denied")
    assert stale["reason_code"] == "STALE_EPOCH"
    await b.send("release", task_id="T", epoch=2, idem_key="k2")
    granted = await b.expect("release_granted")
    await b.send("release", task_id="T", epoch=2, idem_key="k2")
    again = await b.expect("release_granted")
    assert again == granted  # an idempotent retry gets the same answer
    await b.close()
    await run_cli("claim", "T2", "--paths", "lib", "--uri", hub.uri, "--name", "p/a")
    for verb in (("renew", "T2"), ("checkpoint", "T2", "half"), ("release", "T2")):
        code, _, err = await run_cli(*verb, "--epoch", "3", "--uri", hub.uri, "--name", "p/a")
        assert code == 0, (verb, err)


async def test_claim_and_epoch_survive_a_restart(tmp_path: Path, repo: Path) -> None:
    """After a SIGKILL and restart the claim is still live, overlap still refused, epochs keep rising."""
    hub = HubProcess(tmp_path / "h.db")
    await hub.start()
    assert (await run_cli("claim", "T1", "--paths", "src/a.py", "--uri", hub.uri, "--name", "p/a"))[0] == 0
    await hub.kill()
    await hub.start()
    code, out, _ = await run_cli("claim", "T2", "--paths", "src", "--uri", hub.uri, "--name", "p/b")
    assert code == 1 and "held by p/a" in out
    code, out, _ = await run_cli("claim", "T3", "--paths", "docs", "--uri", hub.uri, "--name", "p/b")
    assert code == 0 and "epoch 2" in out
    assert (await run_cli("release", "T1", "--uri", hub.uri, "--name", "p/a"))[0] == 0  # epoch from before
    await hub.stop()


async def test_lease_expiry_is_announced_and_frees_the_scope(hub: Hub, repo: Path) -> None:
    """A short lease expires by itself: claim_expired is broadcast and journalled."""
    watcher = await open_raw(hub.uri, "watcher")
    assert (await run_cli("claim", "T", "--paths", "src", "--ttl", "1", "--uri", hub.uri, "--name", "p/a"))[0] == 0
    expired = await watcher.expect("claim_expired", timeout=10)
    assert expired["task_id"] == "T" and expired["owner"] == "p/a"
    assert (await run_cli("claim", "U", "--paths", "src", "--uri", hub.uri, "--name", "p/b"))[0] == 0
    await watcher.close()


async def test_lease_survives_restart_with_its_expiry(hub_factory: HubFactory) -> None:
    """A lease keeps its expiry time across a restart (and still expires)."""
    hub = await hub_factory()
    c = await open_raw(hub.uri, "p/a")
    await c.send("claim", task_id="T", paths=["x"], ttl_seconds=1.5)
    granted = await c.expect("claim_granted")
    await c.close()
    await hub.stop()
    again = await hub_factory()
    assert again.core.claims.live["T"]["lease_expires_at"] == granted["lease_expires_at"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while "T" in again.core.claims.live:
        assert loop.time() < deadline
        await asyncio.sleep(0.05)


async def test_task_board_commands(hub: Hub) -> None:
    """task declare/update/progress and board, with their refusals."""
    u = ["--uri", hub.uri, "--name", "p/a"]
    code, out, _ = await run_cli("task", "declare", "T-100", "--title", "Build parser", "--project", "p", *u)
    assert (code, out.strip()) == (0, "declared T-100 — Build parser (deps: none)")
    code, out, _ = await run_cli("task", "declare", "T-101", "--title", "Tests", "--depends-on", "T-100", *u)
    assert code == 0 and "(deps: T-100)" in out
    code, out, _ = await run_cli("task", "declare", "T-102", "--title", "x", "--depends-on", "nope", *u)
    assert code == 1 and "unknown task" in out
    assert (await run_cli("task", "update", "T-100", "--status", "in_progress", *u))[0] == 0
    code, out, _ = await run_cli("task", "update", "T-100", "--status", "done", "--expected-version", "1", *u)
    assert code == 1 and "version conflict: expected v1, board has v2" in out
    assert (await run_cli("task", "progress", "T-100", "lexer", "done", *u))[0] == 0
    assert (await run_cli("task", "update", "T-100", "--status", "done", *u))[0] == 0
    code, out, _ = await run_cli("board", "--uri", hub.uri)
    assert code == 0
    assert "[done] T-100 — Build parser" in out and "Ready: T-101" in out and "p/a [note] T-100: lexer done" in out
    code, out, err = await run_cli("claim", "T", "--paths", "x", "--uri", hub.uri, "--json")
    assert code == 0 and json.loads(out)["owner"] == "USER", err  # no name: 0.99's default, said on stderr
    assert "acting as USER" in err


# --------------------------------------------------------------------------- interop


async def test_reference_claim_verbs_against_our_hub(hub: Hub, repo: Path) -> None:
    """0.99.38 lock, git-claim, release (with pre-flight), state, task and board keep their exit codes."""
    need_ref()
    u = ["--uri", hub.uri]
    code, out, _ = await ref("lock", *u, "--name", "proj/a1", "--paths", "src/a.py", "TASK-1", "--", "echo", "ran")
    assert (code, "ran" in out) == (0, True)
    code, out, err = await ref("git-claim", *u, "--name", "proj/a1", "--paths", "src/a.py", "TASK-2")
    assert code == 0, out + err
    code, out, _ = await ref("git-claim", *u, "--name", "proj/b2", "--paths", "src", "TASK-3")
    assert code == 1 and "conflicts with 'TASK-2' held by proj/a1" in out
    code, out, _ = await ref("state", *u)
    assert code == 0 and "TASK-2 [claimed] owner=proj/a1" in out
    code, out, _ = await ref("release", *u, "--name", "proj/b2", "TASK-2")
    assert code == 1 and "owned by proj/a1" in out
    code, out, err = await ref("release", *u, "--name", "proj/a1", "TASK-2")
    assert code == 0, out + err
    code, out, _ = await ref("release", *u, "--name", "proj/a1", "TASK-2")
    assert code == 1 and "not currently claimed" in out
    code, out, _ = await ref("task", "declare", *u, "--name", "proj/a1", "--title", "Build parser", "T-100")
    assert code == 0
    assert (await ref("task", "update", *u, "--name", "proj/a1", "--status", "in_progress", "T-100"))[0] == 0
    assert (await ref("task", "progress", *u, "--name", "proj/b2", "--kind", "note", "T-100", "lexer"))[0] == 0
    code, out, _ = await ref(
        "task", "update", *u, "--name", "proj/a1", "--status", "done", "--expected-version", "1", "T-100"
    )
    assert code == 1 and "version conflict" in out
    code, out, _ = await ref("board", *u)
    assert code == 0 and "[in_progress] T-100" in out


async def test_max_claims_per_agent_is_a_hub_setting(hub_factory: HubFactory, repo: Path) -> None:
    """The per-agent quota was fixed at 256; now the hub sets it, and 0 lifts it."""
    capped = await hub_factory(max_claims_per_agent=2)
    for task in ("T1", "T2"):
        code, _, err = await run_cli("claim", task, "--paths", task, "--uri", capped.uri, "--name", "p/a")
        assert code == 0, err
    code, out, err = await run_cli("claim", "T3", "--paths", "T3", "--uri", capped.uri, "--name", "p/a")
    assert code != 0 and "QUOTA_EXCEEDED" in out + err and "--max-claims-per-agent" in out + err
    code, _, _ = await run_cli("claim", "T3", "--paths", "T3", "--uri", capped.uri, "--name", "p/b")
    assert code == 0  # the quota is per agent
    await capped.stop()
    unlimited = await hub_factory(max_claims_per_agent=0, db=repo / "other.db")
    for i in range(300):
        unlimited.core.claims.per_owner["p/a"] = i  # as if i claims were held: only the count matters here
    code, _, err = await run_cli("claim", "T9", "--paths", "T9", "--uri", unlimited.uri, "--name", "p/a")
    assert code == 0, err


async def test_hub_refuses_a_negative_claim_quota() -> None:
    code, _, err = await run_cli("hub", "--port", "0", "--max-claims-per-agent", "-1")
    assert code == 2 and "max-claims-per-agent" in err and "Traceback" not in err


async def test_git_claim_needs_a_branch(hub: Hub, repo: Path, tmp_path: Path) -> None:
    """git-claim records the branch; a detached HEAD or a plain directory is one line and exit 1."""
    u = ["--uri", hub.uri, "--name", "p/a"]
    code, out, err = await run_cli("git-claim", "--paths", "src/a.py", "G-1", "--base", "dev", *u)
    assert code == 0 and out.strip() == "claimed 'G-1' on branch main (base dev, auto-release on merge)", err
    assert "synapse release G-1" in err  # no hook of ours releases it: said, not implied
    subprocess.run(["git", "checkout", "-q", "--detach"], cwd=repo, check=True)
    code, out, err = await run_cli("git-claim", "--paths", "src/b.py", "G-2", *u)
    assert code == 1 and "detached HEAD" in err and len(err.strip().splitlines()) == 1, err
    plain = tmp_path / "plain"
    plain.mkdir()
    code, _, err = await run_cli("git-claim", "--worktree", str(plain), "G-3", *u)
    assert code == 1 and "not a git checkout" in err and "Traceback" not in err, err
    code, _, err = await run_cli("git-claim", "G-4", "--task-id", "G-5", *u)
    assert code == 2 and "disagree" in err


async def test_a_dot_task_id_keeps_its_epoch_in_a_file(hub: Hub, tmp_path: Path) -> None:
    """Task ids "." and ".." are stored as files under the name's folder, not as the folder or its parent."""
    for task in ("..", "."):
        code, _, err = await run_cli("claim", task, "--name", "api/c", "--paths", f"d{len(task)}/", "--uri", hub.uri)
        assert code == 0 and "Traceback" not in err, err
        code, _, err = await run_cli("release", task, "--name", "api/c", "--uri", hub.uri)
        assert code == 0, err
    home = tmp_path / "synhome"
    assert not [p for p in home.rglob("*") if p.name.endswith(".tmp")]
