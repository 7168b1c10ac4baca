"""The README's 60-second tour, run as written from a clean HOME against a real hub.

The fenced ``sh`` block under "A 60-second tour" is turned into one bash
script: each command line runs as written (``SYNAPSE_URI`` points it at the
test's hub on an ephemeral port), and each foreground command must exit 0.
Every ``# -> TEXT`` line is output the README promises: TEXT (``…`` matching
anything) must appear in what the script printed from the command above it
onwards (a background waiter prints a little later).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from synapse_channel.hub.server import Hub

README = Path(__file__).resolve().parents[1] / "README.md"
MARK = "@@tour@@"


def tour_block() -> list[str]:
    """The lines of the fenced sh block in the tour section."""
    text = README.read_text()
    section = text[text.index("## A 60-second tour") :]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the tour has no ```sh block"
    return match.group(1).splitlines()


def script_and_expectations(lines: list[str]) -> tuple[str, list[tuple[int, str]]]:
    """A bash script marking each command, and (command index, expected text) pairs."""
    out = ["set -u"]
    expected: list[tuple[int, str]] = []
    index = -1
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("# ->"):
            assert index >= 0, "an expected output before any command"
            expected.append((index, stripped[len("# ->") :].strip()))
            continue
        if not stripped or stripped.startswith("#"):
            continue
        index += 1
        out.append(f"echo '{MARK} start {index}'")
        out.append(line)
        if not re.sub(r"\s+#.*$", "", stripped).endswith("&"):
            out.append(f'echo "{MARK} exit {index} $?"')
    out.append("sleep 1")  # let background commands print what they were woken for
    out.append("kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; true")
    return "\n".join(out) + "\n", expected


def pattern(text: str) -> re.Pattern[str]:
    """TEXT with ``…`` as a wildcard."""
    return re.compile(".*?".join(re.escape(part) for part in text.split("…")))


async def test_readme_tour_runs_as_written(hub: Hub, tmp_path: Path) -> None:
    """Every tour command exits 0 and prints the lines the README shows, from a clean HOME."""
    script, expected = script_and_expectations(tour_block())
    assert len(expected) >= 5, "the tour should show what its commands print"
    work = tmp_path / "repo"
    work.mkdir()
    home = tmp_path / "clean-home"
    home.mkdir()
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "SYNAPSE_URI": hub.uri,
        "LANG": "C.UTF-8",
    }
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        cwd=work,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    raw, _ = await asyncio.wait_for(proc.communicate(), 120)
    out = raw.decode(errors="replace")
    assert "Traceback" not in out, out
    failed = re.findall(rf"{MARK} exit (\d+) ([1-9]\d*)", out)
    assert not failed, (failed, out)
    starts = {int(m.group(1)): m.start() for m in re.finditer(rf"{MARK} start (\d+)", out)}
    for index, text in expected:
        assert pattern(text).search(out, starts[index]), f"README promises {text!r} after command {index}:\n{out}"
