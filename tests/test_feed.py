"""The relay feed and the catch-up commands that read it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from pathlib import Path

from synapse_channel.feed import FeedCursor, FeedWriter, decode_lite, encode_lite, newest_within, read_feed

from .conftest import HubFactory, open_raw, run_cli
from .test_interop import need_ref, ref


def lines(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(x) for x in path.read_text().splitlines()]


async def test_feed_lines_follow_lite_v2(hub_factory: HubFactory, tmp_path: Path) -> None:
    """Every fan-out frame becomes one compact line; private replies never do."""
    hub = await hub_factory()
    a = await open_raw(hub.uri, "a")
    await a.send("chat", "bob", "hello bob", client_msg_id="c1", receipt_requested=True)
    await a.expect("delivery_receipt")
    await a.send("who_request")
    await a.expect("who_snapshot")
    await a.close()
    await hub.stop()
    feed = lines(tmp_path / "feed.ndjson")
    kinds = [x["ty"] for x in feed]
    assert kinds == ["presence_update", "chat", "presence_update"]
    chat = feed[1]
    assert set(chat) == {"v", "i", "ty", "s", "to", "p", "t", "h", "c", "x"}
    assert chat["v"] == 2 and chat["s"] == "a" and chat["to"] == "bob" and chat["p"] == "hello bob"
    assert isinstance(chat["t"], int) and chat["t"] > 10**12  # milliseconds
    assert chat["i"] == 1 and chat["x"]["seq"] >= 1 and chat["x"]["client_msg_id"] == "c1"
    assert feed[0]["i"] == 0 and feed[0]["x"]["event"] == "joined"


async def test_private_directed_chats_still_reach_the_feed(hub_factory: HubFactory, tmp_path: Path) -> None:
    """--private-directed limits sockets, not the feed."""
    hub = await hub_factory()
    a = await open_raw(hub.uri, "a")
    await a.send("chat", "bob", "secret-ish")
    await a.send("who_request")
    await a.expect("who_snapshot")
    await a.close()
    await hub.stop()
    assert any(x["ty"] == "chat" and x["p"] == "secret-ish" for x in lines(tmp_path / "feed.ndjson"))


def test_trim_keeps_the_file_bounded(tmp_path: Path) -> None:
    """Every N appends the file is rewritten to its last N lines (never over 2N)."""
    path = tmp_path / "f.ndjson"
    w = FeedWriter(path, 5)
    sizes = []
    for i in range(23):
        w.append({"type": "chat", "sender": "s", "target": "all", "payload": f"m{i}", "timestamp": 1.0})
        sizes.append(len(path.read_text().splitlines()))
    assert max(sizes) < 10 and sizes[-1] >= 1
    assert json.loads(path.read_text().splitlines()[-1])["p"] == "m22"


def test_feed_survives_deletion_while_running(tmp_path: Path) -> None:
    """Deleting the feed is safe: the next append recreates it."""
    path = tmp_path / "f.ndjson"
    w = FeedWriter(path, 100)
    w.append({"type": "chat", "payload": "a", "timestamp": 1.0})
    path.unlink()
    w.append({"type": "chat", "payload": "b", "timestamp": 1.0})
    assert [x["p"] for x in lines(path)] == ["b"]


def write_feed(path: Path, frames: list[dict]) -> None:  # type: ignore[type-arg]
    path.write_text("".join(encode_lite(f) + "\n" for f in frames))


def chat(sender: str, target: str, payload: str, t: float = 1795895759.237) -> dict:  # type: ignore[type-arg]
    return {"type": "chat", "sender": sender, "target": target, "payload": payload, "timestamp": t, "msg_id": 1}


async def test_relay_filters_format_and_cursor(tmp_path: Path) -> None:
    """relay prints '[t] s -> to (type): p', filters by --for/--project, and resumes from --cursor."""
    feed = tmp_path / "feed.ndjson"
    write_feed(
        feed,
        [
            chat("x", "alice", "hello alice"),
            chat("x", "all", "everyone"),
            chat("x", "proj/a1", "seat"),
            chat("x", "bob", "not yours"),
        ],
    )
    code, out, _ = await run_cli("relay", str(feed), "--for", "alice")
    assert out.splitlines() == [
        "[1795895759.237] x -> alice (chat): hello alice",
        "[1795895759.237] x -> all (chat): everyone",
    ]
    code, out, _ = await run_cli("relay", str(feed), "--project", "proj")
    assert code == 0
    assert [ln.split(": ", 1)[1] for ln in out.splitlines()] == ["everyone", "seat"]
    cursor = tmp_path / "c.cursor"
    assert len((await run_cli("relay", str(feed), "--cursor", str(cursor)))[1].splitlines()) == 4
    assert (await run_cli("relay", str(feed), "--cursor", str(cursor)))[1] == ""
    with feed.open("a") as fh:
        fh.write(encode_lite(chat("y", "alice", "new")) + "\n" + '{"v":2,"ty":"chat","s":"partial')
    _code, out, _ = await run_cli("relay", str(feed), "--cursor", str(cursor))
    assert out.splitlines() == ["[1795895759.237] y -> alice (chat): new"]  # the partial line waits


async def test_relay_cursor_realigns_after_trim_and_truncation(tmp_path: Path) -> None:
    """After the hub trims the feed the cursor resumes after the last line read, not nowhere."""
    feed = tmp_path / "feed.ndjson"
    frames = [chat("s", "all", f"m{i}", t=1000.0 + i) for i in range(10)]
    write_feed(feed, frames)
    cursor = tmp_path / "c.cursor"
    await run_cli("relay", str(feed), "--cursor", str(cursor))
    write_feed(feed, [*frames[7:], chat("s", "all", "m10", t=1010.0)])  # a trim kept the last 3, then 1 more
    out = (await run_cli("relay", str(feed), "--cursor", str(cursor)))[1]
    assert [ln.rsplit(": ", 1)[1] for ln in out.splitlines()] == ["m10"]
    feed.write_text("")  # truncated: nothing to print, and no error
    assert (await run_cli("relay", str(feed), "--cursor", str(cursor)))[0] == 0
    write_feed(feed, [chat("s", "all", "fresh", t=2000.0)])
    out = (await run_cli("relay", str(feed), "--cursor", str(cursor)))[1]
    assert out.strip().endswith("fresh")


async def test_syn_inbox_and_resume(hub_factory: HubFactory, tmp_path: Path) -> None:
    """syn-inbox prints what is new for the identity once; syn-resume the project's catch-up."""
    hub = await hub_factory(relay_log=tmp_path / "synhome" / "feed.ndjson")
    for target, text in [("api/claude-1", "for seat 1"), ("api", "for the project"), ("web/x", "other project")]:
        await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", target, text)
    env = {"SYN_IDENTITY": "api/claude-1", "SYN_PROJECT": "api"}
    code, out, _ = await run_cli("inbox", env=env)
    assert code == 0 and "for seat 1" in out and "for the project" in out and "other project" not in out
    assert (await run_cli("inbox", env=env))[1] == ""
    await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "api/claude-1", "later")
    code, out, _ = await run_script("syn-inbox", env=env)
    assert (code, out.count("\n")) == (0, 1) and "later" in out
    code, out, _ = await run_cli("resume", "--uri", hub.uri, env=env)
    assert code == 0
    assert "# synapse catch-up for api" in out and "Missed messages (3):" in out and "other project" not in out
    code, out, _ = await run_cli("resume", "--uri", hub.uri, env=env)
    assert "Missed messages: none" in out


