// swarm dashboard: plain JS, no build step. Talks to /v1 with the user's API key.
// Everything shown comes from the model or users, so it goes into the page as text, never as HTML.
"use strict";

const KEY_STORE = "swarm.apiKey";
const PAGE = 25;
const SVG_NS = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);
const state = { key: null, offset: 0, runId: null, summary: null, timeline: null, clockSkew: 0,
                refreshTimer: null, lastRefresh: 0, abort: null, events: [], filesKey: null };

// ------------------------------------------------------------------ key handling

function takeKeyFromUrl() {
  // ?key=… lets a link open the dashboard logged in; drop it from the address bar at once.
  const url = new URL(location.href);
  const key = url.searchParams.get("key");
  if (key) {
    localStorage.setItem(KEY_STORE, key);
    url.searchParams.delete("key");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  state.key = localStorage.getItem(KEY_STORE);
}

function notice(text) {
  const el = $("notice");
  el.textContent = text || "";
  el.hidden = !text;
}

async function api(path, options = {}) {
  if (!state.key) throw new ApiError(401, "Paste an API key (from `swarm keys create`) to see runs.");
  const resp = await fetch(path, { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${state.key}` } });
  if (!resp.ok) {
    let message = resp.statusText;
    try { message = (await resp.json()).message || message; } catch (_) { /* not JSON */ }
    throw new ApiError(resp.status, message);
  }
  return resp;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// ------------------------------------------------------------------ helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function badge(status) { return el("span", { class: `st st-${status}`, text: status }); }
function fmtSeconds(s) { return s >= 100 ? `${s.toFixed(0)} s` : `${s.toFixed(1)} s`; }
function fmtInt(n) { return Number(n || 0).toLocaleString(); }
// A cost: null means the model had no price (unknown), never a made-up $0.
function fmtUsd(v) { return v === null || v === undefined ? "unknown" : `$${Number(v).toFixed(4)}`; }
function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

// ------------------------------------------------------------------ runs list

async function showRuns() {
  $("runs-view").hidden = false;
  const status = $("status-filter").value;
  const q = new URLSearchParams({ limit: PAGE, offset: state.offset });
  if (status) q.set("status", status);
  const data = await (await api(`/v1/runs?${q}`)).json();
  const body = $("runs-body");
  body.replaceChildren();
  for (const r of data.runs) {
    const link = el("a", { href: `/dashboard/runs/${r.id}` }, el("code", { text: r.id.slice(0, 12) }));
    body.append(el("tr", { class: "run-row" },
      el("td", {}, link), el("td", {}, badge(r.state || r.status)), el("td", { class: "task", text: r.task.slice(0, 160) }),
      el("td", { text: `${r.subagents} / ${r.max_subagents}` }), el("td", { text: `${r.tool_calls} / ${r.max_tool_calls}` }),
      el("td", { text: r.critical_steps }), el("td", { text: fmtInt(r.tokens_in + r.tokens_out) }),
      el("td", { text: fmtUsd(r.cost_usd) }), el("td", { text: fmtSeconds(r.wall_seconds) }), el("td", { text: new Date(r.created_at * 1000).toLocaleString() })));
  }
  if (!data.runs.length) body.append(el("tr", {}, el("td", { colspan: 10, class: "muted", text: "no runs" })));
  $("prev-page").disabled = state.offset === 0;
  $("next-page").disabled = !data.has_more;
}

// ------------------------------------------------------------------ one run

async function showRun(runId) {
  state.runId = runId;
  $("run-view").hidden = false;
  $("run-id").textContent = runId;
  $("export-run").onclick = (ev) => { ev.preventDefault(); download(runId); };
  $("cancel-run").onclick = () => action(runId, "cancel");
  $("resume-run").onclick = () => action(runId, "resume");
  window.addEventListener("resize", () => state.timeline && drawTimeline(state.timeline));
  await refresh();
  follow(runId);
  // Running steps grow with the clock even when no event arrives.
  setInterval(() => { if (state.timeline && state.summary?.status === "running") drawTimeline(state.timeline); }, 1000);
}

async function refresh() {
  const runId = state.runId;
  const [summary, timeline] = await Promise.all([
    api(`/v1/runs/${runId}`).then((r) => r.json()),
    api(`/v1/runs/${runId}/timeline`).then((r) => r.json()),
  ]);
  state.summary = summary;
  state.timeline = timeline;
  state.clockSkew = timeline.now - Date.now() / 1000;
  state.lastRefresh = Date.now();
  drawSummary(summary);
  drawApprovals(summary.status === "running" ? await pendingApprovals(runId) : []);
  drawTree(timeline.agents);
  drawTimeline(timeline);
  drawSpend(timeline);
  // Files change only when a tool call commits: list them again only then (and when the run ends).
  const filesKey = `${summary.tool_calls}-${summary.status}`;
  if (filesKey !== state.filesKey) {
    state.filesKey = filesKey;
    drawFiles(runId).catch((e) => notice(e.message));
  }
  drawProvider().catch(() => {});
}

// The model provider's shared capacity (GET /v1/provider): in flight / limit, waiting, 429s.
async function drawProvider() {
  const views = await (await api("/v1/provider")).json();
  const card = document.getElementById("provider-card");
  card.hidden = !views.length;
  if (!views.length) return;
  const v = views[0];
  document.getElementById("c-provider").textContent = `${v.in_flight} / ${v.limit} in flight`;
  document.getElementById("c-provider-sub").textContent =
    `${v.waiting} waiting · ${fmtInt(v.throttled)} × 429 of ${fmtInt(v.calls)}` + (v.hold_seconds ? ` · held ${v.hold_seconds} s` : "");
  card.title = `${v.provider}: cap ${v.max_concurrency ?? "none"}, rpm ${v.rpm ?? "none"}, tpm ${v.tpm ?? "none"}`;
}

// Spend over time: the cumulative cost of the run's model calls, by the time each finished.
function drawSpend(tl) {
  const box = $("spend");
  const calls = tl.steps.filter((s) => s.kind === "llm" && s.finished_at && s.status === "succeeded")
    .sort((a, b) => a.finished_at - b.finished_at);
  if (!calls.length) { box.replaceChildren(el("p", { class: "muted", text: "no model calls yet" })); return; }
  if (calls.some((s) => s.cost_usd === null)) {
    box.replaceChildren(el("p", { class: "muted", text: "cost unknown: a model without a price (SWARM_PRICES)" }));
    return;
  }
  const width = Math.max(320, box.clientWidth - 16), height = 90, pad = 4;
  const t0 = tl.created_at, t1 = Math.max(calls[calls.length - 1].finished_at, t0 + 1e-3);
  let total = 0;
  const points = [[t0, 0]];
  for (const s of calls) { total += s.cost_usd; points.push([s.finished_at, total]); }
  const x = (t) => pad + ((t - t0) / (t1 - t0)) * (width - 2 * pad);
  const y = (v) => height - pad - (total ? (v / total) * (height - 2 * pad) : 0);
  const root = svg("svg", { width, height });
  root.append(svg("polyline", { points: points.map(([t, v]) => `${x(t)},${y(v)}`).join(" "),
                                fill: "none", stroke: COLORS.llm, "stroke-width": 2 }));
  const label = svg("text", { x: pad + 2, y: 12 });
  label.textContent = `${fmtUsd(total)} over ${(t1 - t0).toFixed(1)} s`;
  root.append(label);
  box.replaceChildren(root);
}

function scheduleRefresh() {
  // Events can arrive hundreds per second; redraw at most about once a second.
  if (state.refreshTimer) return;
  const wait = Math.max(0, 1000 - (Date.now() - state.lastRefresh));
  state.refreshTimer = setTimeout(async () => {
    state.refreshTimer = null;
    try { await refresh(); } catch (e) { notice(e.message); }
  }, wait);
}

function drawSummary(s) {
  const status = $("run-status");
  status.replaceChildren(badge(s.state || s.status));
  status.title = s.hint || "";
  $("run-task").textContent = s.task;
  $("run-reason").hidden = !s.reason;
  $("run-reason").textContent = s.reason || "";
  $("c-subagents").textContent = `${s.subagents} / ${s.max_subagents}`;
  $("b-subagents").style.width = `${Math.min(100, (100 * s.subagents) / Math.max(1, s.max_subagents))}%`;
  $("c-tools").textContent = `${fmtInt(s.tool_calls)} / ${fmtInt(s.max_tool_calls)}`;
  $("b-tools").style.width = `${Math.min(100, (100 * s.tool_calls) / Math.max(1, s.max_tool_calls))}%`;
  $("c-llm").textContent = fmtInt(s.llm_calls);
  $("c-critical").textContent = s.critical_steps;
  $("c-speedup").textContent = s.critical_steps ? `total ${s.total_steps} → ${(s.total_steps / s.critical_steps).toFixed(1)}× parallel` : "";
  $("c-tokens").textContent = `${fmtInt(s.tokens_in)} / ${fmtInt(s.tokens_out)}`;
  $("c-cached").textContent = s.tokens_in ? `${((100 * s.tokens_cached) / s.tokens_in).toFixed(1)}% of input cached` : "";
  $("c-cost").textContent = fmtUsd(s.cost_usd);
  $("c-wall").textContent = fmtSeconds(s.wall_seconds);
  drawLineage(s);
  $("cancel-run").hidden = s.status !== "running";
  $("resume-run").hidden = !["failed", "cancelled", "interrupted"].includes(s.state || s.status);
  $("live-dot").hidden = s.status !== "running";
}

function drawLineage(s) {
  // A fork links to its origin, an origin to its forks (`swarm fork`, POST /v1/runs/{id}/fork).
  const runLink = (id) => el("a", { href: `/dashboard/runs/${id}` }, el("code", { text: id.slice(0, 12) }));
  const parts = [];
  if (s.forked_from_run_id) {
    parts.push("forked from ", runLink(s.forked_from_run_id), " at step ",
      el("code", { text: (s.forked_at_step_id || "").slice(0, 12) }));
  }
  if (s.forks && s.forks.length) {
    if (parts.length) parts.push(" · ");
    parts.push("forks: ");
    s.forks.forEach((id, i) => { if (i) parts.push(", "); parts.push(runLink(id)); });
  }
  const node = $("run-lineage");
  node.replaceChildren(...parts);
  node.hidden = !parts.length;
}

function orderedAgents(agents) {
  // Depth-first: parents directly above their children, siblings by start time.
  const kids = new Map();
  for (const a of agents) {
    const k = a.parent_id || "";
    if (!kids.has(k)) kids.set(k, []);
    kids.get(k).push(a);
  }
  const out = [];
  const walk = (parent, depth) => {
    for (const a of (kids.get(parent) || []).sort((x, y) => x.created_at - y.created_at)) {
      out.push({ ...a, depth });
      walk(a.id, depth + 1);
    }
  };
  walk("", 0);
  return out;
}

function drawTree(agents) {
  const tree = $("agent-tree");
  const rows = [el("div", { class: "agent-row head" }, el("span", { text: "agent" }), el("span", { text: "status" }),
    el("span", { text: "steps" }), el("span", { text: "tools" }), el("span", { text: "cost" }))];
  const counts = {};
  for (const a of orderedAgents(agents)) {
    counts[a.status] = (counts[a.status] || 0) + 1;
    const name = el("span", { class: "name", title: a.id });
    name.style.paddingLeft = `${a.depth * 1.1}rem`;
    name.append(`${a.name} `, el("code", { class: "muted", text: a.id.slice(0, 8) }));
    const row = el("div", { class: "agent-row", "data-agent": a.id, "data-status": a.status }, name, badge(a.status),
      el("span", { text: a.steps }), el("span", { text: a.tool_calls }),
      el("span", { text: fmtUsd(a.cost_usd), title: `${fmtInt(a.tokens_cached)} of ${fmtInt(a.tokens_in)} input tokens cached` }));
    if (a.reason) row.append(el("p", { class: "reason", text: a.reason }));
    rows.push(row);
  }
  tree.replaceChildren(...rows);
  $("agent-counts").textContent = Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(" · ");
}

function stepClass(s) {
  if (["running", "waiting", "ready", "awaiting_approval"].includes(s.status)) return "running";
  if (s.status === "failed" || s.is_error) return "error";
  if (s.status === "cancelled") return "cancelled";
  if (s.kind === "llm") return "llm";
  return s.tool_name === "assign_task" || s.tool_name === "create_subagent" ? "orch" : "tool";
}

const COLORS = { llm: "#4e79a7", tool: "#59a14f", orch: "#b07aa1", running: "#f28e2b", error: "#e15759", cancelled: "#a0a0a8" };

function drawTimeline(tl) {
  const box = $("timeline");
  const agents = orderedAgents(tl.agents);
  const steps = tl.steps.filter((s) => s.started_at);
  if (!agents.length) { box.replaceChildren(el("p", { class: "muted", text: "no agents yet" })); return; }
  const now = Date.now() / 1000 + state.clockSkew;
  const t0 = tl.created_at;
  const t1 = Math.max(tl.finished_at || now, ...steps.map((s) => s.finished_at || now), t0 + 1);
  const width = Math.max(600, box.clientWidth - 16);
  const labelW = 170, axisH = 18, concH = 36;
  const rowH = Math.max(4, Math.min(18, Math.floor(640 / agents.length)));
  const plotW = width - labelW - 8;
  const x = (t) => labelW + ((t - t0) / (t1 - t0)) * plotW;
  const height = axisH + concH + agents.length * rowH + 6;
  const root = svg("svg", { width, height, role: "img", "aria-label": "timeline of agents and their steps" });

  // Time axis with ~8 ticks.
  const axis = svg("g", { class: "axis" });
  const span = t1 - t0;
  const stepT = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600].find((d) => span / d <= 8) || 7200;
  for (let t = 0; t <= span; t += stepT) {
    axis.append(svg("line", { class: "grid", x1: x(t0 + t), x2: x(t0 + t), y1: axisH, y2: height }));
    const label = svg("text", { x: x(t0 + t) + 2, y: 12 });
    label.textContent = `${+t.toFixed(1)}s`;
    axis.append(label);
  }
  root.append(axis);

  // Concurrency: how many model and tool calls run at once (a subagent launch that waits for its
  // subagent holds no worker, so it does not count). A flat line at 1 is a serial swarm.
  const bins = 160, counts = new Array(bins).fill(0);
  for (const s of steps) {
    if (s.tool_name === "assign_task" || s.tool_name === "create_subagent") continue;
    const a = Math.floor(((s.started_at - t0) / span) * bins);
    const b = Math.ceil((((s.finished_at || now) - t0) / span) * bins);
    for (let i = Math.max(0, a); i < Math.min(bins, Math.max(b, a + 1)); i++) counts[i]++;
  }
  const peak = Math.max(1, ...counts);
  let d = `M ${labelW} ${axisH + concH}`;
  counts.forEach((c, i) => { d += ` L ${labelW + (i / bins) * plotW} ${axisH + concH - (c / peak) * (concH - 4)} L ${labelW + ((i + 1) / bins) * plotW} ${axisH + concH - (c / peak) * (concH - 4)}`; });
  d += ` L ${labelW + plotW} ${axisH + concH} Z`;
  root.append(svg("path", { class: "conc", d }));
  const concLabel = svg("text", { x: 4, y: axisH + concH / 2 + 4 });
  concLabel.textContent = `concurrent steps (peak ${peak})`;
  root.append(concLabel);

  // One row per agent, one bar per step.
  const rowOf = new Map(agents.map((a, i) => [a.id, i]));
  const top = axisH + concH + 4;
  agents.forEach((a, i) => {
    const y = top + i * rowH;
    if (i % 2) root.append(svg("rect", { x: 0, y, width, height: rowH, fill: "#fafbfc" }));
    if (rowH >= 9) {
      const t = svg("text", { x: 4 + Math.min(a.depth, 4) * 8, y: y + rowH - 3, class: "agent-label" });
      t.textContent = `${a.name} ${a.id.slice(0, 6)}`;
      root.append(t);
    }
    const life = svg("line", { x1: x(a.created_at), x2: x(a.finished_at || now), y1: y + rowH / 2, y2: y + rowH / 2,
                               stroke: "#d0d4da", "stroke-width": 1 });
    root.append(life);
  });
  const bars = svg("g", { class: "bars" });
  for (const s of steps) {
    const row = rowOf.get(s.agent_id);
    if (row === undefined) continue;
    const cls = stepClass(s);
    const x1 = x(s.started_at), x2 = x(s.finished_at || now);
    const r = svg("rect", { class: `bar ${cls}`, x: x1, y: top + row * rowH + 1, width: Math.max(1.5, x2 - x1),
                            height: Math.max(2, rowH - 2), fill: COLORS[cls], rx: rowH > 8 ? 2 : 0 });
    const title = svg("title");
    const dur = ((s.finished_at || now) - s.started_at).toFixed(2);
    title.textContent = `${s.kind === "llm" ? "LLM call" : s.tool_name} · turn ${s.turn} · ${dur} s · ${s.status}` +
      (s.attempt > 1 ? ` · attempt ${s.attempt}` : "") + (s.kind === "llm" ? ` · ${s.tokens_in}/${s.tokens_out} tokens · ${fmtUsd(s.cost_usd)}` : "");
    r.append(title);
    bars.append(r);
  }
  root.append(bars);
  box.replaceChildren(root);
}

function logEvent(e) {
  state.events.push(e);
  const log = $("event-log");
  const who = e.agent_id ? ` ${e.agent_id.slice(0, 8)}` : "";
  const extra = e.type === "tool_done" || e.type === "approval_requested" ? ` ${e.data.tool}` :
    e.type === "approval_decided" ? ` ${e.data.tool} ${e.data.decision}` : e.type === "run_done" ? ` ${e.data.status}` :
    e.type === "agent_done" ? ` ${e.data.status}` : e.type === "agent_started" ? ` ${e.data.name}` : "";
  log.prepend(el("li", { value: e.id, text: `${new Date(e.ts * 1000).toLocaleTimeString()} ${e.type}${who}${extra}` }));
  while (log.children.length > 200) log.lastChild.remove();
}

async function follow(runId) {
  // EventSource cannot send an Authorization header, so read the SSE stream with fetch.
  let last = 0;
  for (let failures = 0; failures < 30;) {
    try {
      const headers = last ? { "Last-Event-ID": String(last) } : {};
      const resp = await api(`/v1/runs/${runId}/events`, { headers });
      let ended = false;
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const chunk = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          if (/^event: end$/m.test(chunk)) ended = true;
          const data = chunk.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
          if (!data || ended) continue;
          const e = JSON.parse(data);
          last = Math.max(last, e.id);
          failures = 0;
          logEvent(e);
          scheduleRefresh();
        }
      }
      if (ended) { await refresh(); return; } // the run is over and every event arrived
      failures++; // closed early (server restart, slow reader): resume after the last id
      await sleep(500);
    } catch (err) {
      if (err instanceof ApiError && err.status < 500) { notice(err.message); return; }
      failures++;
      await sleep(Math.min(5000, 500 * failures));
    }
  }
}

async function action(runId, what) {
  try {
    await api(`/v1/runs/${runId}/${what}`, { method: "POST" });
    await refresh();
    if (what === "resume") follow(runId);
  } catch (e) { notice(e.message); }
}

// ------------------------------------------------------------ approvals

async function pendingApprovals(runId) {
  try {
    return (await (await api(`/v1/runs/${runId}/approvals?pending=true`)).json()).approvals;
  } catch (e) { return []; }
}

// Tool calls waiting for a human: approve runs the call; reject needs a reason (the model reads it).
function drawApprovals(items) {
  $("approvals-box").hidden = items.length === 0;
  $("approvals").replaceChildren(...items.map((a) => {
    const reason = el("input", { type: "text", placeholder: "reason (to reject)", "aria-label": "reason" });
    const approve = el("button", { type: "button", class: "approve", text: "approve" });
    const reject = el("button", { type: "button", class: "reject", text: "reject" });
    approve.onclick = () => decide(a, "approve", null);
    reject.onclick = () => {
      if (!reason.value.trim()) { notice("say why you reject it: the model is told the reason"); reason.focus(); return; }
      decide(a, "reject", reason.value.trim());
    };
    return el("li", { class: "approval", "data-step": a.step_id },
      el("b", { text: a.tool }), el("span", { class: "muted", text: `${a.agent || a.agent_id.slice(0, 8)} · ${a.step_id.slice(0, 8)}` }),
      el("code", { text: a.arguments || "" }), reason, approve, reject);
  }));
}

async function decide(a, decision, note) {
  try {
    await api(`/v1/runs/${a.run_id}/approvals/${a.step_id}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ decision, note }),
    });
  } catch (e) { notice(e.message); }
  await refresh();
}

