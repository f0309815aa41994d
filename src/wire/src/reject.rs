//! Why the gateway refuses a message: the names stats, metrics and `rejected_messages` use.

use serde::Serialize;

/// Why a message was rejected; the machine-readable half of the gateway's `Rejection`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Under the prefix, but not `{prefix}/{vehicle}/{raw_log|sensor_log|vehicle_log}` nor
    /// `{prefix}/{vehicle}/{sensor}/sensor_log`.
    UnknownTopic,
    /// The vehicle level is neither a positive integer id nor a registration code (or the
    /// sensor level is not a sensor id or code).
    InvalidVehicleId,
    EmptyPayload,
    PayloadTooLarge,
    InvalidUtf8,
    InvalidJson,
    /// Valid JSON of the wrong shape: a field of the wrong type, a missing field, a bad timestamp.
    InvalidField,
    /// Valid, but the database refused to store it (kept here instead of stalling ingest).
    StorageError,
    /// An ack whose `request_id` names no command the gateway sent to that vehicle.
    UnknownRequest,
}

impl RejectReason {
    pub const ALL: [RejectReason; 9] = [
        Self::UnknownTopic,
        Self::InvalidVehicleId,
        Self::EmptyPayload,
        Self::PayloadTooLarge,
        Self::InvalidUtf8,
        Self::InvalidJson,
        Self::InvalidField,
        Self::StorageError,
        Self::UnknownRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownTopic => "unknown_topic",
            Self::InvalidVehicleId => "invalid_vehicle_id",
            Self::EmptyPayload => "empty_payload",
            Self::PayloadTooLarge => "payload_too_large",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::InvalidJson => "invalid_json",
            Self::InvalidField => "invalid_field",
            Self::StorageError => "storage_error",
            Self::UnknownRequest => "unknown_request",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}
