//! The API's documentation: the OpenAPI document (`/api/openapi.json`), Swagger UI served from
//! the binary (`/api/docs`, nothing loaded from the internet), and an AsyncAPI 3.0 document for
//! the WebSocket protocol (`/api/asyncapi.json`).
//!
//! The frame types below exist for the documents only: they mirror what `hub::frame` and
//! `ws::protocol` serialize, and `tests/api/openapi.rs` checks them against frames a real
//! server sends, so the documents cannot drift from the wire.

use std::sync::OnceLock;

use actix_web::{http::header, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use utoipa::{OpenApi, ToSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::error::ErrorBody;
use crate::hub::{ConnectionInfo, Filter};
use crate::metrics::{PipelineStats, TypeCounts};

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/openapi.json";
/// Where the AsyncAPI document is served.
pub const ASYNCAPI_PATH: &str = "/api/asyncapi.json";
/// Where Swagger UI is served (the trailing-slash form; the bare path redirects to it).
pub const DOCS_PATH: &str = "/api/docs";

/// A telemetry message type (the last MQTT topic level).
#[derive(ToSchema)]
#[schema(as = MessageType)]
#[serde(rename_all = "snake_case")]
pub enum MessageTypeSchema {
    RawLog,
    SensorLog,
    VehicleLog,
}

/// The order of a history page, by `seq`.
#[derive(ToSchema)]
#[schema(as = Order)]
#[serde(rename_all = "lowercase")]
pub enum OrderSchema {
    /// Oldest first.
    Asc,
    /// Newest first.
    Desc,
}

/// The vehicle state a `vehicle_log` carries: every field optional, unknown fields kept as sent.
/// It is the `data` object of a `vehicle_log` frame, exactly as the vehicle published it.
#[derive(ToSchema)]
#[schema(as = VehicleState, examples(json!({
    "battery_voltage": 12.4, "battery_current": 1.8, "rssi": -38, "mode": "GUIDED",
    "latitude": -6.2088, "longitude": 106.8456, "heading": 90.0, "armed": true, "guided": true,
    "system_status": "ACTIVE", "speed": 12.5
})))]
pub struct VehicleStateSchema {
    /// Volts.
    pub battery_voltage: Option<f64>,
    /// Amperes.
    pub battery_current: Option<f64>,
    /// dBm.
    pub rssi: Option<i32>,
    /// Autopilot mode (`GUIDED`, `AUTO`, `RTL`, `MANUAL`, ...).
    pub mode: Option<String>,
    /// Degrees, WGS 84.
    pub latitude: Option<f64>,
    /// Degrees, WGS 84.
    pub longitude: Option<f64>,
    /// Metres.
    pub altitude: Option<f64>,
    /// Degrees from north.
    pub heading: Option<f64>,
    /// Metres per second.
    pub speed: Option<f64>,
    pub armed: Option<bool>,
    pub guided: Option<bool>,
    /// `ACTIVE`, `STANDBY`, ...
    pub system_status: Option<String>,
    /// GPS fix type (0 none, 2 2D, 3 3D, ...).
    pub gps_fix: Option<i32>,
    pub roll: Option<f64>,
    pub pitch: Option<f64>,
    pub yaw: Option<f64>,
    /// Degrees Celsius.
    pub temperature: Option<f64>,
    /// Any other field the vehicle sent, kept as sent.
    #[serde(flatten)]
    pub extra: std::collections::HashMap<String, Value>,
}

/// Schemas of a frame's `type` field: a string with one allowed value.
macro_rules! frame_tags {
    ($($name:ident = $value:literal),* $(,)?) => {$(
        #[doc = concat!("The `type` of a `", $value, "` frame.")]
        fn $name() -> utoipa::openapi::schema::Object {
            utoipa::openapi::schema::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::String)
                .enum_values(Some([$value]))
                .build()
        }
    )*};
}

