//! Column shapes shared by the three telemetry tables.

use sea_orm_migration::prelude::*;

/// Columns every telemetry table starts with: `id`, `seq`, `vehicle_id`.
pub fn telemetry_head(table: &mut TableCreateStatement, vehicles: impl IntoIden) {
    table
        .col(
            ColumnDef::new(Alias::new("id"))
                .big_integer()
                .not_null()
                .auto_increment()
                .primary_key(),
        )
        .col(
            ColumnDef::new(Alias::new("seq"))
                .big_integer()
                .not_null()
                .unique_key(),
        )
        .col(
            ColumnDef::new(Alias::new("vehicle_id"))
                .big_integer()
                .not_null(),
        )
        .foreign_key(
            ForeignKey::create()
                .from_col(Alias::new("vehicle_id"))
                .to(vehicles, Alias::new("id")),
        );
}

/// Columns every telemetry table ends with: `timestamp`, `received_at`.
pub fn telemetry_tail(table: &mut TableCreateStatement) {
    table
        .col(
            ColumnDef::new(Alias::new("timestamp"))
                .timestamp_with_time_zone()
                .not_null(),
        )
        .col(
            ColumnDef::new(Alias::new("received_at"))
                .timestamp_with_time_zone()
                .not_null(),
        );
}

/// History queries read one vehicle's rows by time or by seq.
pub async fn telemetry_indexes(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    for cols in [["vehicle_id", "timestamp"], ["vehicle_id", "seq"]] {
        manager
            .create_index(
                Index::create()
                    .name(format!("idx_{table}_{}_{}", cols[0], cols[1]))
                    .table(Alias::new(table))
                    .col(Alias::new(cols[0]))
                    .col(Alias::new(cols[1]))
                    .to_owned(),
            )
            .await?;
    }
    Ok(())
}
