//! `dedup_key` on the telemetry tables: a hash of topic and payload, so that a message the
//! broker redelivers after a crash can be recognised and stored only once.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLES: [&str; 3] = ["raw_logs", "sensor_logs", "vehicle_logs"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .add_column(
                            ColumnDef::new(Alias::new("dedup_key"))
                                .big_integer()
                                .not_null()
                                .default(0),
                        )
                        .to_owned(),
                )
                .await?;
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

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES {
            manager
                .drop_index(
                    Index::drop()
                        .name(format!("idx_{table}_vehicle_id_dedup_key"))
                        .table(Alias::new(table))
                        .to_owned(),
                )
                .await?;
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .drop_column(Alias::new("dedup_key"))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
