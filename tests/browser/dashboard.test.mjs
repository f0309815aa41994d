// The dashboard in a real browser: start the gateway (embedded broker, temporary SQLite file,
// ports picked by the OS), start the simulator, open the dashboard in headless Chromium, and
// check that the fleet shows the simulated vehicles and that live values change. Also opens
// the API docs page and checks that no page loads anything from another host.
//
// Run with tests/browser/run.sh (builds the binaries, installs what is missing). Environment:
//   SEANO_GATEWAY_BIN   the gateway binary (default target/debug/seano-gateway)
//   SEANO_SIM_BIN       the simulator binary (default target/debug/jetson-sim)
//   CHROMIUM            the browser (default /usr/bin/chromium)
//   ARTIFACTS           where screenshots go (default test-artifacts/)

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { ROOT, SIM, DEADLINE_MS, launchChromium, start, startGateway, stopAll, waitUntil } from "./gateway.mjs";

const ARTIFACTS = resolve(ROOT, process.env.ARTIFACTS || "test-artifacts");
const VEHICLES = 3;

/** The simulator's command line: the one place to change what publishes the telemetry. */
const simulator = (broker) => [
  SIM,
  ["--broker", broker, "--vehicles", String(VEHICLES), "--rate", "5", "--raw-rate", "1", "--duration", "60"],
];

let browser;

after(async () => {
  if (browser) await browser.close().catch(() => {});
  stopAll();
});

/** Checks that every request a page made went to the gateway. */
function recordRequests(page, origin) {
  const foreign = [];
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (["data:", "blob:", "about:"].includes(url.protocol)) return;
    if (url.origin !== origin && !(url.host === new URL(origin).host && url.protocol === "ws:")) {
      foreign.push(request.url());
    }
  });
  return foreign;
}

/** Records the seqs of the data frames each WebSocket of `page` receives (snapshots aside). */
function recordSockets(page) {
  const sockets = [];
  page.on("websocket", (ws) => {
    const socket = { url: new URL(ws.url()), seqs: [] };
    sockets.push(socket);
    ws.on("framereceived", ({ payload }) => {
      try {
        const frame = JSON.parse(payload);
        if (Number.isInteger(frame.seq) && !frame.snapshot) socket.seqs.push(frame.seq);
      } catch {
        // Not JSON: not a frame of ours.
      }
    });
  });
  return sockets;
}

