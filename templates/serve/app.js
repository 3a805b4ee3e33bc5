"use strict";
// bake serve: poll the state every second and redraw it. Node data only ever goes through textContent.
const POLL_MS = 1000;
let version = null;  // the reports seen so far (the status line says it)

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function duration(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) {
    const m = Math.floor(s / 60);
    return m + " min " + Math.round(s - 60 * m) + " s";
  }
  if (s < 86400) {
    const h = Math.floor(s / 3600);
    return h + " h " + Math.floor((s - 3600 * h) / 60) + " min";
  }
  const d = Math.floor(s / 86400);
  return d + " d " + Math.floor((s - 86400 * d) / 3600) + " h";
}

function stepText(st, now) {
  if (st.state === "done") return "done " + duration(st.seconds);
  if (st.state === "running") return "running " + duration(now - st.started);
  if (st.state === "failed") return "failed" + (st.exit ? " (" + st.exit + ")" : "");
  return "–";
}

function ago(t, now) {
  return t === null ? "never" : duration(Math.max(0, now - t)) + " ago";
}

function render(doc) {
  const main = document.getElementById("clusters");
  const sections = [];
  for (const c of doc.clusters) {
    const section = el("section", {"class": "cluster", "data-cluster": c.name});
    section.append(el("h2", {}, c.name + (c.reportUrl ? "" : " (its nodes do not report)")));
    const table = el("table", {"class": "nodes"});
    const head = el("tr");
    for (const h of ["node", "role", "address", "current step", ...doc.steps, "last report"]) head.append(el("th", {}, h));
    table.append(head);
    const failures = el("div", {"class": "failures"});
    for (const n of c.nodes) {
      const cur = n.current;
      const row = el("tr", {"data-node": n.name, "data-current-step": cur ? cur.step : "",
                            "data-current-event": cur ? cur.event : ""});
      row.append(el("td", {"class": "name"}, n.name), el("td", {}, n.role), el("td", {}, n.ip),
                 el("td", {"class": "current"}, cur ? cur.step + " " + cur.event : (n.reports ? "no report yet" : "–")));
      const byStep = Object.fromEntries(n.steps.map(s => [s.step, s]));
      for (const name of doc.steps) {
        const st = byStep[name] || {state: "pending"};
        row.append(el("td", {"class": "step", "data-step": name, "data-state": st.state,
                             "data-seconds": st.seconds === null || st.seconds === undefined ? "" : st.seconds},
                      stepText(st, doc.now)));
        if (st.failures > 0) {
          const art = el("article", {"class": "failure", "data-node": n.name, "data-step": name});
          const when = st.state === "failed" ? "failed" : "failed before (" + st.failures + "x), now " + st.state;
          art.append(el("h3", {}, n.name + ": " + name + " " + when + (st.exit ? ", exit " + st.exit : "")));
          art.append(el("pre", {"class": "tail", "data-node": n.name, "data-step": name}, st.tail || "(no log tail)"));
          failures.append(art);
        }
      }
      row.append(el("td", {"class": "last"}, ago(n.lastReport, doc.now)));
      table.append(row);
    }
    section.append(table);
    if (failures.childElementCount) {
      section.append(el("h3", {}, "failures"), failures);
    }
    sections.push(section);
  }
  main.replaceChildren(...sections);
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const r = await fetch("api/state", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    const doc = await r.json();
    version = doc.version;
    render(doc);  // every time: the running steps' clocks move on
    status.className = "";
    status.dataset.version = String(doc.version);
    status.textContent = "live, " + doc.version + " reports, updated " + new Date(doc.now * 1000).toLocaleTimeString();
  } catch (e) {
    status.className = "stale";
    status.textContent = "server unreachable (" + e.message + "); retrying";
  }
  setTimeout(poll, POLL_MS);
}

poll();
