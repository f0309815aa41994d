//! One run's (or ramp step's) result: the JSON shape and the Markdown table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::commands::CommandFigures;
use crate::probe::GatewayCounters;
use crate::track::{Latency, WorstClient};

/// Everything a run measured. Fields that do not apply to a kind of run are null.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    /// `fan-out`, `vehicle`, `mqtt-baseline`, `ingest`, `idle` or `commands`.
    pub kind: String,
    /// Ramp step, from 1.
    pub step: Option<u32>,
    pub params: Params,
    /// Confirmed publishes: PUBACKed (QoS 1) or written (QoS 0).
    pub published: u64,
    /// Publish calls made (published + never confirmed).
    pub publish_attempted: u64,
    /// Achieved publish rate: calls / seconds spent publishing.
    pub publish_rate: f64,
    pub target_rate: f64,
    /// Sum over healthy clients of the confirmed messages of their vehicles; for ingest, the
    /// messages published.
    pub frames_expected: u64,
    /// Data frames the healthy clients received (duplicates included); for ingest, rows stored.
    pub frames_received: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Frames for a vehicle the client did not ask for.
    pub wrong_vehicle: u64,
    /// Delivered frames (ingest: stored messages) per second, from the first publish to the last
    /// frame (stored message).
    pub delivered_per_s: f64,
    /// Publish to frame received, milliseconds, over every healthy client's frames.
    pub latency_ms: Option<Latency>,
    pub worst_client: Option<WorstClient>,
    /// The measured server process: the gateway, or the broker in the MQTT baseline.
    pub server: Option<Server>,
    pub broker_cpu_percent: Option<f64>,
    pub bench_cpu_percent: Option<f64>,
    /// The load generator's own peak RSS (VmHWM), MiB.
    #[serde(default)]
    pub bench_peak_rss_mib: Option<f64>,
    /// Idle share of the whole machine during the measurement.
    pub machine_idle_percent: Option<f64>,
    pub clients_connected: u64,
    pub clients_failed: u64,
    /// Healthy clients whose connection ended before the bench closed it.
    pub healthy_closed: u64,
    pub slow: Option<Slow>,
    /// Commands mode: what the commands did and how long they took.
    #[serde(default)]
    pub commands: Option<CommandFigures>,
    /// The gateway's own counters over the measurement (`GET /api/ws/stats`).
    pub gateway_counters: Option<GatewayCounters>,
    /// Why the figures may say more about the load generator than about the gateway.
    pub limit: Option<String>,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Params {
    pub publishers: u32,
    pub rate: f64,
    pub duration_s: f64,
    pub qos: u8,
    pub clients: u32,
    pub mode: String,
    pub slow_clients: u32,
    pub mqtt_subscribers: u32,
    pub payload_bytes: usize,
    pub prefix: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Server {
    /// `gateway` or `broker`.
    pub role: String,
    pub pid: u32,
    /// Percent of one core over the measurement.
    pub cpu_percent: f64,
    /// CPU seconds over the measurement / frames delivered (ingest: messages stored; commands:
    /// commands sent), in µs.
    pub cpu_us_per_frame: Option<f64>,
    pub rss_start_mib: f64,
    pub rss_connected_mib: f64,
    /// VmHWM at the end.
    pub peak_rss_mib: f64,
    /// (RSS after connecting the clients − RSS before) / clients.
    pub rss_per_conn_kib: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Slow {
    pub clients: u64,
    /// Found closed by the gateway when finally read.
    pub dropped: u64,
    /// How they were closed: close code, `eof` or `error`.
    pub by_close: BTreeMap<String, u64>,
    pub still_open: u64,
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn num(x: f64) -> String {
    if x >= 100.0 {
        thousands(x.round() as u64)
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn opt(x: Option<f64>) -> String {
    x.map_or("-".into(), num)
}

/// Markdown tables, one row per report: the telemetry runs, then the command runs (their
/// figures are of another kind), each table only when it has rows.
pub fn table(reports: &[Report]) -> String {
    let (commands, telemetry): (Vec<&Report>, Vec<&Report>) =
        reports.iter().partition(|r| r.commands.is_some());
    let mut out = String::new();
    if !telemetry.is_empty() {
        telemetry_table(&mut out, &telemetry);
    }
    if !commands.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        commands_table(&mut out, &commands);
    }
    out
}

/// The notes column: what the figures depend on, then the run's own notes and errors.
fn notes(r: &Report) -> String {
    let server = r.server.as_ref();
    let mut notes = Vec::new();
    if let Some(s) = server {
        if s.role != "gateway" {
            notes.push(format!("server = {} (pid {})", s.role, s.pid));
        }
    }
    if let Some(l) = &r.limit {
        notes.push(l.clone());
    }
    if r.wrong_vehicle > 0 {
        notes.push(format!("{} frames of another vehicle", r.wrong_vehicle));
    }
    if r.healthy_closed > 0 {
        notes.push(format!("{} healthy clients closed", r.healthy_closed));
    }
    if r.clients_failed > 0 {
        notes.push(format!("{} clients failed to connect", r.clients_failed));
    }
    if let Some(b) = r.broker_cpu_percent {
        if server.is_none_or(|s| s.role != "broker") {
            notes.push(format!("broker CPU {}%", num(b)));
        }
    }
    if let Some(b) = r.bench_cpu_percent {
        notes.push(format!("bench CPU {}%", num(b)));
    }
    if let Some(i) = r.machine_idle_percent {
        notes.push(format!("machine idle {}%", num(i)));
    }
    if let Some(c) = &r.gateway_counters {
        for (n, what) in [
            (c.acks_stale, "acks of a dropped connection"),
            (c.commit_failures, "failed commits"),
            (c.rejected_total, "rejected messages"),
        ] {
            if n > 0 {
                notes.push(format!("gateway: {} {what}", thousands(n)));
            }
        }
    }
    notes.extend(r.notes.iter().cloned());
    if !r.errors.is_empty() {
        notes.push(format!("errors: {}", r.errors.join("; ")));
    }
    notes.join("; ").replace('|', "/")
}

fn telemetry_table(out: &mut String, reports: &[&Report]) {
    out.push_str(
        "| scenario | published | pub/s | expected | received | lost | dup | frames/s | p50 ms | p95 ms | p99 ms | max ms | CPU % | µs CPU/frame | peak RSS MiB | RSS/conn KiB | slow dropped | notes |\n",
    );
    out.push_str(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for r in reports {
        let idle = r.kind == "idle";
        let dash = |s: String| if idle { "-".to_string() } else { s };
        let lat = |f: fn(&Latency) -> f64| opt(r.latency_ms.as_ref().map(f));
        let server = r.server.as_ref();
        let name = match r.step {
            Some(s) => format!("{} step {s} ({} msg/s)", r.scenario, num(r.target_rate)),
            None => r.scenario.clone(),
        };
        let slow = r
            .slow
            .as_ref()
            .map_or("-".into(), |s| format!("{}/{}", s.dropped, s.clients));
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {slow} | {} |",
            dash(thousands(r.published)),
            dash(num(r.publish_rate)),
            dash(thousands(r.frames_expected)),
            dash(thousands(r.frames_received)),
            dash(thousands(r.lost)),
            dash(thousands(r.duplicated)),
            dash(num(r.delivered_per_s)),
            lat(|l| l.p50),
            lat(|l| l.p95),
            lat(|l| l.p99),
            lat(|l| l.max),
            opt(server.map(|s| s.cpu_percent)),
            opt(server.and_then(|s| s.cpu_us_per_frame)),
            opt(server.map(|s| s.peak_rss_mib)),
            opt(server.and_then(|s| s.rss_per_conn_kib)),
            notes(r),
        );
    }
}

/// Command runs: counts by outcome, the round trip (command frame to final `command_status`)
/// and the two intermediate latencies, and the gateway's CPU per command.
fn commands_table(out: &mut String, reports: &[&Report]) {
    out.push_str(
        "| command scenario | boats | sent | sent/s | succeeded | failed | timed out | expired | refused | missing | round trip p50 ms | p90 ms | p99 ms | max ms | accepted p50 / p99 ms | sent p50 / p99 ms | CPU % | µs CPU/cmd | peak RSS MiB | notes |\n",
    );
    out.push_str(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for r in reports {
        let Some(c) = &r.commands else { continue };
        let rt = |f: fn(&Latency) -> f64| opt(c.round_trip_ms.as_ref().map(f));
        let pair = |l: &Option<Latency>| {
            l.as_ref()
                .map_or("-".into(), |l| format!("{} / {}", num(l.p50), num(l.p99)))
        };
        let server = r.server.as_ref();
        let mut row_notes = notes(r);
        if !c.refusals.is_empty() {
            let refusals: Vec<String> = c
                .refusals
                .iter()
                .map(|(k, n)| format!("{n}× {k}"))
                .collect();
            if !row_notes.is_empty() {
                row_notes.push_str("; ");
            }
            row_notes.push_str(&format!("refused: {}", refusals.join(", ")).replace('|', "/"));
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {row_notes} |",
            r.scenario,
            c.vehicles,
            thousands(c.sent),
            num(c.send_rate),
            thousands(c.succeeded),
            thousands(c.failed),
            thousands(c.timed_out),
            thousands(c.expired),
            thousands(c.refused),
            thousands(c.missing),
            rt(|l| l.p50),
            rt(|l| l.p90),
            rt(|l| l.p99),
            rt(|l| l.max),
            pair(&c.accepted_ms),
            pair(&c.sent_ms),
            opt(server.map(|s| s.cpu_percent)),
            opt(server.and_then(|s| s.cpu_us_per_frame)),
            opt(server.map(|s| s.peak_rss_mib)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(num(123456.4), "123,456");
        assert_eq!(num(2.5), "2.50");
    }

    #[test]
    fn a_table_has_one_row_per_report() {
        let r = Report {
            scenario: "x".into(),
            kind: "fan-out".into(),
            ..Default::default()
        };
        let t = table(&[r.clone(), r]);
        assert_eq!(t.lines().count(), 4);
        let json = serde_json::to_string(&Report::default()).unwrap();
        serde_json::from_str::<Report>(&json).unwrap();
    }

    #[test]
    fn command_runs_get_a_table_of_their_own() {
        let fan_out = Report {
            scenario: "x".into(),
            kind: "fan-out".into(),
            ..Default::default()
        };
        let commands = Report {
            scenario: "commands 3 boats".into(),
            kind: "commands".into(),
            commands: Some(CommandFigures {
                vehicles: 3,
                sent: 12,
                succeeded: 12,
                ..Default::default()
            }),
            ..Default::default()
        };
        let t = table(&[fan_out.clone(), commands.clone()]);
        // Two tables of header, rule and one row, and a blank line between them.
        assert_eq!(t.lines().count(), 7, "{t}");
        assert!(t.contains("| commands 3 boats | 3 | 12 |"), "{t}");
        assert_eq!(table(&[commands]).lines().count(), 3);
        // A result file of an earlier version (no `commands`, no `p90`) still reads.
        let mut old = serde_json::to_value(&fan_out).unwrap();
        old.as_object_mut().unwrap().remove("commands");
        serde_json::from_value::<Report>(old).unwrap();
    }
}
