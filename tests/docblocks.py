"""Run the shell examples in the Markdown docs as written, and check what they print.

Shared by ``test_readme_tour.py`` and ``test_docs_examples.py``. A fenced
``sh`` block becomes one bash script: each command line runs as written, and
each foreground command must exit 0 unless a ``# -> exit N`` line under it says
otherwise. Every other ``# -> TEXT`` line is output the page promises: TEXT
(``…`` matching anything) must appear in what the script printed from the
command above it onwards (a background command may print a little later).

A block preceded by ``<!-- not run: REASON -->`` is not run; the reason is
the skip message, so a new example is tested by default and leaving one out
needs a written reason.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

MARK = "@@block@@"
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->")
EXIT = re.compile(r"exit (\d+)$")


@dataclass(frozen=True)
class Block:
    """One fenced ``sh`` block: where it is, its lines, and why it is not run (if so)."""

    path: Path
    line: int  # 1-based line of the opening fence
    lines: tuple[str, ...]
    skip: str | None

    @property
    def id(self) -> str:
        """``page.md:LINE``: what a failing test is called."""
        return f"{self.path.name}:{self.line}"


def sh_blocks(path: Path) -> list[Block]:
    """Every fenced ``sh`` block of a Markdown page, in order."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("```"):
            i += 1
            continue
        lang = lines[i][3:].strip()
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if lang == "sh":
            prev = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            found = NOT_RUN.search(prev)
            blocks.append(Block(path, i + 1, tuple(lines[i + 1 : end]), found.group(1) if found else None))
        i = end + 1
    return blocks


@dataclass(frozen=True)
class Script:
    """A block as a bash script, with what its commands must print and exit with."""

    text: str
    expected: tuple[tuple[int, str], ...]  # (command index, TEXT)
    exits: dict[int, int]  # command index -> expected exit code (default 0)
    foreground: tuple[int, ...]  # commands that must report an exit code (the script may not die early)


def to_script(lines: tuple[str, ...] | list[str]) -> Script:
    """A bash script marking each command's start and exit code."""
    out = ["set -u"]
    expected: list[tuple[int, str]] = []
    exits: dict[int, int] = {}
    foreground: list[int] = []
    index = -1
    pending = ""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("# ->"):
            assert index >= 0, "an expected output before any command"
            text = stripped[len("# ->") :].strip()
            code = EXIT.fullmatch(text)
            if code:
                exits[index] = int(code.group(1))
            else:
                expected.append((index, text))
            continue
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):  # a continued command: run it as one
            pending += line + "\n"
            continue
        command, pending = pending + line, ""
        index += 1
        out.append(f"echo '{MARK} start {index}'")
        out.append(command)
        if not re.sub(r"\s+#.*$", "", stripped).endswith("&"):
            out.append(f'echo "{MARK} exit {index} $?"')
            foreground.append(index)
    if len(foreground) <= index:  # background commands: let them print what they were woken for, then stop them
        out.append("sleep 1")
        out.append("kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; true")
    return Script("\n".join(out) + "\n", tuple(expected), exits, tuple(foreground))


def pattern(text: str) -> re.Pattern[str]:
    """TEXT with ``…`` as a wildcard."""
    return re.compile(".*?".join(re.escape(part) for part in text.split("…")))


def clean_env(home: Path, uri: str, **extra: str) -> dict[str, str]:
    """A new user's environment: an empty HOME (so ``$SYN_HOME`` is ``~/synapse``), this venv on PATH."""
    return {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "SYNAPSE_URI": uri,
        "USER": "me",
        "LOGNAME": "me",
        "LANG": "C.UTF-8",
        "GIT_AUTHOR_NAME": "docs",
        "GIT_AUTHOR_EMAIL": "docs@example.invalid",
        "GIT_COMMITTER_NAME": "docs",
        "GIT_COMMITTER_EMAIL": "docs@example.invalid",
        **extra,
    }


#: Output kept from one page's script; more means a runaway command (the block fails).
MAX_OUTPUT = 4 << 20


async def run_script(script: Script, cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    """Run the script with bash; everything it printed (stdout and stderr together)."""
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script.text,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    chunks: list[bytes] = []
    kept = 0

    async def drain(stream: asyncio.StreamReader) -> None:
        nonlocal kept
        while chunk := await stream.read(65536):
            chunks.append(chunk)
            kept += len(chunk)
            if kept > MAX_OUTPUT:  # an output line read as a command (``yes``) prints forever
                raise OverflowError

    try:
        await asyncio.wait_for(asyncio.gather(drain(proc.stdout), proc.wait()), timeout)
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)  # the script and whatever it started, nothing else
        while chunk := await proc.stdout.read(65536):  # to EOF, or asyncio never finishes the process
            chunks.append(chunk)
        await proc.wait()
        chunks.append(f"\n{MARK} timed out after {timeout:.0f} s\n".encode())
    except OverflowError:
        os.killpg(proc.pid, signal.SIGKILL)
        while await proc.stdout.read(65536):  # read to EOF: asyncio finishes a process only once its pipes close
            pass
        await proc.wait()
        chunks.append(f"\n{MARK} printed more than {MAX_OUTPUT} bytes\n".encode())
    return b"".join(chunks).decode(errors="replace")


def problems(script: Script, out: str) -> list[str]:
    """What the run broke of the block's promises (empty: all kept)."""
    found: list[str] = []
    if f"{MARK} timed out" in out:
        found.append("the block did not finish (a command waits forever?)")
    if f"{MARK} printed more than" in out:
        found.append(f"the block printed more than {MAX_OUTPUT} bytes (an output line run as a command?)")
    if "Traceback" in out:
        found.append("a traceback")
    codes = {int(index): int(code) for index, code in re.findall(rf"{MARK} exit (\d+) (\d+)", out)}
    for index in script.foreground:
        want = script.exits.get(index, 0)
        if index not in codes:
            found.append(f"command {index} never finished (the script stopped before it)")
        elif codes[index] != want:
            found.append(f"command {index} exited {codes[index]}, expected {want}")
    starts = {int(m.group(1)): m.start() for m in re.finditer(rf"{MARK} start (\d+)", out)}
    for index, text in script.expected:
        if index not in starts or not pattern(text).search(out, starts[index]):
            found.append(f"no {text!r} after command {index}")
    return found
