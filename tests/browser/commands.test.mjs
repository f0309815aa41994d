// Commands to a vehicle, from the browser, end to end: the real gateway (embedded broker,
// access control on) and the simulator, which obeys commands (it answers on
// {prefix}/{vehicle}/ack and carries out mode commands as vehicle_log `mode` changes).
// - On the dashboard, an operator presses RTL: the press's item in the command log reaches
//   "succeeded" and the vehicle's mode shown becomes RTL.
// - static/seano-client.js in the page: sendCommand resolves with the final record after each
//   state, a refused command rejects with its request id, a repeated request id sends nothing
//   again, and a socket whose filter does not cover the vehicle still learns the final state
//   (over REST, after expires_at); a boat that never answers times out.
// - A command the boat refuses shows "failed" with the boat's message.
// - With a read-only credential the buttons are disabled and the gateway's reason is shown.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { ROOT, SIM, DEADLINE_MS, launchChromium, start, startGateway, stopAll } from "./gateway.mjs";

const ARTIFACTS = resolve(ROOT, process.env.ARTIFACTS || "test-artifacts");
const OPERATOR = "operator-token-for-browser-tests";
const VIEWER = "viewer-token-for-browser-tests";

/** The simulators' command lines: boats 1 and 2 obey commands; boat 3 ignores them and boat 4
 * refuses them ("simulated failure"). */
const simulators = (broker) => [
  ["--broker", broker, "--vehicles", "2", "--rate", "5", "--raw-rate", "1", "--duration", "180"],
  [
    "--broker", broker, "--client-id", "jetson-sim-unruly", "--start-id", "3", "--vehicles", "2",
    "--silent-boats", "1", "--fail-ratio", "1", "--rate", "2", "--duration", "180",
  ],
];

let browser;
let http;
let sim;

before(async () => {
  // The operator may command every vehicle; the viewer reads every vehicle and commands none.
  const gateway = await startGateway({ env: { AUTH_TOKENS: `${OPERATOR}:*:commands,${VIEWER}` } });
  http = gateway.http;
  assert.ok(existsSync(SIM), `${SIM} exists (cargo build -p jetson-sim)`);
  [sim] = simulators(gateway.broker).map((args) => start(SIM, args));
  browser = await launchChromium();
  mkdirSync(ARTIFACTS, { recursive: true });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  stopAll();
});

/** GET with a bearer token; the parsed body. */
async function getJson(path, token) {
  const response = await fetch(`${http}${path}`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(response.status, 200, `GET ${path}`);
  return response.json();
}

/** A page of its own (own localStorage, so its own token) that records its problems. */
async function openDashboard(token, vehicle = 1) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.problems = [];
  page.on("pageerror", (err) => page.problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => msg.type() === "error" && page.problems.push(`console error: ${msg.text()}`));
  // Every command_status frame the page receives, by request_id, in order.
  page.statuses = new Map();
  page.on("websocket", (ws) =>
    ws.on("framereceived", ({ payload }) => {
      try {
        const frame = JSON.parse(payload);
        if (frame.type !== "command_status") return;
        const seen = page.statuses.get(frame.data.request_id) || [];
        page.statuses.set(frame.data.request_id, [...seen, frame.data.status]);
      } catch {
        // Not JSON: not a frame of ours.
      }
    }),
  );
  await page.goto(`${http}/?token=${token}#vehicle=${vehicle}`);
  return page;
}

/** 1 accepted, 2 sent, 3 a final state. */
const rank = (status) => ["accepted", "sent"].indexOf(status) + 1 || 3;

/** Presses a command button on `page` and returns the request id of the press's log item. */
async function press(page, command) {
  const before = await page.$$eval("#command-log li", (items) => items.map((li) => li.dataset.requestId));
  await page.waitForSelector(`#command-buttons [data-command="${command}"]:enabled`, { timeout: DEADLINE_MS });
  await page.click(`#command-buttons [data-command="${command}"]`);
  const handle = await page.waitForFunction(
    ({ command, before }) =>
      [...document.querySelectorAll(`#command-log li[data-command="${command}"]`)]
        .map((li) => li.dataset.requestId)
        .find((id) => !before.includes(id)),
    { command, before },
    { timeout: DEADLINE_MS },
  );
  return handle.jsonValue();
}

