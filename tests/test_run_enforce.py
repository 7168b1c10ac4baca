"""``synapse run --enforce``: under Landlock, only claimed files are writable, also for grandchildren."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from synapse_channel import landlock
from synapse_channel.api import Session
from synapse_channel.hub.server import Hub

from .conftest import SYNAPSE, TIMEOUT


def _landlock() -> bool:
    try:
        landlock.abi_version()
    except landlock.Unavailable:
        return False
    return True


# Under CI=true the tests run anyway, so a kernel without Landlock fails them rather than skipping silently.
needs_landlock = pytest.mark.skipif(
    not _landlock() and os.environ.get("CI") != "true", reason="this kernel has no Landlock (CI requires it)"
)

#: A grandchild (python -> python) that appends to a file and prints the errno name it got, or "ok".
GRANDCHILD = (
    "import subprocess, sys\n"
    'inner = \'import errno, sys\\ntry:\\n    open(sys.argv[1], "a").write("x")\\n    print("ok")\\n'
    "except OSError as e:\\n    print(errno.errorcode[e.errno])'\n"
    "sys.exit(subprocess.call([sys.executable, '-c', inner, sys.argv[1]]))\n"
)


async def run(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT * 3)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def repo(tmp_path: Path) -> Path:
    return await make_repo(tmp_path)


async def make_repo(tmp_path: Path) -> Path:
    """A git work tree with ``mine/a.txt``, ``other.txt`` and ``free.txt`` (shared with test_shell_guard)."""
    top = tmp_path / "repo"
    (top / "mine").mkdir(parents=True)
    for name in ("mine/a.txt", "other.txt", "free.txt"):
        (top / name).write_text("v1\n")
    proc = await asyncio.create_subprocess_exec("git", "init", "-q", str(top))
    assert await proc.wait() == 0
    return top.resolve()


@needs_landlock
async def test_only_claimed_files_are_writable_also_from_a_grandchild(hub: Hub, repo: Path) -> None:
    scratch = repo.parent / "scratch"
    scratch.mkdir()
    env = {"SYN_IDENTITY": "shop/api", "SYNAPSE_URI": hub.uri, "TMPDIR": str(scratch)}
    async with Session("shop/api", uri=hub.uri) as api, Session("shop/web", uri=hub.uri) as web:
        await api.claim("API-1", ["mine/"], worktree=str(repo))
        await web.claim("WEB-1", ["other.txt"], worktree=str(repo))
        enforce = (SYNAPSE, "run", "--enforce", "--")
        code, out, err = await run(*enforce, sys.executable, "-c", GRANDCHILD, "mine/a.txt", cwd=repo, env=env)
        assert (code, out.strip()) == (0, "ok"), err
        assert "Landlock ABI" in err
        assert "/tmp contains the work tree: read-only" in err  # the tests' repo lives under /tmp
        code, out, _ = await run(*enforce, sys.executable, "-c", GRANDCHILD, "mine/new.txt", cwd=repo, env=env)
        assert out.strip() == "ok"  # a new file inside a claimed directory
        for target in ("other.txt", "free.txt"):  # another agent's file, and an unclaimed one
            code, out, _ = await run(*enforce, sys.executable, "-c", GRANDCHILD, target, cwd=repo, env=env)
            assert out.strip() == "EACCES"
            assert (repo / target).read_text() == "v1\n"
        code, _, err = await run(*enforce, "sh", "-c", "echo x > free.txt", cwd=repo, env=env)
        assert code != 0 and "Permission denied" in err and (repo / "free.txt").read_text() == "v1\n"
        code, _, err = await run(*enforce, "sh", "-c", 'echo x > "$TMPDIR/synapse-run-ok"', cwd=repo, env=env)
        assert code == 0 and (scratch / "synapse-run-ok").exists(), err  # temp dirs stay writable
        await api.claim("API-2", ["free.txt"], worktree=str(repo))
        code, out, _ = await run(
            SYNAPSE, "run", "--enforce", "--task", "API-1", "--", sys.executable, "-c", GRANDCHILD, "free.txt",
            cwd=repo, env=env,
        )  # fmt: skip
        assert out.strip() == "EACCES"  # --task: only that claim
        code, out, _ = await run(*enforce, sys.executable, "-c", GRANDCHILD, "free.txt", cwd=repo, env=env)
        assert out.strip() == "ok"


async def test_refuses_clearly_and_never_runs_unconfined(hub: Hub, repo: Path) -> None:
    env = {"SYN_IDENTITY": "shop/api", "SYNAPSE_URI": hub.uri, landlock.FAKE_ABSENT_ENV: "1"}
    marker = repo / "ran"
    code, _, err = await run(SYNAPSE, "run", "--enforce", "--", "touch", str(marker), cwd=repo, env=env)
    assert code != 0 and "--enforce refused" in err and "unconfined" in err and not marker.exists()
    env.pop(landlock.FAKE_ABSENT_ENV)
    code, _, err = await run(SYNAPSE, "run", "--enforce", "--", "touch", str(marker), cwd=repo, env=env)
    assert code != 0 and "claim first" in err and not marker.exists()  # no claims: nothing would be writable
    code, _, err = await run(SYNAPSE, "run", "--", "touch", str(marker), cwd=repo, env=env)
    assert code != 0 and "needs --enforce" in err and not marker.exists()
    assert "Traceback" not in err
