//! The message tables behind one trait (the three telemetry tables and `command_events`). Every operation over "the table of this message
//! type" (insert, dedup lookup, replay, history) is one generic function over [`MessageTable`],
//! and [`for_table!`] picks the table for a [`MessageType`] in one place.

use entity::{command_event, raw_log, sensor_log, vehicle_log};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Select};

use crate::domain::{raw_json, MessageType, SensorRef, StoredMessage};

/// A table of telemetry rows: `raw_logs`, `sensor_logs` or `vehicle_logs`. Each has an `id`, a
/// gateway-wide `seq`, the `vehicle_id`, the message's `timestamp` and its `dedup_key`.
pub trait MessageTable: EntityTrait {
    const KIND: MessageType;
    const ID: Self::Column;
    const SEQ: Self::Column;
    const VEHICLE_ID: Self::Column;
    const TIMESTAMP: Self::Column;
    const DEDUP_KEY: Self::Column;

    /// A row as the message the hub streams and REST serves (its `vehicle_code`, which rows do
    /// not hold, is filled in by [`super::replay::with_vehicle_codes`]).
    fn message(row: Self::Model) -> StoredMessage;

    /// Narrows a select to one sensor. Only `sensor_logs` has sensors; the others ignore it.
    fn of_sensor(select: Select<Self>, _sensor: &SensorRef) -> Select<Self> {
        select
    }
}

/// Runs `$op::<E>($args)` for the entity `E` of the message type `$kind`, and awaits it.
macro_rules! for_table {
    ($kind:expr, $op:ident($($arg:expr),* $(,)?)) => {
        match $kind {
            $crate::domain::MessageType::RawLog => {
                $op::<entity::raw_log::Entity>($($arg),*).await
            }
            $crate::domain::MessageType::SensorLog => {
                $op::<entity::sensor_log::Entity>($($arg),*).await
            }
            $crate::domain::MessageType::VehicleLog => {
                $op::<entity::vehicle_log::Entity>($($arg),*).await
            }
            $crate::domain::MessageType::CommandStatus => {
                $op::<entity::command_event::Entity>($($arg),*).await
            }
        }
    };
}
pub(crate) use for_table;

/// Implements [`MessageTable`] for a table whose columns are named as every message table's
/// are; `$data` and `$sensor` build the frame's `data` and `(sensor_id, sensor_code)` from the
/// row `$r`.
macro_rules! message_table {
    ($table:ident, $kind:ident, |$r:ident| $data:expr, $sensor:expr) => {
        impl MessageTable for $table::Entity {
            const KIND: MessageType = MessageType::$kind;
            const ID: $table::Column = $table::Column::Id;
            const SEQ: $table::Column = $table::Column::Seq;
            const VEHICLE_ID: $table::Column = $table::Column::VehicleId;
            const TIMESTAMP: $table::Column = $table::Column::Timestamp;
            const DEDUP_KEY: $table::Column = $table::Column::DedupKey;

            fn message($r: $table::Model) -> StoredMessage {
                let data = $data;
                let (sensor_id, sensor_code) = $sensor;
                StoredMessage {
                    seq: $r.seq,
                    id: $r.id,
                    vehicle_id: $r.vehicle_id,
                    vehicle_code: None,
                    kind: Self::KIND,
                    sensor_id,
                    sensor_code,
                    data,
                    timestamp: $r.timestamp,
                    received_at: $r.received_at,
                }
            }

            message_table!(@of_sensor $table);
        }
    };
    (@of_sensor sensor_log) => {
        fn of_sensor(select: Select<Self>, sensor: &SensorRef) -> Select<Self> {
            use sensor_log::Column as C;
            match sensor {
                SensorRef::Id(id) => select
                    .filter(C::SensorId.eq(*id))
                    .filter(C::SensorCode.is_null()),
                SensorRef::Code(code) => select.filter(C::SensorCode.eq(code.as_str())),
            }
        }
    };
    (@of_sensor $table:ident) => {};
}

message_table!(raw_log, RawLog, |r| raw_json(&r.data), (None, None));
// A sensor named by a code is stored with sensor_id 0 (the column predates codes).
message_table!(
    sensor_log,
    SensorLog,
    |r| raw_json(&r.data),
    (
        r.sensor_code.is_none().then_some(r.sensor_id),
        r.sensor_code
    )
);
message_table!(
    command_event,
    CommandStatus,
    |r| raw_json(&r.data),
    (None, None)
);
message_table!(
    vehicle_log,
    VehicleLog,
    |r| raw_json(&r.state()),
    (None, None)
);