frame_tags! {
    connection_tag = "connection",
    raw_log_tag = "raw_log",
    sensor_log_tag = "sensor_log",
    vehicle_log_tag = "vehicle_log",
    pong_tag = "pong",
    subscription_ack_tag = "subscription_ack",
    error_tag = "error",
    resync_tag = "resync",
    conflated_tag = "conflated",
    ping_tag = "ping",
    subscribe_tag = "subscribe",
    unsubscribe_tag = "unsubscribe",
}

/// Server → client, first frame on every stream.
#[derive(ToSchema)]
#[schema(examples(json!({
    "type": "connection", "message": "Connected to SEANO real-time data stream",
    "timestamp": "2025-10-18T16:30:00.123Z", "connection_count": 3, "vehicle_id": 1,
    "filter": {"all": false, "vehicles": [1], "types": ["raw_log", "sensor_log", "vehicle_log"]}
})))]
pub struct ConnectionFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = connection_tag)]
    pub kind: String,
    /// Always `Connected to SEANO real-time data stream`.
    pub message: String,
    /// Server time (UTC, RFC 3339, milliseconds, `Z`).
    pub timestamp: String,
    /// Open WebSocket connections, this one included.
    pub connection_count: u64,
    /// On `/api/ws/vehicle/{vehicle_id}` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vehicle_id: Option<i64>,
    /// The subscription in force.
    pub filter: Filter,
}

/// Server → client: a committed `raw_log`.
#[derive(ToSchema)]
#[schema(examples(json!({
    "type": "raw_log", "vehicle_id": 1, "data": "GPS initialized successfully",
    "timestamp": "2025-10-18T16:30:00.123Z", "broadcast_time": "2025-10-18T16:30:00.130Z",
    "connection_count": 3, "id": 17, "seq": 1042
})))]
pub struct RawLogFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = raw_log_tag)]
    pub kind: String,
    pub vehicle_id: i64,
    /// The log line as the vehicle sent it.
    pub data: String,
    /// The vehicle's timestamp, or the gateway's receive time when it sent none.
    pub timestamp: String,
    /// When the gateway sent the frame.
    pub broadcast_time: String,
    pub connection_count: u64,
    /// Row id in `raw_logs`.
    pub id: i64,
    /// Gateway-wide cursor, increasing in commit order across all types; resume with `since=`.
    pub seq: i64,
    /// Present and true on frames sent because of `snapshot=latest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<bool>,
}

/// Server → client: a committed `sensor_log`.
#[derive(ToSchema)]
#[schema(examples(json!({
    "type": "sensor_log", "vehicle_id": 1, "sensor_id": 5, "data": {"temperature": 28.5},
    "timestamp": "2025-10-18T16:30:00.123Z", "broadcast_time": "2025-10-18T16:30:00.130Z",
    "connection_count": 3, "id": 9, "seq": 1043
})))]
pub struct SensorLogFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = sensor_log_tag)]
    pub kind: String,
    pub vehicle_id: i64,
    pub sensor_id: i64,
    /// The sensor's values as sent.
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    pub timestamp: String,
    pub broadcast_time: String,
    pub connection_count: u64,
    /// Row id in `sensor_logs`.
    pub id: i64,
    pub seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<bool>,
}

/// Server → client: a committed `vehicle_log`. With `snapshot=latest`, the latest one of each
/// vehicle arrives first, marked `"snapshot": true`.
#[derive(ToSchema)]
#[schema(examples(json!({
    "type": "vehicle_log", "vehicle_id": 1,
    "data": {"battery_voltage": 12.4, "mode": "GUIDED", "armed": true},
    "timestamp": "2025-10-18T16:30:00.123Z", "broadcast_time": "2025-10-18T16:30:00.130Z",
    "connection_count": 3, "id": 88, "seq": 1044
})))]
pub struct VehicleLogFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = vehicle_log_tag)]
    pub kind: String,
    pub vehicle_id: i64,
    pub data: VehicleStateSchema,
    pub timestamp: String,
    pub broadcast_time: String,
    pub connection_count: u64,
    /// Row id in `vehicle_logs`.
    pub id: i64,
    pub seq: i64,
    /// True on `snapshot=latest` frames; they do not move a client's resume cursor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<bool>,
}

