"""The MCP server: a small, sharp tool set over :mod:`synapse_channel.api`.

Assistants pay for every tool schema in their context window, so the
schemas are written by hand (no generated titles, no output schemas) and the
whole ``tools/list`` stays a few kilobytes (``benchmarks/mcp_tools.py``
measures it). Every refusal is returned as a tool error whose text says what
to do next, never as a protocol error the model cannot read.

Each tool call opens its own short :class:`~synapse_channel.api.Session` as
the agent's identity (registered quietly, like the CLI's one-shot commands):
no long-lived connection can be superseded, and a restarted hub is simply
reached again on the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import mcp.types as types
from mcp.server.lowlevel import Server

from synapse_channel import api

#: The longest ``wait`` the tool allows (an MCP call should not hang an assistant indefinitely).
MAX_WAIT = 300.0
INBOX_LIMIT = 50
#: The most search hits one ``search`` call returns (each is a line in the model's context).
SEARCH_LIMIT = 50
#: The hub's longest lease (30 days); a longer ttl is cut to it rather than refused.
MAX_TTL = 30 * 86400.0
URI_INBOX, URI_BOARD, URI_CLAIMS = "synapse://inbox", "synapse://board", "synapse://claims"

# ---------------------------------------------------------------------- schemas (compact on purpose)

_S = {"type": "string"}
_I = {"type": "integer"}


def _obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


TOOLS: dict[str, tuple[str, dict[str, Any]]] = {
    "send": (
        "Send a chat. to: an agent name, proj/agent, a project, or all.",
        _obj({"to": _S, "text": _S, "priority": {"type": "boolean"}}, ("to", "text")),
    ),
    "inbox": (
        "Unacked directed messages, oldest first. ack them once handled.",
        _obj({"after": {**_I, "description": "seq cursor (default: last ack)"}, "limit": _I}),
    ),
    "ack": ("Mark your messages read through seq.", _obj({"seq": _I}, ("seq",))),
    "wait": (
        f"Block until messages for you arrive; returns them acked. timeout s (default 60, max {MAX_WAIT:g}).",
        _obj({"timeout": {"type": "number"}}),
    ),
    "who": ("Who is online, with pending mail counts.", _obj({})),
    "claim": (
        "Lease a task over file paths (relative to the project) so others keep off them; again to extend. ttl s.",
        _obj({"task": _S, "paths": {"type": "array", "items": _S}, "ttl": {"type": "number"}, "note": _S}, ("task",)),
    ),
    "release": ("Release your claim on a task.", _obj({"task": _S}, ("task",))),
    "board": ("The task board: tasks, status, owner; ready = deps done.", _obj({})),
    "task_update": (
        "Set a task's status (open, in_progress, blocked, done, cancelled) and/or post a progress note.",
        _obj({"task": _S, "status": _S, "note": _S, "version": {**_I, "description": "expected version"}}, ("task",)),
    ),
    "search": (
        'Search chats, tasks and notes you may see, newest first. query: words, pre*, "a phrase", AND/OR/NOT. '
        "from/to: names; hours: last N only; after: cursor from a previous call.",
        _obj({"query": _S, "from": _S, "to": _S, "hours": {"type": "number"}, "limit": _I, "after": _I}, ("query",)),
    ),
}
READ_ONLY = frozenset({"inbox", "wait", "who", "board", "search"})


class ToolFailure(Exception):
    """A tool call that failed in a way the model can act on; the message says how."""


# ---------------------------------------------------------------------- the tools


@dataclass
class Tools:
    """The tool implementations for one identity; ``cursor`` is the highest seq acked through this server."""

    identity: str
    uri: str | None = None
    token: str | None = None
    timeout: float = 5.0
    cursor: int = 0
    #: Why this server cannot act (no identity), said in answer to every call; empty when it can.
    missing: str = ""
    #: The worktree claims are scoped to ("" for none) and the directory relative paths start from: the same
    #: rule as ``synapse claim`` (the git top level), so claims made here and from the CLI or hooks collide.
    worktree: str = ""
    cwd: str = "."
    _calls: dict[str, Callable[[dict[str, Any]], Awaitable[str]]] = field(default_factory=dict, repr=False)
    _lock: asyncio.Lock | None = field(default=None, repr=False)
    _wait_lock: asyncio.Lock | None = field(default=None, repr=False)
    #: The channel push loop (``--channel``), paused while a ``wait`` call holds the receiver.
    channel: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._calls = {
            "send": self.send,
            "inbox": self.inbox,
            "ack": self.ack,
            "wait": self.wait,
            "who": self.who,
            "claim": self.claim,
            "release": self.release,
            "board": self.board,
            "task_update": self.task_update,
            "search": self.search,
        }

    @asynccontextmanager
    async def session(self) -> AsyncIterator[api.Session]:
        """A fresh quiet session as this identity, one at a time.

        The hub lets one connection hold a name, so calls that arrive
        together (an assistant may run tools in parallel; HTTP clients share
        this server) take turns instead of refusing each other.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock, api.Session(self.identity, uri=self.uri, token=self.token, timeout=self.timeout) as s:
            yield s

    async def call(self, name: str, args: dict[str, Any]) -> str:
        """Run tool ``name``; every failure becomes a :class:`ToolFailure` that says what to do next."""
        fn = self._calls.get(name)
        if fn is None:
            raise ToolFailure(f"unknown tool {name!r}; call one of: {', '.join(TOOLS)}")
        if self.missing:
            raise ToolFailure(self.missing)
        return await self._guarded(fn(args))

    async def call_resource(self, uri: str) -> str:
        """Read resource ``uri``, failures translated like a tool's."""
        if self.missing:
            raise ToolFailure(self.missing)
        return await self._guarded(self.resource(uri))

    async def _guarded(self, work: Awaitable[str]) -> str:
        try:
            return await work
        except ToolFailure:
            raise
        except api.Unreachable as exc:
            raise ToolFailure(f"the synapse hub is not reachable ({exc}); start it with `synapse hub`") from None
        except api.Superseded as exc:
            raise ToolFailure(f"{exc}; another connection holds the name {self.identity!r}, try again") from None
        except api.Closed as exc:
            raise ToolFailure(
                f"{exc}; another connection holds {self.identity!r} just now (another synapse command?), try again"
            ) from None
        except api.Forbidden as exc:
            raise ToolFailure(
                f"refused: {exc} (this server acts as {self.identity!r}: its --name and token are in the assistant's"
                " MCP config; fix them there, or ask whoever runs the hub for access)"
            ) from None
        except api.Timeout as exc:
            raise ToolFailure(f"{exc}; check with board/inbox before retrying") from None
        except api.SynapseError as exc:
            raise ToolFailure(f"{exc}") from None

    # ------------------------------------------------------------------ messages

    async def send(self, args: dict[str, Any]) -> str:
        to, text = _text(args, "to"), _text(args, "text")
        async with self.session() as s:
            sent = await s.send(to, text, priority=args.get("priority") is True)
        seq = f" (seq {sent.seq})" if sent.seq is not None else ""
        if sent.outcome == "delivered":
            return f"delivered to {', '.join(sent.recipients) or to}{seq}"
        if sent.outcome == "queued":
            return f"queued for {to}{seq}: offline now, it is kept until they read it"
        if sent.outcome == "no_recipient":
            raise ToolFailure(f"nobody matches {to!r} and nothing was kept; call who for the names online")
        return f"sent to {to}{seq}"

    async def inbox(self, args: dict[str, Any]) -> str:
        after = _int(args, "after", self.cursor, low=0)
        limit = _int(args, "limit", INBOX_LIMIT, low=1, high=INBOX_LIMIT)
        async with self.session() as s:
            page = await s.inbox(after=after, limit=limit)
        return _messages(page.messages, page.has_more)

    async def ack(self, args: dict[str, Any]) -> str:
        seq = _int(args, "seq", None, low=1)
        async with self.session() as s:
            await s.ack(seq)
        self.cursor = max(self.cursor, seq)
        return f"acked through seq {seq}"

    async def wait(self, args: dict[str, Any]) -> str:
        """``synapse wait`` as a call (it shares that command's cursor): the messages that came, acked."""
        timeout = _number(args, "timeout", 60.0, low=1.0, high=MAX_WAIT)
        if self._wait_lock is None:
            self._wait_lock = asyncio.Lock()
        paused = self.channel.paused() if self.channel is not None else contextlib.nullcontext()
        async with self._wait_lock, paused:  # one waiter per identity at a time (it registers as IDENTITY-rx)
            got = await api.wait(self.identity, uri=self.uri, token=self.token, timeout=timeout, directed_only=True)
        if not got:
            return f"no message within {timeout:g}s; call wait again, or get on with your work"
        self.cursor = max(self.cursor, *(m.seq for m in got))
        lines = [f"#{m.seq} {_clock(m.timestamp)} {m.sender} -> {m.target}: {m.text}" for m in got]
        return "\n".join([*lines, "(already acked)"])

    # ------------------------------------------------------------------ roster, claims, board

    async def who(self, args: dict[str, Any]) -> str:
        async with self.session() as s:
            roster = await s.who()
        if not roster.online:
            return "nobody is online"
        lines = []
        for name in roster.online:
            extra = [f"{roster.pending[name]} pending"] if roster.pending.get(name) else []
            live = roster.liveness.get(name) or {}
            if live.get("has_live_waiter") is True:
                extra.append("waiting for mail")
            roles = roster.roles.get(name)
            if roles:
                extra.append("roles " + ",".join(roles))
            lines.append(name + (f" ({', '.join(extra)})" if extra else ""))
        return "\n".join(lines)

    async def claim(self, args: dict[str, Any]) -> str:
        task = _text(args, "task")
        paths = args.get("paths") or []
        if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
            raise ToolFailure('paths must be a list of file or directory paths, e.g. ["src/a.py", "docs/"]')
        ttl = _number(args, "ttl", None, low=1.0, high=MAX_TTL) if args.get("ttl") is not None else None
        note = str(args.get("note") or "")
        scoped = self.scoped(paths)
        async with self.session() as s:
            try:
                granted = await s.claim(task, scoped, worktree=self.worktree, ttl=ttl, note=note)
            except api.Conflict as exc:
                raise ToolFailure(await _conflict_help(s, task, exc)) from None
            except api.Refused as exc:
                raise ToolFailure(f"{exc} Fix the request (task id, paths, ttl) and claim again.") from None
        scope = ", ".join(granted.paths) or "no paths"
        return f"claimed {task} (epoch {granted.epoch}) over {scope} until {_clock(granted.lease_expires_at)}"

    def scoped(self, paths: list[str]) -> list[str]:
        """``paths`` relative to the worktree (as ``synapse claim`` sends them); one outside it is refused."""
        if not self.worktree:
            return list(paths)
        try:
            return api.claim_scope(paths, self.worktree, self.cwd)[1]
        except api.OutsideWorktree as exc:
            raise ToolFailure(f"{exc}; claim paths inside it") from None

    async def release(self, args: dict[str, Any]) -> str:
        task = _text(args, "task")
        async with self.session() as s:
            held = next((c for c in await s.claims() if c.task_id == task), None)
            if held is None:
                return f"{task} is not claimed (nothing to release)"
            if held.owner != self.identity:
                raise ToolFailure(f"{task} is held by {held.owner}, not you; ask them with send to release it")
            try:
                await s.release(task, held.epoch)
            except api.Refused as exc:
                raise ToolFailure(f"{exc} Read synapse://claims to see who holds what.") from None
        return f"released {task}"

    async def board(self, args: dict[str, Any]) -> str:
        async with self.session() as s:
            board = await s.board()
        if not board.tasks:
            return "the board is empty"
        ready = set(board.ready)
        lines = []
        for t in board.tasks:
            owner = f" @{t.owner}" if t.owner else ""
            flag = " ready" if t.task_id in ready else ""
            lines.append(f"{t.task_id} [{t.status}]{owner} v{t.version}{flag}: {t.title}")
        return "\n".join(lines)

    async def task_update(self, args: dict[str, Any]) -> str:
        task = _text(args, "task")
        status = args.get("status")
        note = args.get("note")
        if status is None and note is None:
            raise ToolFailure("give a status, a note, or both")
        version = _int(args, "version", None, low=0) if args.get("version") is not None else None
        said = []
        async with self.session() as s:
            try:
                if status is not None:
                    updated = await s.update_task(task, status=_text(args, "status"), expected_version=version)
                    said.append(f"{task} is now {updated.status} (v{updated.version})")
                if note is not None:
                    await s.progress(task, _text(args, "note"))
                    said.append(f"note posted on {task}")
            except api.Conflict as exc:
                raise ToolFailure(f"{exc} Call board for the current version, then update again.") from None
            except api.Refused as exc:
                raise ToolFailure(f"{exc} Call board for the task ids and their status.") from None
        return "; ".join(said)

    async def search(self, args: dict[str, Any]) -> str:
        query = _text(args, "query")
        limit = _int(args, "limit", 20, low=1, high=SEARCH_LIMIT)
        after = _int(args, "after", None, low=1) if args.get("after") is not None else None
        since = None
        if args.get("hours") is not None:
            since = time.time() - _number(args, "hours", None, low=0.001, high=24 * 365 * 10) * 3600
        names = {k: _text(args, k) if args.get(k) is not None else None for k in ("from", "to")}
        async with self.session() as s:
            try:
                page = await s.search(
                    query, sender=names["from"], to=names["to"], since=since, limit=limit, after=after
                )
            except api.Refused as exc:
                raise ToolFailure(
                    f"{exc}. {_SEARCH_HELP.get(exc.code, 'Fix the arguments and search again.')}"
                ) from None
        if not page.hits:
            return "no matches; try fewer words, a prefix (pars*) or OR between alternatives"
        lines = [_hit(h) for h in page.hits]
        if page.has_more and page.cursor is not None:
            lines.append(f"older matches remain: search again with after={page.cursor}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ resources

    async def resource(self, uri: str) -> str:
        """The JSON text of one resource (the inbox, the board, live claims)."""
        async with self.session() as s:
            if uri == URI_INBOX:
                page = await s.inbox(after=self.cursor, limit=INBOX_LIMIT)
                body: Any = {
                    "cursor": page.cursor,
                    "has_more": page.has_more,
                    "messages": [_msg(m) for m in page.messages],
                }
            elif uri == URI_BOARD:
                board = await s.board()
                body = {
                    "ready": list(board.ready),
                    "tasks": [
                        {
                            "task_id": t.task_id,
                            "title": t.title,
                            "status": t.status,
                            "owner": t.owner,
                            "version": t.version,
                        }
                        for t in board.tasks
                    ],
                }
            elif uri == URI_CLAIMS:
                body = [
                    {"task_id": c.task_id, "owner": c.owner, "paths": list(c.paths), "expires_at": c.lease_expires_at}
                    for c in await s.claims()
                ]
            else:
                raise ToolFailure(f"no resource {uri!r}; read {URI_INBOX}, {URI_BOARD} or {URI_CLAIMS}")
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


async def _conflict_help(s: api.Session, task: str, exc: api.Conflict) -> str:
    """Who holds what, until when, and the two ways forward (from the refusal's own fields)."""
    holder, other = exc.held_by, exc.held_task
    if holder is None or other is None:
        return f"{exc} Pick other paths, or ask the holder with send."
    held_paths = exc.frame.get("held_paths")
    paths = f" over {', '.join(map(str, held_paths))}" if isinstance(held_paths, list) and held_paths else ""
    until = f" until {_clock(exc.held_until)}" if exc.held_until else ""
    return (
        f"claim on {task} refused: {holder} holds {other}{paths}{until}. "
        f'Pick other paths, or ask the holder: send(to="{holder}", text="...").'
    )


# ---------------------------------------------------------------------- helpers


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(ts)) if ts else "unknown"


