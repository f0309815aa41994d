//! Every WebSocket frame, both ways (SPEC §3), the close codes, and the frames' schemas.
//!
//! The gateway serializes these types, clients (the benchmark, the tests) parse and send them,
//! and the OpenAPI and AsyncAPI documents are built from their derived schemas and from
//! [`SERVER_FRAMES`] / [`CLIENT_FRAMES`]: a new frame is one struct and one row there.

use std::borrow::Cow;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::command::{CommandRecord, CommandRequest, CommandState};
use crate::filter::{Filter, FilterChange};
use crate::time::format_time;
use crate::{MessageType, VehicleState};

/// Close codes. 1000-range codes are the standard ones; 3000-3499 mean "reconnect (and resume
/// with `since=`)", 3500-3999 "do not reconnect with the same request" (as Centrifugo does).
pub mod close {
    /// The server is shutting down: reconnect.
    pub const GOING_AWAY: u16 = 1001;
    /// A client frame was larger than `WS_MAX_FRAME_BYTES`.
    pub const TOO_BIG: u16 = 1009;
    /// The server cannot serve the stream right now (e.g. the database is away): reconnect.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The client's queue overflowed: reconnect and resume.
    pub const SLOW_CONSUMER: u16 = 3001;
    /// Nothing heard from the client within `WS_CLIENT_TIMEOUT_SECS`.
    pub const HEARTBEAT_TIMEOUT: u16 = 3002;
}

/// A frame as JSON text.
pub fn to_text<T: Serialize>(frame: &T) -> String {
    // unwrap: frames are plain structs of strings, numbers and JSON values.
    serde_json::to_string(frame).unwrap()
}

/// The `type` field of each frame other than data frames: a unit type that serializes as its
/// one string, refuses any other on parsing, and documents itself as a one-value enum.
macro_rules! frame_tags {
    ($($name:ident = $value:literal),* $(,)?) => {$(
        #[doc = concat!("The `type` of a `", $value, "` frame.")]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;

        impl $name {
            pub const VALUE: &'static str = $value;

            /// Its schema: a string with the one allowed value.
            pub fn schema() -> utoipa::openapi::schema::Object {
                tag_schema($value)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($value)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let got = Cow::<str>::deserialize(d)?;
                if got == $value {
                    Ok($name)
                } else {
                    Err(serde::de::Error::custom(format!(
                        "type is '{got}', not '{}'", $value
                    )))
                }
            }
        }
    )*};
}

frame_tags! {
    ConnectionTag = "connection",
    PongTag = "pong",
    SubscriptionAckTag = "subscription_ack",
    ErrorTag = "error",
    ResyncTag = "resync",
    ConflatedTag = "conflated",
    PingTag = "ping",
    SubscribeTag = "subscribe",
    UnsubscribeTag = "unsubscribe",
    CommandTag = "command",
    CommandAcceptedTag = "command_accepted",
}

fn tag_schema(value: &str) -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([value]))
        .build()
}

/// Server → client: a committed `raw_log`, `sensor_log` or `vehicle_log`. The gateway
/// serializes each message once and every client receives the same bytes.
///
/// In the documents it is three schemas, `RawLogFrame`, `SensorLogFrame` and
/// `VehicleLogFrame`, whose `type` and `data` are narrowed to that message type.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DataFrame<'a> {
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub vehicle_id: i64,
    /// The vehicle's registration code, for a vehicle that publishes under one (`USV-003`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub vehicle_code: Option<Cow<'a, str>>,
    /// `sensor_log` of a sensor named by an integer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor_id: Option<i64>,
    /// `sensor_log` of a sensor named by a code (`TEMP-001`) instead of an id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub sensor_code: Option<Cow<'a, str>>,
    /// The message as the vehicle sent it: the log line, the sensor's values, or the state.
    #[serde(borrow)]
    #[schema(value_type = Value)]
    pub data: &'a RawValue,
    /// The vehicle's timestamp, or the gateway's receive time when it sent none (UTC,
    /// RFC 3339, milliseconds, `Z`).
    #[schema(value_type = String)]
    pub timestamp: Cow<'a, str>,
    /// When the gateway sent the frame.
    #[schema(value_type = String)]
    pub broadcast_time: Cow<'a, str>,
    /// Open WebSocket connections when the frame was sent.
    pub connection_count: u64,
    /// Row id in the message type's own table.
    pub id: i64,
    /// Gateway-wide cursor, increasing in commit order across all types; resume with `since=`.
    pub seq: i64,
    /// Present and true on frames sent because of `snapshot=latest`; they do not move a
    /// client's resume cursor.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schema(required = false)]
    pub snapshot: bool,
}

