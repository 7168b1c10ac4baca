"""The human attention queue: an agent asks a question, a person answers it, the agent wakes.

A question is journalled (``attention`` events carry its whole state, like
the board's ``ledger_task``), so it survives restarts and rides in
snapshots. An answer is journalled the same way and delivered to the asking
identity as a directed chat, so it sits in that identity's mailbox and wakes
its ``synapse wait`` like any message. Who may answer is decided in
:func:`access.may_answer`; every change is announced to every connection as
``attention_update`` (the dashboard's live feed).

Statuses: ``open`` until ``answered``, ``cancelled`` (by the asker or an
operator) or ``expired`` (the asker gave up waiting: ``--cancel-on-timeout``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..protocol import Command, ProtocolError, base_identity
from . import access, paging

if TYPE_CHECKING:
    from .hubcore import HubCore
    from .outcome import Event, Outcome
    from .roster import Conn

OPEN = "open"
STATUSES = (OPEN, "answered", "cancelled", "expired")
#: Longest question or answer, in characters: a question for a person, not a document.
MAX_TEXT = 4000
MAX_CHOICES = 20
MAX_CHOICE_LEN = 200
#: Open questions the hub keeps at once; beyond it an ask is refused (ATTENTION_FULL).
MAX_OPEN = 1000
#: Closed questions kept in memory (and snapshots) for listing; older ones stay only in the journal.
CLOSED_KEPT = 500


class Attention:
    """Questions by id (``q-<n>``), open and recently closed."""

    def __init__(self) -> None:
        self.questions: dict[str, dict[str, Any]] = {}
        self.last_id = 0

    def open_count(self) -> int:
        """Questions still waiting for an answer."""
        return sum(1 for q in self.questions.values() if q["status"] == OPEN)

    def put(self, question: dict[str, Any]) -> None:
        """Fold one question state in (live and replay alike); forget the oldest closed past the bound."""
        qid = str(question["id"])
        self.questions.pop(qid, None)  # re-insert: the dict stays in order of last change
        self.questions[qid] = question
        number = _number(qid)
        if number > self.last_id:
            self.last_id = number
        closed = [k for k, q in self.questions.items() if q["status"] != OPEN]
        for old in closed[: max(0, len(closed) - CLOSED_KEPT)]:
            del self.questions[old]

    def dump(self) -> dict[str, Any]:
        """JSON-ready state for a snapshot (question dicts are replaced on change, never edited)."""
        return {"questions": list(self.questions.values()), "last_id": self.last_id}

    def load(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`dump` output."""
        self.questions = {str(q["id"]): q for q in state.get("questions", [])}
        self.last_id = int(state.get("last_id", 0))


def _number(qid: str) -> int:
    try:
        return int(qid.rsplit("-", 1)[-1])
    except ValueError:
        return 0


def install(core: HubCore) -> None:
    """Register the attention verbs and the applier on ``core``."""
    core.handlers.update(attention_ask=ask, attention_answer=answer, attention_cancel=cancel, attention_request=listing)
    attention = core.attention

    def apply(event: Event) -> None:
        attention.put(event.data["question"])

    core.appliers["attention"] = apply


def _text(cmd: Command, name: str, what: str) -> str:
    value = cmd.raw.get(name)
    if value is None and isinstance(cmd.payload, str):
        value = cmd.payload
    if not isinstance(value, str) or not value.strip():
        raise ProtocolError("BAD_FIELD", f"{what} needs text (field {name!r})")
    if len(value) > MAX_TEXT:
        raise ProtocolError("TOO_LARGE", f"{what} is {len(value)} characters; at most {MAX_TEXT}")
    return value.strip()


def _choices(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(c, str) and c.strip() for c in raw):
        raise ProtocolError("BAD_FIELD", "choices must be a list of non-empty strings")
    choices = list(dict.fromkeys(c.strip() for c in raw))
    if len(choices) > MAX_CHOICES or any(len(c) > MAX_CHOICE_LEN for c in choices):
        raise ProtocolError("BAD_FIELD", f"at most {MAX_CHOICES} choices of {MAX_CHOICE_LEN} characters each")
    return choices


def _question(core: HubCore, cmd: Command) -> dict[str, Any]:
    qid = cmd.raw.get("question_id")
    if not isinstance(qid, str) or not qid:
        raise ProtocolError("BAD_FIELD", "field 'question_id' must name a question (q-<n>)")
    question = core.attention.questions.get(qid)
    if question is None:
        raise ProtocolError("UNKNOWN_QUESTION", f"no question {qid!r} on this hub")
    if question["status"] != OPEN:
        raise ProtocolError("QUESTION_CLOSED", f"question {qid} is already {question['status']}")
    return question