async def test_resume_limit_keeps_the_rest_for_next_time(hub_factory: HubFactory, tmp_path: Path) -> None:
    """With more than --limit missed messages, the rest is shown on the next run, not lost."""
    hub = await hub_factory(relay_log=tmp_path / "synhome" / "feed.ndjson")
    for i in range(5):
        await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "api", f"n{i}")
    env = {"SYN_PROJECT": "api"}
    first = (await run_cli("resume", "--no-hub", "--limit", "3", env=env))[1]
    second = (await run_cli("resume", "--no-hub", "--limit", "3", env=env))[1]
    assert [f"n{i}" in first for i in range(5)] == [True, True, True, False, False]
    assert "2 more" in first and "n3" in second and "n4" in second and "n0" not in second


async def test_resume_without_a_hub_still_prints_the_feed(tmp_path: Path) -> None:
    """syn-resume fails open: no hub means no claims section, not an error."""
    home = tmp_path / "synhome"
    home.mkdir()
    write_feed(home / "feed.ndjson", [chat("boss", "api", "while you were out")])
    code, out, _ = await run_cli("resume", "--project", "api", "--uri", "ws://127.0.0.1:9")
    assert code == 0 and "while you were out" in out and "not reachable" in out


async def run_script(name: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run one of our console scripts (syn-inbox, syn-resume, syn-wait)."""
    import asyncio
    import os
    import sys

    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / name),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_syn_wait_waits_for_the_identity(hub_factory: HubFactory) -> None:
    """syn-wait is a directed-only mailbox wait for $SYN_IDENTITY."""
    hub = await hub_factory()
    await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "api/c2", "queued for c2")
    await run_cli("send", "--uri", hub.uri, "--name", "boss", "broadcast, ignored")
    code, out, _ = await run_script("syn-wait", "--uri", hub.uri, "--timeout", "5", env={"SYN_IDENTITY": "api/c2"})
    assert (code, out) == (0, "boss: queued for c2\n")
    code, _, err = await run_script("syn-inbox", "--bogus")
    assert code == 2 and "syn-inbox: error" in err


async def test_reference_relay_and_syn_inbox_read_our_feed(hub_factory: HubFactory, tmp_path: Path) -> None:
    """The 0.99.38 `synapse relay` and `syn-inbox` read the feed our hub writes."""
    need_ref()
    feed = tmp_path / "synhome" / "feed.ndjson"
    hub = await hub_factory(relay_log=feed)
    await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "proj/a1", "hello proj a1")
    await run_cli("send", "--uri", hub.uri, "--name", "boss", "broadcast one")
    code, out, _ = await ref("relay", str(feed), "--for", "proj/a1")
    assert code == 0
    assert "boss -> proj/a1 (chat): hello proj a1" in out and "broadcast one" in out
    env = {"SYN_IDENTITY": "proj/a1", "SYN_PROJECT": "proj", "SYN_HOME": str(tmp_path / "synhome")}
    code, out, _ = await ref(tool="syn-inbox", env=env)
    assert code == 0 and "hello proj a1" in out


async def test_syn_inbox_shows_local_time(tmp_path: Path) -> None:
    """syn-inbox prints local wall-clock time, not epoch seconds (relay keeps 0.99's epoch format)."""
    home = tmp_path / "synhome"
    home.mkdir()
    write_feed(home / "feed.ndjson", [chat("boss", "api/c1", "hello")])
    env = {"SYN_IDENTITY": "api/c1", "TZ": "UTC"}
    code, out, _ = await run_cli("inbox", env=env)
    assert (code, out) == (0, "[2026-11-28 19:55:59] boss -> api/c1 (chat): hello\n")


async def test_syn_inbox_leaves_out_what_wait_printed(hub_factory: HubFactory, tmp_path: Path) -> None:
    """A directed message wait printed and acked is not shown again by syn-inbox (--all marks it)."""
    hub = await hub_factory(relay_log=tmp_path / "synhome" / "feed.ndjson")
    env = {"SYN_IDENTITY": "api/c1"}
    await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "api/c1", "seen by wait")
    code, out, _ = await run_cli("wait", "--uri", hub.uri, "--timeout", "5", env=env)
    assert (code, out) == (0, "boss: seen by wait\n")
    await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "api/c1", "not yet seen")
    code, out, err = await run_cli("inbox", "--peek", env=env)
    assert code == 0 and "not yet seen" in out and "seen by wait" not in out, out
    assert "1 already printed by wait" in err
    code, out, _ = await run_cli("inbox", "--all", env=env)
    lines = out.splitlines()
    assert len(lines) == 2 and "[waited] boss -> api/c1" in lines[0] and "[waited]" not in lines[1], out