def _msg(m: api.Message) -> dict[str, Any]:
    return {"seq": m.seq, "from": m.sender, "to": m.target, "text": m.text, "at": m.timestamp}


_SEARCH_HELP = {
    "BAD_QUERY": (
        'The query is SQLite FTS5 syntax: put a phrase or words with punctuation in double quotes ("foo-bar",'
        ' "two words"), write AND, OR, NOT in capitals, balance parentheses.'
    ),
    "BAD_FIELD": "Fix the arguments: from and to are agent names, limit and after positive integers.",
    "SEARCH_TIMEOUT": "Narrow the query: more words, from, to or hours.",
    "SEARCH_UNAVAILABLE": "This hub keeps no database (it runs with --db :memory:), so there is nothing to search.",
}


def _hit(h: api.SearchHit) -> str:
    kind = f"{h.kind} {h.task_id}" if h.task_id else h.kind
    text = " ".join((h.snippet or h.text).split())
    if len(text) > 300:
        text = text[:297] + "..."
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(h.timestamp)) if h.timestamp else "unknown"
    return f"#{h.seq} {when} {h.sender} -> {h.target} ({kind}): {text}"


def _messages(messages: tuple[api.Message, ...], more: bool) -> str:
    if not messages:
        return "no new messages"
    lines = [f"#{m.seq} {_clock(m.timestamp)} {m.sender} -> {m.target}: {m.text}" for m in messages]
    tail = "more waiting: ack these, then call inbox again" if more else f"ack with seq={messages[-1].seq} once handled"
    return "\n".join([*lines, tail])


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ToolFailure(f"{key} is required (a non-empty string)")
    return value


