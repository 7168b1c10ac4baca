"""User mistakes never end in a traceback: hostile arguments against a real hub.

Hypothesis picks a command and fills it with odd names, paths, URIs and
numbers; the real ``synapse`` runs as a subprocess against a real hub (its own
process, port 0). Each run must end with a documented exit code, no
"Traceback" on stderr, no ``.tmp`` file left under ``$SYN_HOME`` and nothing
written outside ``$SYN_HOME`` (the working directory stays empty).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synapse_channel.hub.server import Hub

from .conftest import SYNAPSE, run_cli

# Every exit code docs/cli.md documents for these commands (2: usage error).
DOCUMENTED = {0, 1, 2, 3, 4}

ODD = [
    "..",
    ".",
    "/",
    "a/..",
    "../../etc/passwd",
    "-rx",
    "all",
    "*",
    "a,b",
    "api/claude-1",
    "x" * 300,
    "naïve",
    "tab\there",
    "line\nbreak",
    "\x1b[31mred",
    "~",
    "$HOME",
    "",
    " ",
]
URIS = [
    "http://127.0.0.1:1",
    "https://example.invalid",
    "ftp://127.0.0.1",
    "ws://",
    "ws://127.0.0.1:99999",
    "ws://[::1",
    "not a uri",
    "",
    "ws://127.0.0.1:9",
    "ws://127.0.0.1:9,,ws://127.0.0.1:10",
    "ws://127.0.0.1:9,http://127.0.0.1:10",
    ",",
    "ws://127.0.0.1:9, ws://127.0.0.1:10",
]
NUMBERS = ["-1", "0", "nan", "inf", "-inf", "1e309", "0x10", "abc", "", "99999999999999999999"]
# Free text without NUL (argv cannot carry it) or lone surrogates.
TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40)
NAMES = st.one_of(st.sampled_from(ODD), TEXT)


#: Every client command, with ``{name}`` and ``{number}`` where hostile values go.
TEMPLATES = [
    ["send", "--target", "{name}", "hi"],
    ["send", "--name", "{name}", "--target", "api/x", "hi"],
    ["send", "--receipt-timeout", "{number}", "--target", "api/x", "hi"],
    ["wait", "--name", "{name}", "--timeout", "0.1"],
    ["wait", "--for", "{name}", "--timeout", "0.1"],
    ["wait", "--name", "api/w", "--timeout", "{number}"],
    ["claim", "{name}", "--name", "api/c", "--paths", "src/"],
    ["claim", "T-1", "--name", "api/c", "--paths", "{name}"],
    ["release", "{name}", "--name", "api/c"],
    ["renew", "{name}", "--name", "api/c", "--ttl", "{number}"],
    ["handoff", "T-1", "{name}", "--name", "api/c"],
    ["checkpoint", "{name}", "--name", "api/c", "note"],
    ["lock", "T-2", "--name", "api/c", "--paths", "{name}", "--", "true"],
    ["receipt", "{number}"],
    ["task", "declare", "{name}", "--title", "t", "--name", "api/c"],
    ["task", "update", "{name}", "--status", "done", "--name", "api/c"],
    ["task", "progress", "{name}", "text", "--name", "api/c"],
    ["board", "--name", "{name}"],
    ["state", "--name", "{name}"],
    ["health", "--name", "{name}"],
    ["inbox", "--id", "{name}"],
    ["resume", "--id", "{name}"],
    ["relay", "--since", "{number}", "--for", "{name}"],
    ["who", "--project", "{name}"],
    ["config", "get", "{name}"],
    ["seat", "add", "{name}", "--db", "{db}"],
    ["ask-human", "ship it?", "--name", "{name}", "--timeout", "0.2"],
    ["ask-human", "ship it?", "--name", "api/a", "--timeout", "{number}", "--choices", "{name}"],
    ["attention", "list", "--name", "{name}"],
    ["attention", "answer", "{name}", "yes", "--name", "ops/human"],
    ["attention", "cancel", "{name}", "--name", "{name}"],
    ["search", "{name}"],
    ["search", "x", "--since", "{number}"],
    ["search", "x", "--limit", "{number}", "--from", "{name}", "--to", "{name}"],
    ["search", "x", "--name", "{name}"],
]
#: Queries SQLite's FTS5 refuses or reads oddly: each must be an answer or a one-line refusal.
QUERIES = [
    '"',
    "(",
    ")",
    "a AND",
    "NOT",
    "OR OR",
    "*",
    "-x",
    "zebra-crossing",
    "a:b",
    "body:x",
    "{body}: x",
    "NEAR(a b",
    "NEAR(a b, -1)",
    "^x",
    "x" * 1001,
    "\x1b[31m",
    "\u202e",
    "' OR 1=1 --",
    "a\nb",
]
#: ``--since`` values that parse (a duration, an ISO time) yet land far outside any real time.
SINCE = ["9" * 400 + "s", "99999999999w", "0s", "9999-12-31T23:59:59", "0001-01-01T00:00", "2026-02-30"]


def with_uri(args: list[str], uri: str) -> list[str]:
    """Add ``--uri`` to a command that talks to a hub."""
    return [*args, "--uri", uri] if args[0] not in ("config", "inbox", "resume", "relay", "seat") else args


@st.composite
def invocations(draw: st.DrawFn) -> list[str]:
    """One command line: a command with hostile values (``{uri}`` is the live hub)."""
    name = draw(NAMES)
    number = draw(st.sampled_from(NUMBERS))
    uri = draw(st.sampled_from(["{uri}", "{uri}", *URIS]))
    args = [a.replace("{name}", name).replace("{number}", number) for a in draw(st.sampled_from(TEMPLATES))]
    return with_uri(args, uri)


@pytest.fixture(scope="module")
def live_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real hub in its own process on an ephemeral port; yields its URI."""
    yield from spawn_hub(tmp_path_factory, ":memory:")


