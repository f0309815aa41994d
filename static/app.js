// The SEANO live dashboard. Plain ES module, no build step.
//
// Data flow:
// - GET /api/vehicles fills the fleet list, then the all-vehicles stream
//   (/api/ws?types=vehicle_log,raw_log&snapshot=latest) keeps it and the raw-log console live;
// - selecting a vehicle loads its sensor history and track over REST, then opens its vehicle
//   stream with since=<the history page's live_since>, so nothing between the two is missed;
// - both streams reconnect with backoff and resume with since=<last seq> (seano-client.js).

import { createSeanoClient, fetchJson } from "./seano-client.js";

const ONLINE_MS = 10_000;
const STALE_MS = 60_000;
const CONSOLE_LINES = 300;
const SENSOR_POINTS = 600;
const TRACK_POINTS = 2000;

const $ = (id) => document.getElementById(id);

// With authentication on, open the dashboard once as /?token=...; the token is kept for later.
const token = (() => {
  const fromUrl = new URLSearchParams(location.search).get("token");
  try {
    if (fromUrl) localStorage.setItem("seano.token", fromUrl);
    return fromUrl || localStorage.getItem("seano.token") || undefined;
  } catch {
    return fromUrl || undefined;
  }
})();
const api = (path) => fetchJson(path, { token });

const state = {
  /** id -> { id, firstSeen, lastSeen (ms), data (merged vehicle state), seq, timestamp } */
  vehicles: new Map(),
  selected: null,
  /** The selected vehicle's positions: { t, lat, lon } oldest first. */
  track: [],
  /** The selected vehicle's sensor series: "sensor_id.field" -> [{ t, v }]. */
  sensors: new Map(),
  /** Receive times of data frames over the last few seconds, for the msg/s figure. */
  arrivals: [],
  allStream: null,
  vehicleStream: null,
  dirty: { fleet: true, values: true, track: true, sensors: true },
};

// ---------------------------------------------------------------- helpers

function ago(ms) {
  if (ms == null) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  return `${Math.floor(s / 3600)}h ago`;
}

function connectionOf(v) {
  if (v.lastSeen == null) return "offline";
  const age = Date.now() - v.lastSeen;
  return age < ONLINE_MS ? "online" : age < STALE_MS ? "stale" : "offline";
}

function fmt(value, digits = 2) {
  if (value == null) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(digits);
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) node.append(child);
  return node;
}

function setPill(node, status) {
  const labels = { open: "live", connecting: "connecting", reconnecting: "reconnecting", closed: "offline" };
  node.textContent = labels[status] || status;
  node.dataset.status = status;
  node.className = `pill pill-${status}`;
}

function vehicle(id) {
  let v = state.vehicles.get(id);
  if (!v) {
    v = { id, firstSeen: null, lastSeen: null, data: {}, seq: null, timestamp: null };
    state.vehicles.set(id, v);
    state.dirty.fleet = true;
  }
  return v;
}

function countArrival() {
  state.arrivals.push(performance.now());
}

// ---------------------------------------------------------------- fleet

function applyVehicleLog(frame, { fromSelectedStream = false } = {}) {
  const v = vehicle(frame.vehicle_id);
  // Snapshot frames carry an older state: they must not look like fresh traffic.
  if (!frame.snapshot) v.lastSeen = Date.now();
  else if (v.lastSeen == null) v.lastSeen = Date.parse(frame.timestamp);
  if (v.seq == null || frame.seq >= v.seq) {
    Object.assign(v.data, frame.data);
    v.seq = frame.seq;
    v.timestamp = frame.timestamp;
  }
  state.dirty.fleet = true;
  if (frame.vehicle_id === state.selected) {
    state.dirty.values = true;
    if (fromSelectedStream) addTrackPoint(frame);
  }
}

