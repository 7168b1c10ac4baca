"""The relay feed: one compact "lite v2" JSON line per public hub frame.

The feed is derived state for readers that never talk to the hub
(``synapse relay``, ``syn-inbox``). It is appended once per event-loop tick
and bounded by lines and bytes: once it holds twice a bound, it is rewritten
(in a worker thread, swapped in atomically) to its newest lines within the
bounds. It may be truncated or deleted while the hub runs; the next append
recreates it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

LITE_VERSION = 2
#: Default byte bound of the feed file (``--relay-max-mb``): it is trimmed once it reaches twice this.
DEFAULT_MAX_BYTES = 8 << 20
_CORE_KEYS = frozenset({"sender", "target", "type", "payload", "timestamp", "hub_id", "msg_id", "channel"})


def encode_lite(frame: dict[str, Any]) -> str:
    """One feed line for ``frame`` (``t`` in milliseconds, extra fields under ``x``)."""
    ts = frame.get("timestamp", 0)
    line = {
        "v": LITE_VERSION,
        "i": frame.get("msg_id", 0) if frame.get("type") == "chat" else 0,
        "ty": frame.get("type", ""),
        "s": frame.get("sender", ""),
        "to": frame.get("target", ""),
        "p": frame.get("payload", ""),
        "t": round(float(ts) * 1000) if isinstance(ts, int | float) else 0,
        "h": frame.get("hub_id", ""),
        "c": frame.get("channel", "") or "",
        "x": {k: v for k, v in frame.items() if k not in _CORE_KEYS},
    }
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False)


def decode_lite(line: str) -> dict[str, Any] | None:
    """Parse one feed line back into a frame-like dict; None if it is not one."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("v") != LITE_VERSION:
        return None
    x = obj.get("x")
    extra: dict[str, Any] = x if isinstance(x, dict) else {}
    t = obj.get("t", 0)
    frame = {
        **extra,
        "type": obj.get("ty", ""),
        "sender": obj.get("s", ""),
        "target": obj.get("to", ""),
        "payload": obj.get("p", ""),
        "timestamp": (t / 1000.0) if isinstance(t, int | float) else 0.0,
        "hub_id": obj.get("h", ""),
        "msg_id": obj.get("i", 0),
        "channel": obj.get("c", ""),
    }
    return frame


