// static/seano-client.js without a browser or a server: a scripted WebSocket and mocked timers
// check the URL it opens, resume with since=, dropping duplicates, backoff, and final closes.

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
