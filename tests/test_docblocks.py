"""The docs-example runner itself: a rotted example must fail, a kept promise must pass."""

from __future__ import annotations

from pathlib import Path

from .docblocks import clean_env, problems, run_script, sh_blocks, to_script

PAGE = """# A page

```sh
echo one
```

<!-- not run: needs a second machine -->
```sh
ssh elsewhere true
```

```toml
not = "a shell block"
```
"""


def test_blocks_are_found_with_their_line_and_skip_reason(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    blocks = sh_blocks(page)
    assert [(b.id, b.lines, b.skip) for b in blocks] == [
        ("page.md:3", ("echo one",), None),
        ("page.md:8", ("ssh elsewhere true",), "needs a second machine"),
    ]


async def run(lines: list[str], tmp_path: Path) -> list[str]:
    script = to_script(lines)
    env = clean_env(tmp_path, "ws://127.0.0.1:9")
    return problems(script, await run_script(script, tmp_path, env, timeout=30))


async def test_kept_promises_pass(tmp_path: Path) -> None:
    lines = ["echo 'hello world'", "# -> hello …", "sh -c 'echo no; exit 3'", "# -> no", "# -> exit 3", "sleep 0 &"]
    assert await run(lines, tmp_path) == []


async def test_each_broken_promise_is_reported(tmp_path: Path) -> None:
    assert await run(["false"], tmp_path) == ["command 0 exited 1, expected 0"]
    assert await run(["true", "# -> exit 2"], tmp_path) == ["command 0 exited 0, expected 2"]
    assert await run(["echo hi", "# -> bye"], tmp_path) == ["no 'bye' after command 0"]
    assert await run(["echo later", "echo sooner", "# -> later"], tmp_path) == ["no 'later' after command 1"]
    assert await run(["echo $UNSET", "true"], tmp_path) == [
        "command 0 never finished (the script stopped before it)",
        "command 1 never finished (the script stopped before it)",
    ]
    assert await run(["python3 -c 'raise SystemExit(0)' && echo Traceback"], tmp_path) == ["a traceback"]


async def test_a_block_that_never_ends_is_stopped_and_reported(tmp_path: Path) -> None:
    script = to_script(["sleep 600"])
    out = await run_script(script, tmp_path, clean_env(tmp_path, "ws://127.0.0.1:9"), timeout=1)
    assert problems(script, out)[0] == "the block did not finish (a command waits forever?)"


async def test_a_block_that_prints_forever_is_stopped_and_reported(tmp_path: Path) -> None:
    """An output line read as a command (``yes``) must fail the block, not fill the test's memory."""
    script = to_script(["yes"])
    out = await run_script(script, tmp_path, clean_env(tmp_path, "ws://127.0.0.1:9"), timeout=60)
    assert "the block printed more than" in problems(script, out)[0]
