//! `vehicles`: one row per vehicle, registered on its first message.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "vehicles")]
pub struct Model {
    /// The vehicle id from the MQTT topic (not generated).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    pub first_seen_at: DateTimeUtc,
    pub last_seen_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
