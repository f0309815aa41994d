// Type declarations of static/seano-client.js and of every frame of the SEANO gateway's
// WebSocket protocol, both ways. Copy both files into a TypeScript (or React) project:
//
//   import { createSeanoClient, type ServerFrame } from "./seano-client.js";
//
// The frames follow the gateway's wire crate (src/wire/src/frame.rs, state.rs, filter.rs,
// command.rs); an interface named like a schema of /api/openapi.json (ConnectionFrame,
// CommandRecord, ...) has exactly that schema's properties, with the same ones optional:
// tests/browser/types.test.mjs fails when the two drift.

// ---------------------------------------------------------------- shared types

/** A message type: a data frame's `type`, and what `types=` filters on. */
export type MessageType = "raw_log" | "sensor_log" | "vehicle_log" | "command_status";

/** UTC, RFC 3339, milliseconds, `Z`: `2025-10-18T16:30:00.123Z`. */
export type Timestamp = string;

/** Any JSON value. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** A client's subscription, as the `connection` and `subscription_ack` frames show it. */
export interface Filter {
  /** Every vehicle. */
  all: boolean;
  /** Vehicles named by id (in addition to `all`). */
  vehicles: number[];
  /** The message types received. */
  types: MessageType[];
}

/**
 * The vehicle state a `vehicle_log` carries: every known field is optional; any other field
 * the vehicle sent is kept as sent.
 */
export interface VehicleState {
  /** Volts. */
  battery_voltage?: number;
  /** Amperes. */
  battery_current?: number;
  /** dBm. */
  rssi?: number;
  /** Autopilot mode (`GUIDED`, `AUTO`, `RTL`, `MANUAL`, ...). */
  mode?: string;
  /** Degrees, WGS 84. */
  latitude?: number;
  /** Degrees, WGS 84. */
  longitude?: number;
  /** Metres. */
  altitude?: number;
  /** Degrees from north. */
  heading?: number;
  /** Metres per second. */
  speed?: number;
  /** Whether the motors are armed. */
  armed?: boolean;
  /** Whether the autopilot is in a guided mode. */
  guided?: boolean;
  /** `ACTIVE`, `STANDBY`, ... */
  system_status?: string;
  /** GPS fix type (0 none, 2 2D, 3 3D, ...). */
  gps_fix?: number;
  /** Degrees. */
  roll?: number;
  /** Degrees. */
  pitch?: number;
  /** Degrees. */
  yaw?: number;
  /** Degrees Celsius. */
  temperature?: number;
  /** Any other field the vehicle sent. */
  [extra: string]: JsonValue | undefined;
}

// ---------------------------------------------------------------- commands

/**
 * A command's state: `accepted` → `sent` (the broker took it) → `succeeded` | `failed` (the
 * boat said so) | `timed_out` (no answer in time); `expired`: it could not be sent before its
 * deadline. The last four are final.
 */
export type CommandState = "accepted" | "sent" | "succeeded" | "failed" | "timed_out" | "expired";

/** The final states. */
export type FinalCommandState = "succeeded" | "failed" | "timed_out" | "expired";

/**
 * A command as the gateway keeps it: the REST body, `command_accepted`'s `command`, and the
 * `data` of every `command_status` frame.
 */
export interface CommandRecord {
  request_id: string;
  vehicle_id: number;
  vehicle_code?: string;
  command: string;
  params?: { [key: string]: JsonValue };
  status: CommandState;
  /** The JWT's `sub`, `token N` (the Nth of `AUTH_TOKENS`), or `local` with access control off. */
  sent_by: string;
  /** How long the gateway waits for the answer, from `accepted_at`. */
  timeout_ms: number;
  /** `accepted_at` + `timeout_ms`. */
  expires_at: Timestamp;
  accepted_at: Timestamp;
  /** When the broker took it. */
  sent_at?: Timestamp;
  /** When the boat's answer arrived (also for a late answer). */
  acked_at?: Timestamp;
  /** When it reached a final state. */
  resolved_at?: Timestamp;
  /** The boat's status as sent (`ok`, `error`, ...). */
  ack_status?: string;
  /** The boat's message, or the gateway's reason for `timed_out` / `expired`. */
  message?: string;
  /** The boat's own time of its answer. */
  ack_timestamp?: Timestamp;
  /** True when the answer came after the command was already final. */
  late_answer?: boolean;
}