function renderFleet() {
  const list = $("fleet");
  const ids = [...state.vehicles.keys()].sort((a, b) => a - b);
  $("fleet-count").textContent = String(ids.length);
  $("fleet-empty").hidden = ids.length > 0;
  for (const id of ids) {
    const v = state.vehicles.get(id);
    let item = list.querySelector(`[data-vehicle-id="${id}"]`);
    if (!item) {
      item = el(
        "li",
        { class: "fleet-item", "data-vehicle-id": String(id), tabIndex: 0 },
        el("div", { class: "fleet-row" },
          el("span", { class: "fleet-name" }, `Vehicle ${id}`),
          el("span", { class: "fleet-mode", "data-field": "mode" })),
        el("div", { class: "fleet-row fleet-detail" },
          el("span", { "data-field": "armed" }),
          el("span", { "data-field": "battery" }),
          el("span", { "data-field": "last-seen" })),
      );
      item.addEventListener("click", () => select(id));
      item.addEventListener("keydown", (e) => e.key === "Enter" && select(id));
      // Keep the list ordered by id.
      const next = [...list.children].find((c) => Number(c.dataset.vehicleId) > id);
      list.insertBefore(item, next || null);
    }
    const d = v.data;
    item.dataset.connection = connectionOf(v);
    item.classList.toggle("selected", id === state.selected);
    item.querySelector('[data-field="mode"]').textContent = d.mode || "–";
    const armed = item.querySelector('[data-field="armed"]');
    armed.textContent = d.armed == null ? "–" : d.armed ? "ARMED" : "disarmed";
    armed.className = d.armed ? "armed" : "disarmed";
    item.querySelector('[data-field="battery"]').textContent =
      d.battery_voltage == null ? "– V" : `${d.battery_voltage.toFixed(2)} V`;
    item.querySelector('[data-field="last-seen"]').textContent = `${connectionOf(v)} · ${ago(v.lastSeen)}`;
  }
}

// ---------------------------------------------------------------- selected vehicle

const VALUE_FIELDS = [
  ["mode", "Mode"], ["armed", "Armed"], ["guided", "Guided"], ["system_status", "Status"],
  ["battery_voltage", "Battery V"], ["battery_current", "Current A"], ["rssi", "RSSI dBm"],
  ["speed", "Speed m/s"], ["heading", "Heading °"], ["latitude", "Latitude"], ["longitude", "Longitude"],
  ["altitude", "Altitude m"], ["gps_fix", "GPS fix"], ["temperature", "Temp °C"],
  ["roll", "Roll"], ["pitch", "Pitch"], ["yaw", "Yaw"],
];

function renderValues() {
  const dl = $("vehicle-values");
  const v = state.vehicles.get(state.selected);
  if (!v) {
    dl.replaceChildren();
    return;
  }
  const known = new Set(VALUE_FIELDS.map(([k]) => k));
  const extras = Object.keys(v.data).filter((k) => !known.has(k)).sort();
  const fields = [
    ...VALUE_FIELDS.filter(([k]) => v.data[k] != null),
    ...extras.map((k) => [k, k]),
    ["seq", "seq"], ["timestamp", "time"],
  ];
  const values = { ...v.data, seq: v.seq, timestamp: v.timestamp && v.timestamp.slice(11, 23) };
  for (const [key, label] of fields) {
    let dd = dl.querySelector(`dd[data-field="${key}"]`);
    if (!dd) {
      dd = el("dd", { "data-field": key });
      dl.append(el("div", {}, el("dt", {}, label), dd));
    }
    const digits = key === "latitude" || key === "longitude" ? 6 : 2;
    const text = fmt(values[key], digits);
    if (dd.textContent !== text) {
      dd.textContent = text;
      dd.classList.remove("changed");
      void dd.offsetWidth; // restart the flash animation
      dd.classList.add("changed");
    }
  }
}

function addTrackPoint(frame) {
  const { latitude: lat, longitude: lon } = frame.data;
  if (lat == null || lon == null) return;
  const t = Date.parse(frame.timestamp);
  const last = state.track[state.track.length - 1];
  if (last && t <= last.t) return; // already in the REST track
  state.track.push({ t, lat, lon, heading: frame.data.heading });
  if (state.track.length > TRACK_POINTS) state.track.shift();
  state.dirty.track = true;
}

function addSensorReading(frame) {
  const t = Date.parse(frame.timestamp);
  for (const [field, value] of Object.entries(frame.data || {})) {
    if (typeof value !== "number") continue;
    const key = `${frame.sensor_id}.${field}`;
    let series = state.sensors.get(key);
    if (!series) state.sensors.set(key, (series = []));
    series.push({ t, v: value });
    if (series.length > SENSOR_POINTS) series.shift();
  }
  state.dirty.sensors = true;
}

