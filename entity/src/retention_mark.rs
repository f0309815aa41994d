//! `retention_marks`: how far retention has purged each table. A stream resuming with
//! `since=` below a table's `purged_through_seq` has lost messages of that type, and REST
//! history of that type begins after `purged_before`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "retention_marks")]
pub struct Model {
    /// The table: `raw_logs`, `sensor_logs`, `vehicle_logs`, `command_events`, `commands`,
    /// `rejected_messages` or `rollups`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub table_name: String,
    /// The highest seq purged from it (0 for tables without seqs).
    pub purged_through_seq: i64,
    /// Every row older than this (by the time retention goes by) has been purged.
    pub purged_before: DateTimeUtc,
    /// Rows purged from it so far, by every instance.
    pub rows_purged: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
