//! `rollups`: per vehicle, type, sensor and minute, the count and each numeric field's min, max,
//! sum and last value, kept at commit time so long ranges are read without raw rows.
//! `rollup_cursor`: the seq through which every committed message is in `rollups` (the writer
//! adds them in batches; a crash leaves the rest to be added again from the rows at start-up).
//! `retention_marks`: per table, how far retention has purged it (where history now begins).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Rollups {
    Table,
    Id,
    VehicleId,
    Kind,
    Sensor,
    Minute,
    Count,
    Fields,
    LastSeq,
    LastTimestamp,
}

#[derive(DeriveIden)]
enum RollupCursor {
    Table,
    Id,
    ThroughSeq,
}

#[derive(DeriveIden)]
enum RetentionMarks {
    Table,
    TableName,
    PurgedThroughSeq,
    PurgedBefore,
    RowsPurged,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use Rollups as R;
        manager
            .create_table(
                Table::create()
                    .table(R::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(R::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(R::VehicleId).big_integer().not_null())
                    .col(ColumnDef::new(R::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(R::Sensor).string_len(64).not_null())
                    .col(
                        ColumnDef::new(R::Minute)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(R::Count).big_integer().not_null())
                    .col(ColumnDef::new(R::Fields).json_binary().not_null())
                    .col(ColumnDef::new(R::LastSeq).big_integer().not_null())
                    .col(
                        ColumnDef::new(R::LastTimestamp)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // The upsert's conflict target, and the bucketed query's range scan.
        manager
            .create_index(
                Index::create()
                    .name("idx_rollups_key")
                    .table(R::Table)
                    .col(R::VehicleId)
                    .col(R::Kind)
                    .col(R::Minute)
                    .col(R::Sensor)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Retention drops the oldest minutes first.
        manager
            .create_index(
                Index::create()
                    .name("idx_rollups_minute")
                    .table(R::Table)
                    .col(R::Minute)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RollupCursor::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RollupCursor::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RollupCursor::ThroughSeq)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Rows stored before rollups existed are not rolled up: start after them.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO rollup_cursor (id, through_seq) SELECT 1, COALESCE(MAX(value), 0) FROM seq_cursor",
            )
            .await?;
        use RetentionMarks as M;
        manager
            .create_table(
                Table::create()
                    .table(M::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(M::TableName)
                            .string_len(32)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(M::PurgedThroughSeq).big_integer().not_null())
                    .col(
                        ColumnDef::new(M::PurgedBefore)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(M::RowsPurged).big_integer().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RetentionMarks::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(RollupCursor::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Rollups::Table).to_owned())
            .await
    }
}
