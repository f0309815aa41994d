// static/seano-client.d.ts, the TypeScript declarations of the JS client and of every frame:
// - types/usage.ts, which uses the whole API as an app would, compiles with `--strict`;
// - the declarations name exactly what the module exports and what a client object has;
// - each interface or type named like a schema of the gateway's /api/openapi.json (the frames,
//   CommandRecord, Filter, VehicleState, MessageType, ...) has exactly that schema's
//   properties, optional where the schema does not require them, or its enum's values; and the
//   ServerFrame / ClientFrame unions list the same frames as the schemas of those names.
// The frames are defined once, in the gateway's wire crate: this is the test that fails when
// the declarations drift from it.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import ts from "typescript";
import * as seano from "../../static/seano-client.js";
import { ROOT, startGateway, stopAll } from "./gateway.mjs";

const DTS = join(ROOT, "static/seano-client.d.ts");
const USAGE = join(ROOT, "tests/browser/types/usage.ts");

after(stopAll);

/** How a React app built with a bundler (Vite) compiles: strict, ES modules, the DOM. */
const OPTIONS = {
  noEmit: true,
  strict: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
  types: [],
};

function program(files) {
  return ts.createProgram(files, OPTIONS);
}

function diagnostics(p) {
  return ts.getPreEmitDiagnostics(p).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, "\n");
    if (!d.file) return text;
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start ?? 0);
    return `${d.file.fileName}:${line + 1}:${character + 1} ${text}`;
  });
}

/** The declarations as data: interfaces' properties, string unions' values, unions' members. */
function declarations() {
  const p = program([DTS]);
  const checker = p.getTypeChecker();
  const file = p.getSourceFile(DTS);
  const module = checker.getSymbolAtLocation(file);
  const out = new Map();
  for (const symbol of checker.getExportsOfModule(module)) {
    const name = symbol.getName();
    if (symbol.flags & ts.SymbolFlags.Interface) {
      const type = checker.getDeclaredTypeOfSymbol(symbol);
      const props = new Map(
        checker
          .getPropertiesOfType(type)
          .map((prop) => [prop.getName(), (prop.flags & ts.SymbolFlags.Optional) !== 0]),
      );
      out.set(name, { kind: "interface", props });
    } else if (symbol.flags & ts.SymbolFlags.TypeAlias) {
      const type = checker.getDeclaredTypeOfSymbol(symbol);
      if (type.isUnion() && type.types.every((t) => t.isStringLiteral())) {
        out.set(name, { kind: "strings", values: type.types.map((t) => t.value).sort() });
      } else if (type.isUnion()) {
        const members = type.types.map((t) => (t.aliasSymbol ?? t.getSymbol())?.getName()).sort();
        out.set(name, { kind: "union", members });
      }
    } else if (symbol.flags & (ts.SymbolFlags.Function | ts.SymbolFlags.Variable)) {
      out.set(name, { kind: "value" });
    }
  }
  return { out, diagnostics: diagnostics(p) };
}

test("the declarations and an app using the whole API compile with --strict", () => {
  assert.deepEqual(diagnostics(program([DTS, USAGE])), []);
});

test("the declarations name what the module exports and every member of a client", () => {
  const { out, diagnostics: problems } = declarations();
  assert.deepEqual(problems, []);
  const declaredValues = [...out].filter(([, d]) => d.kind === "value").map(([n]) => n).sort();
  assert.deepEqual(declaredValues, Object.keys(seano).sort());

  const client = seano.createSeanoClient({ baseUrl: "ws://gateway.test", WebSocket: class {} });
  const members = Object.keys(Object.getOwnPropertyDescriptors(client)).sort();
  assert.deepEqual([...out.get("SeanoClient").props.keys()].sort(), members);
  const optionsDoc = [...out.get("SeanoClientOptions").props.keys()].sort();
  for (const option of ["commandFallbackDelayMs", "acceptTimeoutMs", "httpBaseUrl", "fetch", "WebSocket", "token"]) {
    assert.ok(optionsDoc.includes(option), `SeanoClientOptions declares ${option}`);
  }
});

test("the frame declarations match the gateway's schemas", async () => {
  const { http } = await startGateway();
  const response = await fetch(`${http}/api/openapi.json`);
  assert.equal(response.status, 200);
  const schemas = (await response.json()).components.schemas;
  const { out } = declarations();

  const refName = (ref) => ref.$ref.split("/").pop();
  let compared = 0;
  for (const [name, schema] of Object.entries(schemas)) {
    const declared = out.get(name);
    if (!declared) continue;
    compared += 1;
    if (schema.oneOf) {
      assert.equal(declared.kind, "union", `${name} is a union`);
      assert.deepEqual(declared.members, schema.oneOf.map(refName).sort(), `${name}'s members`);
    } else if (schema.enum) {
      assert.equal(declared.kind, "strings", `${name} is a union of strings`);
      assert.deepEqual(declared.values, [...schema.enum].sort(), `${name}'s values`);
    } else {
      assert.equal(declared.kind, "interface", `${name} is an interface`);
      const required = new Set(schema.required || []);
      const want = Object.keys(schema.properties || {}).map((p) => [p, !required.has(p)]);
      assert.deepEqual(
        [...declared.props].sort(),
        want.sort(),
        `${name}: [property, optional] as in the schema`,
      );
    }
  }
  // Everything the frames are made of is declared (and so was compared above).
  for (const name of [
    "ServerFrame", "ClientFrame", "ConnectionFrame", "RawLogFrame", "SensorLogFrame", "VehicleLogFrame",
    "CommandStatusFrame", "PongFrame", "SubscriptionAckFrame", "ErrorFrame", "ResyncFrame", "ConflatedFrame",
    "CommandAcceptedFrame", "PingFrame", "SubscribeFrame", "UnsubscribeFrame", "CommandFrame",
    "CommandRecord", "CommandState", "Filter", "MessageType", "VehicleState", "SubscriptionAction",
  ]) {
    assert.ok(schemas[name], `the gateway has a schema ${name}`);
    assert.ok(out.has(name), `the declarations have ${name}`);
  }
  assert.ok(compared >= 23);
});
