"""Render docs/benchmarks.md from the committed JSON results (``--check``: verify only).

The document is generated, never edited by hand: a test runs ``--check`` so
the figures in the docs always match the JSON they came from.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def ms(x: float) -> str:
    return f"{x * 1000:.0f} ms"


def spread(s: dict[str, Any], fmt: Any = ms) -> str:
    return f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])}, n={s['n']})"


def host_line(data: dict[str, Any]) -> str:
    h = data["host"]
    return f"Host: {h['cpu']}, {h['cores']} cores, Python {h['python']}, {h['fs']} disk; measured {h['when']}."


def cli_section(data: dict[str, Any]) -> list[str]:
    ours, ref = data["ours"], data.get("ref")
    rows = [
        ("`synapse --help` (start-up)", "help", "≤ 0.6×"),
        ("`synapse send` to a live waiter", "send_live", ""),
        ("send started → `wait` exited", "send_to_wake", "≤ 0.35×"),
    ]
    out = [
        "## CLI start-up and send-to-wake",
        "",
        host_line(data),
        "Each side against its own hub on loopback; median (min–max, n). The reference send runs with "
        "`--wait-seconds 0` (its default lingers 2 s after the receipt).",
        "",
        "| measurement | ours | reference 0.99.38 | ratio | target |",
        "|---|---|---|---|---|",
    ]
    for label, key, target in rows:
        r = spread(ref[key]) if ref else "–"
        ratio = f"{ours[key]['median'] / ref[key]['median']:.2f}×" if ref else "–"
        out.append(f"| {label} | {spread(ours[key])} | {r} | {ratio} | {target} |")
    if ref and "send_live_default_flags" in ref:
        out.append(f"| reference `send`, default flags | – | {spread(ref['send_live_default_flags'])} | | |")
    return [*out, ""]


def durability_section(data: dict[str, Any]) -> list[str]:
    def rate(x: float) -> str:
        return f"{x:,.0f}/s"

    rerun = data.get("rerun")
    out = ["## Durability", ""]
    if rerun:
        first = {**data, "host": data.get("host_first") or data["host"]}
        rows = ", ".join(f"`{r}`" for r in rerun["rows"])
        load = rerun.get("load")
        busy = (
            f" (1-minute load average {load[0]:g} at the start and {load[1]:g} at the end: other jobs shared the "
            "machine, so compare before and after within the table below, not with the older rows)"
            if load
            else ""
        )
        out.append(f"{host_line(first)} Rows {rows} re-measured {rerun['when']} on the same kind of host{busy}.")
    else:
        out.append(host_line(data))
    out += [
        "",
        "### Acknowledged durable mutations per second",
        "",
        "A directed chat with `receipt_requested`; each client waits for its receipt (sent only after the "
        "fsync'd commit) before the next. Hub and clients share the 2 cores. The reference commits chats with "
        "`synchronous=NORMAL` (no fsync per commit), so its column is not durable in the same sense; it also runs "
        "in its default mode, fanning each chat out to every socket (its private mode refuses to start without "
        "provisioned identities), while ours runs with `--private-directed`.",
        "",
        "| clients | group commit | one fsync per outcome | speed-up | reference 0.99.38 | ours / ref |",
        "|---|---|---|---|---|---|",
    ]
    m = data["mutations_per_s"]
    for c in ("1", "4", "16", "64"):
        if f"{c}/group" in m:
            ref = m.get(c + "/ref")
            ref_cells = f"{spread(ref, rate)} | {m[c + '/group']['median'] / ref['median']:.2f}×" if ref else "– | –"
            group, each = spread(m[c + "/group"], rate), spread(m[c + "/each"], rate)
            out.append(f"| {c} | {group} | {each} | {m[c + '/speedup']:.1f}× | {ref_cells} |")
    out += [
        "",
        "### The journal alone",
        "",
        "Producers in the hub's process each await their own commit (no sockets): what batching fsyncs buys.",
        "",
        "| producers | group commit | one fsync each | speed-up |",
        "|---|---|---|---|",
    ]
    j = data.get("journal_commits_per_s", {})
    for c in ("1", "4", "16", "64"):
        if f"{c}/group" in j:
            out.append(
                f"| {c} | {spread(j[c + '/group'], rate)} | {spread(j[c + '/each'], rate)} | {j[c + '/speedup']:.1f}× |"
            )
    out += [
        "",
        "### Restart and replay",
        "",
        "Restart: from starting `synapse hub` until it accepts a WebSocket connection, with a journal of "
        "directed chats and acks and a snapshot every 10,000 events. Replay: all events, no snapshot.",
        "",
        "| events | restart | full replay |",
        "|---|---|---|",
    ]
    for n, s in data["restart_s"].items():
        rp = data["replay_events_per_s"].get(n)
        out.append(f"| {int(n):,} | {spread(s)} | {spread(rp, rate) if rp else '–'} |")
    if rerun and "baseline" in rerun:
        out += ["", *before_after(data, rerun["baseline"], rate)]
    return [*out, ""]


def before_after(data: dict[str, Any], base: dict[str, Any], rate: Any) -> list[str]:
    """The re-measured rows next to the baseline tree's, taken alternately in the same run."""
    out = [
        "### Before and after",
        "",
        f"The re-measured rows, each repetition running the hub (or replay) of `{base['commit']}` and then this "
        "tree's, so both saw the same machine load.",
        "",
        f"| measurement | before ({base['commit']}) | after | after / before |",
        "|---|---|---|---|",
    ]
    m, bm = data["mutations_per_s"], base.get("mutations_per_s", {})
    for key in sorted(k for k in bm if not k.endswith("speedup")):
        clients, mode = key.split("/")
        label = f"{clients} clients, {'group commit' if mode == 'group' else 'one fsync per outcome'}"
        out.append(
            f"| {label} | {spread(bm[key], rate)} | {spread(m[key], rate)} | "
            f"{m[key]['median'] / bm[key]['median']:.2f}× |"
        )
    for key in sorted(k for k in bm if k.endswith("speedup")):
        clients = key.split("/")[0]
        out.append(f"| {clients} clients, group / one-at-a-time | {bm[key]:.1f}× | {m[key]:.1f}× | |")
    r, br = data["replay_events_per_s"], base.get("replay_events_per_s", {})
    for n in sorted(br, key=int):
        out.append(
            f"| full replay, {int(n):,} events | {spread(br[n], rate)} | {spread(r[n], rate)} | "
            f"{r[n]['median'] / br[n]['median']:.2f}× |"
        )
    return out


