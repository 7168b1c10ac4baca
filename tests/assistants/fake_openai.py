"""A fake OpenAI Responses API for the real Codex CLI.

Codex reaches it through a custom model provider in ``config.toml``
(``model_provider`` + ``[model_providers.fake]`` with ``wire_api =
"responses"`` and an ``env_key``), so no login, no network and no real model
are involved. Every ``POST .../responses`` is answered with a complete SSE
stream (``response.created``, the assistant message as
``response.output_item.added``/``done``, ``response.completed`` with usage);
``GET .../models`` answers an empty list so Codex never waits on a catalogue.
Everything else gets a JSON 404 (recorded, so a test can see what Codex asked).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .fakebase import FakeHandler, FakeModelServer, Recorded, serving

__all__ = ["API_KEY_ENV", "MODEL", "Handler", "serve", "setup"]

MODEL = "gpt-fake"
API_KEY_ENV = "SYNAPSE_FAKE_OPENAI_KEY"
_ids = itertools.count(1)


class Handler(FakeHandler):
    """Answers Codex's Responses API calls with the server's canned reply."""

    def answer(self, rec: Recorded) -> None:
        path = rec.path.split("?", 1)[0].rstrip("/")
        if rec.method == "POST" and path.endswith("/responses"):
            self.send_sse(response_events(self.server.reply))
        elif rec.method == "GET" and path.endswith("/models"):
            self.send_json(200, {"object": "list", "data": [], "models": []})
        else:
            super().answer(rec)


def response_events(reply: str) -> list[tuple[str | None, Any]]:
    """One complete streamed response whose only output is an assistant message saying ``reply``."""
    n = next(_ids)
    rid, mid = f"resp_fake_{n}", f"msg_fake_{n}"
    message = {
        "type": "message",
        "id": mid,
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": reply, "annotations": []}],
    }
    usage = {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 12,
    }
    created = {"id": rid, "object": "response", "status": "in_progress", "model": MODEL, "output": []}
    return [
        ("response.created", {"type": "response.created", "response": created}),
        (
            "response.output_item.added",
            {"type": "response.output_item.added", "output_index": 0, "item": {**message, "status": "in_progress"}},
        ),
        ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": message}),
        (
            "response.completed",
            {
                "type": "response.completed",
                "response": {**created, "status": "completed", "output": [message], "usage": usage},
            },
        ),
    ]


@contextmanager
def serve(reply: str = "Done.") -> Iterator[FakeModelServer]:
    """The fake Responses API on an ephemeral loopback port for the ``with`` body."""
    with serving(Handler, reply) as server:
        yield server


def _q(text: str) -> str:
    """A TOML basic string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def setup(server: FakeModelServer, home: Path, project: Path) -> dict[str, str]:
    """Write ``home/.codex/config.toml`` pointing Codex at ``server``; return the env vars to add.

    The project is trusted (so neither ``codex exec`` nor the TUI asks, and a
    project ``.codex/`` layer loads); update checks, analytics, feedback and
    the first-run notices are off so the TUI opens straight at its composer.
    """
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    lines = [
        f"model = {_q(MODEL)}",
        'model_provider = "fake"',
        'approval_policy = "never"',
        'sandbox_mode = "read-only"',
        "check_for_update_on_startup = false",
        # typed keys arriving fast (tmux send-keys) are taken as a paste, and Enter then as a newline
        "disable_paste_burst = true",
        "",
        "[model_providers.fake]",
        'name = "fake"',
        f"base_url = {_q(server.base_url + '/v1')}",
        'wire_api = "responses"',
        f"env_key = {_q(API_KEY_ENV)}",
        "request_max_retries = 0",
        "stream_max_retries = 0",
        "",
        "[features]",
        # the TUI would start a shared app-server daemon (a copy of Codex in CODEX_HOME and an update
        # poller) that outlives the test; tests that want one start it themselves
        "daemon_auto_start = false",
        "",
        "[analytics]",
        "enabled = false",
        "",
        "[feedback]",
        "enabled = false",
        "",
        "[notice]",
        "hide_full_access_warning = true",
        "hide_rate_limit_model_nudge = true",
        "",
        f"[projects.{_q(str(project.resolve()))}]",
        'trust_level = "trusted"',
        "",
    ]
    (codex_home / "config.toml").write_text("\n".join(lines))
    return {
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        API_KEY_ENV: "sk-fake",
        "NO_COLOR": "1",
        "RUST_LOG": "error",
    }
