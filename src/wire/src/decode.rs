//! From an MQTT message (topic and payload bytes) to a [`Decoded`] message or a [`Rejection`].

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::command::{decode_ack, CommandAck};
use crate::{
    kind_of, parse_timestamp, MessageType, RejectReason, SensorRef, Topic, TopicError, VehicleKey,
    VehicleState,
};

/// A message that passed validation, ready to be stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// The vehicle as its topic names it; the store turns a code into the vehicle's id.
    pub vehicle: VehicleKey,
    /// The vehicle's own timestamp, if it sent one.
    pub timestamp: Option<DateTime<Utc>>,
    pub body: Telemetry,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Telemetry {
    RawLog(String),
    SensorLog {
        sensor: SensorRef,
        data: Map<String, Value>,
    },
    VehicleLog(Box<VehicleState>),
    /// A boat's answer to a command (`{prefix}/{vehicle}/ack`).
    Ack(CommandAck),
}

impl Telemetry {
    pub fn kind(&self) -> MessageType {
        match self {
            Telemetry::RawLog(_) => MessageType::RawLog,
            Telemetry::SensorLog { .. } => MessageType::SensorLog,
            Telemetry::VehicleLog(_) => MessageType::VehicleLog,
            Telemetry::Ack(_) => MessageType::CommandStatus,
        }
    }
}

/// A message the gateway will not store as telemetry, with the reason (kept in
/// `rejected_messages`).
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }

    fn field(detail: impl Into<String>) -> Self {
        Self::new(RejectReason::InvalidField, detail)
    }
}

/// Validates and decodes one MQTT message (SPEC §2).
pub fn decode(
    prefix: &str,
    topic: &str,
    payload: &[u8],
    max_payload: usize,
) -> Result<Decoded, Rejection> {
    let topic = Topic::parse(prefix, topic).map_err(|e| match e {
        TopicError::UnknownTopic => Rejection::new(
            RejectReason::UnknownTopic,
            format!("topic is not {prefix}/{{vehicle}}/{{raw_log|sensor_log|vehicle_log|ack}} nor {prefix}/{{vehicle}}/{{sensor}}/sensor_log"),
        ),
        TopicError::InvalidVehicleId(why) => Rejection::new(
            RejectReason::InvalidVehicleId,
            format!("vehicle level: {why}"),
        ),
        TopicError::InvalidSensor(raw) => Rejection::new(
            RejectReason::InvalidVehicleId,
            format!("sensor level '{raw}' is neither an integer id nor a code (letters, digits, '-' or '_', with a letter)"),
        ),
    })?;
    if payload.is_empty() {
        return Err(Rejection::new(
            RejectReason::EmptyPayload,
            "payload is empty",
        ));
    }
    if payload.len() > max_payload {
        return Err(Rejection::new(
            RejectReason::PayloadTooLarge,
            format!(
                "payload is {} bytes, the limit is {max_payload}",
                payload.len()
            ),
        ));
    }
    let text = std::str::from_utf8(payload).map_err(|e| {
        Rejection::new(
            RejectReason::InvalidUtf8,
            format!("payload is not UTF-8: {e}"),
        )
    })?;

    let (timestamp, body) = match topic.kind {
        MessageType::RawLog => decode_raw_log(text)?,
        MessageType::SensorLog => decode_sensor_log(parse_object(text)?, topic.sensor)?,
        MessageType::VehicleLog => {
            let mut obj = parse_object(text)?;
            let timestamp = take_timestamp(&mut obj)?;
            let state = VehicleState::from_object(obj).map_err(Rejection::field)?;
            (timestamp, Telemetry::VehicleLog(Box::new(state)))
        }
        MessageType::CommandStatus => {
            let ack = decode_ack(text)?;
            (ack.timestamp, Telemetry::Ack(ack))
        }
    };
    Ok(Decoded {
        vehicle: topic.vehicle,
        timestamp,
        body,
    })
}

type Parts = (Option<DateTime<Utc>>, Telemetry);

/// Plain text is the log line; a JSON object with a `data` string is the structured form.
fn decode_raw_log(text: &str) -> Result<Parts, Rejection> {
    if text.starts_with('{') {
        if let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(text) {
            if let Some(data) = obj.remove("data") {
                let Value::String(line) = data else {
                    return Err(Rejection::field(format!(
                        "data must be a string, got {}",
                        kind_of(&data)
                    )));
                };
                let timestamp = take_timestamp(&mut obj)?;
                check_no_nul(&line)?;
                return Ok((timestamp, Telemetry::RawLog(line)));
            }
        }
    }
    check_no_nul(text)?;
    Ok((None, Telemetry::RawLog(text.to_owned())))
}

