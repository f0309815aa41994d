//! The data frame a client receives for each committed message (SPEC §3), serialized once.

use bytestring::ByteString;
use seano_wire::frame::{to_text, DataFrame};

use crate::domain::{format_time, StoredMessage};

/// Serializes one message; the same bytes go to every client that receives it.
pub fn encode(
    msg: &StoredMessage,
    broadcast_time: &str,
    connection_count: usize,
    snapshot: bool,
) -> ByteString {
    ByteString::from(to_text(&DataFrame {
        kind: msg.kind,
        vehicle_id: msg.vehicle_id,
        vehicle_code: msg.vehicle_code.as_deref().map(Into::into),
        sensor_id: msg.sensor_id,
        sensor_code: msg.sensor_code.as_deref().map(Into::into),
        data: &msg.data,
        timestamp: format_time(msg.timestamp).into(),
        broadcast_time: broadcast_time.into(),
        connection_count: connection_count as u64,
        id: msg.id,
        seq: msg.seq,
        snapshot,
    }))
}
