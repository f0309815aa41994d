//! The payloads vehicles publish, one type per message kind (SPEC §2).
//!
//! The gateway decodes them by hand (see [`VehicleState::from_object`]) so that a wrong field
//! type is rejected with a message that names the field; the simulator serializes them with
//! serde. Both sides use these definitions.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `raw_log` in its structured form; plain UTF-8 text is accepted too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StructuredRawLog {
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// `sensor_log`: one reading of one sensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SensorPayload {
    pub sensor_id: i64,
    /// The sensor's values, any JSON object (`{"temperature": 28.5, ...}`).
    pub data: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// `vehicle_log`: flat vehicle state. Every field is optional; unknown fields go to `extra`.
///
/// Serialized, it is the `data` object of a `vehicle_log` frame.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VehicleState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_voltage: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_current: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rssi: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub armed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guided: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gps_fix: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roll: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitch: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yaw: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Fields without a column of their own, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl VehicleState {
    /// Takes the known fields out of `obj`, checking their types; what is left becomes `extra`.
    /// A JSON `null` counts as absent. The error names the field and what it should be.
    pub fn from_object(mut obj: Map<String, Value>) -> Result<Self, String> {
        let o = &mut obj;
        let mut state = VehicleState {
            battery_voltage: take_f64(o, "battery_voltage")?,
            battery_current: take_f64(o, "battery_current")?,
            rssi: take_i32(o, "rssi")?,
            mode: take_string(o, "mode")?,
            latitude: take_f64(o, "latitude")?,
            longitude: take_f64(o, "longitude")?,
            altitude: take_f64(o, "altitude")?,
            heading: take_f64(o, "heading")?,
            speed: take_f64(o, "speed")?,
            armed: take_bool(o, "armed")?,
            guided: take_bool(o, "guided")?,
            system_status: take_string(o, "system_status")?,
            gps_fix: take_i32(o, "gps_fix")?,
            roll: take_f64(o, "roll")?,
            pitch: take_f64(o, "pitch")?,
            yaw: take_f64(o, "yaw")?,
            temperature: take_f64(o, "temperature")?,
            extra: Map::new(),
        };
        state.extra = obj;
        Ok(state)
    }
}

/// The JSON kind of a value, for error messages.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn take(o: &mut Map<String, Value>, key: &str) -> Option<Value> {
    o.remove(key).filter(|v| !v.is_null())
}

/// A number, or a string that holds exactly a JSON number (`"13.76"`, `"-38"`, `"1e3"`), as
/// some vehicles send them. `"NaN"`, `"inf"`, `" 1"` and `"0x10"` are not numbers.
fn as_number(v: &Value) -> Option<serde_json::Number> {
    match v {
        Value::Number(n) => Some(n.clone()),
        Value::String(s) => s.parse::<serde_json::Number>().ok(),
        _ => None,
    }
}

/// Why `v` is not a number, for error messages.
fn not_a_number(key: &str, v: &Value) -> String {
    match v {
        Value::String(s) => format!("{key} must be a number, got the string '{s}'"),
        _ => format!("{key} must be a number, got {}", kind_of(v)),
    }
}

fn take_f64(o: &mut Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
    match take(o, key) {
        None => Ok(None),
        Some(v) => match as_number(&v).and_then(|n| n.as_f64()) {
            Some(f) if f.is_finite() => Ok(Some(f)),
            _ => Err(not_a_number(key, &v)),
        },
    }
}

fn take_i32(o: &mut Map<String, Value>, key: &str) -> Result<Option<i32>, String> {
    match take(o, key) {
        None => Ok(None),
        Some(v) => {
            let n = as_number(&v).ok_or_else(|| match v {
                Value::String(_) => not_a_number(key, &v),
                _ => format!("{key} must be an integer, got {}", kind_of(&v)),
            })?;
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= i32::MIN as f64 && *f <= i32::MAX as f64)
                .map(|f| Some(f as i32))
                .ok_or_else(|| format!("{key} must be a 32-bit integer, got {n}"))
        }
    }
}

fn take_bool(o: &mut Map<String, Value>, key: &str) -> Result<Option<bool>, String> {
    match take(o, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(v) => Err(format!("{key} must be a boolean, got {}", kind_of(&v))),
    }
}

fn take_string(o: &mut Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match take(o, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(format!("{key} must be a string, got {}", kind_of(&v))),
    }
}

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
}
