//! The history mode: seed one boat's day of telemetry over MQTT, as production would, then
//! time the history requests a dashboard makes over it.
//!
//! Seeding: one publisher (vehicle `--start-id`) sends `--history-rows` vehicle_logs at QoS 1
//! as fast as it can, their `timestamp`s stepping `1 / --history-rate-hz` seconds and ending
//! at the start of the current minute (so the span is whole minutes and the per-minute rollups
//! line up with it). The gateway stores them and keeps its rollups at commit time; the bench
//! waits until its stored count has grown by every message the broker confirmed.
//!
//! Then each request is run `--history-repeats` times back to back, on a new connection each
//! time, timed from connecting to the whole answer read: the first run on its own, and p50,
//! p99 and max over all of them, with the answer's size, its items and the gateway's CPU time
//! per request.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rumqttc::QoS;
use serde_json::Value;

use crate::cli::Args;
use crate::payload::{now_us, rfc3339_ms};
use crate::probe;
use crate::publish::{self, Timeline};
use crate::report::{HistoryFigures, Report, RequestFigures};
use crate::scenario::{counters, limits, params, pub_config, read_all, usage, Env, Readings};
use crate::track::latency;

/// The most buckets (or bucketed track points) the gateway returns in one answer.
const MAX_BUCKETS: u64 = 10_000;

/// One request of the set: what it is called and its parts.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub name: &'static str,
    /// `vehicle_log` or `track`.
    pub endpoint: &'static str,
    /// The query without `from` and `to`: `bucket=1m&limit=1440`.
    pub query: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Request {
    pub fn path(&self, vehicle: i64) -> String {
        format!(
            "/api/vehicles/{vehicle}/{}?from={}&to={}&{}",
            self.endpoint,
            rfc3339_ms(self.from_ms),
            rfc3339_ms(self.to_ms),
            self.query
        )
    }

    /// The request as the table shows it.
    pub fn label(&self) -> String {
        format!("{}?{}", self.endpoint, self.query)
    }
}

/// Buckets of `secs` (aligned on the Unix epoch, as the gateway aligns them) that
/// `[from_ms, to_ms)` touches, within what one answer may hold.
fn buckets(from_ms: i64, to_ms: i64, secs: i64) -> u64 {
    let size = secs * 1000;
    let first = from_ms.div_euclid(size);
    let last = (to_ms - 1).div_euclid(size);
    ((last - first + 1).max(1) as u64).min(MAX_BUCKETS)
}

/// The requests timed over the span `[from_ms, to_ms)`: a raw page and a raw track of the whole
/// span (the most one answer holds), bucketed history and track of whole minutes (read from the
/// rollups), and for contrast 30 s buckets (built from raw rows) of the last hour.
pub fn requests(from_ms: i64, to_ms: i64) -> Vec<Request> {
    let whole = |name, endpoint, query: String| Request {
        name,
        endpoint,
        query,
        from_ms,
        to_ms,
    };
    let minutes = buckets(from_ms, to_ms, 60);
    let quarters = buckets(from_ms, to_ms, 900);
    let last_hour = from_ms.max(to_ms - 3_600_000);
    vec![
        whole("raw page", "vehicle_log", "limit=1000".into()),
        whole("raw track", "track", "points=1000".into()),
        whole(
            "1m buckets",
            "vehicle_log",
            format!("bucket=1m&limit={minutes}"),
        ),
        whole(
            "15m buckets",
            "vehicle_log",
            format!("bucket=15m&limit={quarters}"),
        ),
        whole("1m track", "track", format!("bucket=1m&points={minutes}")),
        Request {
            name: "30s buckets, last hour",
            endpoint: "vehicle_log",
            query: format!("bucket=30s&limit={}", buckets(last_hour, to_ms, 30)),
            from_ms: last_hour,
            to_ms,
        },
    ]
}

/// What one answer holds, as the table reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Answer {
    pub items: u64,
    pub source: Option<String>,
    pub counted: Option<u64>,
    pub total_points: Option<u64>,
    pub has_more: Option<bool>,
}

