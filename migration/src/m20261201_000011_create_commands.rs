//! `commands`: one row per command sent to a vehicle, with its state and the time of each stage;
//! `command_events`: one row per state change, with a `seq` like telemetry, so that the changes
//! stream, resume and replay exactly as telemetry does.

use sea_orm_migration::prelude::*;

use crate::columns::{telemetry_head, telemetry_indexes, telemetry_tail};
use crate::m20261124_000001_create_vehicles::Vehicles;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Commands {
    Table,
    Id,
    RequestId,
    VehicleId,
    Command,
    Params,
    SentBy,
    Status,
    TimeoutMs,
    ExpiresAt,
    AcceptedAt,
    SentAt,
    AckedAt,
    ResolvedAt,
    AckStatus,
    Message,
    AckTimestamp,
    LateAnswer,
}

#[derive(DeriveIden)]
enum CommandEvents {
    Table,
    RequestId,
    Status,
    Data,
    DedupKey,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use Commands as C;
        let time = |c: C| {
            ColumnDef::new(c)
                .timestamp_with_time_zone()
                .null()
                .to_owned()
        };
        manager
            .create_table(
                Table::create()
                    .table(C::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(C::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(C::RequestId)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(C::VehicleId).big_integer().not_null())
                    .col(ColumnDef::new(C::Command).string_len(32).not_null())
                    .col(ColumnDef::new(C::Params).json_binary().null())
                    .col(ColumnDef::new(C::SentBy).string().not_null())
                    .col(ColumnDef::new(C::Status).string_len(16).not_null())
                    .col(ColumnDef::new(C::TimeoutMs).big_integer().not_null())
                    .col(
                        ColumnDef::new(C::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(C::AcceptedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(time(C::SentAt))
                    .col(time(C::AckedAt))
                    .col(time(C::ResolvedAt))
                    .col(ColumnDef::new(C::AckStatus).string().null())
                    .col(ColumnDef::new(C::Message).text().null())
                    .col(time(C::AckTimestamp))
                    .col(
                        ColumnDef::new(C::LateAnswer)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(C::Table, C::VehicleId)
                            .to(Vehicles::Table, Vehicles::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // The deadline sweep reads open commands by deadline; history reads a vehicle's newest.
        for (name, cols) in [
            ("idx_commands_status_expires_at", [C::Status, C::ExpiresAt]),
            ("idx_commands_vehicle_id_id", [C::VehicleId, C::Id]),
        ] {
            let mut index = Index::create();
            index.name(name).table(C::Table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }

        let mut events = Table::create();
        events.table(CommandEvents::Table).if_not_exists();
        telemetry_head(&mut events, Vehicles::Table);
        events
            .col(
                ColumnDef::new(CommandEvents::RequestId)
                    .string_len(64)
                    .not_null(),
            )
            .col(
                ColumnDef::new(CommandEvents::Status)
                    .string_len(16)
                    .not_null(),
            )
            .col(ColumnDef::new(CommandEvents::Data).json_binary().not_null());
        telemetry_tail(&mut events);
        events.col(
            ColumnDef::new(CommandEvents::DedupKey)
                .big_integer()
                .not_null(),
        );
        manager.create_table(events.to_owned()).await?;
        telemetry_indexes(manager, "command_events").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CommandEvents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Commands::Table).to_owned())
            .await
    }
}