/** A command record whose state is final: what `sendCommand` resolves with. */
export type FinalCommandRecord = CommandRecord & { status: FinalCommandState };

/** The body of `POST /api/vehicles/{vehicle_id}/commands`. */
export interface CommandRequest {
  /** One of the gateway's commands (`GET /api/me` lists them). */
  command: string;
  params?: { [key: string]: JsonValue };
  /** Idempotency key (1 to 64 of `A-Z a-z 0-9 . _ : -`); the gateway makes one when absent. */
  request_id?: string;
  /** 100 to 600000. */
  timeout_ms?: number;
}

/** `GET /api/vehicles/{vehicle_id}/commands`: newest first, paged with `before_id`. */
export interface CommandPage {
  vehicle_id: number;
  items: CommandRecord[];
  /** More, older commands exist. */
  has_more: boolean;
  /** Pass as `before_id` for the next (older) page; null on the last page. */
  next_before_id: number | null;
}

/** Whether the credential, from this page, may send commands, and which. */
export interface CommandRights {
  /** Whether this credential may send commands. */
  allowed: boolean;
  /** Why not, when not allowed. */
  reason: string | null;
  /** The commands the gateway accepts (its `COMMANDS`). */
  names: string[];
  /** The default timeout of a command. */
  timeout_ms: number;
}

/** `GET /api/me`: who the credential is and what it may do. */
export interface Me {
  subject: string;
  /** `"all"` or the vehicles it may read. */
  vehicles: "all" | number[];
  commands: CommandRights;
}

// ---------------------------------------------------------------- server → client frames

/** Fields every data frame (and `command_status`) has. */
interface DataFrameBase {
  vehicle_id: number;
  /** The vehicle's registration code, for a vehicle that publishes under one (`USV-003`). */
  vehicle_code?: string;
  /** The vehicle's timestamp, or the gateway's receive time. */
  timestamp: Timestamp;
  /** When the gateway sent the frame. */
  broadcast_time: Timestamp;
  /** Open WebSocket connections when the frame was sent. */
  connection_count: number;
  /** Row id in the message type's own table. */
  id: number;
  /** Gateway-wide cursor; resume with `since=`. */
  seq: number;
  /** True on `snapshot=latest` frames; they do not move the resume cursor. */
  snapshot?: boolean;
}

/** First frame on every stream. */
export interface ConnectionFrame {
  type: "connection";
  /** `Connected to SEANO real-time data stream`. */
  message: string;
  timestamp: Timestamp;
  connection_count: number;
  /** On `/api/ws/vehicle/{vehicle_id}` only. */
  vehicle_id?: number;
  filter: Filter;
}

/** A committed raw_log: the log line as the vehicle sent it. */
export interface RawLogFrame extends DataFrameBase {
  type: "raw_log";
  data: string;
}

/** A committed sensor_log: the sensor's values as sent. */
export interface SensorLogFrame extends DataFrameBase {
  type: "sensor_log";
  /** A sensor named by an integer id. */
  sensor_id?: number;
  /** A sensor named by a code (`TEMP-001`). */
  sensor_code?: string;
  data: { [field: string]: JsonValue };
}

/** A committed vehicle_log: the vehicle state (without its timestamp, which is the frame's). */
export interface VehicleLogFrame extends DataFrameBase {
  type: "vehicle_log";
  data: VehicleState;
}

/** A command's committed state change; `data` is its record as that change left it. */
export interface CommandStatusFrame extends DataFrameBase {
  type: "command_status";
  data: CommandRecord;
}

/** The answer to `ping`. */
export interface PongFrame {
  type: "pong";
  /** The ping's `timestamp`, echoed (null if absent). */
  timestamp: JsonValue;
  server_time: Timestamp;
  /** On a vehicle stream only. */
  vehicle_id?: number;
}

export type SubscriptionAction = "subscribe" | "unsubscribe";

/** The answer to `subscribe` / `unsubscribe`, with the filter now in force. */
export interface SubscriptionAckFrame {
  type: "subscription_ack";
  action: SubscriptionAction;
  /** The vehicle the request named; null for "all vehicles". */
  vehicle_id: number | null;
  filter: Filter;
}

