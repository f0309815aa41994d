//! Malformed messages, one [`BadKind`] per kind of bad input SPEC §2 says the gateway must
//! reject (and keep) without stalling: each is derived from a good payload, the way a buggy
//! Jetson script would garble it, and each maps to exactly one [`RejectReason`].

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use seano_wire::{MessageType, RejectReason, SensorPayload, Topic, VehicleState};
use serde::Serialize;
use serde_json::{Map, Value};

/// A kind of malformed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BadKind {
    /// `{prefix}/7.0/vehicle_log`: the vehicle level is neither a positive integer id nor a
    /// registration code (letters, digits, `-`, `_`, with a letter).
    NonIntegerVehicleId,
    /// Truncated JSON, a Python dict repr, a `NaN`, two objects run together.
    InvalidJson,
    /// A `vehicle_log` field of the wrong type (`"battery_voltage": "12.4 V"`), or a
    /// `sensor_log` whose `data` is a string.
    WrongFieldType,
    /// A `sensor_log` whose `sensor_id` is a fraction, or a string that is neither an integer
    /// nor a sensor code.
    NonIntegerSensorId,
    /// Zero bytes.
    EmptyPayload,
    /// A `raw_log` dump of `bad_oversize_bytes` bytes.
    OversizedPayload,
    /// Latin-1 text (`28.4\xB0C`) where UTF-8 is required.
    InvalidUtf8,
    /// `{prefix}/{id}/telemetry`. Not in [`BadKind::DEFAULT`]: the gateway subscribes to the
    /// three telemetry types only, so it never sees these.
    UnknownTopic,
}

impl BadKind {
    pub const ALL: [BadKind; 8] = [
        Self::NonIntegerVehicleId,
        Self::InvalidJson,
        Self::WrongFieldType,
        Self::NonIntegerSensorId,
        Self::EmptyPayload,
        Self::OversizedPayload,
        Self::InvalidUtf8,
        Self::UnknownTopic,
    ];

    /// The kinds `--bad-ratio` draws from unless `--bad-kinds` says otherwise: every kind that
    /// reaches a gateway subscribed to `{prefix}/+/{raw_log|sensor_log|vehicle_log}`.
    pub const DEFAULT: [BadKind; 7] = [
        Self::NonIntegerVehicleId,
        Self::InvalidJson,
        Self::WrongFieldType,
        Self::NonIntegerSensorId,
        Self::EmptyPayload,
        Self::OversizedPayload,
        Self::InvalidUtf8,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NonIntegerVehicleId => "non_integer_vehicle_id",
            Self::InvalidJson => "invalid_json",
            Self::WrongFieldType => "wrong_field_type",
            Self::NonIntegerSensorId => "non_integer_sensor_id",
            Self::EmptyPayload => "empty_payload",
            Self::OversizedPayload => "oversized_payload",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::UnknownTopic => "unknown_topic",
        }
    }

    /// Why the gateway rejects this kind (`seano_wire::decode`), given a payload
    /// limit below `bad_oversize_bytes`.
    pub fn expected_reason(self) -> RejectReason {
        match self {
            Self::NonIntegerVehicleId => RejectReason::InvalidVehicleId,
            Self::InvalidJson => RejectReason::InvalidJson,
            Self::WrongFieldType | Self::NonIntegerSensorId => RejectReason::InvalidField,
            Self::EmptyPayload => RejectReason::EmptyPayload,
            Self::OversizedPayload => RejectReason::PayloadTooLarge,
            Self::InvalidUtf8 => RejectReason::InvalidUtf8,
            Self::UnknownTopic => RejectReason::UnknownTopic,
        }
    }
}

impl std::fmt::Display for BadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BadKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown bad kind '{s}' (one of {})", names.join(", "))
            })
    }
}

/// What a malformed message is derived from: the boat's current state and readings.
pub(crate) struct BadSource<'a> {
    pub prefix: &'a str,
    pub vehicle_id: i64,
    /// The topic type and payload of the good message this one replaces.
    pub replaced: (MessageType, &'a [u8]),
    pub state: VehicleState,
    pub reading: SensorPayload,
    pub oversize_bytes: usize,
}

