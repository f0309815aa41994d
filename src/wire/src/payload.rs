//! The payloads vehicles publish, one type per message kind (SPEC §2); `vehicle_log`'s is
//! [`crate::VehicleState`].
//!
//! The gateway decodes them by hand (see [`crate::VehicleState::from_object`]) so that a wrong
//! field type is rejected with a message that names the field; the simulator and the benchmark
//! serialize them with serde.

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

/// The JSON kind of a value, for error messages.
pub fn kind_of(v: &Value) -> &'static str {
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

/// A typed vehicle-state field: its JSON type, and how it is read out of a JSON object (a
/// JSON `null` counts as absent; the error names the field and what it should be).
#[doc(hidden)]
pub trait Field: Sized {
    const KIND: &'static str;
    fn take(o: &mut Map<String, Value>, key: &str) -> Result<Option<Self>, String>;
}

impl Field for f64 {
    const KIND: &'static str = "number";

    fn take(o: &mut Map<String, Value>, key: &str) -> Result<Option<Self>, String> {
        match take(o, key) {
            None => Ok(None),
            Some(v) => match as_number(&v).and_then(|n| n.as_f64()) {
                Some(f) if f.is_finite() => Ok(Some(f)),
                _ => Err(not_a_number(key, &v)),
            },
        }
    }
}

impl Field for i32 {
    const KIND: &'static str = "integer";

    fn take(o: &mut Map<String, Value>, key: &str) -> Result<Option<Self>, String> {
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
}

impl Field for bool {
    const KIND: &'static str = "boolean";

    fn take(o: &mut Map<String, Value>, key: &str) -> Result<Option<Self>, String> {
        match take(o, key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(v) => Err(format!("{key} must be a boolean, got {}", kind_of(&v))),
        }
    }
}

impl Field for String {
    const KIND: &'static str = "string";

    fn take(o: &mut Map<String, Value>, key: &str) -> Result<Option<Self>, String> {
        match take(o, key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(format!("{key} must be a string, got {}", kind_of(&v))),
        }
    }
}