/** A client frame was not understood or a command was refused; the connection stays open. */
export interface ErrorFrame {
  type: "error";
  message: string;
  /** The refused `command` frame's `request_id`, when it had one. */
  request_id?: string;
}

/** Instead of a replay: `since=` is outside the replay window, or retention removed messages
 * after it. Reload history over REST. */
export interface ResyncFrame {
  type: "resync";
  message: string;
  since: number;
  last_seq: number;
  replay_window: number;
  /** Set when retention removed messages after `since`: the highest seq removed. */
  purged_through_seq?: number;
}

/** A `conflate=latest` client fell behind: older messages were skipped. */
export interface ConflatedFrame {
  type: "conflated";
  skipped: number;
  message: string;
}

/** The answer to `command`: the record as it now stands. */
export interface CommandAcceptedFrame {
  type: "command_accepted";
  /** True when this `request_id` was already a command: nothing was sent again. */
  repeat: boolean;
  command: CommandRecord;
}

/** The telemetry frames: what the `data` event delivers. */
export type DataFrame = RawLogFrame | SensorLogFrame | VehicleLogFrame;

/** Any frame the server sends (switch on `type`). */
export type ServerFrame =
  | ConnectionFrame
  | RawLogFrame
  | SensorLogFrame
  | VehicleLogFrame
  | CommandStatusFrame
  | PongFrame
  | SubscriptionAckFrame
  | ErrorFrame
  | ResyncFrame
  | ConflatedFrame
  | CommandAcceptedFrame;

// ---------------------------------------------------------------- client → server frames

/** Application-level ping; answered by `pong`. */
export interface PingFrame {
  type: "ping";
  /** Any JSON value; echoed in the pong. */
  timestamp?: JsonValue;
}

/** Add a vehicle, or without `vehicle_id` every vehicle; answered by `subscription_ack`. */
export interface SubscribeFrame {
  type: "subscribe";
  vehicle_id?: number | null;
}

/** Remove a vehicle, or without `vehicle_id` stop "every vehicle"; answered by `subscription_ack`. */
export interface UnsubscribeFrame {
  type: "unsubscribe";
  vehicle_id?: number | null;
}

/** Send a command to a vehicle (needs command rights); answered by `command_accepted` or `error`. */
export interface CommandFrame {
  type: "command";
  vehicle_id: number;
  command: string;
  params?: { [key: string]: JsonValue };
  request_id?: string;
  timeout_ms?: number;
}

/** Any frame a client may send. */
export type ClientFrame = PingFrame | SubscribeFrame | UnsubscribeFrame | CommandFrame;

// ---------------------------------------------------------------- the client

export type ConnectionStatus = "connecting" | "open" | "reconnecting" | "closed";

export interface StatusEvent {
  status: ConnectionStatus;
  /** Reconnection attempts since the last open connection. */
  attempt: number;
  /** With `reconnecting`: the wait before the next attempt. */
  delayMs?: number;
  /** The close code, when a close caused the change. */
  code?: number;
  reason?: string;
}

export interface ErrorEvent {
  message: string;
  /** The error frame, when one caused it. */
  frame?: ErrorFrame;
}

/** The client's events and what their listeners receive. */
export interface SeanoClientEvents {
  /** Every frame, parsed. */
  frame: ServerFrame;
  /** raw_log / sensor_log / vehicle_log frames, snapshot and replayed ones included. */
  data: DataFrame;
  /** Every connection state change. */
  status: StatusEvent;
  /** The server could not replay from the cursor: reload history over REST. */
  resync: ResyncFrame;
  /** With `conflate: true`: older messages were skipped. */
  conflated: ConflatedFrame;
  /** Error frames and refused connections. */
  error: ErrorEvent;
  /** Every command_status frame (whoever sent the command), replayed ones included. */
  command_status: CommandStatusFrame;
}

