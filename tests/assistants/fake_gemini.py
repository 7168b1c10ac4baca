"""A loopback Gemini API (``generativelanguage``) for the real Gemini CLI.

Gemini CLI talks to it with ``GEMINI_API_KEY`` and ``GOOGLE_GEMINI_BASE_URL``
(both read by the CLI itself). It answers what the CLI calls:

* ``POST /v1beta/models/<model>:streamGenerateContent?alt=sse``: the turn,
  as server-sent ``GenerateContentResponse`` chunks (text, then ``STOP`` and
  ``usageMetadata``);
* ``POST .../<model>:generateContent``: side calls (model routing, the
  next-speaker check, ...). When the request asks for JSON, the answer is a
  JSON object filled from its response schema (enums take ``user`` / ``flash``
  when offered, so the CLI hands the turn back and stays on a small model);
* ``POST .../<model>:countTokens`` and ``GET /v1beta/models...``;
* anything else: an empty JSON object, so the CLI never stalls on a route we
  did not foresee (the request is still recorded for the test to see).

:func:`call_tool` makes the next turn that offers that function answer with
one ``functionCall`` instead, so the CLI runs the tool and sends its
``functionResponse`` back; every turn after that gets the text reply again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .fakebase import FakeHandler, FakeModelServer, Recorded, serving

MODEL = "gemini-2.5-flash"


def _usage(prompt: int = 10, output: int = 2) -> dict[str, int]:
    return {"promptTokenCount": prompt, "candidatesTokenCount": output, "totalTokenCount": prompt + output}


def _response(text: str, model: str) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": _usage(),
        "modelVersion": model,
        "responseId": "fake-gemini",
    }


def _call_response(call: dict[str, Any], model: str) -> dict[str, Any]:
    """A turn whose only part is a call of ``call["name"]`` with ``call["args"]``."""
    part = {"functionCall": {"name": call["name"], "args": call["args"]}}
    return {**_response("", model), "candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0,
                                                   "finishReason": "STOP"}]}  # fmt: skip


def call_tool(server: FakeModelServer, name: str, args: dict[str, Any]) -> None:
    """Answer the next turn that offers function ``name`` with one call of it (once)."""
    with server.lock:
        server.extra["tool_call"] = {"name": name, "args": args}


def take_tool_call(server: FakeModelServer, doc: dict[str, Any]) -> dict[str, Any] | None:
    """The pending call if this request declares its function (it is then used up), else None."""
    offered = {
        f.get("name")
        for tool in doc.get("tools") or []
        if isinstance(tool, dict)
        for f in tool.get("functionDeclarations") or []
        if isinstance(f, dict)
    }
    with server.lock:
        plan = server.extra.get("tool_call")
        if not plan or plan["name"] not in offered:
            return None
        del server.extra["tool_call"]
    return dict(plan)


def _fill(schema: Any, name: str = "") -> Any:
    """A value that satisfies ``schema`` (the JSON side calls parse our answer)."""
    if not isinstance(schema, dict):
        return ""
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        for preferred in ("user", "flash"):
            if preferred in enum:
                return preferred
        return enum[0]
    kind = str(schema.get("type", "object")).lower()
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {key: _fill(sub, key) for key, sub in props.items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 0
    if kind == "boolean":
        return False
    return "user" if name == "next_speaker" else "fake reasoning"


class Handler(FakeHandler):
    """The Gemini API's routes, answered from ``server.reply``."""

    def answer(self, rec: Recorded) -> None:
        path = rec.path.split("?", 1)[0]
        model = path.rsplit("/", 1)[-1].split(":", 1)[0] or MODEL
        if rec.method == "POST" and path.endswith(":streamGenerateContent"):
            call = take_tool_call(self.server, rec.json() or {})
            chunk = _call_response(call, model) if call else _response(self.server.reply, model)
            self.send_sse([(None, chunk)])
        elif rec.method == "POST" and path.endswith(":generateContent"):
            self.send_json(200, _response(self._side_answer(rec), model))
        elif rec.method == "POST" and path.endswith(":countTokens"):
            self.send_json(200, {"totalTokens": max(1, len(rec.body) // 4)})
        elif rec.method == "GET" and "/models" in path:
            self.send_json(200, {"models": [{"name": f"models/{MODEL}", "displayName": MODEL}]})
        else:
            self.send_json(200, {})

    def _side_answer(self, rec: Recorded) -> str:
        doc = rec.json() or {}
        config = doc.get("generationConfig") or doc.get("config") or {}
        if config.get("responseMimeType") == "application/json":
            schema = config.get("responseJsonSchema") or config.get("responseSchema") or {}
            return json.dumps(_fill(schema))
        return self.server.reply


def _merged(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """``ours`` under ``theirs``, table by table (a test's own setting wins, ours fill the rest)."""
    out = dict(ours)
    for key, value in theirs.items():
        mine = out.get(key)
        out[key] = _merged(mine, value) if isinstance(mine, dict) and isinstance(value, dict) else value
    return out


@contextmanager
def serve(reply: str = "Done.") -> Iterator[FakeModelServer]:
    """A fake Gemini API for the ``with`` body."""
    with serving(Handler, reply) as server:
        yield server


def setup(server: FakeModelServer, home: Path, project: Path) -> dict[str, str]:
    """User settings under ``home`` for a quiet, API-key Gemini CLI; returns the env to add.

    API-key auth selected (no login dialog), no update check, no telemetry or
    usage statistics, no IDE nudge, a theme chosen, no tips or banner: the
    interactive TUI starts straight at its composer. The project folder is
    deliberately NOT trusted here (see :func:`trust_folder`).
    """
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "ide": {"enabled": False, "hasSeenNudge": True},
        "ui": {"theme": "Default", "hideTips": True, "hideBanner": True},
        "model": {"name": MODEL},
    }
    gemini_dir = home / ".gemini"
    gemini_dir.mkdir(parents=True, exist_ok=True)
    path = gemini_dir / "settings.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps(_merged(settings, current), indent=2) + "\n")
    return {
        "HOME": str(home),
        "GEMINI_API_KEY": "fake-gemini-key",
        "GOOGLE_GEMINI_BASE_URL": server.base_url,
        "GEMINI_CLI_NO_RELAUNCH": "true",
        "NO_BROWSER": "true",
        "NO_COLOR": "1",
    }


def trust_folder(home: Path, project: Path) -> None:
    """Trust ``project`` the way Gemini's own "Trust folder" choice does (for tests that need it)."""
    path = home / ".gemini" / "trustedFolders.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    rules = json.loads(path.read_text()) if path.exists() else {}
    rules[str(project.resolve())] = "TRUST_FOLDER"
    path.write_text(json.dumps(rules, indent=2))
