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
//   // A command (needs a credential with command rights): resolves with the final record.
//   const record = await client.sendCommand(1, "RTL", undefined, { onState: (r) => show(r.status) });
//   if (record.status !== "succeeded") alert(record.message);
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
//   "error"   { message } for error frames and refused connections;
//   "command_status" every command_status frame (a command's state change, whoever sent it;
//             `frame.data` is its CommandRecord), replayed ones included.
//
// Commands: `sendCommand(vehicleId, command, params?, { requestId?, timeoutMs?, onState? })`
// sends a `command` frame on the open socket. The promise resolves with the command's final
// record (status succeeded, failed, timed_out or expired: the caller reads `.status`) and rejects
// with an Error carrying `.requestId` when the gateway refuses it (an `error` frame with that
// request_id) or the socket closes before it was accepted (it may or may not have been: sending
// again with the same requestId is safe, the gateway does not send a request_id twice).
// `onState(record)` sees every state it goes through (accepted, sent, then the final one),
// from the command_status frames (which need the socket's filter to cover the vehicle and
// `command_status` among its types) and, as a fallback, from `GET /api/commands/{request_id}`
// a moment after the command's `expires_at`, by which time the gateway has settled it.

const DATA_TYPES = new Set(["raw_log", "sensor_log", "vehicle_log"]);
/** Frames with a seq that move the resume cursor. */
const SEQ_TYPES = new Set([...DATA_TYPES, "command_status"]);
/** A command's states, in the order they happen; the last four are final. */
export const COMMAND_STATES = ["accepted", "sent", "succeeded", "failed", "timed_out", "expired"];
const FINAL_STATES = new Set(COMMAND_STATES.slice(2));

/** Whether a command's state is final (succeeded, failed, timed_out, expired). */
export function isFinalCommandState(status) {
  return FINAL_STATES.has(status);
}

/** 0 for accepted, 1 for sent, 2 for any final state: a state never goes back. */
function stateRank(status) {
  return FINAL_STATES.has(status) ? 2 : Math.max(0, COMMAND_STATES.indexOf(status));
}

/**
 * A new request id (an idempotency key for `sendCommand`): a random UUID. `crypto.randomUUID`
 * exists only in secure contexts (https, localhost); elsewhere one is made from
 * `crypto.getRandomValues`.
 */