const wait = (page, fn, arg) => page.waitForFunction(fn, arg, { timeout: DEADLINE_MS });

test("an operator presses RTL on the dashboard: the command succeeds and the boat's mode becomes RTL", async () => {
  const me = await getJson("/api/me", OPERATOR);
  assert.equal(me.commands.allowed, true, JSON.stringify(me));
  assert.ok(me.commands.names.includes("RTL"), JSON.stringify(me));

  const page = await openDashboard(OPERATOR);
  // One button per command the gateway has; they work once vehicle 1's stream is open.
  await wait(page, (n) => document.querySelectorAll("#command-buttons [data-command]").length === n, me.commands.names.length);
  await page.waitForSelector('#command-buttons [data-command="RTL"]:enabled', { timeout: DEADLINE_MS });
  await wait(page, () => document.querySelector('#vehicle-values dd[data-field="mode"]'));
  assert.equal(await page.isHidden("#command-reason"), true, "no reason shown to an operator");

  const requestId = await press(page, "RTL");
  assert.match(requestId, /^[0-9a-f-]{36}$/);
  await wait(
    page,
    (id) => document.querySelector(`#command-log li[data-request-id="${id}"]`)?.dataset.status === "succeeded",
    requestId,
  ).catch(async (err) => {
    const status = await page.$eval(`#command-log li[data-request-id="${requestId}"]`, (li) => li.textContent);
    throw new Error(`${err.message}\nthe command's item: ${status}\nsimulator output:\n${sim.output}`);
  });
  await wait(page, () => document.querySelector('#vehicle-values dd[data-field="mode"]')?.textContent === "RTL");
  await wait(page, () => document.querySelector('#fleet [data-vehicle-id="1"] [data-field="mode"]')?.textContent === "RTL");

  // The page saw the states in order over its vehicle stream, and REST agrees.
  const seen = page.statuses.get(requestId) || [];
  assert.equal(seen[seen.length - 1], "succeeded", `states seen: ${seen}`);
  assert.deepEqual(seen, [...seen].sort((a, b) => rank(a) - rank(b)), `states only move forward: ${seen}`);
  const record = await getJson(`/api/commands/${requestId}`, OPERATOR);
  assert.equal(record.status, "succeeded");
  assert.equal(record.command, "RTL");
  assert.equal(record.vehicle_id, 1);
  const list = await getJson("/api/vehicles/1/commands?limit=5", OPERATOR);
  assert.equal(list.items[0].request_id, requestId, "newest first");

  await page.screenshot({ path: join(ARTIFACTS, "commands.png") });
  assert.deepEqual(page.problems, [], "no error in the page");
});

test("a command the boat refuses shows failed with the boat's message", async () => {
  const page = await openDashboard(OPERATOR, 4);
  const requestId = await press(page, "HOLD");
  const item = `#command-log li[data-request-id="${requestId}"]`;
  await wait(page, (sel) => document.querySelector(sel)?.dataset.status === "failed", item);
  const record = await getJson(`/api/commands/${requestId}`, OPERATOR);
  assert.equal(record.status, "failed");
  assert.ok(record.message, "the boat said why");
  const shown = await page.textContent(item);
  assert.ok(shown.includes(record.message), `the item shows the boat's message: ${shown}`);
  assert.deepEqual(page.problems, [], "no error in the page");
});

