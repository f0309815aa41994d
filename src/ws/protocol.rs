//! The frames of the WebSocket protocol other than data frames (SPEC §3), and close codes.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::format_time;
use crate::hub::{Filter, FilterChange};

/// Close codes. 1000-range codes are the standard ones; 3000-3499 mean "reconnect (and resume
/// with `since=`)", 3500-3999 "do not reconnect with the same request" (as Centrifugo does).
pub mod close {
    /// The server is shutting down: reconnect.
    pub const GOING_AWAY: u16 = 1001;
    /// A client frame was larger than `WS_MAX_FRAME_BYTES`.
    pub const TOO_BIG: u16 = 1009;
    /// The client's queue overflowed: reconnect and resume.
    pub const SLOW_CONSUMER: u16 = 3001;
    /// Nothing heard from the client within `WS_CLIENT_TIMEOUT_SECS`.
    pub const HEARTBEAT_TIMEOUT: u16 = 3002;
    /// The server cannot serve the stream right now (e.g. the database is away): reconnect.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// What a client may send.
#[derive(Debug, PartialEq)]
pub enum ClientFrame {
    Ping(Value),
    Change(FilterChange),
}

/// Parses a client text frame; the error is the message of the `error` frame to answer with.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, String> {
    // SEANO's exact wording, which existing React clients may show.
    let value: Value = serde_json::from_str(text).map_err(|_| "Invalid JSON format".to_owned())?;
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
        "ping" => Ok(ClientFrame::Ping(
            obj.get("timestamp").cloned().unwrap_or(Value::Null),
        )),
        "subscribe" => Ok(ClientFrame::Change(FilterChange::Subscribe(vehicle()?))),
        "unsubscribe" => Ok(ClientFrame::Change(FilterChange::Unsubscribe(vehicle()?))),
        other => Err(format!("Unknown message type: {other}")),
    }
}

#[derive(Serialize)]
pub struct Connection<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub message: &'static str,
    pub timestamp: String,
    pub connection_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vehicle_id: Option<i64>,
    /// The subscription in force, so a client knows what it will receive.
    pub filter: &'a Filter,
}

pub fn connection(connection_count: usize, vehicle_id: Option<i64>, filter: &Filter) -> String {
    to_json(&Connection {
        kind: "connection",
        message: "Connected to SEANO real-time data stream",
        timestamp: format_time(Utc::now()),
        connection_count,
        vehicle_id,
        filter,
    })
}

pub fn pong(timestamp: Value, vehicle_id: Option<i64>) -> String {
    #[derive(Serialize)]
    struct Pong {
        #[serde(rename = "type")]
        kind: &'static str,
        timestamp: Value,
        server_time: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        vehicle_id: Option<i64>,
    }
    to_json(&Pong {
        kind: "pong",
        timestamp,
        server_time: format_time(Utc::now()),
        vehicle_id,
    })
}

pub fn subscription_ack(change: FilterChange, filter: &Filter) -> String {
    #[derive(Serialize)]
    struct Ack<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        action: &'static str,
        vehicle_id: Option<i64>,
        filter: &'a Filter,
    }
    let (action, vehicle_id) = match change {
        FilterChange::Subscribe(v) => ("subscribe", v),
        FilterChange::Unsubscribe(v) => ("unsubscribe", v),
    };
    to_json(&Ack {
        kind: "subscription_ack",
        action,
        vehicle_id,
        filter,
    })
}

/// Sent instead of a replay when `since` is outside the replay window (or ahead of the last
/// seq): the client should reload history over REST; the live stream follows.
pub fn resync(since: i64, last_seq: i64, replay_window: i64) -> String {
    to_json(&serde_json::json!({
        "type": "resync",
        "message": "since is outside the replay window; reload history over REST (after_seq) and continue from the live stream",
        "since": since,
        "last_seq": last_seq,
        "replay_window": replay_window,
    }))
}

/// Sent to a `conflate=latest` client before the latest frames it skipped to.
pub fn conflated(skipped: u64) -> String {
    to_json(&serde_json::json!({
        "type": "conflated",
        "skipped": skipped,
        "message": "you fell behind: older messages were skipped, the latest per vehicle and type follow",
    }))
}

pub fn error(message: &str) -> String {
    #[derive(Serialize)]
    struct Error<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        message: &'a str,
    }
    to_json(&Error {
        kind: "error",
        message,
    })
}

fn to_json<T: Serialize>(v: &T) -> String {
    // unwrap: these frames are plain structs of strings, numbers and JSON values.
    serde_json::to_string(v).unwrap()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_frames_and_explains_bad_ones() {
        assert_eq!(
            parse_client_frame(r#"{"type":"ping","timestamp":5}"#),
            Ok(ClientFrame::Ping(5.into()))
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"subscribe","vehicle_id":7}"#),
            Ok(ClientFrame::Change(FilterChange::Subscribe(Some(7))))
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"unsubscribe"}"#),
            Ok(ClientFrame::Change(FilterChange::Unsubscribe(None)))
        );
        assert_eq!(
            parse_client_frame("{nope").unwrap_err(),
            "Invalid JSON format"
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"dance"}"#).unwrap_err(),
            "Unknown message type: dance"
        );
        assert!(parse_client_frame(r#"{"type":"subscribe","vehicle_id":"7"}"#).is_err());
        assert!(parse_client_frame(r#"{"type":"subscribe","vehicle_id":-1}"#).is_err());
        assert!(parse_client_frame("[]").is_err());
    }
}