/// Server → client, first frame on every stream.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({
    "type": "connection", "message": "Connected to SEANO real-time data stream",
    "timestamp": "2025-10-18T16:30:00.123Z", "connection_count": 3, "vehicle_id": 1,
    "filter": {"all": false, "vehicles": [1], "types": ["raw_log", "sensor_log", "vehicle_log"]}
})))]
pub struct ConnectionFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = ConnectionTag::schema)]
    pub kind: ConnectionTag,
    /// Always `Connected to SEANO real-time data stream`.
    pub message: String,
    /// Server time (UTC, RFC 3339, milliseconds, `Z`).
    pub timestamp: String,
    /// Open WebSocket connections, this one included.
    pub connection_count: u64,
    /// On `/api/ws/vehicle/{vehicle_id}` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vehicle_id: Option<i64>,
    /// The subscription in force.
    pub filter: Filter,
}

impl ConnectionFrame {
    pub const MESSAGE: &'static str = "Connected to SEANO real-time data stream";

    pub fn new(connection_count: usize, vehicle_id: Option<i64>, filter: Filter) -> Self {
        ConnectionFrame {
            kind: ConnectionTag,
            message: Self::MESSAGE.to_owned(),
            timestamp: format_time(Utc::now()),
            connection_count: connection_count as u64,
            vehicle_id,
            filter,
        }
    }
}

/// Server → client: the answer to `ping`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({
    "type": "pong", "timestamp": 1729269000123_i64, "server_time": "2025-10-18T16:30:00.125Z"
})))]
pub struct PongFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = PongTag::schema)]
    pub kind: PongTag,
    /// The ping's `timestamp`, echoed as sent (any JSON value; null if absent).
    #[schema(value_type = Value, required = true)]
    pub timestamp: Value,
    pub server_time: String,
    /// On a vehicle stream only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vehicle_id: Option<i64>,
}

impl PongFrame {
    pub fn new(timestamp: Value, vehicle_id: Option<i64>) -> Self {
        PongFrame {
            kind: PongTag,
            timestamp,
            server_time: format_time(Utc::now()),
            vehicle_id,
        }
    }
}

/// `subscribe` or `unsubscribe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionAction {
    Subscribe,
    Unsubscribe,
}

/// Server → client: the answer to `subscribe` / `unsubscribe`, with the filter now in force.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({
    "type": "subscription_ack", "action": "subscribe", "vehicle_id": 7,
    "filter": {"all": true, "vehicles": [7], "types": ["raw_log", "sensor_log", "vehicle_log"]}
})))]
pub struct SubscriptionAckFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = SubscriptionAckTag::schema)]
    pub kind: SubscriptionAckTag,
    pub action: SubscriptionAction,
    /// The vehicle the request named; null for "all vehicles".
    #[schema(required = true)]
    pub vehicle_id: Option<i64>,
    pub filter: Filter,
}

impl SubscriptionAckFrame {
    pub fn new(change: FilterChange, filter: Filter) -> Self {
        let (action, vehicle_id) = match change {
            FilterChange::Subscribe(v) => (SubscriptionAction::Subscribe, v),
            FilterChange::Unsubscribe(v) => (SubscriptionAction::Unsubscribe, v),
        };
        SubscriptionAckFrame {
            kind: SubscriptionAckTag,
            action,
            vehicle_id,
            filter,
        }
    }
}

