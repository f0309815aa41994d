//! sea-orm entities for the gateway's tables. The schema itself lives in the `migration` crate.
//!
//! Every stored telemetry row carries `seq`, the gateway-wide cursor that orders messages of all
//! types (and command state changes) in commit order; `seq_cursor` holds its high-water mark.

pub mod command;
pub mod command_event;
pub mod gateway_instance;
pub mod raw_log;
pub mod rejected_message;
pub mod retention_mark;
pub mod rollup;
pub mod sensor_log;
pub mod seq_cursor;
pub mod vehicle;
pub mod vehicle_log;

pub mod prelude {
    pub use super::command::Entity as Command;
    pub use super::command_event::Entity as CommandEvent;
    pub use super::gateway_instance::Entity as GatewayInstance;
    pub use super::raw_log::Entity as RawLog;
    pub use super::rejected_message::Entity as RejectedMessage;
    pub use super::retention_mark::Entity as RetentionMark;
    pub use super::rollup::Entity as Rollup;
    pub use super::sensor_log::Entity as SensorLog;
    pub use super::seq_cursor::Entity as SeqCursor;
    pub use super::vehicle::Entity as Vehicle;
    pub use super::vehicle_log::Entity as VehicleLog;
}
