//! `rollups`: one row per vehicle, message type, sensor and minute of message time, kept by the
//! store's writer in each batch's transaction. Bucketed history merges these rows instead of
//! reading raw ones.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "rollups")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub vehicle_id: i64,
    /// The message type: `raw_log`, `sensor_log`, `vehicle_log` or `command_status`.
    pub kind: String,
    /// sensor_log: the sensor's id or code; empty for the other types.
    pub sensor: String,
    /// The minute (of the messages' own timestamps) this row covers.
    pub minute: DateTimeUtc,
    /// Messages in that minute.
    pub count: i64,
    /// Each numeric field: `[min, max, sum, n, last, last_ms, last_seq]`, where `last` is the
    /// value of the latest message (by timestamp, then seq) that had the field.
    #[sea_orm(column_type = "JsonBinary")]
    pub fields: Json,
    /// The latest message in the minute (by timestamp, then seq).
    pub last_seq: i64,
    pub last_timestamp: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