/// Server → client: a client frame was not understood. The connection stays open.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({"type": "error", "message": "Invalid JSON format"})))]
pub struct ErrorFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = ErrorTag::schema)]
    pub kind: ErrorTag,
    /// `Invalid JSON format`, `Unknown message type: ...`, `vehicle_id must be ...`.
    pub message: String,
    /// The refused `command` frame's `request_id`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ErrorFrame {
    pub fn new(message: impl Into<String>) -> Self {
        ErrorFrame {
            kind: ErrorTag,
            message: message.into(),
            request_id: None,
        }
    }

    /// A refused command.
    pub fn command(message: impl Into<String>, request_id: Option<String>) -> Self {
        ErrorFrame {
            request_id,
            ..Self::new(message)
        }
    }
}

/// Server → client: the answer to a `command` frame. `command` is the record as it now stands:
/// `accepted` for a new command; for a `request_id` seen before (`repeat: true`), that
/// command's record, whatever its state. Its state changes then arrive as `command_status`
/// frames to every client whose filter covers the vehicle.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({
    "type": "command_accepted", "repeat": false,
    "command": {"request_id": "dash-17", "vehicle_id": 1, "command": "RTL", "status": "accepted",
                "sent_by": "token 1", "timeout_ms": 8000, "expires_at": "2026-05-06T08:15:10.481Z",
                "accepted_at": "2026-05-06T08:15:02.481Z"}
})))]
pub struct CommandAcceptedFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = CommandAcceptedTag::schema)]
    pub kind: CommandAcceptedTag,
    /// True when this `request_id` was already a command: nothing was sent again.
    pub repeat: bool,
    pub command: CommandRecord,
}

impl CommandAcceptedFrame {
    pub fn new(command: CommandRecord, repeat: bool) -> Self {
        CommandAcceptedFrame {
            kind: CommandAcceptedTag,
            repeat,
            command,
        }
    }
}

/// Server → client, instead of a replay: `since=` is outside the replay window (or ahead of
/// the last seq), so the replay cannot be complete. Reload history over REST
/// (`/api/vehicles/{vehicle_id}/{type}?after_seq=...`); the live stream follows this frame.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({
    "type": "resync",
    "message": "since is outside the replay window; reload history over REST (after_seq) and continue from the live stream",
    "since": 12, "last_seq": 250000, "replay_window": 100000
})))]
pub struct ResyncFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = ResyncTag::schema)]
    pub kind: ResyncTag,
    pub message: String,
    /// The `since` the client asked for.
    pub since: i64,
    /// The last seq committed when the client connected.
    pub last_seq: i64,
    /// How many seqs back `since=` may reach (`WS_REPLAY_WINDOW`).
    pub replay_window: i64,
    /// Set when retention has removed messages after `since` that this stream would carry:
    /// the highest seq removed. History now begins after it (REST says when:
    /// `history_begins_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged_through_seq: Option<i64>,
}

impl ResyncFrame {
    pub const MESSAGE: &'static str = "since is outside the replay window; reload history over REST (after_seq) and continue from the live stream";
    pub const PURGED: &'static str = "messages after since were removed by retention; reload what history is left over REST (after_seq) and continue from the live stream";

    pub fn new(since: i64, last_seq: i64, replay_window: i64) -> Self {
        ResyncFrame {
            kind: ResyncTag,
            message: Self::MESSAGE.to_owned(),
            since,
            last_seq,
            replay_window,
            purged_through_seq: None,
        }
    }

    /// Retention removed messages after `since`, up to `purged_through_seq`.
    pub fn purged(since: i64, last_seq: i64, replay_window: i64, purged_through_seq: i64) -> Self {
        ResyncFrame {
            message: Self::PURGED.to_owned(),
            purged_through_seq: Some(purged_through_seq),
            ..Self::new(since, last_seq, replay_window)
        }
    }
}

/// Server → client, on a `conflate=latest` stream that fell behind: older messages were
/// skipped; the latest message per vehicle and type follows.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({
    "type": "conflated", "skipped": 1532,
    "message": "you fell behind: older messages were skipped, the latest per vehicle and type follow"
})))]
pub struct ConflatedFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = ConflatedTag::schema)]
    pub kind: ConflatedTag,
    /// How many messages were skipped.
    pub skipped: u64,
    pub message: String,
}

