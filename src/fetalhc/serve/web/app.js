// fetalhc page: upload, show the fitted ellipse, correct it by hand, export. No build step.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("view");
const ctx = canvas.getContext("2d");
const measurements = [];
let current = null;
let drag = null; // which handle is being dragged
let calibration = null; // {points: [[x, y], ...]} while calibrating

// ---------------------------------------------------------------- geometry (as fetalhc)
function ramanujan(a, b) {
  a = Math.abs(a); b = Math.abs(b);
  if (a + b === 0) return 0;
  const h = ((a - b) / (a + b)) ** 2;
  return Math.PI * (a + b) * (1 + (3 * h) / (10 + Math.sqrt(4 - 3 * h)));
}
function hadlockWeeks(hcMm) { // Hadlock 1984, valid 14-42 weeks
  const cm = hcMm / 10;
  const w = 8.96 + 0.54 * cm + 0.0003 * cm ** 3;
  return w >= 14 && w <= 42 ? w : null;
}
function weeksDays(w) {
  if (w === null || !isFinite(w)) return "—";
  const d = Math.round(w * 7);
  return `${Math.floor(d / 7)}+${d % 7} weeks`;
}
// INTERGROWTH-21st (see fetalhc/biometry.py for the citations and validity ranges)
function intergrowthGaWeeks(hcMm) {
  const days = Math.exp(0.0597 * Math.log(hcMm) ** 2 + 0.000000006409 * hcMm ** 3 + 3.3258);
  return days >= 98 && days <= 181 ? days / 7 : null;
}
function intergrowthCentile(hcMm, gaWeeks) {
  if (!(gaWeeks >= 14 && gaWeeks <= 40)) return null;
  const g = gaWeeks, l = Math.log(g);
  const mean = -28.2849 + 1.69267 * g ** 2 - 0.397485 * g ** 2 * l;
  const sd = 1.98735 + 0.0136772 * g ** 3 - 0.00726264 * g ** 3 * l + 0.000976253 * g ** 3 * l ** 2;
  const z = (hcMm - mean) / sd;
  return { z, centile: 100 * normalCdf(z) };
}
function normalCdf(z) { // Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7)
  const t = 1 / (1 + 0.3275911 * Math.abs(z) / Math.SQRT2);
  const y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-(z * z) / 2);
  return z >= 0 ? (1 + y) / 2 : (1 - y) / 2;
}
function parseGa(text) {
  const m = /^\s*(\d{1,2})\s*(?:\+|w)\s*(\d)\s*d?\s*$/i.exec(text || "");
  return m && +m[2] <= 6 ? +m[1] + +m[2] / 7 : null;
}
function hcOf(m) {
  if (!m.pixelSize || !m.ellipse) return null;
  return ramanujan(m.ellipse.a * m.pixelSize, m.ellipse.b * m.pixelSize);
}

// ---------------------------------------------------------------- drawing
function scale() { return canvas.width / current.width; }
function handles(m) {
  const e = m.ellipse, c = Math.cos(e.angle), s = Math.sin(e.angle);
  return {
    centre: [e.cx, e.cy],
    a: [e.cx + e.a * c, e.cy + e.a * s],
    b: [e.cx - e.b * s, e.cy + e.b * c],
    rotate: [e.cx + (e.a + 25 / scale()) * c, e.cy + (e.a + 25 / scale()) * s],
  };
}
function drawEllipse(g, m, k, withHandles) {
  const e = m.ellipse;
  g.save();
  g.lineWidth = Math.max(2, 2 * k);
  g.strokeStyle = m.edited ? "#38bdf8" : (m.quality === "ok" ? "#22c55e" : "#f59e0b");
  g.beginPath();
  g.ellipse(e.cx * k, e.cy * k, Math.abs(e.a) * k, Math.abs(e.b) * k, e.angle, 0, 2 * Math.PI);
  g.stroke();
  if (withHandles) {
    const h = handles(m);
    g.fillStyle = "#fff"; g.strokeStyle = "#1f3a5f"; g.lineWidth = 2;
    for (const [name, [x, y]] of Object.entries(h)) {
      g.beginPath();
      if (name === "rotate") g.arc(x * k, y * k, 7, 0, 2 * Math.PI);
      else g.rect(x * k - 6, y * k - 6, 12, 12);
      g.fill(); g.stroke();
    }
  }
  g.restore();
}
function draw() {
  if (!current) { ctx.clearRect(0, 0, canvas.width, canvas.height); return; }
  const k = scale();
  ctx.drawImage(current.img, 0, 0, canvas.width, canvas.height);
  if (current.ellipse) drawEllipse(ctx, current, k, true);
  if (calibration) {
    ctx.fillStyle = "#f43f5e";
    for (const [x, y] of calibration.points) { ctx.beginPath(); ctx.arc(x * k, y * k, 5, 0, 2 * Math.PI); ctx.fill(); }
  }
}