/// `{"sensor_id": 5 | "TEMP-001", "data": {..}, "timestamp"?}`; on a topic that names the
/// sensor (`{prefix}/{vehicle}/{sensor}/sensor_log`), that form without `sensor_id`, or a flat
/// object of readings (`{"depth": 25.4, "timestamp"?: ..}`) as SEANO's sensors send them.
fn decode_sensor_log(
    mut obj: Map<String, Value>,
    topic_sensor: Option<SensorRef>,
) -> Result<Parts, Rejection> {
    let timestamp = take_timestamp(&mut obj)?;
    let nested = matches!(obj.get("data"), Some(Value::Object(_)))
        && obj.keys().all(|k| k == "data" || k == "sensor_id");
    let (sensor, data) = match topic_sensor {
        Some(sensor) => {
            if !nested {
                (sensor, obj)
            } else {
                if let Some(v) = obj.remove("sensor_id") {
                    if sensor_of(&v)? != sensor {
                        return Err(Rejection::field(format!(
                            "sensor_id {v} contradicts the topic's sensor '{sensor}'"
                        )));
                    }
                }
                match obj.remove("data") {
                    Some(Value::Object(data)) => (sensor, data),
                    _ => unreachable!("`nested` checked that data is an object"),
                }
            }
        }
        None => {
            let sensor = match obj.remove("sensor_id") {
                Some(v) => sensor_of(&v)?,
                None => return Err(Rejection::field("sensor_id is missing")),
            };
            let data = match obj.remove("data") {
                Some(Value::Object(data)) => data,
                Some(v) => {
                    return Err(Rejection::field(format!(
                        "data must be an object, got {}",
                        kind_of(&v)
                    )))
                }
                None => return Err(Rejection::field("data is missing")),
            };
            if let Some(key) = obj.keys().next() {
                // No column would keep it, and dropping it would lose what the vehicle sent.
                return Err(Rejection::field(format!(
                    "unknown field '{key}' (a sensor_log has sensor_id, data and timestamp)"
                )));
            }
            (sensor, data)
        }
    };
    check_json_no_nul(&data)?;
    Ok((timestamp, Telemetry::SensorLog { sensor, data }))
}

/// A `sensor_id`: an integer, a string holding one, or a sensor code.
fn sensor_of(v: &Value) -> Result<SensorRef, Rejection> {
    let bad = || {
        Rejection::field(format!(
            "sensor_id must be an integer or a sensor code, got {}",
            match v {
                Value::String(s) => format!("'{s}'"),
                Value::Number(n) => n.to_string(),
                other => kind_of(other).to_owned(),
            }
        ))
    };
    match v {
        Value::Number(n) => n.as_i64().map(SensorRef::Id).ok_or_else(bad),
        Value::String(s) => SensorRef::parse(s).ok_or_else(bad),
        _ => Err(bad()),
    }
}

fn parse_object(text: &str) -> Result<Map<String, Value>, Rejection> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(obj)) => {
            check_json_no_nul(&obj)?;
            Ok(obj)
        }
        Ok(other) => Err(Rejection::new(
            RejectReason::InvalidJson,
            format!("payload must be a JSON object, got {}", kind_of(&other)),
        )),
        Err(e) => Err(Rejection::new(
            RejectReason::InvalidJson,
            format!("invalid JSON: {e}"),
        )),
    }
}

fn take_timestamp(obj: &mut Map<String, Value>) -> Result<Option<DateTime<Utc>>, Rejection> {
    match obj.remove("timestamp") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_timestamp(&s).map(Some).ok_or_else(|| {
            Rejection::field(format!(
                "timestamp '{s}' is not an RFC 3339 or ISO 8601 time"
            ))
        }),
        Some(v) => Err(Rejection::field(format!(
            "timestamp must be a string, got {}",
            kind_of(&v)
        ))),
    }
}

/// PostgreSQL cannot store U+0000 in text or jsonb; refuse it here rather than fail a batch.
fn check_no_nul(s: &str) -> Result<(), Rejection> {
    if s.contains('\0') {
        Err(Rejection::field("text contains a NUL character"))
    } else {
        Ok(())
    }
}