test("the dashboard shows the simulated fleet, its live values change, and it resumes after a restart", async () => {
  let { gateway, http, broker } = await startGateway();
  const [simCmd, simArgs] = simulator(broker);
  assert.ok(existsSync(simCmd), `${simCmd} exists (cargo build -p jetson-sim)`);
  const sim = start(simCmd, simArgs);

  browser = await launchChromium();
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const problems = [];
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => msg.type() === "error" && problems.push(`console error: ${msg.text()}`));
  const foreign = recordRequests(page, http);
  const sockets = recordSockets(page);

  await page.goto(`${http}/`);

  // The fleet list shows every simulated vehicle.
  await page.waitForFunction(
    (n) => document.querySelectorAll("#fleet [data-vehicle-id]").length >= n,
    VEHICLES,
    { timeout: DEADLINE_MS },
  );
  const ids = await page.$$eval("#fleet [data-vehicle-id]", (items) => items.map((i) => Number(i.dataset.vehicleId)));
  assert.deepEqual(ids.sort(), [1, 2, 3], `the fleet list shows vehicles 1-3 (sim output:\n${sim.output})`);
  await page.waitForFunction(() => document.querySelector("#status")?.dataset.status === "open", null, {
    timeout: DEADLINE_MS,
  });

  // Every vehicle reports a mode and a battery voltage, and is online.
  await page.waitForFunction(
    () =>
      [...document.querySelectorAll("#fleet [data-vehicle-id]")].every(
        (item) =>
          item.dataset.connection === "online" &&
          item.querySelector('[data-field="mode"]').textContent !== "–" &&
          /\d+\.\d+ V/.test(item.querySelector('[data-field="battery"]').textContent),
      ),
    null,
    { timeout: DEADLINE_MS },
  );

  // The selected vehicle's live values change.
  const values = () =>
    page.$$eval("#vehicle-values dd", (dds) => Object.fromEntries(dds.map((d) => [d.dataset.field, d.textContent])));
  await page.waitForFunction(() => document.querySelector('#vehicle-values dd[data-field="latitude"]'), null, {
    timeout: DEADLINE_MS,
  });
  const before = await values();
  const changed = await waitUntil("the selected vehicle's values to change", async () => {
    const now = await values();
    return now.seq !== before.seq && now.latitude !== before.latitude ? now : null;
  });
  assert.notEqual(changed.seq, before.seq);

  // The stream's cursor moves, sensors are charted, and raw-log lines arrive.
  const seq1 = Number(await page.textContent("#last-seq"));
  await waitUntil("the last seq to move", async () => Number(await page.textContent("#last-seq")) > seq1);
  await page.waitForFunction(() => document.querySelectorAll("#console li").length > 0, null, { timeout: DEADLINE_MS });
  await page.waitForFunction(() => document.querySelector("#vehicle-stream")?.dataset.status === "open", null, {
    timeout: DEADLINE_MS,
  });

  // Another vehicle can be selected and shows its own values.
  await page.click('#fleet [data-vehicle-id="2"]');
  await page.waitForFunction(() => location.hash === "#vehicle=2", null, { timeout: DEADLINE_MS });
  await page.waitForFunction(() => document.querySelector('#vehicle-values dd[data-field="mode"]'), null, {
    timeout: DEADLINE_MS,
  });
  await page.click('#fleet [data-vehicle-id="1"]');
  // Let a few frames draw the track and the charts before the picture.
  await waitUntil("the track to have points", async () =>
    page.evaluate(() => document.querySelector('#vehicle-values dd[data-field="seq"]') !== null),
  );
  await new Promise((r) => setTimeout(r, 1500));

  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, "dashboard.png") });

  // The API docs page renders from the gateway alone.
  const docs = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const docsForeign = recordRequests(docs, http);
  await docs.goto(`${http}/api/docs`);
  await docs.waitForSelector(".opblock", { timeout: DEADLINE_MS });
  await docs.screenshot({ path: join(ARTIFACTS, "docs.png") });

  // The gateway restarts on the same ports: the dashboard reconnects with backoff and resumes
  // its all-vehicles stream with since=<the last seq it saw>, with no frame twice.
  const status = () => page.$eval("#status", (s) => s.dataset.status);
  gateway.kill("SIGTERM");
  await new Promise((r) => gateway.once("exit", r));
  await waitUntil("the dashboard to notice", async () => (await status()) !== "open");
  ({ gateway } = await startGateway({
    httpAddr: new URL(http).host,
    mqttAddr: new URL(broker).host,
  }));
  await waitUntil("the dashboard to reconnect", async () => (await status()) === "open");
  const allStreams = () => sockets.filter((s) => s.url.pathname === "/api/ws");
  const resumed = await waitUntil("a resumed all-vehicles stream with new frames", async () =>
    allStreams().find((s) => s.url.searchParams.has("since") && s.seqs.length > 0),
  );
  const streams = allStreams();
  const earlier = streams.slice(0, streams.indexOf(resumed)).flatMap((s) => s.seqs);
  assert.equal(Number(resumed.url.searchParams.get("since")), Math.max(...earlier), "since= is the last seq seen");
  const seen = streams.flatMap((s) => s.seqs);
  assert.ok(
    seen.every((seq, i) => i === 0 || seq > seen[i - 1]),
    "seqs only increase across the reconnect (no frame twice)",
  );

  assert.deepEqual(foreign, [], "the dashboard loads nothing from another host");
  assert.deepEqual(docsForeign, [], "the docs page loads nothing from another host");
  // The browser logs each refused attempt while the gateway restarts: expected. Refused either
  // by the closed port, or by the old gateway with HTTP 503 while it drains ("retry later").
  const refused = /WebSocket connection to .* failed: .*(ERR_CONNECTION_REFUSED|Unexpected response code: 503)/;
  assert.deepEqual(
    problems.filter((p) => !refused.test(p)),
    [],
    "no error in the page",
  );
});
