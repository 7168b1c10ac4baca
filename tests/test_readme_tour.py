"""The README's 60-second tour, run as written from a clean HOME against a real hub.

The fenced ``sh`` block under "A 60-second tour" runs as one bash script
(``SYNAPSE_URI`` points it at the test's hub on an ephemeral port); the rules
for exits and ``# ->`` lines are in :mod:`tests.docblocks`.
"""

from __future__ import annotations

import re
from pathlib import Path

from synapse_channel.hub.server import Hub

from .docblocks import clean_env, problems, run_script, to_script

README = Path(__file__).resolve().parents[1] / "README.md"


def tour_block() -> list[str]:
    """The lines of the fenced sh block in the tour section."""
    text = README.read_text()
    section = text[text.index("## A 60-second tour") :]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the tour has no ```sh block"
    return match.group(1).splitlines()


async def test_readme_tour_runs_as_written(hub: Hub, tmp_path: Path) -> None:
    """Every tour command exits 0 and prints the lines the README shows, from a clean HOME."""
    script = to_script(tour_block())
    assert len(script.expected) >= 5, "the tour should show what its commands print"
    work = tmp_path / "repo"
    work.mkdir()
    home = tmp_path / "clean-home"
    home.mkdir()
    out = await run_script(script, work, clean_env(home, hub.uri))
    assert not problems(script, out), (problems(script, out), out)
