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
    /// `fan-out`, `vehicle`, `mqtt-baseline`, `ingest`, `idle`, `commands` or `history`.
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
    /// History mode: the seeded day and each request's timings.
    #[serde(default)]
    pub history: Option<HistoryFigures>,
    /// Ingest with --purge-pair: what retention purged while the messages were stored.
    #[serde(default)]
    pub purge: Option<PurgeFigures>,
    /// Storm mode, on the storm step's row: the storm clients' replay.
    #[serde(default)]
    pub storm: Option<StormFigures>,
    /// The gateway's own counters over the measurement (`GET /api/ws/stats`).
    pub gateway_counters: Option<GatewayCounters>,
    /// Why the figures may say more about the load generator than about the gateway.
    pub limit: Option<String>,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
}

/// A reconnect storm: clients that came back at once with `since=`, beside live clients.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StormFigures {
    pub clients: u64,
    pub since: u64,
    /// Frames each had to receive to be caught up (stored before the storm, after `since`).
    pub frames_each: u64,
    pub caught_up: u64,
    /// Storm clients whose connection ended before the bench closed it, and the first reason.
    pub closed: u64,
    pub first_close: Option<String>,
    /// Seconds from the storm's start to a client's catching up: median and last.
    pub replay_p50_s: Option<f64>,
    pub replay_max_s: Option<f64>,
    /// Replayed frames per second over all storm clients, to the last one caught up.
    pub replay_frames_per_s: Option<f64>,
    /// Frames the storm clients received, live ones included.
    pub frames_received: u64,
    /// The live clients' p99 without the storm and with it.
    pub live_p99_quiet_ms: Option<f64>,
    pub live_p99_storm_ms: Option<f64>,
}

impl StormFigures {
    /// One line for the table's notes; `step_s`: how long the storm step's live traffic ran.
    pub fn summary(&self, step_s: f64) -> String {
        let mut line = format!(
            "storm: {} clients since={} ({} frames each): {} caught up",
            self.clients,
            self.since,
            thousands(self.frames_each),
            self.caught_up
        );
        if let (Some(p50), Some(max)) = (self.replay_p50_s, self.replay_max_s) {
            line.push_str(&format!(
                ", replay p50 {} s, all in {} s",
                num(p50),
                num(max)
            ));
            if max > step_s {
                line.push_str(&format!(" (the live step ran {} s of it)", num(step_s)));
            }
        }
        if let Some(rate) = self.replay_frames_per_s {
            line.push_str(&format!(
                ", {} frames/s replayed",
                thousands(rate.round() as u64)
            ));
        }
        if let (Some(q), Some(s)) = (self.live_p99_quiet_ms, self.live_p99_storm_ms) {
            line.push_str(&format!("; live p99 {} → {} ms", num(q), num(s)));
        }
        if self.closed > 0 {
            line.push_str(&format!(
                "; {} storm clients closed ({})",
                self.closed,
                self.first_close.as_deref().unwrap_or("")
            ));
        }
        line
    }
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

/// The history mode's figures: what was seeded, then one entry per request timed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HistoryFigures {
    pub vehicle_id: i64,
    /// Messages published (and confirmed by the broker) for the seeded span.
    pub rows: u64,
    /// Of them, stored by the gateway before the requests began.
    pub stored: u64,
    pub rate_hz: f64,
    /// The seeded span, RFC 3339: the first message's timestamp and just past the last one.
    pub from: String,
    pub to: String,
    pub span_s: f64,
    /// From the first publish to the last message stored.
    pub seed_s: f64,
    pub seed_stored_per_s: f64,
    pub repeats: u32,
    pub requests: Vec<RequestFigures>,
}