def claims_section(data: dict[str, Any]) -> list[str]:
    def us(x: float) -> str:
        return f"{x * 1e6:.2f} µs" if x < 1e-4 else f"{x * 1e3:.1f} ms"

    out = [
        "## Claim checks",
        "",
        host_line(data),
        "Time for one non-overlapping claim check (the common case) with N live claims spread over four "
        "worktrees; the linear scan over the same claims is what a table without an index pays. "
        "Target: ≤ 50 µs at 100k. The linear scan column is the reference's approach, measured here on the "
        "same host and run; no figure from elsewhere is quoted.",
        "",
        "| live claims | path-trie index | linear scan | speed-up |",
        "|---|---|---|---|",
    ]
    for n, row in data["sizes"].items():
        i, lin = row["index_s"], row["linear_s"]
        out.append(f"| {int(n):,} | {spread(i, us)} | {spread(lin, us)} | {lin['median'] / i['median']:,.0f}× |")
    return [*out, ""]


def guard_section(data: dict[str, Any], before: dict[str, Any] | None = None) -> list[str]:
    def fine(x: float) -> str:
        return f"{x * 1000:.1f} ms"

    rows, added = data["rows"], data["added"]
    out = [
        "## Git guard",
        "",
        host_line(data),
        f"`git commit` of {data['files']:,} staged files in a repository with a `synapse.toml`, against "
        f"{data['claims']:,} live claims of ten other agents on files next to the staged ones (none overlaps: "
        "every file is checked and the commit is allowed), without the guard and with it (alternating, "
        f"n={data['runs']}); then the installed `pre-commit` hook alone, and the refusal when one claim overlaps "
        "one staged file. Bytecode is cached, as after `pip install`; one row compiles the package's `.py` at "
        "every start instead. Target: the guard adds ≤ 50 ms.",
        "",
        "| what | median | p95 | before: median | p95 |",
        "|---|---|---|---|---|",
    ]
    old = (before or {}).get("rows", {})

    def was(row: dict[str, Any] | None) -> str:
        return f"{fine(row['median'])} | {fine(row['p95'])}" if row else "– | –"

    for label in data.get("order") or sorted(rows):
        row = rows[label]
        out.append(f"| {label} | {fine(row['median'])} | {fine(row['p95'])} | {was(old.get(label))} |")
    out.append(
        f"| **added to `git commit` by the guard** | **{fine(added['median'])}** | {fine(added['p95'])} "
        f"| {was((before or {}).get('added'))} |"
    )
    if before:
        out += ["", f"Before: commit {before['code']}, the same benchmark on the same host ({before['host']['when']})."]
    bare = rows["python -c pass"]
    steps = data.get("stages") or []
    out += [
        "",
        f"Where the hook's time goes (medians of each step inside one interpreter): "
        f"{fine(bare['median'])} the interpreter starting, "
        + ", ".join(f"{fine(took)} {label}" for label, took in steps)
        + "; the rest is the shell that runs the hook and git waiting for it. "
        + (
            "The target is met (median)."
            if added["median"] <= 0.05
            else "The target is not met (median) on this shared host."
        ),
    ]
    return [*out, ""]


