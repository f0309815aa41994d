//! `{prefix}/{vehicle}/{type}` topics, and how a vehicle is named in them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// A telemetry message type: the last MQTT topic level, and a data frame's `type`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    RawLog,
    SensorLog,
    VehicleLog,
    /// A command's state change (stored by the gateway; a boat's answer comes on `ack`).
    CommandStatus,
}

impl MessageType {
    /// Every type a stream carries.
    pub const ALL: [MessageType; 4] = [
        Self::RawLog,
        Self::SensorLog,
        Self::VehicleLog,
        Self::CommandStatus,
    ];
    /// The types a vehicle publishes as telemetry.
    pub const TELEMETRY: [MessageType; 3] = [Self::RawLog, Self::SensorLog, Self::VehicleLog];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RawLog => "raw_log",
            Self::SensorLog => "sensor_log",
            Self::VehicleLog => "vehicle_log",
            Self::CommandStatus => "command_status",
        }
    }

    /// The last topic level a vehicle publishes this type on: its name, except a command's
    /// state changes, which come from the boat's answers on `ack`.
    pub fn topic_level(self) -> &'static str {
        match self {
            Self::CommandStatus => crate::command::ACK_LEVEL,
            other => other.as_str(),
        }
    }

    /// The type published on a topic level (`ack` for command answers).
    pub fn from_topic_level(level: &str) -> Option<MessageType> {
        Self::ALL.into_iter().find(|t| t.topic_level() == level)
    }

    /// A dense index (0..4) for per-type counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!("unknown message type '{s}' (expected raw_log, sensor_log, vehicle_log or command_status)")
            })
    }
}

/// The largest vehicle id a topic may carry as a number. Vehicles that name themselves by a
/// registration code get ids above it, so a numeric topic id and a code never name the same row.
pub const MAX_TOPIC_VEHICLE_ID: i64 = i32::MAX as i64;

/// The first id given to a vehicle registered by its code.
pub const FIRST_CODE_VEHICLE_ID: i64 = MAX_TOPIC_VEHICLE_ID + 1;

/// The longest registration code (`USV-003`) or sensor code (`TEMP-001`).
pub const MAX_CODE_LEN: usize = 64;

/// How a vehicle is named on a topic or in a path: a positive integer id, or a registration
/// code such as `USV-003`.
///
/// A segment of ASCII digits is an id (leading zeros allowed: `007` is 7). A code is 1 to 64
/// letters, digits, `-` and `_`, with at least one letter, so it can never read as an id.
/// Either way a segment is at most 64 characters. Its documented schema ([`VEHICLE_KEY_PATTERN`])
/// says the same, but for ids of more than 18 digits, which no vehicle has (the server answers
/// 404 for them).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VehicleKey {
    Id(i64),
    Code(String),
}

impl VehicleKey {
    /// Parses a path segment or a topic level; the error says what is expected.
    pub fn parse(raw: &str) -> Result<VehicleKey, String> {
        if !raw.is_empty() && raw.len() <= MAX_CODE_LEN && raw.bytes().all(|b| b.is_ascii_digit()) {
            return match raw.parse::<i64>() {
                Ok(id) if id > 0 => Ok(VehicleKey::Id(id)),
                _ => Err(format!(
                    "'{raw}' is not a positive integer id (1 to {})",
                    i64::MAX
                )),
            };
        }
        if is_code(raw) {
            Ok(VehicleKey::Code(raw.to_owned()))
        } else {
            Err(format!(
                "'{raw}' is neither a positive integer id nor a code (1 to {MAX_CODE_LEN} letters, digits, '-' or '_', with a letter)"
            ))
        }
    }
}

impl fmt::Display for VehicleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VehicleKey::Id(id) => write!(f, "{id}"),
            VehicleKey::Code(code) => f.write_str(code),
        }
    }
}

/// The most digits a sensor id may have: every such id fits in an `i64`.
pub const MAX_SENSOR_ID_DIGITS: usize = 18;

/// [`VehicleKey`] as a JSON Schema pattern (with `maxLength` 64): an id of 1 to 18 significant
/// digits, or a code.
pub const VEHICLE_KEY_PATTERN: &str = "^(0*[1-9][0-9]{0,17}|[0-9_-]*[A-Za-z][A-Za-z0-9_-]*)$";

/// [`SensorRef`] as a JSON Schema pattern (with `maxLength` 64): an integer of at most 18
/// digits, or a code.
pub const SENSOR_REF_PATTERN: &str = "^(-?(0|[1-9][0-9]{0,17})|[0-9_-]*[A-Za-z][A-Za-z0-9_-]*)$";

fn segment_schema(pattern: &str, description: &str, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_CODE_LEN))
        .pattern(Some(pattern))
        .description(Some(description))
        .examples([example])
        .into()
}