async def test_resume_uses_one_hub_and_takes_token_options(hub_factory: HubFactory, tmp_path: Path) -> None:
    """syn-resume shows only the --uri hub's feed lines and takes --token-file / SYNAPSE_TOKEN_FILE."""
    secret = "s3cret-0123456789abc"
    here = await hub_factory(relay_log=tmp_path / "synhome" / "feed.ndjson", token=secret)
    elsewhere = await hub_factory(db=tmp_path / "other.db", relay_log=None)
    tok = tmp_path / "tok"
    tok.write_text(secret + "\n")
    tok.chmod(0o600)
    await run_cli("send", "--uri", here.uri, "--token-file", str(tok), "--name", "boss", "--target", "api", "hi api")
    env = {"SYN_PROJECT": "api", "SYNAPSE_TOKEN_FILE": str(tok)}
    code, out, _ = await run_cli("resume", "--uri", elsewhere.uri, env=env)
    assert code == 0 and "hi api" not in out and "1 other hub(s)" in out and "Missed messages: none" in out, out
    code, out, _ = await run_script("syn-resume", "--uri", here.uri, env=env)
    assert code == 0 and "hi api" in out and "from hub syn-" in out and "Claims held by api" in out, out
    code, out, _ = await run_cli("resume", "--uri", here.uri, "--token-file", str(tok), env={"SYN_PROJECT": "api"})
    assert code == 0 and "Claims held by api" in out and "Missed messages: none" in out, out