/// Reads a history page (`items`), a bucket page (`items` with `count`s, `source`) or a track
/// (`points`, `total_points`).
pub fn read_answer(body: &str) -> Result<Answer> {
    let v: Value = serde_json::from_str(body).context("the answer is not JSON")?;
    let list = v
        .get("items")
        .or_else(|| v.get("points"))
        .and_then(Value::as_array)
        .context("the answer has neither items nor points")?;
    let bucketed = v.get("bucket_seconds").is_some();
    Ok(Answer {
        items: list.len() as u64,
        source: v.get("source").and_then(Value::as_str).map(str::to_owned),
        counted: bucketed.then(|| {
            list.iter()
                .filter_map(|b| b.get("count").and_then(Value::as_u64))
                .sum()
        }),
        total_points: v.get("total_points").and_then(Value::as_u64),
        has_more: v.get("has_more").and_then(Value::as_bool),
    })
}

/// What seeding published and stored, with the readings around it.
pub(crate) struct Seeded {
    pub timeline: Timeline,
    pub outcome: publish::PublishOutcome,
    /// The gateway's counters before and once the last message was stored.
    pub c0: probe::GatewayCounters,
    pub last: probe::GatewayCounters,
    pub r0: Readings,
    pub r1: Readings,
    /// vehicle_logs stored, and the seconds from the first publish to the last one stored.
    pub stored: u64,
    pub seed_s: f64,
    /// How long nothing more was stored before the bench gave up waiting.
    pub quiet: Duration,
}

/// Seeds `rows` vehicle_logs of vehicle `--start-id` at full speed, QoS 1, their timestamps
/// `1 / --history-rate-hz` s apart and ending at the current minute, and waits until the
/// gateway has stored every one the broker confirmed (or nothing more for a while).
pub(crate) async fn seed(args: &Args, env: &Env, rows: u64) -> Result<Seeded> {
    let step_ms = 1000.0 / args.history_rate_hz;
    // The span ends at the start of the current minute: whole minutes from start to end.
    let end_ms = (now_us() / 1000) as i64 / 60_000 * 60_000;
    let span_ms = (rows as f64 * step_ms).round() as i64;
    let timeline = Timeline {
        first_ms: end_ms - span_ms,
        step_ms,
        count: rows,
    };

    let mut cfg = pub_config(args, env, 1);
    cfg.qos = QoS::AtLeastOnce;
    cfg.timeline = Some(timeline);
    let pubs = publish::connect_all(&cfg, 1).await?;
    let c0 = counters(env)
        .await
        .context("seeding reads GET /api/ws/stats; is the gateway reachable?")?;
    let r0 = read_all(env);
    let start = Instant::now();
    eprintln!(
        "bench: seeding {rows} vehicle_logs of vehicle {}, {} to {}",
        args.start_id,
        rfc3339_ms(timeline.first_ms),
        rfc3339_ms(timeline.end_ms())
    );
    let outcome = publish::run(
        pubs,
        &cfg,
        start,
        0.0,
        Duration::ZERO,
        Duration::from_secs_f64(args.drain.max(60.0)),
    )
    .await;
    eprintln!(
        "bench: {} published in {:.1} s; waiting for the gateway to store them",
        outcome.confirmed_total,
        start.elapsed().as_secs_f64()
    );

    // Until every confirmed message is stored, or nothing more is for a while.
    let quiet = Duration::from_secs_f64(args.drain.max(30.0));
    let mut last = c0;
    let mut done_at = start.elapsed();
    let mut progress_at = Instant::now();
    let mut printed = Instant::now();
    loop {
        if let Some(c) = counters(env).await {
            if c.stored_vehicle_log != last.stored_vehicle_log {
                progress_at = Instant::now();
                done_at = start.elapsed();
            }
            last = c;
        }
        let stored = last
            .stored_vehicle_log
            .saturating_sub(c0.stored_vehicle_log);
        if stored >= outcome.confirmed_total || progress_at.elapsed() >= quiet {
            break;
        }
        if printed.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "bench: {stored} of {} stored after {:.0} s",
                outcome.confirmed_total,
                start.elapsed().as_secs_f64()
            );
            printed = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r1 = read_all(env);
    let stored = last
        .stored_vehicle_log
        .saturating_sub(c0.stored_vehicle_log);
    let seed_s = done_at.as_secs_f64();
    eprintln!(
        "bench: {stored} stored in {seed_s:.1} s ({:.0}/s)",
        stored as f64 / seed_s.max(1e-3)
    );
    Ok(Seeded {
        timeline,
        outcome,
        c0,
        last,
        r0,
        r1,
        stored,
        seed_s,
        quiet,
    })
}