/// Server → client: the answer to `ping`.
#[derive(ToSchema)]
#[schema(examples(json!({
    "type": "pong", "timestamp": 1729269000123_i64, "server_time": "2025-10-18T16:30:00.125Z"
})))]
pub struct PongFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = pong_tag)]
    pub kind: String,
    /// The ping's `timestamp`, echoed as sent (any JSON value; null if absent).
    #[schema(value_type = Value, required = true)]
    pub timestamp: Option<Value>,
    pub server_time: String,
    /// On a vehicle stream only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vehicle_id: Option<i64>,
}

/// `subscribe` or `unsubscribe`.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionAction {
    Subscribe,
    Unsubscribe,
}

/// Server → client: the answer to `subscribe` / `unsubscribe`, with the filter now in force.
#[derive(ToSchema)]
#[schema(examples(json!({
    "type": "subscription_ack", "action": "subscribe", "vehicle_id": 7,
    "filter": {"all": true, "vehicles": [7], "types": ["raw_log", "sensor_log", "vehicle_log"]}
})))]
pub struct SubscriptionAckFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = subscription_ack_tag)]
    pub kind: String,
    pub action: SubscriptionAction,
    /// The vehicle the request named; null for "all vehicles".
    #[schema(required = true)]
    pub vehicle_id: Option<i64>,
    pub filter: Filter,
}

/// Server → client: a client frame was not understood. The connection stays open.
#[derive(ToSchema)]
#[schema(examples(json!({"type": "error", "message": "Invalid JSON format"})))]
pub struct ErrorFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = error_tag)]
    pub kind: String,
    /// `Invalid JSON format`, `Unknown message type: ...`, `vehicle_id must be ...`.
    pub message: String,
}

/// Server → client, instead of a replay: `since=` is outside the replay window (or ahead of
/// the last seq), so the replay cannot be complete. Reload history over REST
/// (`/api/vehicles/{vehicle_id}/{type}?after_seq=...`); the live stream follows this frame.
#[derive(ToSchema)]
#[schema(examples(json!({
    "type": "resync",
    "message": "since is outside the replay window; reload history over REST (after_seq) and continue from the live stream",
    "since": 12, "last_seq": 250000, "replay_window": 100000
})))]
pub struct ResyncFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = resync_tag)]
    pub kind: String,
    pub message: String,
    /// The `since` the client asked for.
    pub since: i64,
    /// The last seq committed when the client connected.
    pub last_seq: i64,
    /// How many seqs back `since=` may reach (`WS_REPLAY_WINDOW`).
    pub replay_window: i64,
}

/// Server → client, on a `conflate=latest` stream that fell behind: older messages were
/// skipped; the latest message per vehicle and type follows.
#[derive(ToSchema)]
#[schema(examples(json!({
    "type": "conflated", "skipped": 1532,
    "message": "you fell behind: older messages were skipped, the latest per vehicle and type follow"
})))]
pub struct ConflatedFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = conflated_tag)]
    pub kind: String,
    /// How many messages were skipped.
    pub skipped: u64,
    pub message: String,
}

/// Client → server: answered by `pong`.
#[derive(ToSchema)]
#[schema(examples(json!({"type": "ping", "timestamp": 1729269000123_i64})))]
pub struct PingFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = ping_tag)]
    pub kind: String,
    /// Any JSON value; echoed in the pong.
    #[schema(value_type = Value)]
    pub timestamp: Option<Value>,
}