// ---------------------------------------------------------------- panel and table
function refresh() {
  draw();
  const m = current;
  const hc = m ? hcOf(m) : null;
  $("hc-value").textContent = hc === null ? "—" : hc.toFixed(1);
  $("ga-value").textContent = hc === null ? "—" : weeksDays(hadlockWeeks(hc));
  // The model's calibrated 95 % interval belongs to its own ellipse: gone once edited.
  const range = m && !m.edited && hc !== null ? m.interval : null;
  $("hc-range").textContent = range ? `(${range[0].toFixed(1)}–${range[1].toFixed(1)})` : "";
  $("ga-range").textContent = range && m.gaRange
    ? `(${weeksDays(m.gaRange[0])} – ${weeksDays(m.gaRange[1])})` : "";
  const ps = m && m.pixelSize, e = m && m.ellipse;
  if (hc !== null && ps && e) {
    const ofd = 2 * Math.max(Math.abs(e.a), Math.abs(e.b)) * ps, bpd = 2 * Math.min(Math.abs(e.a), Math.abs(e.b)) * ps;
    const ci = 100 * bpd / ofd;
    $("diameters").textContent = `${ofd.toFixed(1)} / ${bpd.toFixed(1)} mm`;
    $("ci").textContent = ci.toFixed(1) + (ci < 70 || ci > 86 ? " (outside 70–86)" : "");
    $("ga-ig").textContent = weeksDays(intergrowthGaWeeks(hc));
    const given = parseGa($("ga").value);
    const c = given === null ? null : intergrowthCentile(hc, given);
    const ends = c === null || !range ? null : range.map((v) => intergrowthCentile(v, given));
    $("centile").textContent = c === null ? "—" : `${c.centile.toFixed(1)} (z ${c.z.toFixed(2)}, INTERGROWTH-21st)`
      + (ends && ends[0] && ends[1] ? `, ${ends[0].centile.toFixed(1)}–${ends[1].centile.toFixed(1)} over the interval` : "");
  } else {
    for (const id of ["diameters", "ci", "ga-ig", "centile"]) $(id).textContent = "—";
  }
  const q = $("quality");
  q.textContent = m ? m.quality : "—";
  q.className = m ? (m.quality === "ok" ? "ok" : "check") : "";
  $("reason").textContent = m && m.reasons.length ? "Check: " + m.reasons.join("; ") : "";
  $("edited").textContent = m && m.edited
    ? `edited by hand — model's value: ${m.original.hc === null ? "—" : m.original.hc.toFixed(1) + " mm"}` : "";
  const rows = $("rows");
  rows.innerHTML = "";
  for (const x of measurements) {
    const tr = document.createElement("tr");
    tr.tabIndex = 0;
    if (x === current) tr.className = "selected";
    const h = hcOf(x);
    for (const v of [x.filename, h === null ? "—" : h.toFixed(1), h === null ? "—" : weeksDays(hadlockWeeks(h)), x.quality, x.edited ? "yes" : "no"]) {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    }
    const pick = () => select(x);
    tr.addEventListener("click", pick);
    tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pick(); } });
    rows.appendChild(tr);
  }
}
function select(m) {
  current = m;
  canvas.width = Math.min(800, m.width);
  canvas.height = Math.round(canvas.width * m.height / m.width);
  refresh();
  showFrames();
}
function error(text) { $("error").textContent = text || ""; }
function status(text) { $("status").textContent = text || ""; }