pub async fn run(args: &Args, env: &Env) -> Result<Report> {
    let vehicle = args.start_id;
    let Seeded {
        timeline,
        outcome,
        c0,
        last,
        r0,
        r1,
        stored,
        seed_s,
        quiet,
    } = seed(args, env, args.history_rows).await?;
    let mut u = usage(env, &r0, &r1, None, None, 0);
    if let (Some(s), Some(cpu)) = (u.server.as_mut(), u.server_cpu_s) {
        if stored > 0 {
            s.cpu_us_per_frame = Some(cpu * 1e6 / stored as f64);
        }
    }

    // Time the requests.
    let timeout = Duration::from_secs_f64(args.history_timeout);
    let mut figures = Vec::new();
    for req in requests(timeline.first_ms, timeline.end_ms()) {
        let f = time_request(env, vehicle, &req, args.history_repeats, timeout).await;
        eprintln!(
            "bench: {}: {} items, {} bytes, p50 {} ms",
            f.name,
            f.items,
            f.bytes,
            f.ms.map_or("-".into(), |l| format!("{:.1}", l.p50))
        );
        figures.push(f);
    }
    // The requests may have raised the gateway's peak memory (a raw track streams every row).
    if let (Some(s), Some(now)) = (u.server.as_mut(), env.server_sample()) {
        s.peak_rss_mib = now.hwm_kib as f64 / 1024.0;
    }

    let achieved = outcome.attempted as f64 / outcome.publish_secs.max(1e-3);
    let mut notes = vec![format!(
        "seeding: published {:.0}/s, stored {:.0}/s",
        achieved,
        stored as f64 / seed_s.max(1e-3)
    )];
    let mut errors = outcome.errors;
    if stored < outcome.confirmed_total {
        errors.push(format!(
            "only {stored} of the {} messages published were stored (nothing more for {:.0} s)",
            outcome.confirmed_total,
            quiet.as_secs_f64()
        ));
    } else if stored > outcome.confirmed_total {
        notes.push(format!(
            "{} more stored than published (another publisher on the prefix?)",
            stored - outcome.confirmed_total
        ));
    }
    if figures.iter().any(|f| !f.errors.is_empty()) {
        errors.push("some requests failed (see history.requests)".into());
    }
    Ok(Report {
        scenario: args.scenario_name(),
        kind: "history".into(),
        params: crate::report::Params {
            publishers: 1,
            qos: 1,
            duration_s: outcome.publish_secs,
            ..params(args, 0.0, 0)
        },
        published: outcome.confirmed_total,
        publish_attempted: outcome.attempted,
        publish_rate: achieved,
        frames_expected: outcome.confirmed_total,
        frames_received: stored,
        lost: outcome.confirmed_total.saturating_sub(stored),
        delivered_per_s: stored as f64 / seed_s.max(1e-3),
        limit: limits(0.0, achieved, &u, env.threads),
        server: u.server,
        broker_cpu_percent: u.broker_cpu,
        bench_cpu_percent: u.bench_cpu,
        machine_idle_percent: u.machine_idle,
        gateway_counters: Some(last.delta(c0)),
        history: Some(HistoryFigures {
            vehicle_id: vehicle,
            rows: outcome.confirmed_total,
            stored,
            rate_hz: args.history_rate_hz,
            from: rfc3339_ms(timeline.first_ms),
            to: rfc3339_ms(timeline.end_ms()),
            span_s: (timeline.end_ms() - timeline.first_ms) as f64 / 1000.0,
            seed_s,
            seed_stored_per_s: stored as f64 / seed_s.max(1e-3),
            repeats: args.history_repeats,
            requests: figures,
        }),
        notes,
        errors,
        ..Default::default()
    })
}