def fanout_section(data: dict[str, Any]) -> list[str]:
    def rate(x: float) -> str:
        return f"{x:,.0f}/s"

    out = [
        "## Fan-out",
        "",
        host_line(data),
        "1 sender blasting messages, N receivers in two processes; latency is send to receive (same clock), so "
        "it includes queueing behind the burst; msgs/s until the last intended delivery. Both hubs send a "
        "directed chat to every socket by default (the 0.99 clients filter), so directed costs like broadcast. "
        "Hub, sender and receivers share the 2 cores.",
        "",
        "| mode | receivers | ours p50 / p99 | ours msgs/s | reference p50 / p99 | reference msgs/s | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    fan = data["fanout"]
    for key in sorted((k for k in fan if k.startswith("ours/")), key=lambda k: (k.split("/")[1], int(k.split("/")[2]))):
        _, mode, n = key.split("/")
        ours, ref = fan[key], fan.get(f"ref/{mode}/{n}")
        mine = f"{ours['p50_ms']['median']:.0f} / {ours['p99_ms']['median']:.0f} ms"
        theirs = f"{ref['p50_ms']['median']:.0f} / {ref['p99_ms']['median']:.0f} ms" if ref else "–"
        ratio = f"{ours['msgs_per_s']['median'] / ref['msgs_per_s']['median']:.2f}×" if ref else "–"
        out.append(
            f"| {mode} | {n} | {mine} | {spread(ours['msgs_per_s'], rate)} | {theirs} | "
            f"{spread(ref['msgs_per_s'], rate) if ref else '–'} | {ratio} |"
        )
    out += [
        "",
        "### Memory with idle connections",
        "",
        "Hub RSS with N idle registered connections, and the cost per connection.",
        "",
        "| connections | ours | reference 0.99.38 |",
        "|---|---|---|",
    ]
    mem = data["memory"]
    for n in ("0", "100", "1000", "2000"):
        ours = mem["ours"].get(n)
        ref = mem.get("ref", {}).get(n)
        out.append(f"| {int(n):,} | {ours / 1024:.1f} MiB | {f'{ref / 1024:.1f} MiB' if ref else '–'} |")
    ref_per = mem.get("ref", {}).get("per_connection_kb")
    out.append(
        f"| per connection | {mem['ours']['per_connection_kb']:.1f} KiB | {f'{ref_per:.1f} KiB' if ref_per else '–'} |"
    )
    return [*out, ""]


SECURITY_ROWS = (
    ("claim+release pairs/s, 1 client", "claims_per_s/1", "{:,.0f}"),
    ("claim+release pairs/s, 4 clients", "claims_per_s/4", "{:,.0f}"),
    ("claim+release pairs/s, 16 clients", "claims_per_s/16", "{:,.0f}"),
    ("directed latency p50", "latency_ms/p50", "{:.2f} ms"),
    ("directed msgs/s, 8 senders to 8 receivers", "directed_per_s/8x8", "{:,.0f}"),
)


def security_section(after: dict[str, Any], before: dict[str, Any]) -> list[str]:
    """The authorization checks' cost: two hubs run back to back in every repetition, ratios paired."""
    ratio = after["paired"]["ratio"]
    out = [
        "## Cost of the authorization checks",
        "",
        host_line(after),
        f"`{before['label']}` is the hub before least privilege (8939245) with "
        f"`{' '.join(before.get('hub_args', []))}`, `{after['label']}` the hub with the checks, both delivering "
        "directed chats privately; "
        f"{after['params']['bystanders']} idle bystander sockets; both hubs in each of "
        f"{after['params']['runs']} repetitions (`benchmarks/security_overhead.py --hub ... --hub ...`). "
        "Medians; the ratio is after / before, per repetition, median (min–max).",
        "",
        "| journal | measurement | before | after | ratio |",
        "|---|---|---|---|---|",
    ]
    for journal in ("disk", "memory"):
        for label, key, fmt in SECURITY_ROWS:
            k = f"{journal}/{key}"
            r = ratio[k]
            out.append(
                f"| {journal} | {label} | {fmt.format(before['metrics'][k]['median'])} "
                f"| {fmt.format(after['metrics'][k]['median'])} "
                f"| {r['median']:.2f}× ({r['min']:.2f}–{r['max']:.2f}) |"
            )
    return [*out, ""]


def mcp_section(data: dict[str, Any]) -> list[str]:
    out = [
        "## MCP tool surface",
        "",
        host_line(data),
        "What a model pays in context for our MCP server: the compact JSON of `tools/list` as the SDK's own "
        f"client received it from `synapse mcp serve` (`benchmarks/mcp_tools.py`). Target: under "
        f"{data['budget_bytes']:,} bytes.",
        "",
        f"`tools/list`: {data['tools']} tools, **{data['tools_list_bytes']:,} bytes**; `resources/list`: "
        f"{data['resources']} resources, {data['resources_list_bytes']:,} bytes.",
        "",
        "| tool | bytes |",
        "|---|---|",
    ]
    out += [f"| `{n}` | {b:,} |" for n, b in sorted(data["per_tool_bytes"].items(), key=lambda kv: -kv[1])]
    return [*out, ""]


def search_section(data: dict[str, Any]) -> list[str]:
    def ms2(x: float) -> str:
        return f"{x * 1e3:.2f} ms"

    lat, write, rb = data["latency"], data["write"], data["rebuild"]
    load = data.get("load")
    busy = f" 1-minute load average {load[0]:.1f} at the start, {load[1]:.1f} at the end." if load else ""
    out = [
        "## Full-text search",
        "",
        host_line(data) + busy,
        f"`benchmarks/search.py`: a real hub on a database of {data['messages']:,} stored chats (8-20 words each "
        "from a Zipf-distributed vocabulary of 20,000; 70 % broadcasts, 30 % directed), one socket sending "
        f"`search_request` after `search_request` (default `limit` 20), {lat['requests']} requests over six query "
        "shapes, round trip on loopback. Target: p95 ≤ 5 ms.",
        "",
        "| query | results | p50 | p95 | p99 |",
        "|---|---|---|---|---|",
    ]
    a = lat["all"]
    out.append(f"| all | | {ms2(a['p50'])} | {ms2(a['p95'])} | {ms2(a['p99'])} |")
    for name, row in lat["per_query"].items():
        q = row["query"] + (f" (from {row['from']})" if row.get("from") else "")
        out.append(f"| {name}: `{q}` | {row['results']} | {ms2(row['p50'])} | {ms2(row['p95'])} | {ms2(row['p99'])} |")
    w, wo = write["with_index"], write["without_index"]

    def rate(x: float) -> str:
        return f"{x:,.0f}/s"

    out += [
        "",
        f"Group commit with and without the index: {write['messages']:,} chats through the real core and "
        "journal in one process, 256 outcomes in flight, runs alternated; events/s of acked commits, median "
        "(min–max, n). With: the hub's background indexer runs beside the journal (woken after each commit).",
        "",
        "| index | events/s |",
        "|---|---|",
        f"| with | {spread(w, rate)} |",
        f"| without (no indexer) | {spread(wo, rate)} |",
        f"| ratio | {write['ratio']:.2f}× |",
        "",
        *(
            [
                f"The indexer had indexed everything {write['index_lag_after_last_ack']['median'] * 1e3:.1f} ms "
                "(median) after the last ack.",
                "",
            ]
            if "index_lag_after_last_ack" in write
            else []
        ),
        f"Indexing the whole journal from an empty index (a database from before it), in the indexer's "
        f"batches: {rb['rows']:,} rows in {rb['seconds']:.2f} s.",
        "",
    ]
    return out


def lag_cells(row: dict[str, Any], scale: float = 1.0) -> str:
    """``max | p99`` loop lag in ms (``scale`` 1000 for figures stored in seconds), or that it was not measured."""
    mx = row.get("loop_lag_max_ms", row.get("loop_lag_max"))
    p99 = row.get("loop_lag_p99_ms", row.get("loop_lag_p99"))
    if mx is None or p99 is None:
        return "not measured | not measured"
    return f"{mx * scale:.0f} ms | {p99 * scale:.1f} ms"


def load_scale() -> dict[str, tuple[Any, str]]:
    """Every row of ``scale.json`` and the partial ``scale-*.json`` runs, newest wins, with its date."""
    rows: dict[str, tuple[Any, str]] = {}
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("scale*.json"))]
    for run in sorted(runs, key=lambda r: r["host"]["when"]):
        for key, value in run.items():
            if key not in ("benchmark", "host") and value:
                rows[key] = (value, run["host"]["when"])
    return rows


