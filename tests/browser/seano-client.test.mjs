// static/seano-client.js without a browser or a server: a scripted WebSocket and mocked timers
// check the URL it opens, resume with since=, dropping duplicates, backoff, final closes, and
// commands (sendCommand: its frame, states, refusals, the REST fallback).

import { test, mock, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { createSeanoClient } from "../../static/seano-client.js";

/** A WebSocket the test drives by hand; every instance is kept in `FakeSocket.all`. */
class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = new URL(url);
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code = 1000, reason = "") {
    this.serverClose(code, reason);
  }
  // What the server side does:
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  frame(value) {
    this.onmessage?.({ data: JSON.stringify(value) });
  }
  serverClose(code, reason = "") {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

const last = () => FakeSocket.all[FakeSocket.all.length - 1];
const data = (seq, extra = {}) => ({ type: "raw_log", vehicle_id: 1, data: `line ${seq}`, seq, ...extra });

function client(options = {}) {
  return createSeanoClient({
    baseUrl: "ws://gateway.test",
    WebSocket: FakeSocket,
    pingIntervalMs: 0,
    ...options,
  });
}

beforeEach(() => {
  FakeSocket.all = [];
  mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
});

afterEach(() => {
  mock.timers.reset();
});

test("the first connection asks for the latest snapshot and the requested types", () => {
  const c = client({ vehicleId: 7, types: ["vehicle_log", "sensor_log"] });
  c.connect();
  assert.equal(last().url.pathname, "/api/ws/vehicle/7");
  assert.equal(last().url.searchParams.get("types"), "vehicle_log,sensor_log");
  assert.equal(last().url.searchParams.get("snapshot"), "latest");
  assert.equal(last().url.searchParams.has("since"), false);
  c.close();
});

test("a dropped connection is resumed with since the last seq and nothing is delivered twice", () => {
  const c = client();
  const seqs = [];
  c.on("data", (f) => seqs.push(f.seq));
  c.connect();
  last().open();
  // A snapshot frame is delivered but does not move the cursor.
  last().frame(data(3, { type: "vehicle_log", snapshot: true }));
  last().frame(data(5));
  last().frame(data(6));
  last().serverClose(1006);
  assert.equal(c.status, "reconnecting");
  assert.equal(FakeSocket.all.length, 1, "waits before reconnecting");

  mock.timers.tick(15_000);
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(last().url.searchParams.get("since"), "6");
  assert.equal(last().url.searchParams.has("snapshot"), false);
  last().open();
  last().frame(data(6)); // at the seam
  last().frame(data(9));
  assert.deepEqual(seqs, [3, 5, 6, 9]);
  assert.equal(c.lastSeq, 9);
  c.close();
});

test("reconnect delays grow and reset after a successful connection", () => {
  const c = client({ initialDelayMs: 1000, maxDelayMs: 8000 });
  const delays = [];
  c.on("status", (s) => s.status === "reconnecting" && s.delayMs != null && delays.push(s.delayMs));
  c.connect();
  for (let i = 0; i < 5; i++) {
    last().serverClose(1006);
    mock.timers.tick(20_000);
  }
  // 1 s, 2 s, 4 s, 8 s, 8 s, each with +/-30 % jitter.
  const bases = [1000, 2000, 4000, 8000, 8000];
  delays.forEach((d, i) => assert.ok(d >= bases[i] * 0.7 && d <= bases[i] * 1.3, `delay ${i}: ${d}`));
  last().open();
  last().serverClose(1001);
  assert.ok(delays[delays.length - 1] <= 1300, "back to the first delay after a success");
  c.close();
});

test("a do-not-reconnect close code and close() end the client for good", () => {
  const c = client();
  const errors = [];
  c.on("error", (e) => errors.push(e.message));
  c.connect();
  last().open();
  last().serverClose(3503, "forbidden");
  mock.timers.tick(60_000);
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(c.status, "closed");
  assert.match(errors[0], /3503/);

  const d = client();
  d.connect();
  last().open();
  d.close();
  mock.timers.tick(60_000);
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(d.status, "closed");
});

test("subscriptions are sent again after a reconnect", () => {
  const c = client();
  c.connect();
  last().open();
  c.subscribe(7);
  c.unsubscribe();
  c.subscribe(7); // the same request twice is sent once after a reconnect
  assert.deepEqual(last().sent, [
    { type: "subscribe", vehicle_id: 7 },
    { type: "unsubscribe" },
    { type: "subscribe", vehicle_id: 7 },
  ]);
  last().serverClose(1006);
  mock.timers.tick(15_000);
  last().open();
  assert.deepEqual(last().sent, [{ type: "unsubscribe" }, { type: "subscribe", vehicle_id: 7 }]);
  c.close();
});

test("a resync is reported and moves the cursor to the server's last seq", () => {
  const c = client({ since: 12 });
  const resyncs = [];
  c.on("resync", (f) => resyncs.push(f));
  c.connect();
  assert.equal(last().url.searchParams.get("since"), "12");
  last().open();
  last().frame({ type: "resync", message: "too old", since: 12, last_seq: 500000, replay_window: 100000 });
  assert.equal(resyncs.length, 1);
  assert.equal(c.lastSeq, 500000);
  c.close();
});

test("a silent socket is closed and reconnected after an unanswered ping", () => {
  const c = client({ pingIntervalMs: 1000, pongTimeoutMs: 500 });
  c.connect();
  last().open();
  mock.timers.tick(1000);
  assert.deepEqual(last().sent.map((f) => f.type), ["ping"]);
  mock.timers.tick(500);
  assert.equal(c.status, "reconnecting");
  mock.timers.tick(15_000);
  assert.equal(FakeSocket.all.length, 2);
  c.close();
});

// ---------------------------------------------------------------- commands

/** A command's record as the gateway keeps it, `status` and extra fields aside. */
function record(requestId, status, extra = {}) {
  const now = Date.now();
  return {
    request_id: requestId,
    vehicle_id: 1,
    command: "RTL",
    status,
    sent_by: "token 1",
    timeout_ms: 8000,
    accepted_at: new Date(now).toISOString(),
    expires_at: new Date(now + 8000).toISOString(),
    ...extra,
  };
}

const statusFrame = (seq, rec) => ({
  type: "command_status",
  vehicle_id: rec.vehicle_id,
  data: rec,
  timestamp: new Date().toISOString(),
  broadcast_time: new Date().toISOString(),
  connection_count: 1,
  id: seq,
  seq,
});

/** Lets pending promise callbacks (a mocked fetch, a resolved command) run. */
const settle = () => new Promise((r) => setImmediate(r));

/** A connected client whose filter covers vehicle 1 with every type. */
function connected(options = {}) {
  const c = client({ vehicleId: 1, ...options });
  c.connect();
  last().open();
  last().frame({
    type: "connection",
    message: "Connected to SEANO real-time data stream",
    timestamp: new Date().toISOString(),
    connection_count: 1,
    vehicle_id: 1,
    filter: { all: false, vehicles: [1], types: ["command_status", "raw_log", "sensor_log", "vehicle_log"] },
  });
  return c;
}

test("sendCommand sends a command frame and resolves with the final record after each state", async () => {
  const c = connected();
  assert.equal(c.coversCommands(1), true);
  const states = [];
  const frames = [];
  c.on("command_status", (f) => frames.push(f.data.status));
  const data = [];
  c.on("data", (f) => data.push(f.type));
  const done = c.sendCommand(1, "RTL", { speed: 2 }, { requestId: "dash-1", timeoutMs: 5000, onState: (r) => states.push(r.status) });
  assert.deepEqual(last().sent, [
    { type: "command", vehicle_id: 1, command: "RTL", request_id: "dash-1", params: { speed: 2 }, timeout_ms: 5000 },
  ]);
  last().frame({ type: "command_accepted", repeat: false, command: record("dash-1", "accepted") });
  last().frame(statusFrame(10, record("dash-1", "accepted")));
  last().frame(statusFrame(11, record("dash-1", "sent")));
  last().frame(statusFrame(12, record("dash-1", "succeeded", { ack_status: "ok", message: "Returning to launch" })));
  const final = await done;
  assert.equal(final.status, "succeeded");
  assert.equal(final.message, "Returning to launch");
  assert.deepEqual(states, ["accepted", "sent", "succeeded"], "each state once, in order");
  assert.deepEqual(frames, ["accepted", "sent", "succeeded"]);
  assert.deepEqual(data, [], "command_status frames are not telemetry");
  assert.equal(c.lastSeq, 12, "command_status frames move the resume cursor");
  c.close();
});

test("a refused command rejects with its request id and leaves other commands alone", async () => {
  const c = connected();
  const errors = [];
  c.on("error", (e) => errors.push(e.message));
  const refused = c.sendCommand(1, "SELF_DESTRUCT", undefined, { requestId: "r-1" });
  const other = c.sendCommand(1, "HOLD", undefined, { requestId: "r-2" });
  last().frame({ type: "error", message: "unknown command SELF_DESTRUCT", request_id: "r-1" });
  await assert.rejects(refused, (err) => err.requestId === "r-1" && /unknown command/.test(err.message));
  assert.deepEqual(errors, ["unknown command SELF_DESTRUCT"]);
  last().frame({ type: "command_accepted", repeat: false, command: record("r-2", "accepted", { command: "HOLD" }) });
  last().frame(statusFrame(20, record("r-2", "failed", { command: "HOLD", ack_status: "error", message: "not armed" })));
  assert.equal((await other).status, "failed", "a failed command resolves: the caller reads .status");
  c.close();
});

test("a command is refused when the stream is not open, and when it closes before acceptance", async () => {
  const c = client({ vehicleId: 1 });
  await assert.rejects(c.sendCommand(1, "RTL"), (err) => typeof err.requestId === "string" && /not sent/.test(err.message));
  c.connect();
  last().open();
  const lost = c.sendCommand(1, "RTL", undefined, { requestId: "lost-1" });
  const kept = c.sendCommand(1, "HOLD", undefined, { requestId: "kept-1" });
  last().frame({ type: "command_accepted", repeat: false, command: record("kept-1", "accepted", { command: "HOLD" }) });
  last().frame(statusFrame(30, record("kept-1", "sent", { command: "HOLD" })));
  last().serverClose(1006);
  await assert.rejects(lost, (err) => err.requestId === "lost-1" && /closed \(1006\) before/.test(err.message));

  // The accepted command is still followed: its final state is replayed after the reconnect.
  mock.timers.tick(15_000);
  assert.equal(last().url.searchParams.get("since"), "30");
  last().open();
  last().frame(statusFrame(31, record("kept-1", "succeeded", { command: "HOLD" })));
  assert.equal((await kept).status, "succeeded");
  c.close();
});

test("without command_status frames for the vehicle the final state is read over REST after expires_at", async () => {
  const asked = [];
  const final = record("poll-1", "timed_out", { message: "no answer from the vehicle within 8000 ms" });
  const fetch = async (url, init) => {
    asked.push({ url, auth: init.headers.Authorization });
    return { ok: true, status: 200, json: async () => final };
  };
  const c = client({ token: "op-token", fetch });
  c.connect();
  last().open();
  // An all-vehicles stream of vehicle_log only: no command_status frames will come.
  last().frame({ type: "connection", message: "", timestamp: "", connection_count: 1, filter: { all: true, vehicles: [], types: ["vehicle_log"] } });
  assert.equal(c.coversCommands(1), false);
  const states = [];
  const done = c.sendCommand(1, "RTL", undefined, { requestId: "poll-1", onState: (r) => states.push(r.status) });
  last().frame({ type: "command_accepted", repeat: false, command: record("poll-1", "accepted") });
  mock.timers.tick(8000);
  await settle();
  assert.deepEqual(asked, [], "not before expires_at + the fallback delay");
  mock.timers.tick(1600);
  await settle();
  assert.deepEqual(asked, [{ url: "http://gateway.test/api/commands/poll-1", auth: "Bearer op-token" }]);
  assert.equal((await done).status, "timed_out");
  assert.deepEqual(states, ["accepted", "timed_out"]);
  c.close();
});

test("a repeated request id that is already final resolves at once", async () => {
  const c = connected();
  const done = c.sendCommand(1, "RTL", undefined, { requestId: "again-1" });
  last().frame({ type: "command_accepted", repeat: true, command: record("again-1", "succeeded") });
  assert.equal((await done).status, "succeeded");
  c.close();
});

test("request ids are UUIDs the gateway accepts", async () => {
  const { newRequestId } = await import("../../static/seano-client.js");
  const ids = new Set(Array.from({ length: 100 }, newRequestId));
  assert.equal(ids.size, 100);
  for (const id of ids) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});