/// Client → server: add a vehicle to the filter, or without `vehicle_id` receive every vehicle.
/// Answered by `subscription_ack`.
#[derive(ToSchema)]
#[schema(examples(json!({"type": "subscribe", "vehicle_id": 7})))]
pub struct SubscribeFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = subscribe_tag)]
    pub kind: String,
    /// A positive integer; absent or null means all vehicles.
    #[schema(minimum = 1)]
    pub vehicle_id: Option<i64>,
}

/// Client → server: remove a vehicle from the filter, or without `vehicle_id` stop receiving
/// "all vehicles". Answered by `subscription_ack`.
#[derive(ToSchema)]
#[schema(examples(json!({"type": "unsubscribe", "vehicle_id": 7})))]
pub struct UnsubscribeFrame {
    #[serde(rename = "type")]
    #[schema(schema_with = unsubscribe_tag)]
    pub kind: String,
    #[schema(minimum = 1)]
    pub vehicle_id: Option<i64>,
}

/// Any frame the server sends on a stream (switch on `type`).
// Never built: it exists for its schema only.
#[allow(clippy::large_enum_variant)]
#[derive(ToSchema)]
#[serde(untagged)]
pub enum ServerFrame {
    Connection(ConnectionFrame),
    RawLog(RawLogFrame),
    SensorLog(SensorLogFrame),
    VehicleLog(VehicleLogFrame),
    Pong(PongFrame),
    SubscriptionAck(SubscriptionAckFrame),
    Error(ErrorFrame),
    Resync(ResyncFrame),
    Conflated(ConflatedFrame),
}

/// Any frame a client may send.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum ClientFrame {
    Ping(PingFrame),
    Subscribe(SubscribeFrame),
    Unsubscribe(UnsubscribeFrame),
}

/// What the streams' query parameters do (shared by both endpoints' documentation).
const STREAM_PARAMS_DOC: &str = "\
Query parameters: `types=vehicle_log,sensor_log` (only those types; default all), \
`since=<seq>` (resume: first every stored message with a larger seq that matches the filter, \
in order, then live with no gap and no duplicate; older than the replay window gives a \
`resync` frame), `snapshot=latest` (first the latest stored vehicle_log of each vehicle in the \
filter, marked `\"snapshot\": true`), `conflate=latest` (when this client falls behind, skip to \
the latest message per vehicle and type instead of being disconnected), `token=` (when \
authentication is on; or an `Authorization: Bearer` header).";

const FRAMES_DOC: &str = "\
Frames are JSON text. Server → client: `connection` (first), `raw_log`, `sensor_log`, \
`vehicle_log` (data frames with `id` and `seq`), `pong`, `subscription_ack`, `error`, `resync`, \
`conflated`. \
Client → server: `ping`, `subscribe`, `unsubscribe`. Every frame's schema is in \
`components.schemas` (`*Frame`), and the full protocol is in the AsyncAPI document at \
`/api/asyncapi.json`. Close codes: 1001 server shutting down (reconnect), 1009 client frame too \
large, 3001 slow consumer (reconnect and resume with `since=`), 3002 heartbeat timeout \
(reconnect); 3000-3499 mean reconnect, 3500-3999 do not reconnect with the same request.";

/// Every vehicle's telemetry as it is committed.
#[allow(dead_code)]
#[utoipa::path(
    get,
    path = "/api/ws",
    tag = "streams",
    description = "WebSocket stream of every vehicle's telemetry, sent only after it is committed. See the operation description for parameters and frames.",
    params(
        ("types" = Option<String>, Query, description = "Comma-separated message types to receive (default all)", example = "vehicle_log,sensor_log"),
        ("since" = Option<i64>, Query, minimum = 0, description = "Resume after this seq: replay stored messages, then continue live"),
        ("snapshot" = Option<String>, Query, description = "`latest`: first the latest vehicle_log of each vehicle"),
        ("conflate" = Option<String>, Query, description = "`latest`: when behind, skip to the latest message per vehicle and type"),
        ("token" = Option<String>, Query, description = "Access token, when authentication is on"),
    ),
    responses(
        (status = 101, description = "Switching Protocols. The body shows the frames the server then sends.", body = ServerFrame),
        (status = 400, description = "A bad parameter (e.g. an unknown type)", body = ErrorBody),
        (status = 401, description = "Authentication is on and no valid token was given", body = ErrorBody),
        (status = 503, description = "Connection limit reached or shutting down", body = ErrorBody),
    )
)]
fn ws_all_vehicles_doc() {}

