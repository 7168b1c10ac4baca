"""Where synapse keeps its files: ``$SYN_HOME`` (default ``~/synapse``)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote


def syn_home() -> Path:
    """The coordination home: database, feed and cursors."""
    return Path(os.environ.get("SYN_HOME") or "~/synapse").expanduser()


def mailbox_cursor_path(identity: str) -> Path:
    """The per-identity mailbox cursor file (the same layout the 0.99 clients use)."""
    return syn_home() / "mailbox-cursor" / quote(identity, safe="")


def read_int(path: Path) -> int:
    """An integer stored in ``path``; 0 when missing or unreadable."""
    try:
        return max(0, int(path.read_text().strip() or 0))
    except (OSError, ValueError):
        return 0


def write_private(path: Path, text: str) -> None:
    """Atomically replace ``path`` with ``text``, owner-only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave a stray .tmp behind
        raise
