"""The pre-edit hook (``synapse hook ASSISTANT pre-edit``), apart from the rest of the runtime.

It runs before every file-writing tool call, so it must start fast: nothing
here imports asyncio or the waiter (the guard's client is blocking). The
adapter only says where the target paths are and how a refusal looks.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import HookAdapter


def note(message: str) -> None:
    """A line on stderr (assistants show it to the user, not the model)."""
    sys.stderr.write(f"synapse hook: {message}\n")


def run_pre_edit(adapter: HookAdapter, stdin_text: str) -> str:
    """``pre-edit``: the adapter's refusal when the tool call would write a file another agent claimed.

    Allowed (empty output) for any other tool, for unclaimed and own files,
    and, with a note, when the hub cannot be asked (``[guard]
    refuse_offline`` turns that into a refusal). Never raises.
    """
    try:
        payload = json.loads(stdin_text) if stdin_text.strip() else {}
        if not isinstance(payload, dict):
            raise ValueError("hook input is not a JSON object")
        paths = adapter.edit_paths(payload)
        if not paths:
            return adapter.empty_output
        from ..guard.edits import check_edit

        cwd = payload.get("cwd")
        reason = check_edit(paths, cwd if isinstance(cwd, str) and cwd else None)
        return adapter.deny_edit_output(reason) if reason else adapter.empty_output
    except Exception as exc:  # a broken guard must not wedge the agent
        note(f"pre-edit: {type(exc).__name__}: {exc}; edit allowed")
        return adapter.empty_output