async function select(id) {
  if (state.selected === id) return;
  state.selected = id;
  history.replaceState(null, "", `#vehicle=${id}`);
  if (state.vehicleStream) state.vehicleStream.close();
  state.vehicleStream = null;
  state.track = [];
  state.sensors = new Map();
  $("vehicle-values").replaceChildren();
  $("vehicle-title").textContent = `Vehicle ${id}`;
  Object.keys(state.dirty).forEach((k) => (state.dirty[k] = true));
  renderConsoleFilter();

  let since;
  try {
    // Sensors first: its live_since bounds what the stream replays; the track read after it
    // may overlap the replay, and addTrackPoint drops the overlap.
    const page = await api(`/api/vehicles/${id}/sensor_log?order=desc&limit=${SENSOR_POINTS}`);
    for (const item of page.items.reverse()) addSensorReading(item);
    since = page.live_since;
    const track = await api(`/api/vehicles/${id}/track?points=${TRACK_POINTS}`);
    if (state.selected !== id) return;
    state.track = track.points.map((p) => ({ t: Date.parse(p.time), lat: p.latitude, lon: p.longitude }));
  } catch (err) {
    console.warn("dashboard: loading history failed", err);
  }
  if (state.selected !== id) return;

  const stream = createSeanoClient({
    vehicleId: id,
    types: ["vehicle_log", "sensor_log"],
    since,
    snapshot: since == null,
    token,
  });
  state.vehicleStream = stream;
  stream.on("status", (s) => setPill($("vehicle-stream"), s.status));
  stream.on("data", (frame) => {
    countArrival();
    if (frame.type === "vehicle_log") applyVehicleLog(frame, { fromSelectedStream: true });
    else if (frame.type === "sensor_log") addSensorReading(frame);
  });
  stream.on("resync", () => {
    // Our cursor is older than the server's replay window: start this vehicle over.
    state.selected = null;
    select(id);
  });
  stream.connect();
}

// ---------------------------------------------------------------- canvases

function fitCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const width = Math.max(200, Math.round(canvas.clientWidth));
  const height = Math.round(width * 0.57);
  if (canvas.width !== width * dpr || canvas.height !== height * dpr) {
    canvas.width = width * dpr;
    canvas.height = height * dpr;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, width, height };
}

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function drawTrack() {
  const { ctx, width, height } = fitCanvas($("track"));
  ctx.fillStyle = "#0a1a27";
  ctx.fillRect(0, 0, width, height);
  const pts = state.track;
  ctx.font = "12px system-ui, sans-serif";
  if (pts.length === 0) {
    ctx.fillStyle = css("--muted");
    ctx.fillText(state.selected == null ? "Select a vehicle" : "No position yet", 12, 22);
    return;
  }
  let [minLat, maxLat, minLon, maxLon] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const p of pts) {
    minLat = Math.min(minLat, p.lat); maxLat = Math.max(maxLat, p.lat);
    minLon = Math.min(minLon, p.lon); maxLon = Math.max(maxLon, p.lon);
  }
  const midLat = (minLat + maxLat) / 2;
  const kx = Math.cos((midLat * Math.PI) / 180);
  // At least ~30 m across, so a boat at rest is not a single magnified pixel.
  const spanY = Math.max(maxLat - minLat, 0.0003);
  const spanX = Math.max((maxLon - minLon) * kx, 0.0003);
  const pad = 24;
  const scale = Math.min((width - 2 * pad) / spanX, (height - 2 * pad) / spanY);
  const cx = (minLon + maxLon) / 2;
  const cy = midLat;
  const project = (p) => [width / 2 + (p.lon - cx) * kx * scale, height / 2 - (p.lat - cy) * scale];

  // Grid.
  ctx.strokeStyle = "#15293a";
  ctx.lineWidth = 1;
  for (let x = 0; x < width; x += 40) { ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, height); ctx.stroke(); }
  for (let y = 0; y < height; y += 40) { ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(width, y); ctx.stroke(); }

  // Path.
  ctx.strokeStyle = css("--accent");
  ctx.lineWidth = 2;
  ctx.beginPath();
  pts.forEach((p, i) => {
    const [x, y] = project(p);
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();

  // Start and current position (a triangle pointing along the heading).
  const [sx, sy] = project(pts[0]);
  ctx.fillStyle = css("--muted");
  ctx.beginPath(); ctx.arc(sx, sy, 4, 0, 2 * Math.PI); ctx.fill();
  const last = pts[pts.length - 1];
  const [x, y] = project(last);
  const v = state.vehicles.get(state.selected);
  const heading = (v && v.data.heading) ?? last.heading ?? 0;
  ctx.save();
  ctx.translate(x, y);
  ctx.rotate((heading * Math.PI) / 180);
  ctx.fillStyle = css("--ok");
  ctx.beginPath(); ctx.moveTo(0, -10); ctx.lineTo(6, 7); ctx.lineTo(-6, 7); ctx.closePath(); ctx.fill();
  ctx.restore();

  // Scale bar: the largest round distance under a third of the width.
  const metresPerPx = 111_320 / scale;
  const candidates = [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000];
  const metres = candidates.filter((m) => m / metresPerPx < width / 3).pop() || 10;
  const barPx = metres / metresPerPx;
  ctx.strokeStyle = css("--text");
  ctx.beginPath(); ctx.moveTo(pad, height - 12); ctx.lineTo(pad + barPx, height - 12); ctx.stroke();
  ctx.fillStyle = css("--text");
  ctx.fillText(metres >= 1000 ? `${metres / 1000} km` : `${metres} m`, pad, height - 18);
  ctx.fillStyle = css("--muted");
  ctx.fillText(`${last.lat.toFixed(5)}, ${last.lon.toFixed(5)} · ${pts.length} pts`, 12, 18);
}

const SERIES_COLORS = ["#3fb6ff", "#38d39f", "#f6c343", "#ff8f6b", "#c38bff", "#7fe0e0"];

function drawSensors() {
  const { ctx, width, height } = fitCanvas($("sensors"));
  ctx.fillStyle = "#0a1a27";
  ctx.fillRect(0, 0, width, height);
  ctx.font = "12px system-ui, sans-serif";
  const keys = [...state.sensors.keys()].sort().slice(0, 6);
  if (keys.length === 0) {
    ctx.fillStyle = css("--muted");
    ctx.fillText(state.selected == null ? "Select a vehicle" : "No sensor readings yet", 12, 22);
    return;
  }
  const cols = keys.length > 3 ? 2 : 1;
  const rows = Math.ceil(keys.length / cols);
  const cw = width / cols;
  const ch = height / rows;
  keys.forEach((key, i) => {
    const series = state.sensors.get(key);
    const x0 = (i % cols) * cw;
    const y0 = Math.floor(i / cols) * ch;
    const color = SERIES_COLORS[i % SERIES_COLORS.length];
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of series) { lo = Math.min(lo, p.v); hi = Math.max(hi, p.v); }
    // A flat series is drawn mid-height.
    const [min, max] = hi - lo < 1e-9 ? [lo - 1, hi + 1] : [lo, hi];
    const t0 = series[0].t;
    const t1 = Math.max(series[series.length - 1].t, t0 + 1);
    const px = (t) => x0 + 8 + ((t - t0) / (t1 - t0)) * (cw - 16);
    const py = (v) => y0 + ch - 8 - ((v - min) / (max - min)) * (ch - 48);
    ctx.strokeStyle = "#15293a";
    ctx.strokeRect(x0 + 0.5, y0 + 0.5, cw - 1, ch - 1);
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    series.forEach((p, j) => (j === 0 ? ctx.moveTo(px(p.t), py(p.v)) : ctx.lineTo(px(p.t), py(p.v))));
    ctx.stroke();
    const latest = series[series.length - 1].v;
    ctx.fillStyle = color;
    ctx.fillText(`sensor ${key}`, x0 + 8, y0 + 16);
    ctx.fillStyle = css("--text");
    ctx.fillText(`${fmt(latest)}`, x0 + 8, y0 + 32);
    ctx.fillStyle = css("--muted");
    const range = `${fmt(lo)} – ${fmt(hi)}`;
    ctx.fillText(range, x0 + cw - 8 - ctx.measureText(range).width, y0 + 32);
  });
}

// ---------------------------------------------------------------- console

