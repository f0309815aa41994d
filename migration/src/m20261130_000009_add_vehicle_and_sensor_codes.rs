//! Registration codes: `vehicles.code` for vehicles that name themselves `USV-003` on their
//! topics (unique; null for vehicles named by a number), and `sensor_logs.sensor_code` for
//! sensors named by a code (`TEMP-001`) instead of an integer id.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const VEHICLE_CODE_INDEX: &str = "idx_vehicles_code";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("vehicles"))
                    .add_column(ColumnDef::new(Alias::new("code")).string_len(64).null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(VEHICLE_CODE_INDEX)
                    .table(Alias::new("vehicles"))
                    .col(Alias::new("code"))
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("sensor_logs"))
                    .add_column(
                        ColumnDef::new(Alias::new("sensor_code"))
                            .string_len(64)
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("sensor_logs"))
                    .drop_column(Alias::new("sensor_code"))
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(VEHICLE_CODE_INDEX)
                    .table(Alias::new("vehicles"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("vehicles"))
                    .drop_column(Alias::new("code"))
                    .to_owned(),
            )
            .await
    }
}
