// seano-client.js: a small client for the SEANO gateway's WebSocket streams.
//
// No dependencies, no build step: an ES module that a page (or a React app) imports.
//
//   import { createSeanoClient } from "/seano-client.js";
//   const client = createSeanoClient({ vehicleId: 1, types: ["vehicle_log"], snapshot: true });
//   const off = client.on("data", (frame) => console.log(frame.type, frame.seq, frame.data));
//   client.connect();
//   ...
//   off(); client.close();
//
// What it does for you:
// - reconnects with exponential backoff and jitter after any close it did not ask for, except
//   close codes 3500-3999 ("do not reconnect with the same request");
// - resumes: it remembers the last `seq` it delivered and reconnects with `since=<seq>`, so the
//   server replays what was missed, in order; frames at or below that seq are dropped, so no
//   frame is delivered twice;
// - asks for `snapshot=latest` while it has no cursor yet (snapshot frames, marked
//   `snapshot: true`, do not move the cursor);
// - re-sends the `subscribe` / `unsubscribe` requests made so far after reconnecting;
// - sends an application `ping` every `pingIntervalMs` and reconnects when no frame arrives
//   within `pongTimeoutMs` after it (a dead mobile network often leaves a socket "open").
//
// Events (client.on(name, fn) returns a function that removes the listener):
//   "frame"   every frame, parsed;
//   "data"    raw_log / sensor_log / vehicle_log frames, snapshot and replayed ones included;
//   "status"  { status, attempt, delayMs?, code?, reason? } on every state change;
//             status is "connecting", "open", "reconnecting" or "closed";
//   "resync"  the server could not replay from our cursor: reload history over REST
//             (GET /api/vehicles/{id}/{type}?after_seq=...), the live stream continues;
//   "conflated" { skipped } with conflate: true, when this client fell behind and the server
//             skipped to the latest message per vehicle and type;
//   "error"   { message } for error frames and refused connections.

const DATA_TYPES = new Set(["raw_log", "sensor_log", "vehicle_log"]);

/**
 * @typedef {object} SeanoClientOptions
 * @property {string} [baseUrl]   ws(s)://host[:port]; default: the page's host.
 * @property {number} [vehicleId] Use /api/ws/vehicle/{vehicleId} instead of /api/ws.
 * @property {string[]} [types]   Only these message types.
 * @property {boolean} [snapshot] Ask for snapshot=latest while there is no cursor (default true).
 * @property {boolean} [conflate] Ask for conflate=latest (skip to the latest when behind).
 * @property {number} [since]     Start after this seq (e.g. a REST page's `live_since`).
 * @property {string|(() => string)} [token] Access token, sent as `token=`.
 * @property {number} [initialDelayMs] First reconnect delay (default 500).
 * @property {number} [maxDelayMs]     Largest reconnect delay (default 15000).
 * @property {number} [pingIntervalMs] Application ping period; 0 disables (default 25000).
 * @property {number} [pongTimeoutMs]  Reconnect when nothing arrives this long after a ping (default 10000).
 * @property {typeof WebSocket} [WebSocket] WebSocket implementation (default: the global one).
 */

/**
 * Creates a client. Nothing happens until `connect()`.
 * @param {SeanoClientOptions} [options]
 */
