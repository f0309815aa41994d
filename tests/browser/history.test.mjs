// The dashboard's time ranges in a real browser: start the gateway (embedded broker, temporary
// SQLite file, ports picked by the OS), publish over MQTT two hours of one vehicle's positions
// and sensor readings with their own (past) timestamps, open the dashboard in headless
// Chromium, and check that a long range reads bucketed history (track?bucket=,
// sensor_log?bucket=) and draws one point per bucket, and that "Live" reads the latest raw
// points again.
//
// Run with tests/browser/run.sh (builds the binaries, installs what is missing). Environment:
//   SEANO_GATEWAY_BIN   the gateway binary (default target/debug/seano-gateway)
//   CHROMIUM            the browser (default /usr/bin/chromium)
//   ARTIFACTS           where screenshots go (default test-artifacts/)

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { connect } from "node:net";
import { join, resolve } from "node:path";
import { ROOT, DEADLINE_MS, launchChromium, startGateway, stopAll, waitUntil } from "./gateway.mjs";

const ARTIFACTS = resolve(ROOT, process.env.ARTIFACTS || "test-artifacts");
const VEHICLE = 7;
/** One vehicle_log and one sensor_log every STEP_S over the last HOURS hours. */
const HOURS = 2;
const STEP_S = 30;
const MESSAGES = (HOURS * 3600) / STEP_S;

let browser;

after(async () => {
  if (browser) await browser.close().catch(() => {});
  stopAll();
});

// ---------------------------------------------------------------- a minimal MQTT 3.1.1 publisher

/** An MQTT "remaining length" (a variable-length integer). */
function varint(n) {
  const bytes = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    bytes.push(byte);
  } while (n > 0);
  return Buffer.from(bytes);
}

const mqttString = (s) => {
  const b = Buffer.from(s, "utf8");
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
};

const packet = (header, body) => Buffer.concat([Buffer.from([header]), varint(body.length), body]);

/**
 * Publishes `messages` ([topic, payload object]) at QoS 1 over one connection and resolves once
 * the broker has acknowledged every one (so the gateway has them too, or soon will).
 */
function publishAll(brokerUrl, messages) {
  const { hostname, port } = new URL(brokerUrl);
  return new Promise((resolvePromise, reject) => {
    const socket = connect(Number(port), hostname);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`MQTT: ${pending.size} of ${messages.length} publishes not acknowledged`));
    }, DEADLINE_MS);
    const pending = new Set();
    let buffer = Buffer.alloc(0);
    const fail = (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.on("error", fail);
    socket.on("connect", () => {
      // CONNECT: protocol "MQTT" level 4, clean session, keep-alive 60 s, a client id.
      const body = Buffer.concat([
        mqttString("MQTT"),
        Buffer.from([4, 0x02, 0, 60]),
        mqttString(`history-test-${process.pid}`),
      ]);
      socket.write(packet(0x10, body));
    });
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      while (buffer.length >= 2) {
        // Every packet the broker sends us here is short: a one-byte remaining length.
        const type = buffer[0] >> 4;
        const length = buffer[1];
        if (buffer.length < 2 + length) break;
        const body = buffer.subarray(2, 2 + length);
        buffer = buffer.subarray(2 + length);
        if (type === 2) {
          // CONNACK
          if (body[1] !== 0) return fail(new Error(`MQTT: connection refused (code ${body[1]})`));
          messages.forEach(([topic, payload], i) => {
            const id = i + 1;
            pending.add(id);
            const header = Buffer.concat([mqttString(topic), Buffer.from([id >> 8, id & 0xff])]);
            socket.write(packet(0x32, Buffer.concat([header, Buffer.from(JSON.stringify(payload))])));
          });
        } else if (type === 4) {
          // PUBACK
          pending.delete((body[0] << 8) | body[1]);
          if (pending.size === 0) {
            clearTimeout(timer);
            socket.end(Buffer.from([0xe0, 0])); // DISCONNECT
            resolvePromise();
          }
        }
      }
    });
  });
}

// ---------------------------------------------------------------- the test

/** Two hours of a boat going round a circle, and of one sensor's temperature. */
function publishedHistory(now) {
  const messages = [];
  for (let i = 0; i < MESSAGES; i++) {
    const at = new Date(now - (MESSAGES - i) * STEP_S * 1000).toISOString();
    const angle = (2 * Math.PI * i) / MESSAGES;
    messages.push([
      `seano/${VEHICLE}/vehicle_log`,
      {
        latitude: -6.2 + 0.01 * Math.sin(angle),
        longitude: 106.8 + 0.01 * Math.cos(angle),
        battery_voltage: 12.6,
        mode: "AUTO",
        timestamp: at,
      },
    ]);
    messages.push([
      `seano/${VEHICLE}/sensor_log`,
      { sensor_id: 1, data: { temperature: 25 + Math.sin(angle * 3) }, timestamp: at },
    ]);
  }
  return messages;
}

/** The dataset of the track and the sensor chart. */
const views = (page) =>
  page.evaluate(() => ({
    track: { ...document.querySelector("#track").dataset },
    sensors: { ...document.querySelector("#sensors").dataset },
  }));

