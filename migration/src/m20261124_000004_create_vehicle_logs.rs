use sea_orm_migration::prelude::*;

use crate::columns::{telemetry_head, telemetry_indexes, telemetry_tail};
use crate::m20261124_000001_create_vehicles::Vehicles;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum VehicleLogs {
    Table,
    BatteryVoltage,
    BatteryCurrent,
    Rssi,
    Mode,
    Latitude,
    Longitude,
    Altitude,
    Heading,
    Speed,
    Armed,
    Guided,
    SystemStatus,
    GpsFix,
    Roll,
    Pitch,
    Yaw,
    Temperature,
    Extra,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut table = Table::create();
        table.table(VehicleLogs::Table).if_not_exists();
        telemetry_head(&mut table, Vehicles::Table);
        for col in [
            VehicleLogs::BatteryVoltage,
            VehicleLogs::BatteryCurrent,
            VehicleLogs::Latitude,
            VehicleLogs::Longitude,
            VehicleLogs::Altitude,
            VehicleLogs::Heading,
            VehicleLogs::Speed,
            VehicleLogs::Roll,
            VehicleLogs::Pitch,
            VehicleLogs::Yaw,
            VehicleLogs::Temperature,
        ] {
            table.col(ColumnDef::new(col).double().null());
        }
        for col in [VehicleLogs::Rssi, VehicleLogs::GpsFix] {
            table.col(ColumnDef::new(col).integer().null());
        }
        for col in [VehicleLogs::Mode, VehicleLogs::SystemStatus] {
            table.col(ColumnDef::new(col).text().null());
        }
        for col in [VehicleLogs::Armed, VehicleLogs::Guided] {
            table.col(ColumnDef::new(col).boolean().null());
        }
        table.col(ColumnDef::new(VehicleLogs::Extra).json_binary().not_null());
        telemetry_tail(&mut table);
        manager.create_table(table).await?;
        telemetry_indexes(manager, "vehicle_logs").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(VehicleLogs::Table).to_owned())
            .await
    }
}
