// The IVR console: live calls over Server-Sent Events, recent calls and charts from the record store, flow
// diagrams from the server's Graphviz SVG. No framework, no build step, nothing from the network but this
// server. Call data (callers are strangers) only ever goes into the page as text, never as markup.
"use strict";

const PALETTE = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795", "#b7791f", "#718096",
  "#e53e3e", "#5a67d8"];
const SVG_NS = "http://www.w3.org/2000/svg";
const REFRESH_MS = 10000;
let liveIds = new Set();
let liveCalls = [];
let shownFlow = null;
let refreshTimer = null;
const colors = new Map();  // one colour per label across both charts (gold is gold in each)

function colorOf(label) {
  if (!colors.has(label)) colors.set(label, PALETTE[colors.size % PALETTE.length]);
  return colors.get(label);
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) throw new Error(`${response.status} ${(await response.text()).trim()}`);
  return response.json();
}

function chip(text, state, title) {
  const node = el("span", text, `chip ${state || ""}`);
  if (title) node.title = title;
  return node;
}

function renderStatus(status) {
  const box = document.getElementById("status");
  const feed = document.getElementById("feed");
  box.replaceChildren(feed);
  const health = status.health || {};
  box.append(chip(health.ok ? "healthy" : "unhealthy", health.ok ? "ok" : "bad"));
  box.append(chip(`workers ${health.workers_ready}/${health.workers}`,
    health.workers_ready === health.workers ? "ok" : "bad",
    (status.workers || []).map(w => `${w.name}: pid ${w.pid}, ${w.ready ? "ready" : "down"}, ` +
      `${w.restarts} restarts`).join("\n")));
  if (health.front) {
    const front = health.front;
    const reg = front.registered ? Object.entries(front.registered).map(([t, ok]) => `${t}: ${ok ? "registered" : "not registered"}`) : [];
    box.append(chip(`front ${front.up === true ? "up" : front.up === false ? "down" : "?"}`,
      front.up === true ? "ok" : front.up === false ? "bad" : "warn", reg.join("\n")));
  } else {
    box.append(chip("front: none"));
  }
  for (const [name, stats] of Object.entries(status.http || {})) {
    const state = stats.breaker;
    box.append(chip(`${name} breaker ${state}`, state === "closed" ? "ok" : state === "open" ? "bad" : "warn",
      Object.entries(stats).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join("\n")));
  }
  if (health.draining) box.append(chip("draining", "warn"));
  if (status.node) box.append(chip(`node ${status.node}`));
}

function renderLive(calls) {
  liveCalls = calls;
  const body = document.querySelector("#live tbody");
  const ids = new Set(calls.map(c => `${c.worker}/${c.call_id}`));
  const rows = calls.map(call => {
    const id = `${call.worker}/${call.call_id}`;
    const row = el("tr", null, liveIds.has(id) ? "" : "new");
    row.dataset.callId = id;
    row.append(el("td", call.call_id), el("td", call.caller), el("td", call.dialed), el("td", call.flow),
      el("td", call.step || "(answering)", "step"), el("td", `${Math.round(call.age_s)} s`),
      el("td", (call.path || []).join(" → "), "path"));
    return row;
  });
  body.replaceChildren(...rows);
  document.getElementById("live-count").textContent = String(calls.length);
  document.getElementById("live-empty").hidden = calls.length > 0;
  const ended = [...liveIds].some(id => !ids.has(id));
  liveIds = ids;
  if (ended) refreshSoon(800);  // a call ended: its record is in the store within a batch
  highlightLiveSteps();
}

function queueOf(record) {
  if (record.outcome && record.outcome.queue) return record.outcome.queue;
  const transfers = record.transfers || [];
  return transfers.length ? transfers[transfers.length - 1].queue : "";
}

const openRecords = new Set();  // uids whose details row is open (kept across refreshes)

function details(record) {
  const { uid, sip_call_id, worker, trunk, node, end_reason, inputs, variables, fetches, transfers, legs, timings } = record;
  const row = el("tr", null, "details");
  const cell = el("td");
  cell.colSpan = 9;
  cell.append(el("pre", JSON.stringify({ uid, sip_call_id, node, worker, trunk, end_reason, inputs, variables,
    fetches, transfers, legs, timings }, null, 1)));
  row.append(cell);
  return row;
}

function renderRecent(calls) {
  const body = document.querySelector("#recent tbody");
  body.replaceChildren(...calls.flatMap(record => {
    const row = el("tr", null, "record");
    row.dataset.uid = record.uid;
    row.title = "click for the whole record";
    row.addEventListener("click", () => {
      if (openRecords.has(record.uid)) openRecords.delete(record.uid); else openRecords.add(record.uid);
      renderRecent(calls);
    });
    const started = new Date(record.started_at * 1000);
    const outcome = record.outcome || {};
    const duration = record.timings && record.timings.duration_ms != null
      ? `${(record.timings.duration_ms / 1000).toFixed(1)} s` : "";
    row.append(el("td", started.toLocaleTimeString()), el("td", record.caller), el("td", record.dialed),
      el("td", record.flow), el("td", (record.variables || {}).tier || ""), el("td", queueOf(record), "queue"),
      el("td", `${outcome.kind}${outcome.reason ? ": " + outcome.reason : ""}`, `outcome-${outcome.kind}`),
      el("td", duration), el("td", (record.path || []).join(" → "), "path"));
    return openRecords.has(record.uid) ? [row, details(record)] : [row];
  }));
}

