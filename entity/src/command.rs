//! `commands`: a command sent to a vehicle, its state and the time of each stage.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "commands")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The idempotency key: one command per request_id.
    #[sea_orm(unique)]
    pub request_id: String,
    pub vehicle_id: i64,
    pub command: String,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub params: Option<Json>,
    pub sent_by: String,
    /// `accepted`, `sent`, `succeeded`, `failed`, `timed_out` or `expired`.
    pub status: String,
    pub timeout_ms: i64,
    /// `accepted_at` + `timeout_ms`: the deadline of both sending and answering.
    pub expires_at: DateTimeUtc,
    pub accepted_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
    pub acked_at: Option<DateTimeUtc>,
    pub resolved_at: Option<DateTimeUtc>,
    pub ack_status: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub message: Option<String>,
    pub ack_timestamp: Option<DateTimeUtc>,
    pub late_answer: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
