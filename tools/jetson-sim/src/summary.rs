//! [`Summary`]: what a run published and what the broker acknowledged.

use std::collections::BTreeMap;
use std::fmt;

use seano_wire::{MessageType, RejectReason};
use serde::Serialize;

use crate::bad::BadKind;

/// Message counts by telemetry type (a boat's answers to commands are in [`CommandCounts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TypeCounts {
    pub raw_log: u64,
    pub sensor_log: u64,
    pub vehicle_log: u64,
}

impl TypeCounts {
    pub fn get(&self, kind: MessageType) -> u64 {
        match kind {
            MessageType::RawLog => self.raw_log,
            MessageType::SensorLog => self.sensor_log,
            MessageType::VehicleLog => self.vehicle_log,
            MessageType::CommandStatus => 0,
        }
    }

    pub fn add(&mut self, kind: MessageType, n: u64) {
        match kind {
            MessageType::RawLog => self.raw_log += n,
            MessageType::SensorLog => self.sensor_log += n,
            MessageType::VehicleLog => self.vehicle_log += n,
            // Not telemetry: the answers to commands are counted in `CommandCounts`.
            MessageType::CommandStatus => {}
        }
    }

    pub fn total(&self) -> u64 {
        self.raw_log + self.sensor_log + self.vehicle_log
    }
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `count` messages were published.
    Count,
    /// `duration` elapsed.
    Duration,
    /// The stop token was cancelled (Ctrl-C).
    Cancelled,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::Count => "count reached",
            StopReason::Duration => "duration reached",
            StopReason::Cancelled => "cancelled",
        })
    }
}

/// Messages that were published but not (known to be) delivered, by cause.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FailureCauses {
    /// The MQTT client refused the message (its request queue was closed).
    pub rejected_by_client: u64,
    /// Handed to a connection that dropped before the broker acknowledged it.
    pub lost_on_disconnect: u64,
    /// Still unacknowledged when the drain timeout ran out.
    pub unacked_at_exit: u64,
}

impl FailureCauses {
    pub fn total(&self) -> u64 {
        self.rejected_by_client + self.lost_on_disconnect + self.unacked_at_exit
    }
}

/// What the boats did with the commands they received.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CommandCounts {
    /// Messages received on the boats' command topics, redeliveries included.
    pub received: u64,
    /// Of those, repeats of a request_id the boat had already answered: answered again with
    /// the same outcome, not carried out again.
    pub repeated: u64,
    /// Answers `ok` handed to the MQTT client (QoS 1).
    pub answered_ok: u64,
    /// Answers `error` handed to the MQTT client: refused, unknown, expired, simulated failure.
    pub answered_error: u64,
    /// Not answered: received by a silent boat (`--silent-boats`), or without a readable
    /// `request_id`.
    pub ignored: u64,
    /// Answers not sent: still waiting out `--ack-delay-ms` at exit, or refused by the client.
    pub unsent: u64,
}

/// The outcome of one run. "Sent" means acknowledged by the broker (PubAck) with QoS 1, and
/// written to the connection with QoS 0; every count below except `published` counts sent
/// messages, so with no failures the gateway should have received exactly these.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Replays the run with `--seed`.
    pub seed: u64,
    pub broker: String,
    pub prefix: String,
    pub qos: u8,
    pub stopped_by: StopReason,
    /// Messages handed to the MQTT client, good and bad (with `count`, exactly `count`).
    pub published: u64,
    /// Messages the broker acknowledged, good and bad.
    pub total_sent: u64,
    /// `published - total_sent`, the sum of `failure_causes`.
    pub failures: u64,
    pub failure_causes: FailureCauses,
    /// Good messages sent, by type.
    pub by_type: TypeCounts,
    /// Good messages sent, by vehicle and type.
    pub per_vehicle: BTreeMap<i64, TypeCounts>,
    /// Malformed messages sent.
    pub bad_total: u64,
    pub bad_by_kind: BTreeMap<BadKind, u64>,
    /// The same, by the reason the gateway gives when it rejects them.
    pub bad_by_reason: BTreeMap<RejectReason, u64>,
    /// Connections that dropped after being established.
    pub reconnects: u64,
    /// Commands received and answered.
    pub commands: CommandCounts,
    /// Seconds from the first connection to the end of the drain.
    pub elapsed_secs: f64,
    /// `total_sent / elapsed_secs`.
    pub rate: f64,
}