class FeedWriter:
    """Appends feed lines to ``path`` and keeps it bounded by lines and by bytes.

    Lines are buffered and written once per event-loop tick (one ``write``
    for every frame one group commit released), not opened and written per
    frame. The file may grow to twice its bounds; then it is rewritten to the
    newest lines within the bounds, in a worker thread, and swapped in with an
    atomic rename, so the rewrite costs O(1) per line amortised and a reader
    only ever sees whole files made of whole lines. Lines appended while the
    rewrite runs are carried over before the swap; none is lost.
    """

    def __init__(self, path: Path, max_lines: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path).expanduser()
        self.max_lines = max(1, max_lines)
        self.max_bytes = max(1, max_bytes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._fd = -1
        self._ino = 0
        #: Lines and bytes in the file as far as this writer knows (what it wrote since it last opened it).
        self.lines = 0
        self.size = 0
        self._pending: list[bytes] = []
        self._scheduled = False
        self._trimming: asyncio.Task[None] | None = None
        self.trims = 0

    def append(self, frame: dict[str, Any]) -> None:
        """Queue one line; it reaches the file at the end of this loop tick (at once without a loop)."""
        self._pending.append((encode_lite(frame) + "\n").encode())
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every queued line with one append; start a trim once a bound is passed twice over."""
        self._scheduled = False
        if not self._pending:
            return
        data = b"".join(self._pending)
        count = len(self._pending)
        self._pending.clear()
        try:
            fd = self._open()
            os.write(fd, data)
        except OSError:
            return  # the feed is derived state; never let it break the hub
        self.lines += count
        self.size += len(data)
        if self._trimming is None and self._over_bounds():
            self._start_trim()

    def _over_bounds(self) -> bool:
        """Twice a bound reached (a single line over the byte bound alone is kept, not rewritten again)."""
        return self.lines >= 2 * self.max_lines or (self.size >= 2 * self.max_bytes and self.lines > 1)

    def _open(self) -> int:
        """The append descriptor, reopened when the file was deleted or replaced under us."""
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            ino = -1
        if self._fd < 0 or ino != self._ino:
            self._close_fd()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            st = os.fstat(self._fd)
            self._ino = st.st_ino
            self.size = st.st_size
            self.lines = 2 * self.max_lines if st.st_size else 0  # not ours: the first trim counts it
        return self._fd

    def _close_fd(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def _start_trim(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.trim()
            return
        self._trimming = asyncio.create_task(self._trim_async())

    async def _trim_async(self) -> None:
        """Rewrite in a thread; then, on the loop, carry over what was appended meanwhile and swap."""
        try:
            mark = (self.lines, self.size, self._ino)
            kept = await asyncio.to_thread(self._write_trimmed, mark[1])
            self._finish_trim(mark, kept)
        except OSError:
            self._drop_tmp()
            return
        finally:
            self._trimming = None
        if self._over_bounds():  # what arrived during the rewrite passed a bound again
            self._start_trim()

    def trim(self) -> None:
        """Rewrite the file to its newest lines within the bounds, atomically (blocking)."""
        self.flush()
        try:
            mark = (self.lines, self.size, self._ino)
            self._finish_trim(mark, self._write_trimmed(mark[1]))
        except OSError:
            self._drop_tmp()

    def _write_trimmed(self, upto: int) -> tuple[int, int, bool]:
        """Write the newest whole lines of the file's first ``upto`` bytes to the temp file.

        Returns the lines and bytes kept, and whether a rewrite was needed at
        all (when not, no temp file is written and the counts are just corrected).
        """
        with open(self.path, "rb") as fh:
            data = fh.read(upto)
        end = data.rfind(b"\n") + 1
        lines = data[:end].splitlines(keepends=True)
        keep = newest_within(lines, self.max_lines, self.max_bytes)
        size = sum(map(len, keep)) + len(data) - end
        if len(keep) == len(lines):
            return len(keep), size, False
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.writelines(keep)
            out.write(data[end:])  # a partial line (not ours) stays where it was
        return len(keep), size, True

    def _finish_trim(self, mark: tuple[int, int, int], kept: tuple[int, int, bool]) -> None:
        """Carry over the lines appended since ``mark`` into the temp file, rename it over the feed."""
        self.flush()
        lines_at, upto, ino = mark
        kept_lines, kept_size, rewritten = kept
        if ino != self._ino:  # the file was replaced or deleted meanwhile: start over from what is there
            self._drop_tmp()
            return
        if rewritten:
            with open(self.path, "rb") as fh:
                fh.seek(upto)
                tail = fh.read()
            with open(self._tmp, "ab") as out:
                out.write(tail)
            os.replace(self._tmp, self.path)
            self._close_fd()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._ino = os.fstat(self._fd).st_ino
            self.trims += 1
        self.lines = kept_lines + self.lines - lines_at
        self.size = kept_size + self.size - upto

    def _drop_tmp(self) -> None:
        with contextlib.suppress(OSError):
            self._tmp.unlink()

    async def drain(self) -> None:
        """Write what is queued and wait for a trim under way (the file is within twice its bounds after)."""
        self.flush()
        while self._trimming is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._trimming)

    async def close(self) -> None:
        """Finish a trim under way, write what is queued and release the descriptor."""
        await self.drain()
        self.flush()
        self._close_fd()


def newest_within(lines: list[bytes], max_lines: int, max_bytes: int) -> list[bytes]:
    """The newest ``lines`` that fit both bounds (always at least the newest one)."""
    keep = lines[-max_lines:]
    total = sum(map(len, keep))
    drop = 0
    while total > max_bytes and drop < len(keep) - 1:
        total -= len(keep[drop])
        drop += 1
    return keep[drop:]


class FeedCursor:
    """Where a reader stopped: a byte offset plus the hash of the last line read.

    The offset file holds a plain integer (the format the 0.99 tools use).
    A sidecar ``.last`` file keeps the hash of the last line consumed, so a
    reader can realign after the hub rewrote (trimmed) the feed: it resumes
    after that line if it is still there, and from the top if it was trimmed
    away (then everything left is newer).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.offset = 0
        self.last = ""
        if path is not None:
            try:
                self.offset = max(0, int(path.read_text().strip() or 0))
            except (OSError, ValueError):
                self.offset = 0
            try:
                self.last = path.with_name(path.name + ".last").read_text().strip()
            except OSError:
                self.last = ""

    def save(self, offset: int, last: str) -> None:
        """Persist the new position (atomically, owner-only)."""
        if self.path is None:
            return
        from .paths import write_private

        write_private(self.path, f"{offset}\n")
        if last:
            write_private(self.path.with_name(self.path.name + ".last"), last + "\n")


def line_hash(line: bytes) -> str:
    """A short stable fingerprint of one feed line."""
    import hashlib

    return hashlib.sha256(line.rstrip(b"\r\n")).hexdigest()[:32]


class FeedLine(NamedTuple):
    """One decoded feed line and the cursor position just after it."""

    frame: dict[str, Any]
    end: int
    hash: str


def read_feed(path: Path, cursor: FeedCursor) -> tuple[list[FeedLine], int, str]:
    """Complete lines after ``cursor``; returns (lines, new offset, last line hash).

    A partial last line is left for the next read. An offset past the end
    (the file was truncated) or one that no longer follows the last line read
    (the file was trimmed) is realigned instead of printing nothing forever.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return [], cursor.offset, cursor.last
    start = _realign(data, cursor)
    end = data.rfind(b"\n", start) + 1
    if end <= start:
        return [], start, cursor.last
    lines = []
    last = cursor.last
    pos = start
    for raw in data[start:end].splitlines(keepends=True):
        pos += len(raw)
        if not raw.strip():
            continue
        last = line_hash(raw)
        frame = decode_lite(raw.decode(errors="replace"))
        if frame is not None:
            lines.append(FeedLine(frame, pos, last))
    return lines, end, last


def _realign(data: bytes, cursor: FeedCursor) -> int:
    offset = cursor.offset
    if not cursor.last:  # a bare offset (0.99 tools): trust it only at a line boundary
        in_file = offset <= len(data) and (offset == 0 or data[offset - 1 : offset] == b"\n")
        return offset if in_file else 0
    if 0 < offset <= len(data) and data[offset - 1 : offset] == b"\n":
        prev_start = data.rfind(b"\n", 0, offset - 1) + 1
        if line_hash(data[prev_start:offset]) == cursor.last:
            return offset
    pos = 0
    for raw in data.splitlines(keepends=True):
        pos += len(raw)
        if raw.endswith(b"\n") and line_hash(raw) == cursor.last:
            return pos
    return 0  # the last line read was trimmed away: everything left is newer


def open_feed(path: Path | None, max_lines: int, max_bytes: int = DEFAULT_MAX_BYTES) -> FeedWriter | None:
    """A writer for ``path``, or None when the feed is off."""
    return None if path is None else FeedWriter(path, max_lines, max_bytes)
