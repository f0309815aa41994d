//! `command_events`: one row per state change of a command, with a gateway-wide `seq` like
//! telemetry; `data` is the command's record as the change left it.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "command_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub seq: i64,
    pub vehicle_id: i64,
    pub request_id: String,
    pub status: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub data: Json,
    /// When the state changed.
    pub timestamp: DateTimeUtc,
    pub received_at: DateTimeUtc,
    /// Hash of request_id and status (the telemetry tables' dedup column).
    pub dedup_key: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
