//! Wire types and validation: what a vehicle may publish and how it is decoded.
//!
//! Pure functions and plain data, no I/O: the MQTT task decodes with [`decode`], the
//! simulator (`tools/jetson-sim`) builds its payloads from the same [`payload`] types, so the
//! two cannot drift apart.

mod decode;
pub mod payload;
mod stored;
mod time;
mod topic;

pub use decode::{decode, Decoded, RejectReason, Rejection, Telemetry};
pub use payload::{SensorPayload, StructuredRawLog, VehicleState};
pub use stored::{fnv1a, raw_json, StoredMessage};
pub use time::{format_time, parse_timestamp};
pub use topic::{
    MessageType, SensorRef, Topic, VehicleKey, FIRST_CODE_VEHICLE_ID, MAX_TOPIC_VEHICLE_ID,
};