/// One vehicle's telemetry as it is committed.
#[allow(dead_code)]
#[utoipa::path(
    get,
    path = "/api/ws/vehicle/{vehicle_id}",
    tag = "streams",
    description = "WebSocket stream of one vehicle's telemetry (`subscribe` may add more). A non-integer id is an HTTP 400 before the upgrade.",
    params(
        ("vehicle_id" = String, Path, description = "Vehicle id (a positive integer) or registration code (`USV-003`)"),
        ("types" = Option<String>, Query, description = "Comma-separated message types to receive (default all)"),
        ("since" = Option<i64>, Query, minimum = 0, description = "Resume after this seq"),
        ("snapshot" = Option<String>, Query, description = "`latest`: first the vehicle's latest vehicle_log"),
        ("conflate" = Option<String>, Query, description = "`latest`: when behind, skip to the latest message per type"),
        ("token" = Option<String>, Query, description = "Access token, when authentication is on"),
    ),
    responses(
        (status = 101, description = "Switching Protocols. The body shows the frames the server then sends.", body = ServerFrame),
        (status = 400, description = "`vehicle_id` is neither an id nor a code, or another bad parameter", body = ErrorBody),
        (status = 401, description = "Authentication is on and no valid token was given", body = ErrorBody),
        (status = 403, description = "The token does not allow this vehicle", body = ErrorBody),
        (status = 503, description = "Connection limit reached or shutting down", body = ErrorBody),
    )
)]
fn ws_vehicle_doc() {}

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "docs",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object, content_type = "application/json"))
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi_text())
}

/// The AsyncAPI 3.0 document of the WebSocket protocol.
#[utoipa::path(
    get,
    path = "/api/asyncapi.json",
    tag = "docs",
    responses((status = 200, description = "The AsyncAPI 3.0 document: channels `/api/ws` and `/api/ws/vehicle/{vehicle_id}`, every frame both ways", body = Object, content_type = "application/json"))
)]
pub async fn asyncapi_json(req: HttpRequest) -> HttpResponse {
    let host = req.connection_info().host().to_owned();
    HttpResponse::Ok().json(asyncapi(&host))
}

/// `/api/docs` → `/api/docs/` (Swagger UI's assets are relative to the trailing slash).
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, format!("{DOCS_PATH}/")))
        .finish()
}

/// Swagger UI on `/api/docs/`, its assets compiled into the binary, reading `/api/openapi.json`.
pub fn swagger_ui() -> SwaggerUi {
    SwaggerUi::new(format!("{DOCS_PATH}/{{_:.*}}")).config(
        Config::new([OPENAPI_PATH])
            // The default validator badge loads an image from the internet.
            .validator_url("none")
            .try_it_out_enabled(true)
            .display_request_duration(true)
            .deep_linking(true),
    )
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "SEANO telemetry gateway",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        super::vehicles::list,
        super::vehicles::get,
        super::vehicles::history,
        super::vehicles::track,
        super::stats::ws_stats,
        super::stats::mqtt_status,
        super::health::health,
        super::health::ready,
        super::metrics_endpoint::metrics,
        openapi_json,
        asyncapi_json,
        ws_all_vehicles_doc,
        ws_vehicle_doc,
    ),
    components(schemas(
        ErrorBody, MessageTypeSchema, VehicleStateSchema, Filter, ConnectionInfo, PipelineStats,
        TypeCounts, ServerFrame, ClientFrame, ConnectionFrame, RawLogFrame, SensorLogFrame,
        VehicleLogFrame, PongFrame, SubscriptionAckFrame, SubscriptionAction, ErrorFrame,
        ResyncFrame, ConflatedFrame, PingFrame, SubscribeFrame, UnsubscribeFrame,
    )),
    modifiers(&Security),
    tags(
        (name = "vehicles", description = "Registered vehicles, stored history paged by seq, tracks"),
        (name = "streams", description = "WebSocket streams of committed telemetry"),
        (name = "operations", description = "Health, readiness, statistics and Prometheus metrics"),
        (name = "docs", description = "This document, the AsyncAPI document, and Swagger UI at /api/docs"),
    )
)]
pub struct ApiDoc;

