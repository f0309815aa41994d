//! `{prefix}/{vehicle_id}/{type}` topics.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The three kinds of telemetry a vehicle publishes, one MQTT topic level each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    RawLog,
    SensorLog,
    VehicleLog,
}

impl MessageType {
    pub const ALL: [MessageType; 3] = [Self::RawLog, Self::SensorLog, Self::VehicleLog];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RawLog => "raw_log",
            Self::SensorLog => "sensor_log",
            Self::VehicleLog => "vehicle_log",
        }
    }

    /// A dense index (0..3) for per-type counters.
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
                format!("unknown message type '{s}' (expected raw_log, sensor_log or vehicle_log)")
            })
    }
}

/// A parsed telemetry topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topic {
    pub vehicle_id: i64,
    pub kind: MessageType,
}

impl Topic {
    /// The topic a vehicle publishes `kind` on.
    pub fn format(prefix: &str, vehicle_id: i64, kind: MessageType) -> String {
        format!("{prefix}/{vehicle_id}/{kind}")
    }

    /// The subscription filters that cover every vehicle's telemetry under `prefix`.
    pub fn filters(prefix: &str) -> Vec<String> {
        MessageType::ALL
            .iter()
            .map(|kind| format!("{prefix}/+/{kind}"))
            .collect()
    }

    /// Parses `{prefix}/{vehicle_id}/{type}`; the error says which part is wrong.
    pub fn parse(prefix: &str, topic: &str) -> Result<Topic, TopicError> {
        let rest = topic
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or(TopicError::UnknownTopic)?;
        let (id, kind) = rest.split_once('/').ok_or(TopicError::UnknownTopic)?;
        let kind = kind.parse().map_err(|_| TopicError::UnknownTopic)?;
        let vehicle_id = match id.parse::<i64>() {
            Ok(v) if v > 0 && !id.starts_with('+') => v,
            _ => return Err(TopicError::InvalidVehicleId(id.to_owned())),
        };
        Ok(Topic { vehicle_id, kind })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum TopicError {
    UnknownTopic,
    InvalidVehicleId(String),
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
                    vehicle_id: 7,
                    kind
                })
            );
        }
    }

    #[test]
    fn rejects_non_positive_or_non_integer_ids() {
        for id in ["0", "-1", "abc", "1.5", "+3", "", "99999999999999999999"] {
            let topic = format!("seano/{id}/raw_log");
            assert_eq!(
                Topic::parse("seano", &topic),
                Err(TopicError::InvalidVehicleId(id.to_owned())),
                "{topic}"
            );
        }
    }

    #[test]
    fn rejects_foreign_topics() {
        for topic in [
            "other/1/raw_log",
            "seano/1/command",
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
