"""Every ``sh`` example in docs/*.md runs as written against a real hub (issue 17).

One test per block, named ``page.md:LINE``, so a failure says which example
rotted. The blocks of one page run in order, the way a reader follows the
page: one hub per page (on an ephemeral port, its database at the clean
``$SYN_HOME/hub.db``), one clean HOME, one temporary git repository (branch
``main``, one commit) as the working directory. The rules (exit codes,
``# ->`` lines, ``<!-- not run: REASON -->``) are in :mod:`tests.docblocks`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from synapse_channel.hub.config import HubConfig
from synapse_channel.hub.server import Hub

from .docblocks import Block, clean_env, problems, run_script, sh_blocks, to_script

DOCS = Path(__file__).resolve().parents[1] / "docs"
#: Pages whose examples run here (api.md runs through tests/test_api_docs.py); a new page must be added
#: by hand.
PAGES = (
    "adapters.md",
    "claims.md",
    "cli.md",
    "configuration.md",
    "dashboard.md",
    "deployment.md",
    "ha.md",
    "mcp.md",
    "persistence.md",
    "plugins.md",
    "security.md",
)
BLOCKS = [block for name in PAGES if (DOCS / name).exists() for block in sh_blocks(DOCS / name)]

#: page -> block line -> (problems, output); filled a page at a time.
RESULTS: dict[Path, dict[int, tuple[list[str], str]]] = {}


def git_repo(root: Path, env: dict[str, str]) -> None:
    """A repository on ``main`` with one commit, as the examples assume."""
    root.mkdir(parents=True)
    (root / "README.md").write_text("a project\n")
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)


async def run_page(page: Path, tmp: Path) -> dict[int, tuple[list[str], str]]:
    """Run the page's runnable blocks in order against one fresh hub."""
    home = tmp / "home"
    syn_home = home / "synapse"
    syn_home.mkdir(parents=True)
    hub = Hub(HubConfig(host="127.0.0.1", port=0, db=syn_home / "hub.db", relay_log=syn_home / "feed.ndjson"))
    await hub.start()
    try:
        env = clean_env(home, hub.uri)
        work = tmp / "repo"
        git_repo(work, env)
        results: dict[int, tuple[list[str], str]] = {}
        for block in sh_blocks(page):
            if block.skip is None:
                script = to_script(block.lines)
                out = await run_script(script, work, env)
                results[block.line] = (problems(script, out), out)
        return results
    finally:
        await hub.stop()


@pytest.mark.parametrize(
    "block",
    [pytest.param(b, id=b.id, marks=[pytest.mark.skip(reason=b.skip)] if b.skip else []) for b in BLOCKS],
)
async def test_docs_example_runs_as_written(block: Block, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The block's commands exit as shown and print what the page shows."""
    if block.path not in RESULTS:
        RESULTS[block.path] = await run_page(block.path, tmp_path_factory.mktemp(block.path.stem))
    found, out = RESULTS[block.path][block.line]
    assert not found, f"{block.id}: {'; '.join(found)}\n{out}"


def test_every_page_with_shell_examples_is_run_and_no_example_has_a_prompt() -> None:
    """A page with ``sh`` blocks is in PAGES (api.md has its own test); a ``$`` prompt line would run as a command."""
    pages = {p.name for p in DOCS.glob("*.md") if sh_blocks(p)}
    assert pages - set(PAGES) == set(), "add the page to PAGES (or mark its blocks not run)"
    prompts = [f"{b.id}: {line}" for b in BLOCKS for line in b.lines if line.startswith("$ ")]
    assert prompts == [], "write the command bare and its output as '# -> TEXT'"