impl ConflatedFrame {
    pub const MESSAGE: &'static str =
        "you fell behind: older messages were skipped, the latest per vehicle and type follow";

    pub fn new(skipped: u64) -> Self {
        ConflatedFrame {
            kind: ConflatedTag,
            skipped,
            message: Self::MESSAGE.to_owned(),
        }
    }
}

/// Client → server: answered by `pong`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({"type": "ping", "timestamp": 1729269000123_i64})))]
pub struct PingFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = PingTag::schema)]
    pub kind: PingTag,
    /// Any JSON value; echoed in the pong.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[schema(value_type = Value, required = false)]
    pub timestamp: Value,
}

/// Client → server: add a vehicle to the filter, or without `vehicle_id` receive every vehicle.
/// Answered by `subscription_ack`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({"type": "subscribe", "vehicle_id": 7})))]
pub struct SubscribeFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = SubscribeTag::schema)]
    pub kind: SubscribeTag,
    /// A positive integer; absent or null means all vehicles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub vehicle_id: Option<i64>,
}

/// Client → server: remove a vehicle from the filter, or without `vehicle_id` stop receiving
/// "all vehicles". Answered by `subscription_ack`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({"type": "unsubscribe", "vehicle_id": 7})))]
pub struct UnsubscribeFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = UnsubscribeTag::schema)]
    pub kind: UnsubscribeTag,
    /// A positive integer; absent or null means all vehicles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub vehicle_id: Option<i64>,
}

/// Client → server: send a command to a vehicle. Answered by `command_accepted` (or an `error`
/// with the same `request_id`); needs a credential with command rights.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({"type": "command", "vehicle_id": 1, "command": "RTL", "request_id": "dash-17"})))]
pub struct CommandFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = CommandTag::schema)]
    pub kind: CommandTag,
    #[schema(minimum = 1)]
    pub vehicle_id: i64,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Map<String, Value>>,
    /// Idempotency key; the gateway makes one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// How long to wait for the boat's answer (100 to 600000 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 100, maximum = 600000)]
    pub timeout_ms: Option<u64>,
}

/// What a client may send, decoded.
#[derive(Debug, PartialEq)]
pub enum ClientFrame {
    /// `ping`, with its `timestamp` (null when absent).
    Ping(Value),
    /// `subscribe` / `unsubscribe`.
    Change(FilterChange),
    /// `command`: the vehicle and the request.
    Command(i64, CommandRequest),
}

/// Why a client frame was refused: the `error` frame's message, and the refused command's
/// `request_id` when there was one.
#[derive(Debug, PartialEq)]
pub struct FrameError {
    pub message: String,
    pub request_id: Option<String>,
}

impl From<String> for FrameError {
    fn from(message: String) -> Self {
        FrameError {
            message,
            request_id: None,
        }
    }
}

