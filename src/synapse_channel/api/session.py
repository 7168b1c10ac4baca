"""The async :class:`Session`: one identity talking to one hub.

A session connects lazily: the first request is written together with the
registration (one round trip, like every ``synapse`` command), and the
connection is reused for later requests until :meth:`Session.close`. Replies
are matched by type and id, so chats and presence frames that arrive in
between are kept for :meth:`Session.next_message` instead of being lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from ..client.connection import (
    EXIT_YIELD,
    BadAddress,
    HubClient,
    HubClosed,
    HubError,
    HubUnreachable,
    merge_pages,
    merge_who,
    new_client_msg_id,
    next_after,
)
from ..client.connection import Forbidden as _ClientForbidden
from ..client.connection import InsecureTransport as _ClientInsecure
from ..protocol import HUB_SENDER, SYSTEM_TARGET, is_broadcast
from .errors import (
    Closed,
    Conflict,
    Forbidden,
    InsecureTransport,
    Refused,
    Superseded,
    SynapseError,
    Timeout,
    Unreachable,
)
from .types import (
    Board,
    Claim,
    InboxPage,
    Message,
    PathHold,
    Question,
    Roster,
    SearchHit,
    SearchPage,
    SendResult,
    Task,
)

Frame = dict[str, Any]

#: The most results the hub returns per ``search_request`` (its ``LIMIT_MAX``).
SEARCH_PAGE_MAX = 200

#: Reason codes that mean "someone else's state won", not "you asked wrongly".
CONFLICT_CODES = frozenset(
    {"SCOPE_CONFLICT", "CLAIM_DENIED", "LEASE_LIVE", "STALE_EPOCH", "VERSION_CONFLICT", "TASK_EXISTS", "NOT_OWNER"}
)


def translate(exc: HubError) -> SynapseError:
    """The API exception for a client-level failure (same message, same exit code)."""
    if isinstance(exc, _ClientInsecure):
        return InsecureTransport(str(exc))
    if isinstance(exc, _ClientForbidden):
        return Forbidden(str(exc), "FORBIDDEN")
    if isinstance(exc, BadAddress):
        return Refused(str(exc), "BAD_URI")
    if isinstance(exc, HubUnreachable):
        return Unreachable(str(exc))
    if isinstance(exc, HubClosed) and exc.code == 4010 and "auth" in exc.reason.lower():
        return Forbidden(str(exc), "AUTH_DENIED")  # a credential or seat refused: not a takeover
    if isinstance(exc, HubClosed):
        kind = Superseded if exc.exit_code == EXIT_YIELD else Closed
        return kind(str(exc), exc.code, exc.reason, exc.exit_code)
    return SynapseError(str(exc))


def checked_addresses(uri: str) -> str:
    """``uri`` (one hub URI or a comma-separated list, tried in order) if every element is well formed.

    A bad element raises :class:`Refused` (code ``BAD_URI``) naming it, before any socket opens.
    """
    from ..client.addresses import AddressError, parse_addresses

    try:
        return ",".join(parse_addresses(uri))
    except AddressError as exc:
        raise Refused(str(exc), "BAD_URI") from None


def refusal(frame: Mapping[str, Any]) -> Refused:
    """The typed exception for a refusing frame (``error``, ``claim_denied``, ``release_denied``)."""
    code = str(frame.get("code") or frame.get("reason_code") or "")
    message = str(frame.get("payload") or frame.get("type") or "refused")
    kind = Forbidden if code == "FORBIDDEN" else Conflict if code in CONFLICT_CODES else Refused
    return kind(message, code, dict(frame))


class Session:
    """One identity on one hub. Use as ``async with Session("proj/seat") as s: ...``.

    ``name``, ``uri`` and the token default the way the CLI's do:
    ``SYN_IDENTITY`` or the project config's identity, ``SYNAPSE_URI`` or
    ``[hub] uri``, and ``--token``/``SYNAPSE_TOKEN``/token files. Without any
    identity the session uses a one-shot name (enough to read the board or
    the roster; a claim needs a real owner).

    ``uri`` may be a comma-separated list of hubs of one failover group: a
    connection goes to the first that welcomes it, following a standby's
    leader hint only to an address of the list (a malformed element raises
    :class:`Refused` with code ``BAD_URI``).

    ``announce=False`` (the default) registers quietly: the name is not put
    on the roster for others to see, like the CLI's one-shot commands. A
    long-lived agent connection passes ``announce=True``.

    ``wake_capability`` tells the hub how this connection can be woken:
    ``direct`` (default), ``passive`` (a waiter) or ``presence`` (it holds a
    project's presence and never reads mail); ``registration`` adds fields
    to the registration frame (``takeover``, ``roles``, ``presence_for``).

    ``anonymous=True`` presents no token at all, whatever is configured: for
    a diagnosis that asks what the hub says to a stranger.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        uri: str | None = None,
        token: str | None = None,
        token_file: Path | None = None,
        timeout: float = 5.0,
        announce: bool = False,
        registration: Mapping[str, Any] | None = None,
        wake_capability: str = "direct",
        anonymous: bool = False,
    ) -> None:
        from ..client import context

        try:
            self.token = None if anonymous else context.resolve_token(token, token_file)
        except context.TokenFileError as exc:
            raise Refused(str(exc), "TOKEN_FILE") from None
        self.name = name or context.default_identity() or context.one_shot("api")
        self.uri = checked_addresses(uri or context.default_uri())
        self.timeout = timeout
        extra: dict[str, Any] = {} if announce else {"quiet": True}
        extra.update(registration or {})
        self._client = HubClient(
            self.uri,
            self.name,
            token=self.token,
            ready_timeout=timeout,
            registration=extra,
            wake_capability=wake_capability,
        )
        self._connected = False
        self._kept: list[Frame] = []

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> Mapping[str, Any]:
        """Register now (requests do it on demand); returns the hub's ``welcome``."""
        await self._ensure()
        return dict(self._client.welcome or {})

    @property
    def hub_id(self) -> str:
        """The hub's id once connected ("unknown" before)."""
        return self._client.hub_id

    @property
    def address(self) -> str | None:
        """The address that welcomed this session (one of ``uri`` when it lists several); None before."""
        return self._client.address

    async def close(self) -> None:
        """Close the connection (safe to call twice)."""
        if self._connected:
            await self._client.close()
            self._connected = False

    async def _ensure(self, *first: Frame) -> bool:
        """Connect if needed, pipelining ``first``; True when ``first`` was sent with the registration."""
        if self._connected:
            return False
        try:
            await self._client.connect(*first)
        except HubError as exc:
            await self._client.close()
            raise translate(exc) from None
        self._connected = True
        return True

    # ------------------------------------------------------------------ raw requests

    def frame(self, ftype: str, target: str = SYSTEM_TARGET, payload: Any = "", **fields: Any) -> Frame:
        """A frame from this session (for :meth:`request` with verbs the API does not model)."""
        return self._client.frame(ftype, target, payload, **fields)

    async def request(
        self, frame: Frame, settles: Callable[[Frame], bool], timeout: float | None = None, *, fresh: bool = False
    ) -> Frame:
        """Send ``frame``; return the first reply ``settles`` accepts.

        An ``error`` frame addressed to this name raises :class:`Refused` (or a
        subclass); no verdict in time raises :class:`Timeout`. Frames that are
        not the answer are kept for :meth:`next_message`.

        ``fresh=True`` is for answers the hub broadcasts (board updates): a
        frame that was already on its way before this request (another
        client's update of the same task) must not pass for the answer. A
        probe is pipelined ahead of ``frame`` and nothing counts until its
        reply is in; the hub answers one connection in order, so what follows
        it was caused no earlier than this request.
        """
        wait = self.timeout if timeout is None else timeout
        frames = [frame]
        barrier: str | None = None
        if fresh and self._connected:  # a new connection has nothing stale in flight
            barrier = f"barrier-{uuid.uuid4().hex}"
            frames.insert(0, self.frame("message_status_request", seq=0, request_id=barrier))

        def done(f: Frame) -> bool:
            nonlocal barrier
            if barrier is not None:
                if f.get("request_id") == barrier or (f.get("type") == "error" and f.get("code") == "UNKNOWN_TYPE"):
                    barrier = None  # from here on, replies are to this request (an older hub lacks the probe)
                else:
                    self._keep(f)
                return False
            if settles(f) or (f.get("type") == "error" and f.get("target") in (self.name, "self")):
                return True
            self._keep(f)
            return False

        try:
            if not await self._ensure(*frames):
                for f in frames:
                    await self._client.send(f)
            reply = await self._client.wait_for(done, wait)
        except HubError as exc:
            raise translate(exc) from None
        if reply is None:
            raise Timeout(f"no answer from the hub within {wait:g}s; the outcome is unknown")
        if reply.get("type") == "error":
            raise refusal(reply)
        return reply

    async def pages(self, frame: Frame, settles: Callable[[Frame], bool], **fields: Any) -> list[Frame]:
        """Like :meth:`request` for a reply the hub may split by bytes (``has_more``): every page."""
        first = await self.request(frame, settles)
        ftype = str(frame.get("type"))
        try:
            pages = await self._client.follow_pages(
                first, next_after(self._client, ftype, **fields), settles, self.timeout
            )
        except HubError as exc:
            raise translate(exc) from None
        return pages

    async def _reset(self) -> None:
        """Drop a connection the hub closed, so the next request connects afresh."""
        await self._client.close()
        self._connected = False

    def _keep(self, frame: Frame) -> None:
        if frame.get("type") == "chat":
            self._kept.append(frame)

    # ------------------------------------------------------------------ messages

    async def send(
        self,
        target: str,
        text: str,
        *,
        priority: bool = False,
        require_recipient: bool = False,
        client_msg_id: str | None = None,
    ) -> SendResult:
        """Send a chat; directed chats wait for the hub's receipt (delivered, or queued for later).

        ``client_msg_id`` (default: a fresh one) names the message for a
        receipt asked for later; a caller that must report it even when no
        answer comes (a :class:`Timeout`) passes its own.
        """
        msg_id = client_msg_id or new_client_msg_id()
        want_receipt = not is_broadcast(target) or require_recipient
        fields: dict[str, Any] = {"client_msg_id": msg_id}
        if want_receipt:
            fields["receipt_requested"] = True
        if priority:
            fields["priority"] = True

        def answers(f: Frame) -> bool:
            if f.get("client_msg_id") != msg_id:
                return False
            if not want_receipt:
                return f.get("type") == "chat"
            return (
                f.get("type") == "delivery_receipt"
                and f.get("sender") == HUB_SENDER
                and isinstance(f.get("delivered"), bool)
            )

        reply = await self.request(self.frame("chat", target, text, **fields), answers)
        seq = reply.get("message_seq", reply.get("seq"))
        if not want_receipt:
            outcome = "broadcast"
        elif reply.get("delivered") is True:
            outcome = "delivered"
        elif reply.get("queued", not is_broadcast(str(reply.get("message_target", target)))) is True:
            outcome = "queued"
        else:
            outcome = "no_recipient"
        recipients = reply.get("recipients") or reply.get("delivered_to") or ()
        return SendResult(
            outcome=outcome,  # type: ignore[arg-type]
            client_msg_id=msg_id,
            seq=seq if isinstance(seq, int) else None,
            recipients=tuple(str(r) for r in recipients) if isinstance(recipients, list | tuple) else (),
            raw=dict(reply),
        )

    async def broadcast(self, text: str, *, require_recipient: bool = False) -> SendResult:
        """Send to everyone (``all``)."""
        return await self.send("all", text, require_recipient=require_recipient)

    async def next_message(self, timeout: float | None = None) -> Message | None:
        """The next chat this connection saw (kept while waiting for replies, or arriving now); None on timeout.

        Only an announced session (``announce=True``) or one addressed by
        name receives chats live; for the durable mailbox use :meth:`inbox`
        or :func:`synapse_channel.api.wait`.
        """
        if self._kept:
            return Message.of(self._kept.pop(0))
        await self._ensure()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                frame = await self._client.recv(left)
                if frame is None:
                    return None
                if frame.get("type") == "chat":
                    return Message.of(frame)
        except HubError as exc:
            raise translate(exc) from None

    async def events(self, until: asyncio.Event | None = None) -> AsyncIterator[Message]:
        """Every chat this connection receives, as it arrives, until ``until`` is set (then it just ends).

        For long-lived connections (``announce=True``): ``async for message in
        s.events(stop): ...``. When the hub closes the connection the loop
        raises: :class:`Superseded` if another connection took this name over
        (yield, do not reconnect), else :class:`Closed`.
        """
        await self._ensure()
        stop = until if until is not None else asyncio.Event()
        while not stop.is_set():
            if self._kept:
                yield Message.of(self._kept.pop(0))
                continue
            try:
                frame = await self._client.recv_until(stop)
            except HubError as exc:
                raise translate(exc) from None
            if frame is None:
                return
            if frame.get("type") == "chat":
                yield Message.of(frame)

    async def frames(self, until: asyncio.Event | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every frame this connection receives (chats, presence changes, anything), as sent, until ``until`` is set.

        For a monitor that shows more than chats (``synapse listen``). Each
        frame is a fresh dict the caller may keep. When the hub closes the
        connection the loop raises like :meth:`events`; a drop of a ready
        connection is a :class:`Closed` whose ``exit_code`` is 3.
        """
        await self._ensure()
        stop = until if until is not None else asyncio.Event()
        while not stop.is_set():
            if self._kept:
                yield self._kept.pop(0)
                continue
            try:
                frame = await self._client.recv_until(stop)
            except HubError as exc:
                raise translate(exc) from None
            if frame is None:
                return
            yield frame

    async def message_status(self, seq: int) -> str:
        """Where message ``seq`` stands for its recipient: ``stored``, ``delivered``, ``acked`` or ``unknown``.

        ``unknown`` also when this identity may not see the message.
        """
        request_id = f"status-{uuid.uuid4().hex}"
        frame = self.frame("message_status_request", seq=seq, request_id=request_id)
        reply = await self.request(frame, lambda f: f.get("request_id") == request_id)
        return str(reply.get("state", "unknown"))

    async def inbox(self, *, after: int = 0, limit: int = 100, identity: str | None = None) -> InboxPage:
        """Directed messages to ``identity`` (default: this name) with ``seq`` above ``after``, oldest first."""
        who = identity or self.name
        query = {"identity": who, "since_seq": after, "limit": limit}

        def settles(f: Frame) -> bool:
            return f.get("type") == "history_snapshot" and isinstance(f.get("inbox_page"), dict)

        reply = await self.request(self.frame("history_request", inbox_query=query), settles)
        page = reply["inbox_page"]
        messages = tuple(Message.of(m) for m in page.get("messages") or [] if isinstance(m, dict))
        return InboxPage(messages, int(page.get("cursor") or after), page.get("has_more") is True)

    async def ack(self, through_seq: int, *, identity: str | None = None) -> None:
        """Acknowledge the mailbox of ``identity`` (default: this name) through ``through_seq``.

        The hub answers an ack only when it refuses it; a refusal raises.
        """
        frame = self.frame("ack", "all", "", seq=through_seq, mailbox_for=identity or self.name)
        try:
            if not await self._ensure(frame):
                await self._client.send(frame)
            # a round trip that is answered proves the ack was read (and refused or not) before we return
            probe = self.frame("message_status_request", seq=through_seq, request_id=f"ack-{uuid.uuid4().hex}")
            await self._client.send(probe)
            reply = await self._client.wait_for(
                lambda f: (
                    f.get("request_id") == probe["request_id"]
                    or (f.get("type") == "error" and f.get("target") == self.name)
                ),
                self.timeout,
            )
        except HubError as exc:
            raise translate(exc) from None
        if reply is not None and reply.get("type") == "error":
            raise refusal(reply)

    async def search(
        self,
        query: str,
        *,
        sender: str | None = None,
        to: str | None = None,
        since: float | None = None,
        limit: int = 20,
        after: int | None = None,
    ) -> SearchPage:
        """Chats, board tasks and notes this identity may see that match ``query`` (FTS5 syntax), newest first.

        ``sender`` and ``to`` narrow by who sent and to whom, ``since`` by
        time (epoch seconds), ``after`` continues from an earlier page's
        ``cursor``. Pages are followed until ``limit`` hits or the last one,
        so ``limit`` may exceed the hub's 200 a page. :class:`Refused` with
        ``code`` ``BAD_QUERY`` (FTS5 refused the syntax), ``BAD_FIELD``,
        ``SEARCH_TIMEOUT`` or ``SEARCH_UNAVAILABLE``.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise Refused(f"limit must be a positive integer, not {limit!r}", "BAD_FIELD")
        fields: dict[str, Any] = {"query": query}
        for key, value in (("from", sender), ("to", to), ("since", since)):
            if value is not None:
                fields[key] = value
        hits: list[SearchHit] = []
        cursor = after
        while True:
            request_id = f"search-{uuid.uuid4().hex}"
            ask = dict(fields, limit=min(limit - len(hits), SEARCH_PAGE_MAX), request_id=request_id)
            if cursor is not None:
                ask["after"] = cursor
            reply = await self.request(self.frame("search_request", **ask), _answer("search_results", request_id))
            hits.extend(SearchHit.of(r) for r in reply.get("results") or [] if isinstance(r, dict))
            more, nxt = reply.get("has_more") is True, reply.get("cursor")
            cursor = nxt if isinstance(nxt, int) and not isinstance(nxt, bool) else None
            if len(hits) >= limit or not more or cursor is None:
                indexed = reply.get("indexed_through")
                return SearchPage(
                    tuple(hits[:limit]),
                    more and cursor is not None,
                    cursor if more else None,
                    indexed if isinstance(indexed, int) and not isinstance(indexed, bool) else None,
                )

    # ------------------------------------------------------------------ roster

    async def who(self) -> Roster:
        """Who is online (every page of the roster)."""
        settles = lambda f: f.get("type") == "who_snapshot"  # noqa: E731
        pages = await self.pages(self.frame("who_request", payload="who"), settles, payload="who")
        return Roster.of(merge_who(pages))

    # ------------------------------------------------------------------ claims

    async def claim(
        self,
        task: str,
        paths: Iterable[str] = (),
        *,
        worktree: str = "",
        ttl: float | None = None,
        note: str = "",
        git: Mapping[str, str] | None = None,
    ) -> Claim:
        """Lease ``task`` over ``paths``; :class:`Conflict` when it overlaps someone else's live claim.

        Claiming a task you already hold replaces its scope (a new epoch).
        ``git`` (``branch``, ``base``, ``auto_release_on``) scopes the claim to
        a branch as ``synapse git-claim`` does, so ``release --merged`` and the
        guard's post-merge hook release it once the branch is merged.
        """
        fields: dict[str, Any] = {"task_id": task, "note": note, "worktree": worktree, "paths": list(paths)}
        if ttl is not None:
            fields["ttl_seconds"] = ttl
        if git is not None:
            fields["git"] = dict(git)

        def settles(f: Frame) -> bool:
            return f.get("task_id") == task and (
                f.get("type") == "claim_denied" or (f.get("type") == "claim_granted" and f.get("owner") == self.name)
            )

        reply = await self.request(self.frame("claim", payload=task, **fields), settles)
        if reply["type"] == "claim_denied":
            raise refusal(reply)
        return Claim.of(reply)

    async def renew(self, task: str, epoch: int, *, ttl: float | None = None) -> Claim:
        """Extend the lease on ``task`` (``epoch`` from the grant fences a stale caller)."""
        fields: dict[str, Any] = {"task_id": task, "epoch": epoch}
        if ttl is not None:
            fields["ttl_seconds"] = ttl
        return Claim.of(await self._owned("renew", "claim_renewed", fields))

    async def handoff(self, task: str, to: str, epoch: int) -> Claim:
        """Give the claim on ``task`` to ``to`` (same scope, a new epoch)."""
        return Claim.of(await self._owned("handoff", "claim_handoff", {"task_id": task, "epoch": epoch, "to": to}))

    async def _owned(self, verb: str, answer: str, fields: dict[str, Any]) -> Frame:
        task = fields["task_id"]
        return await self.request(
            self.frame(verb, **fields), lambda f: f.get("type") == answer and f.get("task_id") == task, fresh=True
        )

    async def release(self, task: str, epoch: int | None = None, *, evidence: Iterable[str] = ()) -> None:
        """Release ``task`` (idempotent on retry: the hub remembers the operation id).

        Without ``epoch`` the session looks the claim up first (one more round
        trip) and presents its current epoch, so a caller that kept only the
        task id can still release what it holds.
        """
        if epoch is None:
            held = next((c for c in await self.claims() if c.task_id == task and c.owner == self.name), None)
            epoch = held.epoch if held is not None else None
        fields: dict[str, Any] = {"task_id": task, "idem_key": uuid.uuid4().hex}
        if epoch is not None:
            fields["epoch"] = epoch
        if proof := list(evidence):
            fields["evidence"] = proof

        def settles(f: Frame) -> bool:
            return f.get("type") in ("release_granted", "release_denied") and (
                f.get("release_operation_id") == fields["idem_key"]
            )

        reply = await self.request(self.frame("release", payload=task, **fields), settles)
        if reply["type"] == "release_denied":
            raise refusal(reply)

    async def claims(self) -> tuple[Claim, ...]:
        """Every live claim on the hub."""
        settles = lambda f: f.get("type") == "state_snapshot"  # noqa: E731
        pages = await self.pages(self.frame("state_request", payload="snapshot"), settles, payload="snapshot")
        body = merge_pages(pages, "snapshot", "active_claims")
        return tuple(Claim.of(c) for c in body.get("active_claims") or [] if isinstance(c, dict))

    async def check_paths(self, paths: Iterable[str], *, worktree: str = "") -> tuple[PathHold, ...]:
        """Every live claim covering any of ``paths`` in ``worktree`` (yours included: filter on ``owner``).

        Read-only and answered from the hub's scope index; a long list is
        asked in as many frames as the hub's byte budget needs.
        """
        left = list(paths)
        found: list[PathHold] = []
        while True:
            request_id = uuid.uuid4().hex
            frame = self.frame("claim_check", worktree=worktree, paths=left, request_id=request_id)
            reply = await self.request(frame, _answer("claim_check_result", request_id))
            found.extend(PathHold.of(c) for c in reply.get("conflicts") or [] if isinstance(c, dict))
            checked = reply.get("checked")
            if reply.get("has_more") is not True or not isinstance(checked, int) or checked <= 0:
                return tuple(found)
            left = left[checked:]

    # ------------------------------------------------------------------ board

    async def board(self) -> Board:
        """Every task on the board and the ready ones."""
        settles = lambda f: f.get("type") == "board_snapshot"  # noqa: E731
        pages = await self.pages(self.frame("board_request", payload="board"), settles, payload="board")
        body = merge_pages(pages, "board", "tasks", "ready")
        tasks = tuple(Task.of(t) for t in body.get("tasks") or [] if isinstance(t, dict))
        ready = tuple(str(t.get("task_id")) if isinstance(t, dict) else str(t) for t in body.get("ready") or [])
        return Board(tasks, ready, dict(body))

    async def declare_task(
        self,
        task_id: str,
        title: str,
        *,
        description: str = "",
        depends_on: Iterable[str] = (),
        project: str = "",
        suggested_owner: str = "",
    ) -> Task:
        """Put a task on the board; unknown dependencies and cycles are refused."""
        fields: dict[str, Any] = {
            "task_id": task_id,
            "title": title,
            "description": description,
            "depends_on": list(depends_on),
            "project": project,
            "suggested_owner": suggested_owner,
        }
        reply = await self.request(
            self.frame("ledger_task", **fields), _posted("ledger_task_posted", task_id), fresh=True
        )
        return Task.of(reply.get("task") or {})

    async def update_task(
        self,
        task_id: str,
        *,
        status: str | None = None,
        expected_version: int | None = None,
        title: str | None = None,
        description: str | None = None,
        suggested_owner: str | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> Task:
        """Change a task; :class:`Conflict` (``VERSION_CONFLICT``) when ``expected_version`` is stale."""
        fields: dict[str, Any] = {"task_id": task_id}
        for key, value in (
            ("status", status),
            ("expected_version", expected_version),
            ("title", title),
            ("description", description),
            ("suggested_owner", suggested_owner),
        ):
            if value is not None:
                fields[key] = value
        if depends_on is not None:
            fields["depends_on"] = list(depends_on)
        reply = await self.request(
            self.frame("ledger_task_update", **fields), _posted("ledger_task_updated", task_id), fresh=True
        )
        return Task.of(reply.get("task") or {})

    async def progress(self, task_id: str, text: str, *, kind: str = "note") -> None:
        """Post a progress note on a task."""
        frame = self.frame("ledger_progress", payload=text, task_id=task_id, kind=kind)
        await self.request(frame, _posted("ledger_progress_posted", task_id), fresh=True)

    # ------------------------------------------------------------------ human attention

    async def file_question(self, question: str, *, choices: Iterable[str] = ()) -> Question:
        """Put ``question`` in the human attention queue without waiting; returns it (``q-<n>``, open)."""
        request_id = f"ask-{uuid.uuid4().hex}"
        frame = self.frame("attention_ask", payload=question, question=question, request_id=request_id)
        if listed := list(choices):
            frame["choices"] = listed
        reply = await self.request(
            frame, lambda f: f.get("type") == "attention_filed" and f.get("request_id") == request_id
        )
        return Question.of(reply.get("question") or {})

    async def ask_human(
        self,
        question: str,
        *,
        choices: Iterable[str] = (),
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
    ) -> Question:
        """Ask a person and wait for the answer: the answered (or cancelled) :class:`Question`.

        The answer also reaches this identity's mailbox as a directed chat, so
        an agent's ``wait`` wakes with it too. :class:`Timeout` after
        ``timeout`` seconds (None: no limit); the question stays open unless
        ``cancel_on_timeout`` (then it is closed as ``expired``).
        """
        filed = await self.file_question(question, choices=choices)
        return await self.await_answer(filed.id, timeout=timeout, cancel_on_timeout=cancel_on_timeout)

    async def await_answer(
        self, question_id: str, *, timeout: float | None = None, cancel_on_timeout: bool = False
    ) -> Question:
        """Wait until ``question_id`` is closed; rides out a hub restart (reconnects and asks again)."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float:
            return 30.0 if deadline is None else max(0.0, deadline - time.monotonic())

        def closes(f: Frame) -> bool:
            q = f.get("question")
            return (
                f.get("type") == "attention_update"
                and isinstance(q, dict)
                and q.get("id") == question_id
                and (q.get("status") != "open")
            )

        while True:
            try:
                current = await self.question(question_id)
                if not current.is_open:
                    return current
                if deadline is not None and left() <= 0:
                    break
                frame = await self._client.wait_for(closes, left())
                if frame is not None:
                    return Question.of(frame["question"])
            except (Closed, Unreachable, HubError):
                await self._reset()
                if deadline is not None and left() <= 0:
                    break
                await asyncio.sleep(min(0.5, left()))
            if deadline is not None and left() <= 0:
                break
        if cancel_on_timeout:
            with _suppress_closed():
                await self.cancel_question(question_id, reason="timeout")
        raise Timeout(f"no answer to {question_id} within {timeout:g}s")

    async def question(self, question_id: str) -> Question:
        """One question by id, open or recently closed; :class:`Refused` (``UNKNOWN_QUESTION``) when unknown."""
        found = await self.attention(status="all", question_id=question_id)
        if not found:
            raise Refused(f"no question {question_id!r} on this hub", "UNKNOWN_QUESTION")
        return found[0]

    async def attention(self, *, status: str = "open", question_id: str | None = None) -> tuple[Question, ...]:
        """The attention queue: open questions (``status="all"`` adds recently closed ones), oldest first."""
        fields: dict[str, Any] = {"status": status}
        if question_id is not None:
            fields["question_id"] = question_id
        settles = lambda f: f.get("type") == "attention_snapshot"  # noqa: E731
        pages = await self.pages(self.frame("attention_request", **fields), settles, **fields)
        found = [Question.of(q) for p in pages for q in p.get("questions") or [] if isinstance(q, dict)]
        return tuple(sorted(found, key=lambda q: q.number))

    async def answer(self, question_id: str, text: str) -> Question:
        """Answer a question as a person (see docs/security.md for who may); returns it, answered."""
        return await self._close_question("attention_answer", question_id, answer=text, payload=text)

    async def cancel_question(self, question_id: str, *, reason: str = "") -> Question:
        """Close a question unanswered (the asker, or whoever may answer it); ``reason="timeout"`` marks it expired."""
        return await self._close_question("attention_cancel", question_id, reason=reason)

    async def _close_question(self, verb: str, question_id: str, **fields: Any) -> Question:
        def settles(f: Frame) -> bool:
            q = f.get("question")
            return f.get("type") == "attention_update" and isinstance(q, dict) and q.get("id") == question_id

        reply = await self.request(self.frame(verb, question_id=question_id, **fields), settles)
        return Question.of(reply["question"])


def _answer(kind: str, request_id: str) -> Callable[[Frame], bool]:
    return lambda f: f.get("type") == kind and f.get("request_id") == request_id


def _posted(kind: str, task_id: str) -> Callable[[Frame], bool]:
    return lambda f: f.get("type") == kind and (f.get("task") or f.get("note") or {}).get("task_id") == task_id


def _suppress_closed() -> contextlib.suppress:
    """Ignore a cancel that lost the race (answered meanwhile) or found the hub gone."""
    return contextlib.suppress(SynapseError)
