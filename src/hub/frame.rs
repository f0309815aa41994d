//! The data frame a client receives for each committed message (SPEC §3).

use bytestring::ByteString;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::domain::{format_time, MessageType, StoredMessage};

#[derive(Serialize)]
struct DataFrame<'a> {
    #[serde(rename = "type")]
    kind: MessageType,
    vehicle_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    vehicle_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sensor_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sensor_code: Option<&'a str>,
    data: &'a RawValue,
    timestamp: String,
    broadcast_time: &'a str,
    connection_count: usize,
    id: i64,
    seq: i64,
    /// Present (true) on `snapshot=latest` frames, which must not move a client's resume cursor.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    snapshot: bool,
}

/// Serializes one message; the same bytes go to every client that receives it.
pub fn encode(
    msg: &StoredMessage,
    broadcast_time: &str,
    connection_count: usize,
    snapshot: bool,
) -> ByteString {
    let frame = DataFrame {
        kind: msg.kind,
        vehicle_id: msg.vehicle_id,
        vehicle_code: msg.vehicle_code.as_deref(),
        sensor_id: msg.sensor_id,
        sensor_code: msg.sensor_code.as_deref(),
        data: &msg.data,
        timestamp: format_time(msg.timestamp),
        broadcast_time,
        connection_count,
        id: msg.id,
        seq: msg.seq,
        snapshot,
    };
    // unwrap: a struct of strings, numbers and pre-validated raw JSON always serializes.
    ByteString::from(serde_json::to_string(&frame).unwrap())
}