impl From<&str> for FrameError {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

impl ClientFrame {
    /// Parses a client text frame; the error is the message of the `error` frame to answer
    /// with (SEANO's own wording where existing React clients may show it).
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        let value: Value =
            serde_json::from_str(text).map_err(|_| "Invalid JSON format".to_owned())?;
        let Value::Object(obj) = value else {
            return Err("A message must be a JSON object with a \"type\"".into());
        };
        let kind = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(_) => return Err("\"type\" must be a string".into()),
            None => return Err("Missing \"type\"".into()),
        };
        let vehicle = || -> Result<Option<i64>, String> {
            match obj.get("vehicle_id") {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => match n.as_i64() {
                    Some(id) if id > 0 => Ok(Some(id)),
                    _ => Err(format!("vehicle_id must be a positive integer, got {n}")),
                },
                Some(other) => Err(format!(
                    "vehicle_id must be a positive integer, got {other}"
                )),
            }
        };
        match kind {
            PingTag::VALUE => Ok(ClientFrame::Ping(
                obj.get("timestamp").cloned().unwrap_or(Value::Null),
            )),
            SubscribeTag::VALUE => Ok(ClientFrame::Change(FilterChange::Subscribe(vehicle()?))),
            UnsubscribeTag::VALUE => Ok(ClientFrame::Change(FilterChange::Unsubscribe(vehicle()?))),
            CommandTag::VALUE => {
                let request_id = obj
                    .get("request_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let refused = |message: String| FrameError {
                    message,
                    request_id: request_id.clone(),
                };
                let vehicle_id = vehicle()
                    .map_err(refused)?
                    .ok_or_else(|| refused("a command needs a vehicle_id".into()))?;
                let mut fields = obj.clone();
                fields.remove("type");
                fields.remove("vehicle_id");
                let request: CommandRequest = serde_json::from_value(Value::Object(fields))
                    .map_err(|e| refused(format!("Invalid command: {e}")))?;
                request.check().map_err(refused)?;
                Ok(ClientFrame::Command(vehicle_id, request))
            }
            other => Err(format!("Unknown message type: {other}").into()),
        }
    }

    /// The frame as a client sends it.
    pub fn to_text(&self) -> String {
        match self {
            ClientFrame::Ping(timestamp) => to_text(&PingFrame {
                kind: PingTag,
                timestamp: timestamp.clone(),
            }),
            ClientFrame::Change(FilterChange::Subscribe(vehicle_id)) => to_text(&SubscribeFrame {
                kind: SubscribeTag,
                vehicle_id: *vehicle_id,
            }),
            ClientFrame::Change(FilterChange::Unsubscribe(vehicle_id)) => {
                to_text(&UnsubscribeFrame {
                    kind: UnsubscribeTag,
                    vehicle_id: *vehicle_id,
                })
            }
            ClientFrame::Command(vehicle_id, request) => to_text(&CommandFrame {
                kind: CommandTag,
                vehicle_id: *vehicle_id,
                command: request.command.clone(),
                params: request.params.clone(),
                request_id: request.request_id.clone(),
                timeout_ms: request.timeout_ms,
            }),
        }
    }
}

/// One frame of the protocol, for the documents.
pub struct FrameDoc {
    /// Its `type`, and its message id in the AsyncAPI document.
    pub id: &'static str,
    /// Its schema's name in `components.schemas`.
    pub schema: &'static str,
    pub title: &'static str,
    pub summary: &'static str,
    /// Client frames: the `type` of the server's answer.
    pub reply: Option<&'static str>,
    build: fn() -> RefOr<Schema>,
}

impl FrameDoc {
    pub fn schema(&self) -> RefOr<Schema> {
        (self.build)()
    }
}

const fn frame(
    id: &'static str,
    schema: &'static str,
    title: &'static str,
    summary: &'static str,
    build: fn() -> RefOr<Schema>,
) -> FrameDoc {
    FrameDoc {
        id,
        schema,
        title,
        summary,
        reply: None,
        build,
    }
}

/// Every frame the server sends, in the order the documents list them.
pub const SERVER_FRAMES: &[FrameDoc] = &[
    frame(
        ConnectionTag::VALUE,
        "ConnectionFrame",
        "Connected",
        "First frame on every stream: the connection count and the filter in force.",
        ConnectionFrame::schema,
    ),
    frame(
        "raw_log",
        "RawLogFrame",
        "Raw log line",
        "A committed raw_log.",
        || data_frame(MessageType::RawLog),
    ),
    frame(
        "sensor_log",
        "SensorLogFrame",
        "Sensor reading",
        "A committed sensor_log.",
        || data_frame(MessageType::SensorLog),
    ),
    frame(
        "vehicle_log",
        "VehicleLogFrame",
        "Vehicle state",
        "A committed vehicle_log; `snapshot: true` on snapshot=latest frames.",
        || data_frame(MessageType::VehicleLog),
    ),
    frame(
        "command_status",
        "CommandStatusFrame",
        "Command state change",
        "A command's committed state change (accepted, sent, succeeded, failed, timed_out, expired); `data` is its record.",
        || data_frame(MessageType::CommandStatus),
    ),
    frame(
        PongTag::VALUE,
        "PongFrame",
        "Pong",
        "The answer to ping; echoes its timestamp.",
        PongFrame::schema,
    ),
    frame(
        SubscriptionAckTag::VALUE,
        "SubscriptionAckFrame",
        "Subscription acknowledged",
        "The answer to subscribe/unsubscribe, with the resulting filter.",
        SubscriptionAckFrame::schema,
    ),
    frame(
        ErrorTag::VALUE,
        "ErrorFrame",
        "Error",
        "A client frame was not understood; the connection stays open.",
        ErrorFrame::schema,
    ),
    frame(
        ResyncTag::VALUE,
        "ResyncFrame",
        "Resync needed",
        "since= is older than the replay window: reload history over REST.",
        ResyncFrame::schema,
    ),
    frame(
        ConflatedTag::VALUE,
        "ConflatedFrame",
        "Messages skipped",
        "A conflate=latest client fell behind: older messages were skipped, the latest per vehicle and type follow.",
        ConflatedFrame::schema,
    ),
    frame(
        CommandAcceptedTag::VALUE,
        "CommandAcceptedFrame",
        "Command accepted",
        "The answer to command: the command's record (repeat: true for a request_id already used).",
        CommandAcceptedFrame::schema,
    ),
];

