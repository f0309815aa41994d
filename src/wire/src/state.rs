//! The vehicle state a `vehicle_log` carries, and the one list of its known fields.
//!
//! [`vehicle_state_fields!`] is the list: each field's name, Rust type, dashboard label and
//! doc. Everything that names the fields expands it: [`VehicleState`] and its OpenAPI schema,
//! [`VehicleState::from_object`], [`FIELDS`] (which the dashboard reads), the `vehicle_logs`
//! entity with its row builder and its way back to a state (`entity::vehicle_log`). Adding a
//! field here adds it everywhere; only a migration that adds its column is written by hand.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::payload::Field;

/// Expands `$callback! { $($arg)* ; field, field, ... }` with every known vehicle-state field,
/// each written `#[doc = ".."] name: Type = "Dashboard label"`. `Type` is one of `f64`, `i32`,
/// `bool`, `String`; every field is optional on the wire and nullable in the database.
#[macro_export]
macro_rules! vehicle_state_fields {
    ($callback:ident $(, $arg:tt)* $(,)?) => {
        $callback! { $($arg)* ;
            /// Volts.
            battery_voltage: f64 = "Battery V",
            /// Amperes.
            battery_current: f64 = "Current A",
            /// dBm.
            rssi: i32 = "RSSI dBm",
            /// Autopilot mode (`GUIDED`, `AUTO`, `RTL`, `MANUAL`, ...).
            mode: String = "Mode",
            /// Degrees, WGS 84.
            latitude: f64 = "Latitude",
            /// Degrees, WGS 84.
            longitude: f64 = "Longitude",
            /// Metres.
            altitude: f64 = "Altitude m",
            /// Degrees from north.
            heading: f64 = "Heading °",
            /// Metres per second.
            speed: f64 = "Speed m/s",
            /// Whether the motors are armed.
            armed: bool = "Armed",
            /// Whether the autopilot is in a guided mode.
            guided: bool = "Guided",
            /// `ACTIVE`, `STANDBY`, ...
            system_status: String = "Status",
            /// GPS fix type (0 none, 2 2D, 3 3D, ...).
            gps_fix: i32 = "GPS fix",
            /// Degrees.
            roll: f64 = "Roll",
            /// Degrees.
            pitch: f64 = "Pitch",
            /// Degrees.
            yaw: f64 = "Yaw",
            /// Degrees Celsius.
            temperature: f64 = "Temp °C",
        }
    };
}

/// One known vehicle-state field, for tables that list them (the dashboard's labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FieldInfo {
    pub name: &'static str,
    /// `number`, `integer`, `boolean` or `string`: its JSON type.
    pub kind: &'static str,
    pub label: &'static str,
}

macro_rules! define_vehicle_state {
    ( ; $( $(#[$doc:meta])* $name:ident : $ty:ident = $label:literal ),* $(,)? ) => {
        /// `vehicle_log`: flat vehicle state. Every field is optional; unknown fields go to
        /// `extra`. Serialized, it is the `data` object of a `vehicle_log` frame, exactly as the
        /// vehicle published it.
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
        #[schema(examples(json!({
            "battery_voltage": 12.4, "battery_current": 1.8, "rssi": -38, "mode": "GUIDED",
            "latitude": -6.2088, "longitude": 106.8456, "heading": 90.0, "armed": true,
            "guided": true, "system_status": "ACTIVE", "speed": 12.5
        })))]
        pub struct VehicleState {
            $(
                $(#[$doc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $name: Option<$ty>,
            )*
            /// Any other field the vehicle sent, kept as sent.
            #[serde(flatten)]
            #[schema(value_type = std::collections::HashMap<String, Value>)]
            pub extra: Map<String, Value>,
        }

        impl VehicleState {
            /// Takes the known fields out of `obj`, checking their types; what is left becomes
            /// `extra`. A JSON `null` counts as absent. The error names the field and what it
            /// should be.
            pub fn from_object(mut obj: Map<String, Value>) -> Result<Self, String> {
                Ok(VehicleState {
                    $( $name: <$ty as Field>::take(&mut obj, stringify!($name))?, )*
                    extra: obj,
                })
            }
        }

        /// Every known field, in the list's order.
        pub const FIELDS: &[FieldInfo] = &[
            $( FieldInfo {
                name: stringify!($name),
                kind: <$ty as Field>::KIND,
                label: $label,
            }, )*
        ];
    };
}

vehicle_state_fields!(define_vehicle_state);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vehicle_state_round_trips_known_and_extra_fields() {
        let sent = json!({"battery_voltage": 12.4, "rssi": -38, "mode": "GUIDED", "armed": true,
                          "gps_fix": 3, "water_temp": 27.1, "note": {"a": 1}});
        let state = VehicleState::from_object(sent.as_object().unwrap().clone()).unwrap();
        assert_eq!(state.rssi, Some(-38));
        assert_eq!(state.extra.len(), 2);
        assert_eq!(serde_json::to_value(&state).unwrap(), sent);
    }

    #[test]
    fn numbers_sent_as_strings_fill_the_typed_columns() {
        let sent = json!({"battery_voltage": "13.76", "rssi": "-66", "pitch": "-0.0",
                          "gps_fix": 4, "mode": "42"});
        let state = VehicleState::from_object(sent.as_object().unwrap().clone()).unwrap();
        assert_eq!(state.battery_voltage, Some(13.76));
        assert_eq!(state.rssi, Some(-66));
        assert_eq!(state.pitch, Some(-0.0));
        assert_eq!(state.mode.as_deref(), Some("42"), "text fields stay text");
        assert!(state.extra.is_empty());
    }

    #[test]
    fn vehicle_state_names_the_wrong_field() {
        for (field, value, want) in [
            (
                "battery_voltage",
                json!("12.4 V"),
                "battery_voltage must be a number, got the string '12.4 V'",
            ),
            (
                "speed",
                json!("NaN"),
                "speed must be a number, got the string 'NaN'",
            ),
            (
                "rssi",
                json!(-38.5),
                "rssi must be a 32-bit integer, got -38.5",
            ),
            ("armed", json!(1), "armed must be a boolean, got a number"),
            (
                "mode",
                json!(["AUTO"]),
                "mode must be a string, got an array",
            ),
        ] {
            let mut obj = Map::new();
            obj.insert(field.into(), value);
            assert_eq!(VehicleState::from_object(obj).unwrap_err(), want);
        }
    }

    #[test]
    fn every_field_is_listed_with_its_json_type() {
        let kinds: Vec<_> = FIELDS.iter().map(|f| (f.name, f.kind)).collect();
        assert_eq!(kinds.len(), 17);
        assert!(kinds.contains(&("rssi", "integer")));
        assert!(kinds.contains(&("armed", "boolean")));
        assert!(kinds.contains(&("mode", "string")));
        assert!(kinds.contains(&("latitude", "number")));
    }
}
