//! The frames of the WebSocket protocol other than data frames, as the session sends them.
//! The frame types, their wording and the close codes are `seano_wire::frame`'s.

use serde::Deserialize;
use serde_json::Value;

pub use seano_wire::frame::{close, ClientFrame};
use seano_wire::frame::{
    to_text, CommandAcceptedFrame, ConflatedFrame, ConnectionFrame, ErrorFrame, PongFrame,
    ResyncFrame, SubscriptionAckFrame,
};

use crate::hub::{Filter, FilterChange};

pub fn connection(connection_count: usize, vehicle_id: Option<i64>, filter: &Filter) -> String {
    to_text(&ConnectionFrame::new(
        connection_count,
        vehicle_id,
        filter.clone(),
    ))
}

pub fn pong(timestamp: Value, vehicle_id: Option<i64>) -> String {
    to_text(&PongFrame::new(timestamp, vehicle_id))
}

pub fn subscription_ack(change: FilterChange, filter: &Filter) -> String {
    to_text(&SubscriptionAckFrame::new(change, filter.clone()))
}

/// Sent instead of a replay when `since` is outside the replay window (or ahead of the last
/// seq): the client should reload history over REST; the live stream follows.
pub fn resync(since: i64, last_seq: i64, replay_window: i64) -> String {
    to_text(&ResyncFrame::new(since, last_seq, replay_window))
}

/// Sent instead of replaying when retention removed messages after `since` (up to `purged`).
pub fn purged(since: i64, last_seq: i64, replay_window: i64, purged: i64) -> String {
    to_text(&ResyncFrame::purged(since, last_seq, replay_window, purged))
}

/// Sent to a `conflate=latest` client before the latest frames it skipped to.
pub fn conflated(skipped: u64) -> String {
    to_text(&ConflatedFrame::new(skipped))
}

pub fn error(message: &str) -> String {
    to_text(&ErrorFrame::new(message))
}

/// A refused client frame; a refused command's `request_id` goes back with it.
pub fn command_error(message: &str, request_id: Option<String>) -> String {
    to_text(&ErrorFrame::command(message, request_id))
}

pub fn command_accepted(record: seano_wire::CommandRecord, repeat: bool) -> String {
    to_text(&CommandAcceptedFrame::new(record, repeat))
}

/// `latest`, the one value `snapshot=` and `conflate=` take.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Latest {
    Latest,
}

/// Query parameters of both stream endpoints; the handler checks each (a bad one is a 400
/// naming it). The documents describe them from here.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
// A misspelt parameter (`sinse=`) is a 400, not a stream that silently does not resume.
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Message types to receive, comma-separated: `vehicle_log,sensor_log` (default all).
    #[param(value_type = Option<Vec<crate::domain::MessageType>>, explode = false,
            example = json!(["vehicle_log", "sensor_log"]))]
    pub types: Option<String>,
    /// A seq to resume after: first every stored message with a larger seq that matches the
    /// filter, in order, then live with no gap and no duplicate; older than the replay window
    /// gives a `resync` frame.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub since: Option<String>,
    /// `latest`: first the latest stored vehicle_log of each vehicle in the filter, marked
    /// `"snapshot": true`.
    #[param(value_type = Option<Latest>, inline)]
    pub snapshot: Option<String>,
    /// `latest`: when this client falls behind, skip to the latest message per vehicle and type
    /// instead of being disconnected.
    #[param(value_type = Option<Latest>, inline)]
    pub conflate: Option<String>,
    /// The access token, when authentication is on (or an `Authorization: Bearer` header).
    pub token: Option<String>,
}

/// The headers of a WebSocket upgrade (RFC 6455), which a plain GET lacks: the stream
/// endpoints answer it with a 400. Documentation only; actix-ws checks them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct UpgradeHeaders {
    /// `websocket`.
    #[param(rename = "Upgrade", pattern = "^websocket$")]
    upgrade: String,
    /// `Upgrade`.
    #[param(rename = "Connection", pattern = "^Upgrade$")]
    connection: String,
    /// `13`.
    #[param(rename = "Sec-WebSocket-Version", pattern = "^13$")]
    version: String,
    /// 16 random bytes, base64.
    #[param(rename = "Sec-WebSocket-Key", pattern = "^[A-Za-z0-9+/]{21}[AQgw]==$")]
    key: String,
}
