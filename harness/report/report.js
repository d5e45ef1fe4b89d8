// ringlab report: reads the embedded JSON, fills the summary with textContent (never innerHTML
// with data), and draws the timeline and plots on canvases so 100,000 operations stay fast.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const O = D.ops;
  const N = O.n;
  const TYPE_NAMES = ["ok", "fail", "info"];
  const TYPE_COLORS = ["#6db6fe", "#feb5da", "#ffaa26"];
  const TYPE_STROKE = ["#2f7fc8", "#d0689c", "#c77800"];
  const FAILED_COLOR = "#d0312d"; // a fault injection that failed (the --invalid red)
  // One hue per nemesis kind, far enough apart that adjacent windows stay tellable at 35% alpha.
  const NEMESIS_COLORS = { partition: "#ff7043", kill: "#ffca28", pause: "#8e24aa", clock: "#00acc1", latency: "#3949ab",
    membership: "#7cb342", zk: "#00897b", "flush-compact": "#c0ca33", repair: "#d81b60", crash: "#b71c1c", corrupt: "#546e7a",
    admin: "#1e88e5", move: "#795548", clients: "#212121" };
  const SERIES_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e"];
  const LABEL_W = 150;   // px for lane labels at the left of the timeline
  const AXIS_H = 22;     // px for the time axis under each canvas
  const HIT_SLOP = 3;    // px of tolerance when hovering thin bars
  const LIN_DRAW_STEPS = 20;  // linearized ops drawn before the failure: enough context, still legible

  const $ = (id) => document.getElementById(id);
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) for (const k in attrs) {
      if (k === "class") e.className = attrs[k];
      else if (k === "text") e.textContent = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }
  function show(v) {
    if (v === undefined) return "";
    if (v === null) return "nil"; // an absent value, as Jepsen and Knossos print it
    if (typeof v === "string") return v;
    return JSON.stringify(v);
  }
  function verdictClass(v) { return v === true ? "valid" : v === false ? "invalid" : "unknown"; }
  function verdictText(v) { return v === true ? "valid" : v === false ? "invalid" : "unknown"; }
  function badge(v) { return el("span", { class: "verdict " + verdictClass(v), text: verdictText(v) }); }
  function fmtSec(us) { return (us / 1e6).toFixed(us < 1e7 ? 3 : 2) + " s"; }
  function fmtDur(s) {
    if (s == null) return "?";
    if (s < 120) return s.toFixed(1) + " s";
    return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  }
  function kvRows(tbody, obj) {
    for (const k of Object.keys(obj || {})) tbody.append(el("tr", null, el("td", { text: k }), el("td", { text: show(obj[k]) })));
  }
  function seriesColor(i) { return SERIES_COLORS[i % SERIES_COLORS.length]; }
  // One colour per operation kind in every report (not per order of appearance): the workloads'
  // f names get fixed colours, any other name one drawn from its characters.
  const OP_COLORS = { read: "#1f77b4", write: "#d62728", cas: "#2ca02c", add: "#9467bd", incr: "#8c564b",
    get: "#1f77b4", put: "#d62728", append: "#e377c2", delete: "#7f7f7f", batch: "#bcbd22", txn: "#17becf" };
  function opColor(name) {
    if (Object.prototype.hasOwnProperty.call(OP_COLORS, name)) return OP_COLORS[name];
    let h = 0;
    for (const ch of String(name)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    return SERIES_COLORS[h % SERIES_COLORS.length];
  }

  // ---------------------------------------------------------------- derived op columns
  const inv = Float64Array.from(O.inv);
  const cmpRaw = O.cmp;
  const END = Math.max(O.end, 1);
  const end = new Float64Array(N);          // completion time, or the end of the run if never completed
  const lane = Int32Array.from(O.lane);
  const type = Int8Array.from(O.type);
  const fcol = Int16Array.from(O.f);
  let maxDur = 0;
  for (let i = 0; i < N; i++) {
    const c = cmpRaw[i];
    end[i] = c < 0 ? END : c;
    if (c >= 0 && c - inv[i] > maxDur) maxDur = c - inv[i];
  }
  const openRows = [];
  for (let i = 0; i < N; i++) if (cmpRaw[i] < 0) openRows.push(i);
  const byInv = new Uint32Array(N);
  for (let i = 0; i < N; i++) byInv[i] = i;
  byInv.sort((a, b) => inv[a] - inv[b]);
  const nLanes = Math.max(D.lanes.length, 1);
  const laneRows = Array.from({ length: nLanes }, () => []);
  for (let k = 0; k < N; k++) { const i = byInv[k]; laneRows[lane[i]].push(i); }
  let rowOfIndexMap = null;
  function rowOfIndex(idx) {
    if (!rowOfIndexMap) {
      rowOfIndexMap = new Map();
      for (let i = 0; i < N; i++) { rowOfIndexMap.set(O.ii[i], i); if (O.ci[i] >= 0) rowOfIndexMap.set(O.ci[i], i); }
    }
    return rowOfIndexMap.get(idx);
  }
  function lowerBound(arr, t, key) { // first position k with key(arr[k]) >= t
    let lo = 0, hi = arr.length;
    while (lo < hi) { const m = (lo + hi) >> 1; if (key(arr[m]) < t) lo = m + 1; else hi = m; }
    return lo;
  }
  const invOf = (i) => inv[i];

  // ---------------------------------------------------------------- state shared by views
  const view = { t0: 0, t1: END };
  let selected = new Set();
  let focus = -1;                       // the operation whose details are shown
  const redrawers = [];
  let frame = 0;
  function requestDraw() {
    if (frame) return;
    frame = requestAnimationFrame(() => { frame = 0; for (const f of redrawers) f(); });
  }
  function setView(t0, t1) {
    const span = Math.max(t1 - t0, 10);  // at least 10 µs wide
    const full = END * 1.02;
    let a = t0, b = t0 + span;
    if (span >= full) { a = -END * 0.01; b = END * 1.01; }
    view.t0 = a; view.t1 = b;
    $("range").textContent = "showing " + fmtSec(Math.max(a, 0)) + " – " + fmtSec(Math.min(b, END)) + " of " + fmtSec(END);
    requestDraw();
  }

  // ---------------------------------------------------------------- summary
  function renderSummary() {
    $("title").textContent = D.meta.name + " · " + D.meta.run;
    const ov = $("overall");
    ov.className = "verdict " + verdictClass(D.valid);
    ov.textContent = verdictText(D.valid);
    const tb = $("checkers").tBodies[0];
    if (!D.checkers.length) tb.append(el("tr", null, el("td", { class: "empty", colspan: "4", text: "no results.json: run `harness check` to check this history" })));
    for (const c of D.checkers) {
      const counts = Object.entries(c.counts || {}).map(([k, v]) => k + " " + show(v)).join(", ");
      const ac = Object.entries(c.anomaly_counts || {}).map(([k, v]) => k + " ×" + v).join(", ");
      tb.append(el("tr", { class: "checker" }, el("td", { text: c.name }), el("td", null, badge(c.valid)), el("td", { text: counts }), ac ? el("td", { text: ac }) : el("td", { class: "empty", text: "none" })));
      // An unknown verdict says why (an interrupted run, a nemesis that never took effect).
      const why = (c.details || {}).reason;
      if (c.valid !== true && c.valid !== false && typeof why === "string") tb.append(el("tr", { class: "why-unknown" }, el("td"), el("td", { colspan: "3", text: "unknown: " + why })));
      // Valid with nothing counted: it looked at nothing, and says why (a skipped restart pass).
      else if (c.valid === true && !counts && typeof why === "string") tb.append(el("tr", { class: "why-unknown" }, el("td"), el("td", { colspan: "3", text: "not judged: " + why })));
    }
    const oc = $("op-counts").tBodies[0];
    const tot = { ok: 0, fail: 0, info: 0 };
    for (const f of Object.keys(D.counts)) {
      const c = D.counts[f];
      tot.ok += c.ok; tot.fail += c.fail; tot.info += c.info;
      oc.append(el("tr", null, el("td", { text: f }), el("td", { class: "num", text: c.ok }), el("td", { class: "num", text: c.fail }),
        el("td", { class: "num", text: c.info }), el("td", { class: "num", text: c.ok + c.fail + c.info })));
    }
    oc.append(el("tr", null, el("th", { text: "all" }), el("th", { class: "num", text: tot.ok }), el("th", { class: "num", text: tot.fail }),
      el("th", { class: "num", text: tot.info }), el("th", { class: "num", text: tot.ok + tot.fail + tot.info })));
    const fc = $("fault-counts").tBodies[0];
    const byKind = {};
    // A failed injection is no time under fault: it is counted apart, in red.
    for (const w of D.nemesis) {
      const k = byKind[w.kind] || (byKind[w.kind] = { n: 0, t: 0, failed: 0 });
      if (w.failed) k.failed++; else { k.n++; k.t += w.end - w.start; }
    }
    if (!D.nemesis.length) fc.append(el("tr", null, el("td", { class: "empty", colspan: "4", text: "no faults injected" })));
    for (const k of Object.keys(byKind)) fc.append(el("tr", byKind[k].failed ? { class: "fault-failed" } : null, el("td", { text: k }), el("td", { class: "num", text: byKind[k].n }),
      el("td", { class: "num", text: fmtSec(byKind[k].t) }), el("td", { class: "num" + (byKind[k].failed ? " failed" : ""), text: byKind[k].failed })));
    const m = D.meta;
    const o = m.options || {};
    kvRows($("meta").tBodies[0], {
      "test": m.name, "run": m.run, "seed": m.seed, "duration": fmtDur(m.duration_s),
      "workload": o.workload, "nemesis": o.nemesis, "nodes": (m.nodes || []).join(" ") || o.nodes,
      // A deliberately broken store explains an invalid verdict at a glance.
      "validation faults": (o.validation_faults || []).length ? o.validation_faults.join(", ") + " (deliberately broken store)" : undefined,
      "concurrency": m.concurrency, "consistency": (o.read_cl || o.write_cl) ? "read " + o.read_cl + ", write " + o.write_cl : undefined,
      "replication factor": o.replication_factor, "time limit": o.time_limit,
      "started": m.start_time ? new Date(m.start_time * 1000).toISOString() : undefined,
      "ringlab": (m.versions || {}).ringlab, "python": (m.versions || {}).python,
    });
    for (const tr of Array.from($("meta").tBodies[0].rows)) {
      if (!tr.cells[1].textContent) tr.remove();
      else if (tr.cells[0].textContent === "validation faults") tr.classList.add("broken");
    }
    kvRows($("options").tBodies[0], m.options);
    kvRows($("params").tBodies[0], m.params);
    kvRows($("versions").tBodies[0], m.versions);
  }

  // ---------------------------------------------------------------- canvas helpers
  function fitCanvas(canvas, cssHeight) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.parentElement.clientWidth || 800;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(cssHeight * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(cssHeight * dpr);
      canvas.style.height = cssHeight + "px";
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return { ctx, w, h: cssHeight };
  }
  function niceStep(span, target) {
    const raw = span / target;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
  }
  function drawTimeAxis(ctx, x0, w, y, toX) {
    ctx.fillStyle = "#445"; ctx.strokeStyle = "#99a"; ctx.font = "11px sans-serif"; ctx.textBaseline = "top";
    const step = niceStep(view.t1 - view.t0, Math.max(2, w / 110));
    ctx.beginPath(); ctx.moveTo(x0, y + 0.5); ctx.lineTo(x0 + w, y + 0.5); ctx.stroke();
    for (let t = Math.ceil(view.t0 / step) * step; t <= view.t1; t += step) {
      const x = toX(t);
      if (x < x0 - 1) continue;
      ctx.beginPath(); ctx.moveTo(x + 0.5, y); ctx.lineTo(x + 0.5, y + 4); ctx.stroke();
      const s = t / 1e6;
      ctx.fillText(step >= 1e6 ? s.toFixed(0) + " s" : step >= 1e5 ? s.toFixed(1) + " s" : step >= 1e4 ? s.toFixed(2) + " s" : s.toFixed(4) + " s", x + 2, y + 5);
    }
  }
  function drawNemesisBands(ctx, toX, x0, x1, y0, y1, labels) {
    ctx.save();
    ctx.beginPath(); ctx.rect(x0, y0, x1 - x0, y1 - y0); ctx.clip();
    for (const w of D.nemesis) {
      if (w.end < view.t0 || w.start > view.t1) continue;
      const a = Math.max(toX(w.start), x0), b = Math.min(toX(w.end), x1);
      if (w.failed) {
        // A failed injection: a red mark over the attempt, labelled, never a fault band.
        ctx.fillStyle = FAILED_COLOR;
        ctx.fillRect(a, y0, Math.max(b - a, 2), y1 - y0);
        if (labels) {
          ctx.font = "11px sans-serif"; ctx.textBaseline = "top";
          ctx.fillText("✗ " + w.kind + " failed", a + 4, y0 + 2);
        }
        continue;
      }
      ctx.globalAlpha = 0.35;
      ctx.fillStyle = NEMESIS_COLORS[w.kind] || "#ccc";
      ctx.fillRect(a, y0, Math.max(b - a, 1), y1 - y0);
      ctx.globalAlpha = 1;
      if (labels && b - a > 30) {
        ctx.fillStyle = "#5a3030"; ctx.font = "11px sans-serif"; ctx.textBaseline = "top";
        const text = w.kind + (w.targets ? ": " + w.targets : "");
        ctx.fillText(text.length * 6 > b - a ? text.slice(0, Math.max(3, Math.floor((b - a) / 6))) + "…" : text, a + 3, y0 + 2);
      }
    }
    ctx.restore();
  }

  // ---------------------------------------------------------------- timeline
  const tl = $("timeline");
  let tlGeom = null;
  function laneHeight() { return Math.max(3, Math.min(22, Math.floor(560 / nLanes))); }
  function drawTimeline() {
    const lh = laneHeight();
    const top = 16;   // room for nemesis labels
    const H = top + lh * nLanes + AXIS_H;
    const { ctx, w } = fitCanvas(tl, H);
    const x0 = LABEL_W, x1 = w - 6, pw = x1 - x0;
    const scale = pw / (view.t1 - view.t0);
    const toX = (t) => x0 + (t - view.t0) * scale;
    tlGeom = { lh, top, x0, x1, scale, toX, H };
    ctx.clearRect(0, 0, w, H);
    drawNemesisBands(ctx, toX, x0, x1, 0, top + lh * nLanes, true);
    // lane labels and separators
    ctx.font = Math.min(12, lh) + "px sans-serif"; ctx.textBaseline = "middle";
    for (let l = 0; l < nLanes; l++) {
      const y = top + l * lh;
      if (l % 2) { ctx.fillStyle = "#00000008"; ctx.fillRect(x0, y, pw, lh); }
      if (lh >= 9) { ctx.fillStyle = "#334"; ctx.fillText(D.lanes[l] || "", 4, y + lh / 2, LABEL_W - 8); }
    }
    if (lh < 9) { ctx.fillStyle = "#334"; ctx.textBaseline = "top"; ctx.font = "11px sans-serif"; ctx.fillText(nLanes + " lanes", 4, top); }
    // bars, one Path2D per completion type so the whole view is three fills
    ctx.save(); ctx.beginPath(); ctx.rect(x0, 0, pw, H); ctx.clip();
    const paths = [new Path2D(), new Path2D(), new Path2D()];
    const bh = Math.max(1, Math.round(lh * 0.7)), off = Math.floor((lh - bh) / 2);
    const startK = lowerBound(byInv, view.t0 - maxDur, (i) => inv[i]);
    let drawn = 0;
    const addBar = (i) => {
      const a = toX(inv[i]);
      const b = toX(end[i]);
      const y = top + lane[i] * lh + off;
      paths[type[i]].rect(a, y, Math.max(b - a, 1), bh);
      drawn++;
    };
    for (let k = startK; k < N; k++) {
      const i = byInv[k];
      if (inv[i] > view.t1) break;
      if (end[i] < view.t0 || cmpRaw[i] < 0) continue;
      addBar(i);
    }
    for (const i of openRows) if (inv[i] <= view.t1) addBar(i);
    for (let t = 0; t < 3; t++) { ctx.fillStyle = TYPE_COLORS[t]; ctx.fill(paths[t]); }
    if (scale * 200 > 6 && lh >= 6) {  // when bars are wide enough, outline them like Jepsen's timeline
      for (let t = 0; t < 3; t++) { ctx.strokeStyle = TYPE_STROKE[t]; ctx.lineWidth = 0.6; ctx.stroke(paths[t]); }
    }
    // selection on top
    ctx.lineWidth = 2; ctx.strokeStyle = "#000";
    for (const i of selected) {
      const a = toX(inv[i]), b = toX(end[i]);
      const y = top + lane[i] * lh + off;
      ctx.strokeRect(a - 1, y - 1, Math.max(b - a, 1) + 2, bh + 2);
    }
    if (focus >= 0) { ctx.strokeStyle = "#d0312d"; const a = toX(inv[focus]), b = toX(end[focus]); ctx.strokeRect(a - 2, top + lane[focus] * lh + off - 2, Math.max(b - a, 1) + 4, bh + 4); }
    ctx.restore();
    drawTimeAxis(ctx, x0, pw, top + lh * nLanes, toX);
    tl.dataset.drawn = String(drawn);
    tl.dataset.t0 = String(view.t0);
    tl.dataset.t1 = String(view.t1);
  }
  redrawers.push(drawTimeline);

  function hitTest(px, py) {
    const g = tlGeom;
    if (!g || px < g.x0 || px > g.x1) return -1;
    const l = Math.floor((py - g.top) / g.lh);
    if (l < 0 || l >= nLanes) return -1;
    const t = view.t0 + (px - g.x0) / g.scale;
    const slop = HIT_SLOP / g.scale;
    const rows = laneRows[l];
    let k = lowerBound(rows, t + slop, invOf) - 1;
    let best = -1, bestDist = Infinity;
    for (let n = 0; k >= 0 && n < 64; k--, n++) {   // ops of one lane rarely overlap: look a little back
      const i = rows[k];
      const d = t < inv[i] ? inv[i] - t : t > end[i] ? t - end[i] : 0;
      if (d <= slop && d < bestDist) { best = i; bestDist = d; if (d === 0) break; }
    }
    return best;
  }
  function opFields(i) {
    const f = [];
    const push = (k, v) => { if (v !== undefined && v !== null && v !== -1) f.push([k, v]); };
    push("process", O.proc[i]);
    push("type", TYPE_NAMES[type[i]]);
    push("f", O.fs[fcol[i]]);
    push("key", show(O.key[i]));
    if (String(i) in O.ival) push("invoke value", show(O.ival[String(i)]));
    push(String(i) in O.ival ? "completion value" : "value", show(O.val[i]));
    push("node", O.nodes[O.node[i]]);
    push("cl", O.cls[O.cl[i]]);
    push("timestamp", O.ts[i]);
    push("error", O.err[i] >= 0 ? show(O.errs[O.err[i]]) : undefined);
    push("invoked at", fmtSec(inv[i]));
    push("completed at", cmpRaw[i] >= 0 ? fmtSec(cmpRaw[i]) : "never");
    push("latency", cmpRaw[i] >= 0 ? ((cmpRaw[i] - inv[i]) / 1000).toFixed(3) + " ms" : "unknown");
    push("history index", O.ii[i] + (O.ci[i] >= 0 ? " → " + O.ci[i] : ""));
    const x = O.extra[String(i)];
    if (x) for (const k of Object.keys(x)) push(k, show(x[k]));
    return f;
  }
  function fieldsTable(fields, maxLen) {
    const t = el("table");
    for (const [k, v] of fields) {
      let s = String(v);
      if (maxLen && s.length > maxLen) s = s.slice(0, maxLen) + " … (" + s.length + " characters; click to see all)";
      t.append(el("tr", null, el("td", { text: k }), el("td", { text: s })));
    }
    return t;
  }
  const tip = $("tooltip");
  function showTip(x, y, content) {
    tip.replaceChildren(content);
    tip.hidden = false;
    const r = tip.getBoundingClientRect();
    const left = x + 14 + r.width > window.innerWidth ? x - 14 - r.width : x + 14;
    const topPos = y + 14 + r.height > window.innerHeight ? Math.max(0, y - 14 - r.height) : y + 14;
    tip.style.left = Math.max(0, left) + "px";
    tip.style.top = topPos + "px";
  }
  function hideTip() { tip.hidden = true; }

  let drag = null;
  tl.addEventListener("mousedown", (e) => { drag = { x: e.clientX, t0: view.t0, t1: view.t1, moved: false }; });
  window.addEventListener("mouseup", (e) => {
    if (drag && !drag.moved && e.target === tl) {
      const r = tl.getBoundingClientRect();
      const i = hitTest(e.clientX - r.left, e.clientY - r.top);
      if (i >= 0) selectOp(i, false);
    }
    drag = null; tl.classList.remove("dragging");
  });
  window.addEventListener("mousemove", (e) => {
    if (drag) {
      const dx = e.clientX - drag.x;
      if (Math.abs(dx) > 2) { drag.moved = true; tl.classList.add("dragging"); }
      if (drag.moved && tlGeom) {
        const dt = -dx / tlGeom.scale;
        setView(drag.t0 + dt, drag.t1 + dt);
        hideTip();
        return;
      }
    }
    if (e.target !== tl) return;
    const r = tl.getBoundingClientRect();
    const i = hitTest(e.clientX - r.left, e.clientY - r.top);
    if (i < 0) {
      const w = nemesisAt(e.clientX - r.left, e.clientY - r.top);
      if (w) showTip(e.clientX, e.clientY, fieldsTable(nemesisFields(w), 400)); else hideTip();
      return;
    }
    showTip(e.clientX, e.clientY, fieldsTable(opFields(i), 400));
  });
  tl.addEventListener("mouseleave", hideTip);
  tl.addEventListener("wheel", (e) => {
    e.preventDefault();
    if (!tlGeom) return;
    const r = tl.getBoundingClientRect();
    const px = Math.min(Math.max(e.clientX - r.left, tlGeom.x0), tlGeom.x1);
    const t = view.t0 + (px - tlGeom.x0) / tlGeom.scale;
    const k = Math.exp(Math.max(-3, Math.min(3, e.deltaY * 0.0015)));
    setView(t - (t - view.t0) * k, t + (view.t1 - t) * k);
  }, { passive: false });
  function nemesisAt(px, py) {
    const g = tlGeom;
    if (!g || px < g.x0) return null;
    const t = view.t0 + (px - g.x0) / g.scale;
    const slop = HIT_SLOP / g.scale; // a failed injection's mark can be a pixel wide
    for (const w of D.nemesis) if (t >= w.start - (w.failed ? slop : 0) && t <= w.end + (w.failed ? slop : 0)) return w;
    return null;
  }
  function nemesisFields(w) {
    const f = [["fault", w.kind + (w.failed ? " (injection FAILED)" : "")], ["targets", w.targets || "—"], ["from", fmtSec(w.start)], ["to", fmtSec(w.end) + (w.open ? " (never stopped)" : "")]];
    if (w.actions && w.actions.length) f.push(["actions", w.actions.join(", ")]);
    if (w.start_value !== null) f.push(["start value", show(w.start_value)]);
    if (w.stop_value !== null) f.push(["stop value", show(w.stop_value)]);
    return f;
  }
  $("zoom-reset").addEventListener("click", () => setView(0, END * 2));
  $("clear-selection").addEventListener("click", () => { selected = new Set(); focus = -1; renderSelected(); requestDraw(); });

  function selectOp(i, zoom) {
    focus = i;
    if (zoom) zoomTo([i]);
    renderSelected();
    requestDraw();
  }
  function selectRows(rows) {
    selected = new Set(rows);
    focus = rows.length ? rows[0] : -1;
    zoomTo(rows);
    renderSelected();
    requestDraw();
    $("timeline-section").scrollIntoView({ block: "start" });
  }
  function zoomTo(rows) {
    if (!rows.length) return;
    // Zoom to the tightest stretch holding three quarters of the rows: a proof often cites one
    // far-away operation (a read that needed an overwritten value), which would otherwise
    // stretch the view to the whole run. Every row stays selected and outlined.
    const byInv = rows.slice().sort((x, y) => inv[x] - inv[y]);
    const need = rows.length <= 2 ? rows.length : Math.ceil(rows.length * 0.75);
    let a = inv[byInv[0]], b = Infinity;
    for (let s = 0; s + need <= byInv.length; s++) {
      let hi = -Infinity;
      for (let k = s; k < s + need; k++) hi = Math.max(hi, end[byInv[k]]);
      if (hi - inv[byInv[s]] < b - a) { a = inv[byInv[s]]; b = hi; }
    }
    const pad = Math.max((b - a) * 0.25, 2000);
    setView(a - pad, b + pad);
  }
  function renderSelected() {
    const box = $("selected");
    if (focus < 0) { box.replaceChildren(el("em", { text: "Click an operation to select it; its fields and the node log lines near it appear here and below." })); renderNear(); return; }
    const head = el("div", null, el("strong", { text: "Selected operation" }), selected.size > 1 ? " (" + selected.size + " highlighted; outlined in black)" : "");
    box.replaceChildren(head, fieldsTable(opFields(focus), 0));
    renderNear();
  }

  // ---------------------------------------------------------------- plots
  const fNames = O.fs;
  function legend(box, items) {
    box.replaceChildren(...items.map(([color, label, dash]) => el("span", null,
      (() => { const s = el("span", { class: "sw" }); s.style.background = dash ? "transparent" : color; if (dash) s.style.borderTop = "2px dashed " + color; return s; })(), label)));
  }
  function plotFrame(canvas, height) {
    const { ctx, w, h } = fitCanvas(canvas, height);
    const x0 = 56, x1 = w - 8, y0 = 6, y1 = h - AXIS_H;
    ctx.clearRect(0, 0, w, h);
    const scale = (x1 - x0) / (view.t1 - view.t0);
    const toX = (t) => x0 + (t - view.t0) * scale;
    drawNemesisBands(ctx, toX, x0, x1, y0, y1, false);
    ctx.strokeStyle = "#99a"; ctx.strokeRect(x0 + 0.5, y0 + 0.5, x1 - x0, y1 - y0);
    drawTimeAxis(ctx, x0, x1 - x0, y1, toX);
    return { ctx, x0, x1, y0, y1, toX };
  }
  function visibleRange() {
    const a = lowerBound(byInv, view.t0 - maxDur, (i) => inv[i]);
    const b = lowerBound(byInv, view.t1 + 1, (i) => inv[i]);
    return [a, b];
  }
  function quantile(sorted, q) { return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]; }
  function drawLatency() {
    const P = plotFrame($("latency"), 260);
    const { ctx, x0, x1, y0, y1, toX } = P;
    let lo = Infinity, hi = 0;
    const [a, b] = visibleRange();
    for (let k = a; k < b; k++) {
      const i = byInv[k];
      if (cmpRaw[i] < 0 || cmpRaw[i] < view.t0) continue;
      const l = cmpRaw[i] - inv[i];
      if (l > 0) { if (l < lo) lo = l; if (l > hi) hi = l; }
    }
    if (!(hi > 0)) { ctx.fillStyle = "#667"; ctx.fillText("no completed operations in view", x0 + 10, y0 + 10); return; }
    const llo = Math.log10(lo) - 0.1, lhi = Math.log10(hi) + 0.1;
    const toY = (us) => y1 - (Math.log10(Math.max(us, lo)) - llo) / (lhi - llo) * (y1 - y0);
    // y axis: decades in ms
    ctx.fillStyle = "#445"; ctx.font = "11px sans-serif"; ctx.textBaseline = "middle"; ctx.strokeStyle = "#0001";
    for (let d = Math.ceil(llo); d <= lhi; d++) {
      const y = toY(Math.pow(10, d));
      ctx.beginPath(); ctx.moveTo(x0, y); ctx.lineTo(x1, y); ctx.stroke();
      const ms = Math.pow(10, d) / 1000;
      ctx.fillText(ms >= 1 ? ms.toFixed(0) + " ms" : ms.toString() + " ms", 2, y);
    }
    // about 30 completions per bucket, so quantiles mean something
    const buckets = Math.max(4, Math.min(120, Math.floor((x1 - x0) / 12), Math.floor((b - a) / (30 * Math.max(1, fNames.length)))));
    const bw = (view.t1 - view.t0) / buckets;
    const per = fNames.map(() => Array.from({ length: buckets }, () => []));
    ctx.save(); ctx.beginPath(); ctx.rect(x0, y0, x1 - x0, y1 - y0); ctx.clip();
    const pts = fNames.map(() => [new Path2D(), new Path2D(), new Path2D()]);
    for (let k = a; k < b; k++) {
      const i = byInv[k];
      const c = cmpRaw[i];
      if (c < 0 || c < view.t0 || c > view.t1) continue;
      const l = c - inv[i];
      pts[fcol[i]][type[i]].rect(toX(c) - 1, toY(l) - 1, 2, 2);
      const bk = Math.floor((c - view.t0) / bw);
      if (bk >= 0 && bk < buckets) per[fcol[i]][bk].push(l);
    }
    fNames.forEach((_, f) => {
      for (let t = 0; t < 3; t++) { ctx.globalAlpha = t === 0 ? 0.45 : 0.8; ctx.fillStyle = t === 0 ? opColor(fNames[f]) : TYPE_STROKE[t]; ctx.fill(pts[f][t]); }
    });
    ctx.globalAlpha = 1;
    const qs = [[0.5, []], [0.95, [5, 3]], [0.99, [1, 3]]];
    fNames.forEach((_, f) => {
      for (const [q, dash] of qs) {
        ctx.beginPath(); ctx.setLineDash(dash); ctx.strokeStyle = opColor(fNames[f]); ctx.lineWidth = 1.6;
        let started = false;
        for (let bk = 0; bk < buckets; bk++) {
          const arr = per[f][bk];
          if (!arr.length) { started = false; continue; }
          if (!arr.sorted) { arr.sort((u, v) => u - v); arr.sorted = true; }
          const x = toX(view.t0 + (bk + 0.5) * bw), y = toY(quantile(arr, q));
          if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
        }
        ctx.stroke();
      }
    });
    ctx.setLineDash([]);
    ctx.restore();
  }
  function drawRate() {
    const P = plotFrame($("rate"), 200);
    const { ctx, x0, x1, y0, y1, toX } = P;
    const [a, b] = visibleRange();
    const buckets = Math.max(4, Math.min(100, Math.floor((x1 - x0) / 14), Math.floor((b - a) / 20)));
    const bw = (view.t1 - view.t0) / buckets;
    const series = new Map();   // "f type" → counts per bucket
    for (let k = a; k < b; k++) {
      const i = byInv[k];
      const c = cmpRaw[i];
      if (c < view.t0 || c > view.t1) continue;
      const bk = Math.floor((c - view.t0) / bw);
      if (bk < 0 || bk >= buckets) continue;
      const key = fcol[i] * 3 + type[i];
      let arr = series.get(key);
      if (!arr) { arr = new Float64Array(buckets); series.set(key, arr); }
      arr[bk]++;
    }
    let hi = 1;
    for (const arr of series.values()) for (const v of arr) hi = Math.max(hi, v / (bw / 1e6));
    const toY = (r) => y1 - r / (hi * 1.08) * (y1 - y0);
    ctx.fillStyle = "#445"; ctx.font = "11px sans-serif"; ctx.textBaseline = "middle"; ctx.strokeStyle = "#0001";
    const step = niceStep(hi, 4);
    for (let r = 0; r <= hi * 1.05; r += step) { const y = toY(r); ctx.beginPath(); ctx.moveTo(x0, y); ctx.lineTo(x1, y); ctx.stroke(); ctx.fillText(r.toFixed(0) + "/s", 2, y); }
    ctx.save(); ctx.beginPath(); ctx.rect(x0, y0, x1 - x0, y1 - y0); ctx.clip();
    for (const [key, arr] of series) {
      const f = Math.floor(key / 3), t = key % 3;
      ctx.beginPath(); ctx.strokeStyle = opColor(fNames[f]); ctx.lineWidth = t === 0 ? 1.8 : 1.2; ctx.setLineDash(t === 0 ? [] : t === 1 ? [5, 3] : [1, 3]);
      for (let bk = 0; bk < buckets; bk++) { const x = toX(view.t0 + (bk + 0.5) * bw), y = toY(arr[bk] / (bw / 1e6)); if (bk) ctx.lineTo(x, y); else ctx.moveTo(x, y); }
      ctx.stroke();
    }
    ctx.setLineDash([]);
    ctx.restore();
  }
  const clockNodes = [];
  for (const c of D.clock) for (const n of Object.keys(c.offsets)) if (!clockNodes.includes(n)) clockNodes.push(n);
  clockNodes.sort();
  function drawClock() {
    const P = plotFrame($("clock"), 200);
    const { ctx, x0, x1, y0, y1, toX } = P;
    let lo = 0, hi = 0;
    for (const c of D.clock) for (const n of clockNodes) { const v = c.offsets[n]; if (typeof v === "number") { lo = Math.min(lo, v / 1000); hi = Math.max(hi, v / 1000); } }
    if (hi === lo) hi = lo + 1;
    const pad = (hi - lo) * 0.08;
    const toY = (ms) => y1 - (ms - lo + pad) / (hi - lo + 2 * pad) * (y1 - y0);
    ctx.fillStyle = "#445"; ctx.font = "11px sans-serif"; ctx.textBaseline = "middle"; ctx.strokeStyle = "#0001";
    const step = niceStep(hi - lo, 4);
    for (let r = Math.ceil((lo - pad) / step) * step; r <= hi + pad; r += step) { const y = toY(r); ctx.beginPath(); ctx.moveTo(x0, y); ctx.lineTo(x1, y); ctx.stroke(); ctx.fillText(r.toFixed(0) + " ms", 2, y); }
    ctx.save(); ctx.beginPath(); ctx.rect(x0, y0, x1 - x0, y1 - y0); ctx.clip();
    clockNodes.forEach((n, j) => {
      ctx.beginPath(); ctx.strokeStyle = seriesColor(j); ctx.lineWidth = 1.8;
      let prev = 0, x = toX(0);
      ctx.moveTo(x, toY(0));
      for (const c of D.clock) {
        const v = c.offsets[n];
        if (typeof v !== "number") continue;
        x = toX(c.t);
        ctx.lineTo(x, toY(prev)); ctx.lineTo(x, toY(v / 1000));
        prev = v / 1000;
      }
      ctx.lineTo(toX(END), toY(prev));
      ctx.stroke();
      ctx.fillStyle = seriesColor(j);
      for (const c of D.clock) { const v = c.offsets[n]; if (typeof v === "number") ctx.fillRect(toX(c.t) - 2, toY(v / 1000) - 2, 4, 4); }
    });
    ctx.restore();
  }
  function renderPlotLegends() {
    const items = fNames.map((f) => [opColor(f), f]);
    legend($("latency-legend"), items.concat([["#333", "— p50  ‐ ‐ p95  ··· p99"], [TYPE_STROKE[1], "fail"], [TYPE_STROKE[2], "info"]]));
    legend($("rate-legend"), items.concat([["#333", "— ok  ‐ ‐ fail  ··· info"]]));
    legend($("op-legend"), TYPE_NAMES.map((t, j) => [TYPE_COLORS[j], t]).concat(Object.keys(NEMESIS_COLORS).filter((k) => D.nemesis.some((w) => w.kind === k && !w.failed)).map((k) => [NEMESIS_COLORS[k], k + " window"]))
      .concat(D.nemesis.some((w) => w.failed) ? [[FAILED_COLOR, "failed injection"]] : []));
    if (D.clock.length) {
      $("clock-block").hidden = false;
      legend($("clock-legend"), clockNodes.map((n, j) => [seriesColor(j), n]));
    }
  }
  redrawers.push(drawLatency, drawRate);
  if (D.clock.length) redrawers.push(drawClock);

  // ---------------------------------------------------------------- linearizability (Porcupine-style)
  function opsLink(rows, label) {
    const a = el("a", { class: "ops-link", href: "#timeline-section", text: label });
    a.addEventListener("click", (e) => { e.preventDefault(); selectRows(rows); });
    return a;
  }
  function renderLinearizability() {
    const body = $("lin-body");
    const lins = [];
    for (const c of D.checkers) for (const a of c.anomalies) if (a.kind === "not-linearizable") lins.push([c, a]);
    const linCheckers = D.checkers.filter((c) => /lineariz/.test(c.name));
    if (!lins.length) {
      let msg = "No linearizability checker ran on this history.";
      if (linCheckers.length) {
        // Under clock faults every key may be skipped (judged by lww instead): "every key is
        // linearizable" would then claim a check that never ran.
        const none = linCheckers.every((c) => (c.counts || {}).keys === 0);
        const some = linCheckers.some((c) => (c.counts || {}).skipped_keys_clock_inversion);
        msg = (none ? "No key was checked for linearizability ("
          : some ? "Every key checked is linearizable (" : "Every key is linearizable (")
          + linCheckers.map((c) => c.name + ": " + verdictText(c.valid)).join(", ") + ").";
        for (const c of linCheckers) {
          if (typeof (c.details || {}).skipped === "string") msg += " " + c.name + ": " + c.details.skipped + ".";
          if (typeof (c.details || {}).periodic_note === "string") msg += " " + c.name + ": " + c.details.periodic_note + ".";
        }
      }
      body.append(el("p", { class: "empty", text: msg }));
      return;
    }
    for (const [c, a] of lins) body.append(renderLin(c, a));
  }
  function renderLin(checker, a) {
    const d = a.details || {};
    const box = el("div", { class: "lin" });
    // The key in bold, unless the explanation starts by naming it (then that part is bold).
    const named = "key " + show(a.key) + ": ";
    const said = String(a.explanation || "");
    box.append(said.startsWith(named) ? el("p", null, el("strong", { text: named }), said.slice(named.length))
      : el("p", null, el("strong", { text: named }), said));
    box.append(el("p", null, opsLink(a.rows, "show these operations in the timeline (" + a.rows.length + ")")));
    const acks = acksTable(a);
    if (acks) box.append(acks);
    const all = d.prefix || [];
    const rowsAll = [];
    const entries = [];
    const seen = new Set();
    // the operation that overwrote the value the blocked one needs (the stale read's hider)
    const ow = d.overwritten_by ? d.overwritten_by.invoke_index : null;
    all.forEach((s, j) => {
      const e = { ref: s.op, role: "linearized", step: j + 1 + (d.prefix_truncated || 0), describe: s.describe, before: s.state_before, after: s.state_after, overwrote: s.op.invoke_index === ow };
      rowsAll.push(e);
      if (j >= all.length - LIN_DRAW_STEPS) { entries.push(e); seen.add(s.op.invoke_index); }
    });
    const prefix = entries.slice();
    if (d.op) { entries.push({ ref: d.op, role: "blocked", describe: d.describe, after: d.state, firstFailure: d.blame === "first-failure" }); seen.add(d.op.invoke_index); }
    if (ow !== null && !seen.has(ow)) { entries.push({ ref: d.overwritten_by, role: "overwrote", overwrote: true, describe: d.overwritten_by.f + " " + show(d.overwritten_by.value) }); seen.add(ow); }
    for (const p of d.pending || []) if (!seen.has(p.op.invoke_index)) { entries.push({ ref: p.op, role: "pending", describe: p.describe, why: p.why }); seen.add(p.op.invoke_index); }
    const canvas = el("canvas", { class: "lin-canvas" });
    const wrap = el("div", { class: "canvas-wrap" }, canvas);
    box.append(el("p", { class: "hint", text: "Porcupine-style view: one lane per client process, bars from invocation to completion in event order; dots joined by the line are the linearization points of the longest linearizable prefix (state after each shown above it); the red bar is the operation that cannot be linearized" + (ow !== null ? ", the purple outline the operation that overwrote the value it needs" : "") + ", orange bars are the other pending operations." }));
    box.append(wrap);
    const table = el("table", null, el("thead", null, el("tr", null, ...["step", "process", "operation", "state before", "state after / why", "history"].map((h) => el("th", { text: h })))));
    const tb = el("tbody");
    for (const e of rowsAll.concat(entries.filter((x) => x.role !== "linearized"))) {
      const row = rowOfIndex(e.ref.invoke_index);
      const link = row === undefined ? el("span", { text: String(e.ref.invoke_index) }) : opsLink([row], "op " + e.ref.invoke_index);
      tb.append(el("tr", { class: e.role }, el("td", { text: e.role === "linearized" ? String(e.step) : e.role === "blocked" ? "cannot be placed" : e.role === "overwrote" ? "earlier" : "pending" }),
        el("td", { text: show(e.ref.process) }), el("td", { text: e.describe || (e.ref.f + " " + show(e.ref.value)) }),
        el("td", { text: e.before || "" }), el("td", { text: (e.role === "pending" ? e.why : e.after || "") + (e.overwrote ? " (overwrote the value the blocked operation needs)" : "") }), el("td", null, link)));
    }
    table.append(tb);
    if (d.prefix_length > prefix.length) box.append(el("p", { class: "hint", text: "The drawing shows the last " + prefix.length + " of " + d.prefix_length + " linearized operations; the table lists the last " + all.length + "." }));
    box.append(table);
    const draw = () => drawLin(canvas, entries);
    redrawers.push(draw);
    canvas.addEventListener("mousemove", (ev) => {
      const r = canvas.getBoundingClientRect();
      const hit = (canvas._boxes || []).find((b) => ev.clientX - r.left >= b.x && ev.clientX - r.left <= b.x + b.w && ev.clientY - r.top >= b.y && ev.clientY - r.top <= b.y + b.h);
      if (!hit) { hideTip(); return; }
      const e = hit.e;
      const f = [["role", e.overwrote ? "overwrote the value the blocked operation needs" : e.role], ["operation", e.describe || ""], ["process", show(e.ref.process)], ["type", e.ref.type], ["history index", e.ref.invoke_index + " → " + show(e.ref.complete_index)]];
      if (e.before) f.push(["state before", e.before]);
      if (e.after) f.push(["state after", e.after]);
      if (e.why) f.push(["why", e.why]);
      showTip(ev.clientX, ev.clientY, fieldsTable(f, 400));
    });
    canvas.addEventListener("mouseleave", hideTip);
    canvas.addEventListener("click", (ev) => {
      const r = canvas.getBoundingClientRect();
      const hit = (canvas._boxes || []).find((b) => ev.clientX - r.left >= b.x && ev.clientX - r.left <= b.x + b.w && ev.clientY - r.top >= b.y && ev.clientY - r.top <= b.y + b.h);
      if (hit) { const row = rowOfIndex(hit.e.ref.invoke_index); if (row !== undefined) selectRows([row]); }
    });
    return box;
  }
  function drawLin(canvas, entries) {
    const procs = [...new Set(entries.map((e) => String(e.ref.process)))].sort((p, q) => Number(p) - Number(q));
    const lh = 30, top = 26;
    const H = top + procs.length * lh + 10;
    const { ctx, w } = fitCanvas(canvas, H);
    ctx.clearRect(0, 0, w, H);
    // x is event order (Porcupine's layout): every invocation and completion gets its own slot
    const times = [];
    for (const e of entries) { times.push(e.ref.invoke_time); if (e.ref.complete_time != null) times.push(e.ref.complete_time); }
    const uniq = [...new Set(times)].sort((p, q) => p - q);
    const rank = new Map(uniq.map((t, j) => [t, j]));
    const x0 = 90, x1 = w - 20;
    const slots = uniq.length + 1;
    const toX = (r) => x0 + (r + 0.5) * (x1 - x0) / slots;
    ctx.font = "12px sans-serif"; ctx.textBaseline = "middle";
    procs.forEach((p, j) => { ctx.fillStyle = "#334"; ctx.fillText("process " + p, 4, top + j * lh + lh / 2); ctx.fillStyle = j % 2 ? "#00000008" : "#0000"; ctx.fillRect(x0, top + j * lh, x1 - x0, lh); });
    const boxes = [];
    let lpPrev = -Infinity;
    const points = [];
    for (const e of entries) {
      const a = toX(rank.get(e.ref.invoke_time));
      const b = e.ref.complete_time == null ? x1 : toX(rank.get(e.ref.complete_time));
      const y = top + procs.indexOf(String(e.ref.process)) * lh + 5;
      const h = lh - 10;
      ctx.fillStyle = e.role === "blocked" ? "#f4a19e" : e.role === "pending" ? "#ffd699" : "#cfe6ff";
      ctx.strokeStyle = e.role === "blocked" ? "#d0312d" : e.role === "pending" ? "#c77800" : "#2f7fc8";
      ctx.lineWidth = e.role === "blocked" ? 2.5 : 1;
      if (e.overwrote) { ctx.strokeStyle = "#7b3fb5"; ctx.lineWidth = 2.5; }
      ctx.fillRect(a, y, Math.max(b - a, 3), h); ctx.strokeRect(a, y, Math.max(b - a, 3), h);
      ctx.fillStyle = "#111"; ctx.font = "11px sans-serif";
      const label = e.describe || "";
      if (b - a > 24) ctx.fillText(label.length * 6 > b - a - 6 ? label.slice(0, Math.max(1, Math.floor((b - a - 6) / 6))) + "…" : label, a + 3, y + h / 2, b - a - 4);
      boxes.push({ x: a, y, w: Math.max(b - a, 3), h, e });
      if (e.role === "linearized") {
        // greedy linearization points: after the previous point and the invocation, before the completion
        const slot = (x1 - x0) / slots;
        let lp = Math.max(lpPrev + slot * 0.35, a + slot * 0.2);
        lp = Math.min(lp, b - slot * 0.1);
        lpPrev = lp;
        points.push([lp, y + h / 2, e]);
      }
    }
    ctx.strokeStyle = "#222"; ctx.lineWidth = 1.2; ctx.beginPath();
    points.forEach(([x, y], j) => { if (j) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
    ctx.stroke();
    for (const [x, y, e] of points) {
      ctx.fillStyle = "#222"; ctx.beginPath(); ctx.arc(x, y, 3.5, 0, 2 * Math.PI); ctx.fill();
    }
    // the state after the last point, and where the blocked operation needed to go
    ctx.fillStyle = "#d0312d"; ctx.font = "bold 12px sans-serif"; ctx.textBaseline = "top";
    const blocked = entries.find((e) => e.role === "blocked");
    const last = points.length ? points[points.length - 1] : null;
    const head = blocked && blocked.firstFailure ? "state when it had to return: " : "state after the longest linearizable prefix: ";
    ctx.fillText(head + (blocked ? blocked.after || "?" : last ? last[2].after : "?") + (blocked ? " · cannot linearize: " + (blocked.describe || "") : ""), x0, 4, x1 - x0);
    canvas._boxes = boxes;
  }

  // ---------------------------------------------------------------- who acknowledged a finding's writes
  const MAX_ACK_ROWS = 6; // the last writes of a finding: enough to see the one that went missing
  // The convergence passes that read every replica directly (replicas.jsonl), as rows under the writes.
  const READ_PASSES = { before: "held after healing", "read-repair": "held after the final reads at ALL", after: "held after hint delivery" };
  // ref: the newest of the finding's acknowledged writes shown above, to say whether a replica
  // holds it, something newer or something older (it lacks the write).
  function heldCell(h, ref) {
    if (!h) return el("td", { text: "not read" });
    if (h.error) return el("td", { class: "noack", text: "unreadable" });
    if (h.elements !== undefined) {
      const parts = [h.elements + (h.elements === 1 ? " element" : " elements")];
      if ((h.held || []).length) parts.push("holds " + h.held.join(", "));
      if ((h.lacks || []).length) parts.push("lacks " + h.lacks.join(", "));
      return el("td", { class: (h.lacks || []).length ? "noack" : "", text: parts.join("; ") });
    }
    if (h.timestamp == null) return el("td", { class: "noack", text: "nothing" });
    const text = (h.tombstone ? "tombstone" : show(h.value)) + " @ " + h.timestamp;
    if (!ref || typeof ref.timestamp !== "number") return el("td", { text });
    if (h.timestamp < ref.timestamp) return el("td", { class: "noack", text: text + " (older: lacks " + ref.f + " " + show(ref.value) + ")" });
    if (h.timestamp === ref.timestamp) return el("td", { class: "acked", text: text + " (" + ref.f + " " + show(ref.value) + ")" });
    return el("td", { text: text + " (newer)" });
  }
  // The coordinator's answer to each acknowledged write of a finding, as the client recorded it
  // (history fields replicas, acked, hinted): the key's replicas and which of them acknowledged
  // before it answered. A replica without an acknowledgement by then may still have applied it,
  // so the direct reads of each replica the harness made after healing (replica_reads) follow.
  function acksTable(a) {
    const writes = [];
    const seen = new Set();
    for (const o of a.ops || []) {
      if (o && o.type === "ok" && Array.isArray(o.replicas) && Array.isArray(o.acked) && !seen.has(o.index)) { seen.add(o.index); writes.push(o); }
    }
    const reads = a.replica_reads != null && D.replica_reads && D.replica_reads.keys ? D.replica_reads.keys[a.replica_reads] : null;
    if (!writes.length && !reads) return null;
    writes.sort((x, y) => x.index - y.index);
    const shown = writes.slice(-MAX_ACK_ROWS);
    const nodes = [];
    for (const n of reads ? reads.replicas : []) if (!nodes.includes(n)) nodes.push(n);
    for (const o of shown) for (const n of o.replicas.concat(o.acked)) if (!nodes.includes(n)) nodes.push(n);
    const passes = reads ? D.replica_reads.passes.filter((p) => reads.reads[p]) : [];
    for (const p of passes) for (const n of Object.keys(reads.reads[p]).sort()) if (!nodes.includes(n)) nodes.push(n);
    const head = el("tr", null, el("th", { text: "write" }), el("th", { text: "coordinator" }), ...nodes.map((n) => el("th", { text: n })));
    const tb = el("tbody");
    for (const o of shown) {
      const cells = nodes.map((n) => {
        const k = o.acked.indexOf(n);
        const replica = o.replicas.includes(n);
        if (k >= 0) return el("td", { class: "acked", text: "acked" + (o.acked.length > 1 ? " #" + (k + 1) : "") + (replica ? "" : " (pending)") });
        if ((o.hinted || []).includes(n)) return el("td", { class: "noack", text: "hinted" });
        return el("td", { class: replica ? "noack" : "", text: replica ? "—" : "" });
      });
      // Named by its invocation's index, as the explanations name operations.
      let inv = null;
      for (const q of a.ops || []) if (q && q.type === "invoke" && q.process === o.process && q.f === o.f && q.index < o.index && (!inv || q.index > inv.index)) inv = q;
      tb.append(el("tr", null, el("td", { text: o.f + " " + show(o.value) + " (op " + (inv ? inv.index : o.index) + ")" }), el("td", { text: show(o.node) }), ...cells));
    }
    let ref = null;
    for (const o of shown) if (typeof o.timestamp === "number" && (!ref || o.timestamp > ref.timestamp)) ref = o;
    for (const p of passes) {
      tb.append(el("tr", { class: "held" }, el("td", { colspan: "2", text: READ_PASSES[p] || p }), ...nodes.map((n) => heldCell(reads.reads[p][n], ref))));
    }
    const wrap = el("div", { class: "acks" });
    const said = [];
    if (shown.length) said.push("which acknowledged each write before its coordinator answered"
      + (writes.length > shown.length ? " (the last " + shown.length + " of " + writes.length + " writes)" : "")
      + "; — : no acknowledgement by then (it may have applied the write later)");
    const setReads = passes.some((p) => Object.values(reads.reads[p]).some((h) => h && h.elements !== undefined));
    if (passes.length) said.push("what each replica held when the harness read it directly ("
      + (setReads ? "its element count and which of this finding's elements it holds or lacks" : "value @ its write timestamp") + ")");
    wrap.append(el("p", { class: "hint", text: "Replicas of key " + show(a.key) + (reads ? " (" + reads.replicas.join(", ") + ")" : "") + ": " + said.join("; then ") + "." }));
    wrap.append(el("table", null, el("thead", null, head), tb));
    return wrap;
  }

  // ---------------------------------------------------------------- other findings
  function findingTime(a) {
    // µs since the history's start: its first client operation, else its first recorded op (a
    // nemesis step's), else unknown.
    if (a.rows.length) { let t = Infinity; for (const r of a.rows) t = Math.min(t, inv[r]); return t; }
    const op = (a.ops || []).find((o) => o && typeof o.time === "number");
    return op ? op.time / 1000 : null;
  }
  function renderAnomalies() {
    const body = $("anomaly-body");
    let n = 0;
    for (const c of D.checkers) {
      const others = c.anomalies.filter((a) => a.kind !== "not-linearizable");
      const expected = c.expected || [];
      if (!others.length && !expected.length) continue;
      const sec = el("div", { class: "checker-findings" }, el("h3", null, c.name + " ", badge(c.valid)));
      // Grouped by kind, in the order each kind first appears (allowed ones as their own groups);
      // each finding says when it happened.
      const byKind = new Map();
      for (const a of others.concat(expected)) {
        const allowed = expected.includes(a);
        const label = allowed ? "expected " + a.kind : a.kind;
        if (!byKind.has(label)) byKind.set(label, { allowed, kind: a.kind, list: [] });
        byKind.get(label).list.push(a);
      }
      for (const [label, g] of byKind) {
        // In time order within a kind (the checkers list them per key); undated ones last.
        const at = new Map(g.list.map((a) => [a, findingTime(a)]));
        g.list.sort((x, y) => (at.get(x) ?? Infinity) - (at.get(y) ?? Infinity));
        const total = g.allowed ? undefined : (c.counts || {})[g.kind];
        const head = el("summary", null, el("span", { class: "kind", text: label }),
          " × " + g.list.length + (typeof total === "number" && total > g.list.length ? " shown of " + total : ""));
        const group = el("details", { class: "kind-group", open: "" }, head);
        for (const a of g.list) {
          n++;
          const p = el("div", { class: "anomaly" + (g.allowed ? " expected" : "") });
          const when = at.get(a);
          if (when !== null) p.append(el("span", { class: "when", text: "at " + fmtSec(when) + " · " }));
          // (unless the explanation starts by naming it)
          if (a.key !== null && a.key !== undefined && !String(a.explanation || "").startsWith("key " + show(a.key))) p.append(el("span", { class: "hint", text: "key " + show(a.key) + " · " }));
          p.append(el("span", { class: "explanation", text: a.explanation }), " ");
          if (a.rows.length) p.append(opsLink(a.rows, "show the " + a.rows.length + " operation" + (a.rows.length === 1 ? "" : "s") + " in the timeline"));
          else p.append(el("span", { class: "hint", text: "(no client operations recorded for this finding)" }));
          const acks = acksTable(a);
          if (acks) p.append(acks);
          group.append(p);
        }
        sec.append(group);
      }
      const total = Object.values(c.anomaly_counts || {}).reduce((s, v) => s + v, 0);
      const counted = Object.entries(c.counts || {}).filter(([k]) => /anomal|lost|invers|stale|duplicate|unexpected|resurrect|isolation|mix/.test(k));
      if (counted.length) sec.append(el("p", { class: "hint", text: "counts: " + counted.map(([k, v]) => k + " " + show(v)).join(", ") + (total ? " (" + total + " shown)" : "") }));
      body.append(sec);
    }
    if (!n) body.append(el("p", { class: "empty", text: "No last-write-wins, quorum, isolation, set or counter anomalies were found." }));
  }

  // ---------------------------------------------------------------- per-replica convergence
  function replicaCell(row) {
    if (row.error) return "unreadable: " + row.error;
    if (row.elements !== undefined) {
      let t = row.elements + " elements";
      if (row.missing_count) t += "; missing " + row.missing_count + " (" + row.missing.join(", ") + (row.missing_count > row.missing.length ? ", …" : "") + ")";
      if (row.extra_count) t += "; extra " + row.extra_count + " (" + row.extra.join(", ") + (row.extra_count > row.extra.length ? ", …" : "") + ")";
      return t;
    }
    if (row.tombstone) return "tombstone @ " + row.timestamp;
    return row.timestamp == null ? "nothing" : show(row.value) + " @ " + row.timestamp;
  }
  function renderReplicas() {
    const body = $("replica-body");
    const conv = D.checkers.find((c) => c.name === "convergence");
    if (!conv) { body.append(el("p", { class: "empty", text: "No per-replica snapshots were taken in this run." })); return; }
    const d = conv.details || {};
    const c = conv.counts || {};
    body.append(el("p", null, badge(conv.valid), " " + (c.keys || 0) + " keys, " + (c.replicas_read || 0) + " replica reads; keys whose replicas disagree: "
      + (c.before_keys_disagreeing || 0) + " after healing, " + (c["read-repair_keys_disagreeing"] || 0) + " right after the final reads, "
      + (c.after_keys_disagreeing || 0) + " after hint delivery; " + (c["diverged-after-repair"] || 0) + " replicas diverged after repair, "
      + (c["replica-lost-write"] || 0) + " lost a write"
      + (c["expected-after-gc-grace"] ? "; " + c["expected-after-gc-grace"] + " replicas resurrected a delete as gc_grace allows (not held against the store)" : "")
      + (d.reason ? " — " + d.reason : "")));
    const tables = d.disagreements || [];
    if (!tables.length) { body.append(el("p", { class: "empty", text: "Every replica of every key held what it must in every pass." })); return; }
    for (const label of ["after", "read-repair", "before"]) {
      const mine = tables.filter((t) => t.pass === label);
      if (!mine.length) continue;
      body.append(el("h3", { text: label === "after" ? "After every hint was delivered (judged)" : label === "read-repair" ? "Right after the final reads at ALL (judged: read repair wrote the merged row back)" : "After healing, before repair (not yet converged unless nothing can restore it)" }));
      const nodes = [...new Set(mine.flatMap((t) => t.replicas.map((r) => r.node)))].sort();
      const head = el("tr", null, el("th", { text: "key" }), el("th", { text: "expected" }), ...nodes.map((n) => el("th", { text: n })));
      const tb = el("tbody");
      for (const t of mine) {
        const by = {};
        for (const r of t.replicas) by[r.node] = r;
        const exp = t.expected || {};
        const expText = exp.acknowledged_elements !== undefined ? exp.acknowledged_elements + " acknowledged elements"
          : (exp.value == null ? "no acknowledged write" : show(exp.value) + " @ " + exp.timestamp) + (exp.final_all ? "; ALL read " + show(exp.final_all.value) + " @ " + exp.final_all.timestamp : "");
        const tr = el("tr", null, el("td", { text: show(t.key) }), el("td", { text: expText }));
        for (const n of nodes) {
          const r = by[n];
          if (!r) { tr.append(el("td", { class: "hint", text: "not a replica" })); continue; }
          const probs = r.problems || [];
          // gc_grace findings (checkers/gcgrace.py): allowed, with the reason on hover.
          const gc = r.purged ? " [tombstone purged after gc_grace]" : r.expected ? " [resurrected after gc_grace: expected]" : "";
          tr.append(el("td", { class: probs.length ? "replica-bad" : "replica-ok", title: r.purged || r.expected || "",
            text: replicaCell(r) + (probs.length ? " [" + probs.join(", ") + "]" : "") + gc }));
        }
        tb.append(tr);
      }
      body.append(el("table", { class: "replicas" }, el("thead", null, head), tb));
    }
    const ranges = (d.ranges || []).filter((r) => r.pass !== "before");
    if (ranges.length) {
      body.append(el("h3", { text: "Ranges whose replicas disagree after repair" }));
      const tb = el("tbody");
      for (const r of ranges) tb.append(el("tr", null, el("td", { text: "(" + r.range.join(", ") + "]" }), el("td", { text: (r.replicas || []).join(", ") }),
        el("td", { text: r.disagreeing.join(", ") }), el("td", { class: "num", text: String(r.keys) })));
      body.append(el("table", null, el("thead", null, el("tr", null, el("th", { text: "range" }), el("th", { text: "replicas" }),
        el("th", { text: "disagreeing" }), el("th", { class: "num", text: "keys" }))), tb));
    }
  }

  // ---------------------------------------------------------------- node logs
  const logNodes = Object.keys(D.logs);
  let logNode = logNodes[0];
  const LOG_SHOW_MAX = 5000;   // lines put in the viewer at once: more is unreadable and slow to lay out
  function fmtLogLine(node, j) { return D.logs[node].line[j]; }
  function renderLogTabs() {
    const tabs = $("log-tabs");
    if (!logNodes.length) { $("log-view").textContent = "No node logs were found under nodes/<node>/ in this run directory."; return; }
    for (const n of logNodes) {
      const b = el("button", { class: "tab", type: "button", text: n, "data-node": n });
      b.addEventListener("click", () => { logNode = n; renderLog(); });
      tabs.append(b);
    }
    renderLog();
  }
  function renderLog() {
    for (const b of $("log-tabs").children) b.classList.toggle("active", b.dataset.node === logNode);
    if (!logNode) return;
    const L = D.logs[logNode];
    const q = $("log-search").value.toLowerCase();
    const out = [];
    let matches = 0;
    for (let j = 0; j < L.line.length; j++) {
      if (q && !L.line[j].toLowerCase().includes(q)) continue;
      matches++;
      if (out.length < LOG_SHOW_MAX) out.push(L.line[j]);
    }
    $("log-view").textContent = out.join("\n");
    $("log-count").textContent = (q ? matches + " matching of " : "") + L.line.length + " lines" + (matches > LOG_SHOW_MAX ? " (first " + LOG_SHOW_MAX + " shown)" : "") +
      (L.truncated ? " · log truncated to its last part" : "") + " · files: " + L.files.join(", ");
  }
  $("log-search").addEventListener("input", renderLog);
  const NEAR_MS = 1000;       // log lines this close to the selected operation's span are shown
  const NEAR_MAX = 400;
  function renderNear() {
    const note = $("log-near-note");
    const pre = $("log-near");
    pre.hidden = true;
    if (focus < 0) { note.textContent = "Select an operation to see what the nodes logged around it."; pre.textContent = ""; return; }
    if (D.meta.history_epoch == null) { note.textContent = "test.json has no start time, so log lines cannot be placed on the history's time axis."; pre.textContent = ""; return; }
    const a = inv[focus] / 1000 - NEAR_MS, b = end[focus] / 1000 + NEAR_MS;
    const lines = [];
    for (const n of logNodes) {
      const L = D.logs[n];
      for (let j = 0; j < L.t.length; j++) if (L.t[j] !== null && L.t[j] >= a && L.t[j] <= b) lines.push([L.t[j], n, L.line[j]]);
    }
    lines.sort((p, q) => p[0] - q[0]);
    note.textContent = lines.length + " line(s) within " + NEAR_MS + " ms of operation " + O.ii[focus] + " (" + fmtSec(inv[focus]) + " – " + (cmpRaw[focus] >= 0 ? fmtSec(cmpRaw[focus]) : "never completed") + ")" +
      (D.meta.history_epoch_exact ? "" : "; log times are aligned on the test's start time, so expect an offset of up to a few seconds") + (lines.length > NEAR_MAX ? "; first " + NEAR_MAX + " shown" : "");
    pre.hidden = !lines.length;
    pre.textContent = lines.slice(0, NEAR_MAX).map(([t, n, s]) => "[" + n + " " + (t / 1000).toFixed(3) + " s] " + s).join("\n");
  }

  // ---------------------------------------------------------------- start
  try {
    renderSummary();
    renderPlotLegends();
    renderLinearizability();
    renderAnomalies();
    renderReplicas();
    renderLogTabs();
    renderSelected();
    setView(0, END * 2);
    window.addEventListener("resize", requestDraw);
    // First paint synchronously so the page is interactive as soon as this script ends.
    cancelAnimationFrame(frame); frame = 0;
    for (const f of redrawers) f();
    document.body.dataset.ready = "1";
    window.__reportReadyMs = performance.now();
  } catch (err) {
    document.body.dataset.ready = "error";
    throw err;
  }
  window.__report = { view, setView, selectRows, rowOfIndex, hitTest, geom: () => tlGeom };
})();
