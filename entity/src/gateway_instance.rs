//! `gateway_instances`: each running instance's heartbeat, rewritten every few seconds. A row
//! whose heartbeat is stale belongs to an instance that stopped or died.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "gateway_instances")]
pub struct Model {
    /// INSTANCE_ID (default: the host name).
    #[sea_orm(primary_key, auto_increment = false)]
    pub instance_id: String,
    /// The MQTT client id of its persistent session.
    pub client_id: String,
    /// MQTT_SHARED_GROUP, null for a lone instance.
    pub shared_group: Option<String>,
    pub started_at: DateTimeUtc,
    /// Its last heartbeat.
    pub heartbeat_at: DateTimeUtc,
    /// Open WebSocket connections.
    pub connections: i64,
    /// Messages it committed since it started.
    pub messages_stored: i64,
    /// Frames it sent to its clients since it started.
    pub frames_sent: i64,
    /// Messages it committed per second, over the last heartbeat interval.
    pub stored_per_second: f64,
    /// Frames it sent per second, over the last heartbeat interval.
    pub frames_per_second: f64,
    /// The last seq its clients were sent.
    pub last_seq: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
