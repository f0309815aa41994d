//! `gateway_instances`: one heartbeat row per running gateway instance, for `GET /api/cluster`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum GatewayInstances {
    Table,
    InstanceId,
    ClientId,
    SharedGroup,
    StartedAt,
    HeartbeatAt,
    Connections,
    MessagesStored,
    FramesSent,
    StoredPerSecond,
    FramesPerSecond,
    LastSeq,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use GatewayInstances as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(T::InstanceId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(T::ClientId).string().not_null())
                    .col(ColumnDef::new(T::SharedGroup).string().null())
                    .col(
                        ColumnDef::new(T::StartedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(T::HeartbeatAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(T::Connections).big_integer().not_null())
                    .col(ColumnDef::new(T::MessagesStored).big_integer().not_null())
                    .col(ColumnDef::new(T::FramesSent).big_integer().not_null())
                    .col(ColumnDef::new(T::StoredPerSecond).double().not_null())
                    .col(ColumnDef::new(T::FramesPerSecond).double().not_null())
                    .col(ColumnDef::new(T::LastSeq).big_integer().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(GatewayInstances::Table).to_owned())
            .await
    }
}
