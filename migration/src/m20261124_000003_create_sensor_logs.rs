use sea_orm_migration::prelude::*;

use crate::columns::{telemetry_head, telemetry_indexes, telemetry_tail};
use crate::m20261124_000001_create_vehicles::Vehicles;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SensorLogs {
    Table,
    SensorId,
    Data,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut table = Table::create();
        table.table(SensorLogs::Table).if_not_exists();
        telemetry_head(&mut table, Vehicles::Table);
        table
            .col(
                ColumnDef::new(SensorLogs::SensorId)
                    .big_integer()
                    .not_null(),
            )
            .col(ColumnDef::new(SensorLogs::Data).json_binary().not_null());
        telemetry_tail(&mut table);
        manager.create_table(table).await?;
        telemetry_indexes(manager, "sensor_logs").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SensorLogs::Table).to_owned())
            .await
    }
}