/// Every frame a client may send.
pub const CLIENT_FRAMES: &[FrameDoc] = &[
    FrameDoc {
        reply: Some(PongTag::VALUE),
        ..frame(
            PingTag::VALUE,
            "PingFrame",
            "Ping",
            "Application-level ping.",
            PingFrame::schema,
        )
    },
    FrameDoc {
        reply: Some(SubscriptionAckTag::VALUE),
        ..frame(
            SubscribeTag::VALUE,
            "SubscribeFrame",
            "Subscribe",
            "Add a vehicle, or all vehicles, to the filter.",
            SubscribeFrame::schema,
        )
    },
    FrameDoc {
        reply: Some(SubscriptionAckTag::VALUE),
        ..frame(
            UnsubscribeTag::VALUE,
            "UnsubscribeFrame",
            "Unsubscribe",
            "Remove a vehicle, or stop all vehicles.",
            UnsubscribeFrame::schema,
        )
    },
    FrameDoc {
        reply: Some(CommandAcceptedTag::VALUE),
        ..frame(
            CommandTag::VALUE,
            "CommandFrame",
            "Command",
            "Send a command to a vehicle (needs command rights); answered by command_accepted or error.",
            CommandFrame::schema,
        )
    },
];

/// A `$ref` to a component schema.
fn component(name: &str) -> RefOr<Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name(name))
}

/// [`DataFrame`]'s schema narrowed to one message type: its `type`, its `data`, its
/// description and example.
fn data_frame(kind: MessageType) -> RefOr<Schema> {
    let example_at = r#""timestamp": "2025-10-18T16:30:00.123Z", "broadcast_time": "2025-10-18T16:30:00.130Z", "connection_count": 3"#;
    let (description, data, example): (&str, RefOr<Schema>, String) = match kind {
        MessageType::RawLog => (
            "Server → client: a committed `raw_log`; `data` is the log line as the vehicle sent it.",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("The log line as the vehicle sent it."))
                .into(),
            format!(
                r#"{{"type": "raw_log", "vehicle_id": 1, "data": "GPS initialized successfully", {example_at}, "id": 17, "seq": 1042}}"#
            ),
        ),
        MessageType::SensorLog => (
            "Server → client: a committed `sensor_log`; `data` is the sensor's values as sent.",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some("The sensor's values as sent."))
                .into(),
            format!(
                r#"{{"type": "sensor_log", "vehicle_id": 1, "sensor_id": 5, "data": {{"temperature": 28.5}}, {example_at}, "id": 9, "seq": 1043}}"#
            ),
        ),
        MessageType::VehicleLog => (
            "Server → client: a committed `vehicle_log`; `data` is the vehicle state. With `snapshot=latest`, the latest one of each vehicle arrives first, marked `\"snapshot\": true`.",
            component(&VehicleState::name()),
            format!(
                r#"{{"type": "vehicle_log", "vehicle_id": 1, "data": {{"battery_voltage": 12.4, "mode": "GUIDED", "armed": true}}, {example_at}, "id": 88, "seq": 1044}}"#
            ),
        ),
        MessageType::CommandStatus => (
            "Server → client: a command's committed state change; `data` is the command's record as that change left it, `timestamp` the time of the change.",
            component(&CommandRecord::name()),
            format!(
                r#"{{"type": "command_status", "vehicle_id": 1, "data": {{"request_id": "dash-17", "vehicle_id": 1, "command": "RTL", "status": "succeeded", "sent_by": "token 1", "timeout_ms": 8000, "expires_at": "2025-10-18T16:30:08.123Z", "accepted_at": "2025-10-18T16:30:00.100Z", "sent_at": "2025-10-18T16:30:00.104Z", "acked_at": "2025-10-18T16:30:00.123Z", "resolved_at": "2025-10-18T16:30:00.123Z", "ack_status": "ok", "message": "Returning to launch"}}, {example_at}, "id": 5, "seq": 1045}}"#
            ),
        ),
    };
    let RefOr::T(Schema::Object(mut object)) = DataFrame::schema() else {
        unreachable!("a derived struct schema is an object");
    };
    object.description = Some(description.to_owned());
    object
        .properties
        .insert("type".into(), tag_schema(kind.as_str()).into());
    object.properties.insert("data".into(), data);
    if kind != MessageType::SensorLog {
        for sensor_field in ["sensor_id", "sensor_code"] {
            object.properties.remove(sensor_field);
        }
    }
    // unwrap: the examples above are JSON literals.
    object.examples = vec![serde_json::from_str(&example).unwrap()];
    RefOr::T(Schema::Object(object))
}