/// Access control (off by default): a bearer token, or `token=` where a header cannot be set.
/// Both are optional in the document, as they are for a gateway with authentication off.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <token>`: a static token or a signed JWT, when authentication is on",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The same token as a query parameter (browsers cannot set headers on a WebSocket)",
            ))),
        );
        doc.security = Some(vec![
            SecurityRequirement::default(),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("token", Vec::<String>::new()),
        ]);
    }
}

const DESCRIPTION: &str = "\
Vehicles publish telemetry over MQTT (`{prefix}/{vehicle_id}/{raw_log|sensor_log|vehicle_log}`); \
the gateway stores every message and only after commit streams it over WebSocket.\n\n\
**REST.** `/api/vehicles` lists vehicles with their latest state; \
`/api/vehicles/{vehicle_id}/{type}` pages a vehicle's stored messages by `seq`, each item in the \
shape of a WebSocket data frame; `/api/vehicles/{vehicle_id}/track` gives its positions. Every \
bad parameter is a 400 whose body names it (`parameter`).\n\n\
**Streams.** `GET /api/ws` (all vehicles) and `GET /api/ws/vehicle/{vehicle_id}` upgrade to a \
WebSocket. ";

/// The OpenAPI document, with the long descriptions that do not fit in attributes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.info.description = Some(format!("{DESCRIPTION}{FRAMES_DOC}\n\n{STREAM_PARAMS_DOC}"));
    for path in ["/api/ws", "/api/ws/vehicle/{vehicle_id}"] {
        if let Some(op) = doc
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| item.get.as_mut())
        {
            let head = op.description.take().unwrap_or_default();
            op.description = Some(format!("{head}\n\n{STREAM_PARAMS_DOC}\n\n{FRAMES_DOC}"));
        }
    }
    doc
}

/// The OpenAPI document as pretty JSON, built once.
pub fn openapi_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        // unwrap: the document is plain data built from literals; serializing it cannot fail.
        serde_json::to_string_pretty(&openapi()).unwrap()
    })
}

/// Server → client messages: (id, schema, title, summary).
const SERVER_MESSAGES: &[(&str, &str, &str, &str)] = &[
    (
        "connection",
        "ConnectionFrame",
        "Connected",
        "First frame on every stream: the connection count and the filter in force.",
    ),
    (
        "raw_log",
        "RawLogFrame",
        "Raw log line",
        "A committed raw_log.",
    ),
    (
        "sensor_log",
        "SensorLogFrame",
        "Sensor reading",
        "A committed sensor_log.",
    ),
    (
        "vehicle_log",
        "VehicleLogFrame",
        "Vehicle state",
        "A committed vehicle_log; `snapshot: true` on snapshot=latest frames.",
    ),
    (
        "pong",
        "PongFrame",
        "Pong",
        "The answer to ping; echoes its timestamp.",
    ),
    (
        "subscription_ack",
        "SubscriptionAckFrame",
        "Subscription acknowledged",
        "The answer to subscribe/unsubscribe, with the resulting filter.",
    ),
    (
        "error",
        "ErrorFrame",
        "Error",
        "A client frame was not understood; the connection stays open.",
    ),
    (
        "resync",
        "ResyncFrame",
        "Resync needed",
        "since= is older than the replay window: reload history over REST.",
    ),
    (
        "conflated",
        "ConflatedFrame",
        "Messages skipped",
        "A conflate=latest client fell behind: older messages were skipped, the latest per vehicle and type follow.",
    ),
];