fn check_json_no_nul(obj: &Map<String, Value>) -> Result<(), Rejection> {
    fn walk(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(a) => a.iter().any(walk),
            Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || walk(v)),
            _ => false,
        }
    }
    if obj.iter().any(|(k, v)| k.contains('\0') || walk(v)) {
        Err(Rejection::field("a string contains a NUL character"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1024;

    fn reason(topic: &str, payload: &[u8]) -> RejectReason {
        decode("seano", topic, payload, MAX).unwrap_err().reason
    }

    #[test]
    fn decodes_every_fixture_message() {
        let fixtures: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/seano-jetson-messages.json"
        ))
        .unwrap();
        for m in fixtures["messages"].as_array().unwrap() {
            let payload = match (&m["payload_text"], &m["payload_json"]) {
                (Value::String(s), _) => s.clone(),
                (_, json) => serde_json::to_string(json).unwrap(),
            };
            let topic = m["topic"].as_str().unwrap();
            let decoded = decode("seano", topic, payload.as_bytes(), MAX).unwrap();
            assert_eq!(
                topic.split('/').nth(2).unwrap(),
                decoded.body.kind().as_str()
            );
        }
    }

    #[test]
    fn raw_log_accepts_text_and_structured_form() {
        let d = decode(
            "seano",
            "seano/1/raw_log",
            b"GPS initialized successfully",
            MAX,
        )
        .unwrap();
        assert_eq!(
            d.body,
            Telemetry::RawLog("GPS initialized successfully".into())
        );
        assert_eq!(d.timestamp, None);
        let d = decode(
            "seano",
            "seano/1/raw_log",
            br#"{"data":"hi","timestamp":"2025-10-18T16:30:00Z"}"#,
            MAX,
        )
        .unwrap();
        assert_eq!(d.body, Telemetry::RawLog("hi".into()));
        assert!(d.timestamp.is_some());
        // JSON that is not the structured form is a log line like any other.
        let d = decode("seano", "seano/1/raw_log", br#"{"level":"warn"}"#, MAX).unwrap();
        assert_eq!(d.body, Telemetry::RawLog(r#"{"level":"warn"}"#.into()));
    }

    #[test]
    fn sensors_are_named_by_id_code_or_topic() {
        let sensor = |topic: &str, payload: &[u8]| match decode("seano", topic, payload, MAX)
            .unwrap()
            .body
        {
            Telemetry::SensorLog { sensor, data } => (sensor, Value::Object(data)),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            sensor("seano/1/sensor_log", br#"{"sensor_id":"5","data":{"t":1}}"#),
            (SensorRef::Id(5), serde_json::json!({"t": 1}))
        );
        assert_eq!(
            sensor(
                "seano/1/sensor_log",
                br#"{"sensor_id":"TEMP-001","data":{"t":1}}"#
            )
            .0,
            SensorRef::Code("TEMP-001".into())
        );
        let d = decode(
            "seano",
            "seano/USV-003/CTD-01/sensor_log",
            br#"{"depth":25.4,"salinity":"33.8","timestamp":"2025-01-01T08:30:00Z"}"#,
            MAX,
        )
        .unwrap();
        assert_eq!(d.vehicle, VehicleKey::Code("USV-003".into()));
        assert!(d.timestamp.is_some());
        assert_eq!(
            d.body,
            Telemetry::SensorLog {
                sensor: SensorRef::Code("CTD-01".into()),
                data: serde_json::json!({"depth": 25.4, "salinity": "33.8"})
                    .as_object()
                    .unwrap()
                    .clone(),
            }
        );
        assert_eq!(
            sensor("seano/2/9/sensor_log", br#"{"sensor_id":9,"data":{"t":1}}"#),
            (SensorRef::Id(9), serde_json::json!({"t": 1}))
        );
        assert_eq!(
            reason("seano/2/9/sensor_log", br#"{"sensor_id":8,"data":{"t":1}}"#),
            RejectReason::InvalidField
        );
    }

    #[test]
    fn each_kind_of_bad_input_has_its_reason() {
        use RejectReason::*;
        assert_eq!(reason("seano/a.b/raw_log", b"x"), InvalidVehicleId);
        assert_eq!(reason("seano/1/unknown", b"x"), UnknownTopic);
        assert_eq!(reason("seano/1/raw_log", b""), EmptyPayload);
        assert_eq!(reason("seano/1/raw_log", &[b'x'; MAX + 1]), PayloadTooLarge);
        assert_eq!(reason("seano/1/raw_log", &[0xff, 0xfe]), InvalidUtf8);
        assert_eq!(reason("seano/1/vehicle_log", b"{not json"), InvalidJson);
        assert_eq!(reason("seano/1/vehicle_log", b"[1,2]"), InvalidJson);
        assert_eq!(
            reason("seano/1/vehicle_log", br#"{"speed":"fast"}"#),
            InvalidField
        );
        assert_eq!(
            reason("seano/1/vehicle_log", br#"{"timestamp":"soon"}"#),
            InvalidField
        );
        assert_eq!(
            reason("seano/1/sensor_log", br#"{"sensor_id":"5 ","data":{}}"#),
            InvalidField
        );
        assert_eq!(
            reason("seano/1/sensor_log", br#"{"sensor_id":true,"data":{}}"#),
            InvalidField
        );
        assert_eq!(reason("seano/7/telemetry", b"{}"), UnknownTopic);
        assert_eq!(reason("seano/1/TEMP-001/data", b"{}"), UnknownTopic);
        assert_eq!(reason("seano/USV 3/raw_log", b"x"), InvalidVehicleId);
        assert_eq!(
            reason("seano/1/sensor_log", br#"{"sensor_id":5,"data":[1]}"#),
            InvalidField
        );
        assert_eq!(
            reason("seano/1/sensor_log", br#"{"data":{}}"#),
            InvalidField
        );
        assert_eq!(
            reason("seano/1/sensor_log", br#"{"sensor_id":5,"data":{},"x":1}"#),
            InvalidField
        );
        assert_eq!(reason("seano/1/raw_log", b"a\0b"), InvalidField);
        assert_eq!(
            reason(
                "seano/1/sensor_log",
                br#"{"sensor_id":5,"data":{"a":"\u0000"}}"#
            ),
            InvalidField
        );
    }
}