/// A `oneOf` of the frames' schemas.
fn union(description: &str, frames: &[FrameDoc]) -> RefOr<Schema> {
    let mut one_of = OneOfBuilder::new().description(Some(description));
    for f in frames {
        one_of = one_of.item(component(f.schema));
    }
    RefOr::T(Schema::OneOf(one_of.build()))
}

/// Any frame the server sends: the schema `ServerFrame`, a `oneOf` of every server frame, for
/// the streams' documented response body.
pub struct AnyServerFrame;

impl PartialSchema for AnyServerFrame {
    fn schema() -> RefOr<Schema> {
        union(
            "Any frame the server sends on a stream (switch on `type`).",
            SERVER_FRAMES,
        )
    }
}

impl ToSchema for AnyServerFrame {
    fn name() -> Cow<'static, str> {
        "ServerFrame".into()
    }
}

/// Every schema the frames need, by component name: each frame, `ServerFrame` and
/// `ClientFrame` (any frame of each direction), and the types frames contain.
pub fn schemas() -> Vec<(String, RefOr<Schema>)> {
    let mut out: Vec<(String, RefOr<Schema>)> = SERVER_FRAMES
        .iter()
        .chain(CLIENT_FRAMES)
        .map(|f| (f.schema.to_owned(), f.schema()))
        .collect();
    out.push((
        AnyServerFrame::name().into_owned(),
        AnyServerFrame::schema(),
    ));
    out.push((
        "ClientFrame".into(),
        union("Any frame a client may send.", CLIENT_FRAMES),
    ));
    out.push((
        SubscriptionAction::name().into_owned(),
        SubscriptionAction::schema(),
    ));
    out.push((Filter::name().into_owned(), Filter::schema()));
    out.push((MessageType::name().into_owned(), MessageType::schema()));
    out.push((VehicleState::name().into_owned(), VehicleState::schema()));
    out.push((CommandRecord::name().into_owned(), CommandRecord::schema()));
    out.push((CommandState::name().into_owned(), CommandState::schema()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a schema lists `name` as required.
    fn requires(schema: &RefOr<Schema>, name: &str) -> bool {
        matches!(schema, RefOr::T(Schema::Object(o)) if o.required.iter().any(|r| r == name))
    }

    #[test]
    fn parses_client_frames_and_explains_bad_ones() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ping","timestamp":5}"#),
            Ok(ClientFrame::Ping(5.into()))
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"subscribe","vehicle_id":7}"#),
            Ok(ClientFrame::Change(FilterChange::Subscribe(Some(7))))
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"unsubscribe"}"#),
            Ok(ClientFrame::Change(FilterChange::Unsubscribe(None)))
        );
        assert_eq!(
            ClientFrame::parse("{nope").unwrap_err(),
            "Invalid JSON format".into()
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"dance"}"#).unwrap_err(),
            "Unknown message type: dance".into()
        );
        let refused = ClientFrame::parse(
            r#"{"type":"command","vehicle_id":"x","request_id":"r1","command":"RTL"}"#,
        )
        .unwrap_err();
        assert_eq!(refused.request_id.as_deref(), Some("r1"));
        assert!(ClientFrame::parse(
            r#"{"type":"command","vehicle_id":1,"command":"RTL","sauce":1}"#
        )
        .is_err());
        assert!(ClientFrame::parse(r#"{"type":"command","command":"RTL"}"#).is_err());
        assert!(ClientFrame::parse(r#"{"type":"subscribe","vehicle_id":"7"}"#).is_err());
        assert!(ClientFrame::parse(r#"{"type":"subscribe","vehicle_id":-1}"#).is_err());
        assert!(ClientFrame::parse("[]").is_err());
    }

    #[test]
    fn client_frames_round_trip_through_their_text() {
        for frame in [
            ClientFrame::Ping(5.into()),
            ClientFrame::Ping(Value::Null),
            ClientFrame::Change(FilterChange::Subscribe(Some(7))),
            ClientFrame::Change(FilterChange::Unsubscribe(None)),
            ClientFrame::Command(
                3,
                CommandRequest {
                    command: "RTL".into(),
                    params: Some(serde_json::Map::from_iter([("speed".into(), 2.into())])),
                    request_id: Some("dash-17".into()),
                    timeout_ms: Some(3000),
                },
            ),
        ] {
            assert_eq!(ClientFrame::parse(&frame.to_text()), Ok(frame));
        }
    }

    #[test]
    fn a_tag_refuses_another_type() {
        let wrong: Result<PongFrame, _> =
            serde_json::from_str(r#"{"type":"ping","timestamp":1,"server_time":"x"}"#);
        assert!(wrong.is_err());
    }

    #[test]
    fn a_data_frame_parses_back_from_its_text() {
        let data =
            serde_json::value::to_raw_value(&serde_json::json!({"temperature": 28.5})).unwrap();
        let sent = DataFrame {
            kind: MessageType::SensorLog,
            vehicle_id: 3,
            vehicle_code: Some("USV-003".into()),
            sensor_id: None,
            sensor_code: Some("TEMP-001".into()),
            data: &data,
            timestamp: "2025-10-18T16:30:00.123Z".into(),
            broadcast_time: "2025-10-18T16:30:00.130Z".into(),
            connection_count: 1,
            id: 9,
            seq: 1043,
            snapshot: false,
        };
        let text = to_text(&sent);
        assert!(!text.contains("snapshot") && !text.contains("sensor_id"));
        let back: DataFrame = serde_json::from_str(&text).unwrap();
        assert_eq!(back.sensor_code.as_deref(), Some("TEMP-001"));
        assert_eq!(back.data.get(), data.get());
        assert_eq!(back.seq, 1043);
    }

    #[test]
    fn each_data_frame_schema_names_its_type_and_requires_its_fields() {
        for f in &SERVER_FRAMES[1..5] {
            let schema = f.schema();
            let RefOr::T(Schema::Object(o)) = &schema else {
                panic!("{} is an object", f.schema)
            };
            let tag = serde_json::to_value(&o.properties["type"]).unwrap();
            assert_eq!(tag["enum"], serde_json::json!([f.id]));
            for field in ["vehicle_id", "data", "seq", "id", "timestamp"] {
                assert!(requires(&schema, field), "{} requires {field}", f.schema);
            }
            assert!(!requires(&schema, "snapshot"));
            assert!(!requires(&schema, "vehicle_code"));
            assert_eq!(
                o.properties.contains_key("sensor_code"),
                f.id == "sensor_log",
                "only sensor_log frames name a sensor"
            );
        }
    }
}