/// Client → server messages: (id, schema, title, summary, reply).
const CLIENT_MESSAGES: &[(&str, &str, &str, &str, &str)] = &[
    (
        "ping",
        "PingFrame",
        "Ping",
        "Application-level ping.",
        "pong",
    ),
    (
        "subscribe",
        "SubscribeFrame",
        "Subscribe",
        "Add a vehicle, or all vehicles, to the filter.",
        "subscription_ack",
    ),
    (
        "unsubscribe",
        "UnsubscribeFrame",
        "Unsubscribe",
        "Remove a vehicle, or stop all vehicles.",
        "subscription_ack",
    ),
];

/// Schemas the AsyncAPI document carries over from the OpenAPI components.
const ASYNCAPI_SCHEMAS: &[&str] = &[
    "ConnectionFrame",
    "RawLogFrame",
    "SensorLogFrame",
    "VehicleLogFrame",
    "PongFrame",
    "SubscriptionAckFrame",
    "SubscriptionAction",
    "ErrorFrame",
    "ResyncFrame",
    "ConflatedFrame",
    "PingFrame",
    "SubscribeFrame",
    "UnsubscribeFrame",
    "Filter",
    "VehicleState",
    "MessageType",
];

/// The AsyncAPI 3.0 document of the WebSocket protocol; `host` is where clients connect.
pub fn asyncapi(host: &str) -> Value {
    let openapi = serde_json::to_value(openapi()).unwrap_or(Value::Null);
    let all_schemas = &openapi["components"]["schemas"];
    let schemas: Map<String, Value> = ASYNCAPI_SCHEMAS
        .iter()
        .map(|name| ((*name).to_owned(), all_schemas[*name].clone()))
        .collect();

    let mut messages = Map::new();
    for (id, schema, title, summary) in SERVER_MESSAGES {
        let example = all_schemas[*schema]["examples"][0].clone();
        messages.insert((*id).into(), message(id, schema, title, summary, example));
    }
    for (id, schema, title, summary, _) in CLIENT_MESSAGES {
        let example = all_schemas[*schema]["examples"][0].clone();
        messages.insert((*id).into(), message(id, schema, title, summary, example));
    }

    // Both channels carry every message, both ways.
    let channel_messages = || -> Value {
        let refs: Map<String, Value> = SERVER_MESSAGES
            .iter()
            .map(|m| m.0)
            .chain(CLIENT_MESSAGES.iter().map(|m| m.0))
            .map(|id| {
                (
                    id.to_owned(),
                    json!({"$ref": format!("#/components/messages/{id}")}),
                )
            })
            .collect();
        Value::Object(refs)
    };
    let query = json!({
        "type": "object",
        "properties": {
            "types": {"type": "string", "description": "Comma-separated message types to receive (default all): raw_log, sensor_log, vehicle_log.", "examples": ["vehicle_log,sensor_log"]},
            "since": {"type": "integer", "minimum": 0, "description": "Resume: first every stored message with a larger seq that matches the filter, in order, then live with no gap and no duplicate. Older than the replay window: a `resync` frame."},
            "snapshot": {"type": "string", "enum": ["latest"], "description": "First the latest stored vehicle_log of each vehicle in the filter, marked `snapshot: true`."},
            "conflate": {"type": "string", "enum": ["latest"], "description": "When this client falls behind, skip to the latest message per vehicle and type instead of being disconnected."},
            "token": {"type": "string", "description": "Access token when authentication is on (or `Authorization: Bearer`)."}
        }
    });
    let bindings = json!({"ws": {"method": "GET", "query": query, "bindingVersion": "0.1.0"}});

    let mut operations = Map::new();
    for (channel, label) in [("allVehicles", "AllVehicles"), ("vehicle", "Vehicle")] {
        let channel_ref = json!({"$ref": format!("#/channels/{channel}")});
        let msg_ref = |id: &str| json!({"$ref": format!("#/channels/{channel}/messages/{id}")});
        operations.insert(
            format!("send{label}Frames"),
            json!({
                "action": "send",
                "channel": channel_ref,
                "title": "Frames the gateway sends",
                "summary": "The connection frame, then data frames in seq order (after any replay or snapshot), and answers to client frames.",
                "messages": SERVER_MESSAGES.iter().map(|m| msg_ref(m.0)).collect::<Vec<_>>(),
            }),
        );
        for (id, _, title, summary, reply) in CLIENT_MESSAGES {
            operations.insert(
                format!("receive{label}{}", capitalize(id)),
                json!({
                    "action": "receive",
                    "channel": channel_ref,
                    "title": title,
                    "summary": summary,
                    "messages": [msg_ref(id)],
                    "reply": {"channel": channel_ref, "messages": [msg_ref(reply)]},
                }),
            );
        }
    }

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "SEANO telemetry gateway: WebSocket streams",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!("Telemetry from the SEANO fleet, streamed only after it is committed to the database.\n\n{FRAMES_DOC}\n\n{STREAM_PARAMS_DOC}"),
            "license": {"name": "MIT"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "gateway": {
                "host": host,
                "protocol": "ws",
                "description": "This gateway (use wss behind a TLS proxy)."
            }
        },
        "channels": {
            "allVehicles": {
                "address": "/api/ws",
                "title": "All vehicles",
                "description": "Every vehicle's telemetry; `subscribe`/`unsubscribe` narrow or widen it.",
                "messages": channel_messages(),
                "bindings": bindings,
            },
            "vehicle": {
                "address": "/api/ws/vehicle/{vehicle_id}",
                "title": "One vehicle",
                "description": "One vehicle's telemetry (`subscribe` may add others). A non-integer id is an HTTP 400 before the upgrade.",
                "parameters": {"vehicle_id": {"description": "Vehicle id (a positive integer) or registration code (USV-003)."}},
                "messages": channel_messages(),
                "bindings": bindings,
            }
        },
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas,
        }
    })
}

