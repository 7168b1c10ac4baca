"""The relay feed: one compact "lite v2" JSON line per public hub frame.

The feed is derived state for readers that never talk to the hub
(``synapse relay``, ``syn-inbox``). It is bounded: every ``max_lines`` appends
the file is rewritten atomically to its last ``max_lines`` lines. It may be
truncated or deleted while the hub runs; the next append recreates it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

LITE_VERSION = 2
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
    """Appends feed lines to ``path`` and keeps it bounded."""

    def __init__(self, path: Path, max_lines: int) -> None:
        self.path = Path(path).expanduser()
        self.max_lines = max(1, max_lines)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._since_trim = 0

    def append(self, frame: dict[str, Any]) -> None:
        """Write one line (reopening each time, so truncation and deletion are safe)."""
        data = (encode_lite(frame) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError:
            return  # the feed is derived state; never let it break the hub
        self._since_trim += 1
        if self._since_trim >= self.max_lines:
            self._since_trim = 0
            self.trim()

    def trim(self) -> None:
        """Atomically rewrite the file to its last ``max_lines`` lines."""
        try:
            with open(self.path, "rb") as fh:
                lines = fh.readlines()
        except OSError:
            return
        if len(lines) <= self.max_lines:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.writelines(lines[-self.max_lines :])
        os.replace(tmp, self.path)

    def close(self) -> None:
        """Nothing is held open; present for symmetry with the journal."""


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


def open_feed(path: Path | None, max_lines: int) -> FeedWriter | None:
    """A writer for ``path``, or None when the feed is off."""
    return None if path is None else FeedWriter(path, max_lines)
