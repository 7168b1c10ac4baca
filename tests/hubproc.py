"""A real ``synapse hub`` subprocess for restart and SIGKILL tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from .conftest import SYNAPSE


def free_port() -> int:
    """A port that was free a moment ago (the hub binds it right away)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HubProcess:
    """Start, SIGKILL and restart one hub on a fixed port and database."""

    def __init__(
        self,
        db: Path,
        *,
        feed: Path | None = None,
        extra: tuple[str, ...] = (),
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.preexec = preexec
        self.feed = feed
        self.extra = extra
        self.port = free_port()
        self.uri = f"ws://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.banner = ""
        #: Every stderr line the hub wrote (kept by the drainer too).
        self.log: list[str] = []
        self._drainer: asyncio.Future[None] | None = None

    async def start(self, timeout: float = 20) -> str:
        """Start and wait for the banner; return it."""
        args = ["hub", "--port", str(self.port), "--db", str(self.db), "--relay-log", str(self.feed or "")]
        self.proc = await asyncio.create_subprocess_exec(
            SYNAPSE,
            *args,
            *self.extra,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ),
            preexec_fn=self.preexec,
        )
        assert self.proc.stderr is not None
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.proc.stderr.readline()).decode()
                self.log.append(line)
                if not line:
                    raise AssertionError(f"hub exited before listening (rc={await self.proc.wait()})")
                if "listening on" in line:
                    self.banner = line
                    break
        self._drainer = asyncio.ensure_future(self._drain())
        return self.banner

    async def _drain(self) -> None:
        proc = self.proc
        if proc is not None and proc.stderr is not None:
            while line := await proc.stderr.readline():
                self.log.append(line.decode())

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> int:
        """SIGTERM and wait; return the exit code."""
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 10)