HUB_NAMES = {"ours": "this hub", "0.99.38": "reference hub 0.99.38"}


def scale_rows(rows: dict[str, tuple[Any, str]]) -> list[str]:
    """One table row per measure of ``benchmarks/scale.py``: result, target, loop lag, when."""
    out = []
    for label, who in rows.get("who", ({}, ""))[0].items():
        when = rows["who"][1]
        out.append(
            f"| `who`, {who['messages']:,} retained msgs to {who['targets']:,} offline ({label}) | "
            f"p50 {who['who']['median'] * 1000:.1f} ms, p99 {who['who_p99'] * 1000:.1f} ms | p99 ≤ 5 ms, "
            f"lag ≤ 50 ms | {lag_cells(who, 1000)} | {when} |"
        )
    for label, pres in rows.get("presence", ({}, ""))[0].items():
        out.append(
            f"| presence frames at an idle observer, {pres['waiters']} waiters re-arming, {label} | "
            f"{pres['presence_frames']} for {pres['rearms']} re-arms ({pres['per_rearm']:.2f} per re-arm) | "
            f"≥ 10× fewer | {lag_cells(pres)} | {rows['presence'][1]} |"
        )
    if "largest_frame" in rows:
        lf, when = rows["largest_frame"]
        out.append(
            f"| largest frame the hub sends, any request | {lf['largest']:,} bytes | ≤ {lf['max_frame_bytes']:,} "
            f"| {lag_cells(lf)} | {when} |"
        )
    for label, run in rows.get("slow_consumer", ({}, ""))[0].items():
        out.append(
            f"| {run['others']} sockets chatting, {label} | p99 {run['p99_ms']:.1f} ms, hub RSS {run['rss_mb']:.0f} MB"
            f"{'; ' + run['slow_closed'] if run.get('slow_closed') else ''} | p99 within 2× of without | "
            f"{lag_cells(run)} | {rows['slow_consumer'][1]} |"
        )
    if "oneshots" in rows:
        shots, when = rows["oneshots"]
        samples = ", ".join(f"{s['connections']:,}: {s['rss_mb']:.1f} MB" for s in shots["samples"])
        out.append(
            f"| hub RSS after {shots['connections']:,} one-shot send connections | {samples} "
            f"({shots['growth_vs_first_10k'] * 100:+.1f}% vs first 10k) | within 10% of the first 10k | "
            f"{lag_cells(shots)} | {when} |"
        )
    if "idle" in rows:
        idle, when = rows["idle"]
        out.append(
            f"| {idle['connections']:,} idle registered connections | {idle['kib_per_connection']:.1f} KiB each "
            f"(RSS {idle['rss_before_mb']:.0f} → {idle['rss_after_mb']:.0f} MB) | ≤ 25 KiB | "
            f"{lag_cells(idle)} | {when} |"
        )
    if "burst" in rows:
        runs, when = rows["burst"]
        by_hub = {r["hub"]: r for r in runs}
        for r in runs:
            ratio = ""
            ref = by_hub.get("0.99.38")
            if r["hub"] == "ours" and ref:
                ratio = f"; {r['all_registered_s'] / ref['all_registered_s']:.3f}× the reference, same run"
            out.append(
                f"| {r['agents']:,} agents connecting at once, {HUB_NAMES.get(r['hub'], r['hub'])} | "
                f"{r['registered']:,} registered in "
                f"{r['all_registered_s']:.2f} s{ratio} | ours ≤ 0.1× the reference | {lag_cells(r)} | {when} |"
            )
    return out