export interface SeanoClientOptions {
  /** ws(s)://host[:port]; default: the page's host. */
  baseUrl?: string;
  /** Use /api/ws/vehicle/{vehicleId} instead of /api/ws. */
  vehicleId?: number;
  /** Only these message types. */
  types?: MessageType[];
  /** Ask for snapshot=latest while there is no cursor (default true). */
  snapshot?: boolean;
  /** Ask for conflate=latest (skip to the latest when behind). */
  conflate?: boolean;
  /** Start after this seq (e.g. a REST page's `live_since`). */
  since?: number;
  /** Access token, sent as `token=` (and as a bearer token to REST). */
  token?: string | (() => string | undefined);
  /** First reconnect delay (default 500). */
  initialDelayMs?: number;
  /** Largest reconnect delay (default 15000). */
  maxDelayMs?: number;
  /** Application ping period; 0 disables (default 25000). */
  pingIntervalMs?: number;
  /** Reconnect when nothing arrives this long after a ping (default 10000). */
  pongTimeoutMs?: number;
  /** WebSocket implementation (default: the global one). */
  WebSocket?: { new (url: string): WebSocket };
  /** http(s)://host[:port] for sendCommand's REST fallback; default: baseUrl with ws→http, or the page's origin. */
  httpBaseUrl?: string;
  /** How long after a command's expires_at to ask GET /api/commands/{request_id} (default 1500). */
  commandFallbackDelayMs?: number;
  /** How long to wait for command_accepted before asking over REST whether it was accepted (default 10000). */
  acceptTimeoutMs?: number;
  /** fetch implementation for the REST fallback (default: the global one). */
  fetch?: typeof fetch;
}

export interface SendCommandOptions {
  /** Idempotency key (default: a new UUID). Sending again with the same one sends nothing twice. */
  requestId?: string;
  /** How long the gateway waits for the boat's answer (100 to 600000 ms). */
  timeoutMs?: number;
  /** Called with the record on every new state (accepted, sent, then the final one). */
  onState?: (record: CommandRecord) => void;
}

/** How `sendCommand` rejects: refused by the gateway, or the socket closed before acceptance. */
export interface CommandError extends Error {
  requestId: string;
  /** The gateway's error frame, when it refused the command. */
  frame?: ErrorFrame;
}

export interface SeanoClient {
  /** Opens the socket (and keeps it open until `close()`). */
  connect(): void;
  /** Closes the socket for good. */
  close(): void;
  /** Receive `vehicleId` too, or every vehicle when omitted; false if not sent now (it is after a reconnect). */
  subscribe(vehicleId?: number): boolean;
  /** Stop receiving `vehicleId`, or stop "every vehicle" when omitted. */
  unsubscribe(vehicleId?: number): boolean;
  /** Sends an application ping; the server answers with a pong frame. */
  ping(): boolean;
  /**
   * Sends a command on the open socket. Resolves with the final record (check `.status`);
   * rejects with a {@link CommandError} when refused or when the socket closes before acceptance.
   */
  sendCommand(
    vehicleId: number,
    command: string,
    params?: { [key: string]: JsonValue } | null,
    options?: SendCommandOptions,
  ): Promise<FinalCommandRecord>;
  /** Whether command_status frames of `vehicleId` reach this socket (false before the connection frame). */
  coversCommands(vehicleId: number): boolean;
  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof SeanoClientEvents>(name: K, fn: (value: SeanoClientEvents[K]) => void): () => void;
  /** The filter in force, or null before the connection frame. */
  readonly filter: Filter | null;
  /** The last seq delivered (the resume cursor), or null. */
  readonly lastSeq: number | null;
  readonly status: ConnectionStatus;
  /** The URL the next connection will use. */
  readonly url: string;
}

/** Creates a client. Nothing happens until `connect()`. */
export function createSeanoClient(options?: SeanoClientOptions): SeanoClient;

export interface FetchJsonOptions {
  baseUrl?: string;
  token?: string;
  method?: string;
  /** Sent as JSON. */
  body?: unknown;
  fetch?: typeof fetch;
}

/** The error `fetchJson` throws on a non-2xx answer. */
export interface HttpError extends Error {
  status: number;
  /** The JSON body, if any (`{"error","message",...}`). */
  body: unknown;
}

/** Reads (or posts to) the REST API; throws an {@link HttpError} on a non-2xx answer. */
export function fetchJson<T = unknown>(path: string, options?: FetchJsonOptions): Promise<T>;

/** A new request id: a random UUID. */
export function newRequestId(): string;

/** The command states in the order they happen. */
export const COMMAND_STATES: readonly CommandState[];

/** Whether a state is final (succeeded, failed, timed_out, expired). */
export function isFinalCommandState(status: string): status is FinalCommandState;
