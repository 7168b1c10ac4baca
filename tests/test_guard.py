"""The git guard in a real repository against a real hub: refuse, allow, chain, restore."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from synapse_channel.api import Session
from synapse_channel.hub.server import Hub

from .conftest import SYNAPSE, TIMEOUT


async def run(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: bytes = b"") -> tuple[int, str]:
    """Run a command in ``cwd``; (exit code, stdout+stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    out, _ = await asyncio.wait_for(proc.communicate(stdin), TIMEOUT * 3)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    return await run("git", *args, cwd=repo, env=env)


@pytest.fixture
async def repo(tmp_path: Path) -> Path:
    """A git repository with one commit and files a.py, b.py, src/c.py."""
    top = tmp_path / "repo"
    (top / "src").mkdir(parents=True)
    for name in ("a.py", "b.py", "src/c.py"):
        (top / name).write_text("v1\n")
    for args in (
        ("init", "-q", "-b", "main"),
        ("config", "user.email", "t@example.invalid"),
        ("config", "user.name", "T"),
        ("add", "."),
        ("commit", "-qm", "init"),
    ):
        code, out = await git(top, *args)
        assert code == 0, out
    return top.resolve()


def agent(hub: Hub, identity: str) -> dict[str, str]:
    return {"SYN_IDENTITY": identity, "SYNAPSE_URI": hub.uri}


async def commit(repo: Path, env: dict[str, str], *files: str) -> tuple[int, str]:
    for name in files:
        (repo / name).write_text((repo / name).read_text() + "change\n")
    code, out = await git(repo, "add", *files)
    assert code == 0, out
    return await git(repo, "commit", "-qm", f"change {' '.join(files)}", env=env)


async def test_refuses_another_agents_claimed_file_and_allows_the_rest(hub: Hub, repo: Path) -> None:
    code, out = await run(SYNAPSE, "guard", "install", cwd=repo)
    assert code == 0, out
    async with Session("shop/web", uri=hub.uri) as web:
        await web.claim("WEB-7", ["a.py"], worktree=str(repo), ttl=900)
        me = agent(hub, "shop/api")
        code, out = await commit(repo, me, "a.py")
        assert code != 0
        assert "a.py: task WEB-7 held by shop/web" in out and "lease 1" in out and "synapse send shop/web" in out
        code, out = await git(repo, "diff", "--cached", "--name-only")
        assert out.split() == ["a.py"]  # nothing was committed
        await git(repo, "reset", "-q")
        code, out = await commit(repo, me, "b.py")  # unclaimed: allowed
        assert code == 0, out
        async with Session("shop/api", uri=hub.uri) as api:
            await api.claim("API-1", ["src/"], worktree=str(repo))
            code, out = await commit(repo, me, "src/c.py")  # my own claim: allowed
            assert code == 0, out
        code, out = await commit(repo, agent(hub, "shop/web"), "a.py")  # the holder commits its file
        assert code == 0, out


async def test_strict_also_refuses_files_the_committer_has_not_claimed(hub: Hub, repo: Path) -> None:
    code, out = await run(SYNAPSE, "guard", "install", "--strict", cwd=repo)
    assert code == 0, out
    me = agent(hub, "shop/api")
    code, out = await commit(repo, me, "b.py")
    assert code != 0 and "not claimed by shop/api" in out and "b.py" in out
    async with Session("shop/api", uri=hub.uri) as api:
        await api.claim("API-2", ["b.py"], worktree=str(repo))
        code, out = await git(repo, "commit", "-qm", "now claimed", env=me)
        assert code == 0, out


async def test_unreachable_hub_warns_and_allows_or_refuses_when_configured(hub: Hub, repo: Path) -> None:
    code, out = await run(SYNAPSE, "guard", "install", cwd=repo)
    assert code == 0, out
    down = {"SYN_IDENTITY": "shop/api", "SYNAPSE_URI": "ws://127.0.0.1:9"}
    code, out = await commit(repo, down, "a.py")
    assert code == 0 and "claims not checked, allowing" in out and "Traceback" not in out
    code, out = await commit(repo, {**down, "SYNAPSE_GUARD_REFUSE_OFFLINE": "true"}, "b.py")
    assert code != 0 and "refusing" in out and "Traceback" not in out


async def test_existing_hooks_still_run_and_uninstall_restores_byte_for_byte(hub: Hub, repo: Path) -> None:
    hooks = repo / ".git" / "hooks"
    marker = repo.parent / "marker"
    pre_commit = hooks / "pre-commit"
    pre_commit.write_text(f'#!/bin/sh\necho "$0 ran" >> {marker}\n')
    pre_commit.chmod(0o750)
    pre_push = hooks / "pre-push"
    pre_push.write_text(f"#!/bin/sh\ncat >> {marker}.push\n")
    pre_push.chmod(0o700)
    config_before = (repo / ".git" / "config").read_bytes()
    hooks_before = {p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in hooks.iterdir()}

    code, out = await run(SYNAPSE, "guard", "install", cwd=repo)
    assert code == 0, out
    code, out = await run(SYNAPSE, "guard", "status", cwd=repo)
    assert code == 0 and "chains to hooks in" in out, out
    code, out = await commit(repo, agent(hub, "shop/api"), "a.py")
    assert code == 0, out
    assert marker.read_text() == f"{pre_commit} ran\n"  # the old hook ran, as itself ($0)

    remote = repo.parent / "remote.git"
    assert (await git(repo.parent, "init", "-q", "--bare", str(remote)))[0] == 0
    async with Session("shop/web", uri=hub.uri) as web:
        held = await web.claim("WEB-9", ["a.py"], worktree=str(repo))
        code, out = await git(repo, "push", "-q", str(remote), "main", env=agent(hub, "shop/api"))
        assert code != 0 and "push refused" in out and "WEB-9" in out
        assert not Path(f"{marker}.push").exists()  # refused before the chained hook
        await web.release("WEB-9", held.epoch)
    code, out = await git(repo, "push", "-q", str(remote), "main", env=agent(hub, "shop/api"))
    assert code == 0, out
    assert "refs/heads/main" in Path(f"{marker}.push").read_text()  # the chained hook got git's stdin

    code, out = await run(SYNAPSE, "guard", "uninstall", cwd=repo)
    assert code == 0 and "byte for byte" in out, out
    assert (repo / ".git" / "config").read_bytes() == config_before
    assert {p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in hooks.iterdir()} == hooks_before
    assert not (repo / ".git" / "synapse-guard").exists()
    code, out = await run(SYNAPSE, "guard", "status", cwd=repo)
    assert code == 1 and "not installed" in out


async def test_chains_a_previous_core_hooks_path_and_restores_it(hub: Hub, repo: Path) -> None:
    custom = repo / ".githooks"
    custom.mkdir()
    (custom / "pre-commit").write_text("#!/bin/sh\necho custom-hook-ran; exit 0\n")
    (custom / "pre-commit").chmod(0o755)
    assert (await git(repo, "config", "core.hooksPath", ".githooks"))[0] == 0
    code, out = await run(SYNAPSE, "guard", "install", cwd=repo)
    assert code == 0, out
    (repo / "x.txt").write_text("new\n")  # a config change after install: uninstall must keep it
    assert (await git(repo, "config", "user.name", "Other"))[0] == 0
    code, out = await commit(repo, agent(hub, "shop/api"), "a.py")
    assert code == 0 and "custom-hook-ran" in out, out
    code, out = await run(SYNAPSE, "guard", "uninstall", cwd=repo)
    assert code == 0, out
    assert (await git(repo, "config", "--get", "core.hooksPath"))[1].strip() == ".githooks"
    assert (await git(repo, "config", "--get", "user.name"))[1].strip() == "Other"


async def test_outside_a_repository_is_one_line_and_nonzero(tmp_path: Path) -> None:
    code, out = await run(SYNAPSE, "guard", "install", cwd=tmp_path)
    assert code != 0 and "not inside a git work tree" in out and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1


async def test_a_merge_releases_the_branch_claims_and_marks_the_task_done(hub: Hub, repo: Path) -> None:
    me = agent(hub, "shop/api")
    code, out = await run(SYNAPSE, "guard", "install", cwd=repo)
    assert code == 0, out
    assert (await git(repo, "checkout", "-q", "-b", "feature"))[0] == 0
    async with Session("shop/lead", uri=hub.uri) as lead:
        await lead.declare_task("API-7", "Routes")
    code, out = await run(SYNAPSE, "claim", "API-7", "--paths", "b.py", cwd=repo, env=me)
    assert code == 0, out
    code, out = await commit(repo, me, "b.py")
    assert code == 0, out
    code, out = await run(SYNAPSE, "release", "--merged", cwd=repo, env=me)
    assert code == 0 and "no claim of yours here is on a merged branch" in out  # its own branch is not "merged"
    assert (await git(repo, "checkout", "-q", "main"))[0] == 0
    code, out = await git(repo, "merge", "-q", "--no-ff", "-m", "merge feature", "feature", env=me)
    assert code == 0 and "released 'API-7': branch feature merged into HEAD" in out, out
    async with Session("shop/lead", uri=hub.uri) as lead:
        assert [c.task_id for c in await lead.claims()] == []
        board = await lead.board()
        assert next(t for t in board.tasks if t.task_id == "API-7").status == "done"


async def test_the_hook_stays_lean(hub: Hub, repo: Path) -> None:
    """The hook runs on every commit: it must not import what costs milliseconds (asyncio, click, dataclasses)."""
    import sys

    (repo / "a.py").write_text("v2\n")
    code, out = await git(repo, "add", "a.py")
    assert code == 0, out
    script = (
        "import sys\n"
        "from synapse_channel.guard.__main__ import main\n"
        "code = main(['pre-commit'])\n"
        "heavy = ('asyncio', 'click', 'dataclasses', 'inspect', 'subprocess', 'encodings.idna', 'typing')\n"
        "print(code, sorted(m for m in heavy if m in sys.modules))\n"
    )
    code, out = await run(sys.executable, "-c", script, cwd=repo, env=agent(hub, "shop/api"))
    assert code == 0, out
    assert out.strip() == "0 []"
    (repo / "synapse.toml").write_text('[identity]\nproject = "shop"\n')  # a config file: tomllib brings typing
    code, out = await run(sys.executable, "-c", script, cwd=repo, env=agent(hub, "shop/api"))
    assert code == 0, out
    assert out.strip() == "0 ['typing']"


async def test_absent_hooks_cost_no_process_and_one_written_later_still_runs(hub: Hub, repo: Path) -> None:
    """Hook names with nothing to chain are dangling links (git spawns nothing); a hook written there later runs."""
    code, out = await run(SYNAPSE, "guard", "install", cwd=repo)
    assert code == 0, out
    me = agent(hub, "shop/api")
    code, out = await commit(repo, {**me, "GIT_TRACE": "1"}, "a.py")
    assert code == 0, out
    ran = [line for line in out.splitlines() if "run_command" in line and "synapse-guard/hooks/" in line]
    assert [line.rsplit("/hooks/", 1)[1].split()[0] for line in ran] == ["pre-commit"], ran
    marker = repo.parent / "post-commit-ran"
    later = repo / ".git" / "hooks" / "post-commit"
    later.write_text(f"#!/bin/sh\necho ran >> {marker}\n")
    later.chmod(0o755)
    code, out = await commit(repo, me, "b.py")
    assert code == 0, out
    assert marker.read_text() == "ran\n"
    code, out = await run(SYNAPSE, "guard", "install", "--strict", cwd=repo)  # re-install: never writes through
    assert code == 0, out
    assert later.read_text() == f"#!/bin/sh\necho ran >> {marker}\n"
    assert not (repo / ".git" / "synapse-guard" / "hooks" / "post-commit").is_symlink()  # now a forwarder
    code, out = await run(SYNAPSE, "guard", "uninstall", cwd=repo)
    assert code == 0, out
    assert later.read_text() == f"#!/bin/sh\necho ran >> {marker}\n"