/// One history request, run `repeats` times.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RequestFigures {
    /// What it is (`raw page`, `1m buckets`, ...).
    pub name: String,
    /// The request without the vehicle and the times: `vehicle_log?bucket=1m&limit=1440`.
    pub request: String,
    /// The span asked for, in seconds.
    pub range_s: f64,
    /// The path and query sent.
    pub path: String,
    /// The last answer's HTTP status.
    pub status: u16,
    /// Bucketed answers: `rollup` or `raw`, as the gateway says.
    pub source: Option<String>,
    /// Items (pages, buckets) or points (tracks) in the answer.
    pub items: u64,
    /// Body size in bytes.
    pub bytes: u64,
    /// Bucketed answers: the messages their buckets count.
    pub counted: Option<u64>,
    /// Tracks: positions in the range (`total_points`).
    pub total_points: Option<u64>,
    pub has_more: Option<bool>,
    /// The first run alone, milliseconds.
    pub first_ms: Option<f64>,
    /// Request to whole answer read, over every successful run.
    pub ms: Option<Latency>,
    /// The gateway's CPU time per request, milliseconds (from /proc, averaged over the runs).
    pub gateway_cpu_ms: Option<f64>,
    pub errors: Vec<String>,
}

/// An ingest run of a purge pair: the purge's progress while the messages were published.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PurgeFigures {
    /// The pair's label (--purge-pair).
    pub pair: String,
    /// Retention was on in this run (--purging); off: the pair's baseline.
    pub purging: bool,
    /// Old rows seeded before the gateway started (--seeded-rows).
    pub seeded_rows: u64,
    /// vehicle_log rows the gateway had purged before the publishers started.
    pub purged_before: u64,
    /// vehicle_log rows purged from the first publish to the end of the drain.
    pub purged: u64,
    /// Of them, purged while publishing.
    pub purged_publishing: u64,
    /// Seconds of the publishing in which the purged count rose (in 250 ms samples).
    pub purge_active_s: f64,
    pub publish_s: f64,
    /// purge_active_s / publish_s.
    pub overlap_percent: f64,
    /// Rows purged per second while the count was rising during publishing.
    pub purge_rows_per_s: Option<f64>,
    /// Seconds into the run of the last rise of the purged count, when it stopped rising
    /// before the end (the purge had caught up with its cutoff).
    pub purge_ended_at_s: Option<f64>,
    /// Commit time of the gateway's batches over the run (`seano_commit_seconds`): the mean,
    /// and the bucket bound under which 99 % fell.
    pub commit_mean_ms: Option<f64>,
    pub commit_p99_le_ms: Option<f64>,
    pub commits: u64,
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
/// figures are of another kind), then the purge pairs side by side (their runs are also
/// telemetry rows), then each history run's requests, each table only when it has rows.
pub fn table(reports: &[Report]) -> String {
    let (history, rest): (Vec<&Report>, Vec<&Report>) =
        reports.iter().partition(|r| r.history.is_some());
    let (commands, telemetry): (Vec<&Report>, Vec<&Report>) =
        rest.into_iter().partition(|r| r.commands.is_some());
    let purges: Vec<&Report> = telemetry
        .iter()
        .copied()
        .filter(|r| r.purge.is_some())
        .collect();
    let mut out = String::new();
    let section = |out: &mut String| {
        if !out.is_empty() {
            out.push('\n');
        }
    };
    if !telemetry.is_empty() {
        telemetry_table(&mut out, &telemetry);
    }
    if !commands.is_empty() {
        section(&mut out);
        commands_table(&mut out, &commands);
    }
    if !purges.is_empty() {
        section(&mut out);
        purge_table(&mut out, &purges);
    }
    for r in history {
        section(&mut out);
        history_table(&mut out, r);
    }
    out
}

/// `24 h`, `20 min`, `90 s`.
fn span(secs: f64) -> String {
    let s = secs.round() as u64;
    if s > 0 && s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{} s", num(secs))
    }
}