def _int(args: dict[str, Any], key: str, default: int | None, low: int, high: int | None = None) -> int:
    value = args.get(key, default)
    if value is None:
        raise ToolFailure(f"{key} is required (an integer)")
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ToolFailure(f"{key} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ToolFailure(f"{key} must be between {low} and {high}" if high is not None else f"{key} must be >= {low}")
    return int(value)


def _number(args: dict[str, Any], key: str, default: float | None, low: float, high: float) -> float:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ToolFailure(f"{key} must be a number of seconds between {low:g} and {high:g}")
    return min(max(float(value), low), high)


# ---------------------------------------------------------------------- the MCP server


def tool_list() -> list[types.Tool]:
    """The tools as MCP advertises them (also what the size benchmark measures)."""
    return [
        types.Tool(
            name=name,
            description=text,
            input_schema=schema,
            annotations=types.ToolAnnotations(read_only_hint=True) if name in READ_ONLY else None,
        )
        for name, (text, schema) in TOOLS.items()
    ]


RESOURCES = (
    (URI_INBOX, "inbox", "Your unacked directed messages (JSON)."),
    (URI_BOARD, "board", "The task board (JSON)."),
    (URI_CLAIMS, "claims", "Live claims: task, owner, paths, expiry (JSON)."),
)


def build(tools: Tools, version: str = "") -> Server[Any]:
    """A low-level MCP server over ``tools`` (hand-written schemas: compact and stable).

    With a channel on ``tools``, the session is handed to it once the client
    has initialized (from then on the spec lets a server send notifications).
    """

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tool_list())

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            text, failed = await tools.call(params.name, dict(params.arguments or {})), False
        except ToolFailure as exc:
            text, failed = str(exc), True
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=failed)

    async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[
                types.Resource(uri=uri, name=name, description=text, mime_type="application/json")
                for uri, name, text in RESOURCES
            ]
        )

    async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        from mcp.shared.exceptions import MCPError

        uri = str(params.uri)
        try:
            text = await tools.call_resource(uri)
        except ToolFailure as exc:
            raise MCPError(code=types.INVALID_PARAMS, message=str(exc)) from None
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type="application/json", text=text)]
        )

    instructions = (
        f"You are {tools.identity or 'an agent'} on a synapse hub shared with other agents. Check inbox "
        "(or wait) for messages and ack them; claim the files you will edit before editing; release when done."
    )
    if tools.channel is not None:
        instructions += (
            ' Messages for you also arrive by themselves as <channel source="synapse" sender=... seq=...> events;'
            " those are already acked: handle them, reply with send."
        )
    server: Server[Any] = Server(
        "synapse",
        version=version,
        instructions=instructions,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
    )
    if tools.channel is not None:
        channel = tools.channel

        async def initialized(ctx: Any, params: Any) -> None:
            channel.attach(ctx.session)

        server.add_notification_handler("notifications/initialized", types.NotificationParams, initialized)
    return server


