//! `raw_logs`: free-text log lines.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "raw_logs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub seq: i64,
    pub vehicle_id: i64,
    #[sea_orm(column_type = "Text")]
    pub data: String,
    /// The vehicle's timestamp, or the gateway's receive time when it sent none.
    pub timestamp: DateTimeUtc,
    pub received_at: DateTimeUtc,
    /// Hash of topic and payload; recognises a broker redelivery of a stored message.
    pub dedup_key: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