def frames_in(path: Path) -> list[int]:
    """The sequence numbers of the feed's lines, in file order."""
    return [json.loads(x)["x"]["n"] for x in path.read_bytes().splitlines()]


def numbered(n: int, payload: str = "m") -> dict:  # type: ignore[type-arg]
    return {"type": "chat", "sender": "s", "target": "all", "payload": payload, "timestamp": 1.0, "n": n}


async def test_lines_are_written_once_per_tick(tmp_path: Path) -> None:
    """Frames fanned out in one tick reach the file together, at the end of the tick."""
    path = tmp_path / "f.ndjson"
    w = FeedWriter(path, 1000)
    for i in range(100):
        w.append(numbered(i))
    assert not path.exists()  # buffered, not one open+write per frame
    await asyncio.sleep(0)
    assert frames_in(path) == list(range(100))
    await w.close()


async def test_many_frames_keep_the_file_bounded_and_whole(tmp_path: Path) -> None:
    """Thousands of frames over many ticks: bounded by lines, never a torn line, the newest N kept in order."""
    path = tmp_path / "f.ndjson"
    w = FeedWriter(path, 50)
    stop = threading.Event()
    torn: list[bytes] = []

    def reader() -> None:
        """Racing the trims, every complete line parses (a partial last line is an append in progress,
        which readers leave for their next run)."""
        while not stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                data = path.read_bytes()
                torn.extend(x for x in data.split(b"\n")[:-1] if decode_lite(x.decode()) is None)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(3000):
            w.append(numbered(i))
            if i % 7 == 0:
                await asyncio.sleep(0)  # a tick: the lines are written, a trim may start in its thread
            if i % 91 == 0:
                await w.drain()
                assert len(path.read_bytes().splitlines()) < 2 * 50
    finally:
        stop.set()
        thread.join()
    await w.close()
    assert torn == []
    assert w.trims > 10
    seqs = frames_in(path)
    assert seqs == list(range(seqs[0], 3000)) and 50 <= len(seqs) < 100
    lines, _end, _last = read_feed(path, FeedCursor(None))
    assert [x.frame["n"] for x in lines][-50:] == list(range(2950, 3000))


async def test_the_feed_is_bounded_by_bytes(tmp_path: Path) -> None:
    """Large frames: the byte bound trims long before the line bound would."""
    path = tmp_path / "f.ndjson"
    w = FeedWriter(path, 100_000, max_bytes=64 * 1024)
    for i in range(400):
        w.append(numbered(i, "x" * 1000))
        await asyncio.sleep(0)
        if i % 10 == 0:
            await w.drain()
            assert path.stat().st_size < 2 * 64 * 1024
    await w.close()
    seqs = frames_in(path)
    assert seqs[-1] == 399 and seqs == list(range(seqs[0], 400))
    assert path.stat().st_size <= 2 * 64 * 1024


async def test_an_oversized_file_from_before_is_trimmed_on_first_append(tmp_path: Path) -> None:
    """A restarted hub does not trust an old file's size: the first write counts it and trims it."""
    path = tmp_path / "f.ndjson"
    write_feed(path, [numbered(i) for i in range(500)])
    w = FeedWriter(path, 20)
    w.append(numbered(500))
    await asyncio.sleep(0)
    await w.close()
    assert frames_in(path) == list(range(481, 501))


def test_newest_within_keeps_at_least_the_newest_line() -> None:
    """A line bigger than the byte bound alone is still kept: readers always see the newest."""
    assert newest_within([b"a\n", b"bb\n", b"ccc\n"], 10, 7) == [b"bb\n", b"ccc\n"]
    assert newest_within([b"a\n", b"bb\n", b"ccc\n"], 2, 100) == [b"bb\n", b"ccc\n"]
    assert newest_within([b"a\n", b"huge\n"], 10, 1) == [b"huge\n"]