/** Waits until both views have drawn `range`, loaded, with at least `min` points each. */
async function waitForViews(page, range, min) {
  await page.waitForFunction(
    ([r, n]) =>
      ["#track", "#sensors"].every((sel) => {
        const d = document.querySelector(sel)?.dataset;
        return d && d.range === r && d.state === "ready" && Number(d.points) >= n;
      }),
    [range, min],
    { timeout: DEADLINE_MS },
  );
  return views(page);
}

test("a long range charts bucketed history, and Live reads the latest raw points again", async () => {
  const { http, broker } = await startGateway();
  // Ready once subscribed: what is published before that would reach no one.
  await waitUntil("the gateway to be ready", async () => (await fetch(`${http}/ready`)).ok);
  const now = Date.now();
  await publishAll(broker, publishedHistory(now));

  // The gateway has stored them all: its raw history holds every reading.
  const api = async (path) => {
    const res = await fetch(`${http}${path}`);
    assert.equal(res.status, 200, `GET ${path}`);
    return res.json();
  };
  await waitUntil(`the gateway to store all ${MESSAGES} readings and positions`, async () => {
    const stored = await api(`/api/vehicles/${VEHICLE}/sensor_log?limit=1000`).catch(() => null);
    const track = await api(`/api/vehicles/${VEHICLE}/track?points=1`).catch(() => null);
    return stored?.items.length === MESSAGES && track?.total_points === MESSAGES;
  });

  browser = await launchChromium();
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const problems = [];
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => msg.type() === "error" && problems.push(`console error: ${msg.text()}`));
  const requests = [];
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.pathname.startsWith(`/api/vehicles/${VEHICLE}/`)) requests.push(url);
  });
  const requested = (kind, after = 0) =>
    requests.slice(after).filter((u) => u.pathname === `/api/vehicles/${VEHICLE}/${kind}`);

  await page.goto(`${http}/`);
  await page.waitForSelector(`#fleet [data-vehicle-id="${VEHICLE}"]`, { timeout: DEADLINE_MS });
  await page.click(`#fleet [data-vehicle-id="${VEHICLE}"]`);

  // Live (the default): the latest raw points, all of them here.
  const live = await waitForViews(page, "live", 1);
  assert.equal(live.track.bucket, "raw");
  assert.equal(Number(live.track.points), MESSAGES, "Live draws every raw position");
  assert.equal(Number(live.sensors.points), MESSAGES, "Live draws every raw reading");
  assert.ok(requested("sensor_log").some((u) => u.searchParams.get("order") === "desc" && !u.searchParams.has("bucket")));

  // 24 h: 5-minute buckets from now - 24 h; two hours of data fill at most 25 of them.
  const before24h = requests.length;
  const trackRequest = page.waitForRequest((r) => /\/track\?.*bucket=/.test(r.url()), { timeout: DEADLINE_MS });
  const sensorRequest = page.waitForRequest((r) => /\/sensor_log\?.*bucket=/.test(r.url()), { timeout: DEADLINE_MS });
  await page.click('#range [data-range="24h"]');
  const [trackUrl, sensorUrl] = (await Promise.all([trackRequest, sensorRequest])).map((r) => new URL(r.url()));
  for (const url of [trackUrl, sensorUrl]) {
    assert.equal(url.searchParams.get("bucket"), "5m", `${url.pathname} asks for 5m buckets`);
    const from = Date.parse(url.searchParams.get("from"));
    assert.ok(Math.abs(from - (Date.now() - 24 * 3600_000)) < 60_000, `${url.pathname} from= is now - 24 h`);
  }
  const maxBuckets = Math.ceil((HOURS * 3600) / 300) + 1;
  const day = await waitForViews(page, "24h", 2);
  assert.equal(await page.getAttribute('#range [data-range="24h"]', "aria-pressed"), "true");
  for (const [name, d] of Object.entries(day)) {
    assert.equal(d.bucket, "5m", `${name}: 5m buckets`);
    const n = Number(d.points);
    assert.ok(n > 1 && n <= maxBuckets, `${name}: ${n} points, one per bucket (at most ${maxBuckets})`);
  }
  assert.deepEqual(
    requested("sensor_log", before24h).filter((u) => !u.searchParams.has("bucket")).map(String),
    [],
    "no raw sensor history is read for 24 h",
  );

  // The track draws what the gateway answered: one position per bucket.
  const answer = await api(`/api/vehicles/${VEHICLE}/track${trackUrl.search}`);
  assert.equal(Number(day.track.points), answer.points.length);

  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, "history.png") });

  // Back to Live: raw history again (no bucket=), every raw point drawn.
  const beforeLive = requests.length;
  const rawSensors = page.waitForRequest(
    (r) => /\/sensor_log\?/.test(r.url()) && !new URL(r.url()).searchParams.has("bucket"),
    { timeout: DEADLINE_MS },
  );
  const rawTrack = page.waitForRequest(
    (r) => /\/track\?/.test(r.url()) && !new URL(r.url()).searchParams.has("bucket"),
    { timeout: DEADLINE_MS },
  );
  await page.click('#range [data-range="live"]');
  await Promise.all([rawSensors, rawTrack]);
  const again = await waitForViews(page, "live", 1);
  assert.equal(Number(again.track.points), MESSAGES);
  assert.equal(Number(again.sensors.points), MESSAGES);
  assert.ok(requested("track", beforeLive).every((u) => !u.searchParams.has("bucket")));

  assert.deepEqual(problems, [], "no error in the page");
});