@pytest.fixture(scope="module")
def live_db_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Like :func:`live_hub` with a journal on disk, so ``search`` really runs its queries."""
    yield from spawn_hub(tmp_path_factory, "hub.db")


def spawn_hub(tmp_path_factory: pytest.TempPathFactory, db: str) -> Iterator[str]:
    home = tmp_path_factory.mktemp("hubhome")
    env = {**os.environ, "SYN_HOME": str(home), "HOME": str(home)}
    log = home / "hub.log"
    path = db if db == ":memory:" else str(home / db)
    with log.open("w") as sink:  # a file, not a pipe: nobody drains a pipe while the tests run
        proc = subprocess.Popen([SYNAPSE, "hub", "--port", "0", "--db", path, "--relay-log", ""], env=env, stderr=sink)
    try:
        deadline = time.monotonic() + 30
        while not (match := re.search(r"listening on (ws://\S+)", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait()


def clean_env(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    """An environment with no ambient identity, its $SYN_HOME and an empty working directory."""
    home = tmp_path / "synhome"
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SYN_", "SYNAPSE_"))},
        "SYN_HOME": str(home),
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
    }
    return env, home, cwd


def check_run(args: list[str], live_hub: str, tmp_path: Path) -> None:
    """Run one command line: documented exit, one-line usage error, no traceback, no stray files."""
    env, home, cwd = clean_env(tmp_path)
    argv = [a.replace("{uri}", live_hub).replace("{db}", str(home / "seats.db")) for a in args]
    done = subprocess.run([SYNAPSE, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, (argv, done.stderr)
    assert done.returncode in DOCUMENTED, (argv, done.returncode, done.stderr)
    if done.returncode == 2:
        assert done.stderr.count("\n") == 1, (argv, done.stderr)  # a usage error is one line
    assert not list(cwd.iterdir()), argv
    stray = [p for p in home.rglob("*") if p.name.endswith(".tmp")] if home.exists() else []
    assert not stray, (argv, stray)
    assert {p.name for p in tmp_path.iterdir()} <= {"synhome", "cwd", "home", "xdg"}, argv


def test_hostile_arguments_never_trace_back(live_hub: str, tmp_path: Path) -> None:
    """Any generated command line: documented exit, one-line error at most, no traceback, no stray files."""

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(invocations())
    def check(args: list[str]) -> None:
        check_run(args, live_hub, tmp_path)

    check()


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: "-".join(w for w in t[:2] if not w.startswith("{")))
def test_every_command_takes_odd_values(template: list[str], live_hub: str, tmp_path: Path) -> None:
    """Each command at least once with a path-like name, a control character and a non-number."""
    for name, number in (("..", "nan"), ("tab\there\x1b[31m", "-1")):
        args = [a.replace("{name}", name).replace("{number}", number) for a in template]
        check_run(with_uri(args, "{uri}"), live_hub, tmp_path)


def test_hostile_search_queries_never_trace_back(live_db_hub: str, tmp_path: Path) -> None:
    """Against a hub that really searches: FTS5 syntax errors, odd --since, generated text; never a traceback."""
    env, _, cwd = clean_env(tmp_path)
    sent = subprocess.run(
        [SYNAPSE, "send", "--uri", live_db_hub, "--target", "all", "zebra crossing x body"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    for query in QUERIES:
        check_run(["search", query, "--uri", "{uri}"], live_db_hub, tmp_path)
    for since in SINCE:
        check_run(["search", "zebra", "--since", since, "--uri", "{uri}"], live_db_hub, tmp_path)
    done = subprocess.run(
        [SYNAPSE, "search", "zebra-crossing", "--uri", live_db_hub], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 1 and "double quotes" in done.stdout + done.stderr, done

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(TEXT.filter(lambda t: bool(t.strip())))
    def check(query: str) -> None:
        check_run(["search", query, "--uri", "{uri}"], live_db_hub, tmp_path)

    check()


async def test_wait_for_a_path_like_name_is_one_line_exit_1(hub: Hub, tmp_path: Path) -> None:
    """`wait --name ..` (or `.`, `/`) is refused before any cursor file is named after it."""
    for name in ("..", ".", "/", "a/../b"):
        await run_cli("send", "--uri", hub.uri, "--target", name, "x")
        code, out, err = await run_cli("wait", "--uri", hub.uri, "--name", name, "--timeout", "0.1")
        assert (code, out, err.count("\n")) == (1, "", 1), err
        assert "Traceback" not in err and f"cannot wait as {name!r}" in err
    home = tmp_path / "synhome"
    assert not [p for p in home.rglob("*") if p.name.endswith(".tmp")] if home.exists() else True


async def test_http_uri_is_a_usage_error_naming_ws() -> None:
    """An http:// URI is a bad argument (exit 2) that names the ws:// form, not an unreachable hub."""
    code, _, err = await run_cli("who", "--uri", "http://127.0.0.1:8876")
    assert code == 2 and "ws://HOST:PORT or wss://HOST:PORT" in err and err.count("\n") == 1, err
    code, _, err = await run_cli("send", "hi", env={"SYNAPSE_URI": "http://127.0.0.1:8876"})
    assert code == 2 and "ws://" in err, err


async def test_health_counts_clients_in_english(hub: Hub) -> None:
    """One connected client reads "1 client"."""
    code, out, _ = await run_cli("health", "--uri", hub.uri)
    assert code == 0 and out.rstrip().endswith(", 1 client)"), out


def test_syn_wait_help_names_itself() -> None:
    """syn-wait's usage line says syn-wait."""
    done = subprocess.run([str(Path(SYNAPSE).with_name("syn-wait")), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("Usage: syn-wait"), done.stdout