// ---------------------------------------------------------------- upload
// a service bound beyond loopback needs its token: open the page as /#token=TOKEN; the token
// stays in this tab (sessionStorage) and leaves the address bar
const TOKEN_KEY = "fetalhc-token";
if (location.hash.startsWith("#token=")) {
  const raw = location.hash.slice(7);
  let token = raw;
  try { token = decodeURIComponent(raw); } catch (e) { /* a bare % in the token: take it as typed */ }
  sessionStorage.setItem(TOKEN_KEY, token);
  history.replaceState(null, "", location.pathname);
}
function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}

async function measurementOf(body, group) {
  const img = new Image();
  await new Promise((ok) => { img.onload = ok; img.src = "data:image/png;base64," + body.image_png_base64; });
  const m = {
    filename: body.filename, img, width: body.image_size.width, height: body.image_size.height,
    pixelSize: body.pixel_size_mm, source: body.pixel_size_source,
    ellipse: body.ellipse_px ? { cx: body.ellipse_px.cx, cy: body.ellipse_px.cy, a: body.ellipse_px.a, b: body.ellipse_px.b, angle: body.ellipse_px.angle_rad } : null,
    quality: body.quality, reasons: body.quality_reasons || [], status: body.status, edited: false,
    frame: body.frame || null, group,
    interval: body.hc_interval_mm || null, gaRange: body.ga_range_weeks || null,
    png64: body.image_png_base64,
  };
  m.original = { ellipse: m.ellipse ? { ...m.ellipse } : null, hc: null };
  m.original.hc = hcOf(m);
  measurements.push(m);
  return m;
}

// ---------------------------------------------------------------- cine loops: step through frames
function showFrames() {
  const box = $("frames");
  if (!current || !current.group) { box.hidden = true; return; }
  const i = current.group.indexOf(current);
  box.hidden = false;
  $("frame-label").textContent = `frame ${current.frame} (${i + 1} of ${current.group.length} measured)`;
  $("frame-prev").disabled = i === 0;
  $("frame-next").disabled = i === current.group.length - 1;
}
function stepFrame(delta) {
  if (!current || !current.group) return;
  const i = current.group.indexOf(current) + delta;
  if (i >= 0 && i < current.group.length) select(current.group[i]);
}
$("frame-prev").addEventListener("click", () => stepFrame(-1));
$("frame-next").addEventListener("click", () => stepFrame(1));

async function upload(file) {
  const form = new FormData();
  form.append("file", file);
  const px = $("pixel-size").value.trim();
  if (px) form.append("pixel_size_mm", px);
  const ga = $("ga").value.trim();
  if (ga) form.append("ga", ga);
  form.append("image", "true");
  status(`measuring ${file.name}…`);
  let response, body;
  try {
    response = await fetch("api/v1/measure", { method: "POST", body: form, headers: authHeaders() });
    body = await response.json();
  } catch (exc) {
    error(`${file.name}: the service did not answer (${exc})`);
    status("");
    return;
  }
  if (!response.ok) {
    error(`${file.name}: ${body.detail || response.statusText}`);
    status("");
    return;
  }
  // a cine loop: one measurement per measured frame, the chosen one shown first
  const group = body.frames ? [] : null;
  let first = null;
  for (const item of body.frames || [body]) {
    const m = await measurementOf(item, group);
    if (group) group.push(m);
    if (!body.frames || item.frame === body.frame) first = m;
  }
  select(first);
  if (body.status === "no_head") error(`${file.name}: no fetal head was found in this image`);
  else if (body.status === "no_pixel_size") error(`${file.name}: give the pixel size or calibrate to get HC in mm`);
  else error("");
  status(`${file.name}: ${body.message}${body.pixel_size_source && body.pixel_size_source !== "none" ? " (pixel size from " + body.pixel_size_source + ")" : ""}`);
}
async function uploadAll(files) { for (const f of files) await upload(f); }
$("file").addEventListener("change", (ev) => uploadAll([...ev.target.files]));
const drop = $("drop");
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); uploadAll([...ev.dataTransfer.files]); });

