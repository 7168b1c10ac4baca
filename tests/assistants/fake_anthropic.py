"""A loopback stand-in for the Anthropic Messages API, for the real Claude Code CLI.

Claude Code is pointed here with ``ANTHROPIC_BASE_URL`` (its documented
gateway setting) and a dummy ``ANTHROPIC_API_KEY``. ``POST /v1/messages``
answers every turn with the server's canned ``reply`` as one text block and
``stop_reason: end_turn``: as server-sent events when the request asks for
``"stream": true`` (what the CLI does), as one JSON message otherwise. Token
counting and anything else the CLI asks for get a small well-formed answer
at once, so nothing stalls waiting for a network that is not there.

:func:`call_tool` makes the next main-loop turn (a request that offers that
tool) answer with one ``tool_use`` block instead, ``stop_reason: tool_use``,
so the CLI runs the tool and sends its ``tool_result`` back; every turn after
that gets the text reply again.

:func:`setup` writes the few files that let Claude Code start straight into
work in a fresh ``$HOME`` (onboarding done, the project trusted, the dummy
key approved) and returns the environment that points it here.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .fakebase import FakeHandler, FakeModelServer, Recorded, serving

API_KEY = "sk-ant-api03-synapse-fake-key-0000000000000000000000000000000000000000000000000000000000-AA"
_ids = itertools.count(1)


class Handler(FakeHandler):
    """The Messages API (streaming and not), count_tokens, and a harmless answer to the rest."""

    def answer(self, rec: Recorded) -> None:
        path = rec.path.split("?", 1)[0].rstrip("/")
        if rec.method == "POST" and path.endswith("/v1/messages/count_tokens"):
            self.send_json(200, {"input_tokens": max(1, len(rec.body) // 4)})
        elif rec.method == "POST" and path.endswith("/v1/messages"):
            doc = rec.json() or {}
            model = str(doc.get("model") or "claude-fake")
            tool = take_tool_call(self.server, doc)
            if tool is not None and doc.get("stream"):
                self.send_sse(tool_events(model, tool))
            elif tool is not None:
                self.send_json(200, tool_message(model, tool))
            elif doc.get("stream"):
                self.send_sse(stream_events(model, self.server.reply))
            else:
                self.send_json(200, message(model, self.server.reply))
        elif rec.method == "GET" and path.endswith("/v1/models"):
            self.send_json(200, {"data": [], "has_more": False, "first_id": None, "last_id": None})
        elif rec.method in ("GET", "HEAD"):
            self.send_json(200, {})
        else:
            super().answer(rec)


def message(model: str, text: str) -> dict[str, Any]:
    """A complete, non-streamed assistant message ending its turn."""
    return {
        "id": f"msg_fake{next(_ids):06d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": max(1, len(text) // 4)},
    }


def stream_events(model: str, text: str) -> list[tuple[str | None, Any]]:
    """The same message as the Messages API streams it, event by event."""
    start = {**message(model, text), "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": 10, "output_tokens": 1}
    return [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": max(1, len(text) // 4)},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def call_tool(server: FakeModelServer, name: str, tool_input: dict[str, Any]) -> None:
    """Answer the next turn that offers tool ``name`` with one call of it (once)."""
    with server.lock:
        server.extra["tool_call"] = {"name": name, "input": tool_input}


def take_tool_call(server: FakeModelServer, doc: dict[str, Any]) -> dict[str, Any] | None:
    """The pending tool call if this request offers its tool (it is then used up), else None."""
    with server.lock:
        plan = server.extra.get("tool_call")
        offered = {t.get("name") for t in doc.get("tools") or [] if isinstance(t, dict)}
        if not plan or plan["name"] not in offered:
            return None
        del server.extra["tool_call"]
    return {**plan, "id": f"toolu_fake{next(_ids):06d}"}


def tool_message(model: str, tool: dict[str, Any]) -> dict[str, Any]:
    """A complete assistant message that calls ``tool`` and stops for its result."""
    block = {"type": "tool_use", "id": tool["id"], "name": tool["name"], "input": tool["input"]}
    return {**message(model, ""), "content": [block], "stop_reason": "tool_use"}


def tool_events(model: str, tool: dict[str, Any]) -> list[tuple[str | None, Any]]:
    """The same tool call as the Messages API streams it (its input as one ``input_json_delta``)."""
    start = {**tool_message(model, tool), "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": 10, "output_tokens": 1}
    block = {"type": "tool_use", "id": tool["id"], "name": tool["name"], "input": {}}
    delta = {"type": "input_json_delta", "partial_json": json.dumps(tool["input"])}
    return [
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 5},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


@contextmanager
def serve(reply: str = "Done.") -> Iterator[FakeModelServer]:
    """A fake Anthropic API on an ephemeral loopback port for the ``with`` body."""
    with serving(Handler, reply) as server:
        yield server


def setup(server: FakeModelServer, home: Path, project: Path) -> dict[str, str]:
    """Prepare a throw-away ``home`` for Claude Code in ``project``; return the env to add.

    ``~/.claude.json`` marks onboarding done, the dummy key approved and
    ``project`` trusted (so an interactive TUI starts at its composer);
    ``$CLAUDE_CONFIG_DIR`` keeps every other file Claude writes under
    ``home``. Non-essential traffic (telemetry, update checks, error reports)
    is switched off: only the fake model is reachable.
    """
    config_dir = home / ".claude"
    config_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "numStartups": 1,
        "hasCompletedOnboarding": True,
        "lastOnboardingVersion": "2.1.197",
        "theme": "dark",
        "bypassPermissionsModeAccepted": True,
        "customApiKeyResponses": {"approved": [API_KEY[-20:]], "rejected": []},
        "projects": {
            str(project.resolve()): {
                "hasTrustDialogAccepted": True,
                "hasCompletedProjectOnboarding": True,
                "allowedTools": [],
                "projectOnboardingSeenCount": 1,
            }
        },
    }
    text = json.dumps(state, indent=2)
    # Claude Code reads ~/.claude.json, or $CLAUDE_CONFIG_DIR/.claude.json when that is set.
    (home / ".claude.json").write_text(text)
    (config_dir / ".claude.json").write_text(text)
    return {
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(config_dir),
        "ANTHROPIC_BASE_URL": server.base_url,
        "ANTHROPIC_API_KEY": API_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_BUG_COMMAND": "1",
        "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