# ---------------------------------------------------------------------- transports


async def serve_stdio(tools: Tools, version: str = "", channel: bool = False) -> None:
    """Serve one assistant over stdin/stdout (how assistants launch MCP servers).

    With ``channel`` the server declares Claude Code's ``claude/channel``
    capability and pushes new mail to the session while it is open
    (:mod:`synapse_channel.mcp.channel`).
    """
    from mcp.server.stdio import stdio_server

    push = None
    if channel:
        from .channel import EXPERIMENTAL, Channel

        push = tools.channel = Channel(tools)
    server = build(tools, version)
    options = server.create_initialization_options(experimental_capabilities=EXPERIMENTAL if push else None)
    async with stdio_server() as (read, write):
        if push is None:
            await server.run(read, write, options)
            return
        loop = asyncio.ensure_future(push.run())
        try:
            await server.run(read, write, options)
        finally:
            loop.cancel()
            with contextlib.suppress(BaseException):
                await loop


class BearerGate:
    """ASGI gate: every HTTP request must carry ``Authorization: Bearer TOKEN`` (compared in constant time)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        import hmac

        if scope["type"] == "http":
            got = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(got, self.expected):
                body = b"missing or wrong bearer token: send 'Authorization: Bearer <your synapse token>'\n"
                headers = [(b"content-type", b"text/plain"), (b"www-authenticate", b'Bearer realm="synapse"')]
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def is_loopback(host: str) -> bool:
    """True for a host name or address that only this machine can reach."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def serve_http(
    tools: Tools, host: str, port: int, token: str | None, version: str = "", ready: Any = None
) -> None:
    """Serve streamable HTTP on ``host:port`` at ``/mcp``; with ``token``, only to bearers of it.

    The socket is bound here (port 0 picks a free one) and ``ready`` is called
    with the URL once it listens.
    """
    import socket

    import uvicorn

    server = build(tools, version)
    app: Any = server.streamable_http_app(host=host)
    if token:
        app = BearerGate(app, token)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(128)
    sock.setblocking(False)
    bound = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if family == socket.AF_INET6 else host
    if ready is not None:
        ready(f"http://{shown}:{bound}/mcp")
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    try:
        await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        sock.close()
