"""Plain HTTP on the hub's port: /healthz, /metrics (Prometheus text), access by seat, WebSocket unaffected."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from synapse_channel.api import Session
from synapse_channel.hub.server import Hub
from synapse_channel.seats import SeatStore

from .conftest import TIMEOUT, HubFactory, RawFactory, open_raw

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> Samples:
    """A strict little parser of the Prometheus text format: every sample belongs to a declared family."""
    assert text.endswith("\n")
    declared: dict[str, str] = {}
    helped: set[str] = set()
    samples: Samples = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split(" ", 3)[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            assert name not in declared, f"family {name} declared twice"
            declared[name] = kind
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        family = re.sub(r"_(total|bucket|sum|count)$", "", name)
        assert family in declared and family in helped, f"{name} has no # TYPE/# HELP"
        if declared[family] == "counter":
            assert name.endswith("_total"), name
        pairs = frozenset(_LABEL.findall(labels or ""))
        key = (name, pairs)
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = float(value)
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def http(
    hub: Hub, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    """One HTTP/1.1 request on a fresh socket: (status, headers lower-cased, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{hub.port}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), TIMEOUT)  # the hub closes after its answer
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.decode().partition("\r\n\r\n")
    status_line, *header_lines = head.split("\r\n")
    got = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split(" ")[1]), got, body


async def scrape(hub: Hub, **kw: Any) -> Samples:
    status, headers, body = await http(hub, "/metrics", **kw)
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert headers["cache-control"] == "no-store"
    return parse_exposition(body)


async def test_healthz_answers_200_with_a_small_secret_free_body(hub: Hub) -> None:
    status, headers, body = await http(hub, "/healthz")
    assert status == 200 and headers["cache-control"] == "no-store"
    assert headers["content-type"] == "application/json"
    data = json.loads(body)
    assert data["ok"] is True and data["hub_id"] == hub.core.hub_id
    assert isinstance(data["uptime_seconds"], float) and data["uptime_seconds"] >= 0
    assert set(data) == {"ok", "hub_id", "uptime_seconds"}


async def test_metrics_parse_and_move_with_traffic(hub: Hub, raw: RawFactory) -> None:
    before = await scrape(hub)
    assert sample(before, "synapse_hub_info", hub_id=hub.core.hub_id) == 1
    assert sample(before, "synapse_claims_live") == 0
    assert sample(before, "synapse_db_bytes") > 0
    assert sample(before, "synapse_auth_refusals_total", door="websocket") == 0

    agent = await raw("shop/api")
    await raw("shop/ops")  # its join reaches shop/api through the presence batcher
    await agent.expect("presence_update")
    joined = await scrape(hub)  # batched presence frames are counted too
    assert sample(joined, "synapse_frames_out_total", type="presence_update") >= 1
    await agent.chat_seq("shop/web", "for later")  # shop/web is offline: the mailbox keeps it
    await agent.send("claim", payload="API-1", task_id="API-1", paths=["src/api/"], worktree="/w")
    await agent.expect("claim_granted")
    async with Session("shop/db", uri=hub.uri) as asker:
        await asker.file_question("ship it?")
    await agent.send("some_unknown_verb")
    await agent.expect("error")
    await agent.sync()

    after = await scrape(hub)
    frames_in = "synapse_frames_in_total"
    assert sample(after, frames_in, type="chat") == sample(before, frames_in, type="chat") + 1
    assert sample(after, frames_in, type="claim") >= 1
    unknown = sample(after, frames_in, type="other") + sample(after, frames_in, type="invalid")
    assert unknown >= 1 and not any(("type", "some_unknown_verb") in labels for _, labels in after)
    assert sample(after, "synapse_frames_out_total", type="claim_granted") >= 1
    assert sample(after, "synapse_frames_out_total", type="welcome") >= 1
    assert sample(after, "synapse_connections") >= 1
    assert sample(after, "synapse_claims_live") == 1
    assert sample(after, "synapse_mailbox_pending_messages") == 1
    assert sample(after, "synapse_journal_seq") > sample(before, "synapse_journal_seq")
    commits = sample(after, "synapse_journal_commit_seconds_count")
    assert commits > sample(before, "synapse_journal_commit_seconds_count")
    assert sample(after, "synapse_journal_commit_seconds_bucket", le="+Inf") == commits
    assert sample(after, "synapse_event_loop_lag_seconds") >= 0
    assert sample(after, "synapse_attention_open") == 1


