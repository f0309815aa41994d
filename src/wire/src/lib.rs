//! The SEANO telemetry wire, defined once: what vehicles publish over MQTT and what the
//! gateway's WebSocket clients receive and send. The gateway, the simulator
//! (`tools/jetson-sim`) and the benchmark (`tools/bench`) all build and parse these types, and
//! the gateway's OpenAPI and AsyncAPI documents are derived from them, so none can drift from
//! another. Plain data and pure functions: serde, utoipa, chrono and url, no I/O.
//!
//! # Layout
//! - [`topic`]: `{prefix}/{vehicle}/{type}` topics, [`MessageType`], vehicle and sensor naming.
//! - [`payload`]: the `raw_log` and `sensor_log` payloads and the field readers.
//! - [`decode`]: what a vehicle may publish: one MQTT message to a [`Decoded`] message or a
//!   [`Rejection`] that names what is wrong.
//! - [`state`]: [`VehicleState`] and [`vehicle_state_fields!`], the one list of its fields.
//! - [`frame`]: every WebSocket frame both ways, the close codes, the frames' schemas.
//! - [`filter`]: a client's subscription, as `connection` and `subscription_ack` frames show it.
//! - [`reject`]: why a message is refused.
//! - [`time`]: the wire's timestamp format.
//! - [`command`]: commands to a vehicle, its answers, a command's states and record.
//! - [`broker`]: `MQTT_URL` (`mqtt://user:pass@host:port`).

pub mod broker;
pub mod command;
pub mod decode;
pub mod filter;
pub mod frame;
pub mod payload;
pub mod reject;
pub mod state;
pub mod time;
pub mod topic;

pub use broker::BrokerAddress;
pub use command::{CommandAck, CommandRecord, CommandRequest, CommandState};
pub use decode::{decode, Decoded, Rejection, Telemetry};
pub use filter::{parse_types, Filter, FilterChange};
pub use payload::{kind_of, SensorPayload, StructuredRawLog};
pub use reject::RejectReason;
pub use state::{FieldInfo, VehicleState, FIELDS};
pub use time::{format_time, parse_timestamp};
pub use topic::{
    is_code, MessageType, SensorRef, Topic, TopicError, VehicleKey, FIRST_CODE_VEHICLE_ID,
    MAX_CODE_LEN, MAX_TOPIC_VEHICLE_ID, OWN_TOPIC_TYPES,
};
