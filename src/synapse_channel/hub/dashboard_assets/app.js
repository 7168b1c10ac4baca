// The synapse dashboard: one WebSocket to the hub that served this page, no polling.
// The session cookie authenticates the socket; the page then speaks the wire
// protocol like any read-only client: request verbs once, broadcasts after.
"use strict";
(() => {
  const $ = (sel) => document.querySelector(sel);
  const view = { who: null, claims: [], skew: 0, board: [], questions: [], messages: [], health: null };
  let me = null, name = "", ws = null, retry = 500;
  // A search the hub runs over its journal (Enter in the filter box); typing only filters the live stream.
  const search = { query: "", id: null, hits: [], cursor: null, more: false, error: "", pending: false };
  const timers = {};

  function el(tag, attrs, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
    }
    for (const kid of kids) if (kid != null) node.append(kid);
    return node;
  }
  function toast(text) {
    const t = $("#toast"); t.textContent = text; t.hidden = false;
    clearTimeout(timers.toast); timers.toast = setTimeout(() => { t.hidden = true; }, 5000);
  }
  function send(type, extra) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify({ sender: name, target: "System", type, payload: "", timestamp: Date.now() / 1000, ...extra }));
    return true;
  }
  // who, state and board answers come in pages when big (has_more + cursor): ask for the next
  // with after=cursor and show the view once the last page is in. Replies on one socket come in
  // request order, so each view keeps the queue of what it asked for (null: a first page).
  const pages = { who: { asked: [], got: [] }, state: { asked: [], got: [] }, board: { asked: [], got: [] } };
  const verbs = { who: "who_request", state: "state_request", board: "board_request" };
  function ask(what, after) {
    const extra = after == null ? {} : { after };
    if (send(verbs[what], extra)) pages[what].asked.push(after == null ? null : after);
  }
  // The whole answer once its last page is in, else null (the next page was asked for).
  function paged(what, f) {
    const p = pages[what], after = p.asked.length ? p.asked.shift() : null;
    if (after == null) p.got = [f]; else if (p.got.length) p.got.push(f); else return null;  // a stale tail
    if (f.has_more === true && typeof f.cursor === "string") { ask(what, f.cursor); return null; }
    const all = p.got; p.got = [];
    return all;
  }
  const WHO_MAPS = ["agent_roles", "agent_liveness", "wake_capabilities", "mailbox_pending"];
  function mergeWho(all) {
    const whole = Object.assign({}, all[0]);
    whole.online_agents = all.flatMap((p) => p.online_agents || []);
    for (const key of WHO_MAPS) if (all[0][key]) whole[key] = Object.assign({}, ...all.map((p) => p[key] || {}));
    return whole;
  }
  const requests = {
    who: () => ask("who"),
    state: () => ask("state"),
    board: () => ask("board"),
    attention: () => send("attention_request", { status: "open" }),
    history: () => send("history_request", { limit: 100 }),
  };
  // Broadcasts say something changed; ask again once per burst: at most one request
  // per view every 50 ms, and never starved by a steady stream of broadcasts.
  function refresh(what) {
    if (timers[what]) return;
    timers[what] = setTimeout(() => { timers[what] = null; requests[what](); }, 50);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${scheme}//${location.host}/`);
    ws.onopen = () => {
      retry = 500;
      send("heartbeat", { payload: "online", protocol_version: 7, quiet: true });
      for (const ask of Object.values(requests)) ask();
      setStatus(true);
    };
    ws.onmessage = (ev) => { try { onFrame(JSON.parse(ev.data)); } catch (e) { console.error(e); } };
    ws.onclose = (ev) => {
      setStatus(false);
      if (ev.code === 4010 || ev.code === 1008) { toast("signed out: run `synapse dashboard` again"); return; }
      setTimeout(connect, retry); retry = Math.min(retry * 2, 10000);  // the hub restarted or the network dropped
    };
  }
  function setStatus(on) {
    const s = $("#status"); s.textContent = on ? "live" : "disconnected"; s.className = "pill " + (on ? "on" : "off");
  }

  function onFrame(f) {
    const t = f.type || "";
    if (t === "who_snapshot") { const all = paged("who", f); if (all) { view.who = mergeWho(all); renderRoster(); } }
    else if (t === "presence_update") refresh("who");
    else if (t === "state_snapshot" && f.snapshot) {
      const all = paged("state", f);
      if (all) {
        view.claims = all.flatMap((p) => (p.snapshot && p.snapshot.active_claims) || []);
        view.skew = (f.timestamp || Date.now() / 1000) - Date.now() / 1000;
        renderClaims();
      }
    }
    else if (t.startsWith("claim_") || t.startsWith("release")) { refresh("state"); refresh("who"); }
    else if (t === "board_snapshot" && f.board) {
      const all = paged("board", f);
      if (all) { view.board = all.flatMap((p) => (p.board && p.board.tasks) || []); renderBoard(); }
    }
    else if (t.startsWith("ledger_") || t.startsWith("task_")) refresh("board");
    else if (t === "attention_snapshot") { view.questions = f.questions || []; renderQuestions(); }
    else if (t === "attention_update") { refresh("attention"); if (f.question && f.question.status === "open") notify(f.question); }
    else if (t === "history_snapshot") { view.messages = (f.history || []).slice(); renderStream(); }
    else if (t === "chat") { view.messages.push(f); if (view.messages.length > 500) view.messages.shift(); renderStream(); refresh("who"); }
    else if (t === "dashboard_health") { view.health = f.health; renderHealth(); }
    else if (t === "search_results") onResults(f);
    else if (t === "error" && f.request_type === "search_request" && search.pending) {
      search.pending = false;
      search.error = String(f.payload) + (f.code === "BAD_QUERY" ? ' (quote words with punctuation: "foo-bar"; AND, OR, NOT in capitals)' : "");
      renderSearch();
    }
    else if (t === "error" || t === "auth_denied") toast(String(f.payload));
  }

  function notify(q) {
    if (document.hidden && "Notification" in window && Notification.permission === "granted") {
      new Notification("synapse: a question", { body: `${q.asker}: ${q.question}` });
    }
  }

  // ----------------------------------------------------------------- roster
  function renderRoster() {
    const w = view.who, root = $("#roster"); root.replaceChildren();
    if (!w) return;
    const isDash = (n) => n.startsWith("dashboard~") || n.includes("~dash-");
    const names = (w.online_agents || []).filter((n) => !isDash(n));
    const pending = w.mailbox_pending || {}, live = w.agent_liveness || {};
    const base = (n) => n.replace(/~.*$/, "").replace(/(-pane-rx|-rx|-who)$/, "");
    const ids = new Map();
    for (const n of names) { const b = base(n); if (!ids.has(b)) ids.set(b, []); ids.get(b).push(n); }
    for (const n of Object.keys(pending)) if (!ids.has(n) && pending[n] > 0 && !isDash(n)) ids.set(n, []);
    const projects = new Map();
    for (const id of [...ids.keys()].sort()) {
      const p = id.includes("/") ? id.split("/")[0] : "(no project)";
      if (!projects.has(p)) projects.set(p, []);
      projects.get(p).push(id);
    }
    if (!projects.size) root.append(el("p", { class: "muted", text: "nobody is connected" }));
    for (const [project, list] of projects) {
      root.append(el("h3", { text: project }));
      const ul = el("ul", { class: "list" });
      for (const id of list) {
        const socks = ids.get(id), l = live[id] || {};
        const online = socks.length > 0;
        const waiters = socks.filter((n) => /-(pane-)?rx$/.test(n));
        const dot = el("span", { class: "dot " + (l.proven_live ? "live" : online ? "stale" : ""), title: l.proven_live ? "live" : online ? "connected, not proven live" : "offline" });
        const mail = pending[id] ? el("span", { class: "mail", title: "directed messages not yet acknowledged", text: `${pending[id]} mail` }) : null;
        const extra = [];
        if (waiters.length || l.has_live_waiter) extra.push("waiting");
        if (socks.length > 1) extra.push(`${socks.length} sockets`);
        if (!online) extra.push("offline");
        ul.append(el("li", { class: "agent", "data-agent": id }, dot, el("span", { text: id }), mail, el("span", { class: "muted", text: extra.join(", ") })));
      }
      root.append(ul);
    }
    const viewers = (w.online_agents || []).length - names.length;
    root.append(el("p", { class: "muted", text: `${w.connected_clients ?? "?"} connections; ${viewers} dashboard${viewers === 1 ? "" : "s"}` }));
  }

  // ----------------------------------------------------------------- claims
  function ttlText(c) {
    const left = Math.round((c.lease_expires_at || 0) - (Date.now() / 1000 + view.skew));
    if (left <= 0) return "expiring";
    const m = Math.floor(left / 60), s = left % 60;
    return m ? `${m}m ${String(s).padStart(2, "0")}s` : `${s}s`;
  }
  function renderClaims() {
    const root = $("#claims"); root.replaceChildren();
    if (!view.claims.length) { root.append(el("p", { class: "muted", text: "no live claims" })); return; }
    const trees = new Map();
    for (const c of view.claims) {
      const wt = c.worktree || "(no worktree)";
      if (!trees.has(wt)) trees.set(wt, []);
      trees.get(wt).push(c);
    }
    for (const [wt, claims] of [...trees].sort()) {
      const ul = el("ul");
      for (const c of claims) {
        const paths = el("ul");
        for (const p of c.paths || []) paths.append(el("li", { class: "muted", text: p }));
        const ttl = el("span", { class: "ttl", "data-expires": String(c.lease_expires_at || 0), text: ttlText(c) });
        ul.append(el("li", { class: "claim", "data-task": c.task_id },
          el("strong", { text: c.task_id }), " ", el("span", { text: c.owner }), " ",
          el("span", { class: "muted", text: `epoch ${c.epoch}` }), " ", ttl, paths));
      }
      root.append(el("div", { class: "tree" }, el("h3", { text: wt }), ul));
    }
  }
  function tick() {
    for (const node of document.querySelectorAll(".ttl[data-expires]")) {
      const text = ttlText({ lease_expires_at: Number(node.dataset.expires) });
      node.textContent = text;
      node.classList.toggle("low", text.endsWith("s") && !text.includes("m"));
    }
  }

  // ----------------------------------------------------------------- board
  function renderBoard() {
    const root = $("#board"); root.replaceChildren();
    const tasks = new Map(view.board.map((t) => [t.task_id, t]));
    if (!tasks.size) { root.append(el("p", { class: "muted", text: "no tasks declared" })); return; }
    const level = new Map();
    const depth = (id, seen) => {
      if (level.has(id)) return level.get(id);
      if (seen.has(id)) return 0;
      seen.add(id);
      const deps = (tasks.get(id) || {}).depends_on || [];
      const d = deps.length ? 1 + Math.max(...deps.map((x) => tasks.has(x) ? depth(x, seen) : 0)) : 0;
      level.set(id, d);
      return d;
    };
    for (const id of tasks.keys()) depth(id, new Set());
    const cols = [];
    for (const [id, d] of level) (cols[d] = cols[d] || []).push(tasks.get(id));
    const wrap = el("div", { class: "levels" });
    for (const col of cols) {
      const c = el("div", { class: "level" });
      for (const t of (col || []).sort((a, b) => a.task_id.localeCompare(b.task_id))) {
        const deps = t.depends_on && t.depends_on.length ? el("div", { class: "deps", text: "after " + t.depends_on.join(", ") }) : null;
        c.append(el("div", { class: `task ${t.status}`, "data-task": t.task_id, title: t.status },
          el("strong", { text: t.task_id }), " ", el("span", { class: "muted", text: t.status.replace("_", " ") }),
          el("div", { text: t.title || "" }), deps));
      }
      wrap.append(c);
    }
    root.append(wrap);
  }

  // ----------------------------------------------------------------- attention
  function renderQuestions() {
    const open = view.questions.filter((q) => q.status === "open");
    const badge = $("#badge");
    badge.hidden = !open.length; badge.textContent = String(open.length);
    document.title = (open.length ? `(${open.length}) ` : "") + "synapse dashboard";
    $("#attention-count").textContent = open.length ? `(${open.length} open)` : "";
    const ul = $("#questions"); ul.replaceChildren();
    if (!open.length) ul.append(el("li", { class: "muted", text: "no open questions" }));
    for (const q of open) {
      const li = el("li", { class: "question", "data-question": q.id },
        el("strong", { text: q.id }), " ", el("span", { class: "muted", text: q.asker + ": " }), el("span", { text: q.question }));
      if (me && me.can_answer) {
        const answer = (text) => { if (send("attention_answer", { question_id: q.id, answer: text })) toast(`answering ${q.id}`); };
        const form = el("div", { class: "answer" });
        if (q.choices && q.choices.length) {
          for (const c of q.choices) form.append(el("button", { class: "choice", type: "button", onclick: () => answer(c), text: c }));
        } else {
          const input = el("input", { type: "text", "aria-label": `answer ${q.id}`, placeholder: "your answer" });
          form.append(input, el("button", { type: "button", onclick: () => input.value.trim() && answer(input.value.trim()), text: "Answer" }));
        }
        li.append(form);
      }
      ul.append(li);
    }
  }

  // ----------------------------------------------------------------- messages
  function renderStream() {
    const ul = $("#stream"), needle = $("#filter").value.trim().toLowerCase(), hideHub = $("#hide-hub").checked;
    ul.replaceChildren();
    for (const m of view.messages.slice().reverse()) {
      const text = typeof m.payload === "string" ? m.payload : JSON.stringify(m.payload);
      if (hideHub && String(m.sender || "").startsWith("SynapseHub")) continue;
      if (needle && !`${m.sender} ${m.target} ${text}`.toLowerCase().includes(needle)) continue;
      const when = new Date((m.timestamp || 0) * 1000).toLocaleTimeString();
      ul.append(el("li", { class: "msg" }, el("span", { class: "muted", text: when + " " }), el("span", { class: "who", text: m.sender }),
        el("span", { class: "to", text: ` → ${m.target}: ` }), el("span", { text })));
    }
    if (!ul.children.length) ul.append(el("li", { class: "muted", text: needle ? "nothing matches" : "no messages yet" }));
  }

  // ----------------------------------------------------------------- search
  function runSearch(after) {
    const q = $("#filter").value.trim();
    if (!q) { clearSearch(); return; }
    if (after == null) Object.assign(search, { query: q, hits: [], cursor: null, more: false });
    search.id = `search-${Math.random().toString(16).slice(2)}`;
    const ask = { query: search.query, limit: 50, request_id: search.id };
    if (after != null) ask.after = after;
    search.pending = send("search_request", ask);
    search.error = search.pending ? "" : "not connected to the hub";
    renderSearch();
  }
  function clearSearch() {
    Object.assign(search, { query: "", id: null, hits: [], cursor: null, more: false, error: "", pending: false });
    renderSearch();
  }
  function onResults(f) {
    if (f.request_id !== search.id) return;  // an answer to a search the user has since replaced
    search.pending = false;
    search.hits.push(...(f.results || []));
    search.more = f.has_more === true && Number.isInteger(f.cursor);
    search.cursor = search.more ? f.cursor : null;
    renderSearch();
  }
  function marked(snippet) {
    // the hub marks matched words as [word]; shown as <mark>, always as text (never parsed as HTML)
    const span = el("span");
    String(snippet).split(/\[([^\]]*)\]/).forEach((part, i) => span.append(i % 2 ? el("mark", { text: part }) : part));
    return span;
  }
  function renderSearch() {
    const box = $("#search"), status = $("#search-status"), ul = $("#results");
    box.hidden = !search.query && !search.error;
    status.classList.toggle("bad", !!search.error);
    const n = search.hits.length;
    status.textContent = search.error ? `search: ${search.error}`
      : search.pending ? `searching the hub for “${search.query}”…`
      : `${n}${search.more ? "+" : ""} match${n === 1 ? "" : "es"} for “${search.query}” in the hub's history (Esc to close)`;
    ul.replaceChildren();
    for (const h of search.hits) {
      const when = new Date((h.ts || 0) * 1000).toLocaleString();
      const kind = h.kind === "chat" ? "" : ` (${h.kind} ${h.task_id || ""})`;
      ul.append(el("li", { class: "msg hit", "data-seq": String(h.seq) }, el("span", { class: "muted", text: when + " " }),
        el("span", { class: "who", text: h.from }), el("span", { class: "to", text: ` → ${h.to}${kind}: ` }), marked(h.snippet || h.text || "")));
    }
    $("#search-more").hidden = !search.more || search.pending;
  }

  // ----------------------------------------------------------------- health
  function renderHealth() {
    const h = view.health || {}, dl = $("#health"); dl.replaceChildren();
    const ms = (s) => (s == null ? "n/a" : `${(s * 1000).toFixed(2)} ms`);
    const rows = [
      ["status", h.ok ? "ok" : "failing"], ["uptime", `${Math.round(h.uptime_seconds || 0)} s`],
      ["connections", h.connections], ["agents online", h.agents_online], ["live claims", h.claims_live],
      ["pending mail", h.mailbox_pending], ["open questions", h.attention_open],
      ["event-loop lag", `${ms(h.loop_lag_seconds)} (max ${ms(h.loop_lag_max_seconds)})`],
      ["last fsync", ms(h.last_fsync_seconds)], ["database", h.db_bytes == null ? "in memory" : `${(h.db_bytes / 1048576).toFixed(2)} MiB`],
      ["journal seq", h.journal_seq],
    ];
    for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", { "data-health": k, text: String(v ?? "") }));
  }

  async function start() {
    const r = await fetch("/dashboard/session", { credentials: "same-origin", cache: "no-store" });
    if (!r.ok) { $("main").replaceChildren(el("p", { class: "card wide", text: "Not logged in: run `synapse dashboard` for a one-time login link." })); setStatus(false); return; }
    me = await r.json();
    name = `${me.name}-${Math.random().toString(16).slice(2, 8)}`;
    $("#hub").textContent = me.hub_id || "";
    $("#whoami").textContent = me.seat ? `${me.seat} (${me.role})` : me.role;
    $("#attention-ro").hidden = me.can_answer;
    $("#filter").addEventListener("input", () => { if ($("#filter").value.trim() !== search.query) clearSearch(); renderStream(); });
    $("#filter").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") { ev.preventDefault(); runSearch(); }
      else if (ev.key === "Escape") { $("#filter").value = ""; clearSearch(); renderStream(); }
    });
    $("#search-more").addEventListener("click", () => runSearch(search.cursor));
    $("#hide-hub").addEventListener("change", renderStream);
    if ("Notification" in window && Notification.permission === "default") document.addEventListener("click", () => Notification.requestPermission(), { once: true });
    setInterval(tick, 1000);  // only redraws the countdowns; data arrives over the socket
    window.synapseDashboard = { send, view, search };  // for the browser tests
    connect();
  }
  start();
})();