async def test_unknown_paths_other_methods_and_the_root_answer_plainly(hub: Hub) -> None:
    status, headers, _ = await http(hub, "/nope")
    assert status == 404 and headers["cache-control"] == "no-store"
    status, headers, _ = await http(hub, "/metrics", method="POST", headers={"Content-Length": "0"})
    assert status == 405 and headers["allow"] == "GET" and headers["cache-control"] == "no-store"
    status, headers, _ = await http(hub, "/healthz", method="DELETE")
    assert status == 405
    status, headers, body = await http(hub, "/")
    assert status == 426 and "WebSocket" in body and headers["cache-control"] == "no-store"
    status, _, _ = await http(hub, "/healthz?probe=1")
    assert status == 200
    samples = await scrape(hub)
    assert sample(samples, "synapse_http_requests_total", route="other", status="404") == 1
    assert sample(samples, "synapse_http_requests_total", route="metrics", status="405") == 1
    assert sample(samples, "synapse_http_requests_total", route="healthz", status="200") == 1


async def seated(hub_factory: HubFactory, tmp_path: Path) -> tuple[Hub, dict[str, str]]:
    with SeatStore(tmp_path / "hub.db") as store:
        secrets = {
            "agent": store.add("shop/api", "agent"),
            "observer": store.add("ops/watch", "observer"),
            "admin": store.add("ops/boss", "admin"),
        }
    return await hub_factory(), secrets


async def test_seated_metrics_need_an_observer_or_admin_seat(
    hub_factory: HubFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hub, secrets = await seated(hub_factory, tmp_path)
    status, headers, _ = await http(hub, "/metrics")
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert headers["cache-control"] == "no-store"
    status, _, _ = await http(hub, "/metrics", headers={"Authorization": "Bearer synseat_nope_wrong"})
    assert status == 401
    status, _, _ = await http(hub, "/metrics", headers={"Authorization": f"Basic {secrets['observer']}"})
    assert status == 401  # only a bearer credential counts
    status, _, body = await http(hub, "/metrics", headers={"Authorization": f"Bearer {secrets['agent']}"})
    assert status == 403 and "observer or admin" in body
    for role in ("observer", "admin"):
        samples = await scrape(hub, headers={"Authorization": f"Bearer {secrets[role]}"})
        assert sample(samples, "synapse_auth_refusals_total", door="http") == 3
    status, _, _ = await http(hub, "/healthz")
    assert status == 200  # the probe needs no seat and says nothing secret
    for secret in secrets.values():
        assert all(secret not in r.getMessage() for r in caplog.records)
    audit = [(r["kind"]) for r in await _audit_rows(hub)]
    assert audit.count("auth_denied") == 3 and audit.count("access_denied") == 1


async def _audit_rows(hub: Hub) -> list[dict[str, Any]]:
    await hub.audit("probe_marker")  # wait for every earlier audit to be durable
    import sqlite3

    con = sqlite3.connect(hub.config.db)
    try:
        rows = con.execute("SELECT kind, data FROM events ORDER BY seq").fetchall()
    finally:
        con.close()
    return [{"kind": kind, **json.loads(data)} for kind, data in rows if kind != "probe_marker"]


async def test_websocket_clients_are_unaffected_by_the_http_surface(hub_factory: HubFactory, tmp_path: Path) -> None:
    hub, secrets = await seated(hub_factory, tmp_path)
    await http(hub, "/metrics")
    for path in ("", "/", "/metrics", "/anything"):  # a WebSocket upgrade on any path still connects
        client = await open_raw(hub.uri + path, "shop/api")
        await client.send("heartbeat", payload="online", token=secrets["agent"])
        welcome = await client.expect("welcome")
        assert welcome["seat"]["seat"] == "shop/api"
        await client.close()
    stranger = await open_raw(hub.uri, "shop/api")
    await stranger.send("heartbeat", payload="online")
    assert (await stranger.expect("auth_denied"))["type"] == "auth_denied"
    await stranger.close()
    samples = await scrape(hub, headers={"Authorization": f"Bearer {secrets['admin']}"})
    assert sample(samples, "synapse_auth_refusals_total", door="websocket") == 1