/// Builds one malformed message of `kind`: (topic, payload).
pub(crate) fn build(kind: BadKind, src: BadSource<'_>, rng: &mut ChaCha8Rng) -> (String, Vec<u8>) {
    let id = src.vehicle_id;
    let topic = |kind| Topic::format(src.prefix, id, kind);
    match kind {
        BadKind::NonIntegerVehicleId => {
            let bogus = match rng.random_range(0..4) {
                0 => format!("boat {id}"),
                1 => format!("{id}.0"),
                2 => format!("-{id}"),
                _ => "0".to_owned(),
            };
            let (kind, payload) = src.replaced;
            (format!("{}/{bogus}/{kind}", src.prefix), payload.to_vec())
        }
        BadKind::InvalidJson => {
            let (kind, value) = if rng.random_bool(0.5) {
                (MessageType::VehicleLog, to_value(&src.state))
            } else {
                (MessageType::SensorLog, to_value(&src.reading))
            };
            let text = to_string(&value);
            let payload = match rng.random_range(0..4) {
                // A write cut short: an object that never closes.
                0 => {
                    let cut = rng.random_range(1..text.len() - 1);
                    text[..floor_char_boundary(&text, cut)].to_owned()
                }
                // Python's str(dict) instead of json.dumps.
                1 => text.replace('"', "'"),
                // Python's json.dumps(float("nan")).
                2 => {
                    let mut value = value;
                    if let Value::Object(obj) = &mut value {
                        let field = if kind == MessageType::VehicleLog {
                            "battery_voltage"
                        } else {
                            "sensor_id"
                        };
                        obj.insert(field.into(), Value::String("@NAN@".into()));
                    }
                    to_string(&value).replace("\"@NAN@\"", "NaN")
                }
                // Two buffered writes in one message.
                _ => format!("{text}{text}"),
            };
            (topic(kind), payload.into_bytes())
        }
        BadKind::WrongFieldType => {
            if rng.random_range(0..6) == 0 {
                // data double-encoded as a JSON string.
                let mut value = to_value(&src.reading);
                let data = to_string(&Value::Object(src.reading.data.clone()));
                value["data"] = Value::String(data);
                return (topic(MessageType::SensorLog), to_vec(&value));
            }
            let mut value = to_value(&src.state);
            let obj = value.as_object_mut().expect("a VehicleState is an object");
            match rng.random_range(0..6) {
                0 => set_with_unit(obj, "battery_voltage", "V"),
                1 => set_with_unit(obj, "latitude", "S"),
                2 => {
                    // A float where an integer is required.
                    let rssi = obj.get("rssi").and_then(Value::as_f64).unwrap_or(-60.0);
                    obj.insert("rssi".into(), Value::from(rssi - 0.5));
                }
                3 => {
                    let armed = obj.get("armed").and_then(Value::as_bool).unwrap_or(true);
                    obj.insert(
                        "armed".into(),
                        Value::from(if armed { "true" } else { "false" }),
                    );
                }
                // ArduPilot's numeric custom_mode instead of the mode name.
                4 => {
                    obj.insert("mode".into(), Value::from(10));
                }
                // Epoch seconds instead of an RFC 3339 string.
                _ => {
                    obj.insert("timestamp".into(), Value::from(1_760_805_000));
                }
            }
            (topic(MessageType::VehicleLog), to_vec(&value))
        }
        BadKind::NonIntegerSensorId => {
            let mut value = to_value(&src.reading);
            let sid = src.reading.sensor_id;
            value["sensor_id"] = match rng.random_range(0..3) {
                0 => Value::from(format!("{sid}.5")),
                1 => Value::from(sid as f64 + 0.5),
                _ => Value::from(format!("env {sid}")),
            };
            (topic(MessageType::SensorLog), to_vec(&value))
        }
        BadKind::EmptyPayload => {
            let kind = MessageType::TELEMETRY[rng.random_range(0..MessageType::TELEMETRY.len())];
            (topic(kind), Vec::new())
        }
        BadKind::OversizedPayload => {
            let line = format!(
                "[DEBUG] vehicle {id} nav: ekf innovation ok, mode {}, log buffer dump follows\n",
                src.state.mode.as_deref().unwrap_or("MANUAL")
            );
            let payload: Vec<u8> = line.bytes().cycle().take(src.oversize_bytes).collect();
            (topic(MessageType::RawLog), payload)
        }
        BadKind::InvalidUtf8 => {
            let temp = src
                .reading
                .data
                .values()
                .find_map(Value::as_f64)
                .unwrap_or(28.4);
            let payload = match rng.random_range(0..3) {
                0 => [
                    format!("Water temperature {temp:.1}").into_bytes(),
                    vec![0xB0],
                    b"C".to_vec(),
                ]
                .concat(),
                1 => [b"Suhu mesin tinggi: 71".to_vec(), vec![0xB0], b"C".to_vec()].concat(),
                _ => [b"Sensor frame: ".to_vec(), vec![0xFF, 0xFE, 0x00, 0x7F]].concat(),
            };
            (topic(MessageType::RawLog), payload)
        }
        BadKind::UnknownTopic => {
            let (_, payload) = src.replaced;
            (format!("{}/{id}/telemetry", src.prefix), payload.to_vec())
        }
    }
}

/// The number as text with its unit (`"12.4 V"`): not a number, even to a gateway that reads
/// numbers sent as strings.
fn set_with_unit(obj: &mut Map<String, Value>, field: &str, unit: &str) {
    let text = obj
        .get(field)
        .map(|v| v.to_string())
        .unwrap_or_else(|| "0".into());
    obj.insert(field.into(), Value::String(format!("{text} {unit}")));
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn to_value<T: Serialize>(v: &T) -> Value {
    // unwrap: the payload types are plain structs with string-keyed maps; they always serialize.
    serde_json::to_value(v).expect("payload serializes")
}

fn to_string(v: &Value) -> String {
    // unwrap: a Value always serializes.
    serde_json::to_string(v).expect("value serializes")
}

fn to_vec(v: &Value) -> Vec<u8> {
    to_string(v).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_by_name_and_every_default_kind_reaches_the_gateway() {
        for kind in BadKind::ALL {
            assert_eq!(kind.as_str().parse::<BadKind>(), Ok(kind));
        }
        assert_eq!(
            "empty-payload".parse::<BadKind>(),
            Ok(BadKind::EmptyPayload)
        );
        assert!("nope".parse::<BadKind>().is_err());
        assert!(!BadKind::DEFAULT.contains(&BadKind::UnknownTopic));
    }
}
