//! A committed message: what the store hands the hub, and what the hub turns into a frame.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::MessageType;

/// FNV-1a, 64 bit: stable across versions and platforms (std's hashers are not), for keys that
/// are stored ([`crate::store`]'s dedup key) or must be cheap to copy (conflation keys).
pub fn fnv1a<'a>(bytes: impl IntoIterator<Item = &'a u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A frame's `data` in wire form.
pub fn raw_json<T: serde::Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    // unwrap: JSON values and plain structs of them always serialize.
    serde_json::value::to_raw_value(value).unwrap()
}

/// One committed telemetry row, ready to broadcast. `data` and `timestamp` are already in
/// their wire form so that the hub serializes each message exactly once.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub seq: i64,
    /// Row id in the message type's own table.
    pub id: i64,
    pub vehicle_id: i64,
    /// The vehicle's registration code, for a vehicle that publishes under one.
    pub vehicle_code: Option<String>,
    pub kind: MessageType,
    /// sensor_log: the integer sensor id, or (exclusively) the sensor's code.
    pub sensor_id: Option<i64>,
    pub sensor_code: Option<String>,
    /// The frame's `data` as JSON text: a string, the sensor values, or the vehicle state.
    pub data: Box<RawValue>,
    pub timestamp: DateTime<Utc>,
    /// When the gateway received it (for the broadcast-lag histogram).
    pub received_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        // Stored dedup keys depend on these staying exactly FNV-1a 64.
        assert_eq!(super::fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(super::fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