export function newRequestId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
  bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

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
 * @property {string} [httpBaseUrl] http(s)://host[:port] for the REST fallback of sendCommand;
 *   default: baseUrl with ws→http, or the page's origin.
 * @property {number} [commandFallbackDelayMs] How long after a command's expires_at to ask
 *   GET /api/commands/{request_id} when no final command_status frame came (default 1500).
 * @property {number} [acceptTimeoutMs] How long to wait for command_accepted (or an error)
 *   before asking GET /api/commands/{request_id} whether it was accepted (default 10000).
 * @property {typeof fetch} [fetch] fetch implementation for the REST fallback (default: the global one).
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
    commandFallbackDelayMs: 1500,
    acceptTimeoutMs: 10000,
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
  /** The filter in force, from the connection and subscription_ack frames (null before). */
  let filter = null;
  /** Commands sent with sendCommand and not final yet, by request_id. */
  const commands = new Map();

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
      if (SEQ_TYPES.has(frame.type)) {
        if (!frame.snapshot && Number.isInteger(frame.seq)) {
          // Already delivered (the seam between replay and live): drop it.
          if (lastSeq != null && frame.seq <= lastSeq) return;
          lastSeq = frame.seq;
        }
        emit("frame", frame);
        if (frame.type === "command_status") {
          emit("command_status", frame);
          if (frame.data) commandUpdate(frame.data);
        } else {
          emit("data", frame);
        }
        return;
      }
      if (frame.type === "connection" || frame.type === "subscription_ack") {
        if (frame.filter) filter = frame.filter;
      } else if (frame.type === "command_accepted") {
        const entry = frame.command && commands.get(frame.command.request_id);
        if (entry) commandUpdate(frame.command);
      } else if (frame.type === "resync") {
        // The replay is incomplete; the app reloads over REST. Resume from here next time.
        if (Number.isInteger(frame.last_seq)) lastSeq = frame.last_seq;
        emit("resync", frame);
      } else if (frame.type === "conflated") {
        emit("conflated", frame);
      } else if (frame.type === "error") {
        const entry = frame.request_id != null ? commands.get(frame.request_id) : null;
        if (entry && !entry.accepted) {
          refuse(entry, frame.message, frame);
        }
        emit("error", { message: frame.message, frame });
      }
      emit("frame", frame);
    };
    ws.onclose = (event) => {
      if (socket !== ws) return;
      socket = null;
      clearTimers();
      refuseUnaccepted(`the stream closed (${event.code})`);
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

  function httpBase() {
    if (opts.httpBaseUrl) return opts.httpBaseUrl;
    if (opts.baseUrl) return opts.baseUrl.replace(/^ws(s?):/i, "http$1:");
    return "";
  }

  /** Applies a newer record of a tracked command: onState on a new state, resolve when final. */
  function commandUpdate(record) {
    const entry = commands.get(record.request_id);
    if (!entry) return;
    // A record (from command_accepted, a command_status frame or REST) means it was accepted.
    entry.accepted = true;
    clearTimeout(entry.acceptTimer);
    const known = entry.record;
    // States only move forward; a REST answer may be older than a frame already seen.
    if (known && stateRank(record.status) < stateRank(known.status)) return;
    entry.record = record;
    if (!known || known.status !== record.status) {
      if (entry.onState) {
        try {
          entry.onState(record);
        } catch (err) {
          console.error("seano-client: an onState callback threw", err);
        }
      }
    }
    if (FINAL_STATES.has(entry.record.status)) {
      forget(entry);
      entry.resolve(entry.record);
    } else if (entry.fallbackTimer == null) {
      armFallback(entry);
    }
  }

  function forget(entry) {
    clearTimeout(entry.acceptTimer);
    clearTimeout(entry.fallbackTimer);
    commands.delete(entry.requestId);
  }

  function refuse(entry, message, frame) {
    forget(entry);
    const error = new Error(message);
    error.requestId = entry.requestId;
    if (frame) error.frame = frame;
    entry.reject(error);
  }

  /**
   * The socket is gone: a command whose command_accepted has not come may or may not have
   * reached the gateway. Accepted ones are still followed (after a reconnect, or over REST).
   */
  function refuseUnaccepted(why) {
    for (const entry of [...commands.values()]) {
      if (!entry.accepted) {
        refuse(entry, `${why} before command ${entry.command} was accepted; sending it again with the same requestId is safe`);
      }
    }
  }

  async function fetchCommand(requestId) {
    const token = typeof opts.token === "function" ? opts.token() : opts.token;
    return fetchJson(`/api/commands/${encodeURIComponent(requestId)}`, {
      baseUrl: httpBase(),
      token,
      fetch: opts.fetch,
    });
  }

  /**
   * After expires_at the gateway has settled the command (timed out or expired at the latest):
   * if no final command_status frame came by then (the filter does not cover the vehicle, or
   * the socket was away), ask over REST; again with a growing delay while it is not final.
   */
  function armFallback(entry, attempt = 0) {
    clearTimeout(entry.fallbackTimer);
    let delayMs;
    if (attempt === 0) {
      const record = entry.record || {};
      const timeoutMs = record.timeout_ms ?? entry.timeoutMs ?? 8000;
      const left = Date.parse(record.expires_at) - Date.now();
      // Our clock may differ from the gateway's: never wait longer than the timeout itself.
      delayMs = (Number.isFinite(left) ? Math.min(Math.max(left, 0), timeoutMs) : timeoutMs) + opts.commandFallbackDelayMs;
    } else {
      delayMs = Math.min(30000, 1000 * 2 ** attempt);
    }
    entry.fallbackTimer = setTimeout(async () => {
      if (!commands.has(entry.requestId)) return;
      try {
        const record = await fetchCommand(entry.requestId);
        if (record && record.request_id === entry.requestId) commandUpdate(record);
      } catch (err) {
        if (attempt >= 8) {
          refuse(entry, `no final state for command ${entry.command} (${entry.requestId}): ${err.message}`);
          return;
        }
      }
      if (commands.has(entry.requestId)) {
        if (attempt >= 8) refuse(entry, `no final state for command ${entry.command} (${entry.requestId})`);
        else armFallback(entry, attempt + 1);
      }
    }, delayMs);
  }

  /**
   * No command_accepted and no error within acceptTimeoutMs (a frame lost, a server that
   * answered without the request_id): the command exists if the gateway has a record of it.
   */
  function armAcceptTimeout(entry) {
    entry.acceptTimer = setTimeout(async () => {
      if (!commands.has(entry.requestId) || entry.accepted) return;
      try {
        const record = await fetchCommand(entry.requestId);
        if (!commands.has(entry.requestId) || entry.accepted) return;
        commandUpdate(record);
      } catch (err) {
        if (!commands.has(entry.requestId) || entry.accepted) return;
        refuse(entry, err.status === 404
          ? `command ${entry.command} was not accepted (no answer from the gateway)`
          : `command ${entry.command}: no answer from the gateway (${err.message})`);
      }
    }, opts.acceptTimeoutMs);
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
      refuseUnaccepted("the client was closed");
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
    /**
     * Sends a command to a vehicle on the open socket. Resolves with the final CommandRecord
     * (check `.status`); rejects with an Error with `.requestId` if the gateway refuses it or
     * the socket closes before it is accepted. See the top of this file.
     * @param {number} vehicleId
     * @param {string} command  one of the gateway's command names (GET /api/me lists them)
     * @param {object} [params] passed to the boat as sent
     * @param {{ requestId?: string, timeoutMs?: number, onState?: (record: object) => void }} [options]
     */
    sendCommand(vehicleId, command, params, options = {}) {
      const requestId = options.requestId || newRequestId();
      return new Promise((resolve, reject) => {
        if (commands.has(requestId)) {
          const error = new Error(`command ${requestId} is already being tracked`);
          error.requestId = requestId;
          reject(error);
          return;
        }
        const frame = { type: "command", vehicle_id: vehicleId, command, request_id: requestId };
        if (params != null) frame.params = params;
        if (options.timeoutMs != null) frame.timeout_ms = options.timeoutMs;
        if (!send(frame)) {
          const error = new Error(`command ${command} not sent: the stream is ${status}`);
          error.requestId = requestId;
          reject(error);
          return;
        }
        const entry = {
          requestId,
          vehicleId,
          command,
          timeoutMs: options.timeoutMs,
          onState: options.onState,
          accepted: false,
          record: null,
          resolve,
          reject,
          acceptTimer: null,
          fallbackTimer: null,
        };
        commands.set(requestId, entry);
        armAcceptTimeout(entry);
      });
    },
    /**
     * Whether command_status frames of `vehicleId` reach this socket: its filter covers the
     * vehicle and has the type. False before the connection frame.
     */
    coversCommands(vehicleId) {
      if (!filter) return false;
      const types = filter.types || [];
      return types.includes("command_status") && (filter.all || (filter.vehicles || []).includes(vehicleId));
    },
    /** The filter in force (from the connection / subscription_ack frames), or null. */
    get filter() {
      return filter;
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
 * @param {{ baseUrl?: string, token?: string, method?: string, body?: unknown, fetch?: typeof fetch }} [options]
 */
export async function fetchJson(path, options = {}) {
  const headers = options.token ? { Authorization: `Bearer ${options.token}` } : {};
  const init = { headers };
  if (options.method) init.method = options.method;
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  const doFetch = options.fetch || globalThis.fetch;
  const response = await doFetch(`${options.baseUrl || ""}${path}`, init);
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error((body && body.message) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    error.body = body;
    throw error;
  }
  return body;
}