function renderChart(name, data) {
  const svg = document.getElementById(`chart-${name}`);
  const legend = document.getElementById(`legend-${name}`);
  const series = Object.entries(data[name] || {});
  const minutes = data.buckets;
  const [left, top, width, height] = [34, 8, 556, 150];
  const totals = Array.from({ length: minutes }, (_, i) => series.reduce((sum, [, counts]) => sum + counts[i], 0));
  const max = Math.max(1, ...totals);
  const nodes = [svgEl("line", { x1: left, y1: top + height, x2: left + width, y2: top + height, class: "axis" }),
    svgEl("line", { x1: left, y1: top, x2: left, y2: top + height, class: "axis" })];
  const label = (x, y, text, anchor) => { const t = svgEl("text", { x, y, "text-anchor": anchor || "start" }); t.textContent = text; return t; };
  nodes.push(label(left - 4, top + 8, String(max), "end"), label(left - 4, top + height, "0", "end"));
  const span = h => (h >= 2 ? `-${h} h` : `-${Math.round(h * 60)} min`);
  nodes.push(label(left, top + height + 14, span(data.hours)),
    label(left + width / 2, top + height + 14, span(data.hours / 2), "middle"),
    label(left + width, top + height + 14, "now", "end"));
  const slot = width / minutes;
  const base = Array(minutes).fill(0);
  series.forEach(([series_name, counts]) => {
    counts.forEach((count, i) => {
      if (!count) return;
      const h = (count / max) * height;
      const y = top + height - (base[i] / max) * height - h;
      base[i] += count;
      const when = new Date((data.start + i * data.bucket_s) * 1000);
      const rect = svgEl("rect", { x: left + i * slot + 1, y, width: Math.max(1, slot - 2), height: h,
        fill: colorOf(series_name), class: "bar", "data-series": series_name, "data-count": count });
      const title = svgEl("title");
      title.textContent = `${when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })} ${series_name}: ${count}`;
      rect.append(title);
      nodes.push(rect);
    });
  });
  svg.replaceChildren(...nodes);
  svg.dataset.total = String(totals.reduce((a, b) => a + b, 0));
  legend.replaceChildren(...series.map(([series_name, counts]) => {
    const item = el("span", `${series_name} (${counts.reduce((a, b) => a + b, 0)})`);
    const swatch = el("i");
    swatch.style.background = colorOf(series_name);
    item.prepend(swatch);
    return item;
  }));
}

async function refresh() {
  const note = document.getElementById("recent-note");
  try {
    const hours = document.getElementById("window").value;
    const [recent, series] = await Promise.all([getJSON("/console/api/recent"),
      getJSON(`/console/api/series?hours=${encodeURIComponent(hours)}`)]);
    document.querySelectorAll(".window-note").forEach(n => { n.textContent = `per ${series.bucket_s / 60} min`; });
    renderRecent(recent.calls);
    renderChart("queue", series);
    renderChart("tier", series);
    note.textContent = `from the record store, ${new Date().toLocaleTimeString()}`;
    note.className = "";
  } catch (err) {
    note.textContent = `record store: ${err.message}`;
    note.className = "error";
  }
}

function refreshSoon(delay) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => refresh().finally(() => refreshSoon(REFRESH_MS)), delay);
}

function highlightLiveSteps() {
  const diagram = document.getElementById("flow-diagram");
  diagram.querySelectorAll(".live").forEach(node => node.classList.remove("live"));
  for (const call of liveCalls) {
    if (call.flow !== shownFlow || !call.step) continue;
    const node = diagram.querySelector(`[id="step-${CSS.escape(call.step)}"]`);
    if (node) node.classList.add("live");
  }
}

async function showFlow(flow) {
  shownFlow = flow.name;
  document.querySelectorAll("#flow-tabs button").forEach(b => b.classList.toggle("active", b.dataset.flow === flow.name));
  document.getElementById("flow-description").textContent = flow.description;
  const diagram = document.getElementById("flow-diagram");
  const response = await fetch(`/console/graph/${encodeURIComponent(flow.name)}.svg`, { credentials: "same-origin" });
  if (!response.ok) {
    diagram.replaceChildren(el("p", `diagram unavailable: ${(await response.text()).trim()}`, "error"));
    return;
  }
  // The server's own Graphviz output, parsed as an SVG document (not HTML) and adopted into the page.
  const doc = new DOMParser().parseFromString(await response.text(), "image/svg+xml");
  const svg = doc.documentElement;
  svg.dataset.flow = flow.name;
  diagram.replaceChildren(document.importNode(svg, true));
  highlightLiveSteps();
}

async function loadFlows() {
  const { flows } = await getJSON("/console/api/flows");
  const tabs = document.getElementById("flow-tabs");
  tabs.replaceChildren(...flows.map(flow => {
    const button = el("button", flow.name);
    button.dataset.flow = flow.name;
    button.addEventListener("click", () => showFlow(flow));
    return button;
  }));
  if (flows.length) await showFlow(flows[0]);
}

function connect() {
  const feed = document.getElementById("feed");
  const source = new EventSource("/console/events");
  source.addEventListener("open", () => { feed.textContent = "live"; feed.className = "chip ok"; });
  source.addEventListener("error", () => { feed.textContent = "reconnecting…"; feed.className = "chip bad"; });
  source.addEventListener("live", event => {
    const data = JSON.parse(event.data);
    renderStatus(data.status);
    renderLive(data.calls);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  connect();
  refreshSoon(0);
  document.getElementById("window").addEventListener("change", () => refreshSoon(0));
  loadFlows().catch(err => {
    document.getElementById("flow-diagram").replaceChildren(el("p", `flows: ${err.message}`, "error"));
  });
});