test("the JS client's sendCommand follows a command to its end, and reports refusals", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${http}/health`);
  const result = await page.evaluate(
    async ({ token, vehicle }) => {
      const { createSeanoClient } = await import("/seano-client.js");
      const opened = (client) =>
        new Promise((ok) => {
          const off = client.on("status", (s) => s.status === "open" && (off(), ok()));
          client.connect();
        });
      // A vehicle stream of command_status frames only.
      const client = createSeanoClient({ vehicleId: vehicle, types: ["command_status"], token });
      const frames = [];
      client.on("command_status", (f) => frames.push(f.data.status));
      await opened(client);
      await new Promise((r) => setTimeout(r, 200)); // the connection frame's filter
      const covered = client.coversCommands(vehicle);

      const states = [];
      const record = await client.sendCommand(vehicle, "HOLD", undefined, { onState: (r) => states.push(r.status) });
      const again = await client.sendCommand(vehicle, "HOLD", undefined, { requestId: record.request_id });
      let refused = null;
      try {
        await client.sendCommand(vehicle, "SELF_DESTRUCT");
      } catch (err) {
        refused = { message: err.message, requestId: err.requestId };
      }

      // An all-vehicles stream without command_status: the final state comes over REST.
      const blind = createSeanoClient({ types: ["vehicle_log"], token });
      await opened(blind);
      await new Promise((r) => setTimeout(r, 200));
      const blindCovered = blind.coversCommands(vehicle);
      const t0 = Date.now();
      const viaRest = await blind.sendCommand(vehicle, "RTL", undefined, { timeoutMs: 1000 });
      const restMs = Date.now() - t0;
      // Boat 3 never answers: the command times out.
      const silent = await blind.sendCommand(3, "HOLD", undefined, { timeoutMs: 500 });
      client.close();
      blind.close();
      return { covered, states, frames, record, again, refused, blindCovered, viaRest, restMs, silent };
    },
    { token: OPERATOR, vehicle: 2 },
  );
  assert.equal(result.silent.status, "timed_out", JSON.stringify(result.silent));
  assert.equal(result.covered, true);
  assert.equal(result.record.status, "succeeded", JSON.stringify(result.record));
  assert.equal(result.record.command, "HOLD");
  assert.equal(result.states[0], "accepted", `states: ${result.states}`);
  assert.equal(result.states[result.states.length - 1], "succeeded", `states: ${result.states}`);
  assert.ok(result.frames.includes("succeeded"), `command_status events: ${result.frames}`);
  assert.equal(result.again.request_id, result.record.request_id, "the same request id is the same command");
  assert.equal(result.again.accepted_at, result.record.accepted_at, "nothing was sent again");
  assert.ok(result.refused, "an unknown command is refused");
  assert.match(result.refused.requestId, /^[0-9a-f-]{36}$/);
  assert.equal(result.blindCovered, false);
  assert.equal(result.viaRest.status, "succeeded", JSON.stringify(result.viaRest));
  assert.ok(result.restMs >= 1000, `resolved over REST after expires_at (${result.restMs} ms)`);
  await context.close();
});

test("with a read-only credential the command buttons are disabled and the reason is shown", async () => {
  const me = await getJson("/api/me", VIEWER);
  assert.equal(me.commands.allowed, false, JSON.stringify(me));
  assert.ok(me.commands.reason, "the gateway says why");

  const page = await openDashboard(VIEWER);
  await wait(page, (n) => document.querySelectorAll("#command-buttons [data-command]").length === n, me.commands.names.length);
  await wait(page, () => document.querySelector('#vehicle-values dd[data-field="mode"]'));
  const disabled = await page.$$eval("#command-buttons [data-command]", (bs) => bs.map((b) => b.disabled));
  assert.ok(disabled.every(Boolean), `every button disabled: ${disabled}`);
  assert.equal(await page.isVisible("#command-reason"), true);
  assert.equal((await page.textContent("#command-reason")).trim(), me.commands.reason);
  await page.screenshot({ path: join(ARTIFACTS, "commands-read-only.png") });

  // The gateway refuses the viewer's command frame too (the buttons are not the only guard).
  const refused = await page.evaluate(async (token) => {
    const { createSeanoClient } = await import("/seano-client.js");
    const client = createSeanoClient({ vehicleId: 1, types: ["command_status"], token });
    await new Promise((ok) => {
      client.on("status", (s) => s.status === "open" && ok());
      client.connect();
    });
    try {
      await client.sendCommand(1, "RTL");
      return null;
    } catch (err) {
      return { message: err.message, requestId: err.requestId };
    } finally {
      client.close();
    }
  }, VIEWER);
  assert.ok(refused && refused.requestId, `refused: ${JSON.stringify(refused)}`);
  assert.deepEqual(page.problems, [], "no error in the page");
});
