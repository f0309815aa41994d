//! The frames of the WebSocket protocol other than data frames, as the session sends them.
//! The frame types, their wording and the close codes are `seano_wire::frame`'s.

use serde::Deserialize;
use serde_json::Value;

pub use seano_wire::frame::{close, ClientFrame};
use seano_wire::frame::{
    to_text, ConflatedFrame, ConnectionFrame, ErrorFrame, PongFrame, ResyncFrame,
    SubscriptionAckFrame,
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

/// Sent to a `conflate=latest` client before the latest frames it skipped to.
pub fn conflated(skipped: u64) -> String {
    to_text(&ConflatedFrame::new(skipped))
}

pub fn error(message: &str) -> String {
    to_text(&ErrorFrame::new(message))
}

/// Query parameters of both stream endpoints.
#[derive(Debug, Default, Deserialize)]
pub struct StreamQuery {
    /// `types=vehicle_log,sensor_log`: only these message types.
    pub types: Option<String>,
    /// `since=<seq>`: first replay every stored message after this seq.
    pub since: Option<String>,
    /// `snapshot=latest`: first the latest vehicle_log of each vehicle in the filter.
    pub snapshot: Option<String>,
    /// `conflate=latest`: skip to the latest per vehicle and type when behind.
    pub conflate: Option<String>,
}
