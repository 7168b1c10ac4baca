"""The task board: declared tasks, a status lifecycle, dependencies, progress notes.

``ready`` tasks are open tasks whose dependencies are all done. Unknown
dependencies and dependency cycles are refused. Updates can be conditional on
``expected_version`` (compare-and-set). Every accepted change is journalled
with the task's full state, so replay rebuilds the board exactly.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from ..protocol import Command, ProtocolError
from . import paging

if TYPE_CHECKING:
    from .hubcore import HubCore
    from .outcome import Outcome
    from .roster import Conn

STATUSES = ("open", "in_progress", "done", "blocked", "cancelled")
#: Allowed status moves; a finished task can only be reopened.
TRANSITIONS = {
    "open": {"in_progress", "blocked", "cancelled", "done"},
    "in_progress": {"open", "done", "blocked", "cancelled"},
    "blocked": {"open", "in_progress", "cancelled"},
    "done": {"open"},
    "cancelled": {"open"},
}
PROGRESS_KEPT = 500
TEXT_FIELDS = ("title", "description", "project", "suggested_owner")


class Board:
    """Tasks by id and the most recent progress notes."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.progress: deque[dict[str, Any]] = deque(maxlen=PROGRESS_KEPT)

    def ready(self) -> list[dict[str, Any]]:
        """Open tasks whose dependencies are all done."""
        return [
            t
            for t in self.tasks.values()
            if t["status"] == "open" and all(self.tasks.get(d, {}).get("status") == "done" for d in t["depends_on"])
        ]

    def creates_cycle(self, task_id: str, depends_on: list[str]) -> bool:
        """Would ``task_id`` depending on ``depends_on`` close a loop?"""
        stack, seen = list(depends_on), set()
        while stack:
            current = stack.pop()
            if current == task_id:
                return True
            if current in seen:
                continue
            seen.add(current)
            stack.extend(self.tasks.get(current, {}).get("depends_on", []))
        return False

    def dump(self) -> dict[str, Any]:
        """JSON-ready state for a snapshot."""
        return {"tasks": list(self.tasks.values()), "progress": list(self.progress)}

    def load(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`dump` output."""
        self.tasks = {t["task_id"]: t for t in state["tasks"]}
        self.progress.clear()
        self.progress.extend(state["progress"])


def install(core: HubCore) -> None:
    """Register the board verbs and appliers on ``core``."""
    core.handlers.update(
        ledger_task=declare, ledger_task_update=update, ledger_progress=progress, board_request=snapshot
    )
    board = core.board
    core.appliers.update(
        {
            "ledger_task": lambda ev: board.tasks.__setitem__(ev.data["task"]["task_id"], ev.data["task"]),
            "ledger_progress": lambda ev: board.progress.append(ev.data["note"]),
        }
    )


def _text(raw: dict[str, Any], name: str, default: str = "") -> str:
    value = raw.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ProtocolError("BAD_FIELD", f"field '{name}' must be text")
    return value


def _deps(core: HubCore, task_id: str, raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(d, str) and d for d in raw):
        raise ProtocolError("BAD_FIELD", "depends_on must be a list of task ids")
    unknown = [d for d in raw if d not in core.board.tasks]
    if unknown:
        raise ProtocolError("UNKNOWN_DEPENDENCY", f"Task '{task_id}' depends on unknown task(s): {', '.join(unknown)}.")
    if task_id in raw or core.board.creates_cycle(task_id, raw):
        raise ProtocolError("DEPENDENCY_CYCLE", f"Task '{task_id}': depending on {', '.join(raw)} would form a cycle.")
    return list(dict.fromkeys(raw))


def _task_id(cmd: Command) -> str:
    task = cmd.raw.get("task_id")
    if not isinstance(task, str) or not task.strip():
        raise ProtocolError("TASK_ID_REQUIRED", "a task_id is required")
    return task


def _post(core: HubCore, out: Outcome, now: float, task: dict[str, Any], ftype: str, text: str) -> None:
    core.emit(out, "ledger_task", {"task": task}, now)
    out.send(core.roster.all_ids(), core.frame(ftype, "all", text, now, task=task), public=True)


def declare(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    task_id = _task_id(cmd)
    if task_id in core.board.tasks:
        have = core.board.tasks[task_id]
        raise ProtocolError("TASK_EXISTS", f"Task '{task_id}' already exists (v{have['version']}); update it instead.")
    title = _text(cmd.raw, "title")
    if not title.strip():
        raise ProtocolError("BAD_FIELD", f"Task '{task_id}' needs a title.")
    task = {
        "task_id": task_id,
        "title": title,
        "description": _text(cmd.raw, "description"),
        "depends_on": _deps(core, task_id, cmd.raw.get("depends_on")),
        "status": "open",
        "suggested_owner": _text(cmd.raw, "suggested_owner"),
        "project": _text(cmd.raw, "project"),
        "version": 1,
        "created_by": conn.name,
        "created_at": now,
        "updated_at": now,
    }
    _post(core, out, now, task, "ledger_task_posted", f"Task '{task_id}' declared by {conn.name}.")


def update(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    task_id = _task_id(cmd)
    task = core.board.tasks.get(task_id)
    if task is None:
        raise ProtocolError("UNKNOWN_TASK", f"Task '{task_id}' is not on the board.")
    expected = cmd.raw.get("expected_version")
    if expected is not None and expected != task["version"]:
        raise ProtocolError(
            "VERSION_CONFLICT",
            f"Task '{task_id}' version conflict: expected v{expected}, board has v{task['version']}.",
        )
    changed = dict(task)
    status = cmd.raw.get("status")
    if status is not None and status != task["status"]:
        if status not in STATUSES:
            raise ProtocolError("BAD_FIELD", f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
        if status not in TRANSITIONS[task["status"]]:
            raise ProtocolError("BAD_TRANSITION", f"Task '{task_id}' cannot go from {task['status']} to {status}.")
        changed["status"] = status
    for name in TEXT_FIELDS:
        if name in cmd.raw:
            changed[name] = _text(cmd.raw, name)
    if "depends_on" in cmd.raw:
        changed["depends_on"] = _deps(core, task_id, cmd.raw["depends_on"])
    changed.update(version=task["version"] + 1, updated_at=now)
    what = ", ".join(f"{k}={changed[k]}" for k in ("status", *TEXT_FIELDS) if changed[k] != task[k]) or "touched"
    _post(core, out, now, changed, "ledger_task_updated", f"Task '{task_id}' plan updated ({what}).")


def progress(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    task_id = _task_id(cmd)
    if task_id not in core.board.tasks and task_id not in core.claims.live:
        raise ProtocolError("UNKNOWN_TASK", f"Task '{task_id}' is not on the board.")
    text = cmd.payload if isinstance(cmd.payload, str) else _text(cmd.raw, "text")
    if not text.strip():
        raise ProtocolError("BAD_FIELD", "a progress note needs text")
    note = {
        "task_id": task_id,
        "author": conn.name,
        "kind": _text(cmd.raw, "kind", "note") or "note",
        "text": text,
        "posted_at": now,
    }
    core.emit(out, "ledger_progress", {"note": note}, now)
    out.send(
        core.roster.all_ids(),
        core.frame("ledger_progress_posted", "all", f"Progress from {conn.name}", now, note=note),
        public=True,
    )


def snapshot(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    """``board_request``: tasks, ready tasks and recent notes, paged by task id when over the frame budget.

    A cut page holds the tasks after ``after`` that fit (with the ready ones
    among them) and the newest notes that fit a quarter of the room;
    ``has_more`` and ``cursor`` ask for the next tasks.
    """
    board = core.board
    after = paging.after_field(cmd.raw)
    body: dict[str, Any] = {"tasks": [], "ready": [], "progress": []}
    frame = core.frame("board_snapshot", conn.name or "self", "Board snapshot", now, board=body)
    room = paging.room_for(frame, core.max_frame_bytes)
    tasks, ready, notes = list(board.tasks.values()), board.ready(), list(board.progress)
    if after is None and paging.encoded_size([tasks, ready, notes]) <= room:
        body.update(tasks=tasks, ready=ready, progress=notes)
    else:
        kept = paging.fit(notes[::-1], room // 4)[::-1] if notes else []
        page, more = paging.keyed_page(tasks, "task_id", after, (room - paging.encoded_size(kept)) // 2)
        ids = {t.get("task_id") for t in page}
        body.update(tasks=page, ready=[t for t in ready if t.get("task_id") in ids], progress=kept)
        if more:
            frame.update(has_more=True, cursor=page[-1].get("task_id"))
    out.send(conn.conn_id, frame)
