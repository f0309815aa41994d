// Compiled (not run) by types.test.mjs with `tsc --noEmit --strict`: uses static/seano-client.d.ts
// as a TypeScript app would, so a declaration that does not fit the API fails the check.

import {
  COMMAND_STATES,
  createSeanoClient,
  fetchJson,
  isFinalCommandState,
  newRequestId,
  type ClientFrame,
  type CommandError,
  type CommandPage,
  type CommandRecord,
  type Me,
  type ServerFrame,
} from "../../../static/seano-client.js";

/** Every server frame type is handled: a new one without a case fails to compile. */
export function describe(frame: ServerFrame): string {
  switch (frame.type) {
    case "connection":
      return `${frame.connection_count} connections, all=${frame.filter.all}`;
    case "raw_log":
      return frame.data.toUpperCase();
    case "sensor_log":
      return `${frame.sensor_id ?? frame.sensor_code}: ${Object.keys(frame.data).join(",")}`;
    case "vehicle_log":
      return `${frame.data.mode ?? "?"} ${frame.data.battery_voltage?.toFixed(2) ?? "?"} V seq ${frame.seq}`;
    case "command_status":
      return `${frame.data.command} ${frame.data.status} ${frame.data.message ?? ""}`;
    case "pong":
      return frame.server_time;
    case "subscription_ack":
      return `${frame.action} ${frame.vehicle_id ?? "all"}`;
    case "error":
      return `${frame.message} ${frame.request_id ?? ""}`;
    case "resync":
      return `${frame.since}..${frame.last_seq} (${frame.replay_window})`;
    case "conflated":
      return String(frame.skipped);
    case "command_accepted":
      return `${frame.repeat} ${frame.command.request_id} ${frame.command.expires_at}`;
    default: {
      const unhandled: never = frame;
      return unhandled;
    }
  }
}

export const frames: ClientFrame[] = [
  { type: "ping", timestamp: 1 },
  { type: "subscribe", vehicle_id: 7 },
  { type: "unsubscribe" },
  { type: "command", vehicle_id: 1, command: "RTL", request_id: newRequestId(), timeout_ms: 3000, params: { speed: 2 } },
];

export async function operate(): Promise<string> {
  const client = createSeanoClient({
    baseUrl: "ws://127.0.0.1:8000",
    vehicleId: 1,
    types: ["vehicle_log", "command_status"],
    token: () => "secret",
    snapshot: true,
  });
  const offs = [
    client.on("status", (s) => console.log(s.status, s.attempt, s.delayMs ?? 0)),
    client.on("data", (frame) => {
      if (frame.type === "vehicle_log") console.log(frame.data.armed === true, frame.snapshot ?? false);
    }),
    client.on("command_status", (frame) => console.log(frame.data.status, frame.seq)),
    client.on("frame", (frame) => console.log(describe(frame))),
    client.on("error", (e) => console.log(e.message, e.frame?.request_id)),
    client.on("resync", (f) => console.log(f.last_seq)),
  ];
  client.connect();
  const me = await fetchJson<Me>("/api/me", { token: "secret" });
  if (!me.commands.allowed) return me.commands.reason ?? "no command rights";
  const vehicles: number[] | "all" = me.vehicles;
  console.log(vehicles, client.coversCommands(1), client.filter?.types.includes("command_status"));
  const states: CommandRecord["status"][] = [];
  try {
    const record = await client.sendCommand(1, me.commands.names[0] ?? "RTL", undefined, {
      timeoutMs: me.commands.timeout_ms,
      onState: (r) => states.push(r.status),
    });
    // Resolves with a final state only.
    const final: "succeeded" | "failed" | "timed_out" | "expired" = record.status;
    console.log(final, record.message, record.late_answer === true);
  } catch (err) {
    const error = err as CommandError;
    console.log(error.requestId, error.message);
  }
  const posted = await fetchJson<CommandRecord>("/api/vehicles/1/commands", {
    method: "POST",
    body: { command: "HOLD", request_id: "dash-1" },
  });
  const list = await fetchJson<CommandPage>("/api/vehicles/1/commands?limit=5");
  console.log(posted.status, list.items.length, COMMAND_STATES.length, isFinalCommandState(posted.status));
  offs.forEach((off) => off());
  client.close();
  return states.join(",");
}
