// Shared by the browser tests: start the real gateway binary (and other processes) with
// ports picked by the OS and a temporary SQLite file, read where it listens from its log,
// launch headless Chromium, and stop everything at the end.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const GATEWAY = process.env.SEANO_GATEWAY_BIN || join(ROOT, "target/debug/seano-gateway");
export const SIM = process.env.SEANO_SIM_BIN || join(ROOT, "target/debug/jetson-sim");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const DEADLINE_MS = 30_000;

const children = [];
const tmp = mkdtempSync(join(tmpdir(), "seano-browser-"));

/** Stops every process started here and removes the temporary files. */
export function stopAll() {
  for (const child of children) {
    if (child.exitCode === null) child.kill("SIGTERM");
  }
  rmSync(tmp, { recursive: true, force: true });
}

/** Starts a process and keeps the tail of its output for failure messages. */
export function start(cmd, args, env = {}) {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  child.output = "";
  const keep = (chunk) => {
    child.output = (child.output + chunk).slice(-20_000);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  children.push(child);
  return child;
}

/** Resolves with the first match of `pattern` in the process's output; rejects at the deadline. */
export function waitForOutput(child, pattern, what) {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`timed out waiting for ${what}; output:\n${child.output}`));
    }, DEADLINE_MS);
    const onExit = (code) => {
      clearTimeout(timer);
      reject(new Error(`${what}: the process exited with ${code}; output:\n${child.output}`));
    };
    const check = () => {
      const m = child.output.match(pattern);
      if (m) {
        clearTimeout(timer);
        child.stdout.off("data", check);
        child.stderr.off("data", check);
        child.off("exit", onExit);
        resolvePromise(m);
      }
    };
    child.stdout.on("data", check);
    child.stderr.on("data", check);
    child.on("exit", onExit);
    check();
  });
}

/**
 * Starts the gateway with its embedded broker (on ports picked by the OS unless given) and a
 * SQLite file that survives restarts within this run; returns the process and its URLs.
 * `env` adds settings (e.g. `AUTH_TOKENS`).
 */
export async function startGateway({ httpAddr = "127.0.0.1:0", mqttAddr = "127.0.0.1:0", env = {} } = {}) {
  assert.ok(existsSync(GATEWAY), `${GATEWAY} exists (cargo build -p seano-gateway)`);
  const gateway = start(GATEWAY, [], {
    HTTP_ADDR: httpAddr,
    MQTT_EMBEDDED_ADDR: mqttAddr,
    DATABASE_URL: `sqlite://${join(tmp, "seano.db")}?mode=rwc`,
    RUST_LOG: "info,rumqttd=warn",
    ...env,
  });
  const m = await waitForOutput(
    gateway,
    /listening on (http:\/\/127\.0\.0\.1:\d+) .*?MQTT (mqtts?:\/\/[^\s,]+)/,
    "the gateway's listening line",
  );
  return { gateway, http: m[1], broker: m[2] };
}

/** Polls `check` every 200 ms until it returns something truthy; throws at the deadline. */
export async function waitUntil(what, check, timeoutMs = DEADLINE_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Launches Debian's headless Chromium through playwright-core (imported only by browser tests). */
export async function launchChromium() {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
    ],
  });
}