impl PartialSchema for VehicleKey {
    fn schema() -> RefOr<Schema> {
        segment_schema(
            VEHICLE_KEY_PATTERN,
            "A vehicle id (a positive integer) or registration code (`USV-003`)",
            "1",
        )
    }
}

impl ToSchema for VehicleKey {}

impl PartialSchema for SensorRef {
    fn schema() -> RefOr<Schema> {
        segment_schema(
            SENSOR_REF_PATTERN,
            "A sensor id (an integer) or sensor code (`TEMP-001`)",
            "5",
        )
    }
}

impl ToSchema for SensorRef {}

/// A registration or sensor code: 1 to 64 of `[A-Za-z0-9_-]`, at least one a letter.
pub fn is_code(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CODE_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && s.bytes().any(|b| b.is_ascii_alphabetic())
}

/// How a sensor is named: an integer `sensor_id`, or a code (`TEMP-001`) given as a string
/// `sensor_id` or by the topic `{prefix}/{vehicle}/{sensor}/sensor_log`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SensorRef {
    Id(i64),
    Code(String),
}

impl SensorRef {
    /// A topic level or a string `sensor_id`: an integer (`5`, `-1`) is an id, anything else
    /// must be a code.
    pub fn parse(raw: &str) -> Option<SensorRef> {
        let digits = raw.strip_prefix('-').unwrap_or(raw);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            // JSON's spelling of an integer (no leading zeros), of at most 18 digits.
            let canonical = digits == "0" || !digits.starts_with('0');
            return (canonical && digits.len() <= MAX_SENSOR_ID_DIGITS)
                .then(|| raw.parse().ok().map(SensorRef::Id))
                .flatten();
        }
        is_code(raw).then(|| SensorRef::Code(raw.to_owned()))
    }

    pub fn id(&self) -> Option<i64> {
        match self {
            SensorRef::Id(id) => Some(*id),
            SensorRef::Code(_) => None,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            SensorRef::Id(_) => None,
            SensorRef::Code(code) => Some(code),
        }
    }
}

impl fmt::Display for SensorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SensorRef::Id(id) => write!(f, "{id}"),
            SensorRef::Code(code) => f.write_str(code),
        }
    }
}

/// A parsed telemetry topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topic {
    pub vehicle: VehicleKey,
    /// `{prefix}/{vehicle}/{sensor}/sensor_log`: the sensor named by the topic.
    pub sensor: Option<SensorRef>,
    pub kind: MessageType,
}

/// Topics under the prefix that the gateway publishes itself (the downlink to vehicles): it
/// sees them through its own subscription and neither stores nor rejects them.
pub const OWN_TOPIC_TYPES: [&str; 1] = [crate::command::COMMAND_LEVEL];

impl Topic {
    /// The topic a vehicle publishes `kind` on.
    pub fn format(prefix: &str, vehicle_id: i64, kind: MessageType) -> String {
        format!("{prefix}/{vehicle_id}/{}", kind.topic_level())
    }

    /// The topic the gateway publishes a vehicle's commands on.
    pub fn command(prefix: &str, vehicle: &str) -> String {
        format!("{prefix}/{vehicle}/{}", crate::command::COMMAND_LEVEL)
    }

    /// The subscription filter: everything under the prefix, so that nothing a vehicle
    /// publishes goes unseen (a topic of no known shape is kept as `unknown_topic`).
    pub fn filters(prefix: &str) -> Vec<String> {
        vec![format!("{prefix}/#")]
    }

