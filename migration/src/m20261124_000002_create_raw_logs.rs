use sea_orm_migration::prelude::*;

use crate::columns::{telemetry_head, telemetry_indexes, telemetry_tail};
use crate::m20261124_000001_create_vehicles::Vehicles;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RawLogs {
    Table,
    Data,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut table = Table::create();
        table.table(RawLogs::Table).if_not_exists();
        telemetry_head(&mut table, Vehicles::Table);
        table.col(ColumnDef::new(RawLogs::Data).text().not_null());
        telemetry_tail(&mut table);
        manager.create_table(table).await?;
        telemetry_indexes(manager, "raw_logs").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RawLogs::Table).to_owned())
            .await
    }
}
