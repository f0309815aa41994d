//! `vehicle_logs`: vehicle state; known fields typed, anything else in `extra`.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "vehicle_logs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub seq: i64,
    pub vehicle_id: i64,
    pub battery_voltage: Option<f64>,
    pub battery_current: Option<f64>,
    pub rssi: Option<i32>,
    pub mode: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub altitude: Option<f64>,
    pub heading: Option<f64>,
    pub speed: Option<f64>,
    pub armed: Option<bool>,
    pub guided: Option<bool>,
    pub system_status: Option<String>,
    pub gps_fix: Option<i32>,
    pub roll: Option<f64>,
    pub pitch: Option<f64>,
    pub yaw: Option<f64>,
    pub temperature: Option<f64>,
    /// Fields the vehicle sent that have no column of their own, as a JSON object.
    #[sea_orm(column_type = "JsonBinary")]
    pub extra: Json,
    pub timestamp: DateTimeUtc,
    pub received_at: DateTimeUtc,
    /// Hash of topic and payload; recognises a broker redelivery of a stored message.
    pub dedup_key: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
