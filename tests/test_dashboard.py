"""The web dashboard: one-time login, session cookie, pages, and the live view in a real headless Chromium.

The hub, its SQLite file and the ``synapse`` CLI are real; the browser is the
Debian ``chromium`` driven by Playwright (``executable_path``; Playwright's
own browser download is never used). Without them the browser tests skip
locally and fail under ``CI=true``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from synapse_channel.hub.server import Hub
from synapse_channel.seats import SeatStore

from .conftest import TIMEOUT, HubFactory, Raw, RawFactory, finish, open_raw, open_ws, run_cli, start_cli
from .test_http import http

CHROMIUM = os.environ.get("SYNAPSE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
MS = TIMEOUT * 1000
DOCS = Path(__file__).resolve().parent.parent / "docs"


async def login_url(hub: Hub, *args: str) -> str:
    """A one-time link from the real ``synapse dashboard --print-url``."""
    code, out, err = await run_cli("dashboard", "--print-url", "--uri", hub.uri, *args)
    assert code == 0, err
    url = out.strip()
    assert url.startswith(f"http://127.0.0.1:{hub.port}/dashboard/login?nonce=")
    return url


async def seated(hub_factory: HubFactory, tmp_path: Path) -> tuple[Hub, dict[str, str]]:
    with SeatStore(tmp_path / "hub.db") as store:
        secrets = {
            "agent": store.add("shop/api", "agent"),
            "observer": store.add("ops/watch", "observer"),
            "admin": store.add("ops/boss", "admin"),
        }
    return await hub_factory(), secrets


def cookie_of(headers: dict[str, str]) -> str:
    return headers["set-cookie"].split(";", 1)[0]


# ---------------------------------------------------------------------- plain HTTP


async def test_no_page_without_a_session_on_a_seated_hub(hub_factory: HubFactory, tmp_path: Path) -> None:
    hub, secrets = await seated(hub_factory, tmp_path)
    for path in ("/dashboard", "/dashboard/app.js", "/dashboard/app.css", "/dashboard/session"):
        status, headers, body = await http(hub, path)
        assert status == 401, (path, body)
        assert "synapse dashboard" in body
        assert headers["cache-control"] == "no-store"
        # a seat's bearer secret is for /metrics, not a way round the login
        status, _, _ = await http(hub, path, headers={"Authorization": f"Bearer {secrets['admin']}"})
        assert status == 401
    status, _, _ = await http(hub, "/dashboard", headers={"Cookie": "synapse_dash=forged"})
    assert status == 401


async def test_the_open_hub_also_wants_the_login(hub: Hub) -> None:
    status, _, _ = await http(hub, "/dashboard")
    assert status == 401  # a page another site reaches by DNS rebinding carries no cookie


async def test_a_nonce_works_once_and_sets_a_strict_httponly_cookie(
    hub_factory: HubFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hub, secrets = await seated(hub_factory, tmp_path)
    code, out, err = await run_cli(
        "dashboard", "--json", "--uri", hub.uri, "--name", "ops/watch", "--token", secrets["observer"]
    )
    assert code == 0, out + err
    reply = json.loads(out)
    url = urlsplit(reply["url"])
    nonce = url.query.removeprefix("nonce=")
    path = f"{url.path}?{url.query}"
    status, headers, _ = await http(hub, path)
    assert status == 303
    assert headers["location"] == "/dashboard"  # the page's URL holds no secret
    cookie = headers["set-cookie"]
    flags = {f.strip().split("=", 1)[0].lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path"} <= flags
    assert "SameSite=Strict" in cookie and "Path=/" in cookie
    assert headers["referrer-policy"] == "no-referrer"
    assert nonce not in cookie and secrets["observer"] not in cookie
    status, _, body = await http(hub, path)
    assert status == 401 and "already used" in body  # once only
    status, page_headers, page = await http(hub, "/dashboard", headers={"Cookie": cookie_of(headers)})
    assert status == 200 and "<title>synapse dashboard</title>" in page
    assert "frame-ancestors 'none'" in page_headers["content-security-policy"]
    assert page_headers["content-type"].startswith("text/html")
    status, _, me = await http(hub, "/dashboard/session", headers={"Cookie": cookie_of(headers)})
    assert status == 200
    assert json.loads(me)["role"] == "observer" and json.loads(me)["can_answer"] is False
    status, stray, body = await http(hub, "/dashboard/logout")  # a link elsewhere: no cookie comes with it
    assert (status, body.strip()) == (200, "not logged in") and "set-cookie" not in stray
    status, _, me = await http(hub, "/dashboard/session", headers={"Cookie": cookie_of(headers)})
    assert status == 200  # still logged in
    status, out, _ = await http(hub, "/dashboard/logout", headers={"Cookie": cookie_of(headers)})
    assert status == 200 and "set-cookie" in out
    status, _, _ = await http(hub, "/dashboard", headers={"Cookie": cookie_of(headers)})
    assert status == 401
    for record in caplog.records:
        assert nonce not in record.getMessage() and secrets["observer"] not in record.getMessage()


async def test_an_agent_seat_gets_no_login_link(hub_factory: HubFactory, tmp_path: Path) -> None:
    hub, secrets = await seated(hub_factory, tmp_path)
    code, out, err = await run_cli(
        "dashboard", "--print-url", "--uri", hub.uri, "--name", "shop/api", "--token", secrets["agent"]
    )
    assert code == 1
    assert "agent seat" in out + err and "Traceback" not in err
    assert "nonce" not in out


async def test_the_cookie_socket_checks_origin_and_name(hub_factory: HubFactory, tmp_path: Path) -> None:
    hub, secrets = await seated(hub_factory, tmp_path)
    url = urlsplit(await login_url(hub, "--name", "ops/boss", "--token", secrets["admin"]))
    _, headers, _ = await http(hub, f"{url.path}?{url.query}")
    cookie = cookie_of(headers)
    _, _, me = await http(hub, "/dashboard/session", headers={"Cookie": cookie})
    name = json.loads(me)["name"]
    origin = f"http://127.0.0.1:{hub.port}"
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:  # another site's page
        await open_ws(hub.uri, additional_headers={"Cookie": cookie}, origin="http://evil.example")
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        await open_ws(hub.uri, additional_headers={"Cookie": "synapse_dash=nope"}, origin=origin)
    assert hub.metrics.auth_refusals.counts["dashboard"] == 2  # synapse_auth_refusals_total{door="dashboard"}
    ws = await open_ws(hub.uri, additional_headers={"Cookie": cookie}, origin=origin)
    page = Raw(ws, f"{name}-t1")
    await page.send("heartbeat", payload="online", quiet=True)
    await page.expect("welcome")
    await page.send("attention_request")
    await page.expect("attention_snapshot")
    await page.close()
    other = Raw(await open_ws(hub.uri, additional_headers={"Cookie": cookie}, origin=origin), "ops/boss")
    await other.send("heartbeat", payload="online")
    await other.expect("auth_denied")
    code, _ = await other.closed()
    assert code == 4010


async def test_revoking_the_seat_ends_the_session_and_its_socket(hub_factory: HubFactory, tmp_path: Path) -> None:
    hub, secrets = await seated(hub_factory, tmp_path)
    url = urlsplit(await login_url(hub, "--name", "ops/watch", "--token", secrets["observer"]))
    _, headers, _ = await http(hub, f"{url.path}?{url.query}")
    cookie = cookie_of(headers)
    _, _, me = await http(hub, "/dashboard/session", headers={"Cookie": cookie})
    name = json.loads(me)["name"]
    assert name.startswith("ops/watch~dash-")  # the seat's own identity: who shows whose page it is
    origin = f"http://127.0.0.1:{hub.port}"
    page = Raw(await open_ws(hub.uri, additional_headers={"Cookie": cookie}, origin=origin), f"{name}-t1")
    await page.send("heartbeat", payload="online", quiet=True)
    await page.expect("welcome")
    await page.sync()
    with SeatStore(tmp_path / "hub.db") as store:
        store.revoke("ops/watch")
    code, _ = await page.closed()
    assert code == 4010
    status, _, _ = await http(hub, "/dashboard", headers={"Cookie": cookie})
    assert status == 401


async def test_a_web_page_cannot_open_a_hub_socket(hub: Hub) -> None:
    """Another site's page (or one that rebinds its name to 127.0.0.1) gets 403, not a socket to act through.

    Browsers always send ``Origin``; the CLI, plugins and the 0.99 clients never do, and still connect.
    """
    from websockets.exceptions import InvalidStatus

    for origin in ("http://evil.example", f"http://127.0.0.1:{hub.port}", "null"):
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(hub.uri, origin=origin)
        assert refused.value.response.status_code == 403, origin
    plain = Raw(await open_ws(hub.uri), "plain")
    await plain.send("heartbeat", payload="online", quiet=True)
    await plain.expect("welcome")
    await plain.close()
    code, _, err = await run_cli("send", "--uri", hub.uri, "--target", "x", "still works")
    assert code == 0, err


# ---------------------------------------------------------------------- the browser


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A real headless Chromium (the Debian package) under Playwright."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        async_playwright = None  # type: ignore[assignment]
    from .conftest import needs

    needs(async_playwright is not None, "Playwright for Python (the test extra)")
    needs(os.path.exists(CHROMIUM), "chromium (Debian package; make ci-deps)")
    assert async_playwright is not None
    async with async_playwright() as pw:
        chrome = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chrome
        finally:
            await chrome.close()


Open = Callable[..., Awaitable[Any]]


@pytest.fixture
def open_page(browser: Any) -> Open:
    async def open_(url: str, **context: Any) -> Any:
        ctx = await browser.new_context(**context)
        page = await ctx.new_page()
        await page.goto(url)
        await page.locator("#status.on").wait_for(timeout=MS)
        return page

    return open_


@pytest.mark.browser
async def test_the_browser_logs_in_and_sees_the_fleet_live(hub: Hub, raw: RawFactory, open_page: Open) -> None:
    from playwright.async_api import expect

    url = await login_url(hub, "--name", "human/ana")
    page = await open_page(url)
    assert page.url == f"http://127.0.0.1:{hub.port}/dashboard"  # the nonce is gone from the address bar
    cookies = await page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [("synapse_dash", True, "Strict")]

    agent = await raw("api/claude-1")
    await expect(page.locator('[data-agent="api/claude-1"]')).to_be_visible(timeout=MS)

    await agent.send("claim", task_id="T-1", paths=["src/a.py", "src/lib/"], worktree="/w/app", ttl_seconds=600)
    claim = page.locator('.claim[data-task="T-1"]')
    await expect(claim).to_contain_text("api/claude-1", timeout=MS)
    await expect(claim).to_contain_text("epoch 1")
    await expect(claim.locator(".ttl")).to_contain_text("m")  # a live countdown: 9m 59s, ...
    await expect(page.locator("#claims .tree h3")).to_have_text("/w/app")

    await agent.send("ledger_task", task_id="T-2", title="design")
    await agent.send("ledger_task", task_id="T-3", title="build", depends_on=["T-2"])
    await expect(page.locator('.task[data-task="T-3"]')).to_contain_text("after T-2", timeout=MS)
    await expect(page.locator('.task[data-task="T-2"]')).to_have_class("task open")

    await agent.send("chat", "all", "hello from the fleet")
    await expect(page.locator("#stream")).to_contain_text("hello from the fleet", timeout=MS)
    await page.fill("#filter", "nothing-like-this")
    await expect(page.locator("#stream")).to_contain_text("nothing matches")
    await page.fill("#filter", "fleet")
    await expect(page.locator("#stream")).to_contain_text("hello from the fleet")
    await expect(page.locator('[data-health="connections"]')).not_to_be_empty(timeout=MS)

    await shoot(page, "dashboard.png", width=1280, height=900)
    await agent.send("release", task_id="T-1", epoch=1)
    await expect(claim).to_have_count(0, timeout=MS)
    await expect(page.locator("#claims")).to_contain_text("no live claims")
    await shoot(page, "dashboard-phone.png", width=390, height=844)


async def shoot(page: Any, name: str, *, width: int, height: int) -> None:
    """Refresh a screenshot in docs/ (only when asked: SYNAPSE_SCREENSHOTS=1)."""
    if os.environ.get("SYNAPSE_SCREENSHOTS") != "1":
        return
    await page.set_viewport_size({"width": width, "height": height})
    await page.screenshot(path=str(DOCS / name), full_page=True)


@pytest.mark.browser
async def test_a_question_is_answered_in_the_page_and_the_agent_wakes(hub: Hub, open_page: Open) -> None:
    from playwright.async_api import expect

    page = await open_page(await login_url(hub, "--name", "human/ana"))
    asker = await start_cli(
        "ask-human", "Deploy 4.2 now?", "--choices", "yes,no", "--uri", hub.uri, "--name", "api/claude-1"
    )
    question = page.locator(".question")
    await expect(question).to_contain_text("Deploy 4.2 now?", timeout=MS)
    await expect(page.locator("#badge")).to_have_text("1")
    await shoot(page, "dashboard-question.png", width=1280, height=700)
    await question.get_by_role("button", name="yes").click()
    code, out, err = await finish(asker)
    assert code == 0, err
    assert out.strip() == "yes"
    # the answer also waits in the agent's mailbox: a plain `synapse wait` wakes with it
    code, out, err = await run_cli("wait", "--uri", hub.uri, "--name", "api/claude-1", "--timeout", "10")
    assert code == 0, err
    assert "yes" in out and "answer to q-1" in out
    await expect(page.locator("#questions")).to_contain_text("no open questions", timeout=MS)
    await expect(page.locator("#badge")).to_be_hidden()


@pytest.mark.browser
async def test_an_observer_sees_questions_but_cannot_answer(
    hub_factory: HubFactory, tmp_path: Path, open_page: Open
) -> None:
    from playwright.async_api import expect

    hub, secrets = await seated(hub_factory, tmp_path)
    page = await open_page(await login_url(hub, "--name", "ops/watch", "--token", secrets["observer"]))
    agent = await open_raw(hub.uri, "shop/api")
    await agent.send("heartbeat", payload="online", token=secrets["agent"])
    await agent.send("attention_ask", question="Ship it?")
    filed = await agent.expect("attention_filed")
    qid = filed["question"]["id"]
    question = page.locator(f'.question[data-question="{qid}"]')
    await expect(question).to_contain_text("Ship it?", timeout=MS)
    await expect(page.locator("#attention-ro")).to_be_visible()
    await expect(question.locator("button, input")).to_have_count(0)
    # not even by hand: the hub refuses the frame from an observer's socket
    await page.evaluate(
        "qid => window.synapseDashboard.send('attention_answer', {question_id: qid, answer: 'yes'})", qid
    )
    await expect(page.locator("#toast")).to_contain_text("observer", timeout=MS)
    await agent.send("attention_request", question_id=qid)
    snap = await agent.expect("attention_snapshot")
    assert [q["status"] for q in snap["questions"]] == ["open"]
    await agent.close()


@pytest.mark.browser
async def test_a_message_appears_in_the_stream_and_is_found_by_search(hub: Hub, open_page: Open) -> None:
    """Enter asks the hub (search_request over the page's socket); typing still filters the live stream."""
    from playwright.async_api import expect

    agent = await open_raw(hub.uri, "api/claude-1")
    await agent.send("heartbeat", payload="online")
    await agent.send("chat", "all", "an early note on the tokenizer, before the page was open")
    await agent.sync()
    page = await open_page(await login_url(hub, "--name", "human/ana"))
    await agent.send("chat", "all", "the parser broke on tabs")
    await agent.send("chat", "api/carol", "parser secret for carol only")
    stream = page.locator("#stream")
    await expect(stream).to_contain_text("the parser broke on tabs", timeout=MS)

    await page.fill("#filter", "parser")
    await expect(page.locator("#search")).to_be_hidden()  # typing alone filters the stream, no request
    await expect(stream).to_contain_text("the parser broke on tabs")
    await page.press("#filter", "Enter")
    results = page.locator("#results .hit")
    await expect(results).to_have_count(1, timeout=MS)
    await expect(results.first).to_contain_text("api/claude-1 → all: the parser broke on tabs")
    await expect(results.first.locator("mark")).to_have_text("parser")
    await expect(page.locator("#search-status")).to_contain_text("1 match for “parser”")
    await expect(page.locator("#results")).not_to_contain_text("carol only")  # another identity's mail

    await page.fill("#filter", "tokeni*")
    await expect(page.locator("#search")).to_be_hidden()
    await page.press("#filter", "Enter")
    await expect(results).to_have_count(1, timeout=MS)
    await expect(results.first.locator("mark")).to_have_text("tokenizer")

    await page.fill("#filter", "parser AND (")
    await page.press("#filter", "Enter")
    status = page.locator("#search-status")
    await expect(status).to_contain_text("bad search query", timeout=MS)
    await expect(status).to_contain_text('quote words with punctuation: "foo-bar"')
    await expect(results).to_have_count(0)
    await page.press("#filter", "Escape")
    await expect(page.locator("#search")).to_be_hidden()
    await expect(stream).to_contain_text("the parser broke on tabs")
    await page.fill("#filter", "tabs")
    await page.press("#filter", "Enter")
    await expect(results).to_have_count(1, timeout=MS)  # the socket stayed usable after the refusal
    await agent.close()


@pytest.mark.browser
async def test_views_bigger_than_a_frame_arrive_in_pages_and_all_are_shown(
    hub_factory: HubFactory, open_page: Open
) -> None:
    """Under a 16 KiB frame budget the roster, claims and board come in several pages: the page joins them."""
    from playwright.async_api import expect

    from synapse_channel.api import Session

    budget = 16 * 1024
    hub = await hub_factory(max_frame_bytes=budget, max_queue_bytes=64 * budget)
    pad = "x" * 60
    agents: list[Raw] = []
    for i in range(160):
        agents.append(await open_raw(hub.uri, f"fleet/agent-{i:03d}-{pad}"))
        await agents[-1].send("heartbeat", payload="online", protocol_version=7)
        await agents[-1].expect("welcome")
    async with Session("fleet/lead", uri=hub.uri) as lead:
        for i in range(90):
            await lead.claim(f"T-{i:03d}-{pad}", [f"src/mod{i}/"], worktree="/w/app", ttl=900)
            await lead.declare_task(f"B-{i:03d}-{pad}", f"build part {i} {pad}")
        async with Session("fleet/probe", uri=hub.uri) as probe:  # the hub really pages these views
            first = await probe.request(probe.frame("who_request"), lambda f: f.get("type") == "who_snapshot")
            assert first.get("has_more") is True
        page = await open_page(await login_url(hub, "--name", "human/ana"))
        last = f"fleet/agent-159-{pad}"
        await expect(page.locator(f'[data-agent="{last}"]')).to_be_visible(timeout=MS)
        assert await page.locator('[data-agent^="fleet/agent-"]').count() == len(agents)
        await expect(page.locator(f'.claim[data-task="T-089-{pad}"]')).to_be_visible(timeout=MS)
        assert await page.locator(".claim").count() == 90
        await expect(page.locator(f'.task[data-task="B-089-{pad}"]')).to_be_visible(timeout=MS)
        assert await page.locator(".task").count() == 90
    for agent in agents:
        await agent.ws.close()