    /// Whether `topic` is one the gateway publishes itself (`{prefix}/{vehicle}/command`).
    pub fn is_own(prefix: &str, topic: &str) -> bool {
        let Some(rest) = topic.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) else {
            return false;
        };
        matches!(rest.split_once('/'), Some((vehicle, kind))
            if OWN_TOPIC_TYPES.contains(&kind) && VehicleKey::parse(vehicle).is_ok())
    }

    /// Parses `{prefix}/{vehicle}/{type}` or `{prefix}/{vehicle}/{sensor}/sensor_log`; the
    /// error says which part is wrong.
    pub fn parse(prefix: &str, topic: &str) -> Result<Topic, TopicError> {
        let rest = topic
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or(TopicError::UnknownTopic)?;
        let levels: Vec<&str> = rest.split('/').collect();
        let (vehicle, sensor, kind) = match levels.as_slice() {
            [vehicle, kind] => (
                *vehicle,
                None,
                MessageType::from_topic_level(kind).ok_or(TopicError::UnknownTopic)?,
            ),
            [vehicle, sensor, "sensor_log"] => {
                let sensor = SensorRef::parse(sensor)
                    .ok_or_else(|| TopicError::InvalidSensor((*sensor).to_owned()))?;
                (*vehicle, Some(sensor), MessageType::SensorLog)
            }
            _ => return Err(TopicError::UnknownTopic),
        };
        let vehicle = match VehicleKey::parse(vehicle) {
            Ok(VehicleKey::Id(id)) if id > MAX_TOPIC_VEHICLE_ID => {
                return Err(TopicError::InvalidVehicleId(format!(
                    "{id} is above {MAX_TOPIC_VEHICLE_ID}, the largest id a topic may carry"
                )))
            }
            Ok(key) => key,
            Err(why) => return Err(TopicError::InvalidVehicleId(why)),
        };
        Ok(Topic {
            vehicle,
            sensor,
            kind,
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum TopicError {
    UnknownTopic,
    /// Why the vehicle level is neither an id nor a code.
    InvalidVehicleId(String),
    InvalidSensor(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_type() {
        for kind in MessageType::ALL {
            let topic = Topic::format("seano", 7, kind);
            assert_eq!(
                Topic::parse("seano", &topic),
                Ok(Topic {
                    vehicle: VehicleKey::Id(7),
                    sensor: None,
                    kind
                })
            );
        }
    }

    #[test]
    fn rejects_vehicle_levels_that_are_neither_ids_nor_codes() {
        let too_long = "A".repeat(65);
        for id in [
            "0",
            "-1",
            "1.5",
            "+3",
            "",
            "99999999999999999999",
            "2147483648",
            "USV 3",
            "-_-",
            too_long.as_str(),
        ] {
            let topic = format!("seano/{id}/raw_log");
            assert!(
                matches!(
                    Topic::parse("seano", &topic),
                    Err(TopicError::InvalidVehicleId(_))
                ),
                "{topic}"
            );
        }
    }

    #[test]
    fn registration_codes_and_sensor_levels_are_understood() {
        assert_eq!(
            Topic::parse("seano", "seano/USV-003/vehicle_log"),
            Ok(Topic {
                vehicle: VehicleKey::Code("USV-003".into()),
                sensor: None,
                kind: MessageType::VehicleLog
            })
        );
        assert_eq!(
            Topic::parse("seano", "seano/USV-003/TEMP-001/sensor_log"),
            Ok(Topic {
                vehicle: VehicleKey::Code("USV-003".into()),
                sensor: Some(SensorRef::Code("TEMP-001".into())),
                kind: MessageType::SensorLog
            })
        );
        assert_eq!(
            Topic::parse("seano", "seano/007/raw_log").map(|t| t.vehicle),
            Ok(VehicleKey::Id(7))
        );
        assert_eq!(
            Topic::parse("seano", "seano/1/TEMP 1/sensor_log"),
            Err(TopicError::InvalidSensor("TEMP 1".into()))
        );
        assert!(Topic::is_own("seano", "seano/USV-003/command"));
        assert!(Topic::is_own("seano", "seano/7/command"));
        assert!(!Topic::is_own("seano", "seano/7/ack"));
        assert_eq!(Topic::filters("seano"), ["seano/#"]);
    }

    #[test]
    fn the_documented_patterns_agree_with_the_parsers() {
        let vehicle = regex::Regex::new(VEHICLE_KEY_PATTERN).unwrap();
        let sensor = regex::Regex::new(SENSOR_REF_PATTERN).unwrap();
        let long_code = format!("A{}", "1".repeat(63));
        let too_long = format!("A{}", "1".repeat(64));
        let many_zeros = format!("{}1", "0".repeat(63));
        for raw in [
            "1",
            "007",
            "0",
            "00",
            "-1",
            "+1",
            "1.5",
            "1e3",
            "USV-003",
            "a",
            "_a",
            "-_-",
            "",
            " 1",
            "12345678901234567",
            "123456789012345678",
            "1234567890123456789",
            "TEMP 1",
            "２",
            "-0",
            "05",
            "-05",
            "999999999999999999",
            long_code.as_str(),
            too_long.as_str(),
            many_zeros.as_str(),
        ] {
            let fits = |re: &regex::Regex| re.is_match(raw) && raw.len() <= MAX_CODE_LEN;
            let id_digits = raw.trim_start_matches('0').len();
            // Ids of more than 18 digits parse, but are documented as no vehicle's.
            if id_digits <= 18 || !raw.bytes().all(|b| b.is_ascii_digit()) {
                assert_eq!(
                    fits(&vehicle),
                    VehicleKey::parse(raw).is_ok(),
                    "vehicle {raw:?}"
                );
            }
            assert_eq!(
                fits(&sensor),
                SensorRef::parse(raw).is_some(),
                "sensor {raw:?}"
            );
        }
    }

    #[test]
    fn rejects_foreign_topics() {
        for topic in [
            "other/1/raw_log",
            "seano/1/command",
            "seano/7/telemetry",
            "seano/1/TEMP-001/data",
            "seano/1",
            "seanox/1/raw_log",
            "seano/1/raw_log/x",
        ] {
            assert_eq!(
                Topic::parse("seano", topic),
                Err(TopicError::UnknownTopic),
                "{topic}"
            );
        }
    }
}