def _announce(core: HubCore, out: Outcome, question: dict[str, Any], event: str, now: float, skip: int = 0) -> None:
    frame = core.frame("attention_update", "all", f"question {question['id']} {event}", now, question=question)
    frame["event"] = event
    out.send(tuple(i for i in core.roster.all_ids() if i != skip), frame, public=True)


def ask(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    """``attention_ask``: file a question for a human; the asker gets ``attention_filed``."""
    text = _text(cmd, "question", "a question")
    choices = _choices(cmd.raw.get("choices"))
    if core.attention.open_count() >= MAX_OPEN:
        raise ProtocolError("ATTENTION_FULL", f"{MAX_OPEN} questions are already open; answer or cancel some first")
    question = {
        "id": f"q-{core.attention.last_id + 1}",
        "asker": base_identity(conn.name or ""),
        "asked_by": conn.name,
        "question": text,
        "choices": choices,
        "status": OPEN,
        "asked_at": now,
        "version": 1,
    }
    core.emit(out, "attention", {"question": question}, now)
    filed = f"question {question['id']} filed"
    reply = core.frame("attention_filed", conn.name or "self", filed, now, question=question)
    if isinstance(cmd.raw.get("request_id"), str):
        reply["request_id"] = cmd.raw["request_id"]
    out.send(conn.conn_id, reply)
    _announce(core, out, question, "asked", now, skip=conn.conn_id)


def answer(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    """``attention_answer``: record the answer, mail it to the asker, announce it."""
    question = _question(core, cmd)
    refused = access.may_answer(conn, question["asker"])
    if refused is not None:
        core.deny(out, conn, "attention_answer", refused, now)
        return
    text = _text(cmd, "answer", "an answer")
    if question["choices"] and text not in question["choices"]:
        raise ProtocolError("BAD_ANSWER", f"question {question['id']} takes one of: {', '.join(question['choices'])}")
    by = base_identity(conn.name or "")
    closed = {**question, "status": "answered", "answer": text, "answered_by": by, "closed_at": now}
    closed["version"] = question["version"] + 1
    chat = {
        "sender": by,
        "target": question["asker"],
        "type": "chat",
        "payload": f"answer to {question['id']} ({_short(question['question'])}): {text}",
        "attention_id": question["id"],
        "answer": text,
    }
    core.post_chat(out, conn, chat, now)  # raises MAILBOX_FULL before anything is journalled
    core.emit(out, "attention", {"question": closed}, now)
    _announce(core, out, closed, "answered", now)


def _short(text: str, limit: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def cancel(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    """``attention_cancel``: the asker (or whoever may answer) closes a question unanswered."""
    question = _question(core, cmd)
    own = base_identity(conn.name or "") == question["asker"]
    if not own and access.may_answer(conn, question["asker"]) is not None:
        core.deny(out, conn, "attention_cancel", f"only {question['asker']} or an operator may cancel it", now)
        return
    status = "expired" if cmd.raw.get("reason") == "timeout" else "cancelled"
    closed = {**question, "status": status, "closed_by": base_identity(conn.name or ""), "closed_at": now}
    closed["version"] = question["version"] + 1
    core.emit(out, "attention", {"question": closed}, now)
    _announce(core, out, closed, status, now)


def listing(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    """``attention_request``: open questions (``status: "all"`` adds the recently closed), paged by id."""
    want = cmd.raw.get("status", OPEN)
    if want not in (OPEN, "all"):
        raise ProtocolError("BAD_FIELD", "status must be 'open' or 'all'")
    qid = cmd.raw.get("question_id")
    items = [
        q
        for q in core.attention.questions.values()
        if (want == "all" or q["status"] == OPEN) and (qid is None or q["id"] == qid)
    ]
    frame = core.frame("attention_snapshot", conn.name or "self", "Attention queue", now, questions=[])
    if isinstance(cmd.raw.get("request_id"), str):
        frame["request_id"] = cmd.raw["request_id"]
    room = paging.room_for(frame, core.max_frame_bytes)
    page, more = paging.keyed_page(items, "id", paging.after_field(cmd.raw), room)
    frame["questions"] = page
    if more:
        frame.update(has_more=True, cursor=page[-1].get("id"))
    out.send(conn.conn_id, frame)
