"""File-scope claims: leases on units of work, fenced by epochs.

A claim leases ``task_id`` to its owner with a file scope (``worktree`` +
``paths``); the hub refuses a second live claim whose scope overlaps. Every
grant takes the next ``epoch``, a fencing token that is strictly increasing,
journalled and never reused; a release, renewal, checkpoint or handoff that
carries a stale epoch is refused. Leases expire through a heap of deadlines.
Refusals are journalled as audit events and change no state.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ..protocol import Command, ProtocolError, number_field
from . import access, paging
from .scope_index import ScopeError, ScopeIndex, normalise_path, worktree_key

if TYPE_CHECKING:
    from .hubcore import HubCore
    from .outcome import Event, Outcome
    from .roster import Conn

DEFAULT_TTL = 3600.0
MAX_TTL = 30 * 86400.0
MAX_CLAIMS_PER_OWNER = 256
MAX_PATHS = 1000
#: Paths one ``claim_check`` may ask about (a commit of many files asks in several frames).
MAX_CHECK_PATHS = 20_000
#: Overlapping claims reported per checked path (a directory may hold many).
HOLDERS_PER_PATH = 16
OPERATIONS_KEPT = 10_000
SCOPE_FIELDS = ("worktree", "paths", "git", "path_identity")
DIGEST_EXCLUDED = frozenset({"timestamp", "client_timestamp", "auth", "signature", "token"})


def request_digest(raw: dict[str, Any]) -> str:
    """sha256 over the received frame minus volatile fields, as the 0.99 clients compute it."""
    body = {k: v for k, v in raw.items() if k not in DIGEST_EXCLUDED}
    return hashlib.sha256(
        json.dumps(body, ensure_ascii=True, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


class Claims:
    """Live claims, their scope index, the epoch counter and idempotent releases."""

    def __init__(self, max_per_owner: int = MAX_CLAIMS_PER_OWNER) -> None:
        #: Live claims one owner may hold (0: unlimited); a hub setting, not state.
        self.max_per_owner = max_per_owner
        self.reset()

    def reset(self) -> None:
        """Empty state (used by ``__init__`` and before loading a snapshot)."""
        self.live: dict[str, dict[str, Any]] = {}
        self.scope: dict[str, tuple[str, list[tuple[str, ...]]]] = {}
        self.index = ScopeIndex()
        self.epoch = 0
        self.per_owner: dict[str, int] = {}
        self.heap: list[tuple[float, int, str]] = []
        self.operations: OrderedDict[str, dict[str, Any]] = OrderedDict()

    # ------------------------------------------------------------------ state changes (apply)

    def grant(self, claim: dict[str, Any]) -> None:
        """Install a granted claim (replacing the same task's previous lease)."""
        task = claim["task_id"]
        if task in self.live:
            self.drop(task)
        wt = worktree_key(claim.get("worktree"))
        paths = [normalise_path(p, wt) for p in claim.get("paths") or []] or [()]
        self.live[task] = claim
        self.scope[task] = (wt, paths)
        self.index.add(wt, task, paths)
        self.epoch = max(self.epoch, int(claim["epoch"]))
        self.per_owner[claim["owner"]] = self.per_owner.get(claim["owner"], 0) + 1
        heapq.heappush(self.heap, (float(claim["lease_expires_at"]), int(claim["epoch"]), task))

    def drop(self, task: str) -> dict[str, Any] | None:
        """Remove a claim (release, expiry or replacement)."""
        claim = self.live.pop(task, None)
        if claim is None:
            return None
        wt, paths = self.scope.pop(task)
        self.index.remove(wt, task, paths)
        owner = claim["owner"]
        self.per_owner[owner] -= 1
        if not self.per_owner[owner]:
            del self.per_owner[owner]
        return claim

    def remember(self, key: str, digest: str, response: dict[str, Any]) -> None:
        """Keep an idempotent operation's answer for retries (bounded)."""
        self.operations[key] = {"digest": digest, "response": response}
        self.operations.move_to_end(key)
        while len(self.operations) > OPERATIONS_KEPT:
            self.operations.popitem(last=False)

    def due(self, now: float) -> list[tuple[str, int]]:
        """Claims whose lease has run out by ``now`` (skipping stale heap entries)."""
        out: dict[tuple[str, int], None] = {}  # a renewal to the same deadline pushes an equal entry: once
        while self.heap and self.heap[0][0] <= now:
            deadline, epoch, task = heapq.heappop(self.heap)
            claim = self.live.get(task)
            if claim is not None and claim["epoch"] == epoch and float(claim["lease_expires_at"]) == deadline:
                out[(task, epoch)] = None
        return list(out)

    def next_deadline(self) -> float | None:
        """When the earliest live lease runs out (None if none)."""
        while self.heap:
            deadline, epoch, task = self.heap[0]
            claim = self.live.get(task)
            if claim is not None and claim["epoch"] == epoch and float(claim["lease_expires_at"]) == deadline:
                return deadline
            heapq.heappop(self.heap)
        return None

    def dump(self) -> dict[str, Any]:
        """JSON-ready state for a snapshot."""
        return {
            "live": list(self.live.values()),
            "epoch": self.epoch,
            "operations": [[k, v] for k, v in self.operations.items()],
        }

    def load(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`dump` output."""
        self.reset()
        for claim in state["live"]:
            self.grant(claim)
        self.epoch = int(state["epoch"])
        for key, value in state["operations"]:
            self.operations[key] = value


# ---------------------------------------------------------------------- appliers


def install(core: HubCore) -> None:
    """Register the claim verbs and event appliers on ``core``."""
    core.handlers.update(
        claim=handle_claim,
        release=handle_release,
        renew=_audited(handle_renew),
        checkpoint=_audited(handle_checkpoint),
        handoff=_audited(handle_handoff),
        state_request=handle_state,
        claim_check=handle_claim_check,
    )
    claims = core.claims
    core.appliers.update(
        {
            "claim": lambda ev: claims.grant(ev.data["claim"]),
            "release": lambda ev: _apply_release(claims, ev),
            "claim_expired": lambda ev: _forget(claims, ev),
            "claim_updated": lambda ev: claims.grant(ev.data["claim"]),
            "claim_denial": lambda ev: None,
            "release_denial": lambda ev: None,
        }
    )


def _forget(claims: Claims, ev: Event) -> None:
    claims.drop(ev.data["task_id"])


def _apply_release(claims: Claims, ev: Event) -> None:
    claims.drop(ev.data["task_id"])
    op = ev.data.get("operation")
    if op:
        claims.remember(op["key"], op["digest"], op["response"])


# ---------------------------------------------------------------------- handlers


def _audited(handler: Any) -> Any:
    """Journal a refusal of ``handler`` as an audit event before it becomes an ``error`` frame."""

    def run(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
        try:
            handler(core, conn, cmd, now, out)
        except ProtocolError as exc:
            core.emit(
                out,
                "claim_denial",
                {"task_id": cmd.raw.get("task_id"), "claimant": conn.name, "verb": cmd.type, "reason_code": exc.code},
                now,
            )
            raise

    return run


def _deny(
    core: HubCore, conn: Conn, out: Outcome, now: float, task: str, code: str, message: str, **extra: Any
) -> None:
    core.emit(
        out, "claim_denial", {"task_id": task, "claimant": conn.name, "reason_code": code, "reason": message}, now
    )
    frame = core.frame("claim_denied", conn.name or "self", message, now, task_id=task, reason_code=code, **extra)
    out.send(conn.conn_id, frame)


def _holder(claim: dict[str, Any]) -> dict[str, Any]:
    """Who is in the way, as fields of ``claim_denied`` (ours; 0.99 clients read only the text)."""
    return {
        "held_by": claim["owner"],
        "held_task": claim["task_id"],
        "held_until": claim["lease_expires_at"],
        "held_paths": list(claim.get("paths") or []),
    }


def handle_claim(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    raw, owner, claims = cmd.raw, conn.name or "", core.claims
    task = raw.get("task_id") or (cmd.payload if isinstance(cmd.payload, str) else "")
    if not isinstance(task, str) or not task.strip():
        _deny(core, conn, out, now, "", "TASK_ID_REQUIRED", "A claim needs a task_id.")
        return
    held = claims.live.get(task)
    if held is not None and held["owner"] != owner:
        message = f"Task '{task}' is already claimed by {held['owner']}."
        _deny(core, conn, out, now, task, "LEASE_LIVE", message, **_holder(held))
        return
    ttl = number_field(raw, "ttl_seconds", DEFAULT_TTL)
    paths = raw.get("paths") or []
    try:
        if ttl <= 0 or ttl > MAX_TTL:
            raise ScopeError(f"ttl_seconds must be in (0, {MAX_TTL:.0f}]")
        if not isinstance(paths, list) or len(paths) > MAX_PATHS:
            raise ScopeError(f"paths must be a list of at most {MAX_PATHS} paths")
        wt = worktree_key(raw.get("worktree"))
        norm = [normalise_path(p, wt) for p in paths] or [()]
    except ScopeError as exc:
        _deny(core, conn, out, now, task, "CLAIM_DENIED", f"Task '{task}' refused: {exc}.")
        return
    clash = claims.index.conflict(wt, norm, exclude=task)
    if clash is not None:
        holder = claims.live[clash]["owner"]
        message = f"Task '{task}' file scope conflicts with '{clash}' held by {holder}."
        _deny(core, conn, out, now, task, "SCOPE_CONFLICT", message, **_holder(claims.live[clash]))
        return
    cap = claims.max_per_owner
    if held is None and cap and claims.per_owner.get(owner, 0) >= cap:
        _deny(
            core,
            conn,
            out,
            now,
            task,
            "QUOTA_EXCEEDED",
            f"{owner} already holds {cap} claims; release some first (the hub's --max-claims-per-agent).",
        )
        return
    claim = {
        "task_id": task,
        "owner": owner,
        "note": raw.get("note", ""),
        "claimed_at": now,
        "lease_expires_at": now + ttl,
        "status": "claimed",
        "data_ref": "",
        "worktree": raw.get("worktree", ""),
        "paths": paths,
        "epoch": claims.epoch + 1,
        "version": 0,
        "checkpoint": "",
        "git": raw.get("git"),
    }
    if "path_identity" in raw:
        claim["path_identity"] = raw["path_identity"]
    core.emit(out, "claim", {"claim": claim}, now)
    out.send(
        core.roster.all_ids(),
        core.frame("claim_granted", "all", f"Task '{task}' claimed by {owner}.", now, **claim),
        public=True,
    )


def _owned(core: HubCore, conn: Conn, raw: dict[str, Any], verb: str) -> tuple[str, dict[str, Any]]:
    """The caller's live claim named by ``task_id``.

    Only its owner presenting the current epoch (the fencing token it was
    granted), or an admin seat, may act on a claim: holding the owner's name
    is not enough, so a stale or impostor session cannot release live work.
    """
    task = raw.get("task_id")
    if not isinstance(task, str) or not task:
        raise ProtocolError("BAD_FIELD", f"{verb} needs a task_id")
    claim = core.claims.live.get(task)
    if claim is None:
        raise ProtocolError("NOT_CLAIMED", f"Task '{task}' is not currently claimed.")
    admin = access.is_admin(conn)
    if claim["owner"] != conn.name and not admin:
        raise ProtocolError("NOT_OWNER", f"Task '{task}' is owned by {claim['owner']}, not {conn.name}.")
    epoch = raw.get("epoch")
    if epoch is None and not admin:
        raise ProtocolError(
            "EPOCH_REQUIRED",
            f"Task '{task}': {verb} needs the claim's epoch (the fencing token from claim_granted; "
            "after a handoff see 'synapse state' and pass --epoch N).",
        )
    if epoch is not None and epoch != claim["epoch"]:
        raise ProtocolError("STALE_EPOCH", f"Task '{task}': epoch {epoch} is stale (current {claim['epoch']}).")
    return task, claim


def handle_release(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    raw = cmd.raw
    op_id = raw.get("idem_key") if isinstance(raw.get("idem_key"), str) else ""
    digest = request_digest(raw)
    key = f"{conn.name}\x00release\x00{op_id}" if op_id else ""
    if key and key in core.claims.operations:
        previous = core.claims.operations[key]
        if previous["digest"] == digest:
            out.send(conn.conn_id, previous["response"])  # a retry: same answer, nothing changes
            return
    task = raw.get("task_id") if isinstance(raw.get("task_id"), str) else str(cmd.payload or "")
    try:
        task, claim = _owned(core, conn, {**raw, "task_id": task}, "release")
    except ProtocolError as exc:
        core.emit(out, "release_denial", {"task_id": task, "claimant": conn.name, "reason_code": exc.code}, now)
        out.send(
            conn.conn_id,
            core.frame(
                "release_denied",
                conn.name or "self",
                str(exc),
                now,
                task_id=task,
                reason_code=exc.code,
                release_operation_id=op_id,
                request_digest=digest,
            ),
        )
        return
    response = core.frame(
        "release_granted",
        "all",
        f"Task '{task}' released by {conn.name}.",
        now,
        task_id=task,
        owner=conn.name,
        receipt=_receipt(raw, task, conn.name or ""),
        release_operation_id=op_id,
        request_digest=digest,
    )
    operation = {"key": key, "digest": digest, "response": response} if key else None
    core.emit(out, "release", {"task_id": task, "epoch": claim["epoch"], "operation": operation}, now)
    out.send(core.roster.all_ids(), response, public=True)


def _receipt(raw: dict[str, Any], task: str, owner: str) -> dict[str, Any]:
    def listed(name: str) -> list[Any]:
        value = raw.get(name)
        return value if isinstance(value, list) else []

    evidence = listed("evidence")
    return {
        "task_id": task,
        "owner": owner,
        "released": True,
        "evidence": evidence,
        "artifacts": listed("artifacts"),
        "known_failures": listed("known_failures"),
        "changed_files": listed("changed_files"),
        "generated_artifacts": listed("generated_artifacts"),
        "approvals": listed("approvals"),
        "epistemic_status": "reported" if evidence else "unsupported",
        "epistemic_reasons": ["evidence as reported by the owner"] if evidence else ["no evidence given"],
    }


def _update(core: HubCore, out: Outcome, now: float, claim: dict[str, Any], ftype: str, text: str) -> None:
    core.emit(out, "claim_updated", {"claim": claim}, now)
    out.send(core.roster.all_ids(), core.frame(ftype, "all", text, now, **claim), public=True)


def handle_renew(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    task, claim = _owned(core, conn, cmd.raw, "renew")
    ttl = number_field(cmd.raw, "ttl_seconds", DEFAULT_TTL)
    if ttl <= 0 or ttl > MAX_TTL:
        raise ProtocolError("BAD_FIELD", f"ttl_seconds must be in (0, {MAX_TTL:.0f}]")
    renewed = {**claim, "lease_expires_at": now + ttl, "version": claim["version"] + 1}
    _update(core, out, now, renewed, "claim_renewed", f"Task '{task}' lease renewed by {conn.name}.")


def handle_checkpoint(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    task, claim = _owned(core, conn, cmd.raw, "checkpoint")
    note = cmd.raw.get("checkpoint", cmd.payload)
    if not isinstance(note, str):
        raise ProtocolError("BAD_FIELD", "checkpoint must be text")
    updated = {**claim, "checkpoint": note, "version": claim["version"] + 1}
    _update(core, out, now, updated, "claim_checkpointed", f"Task '{task}' checkpointed by {conn.name}.")


def handle_handoff(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    task, claim = _owned(core, conn, cmd.raw, "handoff")
    to = cmd.raw.get("to")
    if not isinstance(to, str) or not to:
        raise ProtocolError("BAD_FIELD", "handoff needs 'to'")
    online = {n.removesuffix("-rx") for n in core.roster.names}
    if to not in online:
        raise ProtocolError("NOT_ONLINE", f"cannot hand '{task}' to {to}: not online")
    moved = {
        **claim,
        "owner": to,
        "epoch": core.claims.epoch + 1,
        "version": claim["version"] + 1,
        "handoff_from": conn.name,
    }
    _update(core, out, now, moved, "claim_handoff", f"Task '{task}' handed from {conn.name} to {to}.")


def expire(core: HubCore, now: float, out: Outcome) -> None:
    """Journal and announce every lease that ran out by ``now``."""
    for task, epoch in core.claims.due(now):
        owner = core.claims.live[task]["owner"]
        core.emit(out, "claim_expired", {"task_id": task, "epoch": epoch}, now)
        out.send(
            core.roster.all_ids(),
            core.frame(
                "claim_expired",
                "all",
                f"Task '{task}' lease expired ({owner}).",
                now,
                task_id=task,
                owner=owner,
                epoch=epoch,
            ),
            public=True,
        )


def handle_state(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    raw = cmd.raw
    extra: dict[str, Any] = {}
    if raw.get("request_id") is not None:
        extra["request_id"] = raw["request_id"]
    confirm = raw.get("release_confirmation")
    if isinstance(confirm, dict):
        extra["release_confirmation"] = _confirmation(core, conn, confirm)
        out.send(conn.conn_id, core.frame("state_snapshot", conn.name or "self", "Release confirmation", now, **extra))
        return
    online = set(core.roster.names)
    claims = []
    for claim in core.claims.live.values():
        owner = claim["owner"]
        live = owner in online or f"{owner}-rx" in online
        since = core.roster.last_left.get(owner, claim["claimed_at"])
        offline = 0.0 if live else round(max(0.0, now - since), 3)
        claims.append({**claim, "holder_online": live, "holder_offline_seconds": offline})
    agents: list[dict[str, Any]] = [{"agent": n} for n in sorted(online)]
    if paging.encoded_size(agents) > core.max_frame_bytes // 4:
        extra["agents_count"] = len(agents)  # a huge roster: `who` has the names
        agents = []
    snapshot = {
        "active_claims": [],
        "agents": agents,
        "resources": [],
        "generated_at": now,
        "dead_letters": [],
        "pending_relay_approvals": [],
    }
    frame = core.frame("state_snapshot", conn.name or "self", "State snapshot", now, snapshot=snapshot, **extra)
    room = paging.room_for(frame, core.max_frame_bytes)
    page, more = paging.keyed_page(claims, "task_id", paging.after_field(raw), room)
    snapshot["active_claims"] = page
    if more:
        frame.update(has_more=True, cursor=page[-1].get("task_id"))  # ask again with after=cursor
    out.send(conn.conn_id, frame)


def _confirmation(core: HubCore, conn: Conn, confirm: dict[str, Any]) -> dict[str, Any]:
    op_id = confirm.get("operation_id")
    echo = {"task_id": confirm.get("task_id"), "operation_id": op_id, "request_digest": confirm.get("request_digest")}
    done = core.claims.operations.get(f"{conn.name}\x00release\x00{op_id}")
    if done is not None and done["digest"] == confirm.get("request_digest"):
        return {"status": "confirmed", **echo, "response": done["response"]}
    return {"status": "unknown", **echo}


def handle_claim_check(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    """``claim_check``: which live claims overlap these paths (read-only, answered from the scope index).

    Every overlapping claim is reported, the caller's own included, so a
    client can tell "someone else's" from "mine" from "unclaimed". The reply
    is cut by bytes: ``checked`` says how many of the asked paths it fully
    covers; with ``has_more`` the client asks again for the rest.
    """
    raw = cmd.raw
    paths = raw.get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise ProtocolError("BAD_FIELD", "claim_check needs 'paths', a list of path strings")
    if len(paths) > MAX_CHECK_PATHS:
        raise ProtocolError("BAD_FIELD", f"claim_check takes at most {MAX_CHECK_PATHS} paths per frame")
    try:
        wt = worktree_key(raw.get("worktree"))
        norm = [normalise_path(p, wt) for p in paths]
    except ScopeError as exc:
        raise ProtocolError("BAD_PATH", f"claim_check: {exc}") from None
    extra: dict[str, Any] = {}
    if isinstance(raw.get("request_id"), str | int):
        extra["request_id"] = raw["request_id"]
    frame = core.frame(
        "claim_check_result", conn.name or "self", "Claim check", now, worktree=raw.get("worktree") or "", **extra
    )
    frame.update(conflicts=[], checked=0)
    room = paging.room_for(frame, core.max_frame_bytes)
    online = core.roster.names
    live, index = core.claims.live, core.claims.index
    conflicts: list[dict[str, Any]] = []
    used, checked = 2, 0
    for raw_path, path in zip(paths, norm, strict=True):
        entries = []
        for task in index.holders(wt, path, HOLDERS_PER_PATH):
            claim = live[task]
            owner = claim["owner"]
            entries.append(
                {
                    "path": raw_path,
                    "task_id": task,
                    "owner": owner,
                    "epoch": claim["epoch"],
                    "lease_expires_at": claim["lease_expires_at"],
                    "holder_online": owner in online or f"{owner}-rx" in online,
                }
            )
        cost = sum(paging.encoded_size(e) + 1 for e in entries)
        if checked and used + cost > room:
            break
        conflicts.extend(entries)
        used += cost
        checked += 1
    frame.update(conflicts=conflicts, checked=checked)
    if checked < len(paths):
        frame["has_more"] = True  # ask again with paths[checked:]
    out.send(conn.conn_id, frame)
