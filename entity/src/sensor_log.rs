//! `sensor_logs`: one reading of one sensor, its values kept as JSON.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "sensor_logs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub seq: i64,
    pub vehicle_id: i64,
    /// The integer sensor id; 0 when the sensor is named by `sensor_code` instead.
    pub sensor_id: i64,
    /// The sensor's code (`TEMP-001`), when it is named by one.
    pub sensor_code: Option<String>,
    #[sea_orm(column_type = "JsonBinary")]
    pub data: Json,
    pub timestamp: DateTimeUtc,
    pub received_at: DateTimeUtc,
    /// Hash of topic and payload; recognises a broker redelivery of a stored message.
    pub dedup_key: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