// ---------------------------------------------------------------- pixel size and calibration
function setPixelSize(value) {
  if (!current) return;
  if (!(value >= 0.01 && value <= 2)) { error("pixel size must be between 0.01 and 2 mm per pixel"); return; }
  current.pixelSize = value; current.source = "typed";
  if (current.original.hc === null) current.original.hc = hcOf({ ...current, ellipse: current.original.ellipse });
  error(""); refresh();
}
$("ga").addEventListener("input", () => refresh());
$("apply-pixel").addEventListener("click", () => setPixelSize(parseFloat($("pixel-size").value)));
$("calibrate").addEventListener("click", () => {
  if (!current) return;
  calibration = { points: [] };
  status("calibration: click two points on the depth scale");
  draw();
});
$("calib-apply").addEventListener("click", () => {
  const mm = parseFloat($("calib-mm").value);
  const [p, q] = calibration ? calibration.points : [];
  if (!p || !q || !(mm > 0)) { error("click two points, then type their distance in mm"); return; }
  const px = Math.hypot(p[0] - q[0], p[1] - q[1]);
  calibration = null; $("calib-box").hidden = true;
  $("pixel-size").value = (mm / px).toFixed(5);
  setPixelSize(mm / px);
  status(`calibrated: ${(mm / px).toFixed(5)} mm per pixel`);
});

// ---------------------------------------------------------------- correction
function toImage(ev) {
  const r = canvas.getBoundingClientRect();
  const k = scale() * r.width / canvas.width;
  return [(ev.clientX - r.left) / k, (ev.clientY - r.top) / k];
}
function edited() { current.edited = true; refresh(); }
canvas.addEventListener("mousedown", (ev) => {
  if (!current) return;
  const [x, y] = toImage(ev);
  if (calibration) {
    calibration.points.push([x, y]);
    if (calibration.points.length === 2) { $("calib-box").hidden = false; $("calib-mm").focus(); }
    draw(); return;
  }
  if (!current.ellipse) return;
  const tolerance = 12 / scale();
  for (const [name, [hx, hy]] of Object.entries(handles(current))) {
    if (Math.hypot(hx - x, hy - y) <= tolerance) { drag = name; return; }
  }
});
window.addEventListener("mousemove", (ev) => {
  if (!drag || !current) return;
  const [x, y] = toImage(ev);
  const e = current.ellipse;
  const dx = x - e.cx, dy = y - e.cy;
  if (drag === "centre") { e.cx = x; e.cy = y; }
  else if (drag === "a") { e.a = Math.max(2, Math.hypot(dx, dy)); e.angle = Math.atan2(dy, dx); }
  else if (drag === "b") { e.b = Math.max(2, Math.abs(-dx * Math.sin(e.angle) + dy * Math.cos(e.angle))); }
  else if (drag === "rotate") { e.angle = Math.atan2(dy, dx); }
  edited();
});
window.addEventListener("mouseup", () => { drag = null; });
canvas.addEventListener("keydown", (ev) => {
  if (!current || !current.ellipse) return;
  const e = current.ellipse, step = ev.shiftKey ? 10 : 1;
  const keys = {
    ArrowLeft: () => { e.cx -= step; }, ArrowRight: () => { e.cx += step; },
    ArrowUp: () => { e.cy -= step; }, ArrowDown: () => { e.cy += step; },
    a: () => { e.a = Math.max(2, e.a - 1); }, A: () => { e.a += 1; },
    b: () => { e.b = Math.max(2, e.b - 1); }, B: () => { e.b += 1; },
    r: () => { e.angle -= Math.PI / 180; }, R: () => { e.angle += Math.PI / 180; },
  };
  if (keys[ev.key]) { ev.preventDefault(); keys[ev.key](); edited(); }
});

// ---------------------------------------------------------------- export
const TEXT_CELLS = new Set([0, 8, 12]);  // filename, quality, pixel_size_source
function csvValue(v, i) {
  let s = v === null || v === undefined ? "" : String(v);
  // a text cell a spreadsheet would run as a formula gets a quote first (OWASP); numbers stay
  if (TEXT_CELLS.has(i) && /^[=+\-@\t\r]/.test(s)) s = "'" + s;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}
