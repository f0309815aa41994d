//! Drops the `(vehicle_id, dedup_key)` indexes of migration 7. The dedup lookup filters on
//! `dedup_key IN (..) AND seq > floor` without a vehicle, so both SQLite and PostgreSQL answer it
//! from the `seq` index (`EXPLAIN QUERY PLAN` on SQLite: `USING INDEX ... (seq>?)`); the extra
//! indexes were only written on every insert, never read.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLES: [&str; 3] = ["raw_logs", "sensor_logs", "vehicle_logs"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES {
            manager
                .drop_index(
                    Index::drop()
                        .name(format!("idx_{table}_vehicle_id_dedup_key"))
                        .table(Alias::new(table))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES {
            manager
                .create_index(
                    Index::create()
                        .name(format!("idx_{table}_vehicle_id_dedup_key"))
                        .table(Alias::new(table))
                        .col(Alias::new("vehicle_id"))
                        .col(Alias::new("dedup_key"))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
