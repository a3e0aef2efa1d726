// llmopt console: a small single-page UI over /api/v1, refreshed by server-sent events.
"use strict";

const $ = (sel) => document.querySelector(sel);
const HOUR = 3600000;
let summary = { mutations_enabled: false, now_ms: 0 };
let rendering = false;
let pending = false;

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function utc(ms) {
  return ms > 0 ? new Date(ms).toISOString().replace("T", " ").slice(0, 16) : "–";
}
function pct(x) { return x == null ? "–" : (100 * x).toFixed(2) + " %"; }
function usd(x, digits = 4) { return x == null ? "–" : (x < 0 ? "-$" : "$") + Math.abs(Number(x)).toFixed(digits); }
function num(x, digits = 0) { return x == null ? "–" : Number(x).toFixed(digits); }
function targets(ts) {
  return (ts || []).map((t) => `${esc(t.provider)}/${esc(t.model)} <b>${(100 * t.weight).toFixed(0)}%</b>`).join("<br>");
}
async function api(path, options) {
  const response = await fetch("/api/v1" + path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// A line chart as inline SVG: series = [{name, points: [[x, y], ...]}], marks = [{x, label}].
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563"];
function chart(title, series, marks = [], opts = {}) {
  const W = opts.width || 520, H = opts.height || 150, P = 34;
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return `<figure class="chart"><figcaption>${esc(title)}</figcaption><p class="empty">no data yet</p></figure>`;
  const xs = all.map((p) => p[0]).concat(marks.map((m) => m.x));
  const ys = all.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  const y0 = opts.zero === false ? Math.min(...ys) : Math.min(0, ...ys);
  const y1 = opts.max != null ? Math.max(opts.max, ...ys) : Math.max(...ys, y0 + 1e-12);
  const sx = (x) => P + ((x - x0) / (x1 - x0)) * (W - P - 8);
  const sy = (y) => H - 18 - ((y - y0) / (y1 - y0)) * (H - 30);
  const lines = series.map((s, i) => {
    const d = s.points.map((p, j) => {
      const x = sx(p[0]).toFixed(1), y = sy(p[1]).toFixed(1);
      if (j === 0) return `M${x},${y}`;
      return opts.step ? `H${x}V${y}` : `L${x},${y}`;
    }).join("");
    const color = COLORS[i % COLORS.length];
    // A single window is a dot: a path of one point draws nothing.
    const dot = s.points.length === 1 ? `<circle cx="${sx(s.points[0][0])}" cy="${sy(s.points[0][1])}" r="3" fill="${color}"/>` : "";
    return `<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6"><title>${esc(s.name)}</title></path>${dot}`;
  }).join("");
  const markers = marks.map((m) => `<g class="mark"><line x1="${sx(m.x)}" x2="${sx(m.x)}" y1="8" y2="${H - 18}"/><title>${esc(m.label)}</title></g>`).join("");
  const legend = series.length > 1 ? `<div class="legend">${series.map((s, i) => `<span style="color:${COLORS[i % COLORS.length]}">■ ${esc(s.name)}</span>`).join(" ")}</div>` : "";
  const fmt = opts.format || ((y) => Number(y).toPrecision(3));
  return `<figure class="chart"><figcaption>${esc(title)}</figcaption>
    <svg viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="${esc(title)}">
      <text x="2" y="14" class="axis">${esc(fmt(y1))}</text><text x="2" y="${H - 20}" class="axis">${esc(fmt(y0))}</text>
      <text x="${P}" y="${H - 4}" class="axis">${esc(utc(x0))}</text><text x="${W - 110}" y="${H - 4}" class="axis">${esc(utc(x1))}</text>
      ${markers}${lines}</svg>${legend}</figure>`;
}
const point = (key) => (f) => [f.window_end_ms, f[key]];

// --- pages -------------------------------------------------------------------------------------
async function overview() {
  // One request for the whole page: every route's summary and its last 3 hours in 5-min buckets.
  const routes = await api("/overview?hours=3&step=300000");
  const named = (key) => routes.map((r) => ({ name: `${r.app}/${r.route}`, points: r.total.filter((f) => f[key] != null).map(point(key)) }));
  const rows = routes.map((r) => `<tr data-route="${esc(r.app)}/${esc(r.route)}">
      <td><a href="#/route/${encodeURIComponent(r.app)}/${encodeURIComponent(r.route)}">${esc(r.app)}/${esc(r.route)}</a></td>
      <td>${targets(r.targets)}</td><td>${r.version ?? "–"}</td>
      <td>${num(r.last_hour?.calls)}</td><td>${usd(r.last_hour?.cost_usd, 2)}</td><td>${usd(r.now?.cost_per_call, 5)}</td>
      <td>${pct(r.now?.error_rate)}</td><td>${num(r.now?.latency_p95_ms)} ms</td><td>${num(r.now?.quality_mean, 3)}</td>
      <td class="${r.firing_alerts ? "bad" : ""}">${r.firing_alerts}</td><td class="${r.pending_decisions ? "warn" : ""}">${r.pending_decisions}</td></tr>`).join("");
  return `<h2>Fleet overview</h2>
    <p class="lead">${routes.length} routes · <a href="#/alerts">${summary.firing_alerts} alerts firing</a> · <a href="#/decisions">${summary.pending_decisions} decisions waiting</a></p>
    <table id="routes"><thead><tr><th>route</th><th>live routing</th><th>version</th><th>calls (1 h)</th><th>spend (1 h)</th><th>cost/call</th><th>errors</th><th>p95</th><th>quality</th><th>firing</th><th>pending</th></tr></thead><tbody>${rows}</tbody></table>
    <div class="charts">${chart("Cost per call (USD), last 3 h, 5-min buckets", named("cost_per_call"), [], { format: (y) => "$" + y.toPrecision(2) })}
    ${chart("Error rate, last 3 h", named("error_rate"), [], { format: (y) => (100 * y).toFixed(1) + "%" })}
    ${chart("Latency p95 (ms), last 3 h", named("latency_p95_ms"))}
    ${chart("Quality, last 3 h", named("quality_mean"), [], { zero: false })}</div>`;
}

async function routePage(app, route) {
  const path = `/routes/${encodeURIComponent(app)}/${encodeURIComponent(route)}`;
  const [detail, windows] = await Promise.all([api(path), api(path + "/windows")]);
  const changes = detail.changes;
  const marks = changes.map((c) => ({ x: c.event_time, label: `v${c.version} ${c.kind}${c.decision_id ? " by " + c.decision_id : ""}` }));
  const models = [...new Set(changes.flatMap((c) => c.targets.map((t) => `${t.provider}/${t.model}`)))];
  const end = Math.max(summary.now_ms, ...changes.map((c) => c.event_time));
  const weights = models.map((m) => ({
    name: m,
    points: changes.map((c) => [c.event_time, (c.targets.find((t) => `${t.provider}/${t.model}` === m) || { weight: 0 }).weight]).concat([[end, (changes[changes.length - 1].targets.find((t) => `${t.provider}/${t.model}` === m) || { weight: 0 }).weight]]),
  }));
  const per = (key) => Object.entries(windows.series).map(([name, fs]) => ({ name, points: fs.filter((f) => f[key] != null).map(point(key)) }));
  const s = detail.summary;
  const changeRows = changes.slice().reverse().map((c) => `<tr><td>v${c.version}</td><td>${utc(c.event_time)}</td><td>${esc(c.kind)}</td><td>${targets(c.targets)}</td><td>${c.decision_id ? `<a href="#/decisions/${encodeURIComponent(c.decision_id)}">${esc(c.decision_id)}</a>` : "–"}</td></tr>`).join("");
  return `<h2>${esc(app)}/${esc(route)}</h2>
    <section class="cards"><div><h3>Live routing (v${s.version ?? "–"})</h3><p id="live-targets">${targets(s.targets)}</p></div>
      <div><h3>Now</h3><p>${num(s.now?.calls)} calls · ${pct(s.now?.error_rate)} errors · p95 ${num(s.now?.latency_p95_ms)} ms · ${usd(s.now?.cost_per_call, 5)}/call · quality ${num(s.now?.quality_mean, 3)}</p></div>
      <div><h3>Alerts</h3><p>${s.firing_alerts} firing · ${s.pending_decisions} decisions waiting</p></div></section>
    <div class="charts">${chart("Routing weights (config changes marked)", weights, marks, { step: true, max: 1, format: (y) => (100 * y).toFixed(0) + "%" })}
    ${chart("Error rate by model", per("error_rate"), marks, { format: (y) => (100 * y).toFixed(1) + "%" })}
    ${chart("Latency p95 (ms) by model", per("latency_p95_ms"), marks)}
    ${chart("Cost per call by model", per("cost_per_call"), marks, { format: (y) => "$" + y.toPrecision(2) })}
    ${chart("Quality by model", per("quality_mean"), marks, { zero: false })}</div>
    <h3>Decisions</h3>${decisionTable(detail.decisions.slice().reverse())}
    <h3>Version history</h3><table><thead><tr><th>version</th><th>time</th><th>kind</th><th>targets</th><th>decision</th></tr></thead><tbody>${changeRows}</tbody></table>`;
}

function alertRows(list) {
  return list.map((a) => `<tr class="${a.status === "FIRING" ? "bad" : ""}"><td>${esc(a.status)}</td><td>${esc(a.severity)}</td><td>${esc(a.alertname)}</td>
    <td>${a.labels.app ? `<a href="#/route/${encodeURIComponent(a.labels.app)}/${encodeURIComponent(a.labels.route)}">${esc(a.labels.app)}/${esc(a.labels.route)}</a>` : "–"}</td>
    <td>${esc([a.labels.provider, a.labels.model].filter(Boolean).join("/"))}</td><td>${esc(a.summary)}</td><td>${utc(a.starts_at)}</td><td>${a.ends_at ? utc(a.ends_at) : ""}</td></tr>`).join("");
}
async function alertsPage() {
  const [firing, all] = await Promise.all([api("/alerts?status=firing"), api("/alerts")]);
  const head = "<thead><tr><th>status</th><th>severity</th><th>alert</th><th>route</th><th>model</th><th>summary (evidence)</th><th>since</th><th>ended</th></tr></thead>";
  return `<h2>Alerts</h2><h3>Firing (${firing.length})</h3><table id="firing">${head}<tbody>${alertRows(firing)}</tbody></table>
    <h3>History</h3><table id="alert-history">${head}<tbody>${alertRows(all.slice().reverse())}</tbody></table>`;
}

function evidence(d) {
  const e = d.evidence || {};
  const metrics = Object.entries(e.metrics || {}).map(([k, v]) => `${esc(k)}=${Number(v).toPrecision(4)}`).join(", ");
  return `${esc(e.test)}${e.statistic != null ? ` stat=${Number(e.statistic).toPrecision(4)}` : ""}${e.p_value != null ? ` p=${Number(e.p_value).toPrecision(3)}` : ""}<br><small>${metrics}</small>`;
}
function decisionTable(list, actions = true) {
  const rows = list.map((d) => `<tr data-decision="${esc(d.id)}"><td><a href="#/decisions/${encodeURIComponent(d.id)}">${esc(d.id)}</a></td><td>${esc(d.state)}</td><td>${esc(d.strategy)}</td>
    <td>${esc(d.app)}/${esc(d.route)}</td><td>${esc(d.action)}</td><td>${esc(d.reason)}</td><td>${evidence(d)}</td><td>${utc(d.event_time)}</td>
    <td>${actions && d.state === "PROPOSED" && summary.mutations_enabled ? `<button class="approve" data-id="${esc(d.id)}">Approve</button> <button class="reject" data-id="${esc(d.id)}">Reject</button>` : esc(d.params?.decided_by || "")}</td></tr>`).join("");
  return `<table class="decisions"><thead><tr><th>decision</th><th>state</th><th>strategy</th><th>route</th><th>action</th><th>reason</th><th>evidence</th><th>time</th><th></th></tr></thead><tbody>${rows}</tbody></table>`;
}
async function decisionsPage() {
  const all = await api("/decisions");
  const waiting = all.filter((d) => d.state === "PROPOSED");
  return `<h2>Decisions</h2><h3>Waiting for approval (${waiting.length})</h3><div id="pending">${decisionTable(waiting)}</div>
    <h3>Decided (${all.length - waiting.length})</h3>${decisionTable(all.filter((d) => d.state !== "PROPOSED").reverse(), false)}`;
}
async function decisionPage(id) {
  const detail = await api(`/decisions/${encodeURIComponent(id)}`);
  const d = detail.decision;
  const rows = detail.history.map((h) => `<tr><td>${esc(h.state)}</td><td>${utc(h.event_time)}</td><td>${esc(h.params?.step ?? "")}</td><td>${esc(h.params?.decided_by ?? "")}</td></tr>`).join("");
  return `<h2>Decision ${esc(d.id)}</h2>${decisionTable([d])}
    <h3>Lifecycle</h3><table><thead><tr><th>state</th><th>time</th><th>step</th><th>decided by</th></tr></thead><tbody>${rows}</tbody></table>
    <h3>Params</h3><pre>${esc(JSON.stringify(d.params, null, 2))}</pre>`;
}

function spendTable(title, lines) {
  return `<div><h3>${esc(title)}</h3><table><thead><tr><th></th><th>calls</th><th>spend</th><th>share</th></tr></thead><tbody>${lines.map((l) => `<tr><td>${esc(l.key)}</td><td>${num(l.calls)}</td><td>${usd(l.spend_usd, 2)}</td><td>${pct(l.share)}</td></tr>`).join("")}</tbody></table></div>`;
}
async function costPage() {
  let r;
  try { r = await api("/cost?period=day"); } catch (e) { return `<h2>Cost</h2><p class="empty">${esc(e.message)}</p>`; }
  const saved = r.decisions.map((d) => `<tr><td><a href="#/decisions/${encodeURIComponent(d.decision_id)}">${esc(d.decision_id)}</a></td><td>${esc(d.strategy)}</td><td>${esc(d.app)}/${esc(d.route)}</td><td>${num(d.calls)}</td><td>${usd(d.spend_usd, 2)}</td><td>${usd(d.counterfactual_usd, 2)}</td><td>${usd(d.savings_usd, 2)}</td></tr>`).join("");
  return `<h2>Cost (UTC day ${utc(r.start_ms).slice(0, 10)}, through ${utc(r.through_ms)})</h2>
    <p class="lead">${usd(r.spend_usd, 2)} spent on ${num(r.calls)} calls · projected ${usd(r.projected_usd, 2)} · decisions saved ${usd(r.savings_usd, 2)}</p>
    <div class="grid">${spendTable("By app", r.by_app)}${spendTable("By route", r.by_route)}${spendTable("By model", r.by_model)}${spendTable("By tenant", r.by_tenant)}</div>
    <h3>What each decision saved</h3><table><thead><tr><th>decision</th><th>strategy</th><th>route</th><th>calls</th><th>spend</th><th>without it</th><th>saved</th></tr></thead><tbody>${saved}</tbody></table>`;
}
async function quantizationPage() {
  const [list, jobs] = await Promise.all([api("/artifacts"), api("/quantization/jobs")]);
  const jobRows = jobs.map((j) => `<tr class="${j.status === "failed" ? "bad" : ""}"><td>${esc(j.job.job_id)}</td><td>${esc(j.job.model_name)}</td><td>${esc(j.job.method)} ${j.job.bits}-bit${j.job.group_size ? " g" + j.job.group_size : ""}</td><td>${esc(j.status)}</td><td>${esc(j.artifact_id || j.failure || "")}</td><td>${j.job.decision_id ? `<a href="#/decisions/${encodeURIComponent(j.job.decision_id)}">${esc(j.job.decision_id)}</a>` : "–"}</td><td>${utc(j.job.event_time)}</td></tr>`).join("");
  const rows = list.map((a) => `<tr><td>${esc(a.model_name)}</td><td>${esc(a.method)} ${a.bits}-bit${a.group_size ? " g" + a.group_size : ""}</td><td>${num(a.bytes / 1e6, 1)} MB</td><td>${num(a.compression_ratio, 2)}×</td><td>${num(a.mean_cosine, 4)}</td><td>${num(a.min_cosine, 4)}</td><td>${num(a.spearman, 4)}</td><td>${esc(a.location)}</td><td>${utc(a.event_time)}</td></tr>`).join("");
  return `<h2>Quantization jobs (${jobs.length})</h2><table id="jobs"><thead><tr><th>job</th><th>model</th><th>method</th><th>status</th><th>artifact or failure</th><th>decision</th><th>time</th></tr></thead><tbody>${jobRows}</tbody></table>
    <h2>Quantization artifacts (${list.length})</h2><table id="artifacts"><thead><tr><th>model</th><th>method</th><th>size</th><th>compression</th><th>mean cosine</th><th>min cosine</th><th>spearman</th><th>location</th><th>time</th></tr></thead><tbody>${rows}</tbody></table>`;
}

// --- routing, live updates, actions ----------------------------------------------------------
async function render() {
  if (rendering) { pending = true; return; }
  rendering = true;
  try {
    summary = await api("/summary");
    $("#now").textContent = "event time " + utc(summary.now_ms);
    $("#mode").textContent = summary.mutations_enabled ? "" : "read-only";
    const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    let html;
    if (parts[0] === "route" && parts.length >= 3) html = await routePage(parts[1], parts.slice(2).join("/"));
    else if (parts[0] === "alerts") html = await alertsPage();
    else if (parts[0] === "decisions" && parts[1]) html = await decisionPage(parts.slice(1).join("/"));
    else if (parts[0] === "decisions") html = await decisionsPage();
    else if (parts[0] === "cost") html = await costPage();
    else if (parts[0] === "quantization") html = await quantizationPage();
    else html = await overview();
    $("#page").innerHTML = html;
    document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", location.hash.startsWith(a.getAttribute("href")) && a.getAttribute("href") !== "#/" || (a.getAttribute("href") === "#/" && (location.hash === "" || location.hash === "#/"))));
    document.body.dataset.rendered = String(summary.events);
  } catch (e) {
    $("#page").innerHTML = `<p class="bad">${esc(e.message)}</p>`;
  } finally {
    rendering = false;
    if (pending) { pending = false; setTimeout(render, 0); }
  }
}

document.addEventListener("click", async (ev) => {
  const button = ev.target.closest("button.approve, button.reject");
  if (!button) return;
  const verb = button.classList.contains("approve") ? "approve" : "reject";
  try {
    await api(`/decisions/${encodeURIComponent(button.dataset.id)}/${verb}`, { method: "POST", headers: { Authorization: "Bearer " + $("#token").value } });
    button.closest("td").textContent = verb === "approve" ? "approved" : "rejected";
  } catch (e) {
    button.closest("td").insertAdjacentHTML("beforeend", `<div class="bad">${esc(e.message)}</div>`);
  }
});

$("#token").value = localStorage.getItem("llmopt-token") || "";
$("#token").addEventListener("change", () => localStorage.setItem("llmopt-token", $("#token").value));
window.addEventListener("hashchange", render);
let throttle = null;
const events = new EventSource("/api/v1/stream");
events.addEventListener("update", () => {
  $("#live").classList.add("on");
  if (!throttle) throttle = setTimeout(() => { throttle = null; render(); }, 500);
});
events.onerror = () => $("#live").classList.remove("on");
render();