/// Runs one request `repeats` times; stops at the first failure.
async fn time_request(
    env: &Env,
    vehicle: i64,
    req: &Request,
    repeats: u32,
    timeout: Duration,
) -> RequestFigures {
    let path = req.path(vehicle);
    let mut f = RequestFigures {
        name: req.name.into(),
        request: req.label(),
        range_s: (req.to_ms - req.from_ms) as f64 / 1000.0,
        path: path.clone(),
        ..Default::default()
    };
    let mut samples_us = Vec::with_capacity(repeats as usize);
    let cpu0 = env.server_sample();
    for _ in 0..repeats {
        let t = Instant::now();
        let answer =
            probe::http_get_within(env.gateway, &env.gateway_authority, &path, timeout).await;
        let us = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        match answer {
            Ok((status, body)) => {
                f.status = status;
                f.bytes = body.len() as u64;
                if status != 200 {
                    f.errors.push(format!("HTTP {status}: {}", clip(&body)));
                    break;
                }
                if f.first_ms.is_none() {
                    f.first_ms = Some(f64::from(us) / 1000.0);
                }
                samples_us.push(us);
                match read_answer(&body) {
                    Ok(a) => {
                        f.items = a.items;
                        f.source = a.source;
                        f.counted = a.counted;
                        f.total_points = a.total_points;
                        f.has_more = a.has_more;
                    }
                    Err(e) => {
                        f.errors.push(format!("{e:#}: {}", clip(&body)));
                        break;
                    }
                }
            }
            Err(e) => {
                f.errors.push(format!("{e:#}"));
                break;
            }
        }
    }
    let cpu1 = env.server_sample();
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        if !samples_us.is_empty() {
            f.gateway_cpu_ms = Some((b.cpu_s - a.cpu_s) * 1000.0 / samples_us.len() as f64);
        }
    }
    f.ms = latency(&mut samples_us);
    f
}

/// The start of a body, for an error message.
fn clip(body: &str) -> String {
    body.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_of_whole_minutes_asks_for_every_bucket_in_one_answer() {
        let end = 1_796_097_600_000; // 2026-12-01T04:00:00Z
        let day = requests(end - 86_400_000, end);
        let by_name = |n: &str| day.iter().find(|r| r.name == n).unwrap().clone();
        assert_eq!(
            by_name("1m buckets").label(),
            "vehicle_log?bucket=1m&limit=1440"
        );
        assert_eq!(
            by_name("15m buckets").label(),
            "vehicle_log?bucket=15m&limit=96"
        );
        assert_eq!(by_name("1m track").label(), "track?bucket=1m&points=1440");
        assert_eq!(by_name("raw page").label(), "vehicle_log?limit=1000");
        assert_eq!(by_name("raw track").label(), "track?points=1000");
        let hour = by_name("30s buckets, last hour");
        assert_eq!(hour.label(), "vehicle_log?bucket=30s&limit=120");
        assert_eq!(hour.to_ms - hour.from_ms, 3_600_000);
        assert_eq!(
            by_name("raw page").path(3),
            "/api/vehicles/3/vehicle_log?from=2026-11-30T04:00:00.000Z&to=2026-12-01T04:00:00.000Z&limit=1000"
        );
        // Twenty minutes: the last hour is the whole span; a span off the minute touches one
        // bucket more.
        let short = requests(end - 1_200_000, end);
        let hour = short.iter().find(|r| r.name.contains("last hour")).unwrap();
        assert_eq!(hour.from_ms, end - 1_200_000);
        assert_eq!(hour.label(), "vehicle_log?bucket=30s&limit=40");
        assert_eq!(buckets(end - 1_200_000 + 500, end + 500, 60), 21);
        assert_eq!(buckets(0, 400 * 86_400_000, 60), MAX_BUCKETS);
    }

    #[test]
    fn answers_are_read_for_their_items() {
        let page = r#"{"vehicle_id":1,"type":"vehicle_log","items":[{"seq":1},{"seq":2}],"has_more":true}"#;
        assert_eq!(
            read_answer(page).unwrap(),
            Answer {
                items: 2,
                has_more: Some(true),
                ..Default::default()
            }
        );
        let buckets = r#"{"bucket":"1m","bucket_seconds":60,"source":"rollup","items":[{"count":600},{"count":599}],"has_more":false}"#;
        let a = read_answer(buckets).unwrap();
        assert_eq!(
            (a.items, a.source.as_deref(), a.counted),
            (2, Some("rollup"), Some(1199))
        );
        let track =
            r#"{"vehicle_id":1,"total_points":5000,"downsampled":true,"points":[{"time":"x"}]}"#;
        let a = read_answer(track).unwrap();
        assert_eq!((a.items, a.total_points, a.counted), (1, Some(5000), None));
        assert!(read_answer(r#"{"error":"x"}"#).is_err());
        assert!(read_answer("<html>").is_err());
    }
}