/// One history run: what was seeded, then a row per request.
fn history_table(out: &mut String, r: &Report) {
    let Some(h) = &r.history else { return };
    let cpu = r
        .server
        .as_ref()
        .and_then(|s| s.cpu_us_per_frame)
        .map_or(String::new(), |us| {
            format!(", gateway CPU {} µs per message", num(us))
        });
    let _ = writeln!(
        out,
        "History queries ({}): {} of {} vehicle_logs of vehicle {} at {} Hz over {} ({} to {}), published at full speed over MQTT QoS 1 ({}/s), stored in {} s ({} stored/s{cpu}); each request run {} times{}",
        r.scenario,
        thousands(h.stored),
        thousands(h.rows),
        h.vehicle_id,
        h.rate_hz,
        span(h.span_s),
        h.from,
        h.to,
        num(r.publish_rate),
        num(h.seed_s),
        num(h.seed_stored_per_s),
        h.repeats,
        if r.errors.is_empty() {
            String::new()
        } else {
            format!("; errors: {}", r.errors.join("; "))
        }
    );
    out.push('\n');
    out.push_str(
        "| history query | request | range | source | items | bytes | first ms | p50 ms | p99 ms | max ms | gateway CPU ms/request | notes |\n",
    );
    out.push_str(
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for q in &h.requests {
        let lat = |f: fn(&Latency) -> f64| opt(q.ms.as_ref().map(f));
        let mut notes = Vec::new();
        if let Some(n) = q.counted {
            notes.push(format!("buckets count {} messages", thousands(n)));
        }
        if let Some(n) = q.total_points {
            notes.push(format!("{} positions in range", thousands(n)));
        }
        if q.has_more == Some(true) {
            notes.push("has_more".into());
        }
        if !q.errors.is_empty() {
            notes.push(format!("errors: {}", q.errors.join("; ")));
        }
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            q.name,
            q.request,
            span(q.range_s),
            q.source.as_deref().unwrap_or("-"),
            thousands(q.items),
            thousands(q.bytes),
            opt(q.first_ms),
            lat(|l| l.p50),
            lat(|l| l.p99),
            lat(|l| l.max),
            opt(q.gateway_cpu_ms),
            notes.join("; ").replace('|', "/"),
        );
    }
}

