"""A loopback stand-in for a model API: what every fake model server shares.

Each assistant CLI is pointed at one of these through its documented
base-URL setting. The server records every request (method, path, body) so a
test can assert that a queued synapse message reached the model, and answers
with a short canned reply in the API's own (streaming) format, which each
subclass's handler writes. ``hold()`` makes the next answers wait until
``release()``, so a test can keep an assistant busy for as long as it needs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(slots=True)
class Recorded:
    """One request the assistant made."""

    method: str
    path: str
    body: str
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


class FakeHandler(BaseHTTPRequestHandler):
    """Base handler: records the request; subclasses write the API's answer in ``answer``."""

    server: FakeModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> str:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length).decode("utf-8", "replace")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks).decode("utf-8", "replace")
        return ""

    def _handle(self) -> None:
        body = self._read_body() if self.command in ("POST", "PUT", "PATCH") else ""
        rec = Recorded(self.command, self.path, body, {k.lower(): v for k, v in self.headers.items()})
        self.server.record(rec)
        self.server.gate.wait(timeout=self.server.hold_limit)
        self.answer(rec)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def answer(self, rec: Recorded) -> None:
        """Write the API's response for ``rec`` (subclasses)."""
        self.send_json(404, {"error": {"message": f"fake model: no route for {rec.method} {rec.path}"}})

    # ------------------------------------------------------------------ writers

    def send_json(self, status: int, doc: Any) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_sse(self, events: list[tuple[str | None, Any]], content_type: str = "text/event-stream") -> None:
        """A complete server-sent-events stream: ``(event name or None, data)`` pairs, then close."""
        parts = []
        for name, data in events:
            head = f"event: {name}\n" if name else ""
            payload = data if isinstance(data, str) else json.dumps(data)
            parts.append(f"{head}data: {payload}\n\n")
        body = "".join(parts).encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


class FakeModelServer(ThreadingHTTPServer):
    """The recording server; ``reply`` is the text every answer carries."""

    daemon_threads = True

    def __init__(self, handler: type[FakeHandler], reply: str = "Done.") -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.reply = reply
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()
        self.hold_limit = 120.0
        self.extra: dict[str, Any] = {}  # per-fake state (ids, counters)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, rec: Recorded) -> None:
        with self.lock:
            self.requests.append(rec)

    def bodies(self) -> list[str]:
        with self.lock:
            return [r.body for r in self.requests]

    def seen(self, text: str) -> bool:
        """Did any request carry ``text``? (JSON-escaped forms count: the text is checked decoded too.)"""
        return any(text in body or text in _decoded(body) for body in self.bodies())

    def count_seen(self, text: str) -> int:
        return sum(1 for body in self.bodies() if text in body or text in _decoded(body))

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait for ``check``; fail the test (never pass) on timeout."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; {len(self.requests)} request(s)")
            time.sleep(0.05)

    def hold(self) -> None:
        """Make answers wait (the assistant looks busy) until :meth:`release`."""
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()


def _decoded(body: str) -> str:
    """Every string inside a JSON body, joined (so escaped newlines and quotes match plain text)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return "\n".join(out)


@contextmanager
def serving(handler: type[FakeHandler], reply: str = "Done.") -> Iterator[FakeModelServer]:
    """Run a fake model server on an ephemeral loopback port for the ``with`` body."""
    server = FakeModelServer(handler, reply)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release()
        server.shutdown()
        server.server_close()
