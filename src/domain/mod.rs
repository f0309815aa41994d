//! The committed message the store hands the hub, and the wire types the gateway uses.
//!
//! The wire types and their validation (topics, payloads, the vehicle-state fields, `decode`)
//! live in the `seano-wire` crate (`src/wire/`), shared with the simulator and the benchmark;
//! they are re-exported here so the gateway names them one way.

mod stored;

pub use seano_wire::{
    decode, format_time, parse_timestamp, CommandAck, CommandRecord, CommandRequest, CommandState,
    Decoded, MessageType, RejectReason, Rejection, SensorPayload, SensorRef, StructuredRawLog,
    Telemetry, Topic, VehicleKey, VehicleState, FIRST_CODE_VEHICLE_ID, MAX_TOPIC_VEHICLE_ID,
};
pub use stored::{fnv1a, raw_json, StoredMessage};