def scale_section(rows: dict[str, tuple[Any, str]]) -> list[str]:
    host = json.loads(sorted(RESULTS.glob("scale*.json"))[0].read_text())
    out = [
        "## Fleet scale",
        "",
        host_line(host),
        "`benchmarks/scale.py`, wire-level against real `synapse hub` processes (`--only ROW` runs one row; "
        "the reference hub runs side by side in the same run where a row compares with it). Loop lag: the "
        "worst and 99th-percentile extra round trip of a cheap request sent every 10 ms from another socket "
        "in the benchmark's process, so it also counts time that process spends on its own sockets (a burst "
        "keeps the probe waiting for most of its 2 s, so there p99 is the max). The idle row's worst lag is not "
        "per-connection work: in the hub it coincides with full garbage collections over ~1M tracked objects "
        "(logged by a GC callback), see [deployment.md](deployment.md#large-fleets).",
        "",
        "| measure | result | target | loop lag max | loop lag p99 | measured |",
        "|---|---|---|---|---|---|",
        *scale_rows(rows),
    ]
    return [*out, ""]


def compaction_section(data: dict[str, Any]) -> list[str]:
    def mib(x: int) -> str:
        return f"{x / 2**20:.1f} MiB"

    stall = data["compaction_loop_stall"]["loop_stall_s"]
    p99 = f"{stall['p99'] * 1000:.1f} ms" if "p99" in stall else f"not recorded (p90 {stall['p90'] * 1000:.1f} ms)"
    with_c, without = data["with_compaction"], data["without_compaction"]
    out = [
        "## Journal compaction",
        "",
        host_line(data),
        f"`benchmarks/compaction.py`: {data['events']:,} events of steady claim churn, a snapshot every "
        f"{data['snapshot_every']:,} events, `--retain-days {data['retain_days']:g}`; database size (file + WAL) "
        "and journal rows along the way, with and without compaction.",
        "",
        "| events | rows, compacted | size, compacted | rows, never compacted | size, never compacted |",
        "|---|---|---|---|---|",
    ]
    for a, b in zip(with_c["points"], without["points"], strict=False):
        out.append(f"| {a['events']:,} | {a['rows']:,} | {mib(a['bytes'])} | {b['rows']:,} | {mib(b['bytes'])} |")
    a, b = with_c["final"], without["final"]
    out.append(f"| final | {a['rows']:,} | {mib(a['bytes'])} | {b['rows']:,} | {mib(b['bytes'])} |")
    restart = data["restart_after_compaction"]["hub_start_s"]
    cl = data["compaction_loop_stall"]
    out += [
        "",
        "| measure | result | target | loop lag max | loop lag p99 |",
        "|---|---|---|---|---|",
        f"| restart after compaction (start to first connection) | {spread(restart)} | ≤ 300 ms | "
        "not measured | not measured |",
        f"| compacting {cl['covered_rows']:,} covered rows in {cl['batches']} batches while serving | "
        f"{cl['deleted']:,} deleted in {cl['seconds']:.1f} s | loop never blocked > 50 ms | "
        f"{cl['max_loop_stall_s'] * 1000:.1f} ms | {p99} |",
    ]
    return [*out, ""]