/// The purge pairs: each pair's baseline (retention off) and purging run in one row.
fn purge_table(out: &mut String, reports: &[&Report]) {
    let mut pairs: Vec<(&str, Option<&Report>, Option<&Report>)> = Vec::new();
    for r in reports {
        let Some(p) = &r.purge else { continue };
        let at = match pairs.iter().position(|(label, _, _)| *label == p.pair) {
            Some(i) => i,
            None => {
                pairs.push((p.pair.as_str(), None, None));
                pairs.len() - 1
            }
        };
        if p.purging {
            pairs[at].2 = Some(r);
        } else {
            pairs[at].1 = Some(r);
        }
    }
    out.push_str(
        "| purge under load | seeded rows | target msg/s | stored/s, retention off | stored/s, purging | difference | rows purged during the run | purge rows/s | purge overlapped the run | commit mean ms off / on | commit p99 ms off / on | notes |\n",
    );
    out.push_str(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    fn figures(r: Option<&Report>) -> Option<&PurgeFigures> {
        r.and_then(|r| r.purge.as_ref())
    }
    for (label, off, on) in pairs {
        let rate = |r: Option<&Report>| r.map(|r| r.delivered_per_s);
        let difference = match (rate(off), rate(on)) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:+.1} %", (b - a) / a * 100.0),
            _ => "-".into(),
        };
        let pair = |f: fn(&PurgeFigures) -> Option<f64>| {
            format!(
                "{} / {}",
                opt(figures(off).and_then(f)),
                opt(figures(on).and_then(f))
            )
        };
        let seeded = figures(on)
            .or(figures(off))
            .map_or("-".into(), |p| thousands(p.seeded_rows));
        let target = on.or(off).map_or("-".into(), |r| num(r.target_rate));
        let p = figures(on);
        let mut notes = Vec::new();
        if let Some(p) = p {
            if p.purged_before > 0 {
                notes.push(format!(
                    "{} purged before the publishers started",
                    thousands(p.purged_before)
                ));
            }
            if let Some(at) = p.purge_ended_at_s {
                notes.push(format!("purge caught up {} s into the run", num(at)));
            }
        }
        if figures(off).is_some_and(|f| f.purged > 0) {
            notes.push(format!(
                "baseline purged {} rows: is retention off in it?",
                thousands(figures(off).map_or(0, |f| f.purged))
            ));
        }
        for (what, r) in [("off", off), ("on", on)] {
            match r {
                None => notes.push(format!("no run with retention {what}")),
                Some(r) if r.lost > 0 => {
                    notes.push(format!("retention {what}: {} lost", thousands(r.lost)))
                }
                Some(r) => {
                    if let Some(l) = &r.limit {
                        notes.push(format!("retention {what}: {l}"));
                    }
                }
            }
        }
        let _ = writeln!(
            out,
            "| {label} | {seeded} | {target} | {} | {} | {difference} | {} | {} | {} | {} | {} | {} |",
            opt(rate(off)),
            opt(rate(on)),
            p.map_or("-".into(), |p| thousands(p.purged)),
            opt(p.and_then(|p| p.purge_rows_per_s)),
            p.map_or("-".into(), |p| format!(
                "{} % ({} of {} s)",
                num(p.overlap_percent),
                num(p.purge_active_s),
                num(p.publish_s)
            )),
            pair(|f| f.commit_mean_ms),
            pair(|f| f.commit_p99_le_ms),
            notes.join("; ").replace('|', "/"),
        );
    }
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
    fn history_runs_get_a_table_of_their_own() {
        let ingest = Report {
            scenario: "ingest".into(),
            kind: "ingest".into(),
            ..Default::default()
        };
        let history = Report {
            scenario: "history".into(),
            kind: "history".into(),
            history: Some(HistoryFigures {
                vehicle_id: 1,
                rows: 864_000,
                stored: 864_000,
                rate_hz: 10.0,
                span_s: 86_400.0,
                repeats: 20,
                requests: vec![
                    RequestFigures {
                        name: "raw page".into(),
                        request: "vehicle_log?limit=1000".into(),
                        range_s: 86_400.0,
                        items: 1000,
                        ..Default::default()
                    },
                    RequestFigures {
                        name: "1m buckets".into(),
                        request: "vehicle_log?bucket=1m&limit=1440".into(),
                        range_s: 86_400.0,
                        source: Some("rollup".into()),
                        items: 1440,
                        counted: Some(864_000),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let t = table(&[ingest, history]);
        // The telemetry table (3 lines), a blank line, the caption, a blank line, the history
        // table's header, rule and two rows.
        assert_eq!(t.lines().count(), 10, "{t}");
        assert!(t.contains("864,000 of 864,000 vehicle_logs"), "{t}");
        assert!(t.contains("over 24 h"), "{t}");
        assert!(
            t.contains(
                "| 1m buckets | `vehicle_log?bucket=1m&limit=1440` | 24 h | rollup | 1,440 |"
            ),
            "{t}"
        );
        assert!(t.contains("buckets count 864,000 messages"), "{t}");
        let json = serde_json::to_string(&table_input_round_trip()).unwrap();
        serde_json::from_str::<Report>(&json).unwrap();
    }

    fn table_input_round_trip() -> Report {
        Report {
            history: Some(HistoryFigures::default()),
            purge: Some(PurgeFigures::default()),
            ..Default::default()
        }
    }

    #[test]
    fn a_purge_pair_is_one_row() {
        let run = |purging: bool, stored_per_s: f64, purged: u64| Report {
            scenario: format!("purge {purging}"),
            kind: "ingest".into(),
            target_rate: 10_000.0,
            delivered_per_s: stored_per_s,
            purge: Some(PurgeFigures {
                pair: "purge, SQLite".into(),
                purging,
                seeded_rows: 2_000_000,
                purged,
                purge_active_s: if purging { 20.0 } else { 0.0 },
                publish_s: 20.0,
                overlap_percent: if purging { 100.0 } else { 0.0 },
                purge_rows_per_s: purging.then_some(25_000.0),
                commit_mean_ms: Some(if purging { 40.0 } else { 30.0 }),
                commit_p99_le_ms: Some(if purging { 250.0 } else { 100.0 }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let t = table(&[run(false, 10_000.0, 0), run(true, 9_000.0, 500_000)]);
        // Two ingest rows, a blank line, the purge table with one row.
        assert_eq!(t.lines().count(), 8, "{t}");
        assert!(
            t.contains("| purge, SQLite | 2,000,000 | 10,000 | 10,000 | 9,000 | -10.0 % | 500,000 | 25,000 | 100 % (20.0 of 20.0 s) | 30.0 / 40.0 | 100 / 250 |"),
            "{t}"
        );
        // A pair without its baseline still gets its row.
        let alone = table(&[run(true, 9_000.0, 1)]);
        assert!(alone.contains("no run with retention off"), "{alone}");
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