impl Summary {
    pub(crate) fn new(seed: u64, broker: &str, prefix: &str, qos: u8) -> Summary {
        Summary {
            seed,
            broker: broker.to_owned(),
            prefix: prefix.to_owned(),
            qos,
            stopped_by: StopReason::Cancelled,
            published: 0,
            total_sent: 0,
            failures: 0,
            failure_causes: FailureCauses::default(),
            by_type: TypeCounts::default(),
            per_vehicle: BTreeMap::new(),
            bad_total: 0,
            bad_by_kind: BTreeMap::new(),
            bad_by_reason: BTreeMap::new(),
            reconnects: 0,
            commands: CommandCounts::default(),
            elapsed_secs: 0.0,
            rate: 0.0,
        }
    }

    /// Counts one message as sent.
    pub(crate) fn record_sent(
        &mut self,
        vehicle_id: i64,
        kind: Option<MessageType>,
        bad: Option<BadKind>,
    ) {
        self.total_sent += 1;
        if let Some(bad) = bad {
            self.bad_total += 1;
            *self.bad_by_kind.entry(bad).or_default() += 1;
            *self.bad_by_reason.entry(bad.expected_reason()).or_default() += 1;
        } else if let Some(kind) = kind {
            self.by_type.add(kind, 1);
            self.per_vehicle.entry(vehicle_id).or_default().add(kind, 1);
        }
    }

    /// Good messages sent, all types.
    pub fn good_total(&self) -> u64 {
        self.by_type.total()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "jetson-sim: {} after {:.2} s (seed {})",
            self.stopped_by, self.elapsed_secs, self.seed
        )?;
        writeln!(
            f,
            "  broker       {} (prefix {}, QoS {})",
            self.broker, self.prefix, self.qos
        )?;
        writeln!(
            f,
            "  sent         {} of {} published, {:.1} msg/s",
            self.total_sent, self.published, self.rate
        )?;
        let c = &self.failure_causes;
        writeln!(
            f,
            "  failures     {} (rejected by client {}, lost on disconnect {}, unacked at exit {}; reconnects {})",
            self.failures, c.rejected_by_client, c.lost_on_disconnect, c.unacked_at_exit, self.reconnects
        )?;
        let m = &self.commands;
        writeln!(
            f,
            "  commands     {} received ({} repeated): answered ok {}, answered error {}, ignored {}, unsent {}",
            m.received, m.repeated, m.answered_ok, m.answered_error, m.ignored, m.unsent
        )?;
        let t = &self.by_type;
        writeln!(
            f,
            "  by type      raw_log {}, sensor_log {}, vehicle_log {} (good {})",
            t.raw_log,
            t.sensor_log,
            t.vehicle_log,
            t.total()
        )?;
        let kinds: Vec<String> = self
            .bad_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(
            f,
            "  bad          {}{}{}",
            self.bad_total,
            if kinds.is_empty() { "" } else { ": " },
            kinds.join(", ")
        )?;
        writeln!(
            f,
            "  per vehicle  {:>8} {:>9} {:>11} {:>12} {:>9}",
            "vehicle", "raw_log", "sensor_log", "vehicle_log", "total"
        )?;
        for (id, t) in &self.per_vehicle {
            writeln!(
                f,
                "               {:>8} {:>9} {:>11} {:>12} {:>9}",
                id,
                t.raw_log,
                t.sensor_log,
                t.vehicle_log,
                t.total()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_good_by_vehicle_and_bad_by_kind_and_reason() {
        let mut s = Summary::new(7, "mqtt://x:1883", "seano", 1);
        s.record_sent(1, Some(MessageType::VehicleLog), None);
        s.record_sent(1, Some(MessageType::RawLog), None);
        s.record_sent(2, None, Some(BadKind::WrongFieldType));
        s.record_sent(2, None, Some(BadKind::NonIntegerSensorId));
        assert_eq!(s.total_sent, 4);
        assert_eq!(s.good_total(), 2);
        assert_eq!(s.per_vehicle[&1].total(), 2);
        assert!(!s.per_vehicle.contains_key(&2));
        assert_eq!(s.bad_by_reason[&RejectReason::InvalidField], 2);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["bad_by_kind"]["wrong_field_type"], 1);
        assert_eq!(json["bad_by_reason"]["invalid_field"], 2);
        assert_eq!(json["per_vehicle"]["1"]["vehicle_log"], 1);
        assert!(s.to_string().contains("wrong_field_type 1"));
    }
}
