//! Commands to a vehicle and its answers (SPEC §7, "Downlink"): what the gateway publishes on
//! `{prefix}/{vehicle}/command`, what a boat answers on `{prefix}/{vehicle}/ack`, the states a
//! command goes through, and the record REST and the `command_status` frames show.
//!
//! The MQTT shapes are SEANO's own (`{"request_id","command"}` down, `{"request_id","command",
//! "status","message","timestamp"}` up); `params` and `expires_at` are optional additions, so a
//! SEANO boat works unchanged.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::{kind_of, parse_timestamp, RejectReason, Rejection};

/// SEANO's command set: the gateway's default `COMMANDS`.
pub const SEANO_COMMANDS: [&str; 9] = [
    "ARM",
    "FORCE_ARM",
    "DISARM",
    "FORCE_DISARM",
    "AUTO",
    "MANUAL",
    "HOLD",
    "LOITER",
    "RTL",
];

/// How long the gateway waits for a boat's answer unless a command says otherwise (SEANO's 8 s).
pub const DEFAULT_TIMEOUT_MS: u64 = 8_000;
/// The range a command's own `timeout_ms` may take.
pub const TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=600_000;
/// The longest `request_id`.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// The topic level of the downlink and of the answers.
pub const COMMAND_LEVEL: &str = "command";
pub const ACK_LEVEL: &str = "ack";

/// A `request_id` is 1 to 64 of `A-Z a-z 0-9 . _ : -` (a UUID, a ULID, `dash-17`).
pub fn check_request_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "request_id must be 1 to {MAX_REQUEST_ID_LEN} letters, digits, '.', '_', ':' or '-'"
        ))
    }
}

/// A command name is 1 to 32 of `A-Z 0-9 _` (`RTL`, `FORCE_ARM`).
pub fn check_command_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a command name (1 to 32 of A-Z, 0-9 and '_', like RTL)"
        ))
    }
}

/// What the gateway publishes on `{prefix}/{vehicle}/command` at QoS 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({
    "request_id": "5f0c2a7e-8d1b-4c53-9a4e-2b7f1d0e9c11", "command": "RTL",
    "expires_at": "2026-05-06T08:15:10.481Z"
})))]
pub struct CommandMessage {
    pub request_id: String,
    pub command: String,
    /// Present when the sender gave parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Map<String, Value>>,
    /// After this time the command must not be carried out: a boat that receives it late (it
    /// was offline, the broker queued it) answers `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// What a boat publishes on `{prefix}/{vehicle}/ack`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({
    "request_id": "5f0c2a7e-8d1b-4c53-9a4e-2b7f1d0e9c11", "command": "RTL", "status": "ok",
    "message": "Returning to launch", "timestamp": "2026-05-06T08:15:02.481Z"
})))]
pub struct AckMessage {
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// `ok` or `success`: carried out; `error`, `failed` or `timeout`: not carried out.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// The ack statuses a boat may send, and what each means.
pub const ACK_STATUSES: [(&str, CommandState); 5] = [
    ("ok", CommandState::Succeeded),
    ("success", CommandState::Succeeded),
    ("error", CommandState::Failed),
    ("failed", CommandState::Failed),
    ("timeout", CommandState::Failed),
];

/// A boat's answer, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandAck {
    pub request_id: String,
    pub command: Option<String>,
    /// The status as the boat sent it (`ok`, `error`...).
    pub status: String,
    /// [`CommandState::Succeeded`] or [`CommandState::Failed`].
    pub outcome: CommandState,
    pub message: Option<String>,
    /// The boat's own time of the answer.
    pub timestamp: Option<DateTime<Utc>>,
}

