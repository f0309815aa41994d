//! Schema migrations, run by the gateway at start-up (`Migrator::up`).
//!
//! One file per change, named `mYYYYMMDD_HHMMSS_<verb>_<table>.rs`. The same migrations run on
//! SQLite and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_create_vehicles;
mod m20261124_000002_create_raw_logs;
mod m20261124_000003_create_sensor_logs;
mod m20261124_000004_create_vehicle_logs;
mod m20261124_000005_create_rejected_messages;
mod m20261124_000006_create_seq_cursor;
mod m20261124_000007_add_dedup_keys;
mod m20261124_000008_drop_dedup_key_indexes;
mod m20261130_000009_add_vehicle_and_sensor_codes;
mod m20261201_000010_create_gateway_instances;
mod m20261201_000011_create_commands;
mod m20261201_000012_create_rollups_and_retention_marks;

mod columns;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_vehicles::Migration),
            Box::new(m20261124_000002_create_raw_logs::Migration),
            Box::new(m20261124_000003_create_sensor_logs::Migration),
            Box::new(m20261124_000004_create_vehicle_logs::Migration),
            Box::new(m20261124_000005_create_rejected_messages::Migration),
            Box::new(m20261124_000006_create_seq_cursor::Migration),
            Box::new(m20261124_000007_add_dedup_keys::Migration),
            Box::new(m20261124_000008_drop_dedup_key_indexes::Migration),
            Box::new(m20261130_000009_add_vehicle_and_sensor_codes::Migration),
            Box::new(m20261201_000010_create_gateway_instances::Migration),
            Box::new(m20261201_000011_create_commands::Migration),
            Box::new(m20261201_000012_create_rollups_and_retention_marks::Migration),
        ]
    }
}
