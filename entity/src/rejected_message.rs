//! `rejected_messages`: every MQTT message the gateway could not accept, kept as received.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "rejected_messages")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(column_type = "Text")]
    pub topic: String,
    /// The payload bytes exactly as received.
    pub payload: Vec<u8>,
    /// Machine-readable reason (`invalid_json`, `invalid_field`, ...).
    pub reason: String,
    /// Human-readable detail of what was wrong.
    #[sea_orm(column_type = "Text")]
    pub detail: String,
    pub received_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
