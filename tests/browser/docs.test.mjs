// The API's documents checked by the reference validators: /api/openapi.json against the
// OpenAPI 3.1 JSON schema (@seriousme/openapi-schema-validator), /api/asyncapi.json with the
// AsyncAPI initiative's own parser (@asyncapi/parser), on a real gateway.
// (tests/api/openapi.rs checks the same documents against the routes and real frames.)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Validator } from "@seriousme/openapi-schema-validator";
import { Parser } from "@asyncapi/parser";
import { startGateway, stopAll } from "./gateway.mjs";

let http;
before(async () => {
  ({ http } = await startGateway());
});
after(stopAll);

async function getJson(url) {
  const response = await fetch(url);
  assert.equal(response.status, 200, url);
  return response.json();
}

test("the OpenAPI document is valid against the OpenAPI 3.1 schema", async () => {
  const doc = await getJson(`${http}/api/openapi.json`);
  const validator = new Validator();
  const result = await validator.validate(doc);
  assert.equal(validator.version, "3.1");
  assert.ok(result.valid, JSON.stringify(result.errors, null, 2));
  // Every $ref resolves.
  assert.doesNotThrow(() => validator.resolveRefs());
});

test("the AsyncAPI document parses without errors or warnings", async () => {
  const text = JSON.stringify(await getJson(`${http}/api/asyncapi.json`));
  const { document, diagnostics } = await new Parser().parse(text);
  // Severity 0 is an error, 1 a warning; 2 and 3 are hints (e.g. "3.1.0 exists").
  const problems = diagnostics.filter((d) => d.severity <= 1).map((d) => `${d.code}: ${d.message} at ${d.path.join(".")}`);
  assert.deepEqual(problems, []);
  assert.ok(document, "a parsed document");
  assert.equal(document.version(), "3.0.0");
  const addresses = document.channels().all().map((c) => c.address()).sort();
  assert.deepEqual(addresses, ["/api/ws", "/api/ws/vehicle/{vehicle_id}"]);
  const messages = document.components().messages().all().map((m) => m.name()).sort();
  assert.deepEqual(messages, [
    "command", "command_accepted", "command_status", "conflated", "connection", "error", "ping",
    "pong", "raw_log", "resync", "sensor_log", "subscribe", "subscription_ack", "unsubscribe",
    "vehicle_log",
  ]);
});