function consoleFilterOn() {
  return $("console-selected").checked && state.selected != null;
}

function renderConsoleFilter() {
  for (const li of $("console").children) {
    li.hidden = consoleFilterOn() && Number(li.dataset.vehicleId) !== state.selected;
  }
}

function appendLog(frame) {
  const list = $("console");
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  const text = String(frame.data);
  const level = /error|fail|critical/i.test(text) ? "level-error" : /warn|low/i.test(text) ? "level-warn" : "";
  const li = el(
    "li",
    { "data-vehicle-id": String(frame.vehicle_id), class: level },
    el("time", { dateTime: frame.timestamp }, frame.timestamp.slice(11, 23)),
    el("span", { class: "tag" }, `#${frame.vehicle_id}`),
    text,
  );
  li.hidden = consoleFilterOn() && frame.vehicle_id !== state.selected;
  list.append(li);
  while (list.children.length > CONSOLE_LINES) list.firstElementChild.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
}

// ---------------------------------------------------------------- start-up

async function loadFleet() {
  const { vehicles } = await api("/api/vehicles");
  for (const row of vehicles) {
    const v = vehicle(row.id);
    v.firstSeen = Date.parse(row.first_seen_at);
    v.lastSeen = Math.max(v.lastSeen ?? 0, Date.parse(row.last_seen_at));
    const latest = row.latest_vehicle_log;
    if (latest && (v.seq == null || latest.seq > v.seq)) {
      Object.assign(v.data, latest.data);
      v.seq = latest.seq;
      v.timestamp = latest.timestamp;
    }
  }
  state.dirty.fleet = true;
}

function startAllVehiclesStream() {
  // conflate: a dashboard that falls behind would rather skip to the latest state than be cut off.
  const stream = createSeanoClient({ types: ["vehicle_log", "raw_log"], snapshot: true, conflate: true, token });
  state.allStream = stream;
  stream.on("status", (s) => setPill($("status"), s.status));
  stream.on("data", (frame) => {
    countArrival();
    if (frame.type === "vehicle_log") {
      // The selected vehicle's own stream updates its view; here only the fleet.
      applyVehicleLog(frame);
    } else if (frame.type === "raw_log") {
      vehicle(frame.vehicle_id).lastSeen = Date.now();
      state.dirty.fleet = true;
      appendLog(frame);
    }
    if (!frame.snapshot) $("last-seq").textContent = String(frame.seq);
  });
  stream.on("resync", () => loadFleet().catch((e) => console.warn(e)));
  stream.on("conflated", (frame) =>
    appendLog({ vehicle_id: "–", timestamp: new Date().toISOString(), data: `(${frame.skipped} older messages skipped)` }),
  );
  stream.connect();
}

function tick() {
  const { dirty } = state;
  if (dirty.fleet) { renderFleet(); dirty.fleet = false; }
  if (dirty.values) { renderValues(); dirty.values = false; }
  if (dirty.track) { drawTrack(); dirty.track = false; }
  if (dirty.sensors) { drawSensors(); dirty.sensors = false; }
  requestAnimationFrame(tick);
}

function everySecond() {
  const now = performance.now();
  state.arrivals = state.arrivals.filter((t) => now - t < 5000);
  $("rate").textContent = (state.arrivals.length / 5).toFixed(1);
  state.dirty.fleet = true; // "last seen" and the connection state age
}

async function main() {
  $("console-selected").addEventListener("change", renderConsoleFilter);
  window.addEventListener("resize", () => { state.dirty.track = state.dirty.sensors = true; });
  try {
    await loadFleet();
  } catch (err) {
    console.warn("dashboard: GET /api/vehicles failed; the stream will fill the fleet", err);
  }
  startAllVehiclesStream();
  requestAnimationFrame(tick);
  setInterval(everySecond, 1000);

  const fromHash = Number((location.hash.match(/vehicle=(\d+)/) || [])[1]);
  const first = fromHash || [...state.vehicles.keys()].sort((a, b) => a - b)[0];
  if (first) select(first);
  else {
    // Select the first vehicle that shows up.
    const off = state.allStream.on("data", (frame) => {
      if (state.selected == null) select(frame.vehicle_id);
      off();
    });
  }
}

main();