async function download(runId) {
  try {
    const blob = await (await api(`/v1/runs/${runId}/export`)).blob();
    const a = el("a", { href: URL.createObjectURL(blob), download: `run-${runId}.jsonl` });
    document.body.append(a);
    a.click();
    a.remove();
  } catch (e) { notice(e.message); }
}

// ------------------------------------------------------------------ boot

async function whoami() {
  const info = await (await api("/v1/info")).json();
  $("whoami").textContent = `tenant ${info.tenant}${info.admin ? " (admin)" : ""} · key ${info.key_prefix} · ${info.mode}`;
  if (info.flower_url) { $("flower-link").href = info.flower_url; $("flower-link").hidden = false; }
}

async function main() {
  takeKeyFromUrl();
  $("key-form").onsubmit = (ev) => {
    ev.preventDefault();
    const key = $("key-input").value.trim();
    if (key) { localStorage.setItem(KEY_STORE, key); location.reload(); }
  };
  $("key-forget").onclick = () => { localStorage.removeItem(KEY_STORE); location.reload(); };
  $("status-filter").onchange = () => { state.offset = 0; showRuns().catch((e) => notice(e.message)); };
  $("prev-page").onclick = () => { state.offset = Math.max(0, state.offset - PAGE); showRuns().catch((e) => notice(e.message)); };
  $("next-page").onclick = () => { state.offset += PAGE; showRuns().catch((e) => notice(e.message)); };
  const match = location.pathname.match(/\/dashboard\/runs\/([0-9a-f]{32})/);
  try {
    await whoami();
    if (match) await showRun(match[1]);
    else {
      await showRuns();
      setInterval(() => showRuns().catch(() => {}), 5000);
    }
  } catch (e) {
    notice(e.message);
  }
}

main();