function csvRows() {
  const header = ["filename", "center_x_mm", "center_y_mm", "semi_axes_a_mm", "semi_axes_b_mm", "angle_rad",
    "hc_mm", "ga_weeks", "quality", "edited", "model_hc_mm", "pixel_size_mm", "pixel_size_source"];
  const lines = [header.join(",")];
  for (const m of measurements) {
    const ps = m.pixelSize, e = m.ellipse, hc = hcOf(m);
    const mm = (v) => (ps && e ? (v * ps).toFixed(6) : "");
    const ga = hc === null ? null : hadlockWeeks(hc);
    lines.push([m.filename, mm(e && e.cx), mm(e && e.cy), mm(e && Math.abs(e.a)), mm(e && Math.abs(e.b)),
      e ? e.angle.toFixed(6) : "", hc === null ? "" : hc.toFixed(3), ga === null ? "" : ga.toFixed(3),
      m.quality, m.edited ? "yes" : "no", m.original.hc === null ? "" : m.original.hc.toFixed(3),
      ps || "", m.source || ""].map(csvValue).join(","));
  }
  return lines.join("\n") + "\n";
}
function save(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.appendChild(link); link.click(); link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}
$("download-csv").addEventListener("click", () => {
  if (!measurements.length) { error("nothing measured yet"); return; }
  save(new Blob([csvRows()], { type: "text/csv" }), "fetalhc_measurements.csv");
});
$("download-png").addEventListener("click", () => {
  if (!current) { error("nothing measured yet"); return; }
  const full = document.createElement("canvas");
  full.width = current.width; full.height = current.height;
  const g = full.getContext("2d");
  g.drawImage(current.img, 0, 0);
  if (current.ellipse) drawEllipse(g, current, 1, false);
  const hc = hcOf(current);
  g.fillStyle = "#fff"; g.font = "20px sans-serif";
  g.fillText(hc === null ? "HC —" : `HC ${hc.toFixed(1)} mm${current.edited ? " (edited)" : ""}`, 12, 28);
  full.toBlob((blob) => save(blob, current.filename.replace(/\.[^.]+$/, "") + "_overlay.png"));
});

// for tests and scripts: handle positions in canvas pixels
window.fetalhc = {
  handlePositions: () => {
    if (!current || !current.ellipse) return null;
    const k = scale(), out = {};
    for (const [n, [x, y]] of Object.entries(handles(current))) out[n] = [x * k, y * k];
    return out;
  },
  measurements,
};

// ---------------------------------------------------------------- corrections
// With `serve --corrections DIR`, "Save correction" keeps the image, the model's ellipse
// and the one on screen (the sonographer's) for `fetalhc adapt`.
let modelName = "";
fetch("api/v1/health", { headers: authHeaders() })
  .then((r) => (r.ok ? r.json() : null))
  .then((h) => {
    if (h && h.corrections) $("corrections").hidden = false;
    if (h) modelName = h.model || "";
  })
  .catch(() => {});

function ellipseJson(e) {
  return JSON.stringify({ cx: e.cx, cy: e.cy, a: e.a, b: e.b, angle_rad: e.angle });
}

$("save-correction").addEventListener("click", async () => {
  const m = current;
  if (!m || !m.ellipse || !m.pixelSize || !m.png64) {
    status("nothing to save: measure an image, with its pixel size, first");
    return;
  }
  const bytes = Uint8Array.from(atob(m.png64), (c) => c.charCodeAt(0));
  const form = new FormData();
  form.append("file", new Blob([bytes], { type: "image/png" }), m.filename);
  form.append("final", ellipseJson(m.ellipse));
  if (m.original.ellipse) form.append("original", ellipseJson(m.original.ellipse));
  form.append("pixel_size_mm", String(m.pixelSize));
  form.append("model", modelName);
  form.append("key", $("correction-key").value.trim());
  try {
    const r = await fetch("api/v1/corrections", { method: "POST", body: form, headers: authHeaders() });
    const body = await r.json();
    if (!r.ok) { status(`correction not saved: ${body.detail || r.status}`); return; }
    m.saved = body.stored;
    status(`correction saved (${body.part} part): HC ${body.final_hc_mm.toFixed(1)} mm`);
  } catch (e) {
    status("correction not saved: the service did not answer");
  }
});