def compaction_pg_section(data: dict[str, Any]) -> list[str]:
    def mib(x: int) -> str:
        return f"{x / 2**20:.1f} MiB"

    with_c, without = data["with_compaction"], data["without_compaction"]
    out = [
        "### Journal compaction on PostgreSQL",
        "",
        host_line(data),
        f"`benchmarks/compaction.py --postgresql`: the same churn through the PostgreSQL journal (leading, "
        f"PostgreSQL {data['postgresql']} on the same host), a snapshot every {data['snapshot_every']:,} events, "
        f"`--retain-days {data['retain_days']:g}`; journal rows and `pg_total_relation_size('events')`.",
        "",
        "| events | rows, compacted | size, compacted | rows, never compacted | size, never compacted |",
        "|---|---|---|---|---|",
    ]
    for a, b in zip(with_c["points"], without["points"], strict=False):
        out.append(f"| {a['events']:,} | {a['rows']:,} | {mib(a['bytes'])} | {b['rows']:,} | {mib(b['bytes'])} |")
    a, b = with_c["final"], without["final"]
    out.append(f"| final | {a['rows']:,} | {mib(a['bytes'])} | {b['rows']:,} | {mib(b['bytes'])} |")
    return [*out, ""]


def ha_section(data: dict[str, Any]) -> list[str]:
    fail, pause, grants = data["failover"], data["pause"], data["grants"]
    close = pause.get("client_close")
    fenced = (
        f"{pause['late_writes_appended']} of its writes appended; exit {pause['old_leader_exit']}"
        f"{', stepped down' if pause['old_leader_stepped_down'] else ''}"
        + (f"; its clients closed {close[0]} `{close[1]}`" if close else "")
    )
    pg, lite = grants["postgresql"], grants["sqlite"]
    out = [
        "## High availability on PostgreSQL",
        "",
        host_line(data),
        f"`benchmarks/ha.py`: real `synapse hub` processes on one PostgreSQL {data['postgresql']} database on "
        f"the same host (`fsync=on`); {fail['clients']} clients storm the leader with directed chats "
        "(receipt requested) and claims.",
        "",
        "| scenario | result | target |",
        "|---|---|---|",
        f"| SIGKILL the leader, time until the standby serves `who` ({fail['rounds']} failovers in a row) | "
        f"{spread(fail['to_who_seconds'])} | ≤ 2 s |",
        f"| acknowledged events after {fail['rounds']} failovers ({fail['acked_chats']:,} chats, "
        f"{fail['acked_claims']:,} claims) | {fail['lost']} lost, {fail['duplicated']} duplicated | 0 lost, "
        "0 duplicated |",
        f"| SIGSTOP the leader {pause['paused_seconds']:g} s, SIGCONT after the standby took over "
        f"({pause['takeover_seconds']:.1f} s, lease 5 s) | {fenced} | fenced, steps down |",
        f"| durable claim grants/s, {grants['clients']} clients, PostgreSQL | "
        f"{spread(pg, lambda x: f'{x:,.0f}/s')} | ≥ 1,000/s |",
        f"| same on SQLite (`synchronous=FULL`) | {spread(lite, lambda x: f'{x:,.0f}/s')} | (reference) |",
        "",
    ]
    load = grants.get("load_at_end") or data.get("load")
    if load:
        out += [
            f"Grant runs alternate PostgreSQL and SQLite ({grants['seconds']:g} s each, so both see the same "
            f"background); the 1-minute load average was {load[0]:.1f} when they ended (the benchmark's own "
            "hub, clients and PostgreSQL included). The hub's one writer commits a batch per round trip either "
            "way; PostgreSQL's WAL flush and SQLite's fsync cost about the same here.",
            "",
        ]
    return out