/// Validates an ack payload; the rejection says what is wrong.
pub fn decode_ack(text: &str) -> Result<CommandAck, Rejection> {
    let value: Value = serde_json::from_str(text).map_err(|e| Rejection {
        reason: RejectReason::InvalidJson,
        detail: format!("an ack must be a JSON object: {e}"),
    })?;
    let field = |detail: String| Rejection {
        reason: RejectReason::InvalidField,
        detail,
    };
    let Value::Object(obj) = value else {
        return Err(field(format!(
            "an ack must be a JSON object, got {}",
            kind_of(&value)
        )));
    };
    let text_field = |name: &str, required: bool| -> Result<Option<String>, Rejection> {
        match obj.get(name) {
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => Err(field(format!("{name} is missing"))),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(field(format!(
                "{name} must be a string, got {}",
                kind_of(other)
            ))),
        }
    };
    // unwrap: required fields are Some.
    let request_id = text_field("request_id", true)?.unwrap();
    check_request_id(&request_id).map_err(field)?;
    let status = text_field("status", true)?.unwrap();
    let outcome = ACK_STATUSES
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(&status))
        .map(|(_, state)| *state)
        .ok_or_else(|| {
            field(format!(
                "status '{status}' is not one of ok, success, error, failed, timeout"
            ))
        })?;
    let timestamp = match text_field("timestamp", false)? {
        None => None,
        Some(t) => Some(
            parse_timestamp(&t)
                .ok_or_else(|| field(format!("timestamp '{t}' is not an RFC 3339 time")))?,
        ),
    };
    Ok(CommandAck {
        request_id,
        command: text_field("command", false)?,
        status,
        outcome,
        message: text_field("message", false)?,
        timestamp,
    })
}

/// A command's state. `accepted` → `sent` (the broker took it) → `succeeded` | `failed` (the
/// boat said so) | `timed_out` (no answer in time); `expired`: it could not be sent before its
/// deadline. The last four are final: a late answer is kept on the record, the state stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    Accepted,
    Sent,
    Succeeded,
    Failed,
    TimedOut,
    Expired,
}

impl CommandState {
    pub const ALL: [CommandState; 6] = [
        Self::Accepted,
        Self::Sent,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Sent => "sent",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Expired => "expired",
        }
    }

    /// Nothing changes a final state.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Accepted | Self::Sent)
    }
}

impl fmt::Display for CommandState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CommandState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown command state '{s}'"))
    }
}

/// A command as the gateway keeps it: the REST body, and the `data` of every `command_status`
/// frame (the record as that state change left it). Times are UTC RFC 3339 with milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({
    "request_id": "5f0c2a7e-8d1b-4c53-9a4e-2b7f1d0e9c11", "vehicle_id": 3, "command": "RTL",
    "status": "succeeded", "sent_by": "token 1", "timeout_ms": 8000,
    "expires_at": "2026-05-06T08:15:10.481Z", "accepted_at": "2026-05-06T08:15:02.481Z",
    "sent_at": "2026-05-06T08:15:02.483Z", "acked_at": "2026-05-06T08:15:02.790Z",
    "resolved_at": "2026-05-06T08:15:02.790Z", "ack_status": "ok",
    "message": "Returning to launch"
})))]
pub struct CommandRecord {
    pub request_id: String,
    pub vehicle_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vehicle_code: Option<String>,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Map<String, Value>>,
    pub status: CommandState,
    /// Who sent it: the JWT's `sub`, `token N` (the Nth of `AUTH_TOKENS`), or `local` with
    /// access control off.
    pub sent_by: String,
    /// How long the gateway waits for the answer, from `accepted_at`.
    pub timeout_ms: u64,
    /// `accepted_at` + `timeout_ms`: not sent by then, it expires; no answer by then, it timed out.
    pub expires_at: String,
    pub accepted_at: String,
    /// When the broker took it (its PUBACK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    /// When the boat's answer arrived (also for a late answer, which changes no state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_at: Option<String>,
    /// When it reached a final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    /// The boat's status as sent (`ok`, `error`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_status: Option<String>,
    /// The boat's message, or the gateway's reason for `timed_out` / `expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The boat's own time of its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_timestamp: Option<String>,
    /// True when the answer came after the command was already final.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schema(required = false)]
    pub late_answer: bool,
}

/// What a client asks for: the body of `POST /api/vehicles/{vehicle_id}/commands`, and the
/// socket's `command` frame without its `type` and `vehicle_id`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"command": "RTL", "request_id": "dash-17"})))]
pub struct CommandRequest {
    /// One of the gateway's `COMMANDS` (SEANO's set by default).
    pub command: String,
    /// Passed to the boat as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Map<String, Value>>,
    /// Idempotency key: the same request_id sent again is the same command (the gateway makes
    /// one when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// How long to wait for the answer (100 to 600000; `COMMAND_TIMEOUT_MS` by default).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number"
    )]
    #[schema(minimum = 100, maximum = 600000)]
    pub timeout_ms: Option<u64>,
}