fn message(id: &str, schema: &str, title: &str, summary: &str, example: Value) -> Value {
    let mut m = json!({
        "name": id,
        "title": title,
        "summary": summary,
        "contentType": "application/json",
        "payload": {"$ref": format!("#/components/schemas/{schema}")},
    });
    if !example.is_null() {
        m["examples"] = json!([{"name": id, "payload": example}]);
    }
    m
}

fn capitalize(s: &str) -> String {
    s.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::VehicleState;

    #[test]
    fn vehicle_state_schema_lists_every_known_field() {
        let full = VehicleState {
            battery_voltage: Some(1.0),
            battery_current: Some(1.0),
            rssi: Some(1),
            mode: Some("M".into()),
            latitude: Some(1.0),
            longitude: Some(1.0),
            altitude: Some(1.0),
            heading: Some(1.0),
            speed: Some(1.0),
            armed: Some(true),
            guided: Some(true),
            system_status: Some("S".into()),
            gps_fix: Some(1),
            roll: Some(1.0),
            pitch: Some(1.0),
            yaw: Some(1.0),
            temperature: Some(1.0),
            extra: Map::new(),
        };
        let sent: Vec<String> = serde_json::to_value(full)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let doc = serde_json::to_value(openapi()).unwrap();
        let documented: Vec<String> = doc["components"]["schemas"]["VehicleState"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let (mut a, mut b) = (sent, documented);
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn asyncapi_references_resolve() {
        let doc = asyncapi("127.0.0.1:8000");
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r.trim_start_matches('#');
            assert!(doc.pointer(pointer).is_some(), "unresolved $ref {r}");
        }
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