export function createSeanoClient(options = {}) {
  const opts = {
    snapshot: true,
    conflate: false,
    initialDelayMs: 500,
    maxDelayMs: 15000,
    pingIntervalMs: 25000,
    pongTimeoutMs: 10000,
    ...options,
  };
  const WS = opts.WebSocket || globalThis.WebSocket;
  const listeners = new Map();
  /** Filter changes made so far, re-sent after each reconnect. */
  const requests = [];
  let socket = null;
  let lastSeq = Number.isInteger(opts.since) ? opts.since : null;
  let wanted = false;
  let attempt = 0;
  let status = "closed";
  let reconnectTimer = null;
  let pingTimer = null;
  let pongTimer = null;

  function emit(name, value) {
    for (const fn of listeners.get(name) || []) {
      try {
        fn(value);
      } catch (err) {
        console.error(`seano-client: a "${name}" listener threw`, err);
      }
    }
  }

  function setStatus(next, extra = {}) {
    status = next;
    emit("status", { status: next, attempt, ...extra });
  }

  function url() {
    let base = opts.baseUrl;
    if (!base) {
      const loc = globalThis.location;
      base = `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}`;
    }
    const path = opts.vehicleId != null ? `/api/ws/vehicle/${opts.vehicleId}` : "/api/ws";
    const params = new URLSearchParams();
    if (opts.types && opts.types.length) params.set("types", opts.types.join(","));
    if (lastSeq != null) params.set("since", String(lastSeq));
    // No cursor yet (first connection, or nothing received before a drop): start from the
    // latest state of each vehicle instead.
    else if (opts.snapshot) params.set("snapshot", "latest");
    if (opts.conflate) params.set("conflate", "latest");
    const token = typeof opts.token === "function" ? opts.token() : opts.token;
    if (token) params.set("token", token);
    const query = params.toString();
    return `${base}${path}${query ? `?${query}` : ""}`;
  }

  function send(frame) {
    if (socket && socket.readyState === 1) {
      socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function clearTimers() {
    clearTimeout(reconnectTimer);
    clearInterval(pingTimer);
    clearTimeout(pongTimer);
    reconnectTimer = pingTimer = pongTimer = null;
  }

  function open() {
    clearTimers();
    setStatus(attempt === 0 ? "connecting" : "reconnecting");
    const ws = new WS(url());
    socket = ws;
    ws.onopen = () => {
      if (socket !== ws) return;
      attempt = 0;
      setStatus("open");
      for (const r of requests) send(r);
      if (opts.pingIntervalMs > 0) {
        pingTimer = setInterval(() => {
          send({ type: "ping", timestamp: Date.now() });
          clearTimeout(pongTimer);
          // Any frame proves the socket alive; none at all means it is dead.
          pongTimer = setTimeout(() => ws.close(4000, "no answer to ping"), opts.pongTimeoutMs);
        }, opts.pingIntervalMs);
      }
    };
    ws.onmessage = (event) => {
      if (socket !== ws) return;
      clearTimeout(pongTimer);
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (DATA_TYPES.has(frame.type)) {
        if (!frame.snapshot && Number.isInteger(frame.seq)) {
          // Already delivered (the seam between replay and live): drop it.
          if (lastSeq != null && frame.seq <= lastSeq) return;
          lastSeq = frame.seq;
        }
        emit("frame", frame);
        emit("data", frame);
        return;
      }
      if (frame.type === "resync") {
        // The replay is incomplete; the app reloads over REST. Resume from here next time.
        if (Number.isInteger(frame.last_seq)) lastSeq = frame.last_seq;
        emit("resync", frame);
      } else if (frame.type === "conflated") {
        emit("conflated", frame);
      } else if (frame.type === "error") {
        emit("error", { message: frame.message, frame });
      }
      emit("frame", frame);
    };
    ws.onclose = (event) => {
      if (socket !== ws) return;
      socket = null;
      clearTimers();
      const final = !wanted || (event.code >= 3500 && event.code <= 3999);
      if (final) {
        if (wanted) emit("error", { message: `closed: ${event.code} ${event.reason}` });
        wanted = false;
        setStatus("closed", { code: event.code, reason: event.reason });
        return;
      }
      attempt += 1;
      const base = Math.min(opts.maxDelayMs, opts.initialDelayMs * 2 ** (attempt - 1));
      const delayMs = Math.round(base * (0.7 + Math.random() * 0.6));
      setStatus("reconnecting", { delayMs, code: event.code, reason: event.reason });
      reconnectTimer = setTimeout(open, delayMs);
    };
    ws.onerror = () => {
      // A close event always follows; reconnecting happens there.
    };
  }

  function remember(frame) {
    requests.push(frame);
    // Only the last request per vehicle (or "all") matters after a reconnect.
    const key = (f) => String(f.vehicle_id ?? "all");
    for (let i = requests.length - 2; i >= 0; i--) {
      if (key(requests[i]) === key(frame)) requests.splice(i, 1);
    }
  }

  return {
    /** Opens the socket (and keeps it open until `close()`). */
    connect() {
      if (wanted) return;
      wanted = true;
      attempt = 0;
      open();
    },
    /** Closes the socket for good. */
    close() {
      wanted = false;
      clearTimers();
      const ws = socket;
      socket = null;
      if (ws) ws.close(1000, "client closed");
      setStatus("closed");
    },
    /** Receive `vehicleId` too, or every vehicle when omitted. */
    subscribe(vehicleId) {
      const frame = vehicleId == null ? { type: "subscribe" } : { type: "subscribe", vehicle_id: vehicleId };
      remember(frame);
      return send(frame);
    },
    /** Stop receiving `vehicleId`, or stop "every vehicle" when omitted. */
    unsubscribe(vehicleId) {
      const frame = vehicleId == null ? { type: "unsubscribe" } : { type: "unsubscribe", vehicle_id: vehicleId };
      remember(frame);
      return send(frame);
    },
    /** Sends an application ping; the server answers with a pong frame. */
    ping() {
      return send({ type: "ping", timestamp: Date.now() });
    },
    /** Adds a listener; returns a function that removes it. */
    on(name, fn) {
      if (!listeners.has(name)) listeners.set(name, new Set());
      listeners.get(name).add(fn);
      return () => listeners.get(name).delete(fn);
    },
    /** The last seq delivered (the resume cursor), or null. */
    get lastSeq() {
      return lastSeq;
    },
    /** "connecting", "open", "reconnecting" or "closed". */
    get status() {
      return status;
    },
    /** The URL the next connection will use (for display and debugging). */
    get url() {
      return url();
    },
  };
}

/**
 * Reads the REST API: `get("/api/vehicles")`. Throws an Error with the server's message on a
 * non-2xx answer.
 * @param {string} path
 * @param {{ baseUrl?: string, token?: string }} [options]
 */
export async function fetchJson(path, options = {}) {
  const headers = options.token ? { Authorization: `Bearer ${options.token}` } : {};
  const response = await fetch(`${options.baseUrl || ""}${path}`, { headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error((body && body.message) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    error.body = body;
    throw error;
  }
  return body;
}