/// A non-negative whole number, also when written `8000.0` (JSON does not tell the two apart).
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let n = Option::<serde_json::Number>::deserialize(d)?;
    n.map(|n| {
        n.as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                    .map(|f| f as u64)
            })
            .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number of ms")))
    })
    .transpose()
}

impl CommandRequest {
    /// Checks the parts that do not depend on the gateway's configuration.
    pub fn check(&self) -> Result<(), String> {
        check_command_name(&self.command)?;
        if let Some(id) = &self.request_id {
            check_request_id(id)?;
        }
        if let Some(t) = self.timeout_ms {
            if !TIMEOUT_RANGE_MS.contains(&t) {
                return Err(format!(
                    "timeout_ms must be between {} and {}, got {t}",
                    TIMEOUT_RANGE_MS.start(),
                    TIMEOUT_RANGE_MS.end()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_seanos_acks_and_explains_bad_ones() {
        let ok = decode_ack(r#"{"request_id":"5f0c2a7e-8d1b-4c53-9a4e-2b7f1d0e9c11","command":"RTL","status":"ok","message":"Returning to launch","timestamp":"2026-05-06T08:15:02.481Z"}"#).unwrap();
        assert_eq!(ok.outcome, CommandState::Succeeded);
        assert_eq!(ok.message.as_deref(), Some("Returning to launch"));
        assert!(ok.timestamp.is_some());
        let err = decode_ack(r#"{"request_id":"b1","status":"ERROR","message":"PreArm: battery"}"#)
            .unwrap();
        assert_eq!(err.outcome, CommandState::Failed);
        for (bad, reason) in [
            ("{", RejectReason::InvalidJson),
            ("[]", RejectReason::InvalidField),
            (r#"{"status":"ok"}"#, RejectReason::InvalidField),
            (
                r#"{"request_id":"a","status":"maybe"}"#,
                RejectReason::InvalidField,
            ),
            (
                r#"{"request_id":7,"status":"ok"}"#,
                RejectReason::InvalidField,
            ),
            (
                r#"{"request_id":"a b","status":"ok"}"#,
                RejectReason::InvalidField,
            ),
            (
                r#"{"request_id":"a","status":"ok","timestamp":"soon"}"#,
                RejectReason::InvalidField,
            ),
        ] {
            assert_eq!(decode_ack(bad).unwrap_err().reason, reason, "{bad}");
        }
    }

    #[test]
    fn the_fixtures_commands_and_acks_decode() {
        let fixture: Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/seano-commands.json"))
                .unwrap();
        let names: Vec<&str> = fixture["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(names, SEANO_COMMANDS);
        for example in fixture["examples"].as_array().unwrap() {
            let sent: CommandMessage = serde_json::from_value(example["command"].clone()).unwrap();
            check_command_name(&sent.command).unwrap();
            decode_ack(&example["ack"].to_string()).unwrap();
        }
    }

    #[test]
    fn a_request_is_checked_before_anything_is_sent() {
        let mut req = CommandRequest {
            command: "RTL".into(),
            ..Default::default()
        };
        assert!(req.check().is_ok());
        req.timeout_ms = Some(50);
        assert!(req.check().is_err());
        req.timeout_ms = None;
        req.request_id = Some(String::new());
        assert!(req.check().is_err());
        req.request_id = None;
        req.command = "rtl".into();
        assert!(req.check().is_err());
        assert!(serde_json::from_str::<CommandRequest>(r#"{"command":"RTL","x":1}"#).is_err());
        let whole: CommandRequest =
            serde_json::from_str(r#"{"command":"RTL","timeout_ms":2000.0}"#).unwrap();
        assert_eq!(whole.timeout_ms, Some(2000));
        assert!(
            serde_json::from_str::<CommandRequest>(r#"{"command":"RTL","timeout_ms":2.5}"#)
                .is_err()
        );
    }

    #[test]
    fn states_round_trip_and_only_four_are_final() {
        for s in CommandState::ALL {
            assert_eq!(s.as_str().parse::<CommandState>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        let finals = CommandState::ALL.iter().filter(|s| s.is_final()).count();
        assert_eq!(finals, 4);
    }
}