def brick_section(data: dict[str, Any]) -> list[str]:
    flags = " ".join(data["hub_flags"]) or "default bounds"
    out = [
        "## The brick attempt",
        "",
        host_line(data),
        f"`benchmarks/brick.py` ({flags}): {data['chats']} directed chats of {data['kib']:,} KiB to names that "
        f"do not exist, then {data['events']:,} small events, over one socket against a real `synapse hub`. "
        "Issue 12, as filed, reports that before the mailbox bounds this took the hub from 31 MB to 975 MB "
        "and left it unable to commit.",
        "",
        "| measure | result | loop lag max | loop lag p99 |",
        "|---|---|---|---|",
        f"| the flood ({data['flood_seconds']:.1f} s) | {data['accepted']} accepted, {data['refused']} refused "
        f"(MAILBOX_FULL); hub RSS {data['rss_before_mb']} → {data['rss_after_mb']} MB, database "
        f"{data['disk_before_mb']} → {data['disk_after_mb']} MB; still serving: {data['alive_after']} | "
        f"{lag_cells(data)} |",
        f"| SIGTERM afterwards | exit {data['sigterm_exit_code']} in {data['sigterm_to_exit_s'] * 1000:.0f} ms; "
        f"`synapse db check`: {data['db_check']} | not measured | not measured |",
    ]
    return [*out, ""]


def render() -> str:
    out = [
        "# Benchmarks",
        "",
        "Generated by `benchmarks/report.py` from `benchmarks/results/*.json`; do not edit by hand. "
        "Re-run with `make bench`. Timings are from shared 2-core machines: read the spread, not just "
        "the median.",
        "",
    ]
    cli = load("cli_latency")
    if cli:
        out += cli_section(cli)
    dur = load("durability")
    if dur:
        out += durability_section(dur)
    fan = load("fanout")
    if fan:
        out += fanout_section(fan)
    claims = load("claims")
    if claims:
        out += claims_section(claims)
    guard = load("guard")
    if guard:
        out += guard_section(guard, load("guard-before"))
    sec_after, sec_before = load("security_overhead-after-paired"), load("security_overhead-before-paired")
    if sec_after and sec_before:
        out += security_section(sec_after, sec_before)
    tools = load("mcp_tools")
    if tools:
        out += mcp_section(tools)
    search = load("search")
    if search:
        out += search_section(search)
    scale = load_scale()
    if scale:
        out += scale_section(scale)
    compaction = load("compaction")
    if compaction:
        out += compaction_section(compaction)
    compaction_pg = load("compaction_pg")
    if compaction_pg:
        out += compaction_pg_section(compaction_pg)
    brick = load("brick")
    if brick:
        out += brick_section(brick)
    ha = load("ha")
    if ha:
        out += ha_section(ha)
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/benchmarks.md is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print("docs/benchmarks.md does not match benchmarks/results/*.json; run benchmarks/report.py")
            sys.exit(1)
        return
    DOC.write_text(text)
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
