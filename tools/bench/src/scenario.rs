//! The runs: connect the receivers, publish one step (or a ramp of steps), drain, account;
//! ingest (no receivers, stored msg/s from the gateway's stats); idle connections; command
//! round trips (pace commands over the clients, wait for their final states, account). The
//! history mode is in `history`, which shares [`Env`] and the helpers here.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rumqttc::QoS;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::cli::{Args, Mode};
use crate::clients::{mqtt_subscriber, ws_client, MqttContext, WsContext};
use crate::commands::{self, Order};
use crate::payload::now_us;
use crate::probe::{self, GatewayCounters, Histogram, ProcSample};
use crate::publish::{self, PubConfig};
use crate::report::{Params, PurgeFigures, Report, Server, Slow};
use crate::track::{account, Accountant, ClientSlot, Closed, Progress, Tracker};

/// Where things are and what is measured.
pub(crate) struct Env {
    pub(crate) gateway: SocketAddr,
    /// `host:port` of the gateway.
    pub(crate) gateway_authority: String,
    broker_host: String,
    broker_port: u16,
    /// The other instances (`--also-gateway`): address and `host:port`.
    others: Vec<(SocketAddr, String)>,
    /// The measured server (gateway, or broker in the MQTT baseline).
    server_pid: Option<u32>,
    /// The other instances' processes: their CPU and memory are added to the server's.
    other_pids: Vec<u32>,
    server_role: &'static str,
    broker_pid: Option<u32>,
    /// Unique per bench process, for MQTT client ids.
    tag: String,
    pub(crate) threads: usize,
}

pub async fn run(args: &Args, threads: usize) -> Result<Vec<Report>> {
    let (gw_host, gw_port) = probe::authority(&args.gateway, "http", 80)?;
    let (broker_host, broker_port) = probe::authority(&args.broker, "mqtt", 1883)?;
    let baseline = args.mqtt_subscribers > 0;
    let gateway = probe::resolve(&gw_host, gw_port).await?;
    let (server_role, server_pid) = if baseline {
        let pid = args
            .gateway_pid
            .or_else(|| probe::listener_pid(broker_port));
        ("broker", pid)
    } else {
        ("gateway", find_gateway_pid(args, gw_port)?)
    };
    if server_pid.is_none() {
        eprintln!(
            "bench: no {server_role} process found (pass --gateway-pid); CPU and memory will not be reported"
        );
    }
    let mut others = Vec::new();
    let mut other_pids = Vec::new();
    for (i, url) in args.also_gateway.iter().enumerate() {
        let (host, port) = probe::authority(url, "http", 80)?;
        others.push((probe::resolve(&host, port).await?, format!("{host}:{port}")));
        match args
            .also_gateway_pid
            .get(i)
            .copied()
            .or_else(|| probe::listener_pid(port))
        {
            Some(pid) => other_pids.push(pid),
            None => eprintln!("bench: no process found for {url}; its CPU is not counted"),
        }
    }
    let env = Env {
        gateway,
        gateway_authority: format!("{gw_host}:{gw_port}"),
        others,
        broker_host,
        broker_port,
        server_pid,
        other_pids,
        server_role,
        // An embedded broker is the gateway itself: nothing separate to report.
        broker_pid: args
            .broker_pid
            .or_else(|| probe::listener_pid(broker_port))
            .filter(|pid| baseline || Some(*pid) != server_pid),
        tag: format!("{}-{}", std::process::id(), now_us() % 1_000_000),
        threads,
    };
    if !baseline && args.ready_timeout > 0.0 {
        for (addr, authority) in env.gateways() {
            probe::wait_ready(
                addr,
                &authority,
                Duration::from_secs_f64(args.ready_timeout),
            )
            .await?;
        }
    }
    if args.idle {
        return Ok(vec![idle(args, &env).await?]);
    }
    if args.mode == Mode::Commands {
        return Ok(vec![command_round_trips(args, &env).await?]);
    }
    if args.mode == Mode::History {
        return Ok(vec![crate::history::run(args, &env).await?]);
    }
    if args.mode == Mode::Storm {
        return crate::storm::run(args, &env).await;
    }
    if args.clients == 0 && !baseline {
        anyhow::ensure!(!args.ramp, "--ramp needs clients or MQTT subscribers");
        return Ok(vec![ingest(args, &env).await?]);
    }
    fan_out(args, &env).await
}

impl Env {
    /// Every instance the clients are spread over, `--gateway` first.
    fn gateways(&self) -> Vec<(SocketAddr, String)> {
        std::iter::once((self.gateway, self.gateway_authority.clone()))
            .chain(self.others.iter().cloned())
            .collect()
    }

    /// The measured server's reading: with several instances, their CPU and memory summed.
    pub(crate) fn server_sample(&self) -> Option<ProcSample> {
        let mut total = probe::sample(self.server_pid?)?;
        for pid in &self.other_pids {
            let s = probe::sample(*pid)?;
            total.cpu_s += s.cpu_s;
            total.rss_kib += s.rss_kib;
            total.hwm_kib += s.hwm_kib;
        }
        Some(total)
    }
}

fn find_gateway_pid(args: &Args, port: u16) -> Result<Option<u32>> {
    if let Some(pid) = args.gateway_pid {
        return Ok(Some(pid));
    }
    if let Some(pid) = probe::listener_pid(port) {
        return Ok(Some(pid));
    }
    let named = probe::pids_named("seano-gateway");
    match named.as_slice() {
        [] => Ok(None),
        [pid] => Ok(Some(*pid)),
        many => bail!("several seano-gateway processes ({many:?}); pass --gateway-pid"),
    }
}

/// The receivers of a run.
pub(crate) struct Pool {
    slots: Vec<Arc<ClientSlot>>,
    pub progress: Arc<Progress>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

pub(crate) async fn start_clients(args: &Args, env: &Env) -> Result<Pool> {
    let baseline = args.mqtt_subscribers > 0;
    let count = if baseline {
        args.mqtt_subscribers
    } else {
        args.clients
    } as usize;
    let slow_count = (count as f64 * args.slow_ratio).round() as usize;
    let stride = count.checked_div(slow_count).unwrap_or(0);
    let progress = Arc::new(Progress::default());
    let (stop, stop_rx) = watch::channel(false);
    let connect = Arc::new(Semaphore::new(args.connect_concurrency));
    let acc = || Accountant {
        start_id: args.start_id,
        progress: progress.clone(),
    };
    // One context per instance; client i connects to instance i mod N.
    let ws: Vec<Arc<WsContext>> = env
        .gateways()
        .into_iter()
        .map(|(addr, authority)| {
            Arc::new(WsContext {
                addr,
                authority,
                read_buffer: args.read_buffer,
                slow_rcvbuf: args.slow_rcvbuf,
                connect: connect.clone(),
                acc: acc(),
            })
        })
        .collect();
    let mqtt = Arc::new(MqttContext {
        host: env.broker_host.clone(),
        port: env.broker_port,
        prefix: args.prefix.clone(),
        tag: env.tag.clone(),
        connect,
        acc: acc(),
    });
    let mut slots = Vec::with_capacity(count);
    let mut tasks = Vec::with_capacity(count);
    for index in 0..count {
        let slot = Arc::new(ClientSlot {
            index,
            vehicle: (args.mode == Mode::Vehicle)
                .then(|| args.start_id + (index % args.publishers as usize) as i64),
            slow: stride > 0 && index % stride == stride - 1 && index / stride < slow_count,
            tracker: Mutex::new(Tracker::default()),
        });
        slots.push(slot.clone());
        let stop_rx = stop_rx.clone();
        tasks.push(if baseline {
            tokio::spawn(mqtt_subscriber(mqtt.clone(), slot, stop_rx))
        } else {
            tokio::spawn(ws_client(ws[index % ws.len()].clone(), slot, stop_rx))
        });
    }
    let pool = Pool {
        slots,
        progress,
        stop,
        tasks,
    };
    let deadline = Instant::now() + Duration::from_secs_f64(args.connect_timeout);
    let mut last_print = Instant::now();
    loop {
        let connected = pool.progress.connected.load(Relaxed) as usize;
        let failed = pool.progress.failed.load(Relaxed) as usize;
        if connected + failed >= count {
            break;
        }
        if Instant::now() > deadline {
            eprintln!(
                "bench: only {connected} of {count} clients connected in {}s",
                args.connect_timeout
            );
            break;
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            eprintln!("bench: {connected}/{count} clients connected");
            last_print = Instant::now();
        }
        let _ =
            tokio::time::timeout(Duration::from_millis(200), pool.progress.notify.notified()).await;
    }
    let failed = pool.progress.failed.load(Relaxed);
    if failed > 0 {
        let first = pool.slots.iter().find_map(|s| {
            // unwrap: the tracker's lock is never held across a panic.
            match &s.tracker.lock().unwrap().closed {
                Some(Closed::ConnectFailed(e)) => Some(e.clone()),
                _ => None,
            }
        });
        eprintln!(
            "bench: {failed} clients could not connect (first error: {})",
            first.unwrap_or_default()
        );
    }
    if pool.progress.connected.load(Relaxed) == 0 {
        bail!("no client could connect");
    }
    Ok(pool)
}

impl Pool {
    /// Closes every client; slow ones read their socket first.
    pub(crate) async fn stop(self) -> Vec<Arc<ClientSlot>> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
        self.slots
    }
}

/// CPU readings of everything measured, at one instant.
pub(crate) struct Readings {
    server: Option<ProcSample>,
    broker: Option<ProcSample>,
    me: Option<ProcSample>,
    machine: Option<(u64, u64)>,
}

pub(crate) fn read_all(env: &Env) -> Readings {
    Readings {
        server: env.server_sample(),
        broker: env.broker_pid.and_then(probe::sample),
        me: probe::sample(std::process::id()),
        machine: probe::machine_jiffies(),
    }
}

/// CPU and memory figures between two readings.
pub(crate) struct Usage {
    pub(crate) server: Option<Server>,
    pub(crate) server_cpu_s: Option<f64>,
    pub(crate) broker_cpu: Option<f64>,
    pub(crate) bench_cpu: Option<f64>,
    pub(crate) machine_idle: Option<f64>,
}

pub(crate) fn usage(
    env: &Env,
    a: &Readings,
    b: &Readings,
    before_connect: Option<ProcSample>,
    after_connect: Option<ProcSample>,
    connections: u64,
) -> Usage {
    let pair = |x: Option<ProcSample>, y: Option<ProcSample>| x.zip(y);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let server = pair(a.server, b.server).map(|(x, y)| Server {
        role: env.server_role.into(),
        pid: env.server_pid.unwrap_or(0),
        cpu_percent: probe::cpu_percent(&x, &y),
        cpu_us_per_frame: None,
        rss_start_mib: mib(before_connect.unwrap_or(x).rss_kib),
        rss_connected_mib: mib(after_connect.unwrap_or(x).rss_kib),
        peak_rss_mib: mib(y.hwm_kib),
        rss_per_conn_kib: pair(before_connect, after_connect)
            .filter(|_| connections > 0)
            .map(|(p, q)| (q.rss_kib as f64 - p.rss_kib as f64) / connections as f64),
    });
    Usage {
        server,
        server_cpu_s: pair(a.server, b.server).map(|(x, y)| y.cpu_s - x.cpu_s),
        broker_cpu: pair(a.broker, b.broker).map(|(x, y)| probe::cpu_percent(&x, &y)),
        bench_cpu: pair(a.me, b.me).map(|(x, y)| probe::cpu_percent(&x, &y)),
        machine_idle: a
            .machine
            .zip(b.machine)
            .and_then(|(x, y)| probe::idle_percent(x, y)),
    }
}

pub(crate) fn params(args: &Args, rate: f64, slow_clients: u32) -> Params {
    Params {
        publishers: args.publishers,
        rate,
        duration_s: args.duration,
        qos: args.qos,
        clients: args.clients,
        mode: match args.mode {
            Mode::All => "all".into(),
            Mode::Vehicle => "vehicle".into(),
            Mode::Commands => "commands".into(),
            Mode::History => "history".into(),
            Mode::Storm => "storm".into(),
        },
        slow_clients,
        mqtt_subscribers: args.mqtt_subscribers,
        payload_bytes: args.payload_bytes,
        prefix: args.prefix.clone(),
    }
}

pub(crate) fn pub_config(args: &Args, env: &Env, run: u64) -> PubConfig {
    PubConfig {
        host: env.broker_host.clone(),
        port: env.broker_port,
        prefix: args.prefix.clone(),
        qos: if args.qos == 1 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        },
        inflight: args.inflight,
        payload_bytes: args.payload_bytes,
        start_id: args.start_id,
        run,
        tag: env.tag.clone(),
        timeline: None,
    }
}

/// Flags what says more about the generator or the machine than about the server.
pub(crate) fn limits(rate: f64, achieved: f64, u: &Usage, threads: usize) -> Option<String> {
    let mut why = Vec::new();
    if rate > 0.0 && achieved < 0.95 * rate {
        why.push(format!(
            "generator-limited: published {:.0}/s of {:.0}/s",
            achieved, rate
        ));
    }
    if let Some(b) = u.bench_cpu {
        if b >= 90.0 * threads as f64 {
            why.push(format!("generator-limited: bench CPU {b:.0}%"));
        }
    }
    if let Some(idle) = u.machine_idle {
        if idle < 5.0 {
            why.push(format!("machine CPU saturated ({idle:.1}% idle)"));
        }
    }
    (!why.is_empty()).then(|| why.join(", "))
}

pub(crate) async fn counters(env: &Env) -> Option<GatewayCounters> {
    probe::all_counters(&env.gateways()).await.ok()
}

async fn fan_out(args: &Args, env: &Env) -> Result<Vec<Report>> {
    let baseline = args.mqtt_subscribers > 0;
    let before_connect = env.server_sample();
    let pool = start_clients(args, env).await?;
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let after_connect = env.server_sample();
    let connections = pool.progress.connected.load(Relaxed);
    let slow_clients = pool.slots.iter().filter(|s| s.slow).count() as u32;

    let mut reports = Vec::new();
    let mut rate = args.rate;
    let steps = if args.ramp { args.ramp_max_steps } else { 1 };
    for step in 1..=steps {
        let mut r = fan_out_step(
            args,
            env,
            &pool,
            step,
            rate,
            before_connect,
            after_connect,
            connections,
        )
        .await?;
        r.params = params(args, rate, slow_clients);
        r.kind = if baseline {
            "mqtt-baseline"
        } else if args.mode == Mode::Vehicle {
            "vehicle"
        } else {
            "fan-out"
        }
        .into();
        if args.ramp {
            r.step = Some(step);
            let p99 = r.latency_ms.map(|l| l.p99).unwrap_or(0.0);
            let reason = if p99 > args.ramp_p99_ms {
                Some(format!("p99 {p99:.1} ms > {} ms", args.ramp_p99_ms))
            } else if r.lost > 0 {
                Some(format!("{} lost", r.lost))
            } else if r.healthy_closed > 0 {
                Some(format!("{} healthy clients closed", r.healthy_closed))
            } else if r
                .limit
                .as_deref()
                .is_some_and(|l| l.contains("generator-limited"))
            {
                Some("generator-limited".into())
            } else if step == steps {
                Some("last step (--ramp-max-steps)".into())
            } else {
                None
            };
            eprintln!(
                "bench: step {step}: {:.0} msg/s, {:.0} frames/s, p99 {p99:.1} ms, lost {}, server CPU {}",
                rate,
                r.delivered_per_s,
                r.lost,
                r.server
                    .as_ref()
                    .map_or("-".into(), |s| format!("{:.0}%", s.cpu_percent))
            );
            if let Some(reason) = reason {
                r.notes.push(format!("ramp stops: {reason}"));
                reports.push(r);
                break;
            }
        }
        reports.push(r);
        rate *= args.ramp_factor;
    }

    let slots = pool.stop().await;
    let slow: Vec<_> = slots.iter().filter(|s| s.slow).collect();
    if !slow.is_empty() {
        let mut figures = Slow {
            clients: slow.len() as u64,
            ..Default::default()
        };
        for s in slow {
            // unwrap: the tracker's lock is never held across a panic.
            let t = s.tracker.lock().unwrap();
            let key = match &t.closed {
                None => {
                    figures.still_open += 1;
                    continue;
                }
                Some(Closed::Code(c)) => c.to_string(),
                Some(Closed::Eof) => "eof".into(),
                Some(Closed::Error(e)) if e.to_lowercase().contains("reset") => "reset".into(),
                Some(Closed::Error(_)) => "error".into(),
                Some(Closed::ConnectFailed(_)) => "never connected".into(),
            };
            if key != "never connected" {
                figures.dropped += 1;
            }
            *figures.by_close.entry(key).or_default() += 1;
        }
        if let Some(last) = reports.last_mut() {
            last.notes.push(format!(
                "slow clients: {} of {} closed by the gateway {:?}",
                figures.dropped, figures.clients, figures.by_close
            ));
            last.slow = Some(figures);
        }
    }
    Ok(reports)
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn fan_out_step(
    args: &Args,
    env: &Env,
    pool: &Pool,
    step: u32,
    rate: f64,
    before_connect: Option<ProcSample>,
    after_connect: Option<ProcSample>,
    connections: u64,
) -> Result<Report> {
    let baseline = args.mqtt_subscribers > 0;
    let run = u64::from(step);
    for s in &pool.slots {
        // unwrap: the tracker's lock is never held across a panic.
        s.tracker.lock().unwrap().reset(run);
    }
    pool.progress.unique_frames.store(0, Relaxed);
    let cfg = pub_config(args, env, run);
    let pubs = publish::connect_all(&cfg, args.publishers).await?;
    let counters0 = if baseline { None } else { counters(env).await };

    let r0 = read_all(env);
    let start = Instant::now();
    let start_us = now_us();
    let duration = Duration::from_secs_f64(args.duration);
    let ack_wait = Duration::from_secs_f64(args.drain.max(5.0));
    let outcome = publish::run(pubs, &cfg, start, rate, duration, ack_wait).await;

    // Drain: until every healthy client has every expected frame, or no progress for --drain.
    let expected: u64 = pool
        .slots
        .iter()
        .filter(|s| !s.slow)
        .map(|s| match s.vehicle {
            None => outcome.confirmed_total,
            Some(v) => outcome
                .confirmed
                .get((v - args.start_id) as usize)
                .map_or(0, |b| b.len()),
        })
        .sum();
    let quiet = Duration::from_secs_f64(args.drain);
    let cap = Instant::now() + Duration::from_secs_f64((args.drain * 10.0).max(30.0));
    let mut seen = pool.progress.unique_frames.load(Relaxed);
    let mut progress_at = Instant::now();
    loop {
        let now = pool.progress.unique_frames.load(Relaxed);
        if now >= expected || Instant::now() > cap {
            break;
        }
        if now != seen {
            seen = now;
            progress_at = Instant::now();
        } else if progress_at.elapsed() >= quiet {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r1 = read_all(env);
    let counters1 = if baseline { None } else { counters(env).await };

    let d = account(&pool.slots, &outcome.confirmed, args.start_id);
    let mut u = usage(env, &r0, &r1, before_connect, after_connect, connections);
    let span = d.last_frame_us.saturating_sub(start_us) as f64 / 1e6;
    let delivered_per_s = if span > 0.0 {
        d.frames_received as f64 / span
    } else {
        0.0
    };
    if let (Some(s), Some(cpu)) = (u.server.as_mut(), u.server_cpu_s) {
        if d.frames_received > 0 {
            s.cpu_us_per_frame = Some(cpu * 1e6 / d.frames_received as f64);
        }
    }
    let achieved = outcome.attempted as f64 / outcome.publish_secs;
    let mut notes = Vec::new();
    if !env.others.is_empty() {
        notes.push(format!(
            "{} instances, clients split evenly; CPU and memory summed over all",
            env.others.len() + 1
        ));
    }
    if d.unconfirmed_received > 0 {
        notes.push(format!(
            "{} frames of unconfirmed publishes",
            d.unconfirmed_received
        ));
    }
    if d.stale_frames > 0 {
        notes.push(format!("{} late frames of an earlier step", d.stale_frames));
    }
    if let Some(w) = &d.worst_client {
        if w.lost > 0 || w.duplicated > 0 {
            notes.push(format!(
                "worst client #{}{}: lost {}, dup {}",
                w.index,
                w.vehicle
                    .map_or(String::new(), |v| format!(" (vehicle {v})")),
                w.lost,
                w.duplicated
            ));
        }
    }
    Ok(Report {
        scenario: args.scenario_name(),
        target_rate: rate,
        published: outcome.confirmed_total,
        publish_attempted: outcome.attempted,
        publish_rate: achieved,
        frames_expected: d.frames_expected,
        frames_received: d.frames_received,
        lost: d.lost,
        duplicated: d.duplicated,
        wrong_vehicle: d.wrong_vehicle,
        delivered_per_s,
        latency_ms: d.latency_ms,
        worst_client: d.worst_client.clone(),
        limit: limits(rate, achieved, &u, env.threads),
        server: u.server,
        broker_cpu_percent: u.broker_cpu,
        bench_cpu_percent: u.bench_cpu,
        machine_idle_percent: u.machine_idle,
        clients_connected: pool.progress.connected.load(Relaxed),
        clients_failed: pool.progress.failed.load(Relaxed),
        healthy_closed: d.healthy_closed,
        gateway_counters: counters0.zip(counters1).map(|(a, b)| b.delta(a)),
        notes,
        errors: outcome.errors,
        ..Default::default()
    })
}

async fn ingest(args: &Args, env: &Env) -> Result<Report> {
    let cfg = pub_config(args, env, 1);
    let pubs = publish::connect_all(&cfg, args.publishers).await?;
    let c0 = counters(env)
        .await
        .context("ingest reads GET /api/ws/stats; is the gateway reachable?")?;
    let commits0 = match args.purge_pair {
        Some(_) => probe::commit_histogram(&env.gateways()).await.ok(),
        None => None,
    };

    // The mixed scenario: fleet clients reading while the messages are stored.
    let readers = if args.readers > 0 {
        let mut fleet = args.clone();
        fleet.clients = args.readers;
        fleet.mode = Mode::All;
        Some(start_clients(&fleet, env).await?)
    } else {
        None
    };
    let r0 = read_all(env);
    let start = Instant::now();
    let duration = Duration::from_secs_f64(args.duration);
    let ack_wait = Duration::from_secs_f64(args.drain.max(30.0));
    // Sample the stored (and purged) counts while publishing, for the peak rate (and when the
    // purge ran).
    let (done_tx, mut done_rx) = watch::channel(false);
    let sampler = {
        let gateways = env.gateways();
        tokio::spawn(async move {
            let mut samples = vec![Sample {
                at: 0.0,
                stored: c0.stored_vehicle_log,
                purged: c0.purged_vehicle_logs,
            }];
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = done_rx.changed() => break,
                }
                if let Ok(c) = probe::all_counters(&gateways).await {
                    samples.push(Sample {
                        at: start.elapsed().as_secs_f64(),
                        stored: c.stored_vehicle_log,
                        purged: c.purged_vehicle_logs,
                    });
                }
            }
            samples
        })
    };
    let outcome = publish::run(pubs, &cfg, start, args.rate, duration, ack_wait).await;
    let _ = done_tx.send(true);
    let samples = sampler.await.unwrap_or_default();

    // Drain: until everything published is stored, or no progress for --drain.
    let quiet = Duration::from_secs_f64(args.drain);
    let mut stored = c0;
    let mut done_at = start.elapsed();
    let mut progress_at = Instant::now();
    let mut c1 = c0;
    loop {
        if let Some(c) = counters(env).await {
            if c.stored_vehicle_log != stored.stored_vehicle_log {
                progress_at = Instant::now();
                done_at = start.elapsed();
            }
            stored = c;
            c1 = c;
        }
        let delta = stored
            .stored_vehicle_log
            .saturating_sub(c0.stored_vehicle_log);
        if delta >= outcome.confirmed_total || progress_at.elapsed() >= quiet {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r1 = read_all(env);
    let readers = match readers {
        Some(pool) => {
            let connected = pool.progress.connected.load(Relaxed);
            let slots = pool.stop().await;
            // unwrap: the tracker's lock is never held across a panic.
            let closed = slots
                .iter()
                .filter(|s| s.tracker.lock().unwrap().closed.is_some())
                .count();
            Some((connected, closed))
        }
        None => None,
    };
    let commits1 = match commits0 {
        Some(_) => probe::commit_histogram(&env.gateways()).await.ok(),
        None => None,
    };
    let stored_n = c1.stored_vehicle_log.saturating_sub(c0.stored_vehicle_log);
    let mut u = usage(env, &r0, &r1, None, None, 0);
    if let (Some(s), Some(cpu)) = (u.server.as_mut(), u.server_cpu_s) {
        if stored_n > 0 {
            s.cpu_us_per_frame = Some(cpu * 1e6 / stored_n as f64);
        }
    }
    let span = done_at.as_secs_f64();
    let achieved = outcome.attempted as f64 / outcome.publish_secs;
    let peak = samples
        .windows(5)
        .map(|w| {
            let (a, b) = (w[0], w[w.len() - 1]);
            b.stored.saturating_sub(a.stored) as f64 / (b.at - a.at).max(1e-3)
        })
        .fold(0.0, f64::max);
    let purge = args.purge_pair.as_ref().map(|pair| {
        let commits = commits0
            .zip(commits1)
            .map(|(a, b)| b.since(&a))
            .unwrap_or_default();
        purge_figures(
            pair,
            args,
            &samples,
            outcome.publish_secs,
            c1.purged_vehicle_logs
                .saturating_sub(c0.purged_vehicle_logs),
            &commits,
        )
    });
    let mut notes = vec![format!(
        "frames = rows stored; peak {peak:.0} stored/s over 1 s"
    )];
    if let Some((connected, closed)) = readers {
        let frames = c1.frames_sent.saturating_sub(c0.frames_sent);
        notes.push(format!(
            "{connected} readers on /api/ws: {frames} frames sent to them ({:.0}/s), {closed} closed by the gateway",
            frames as f64 / span.max(1e-3)
        ));
    }
    if stored_n > outcome.confirmed_total {
        notes.push(format!(
            "{} more stored than published (another publisher on the prefix?)",
            stored_n - outcome.confirmed_total
        ));
    }
    Ok(Report {
        scenario: args.scenario_name(),
        kind: "ingest".into(),
        params: params(args, args.rate, 0),
        target_rate: args.rate,
        published: outcome.confirmed_total,
        publish_attempted: outcome.attempted,
        publish_rate: achieved,
        frames_expected: outcome.confirmed_total,
        frames_received: stored_n,
        lost: outcome.confirmed_total.saturating_sub(stored_n),
        delivered_per_s: stored_n as f64 / span.max(1e-3),
        limit: limits(args.rate, achieved, &u, env.threads),
        server: u.server,
        broker_cpu_percent: u.broker_cpu,
        bench_cpu_percent: u.bench_cpu,
        machine_idle_percent: u.machine_idle,
        gateway_counters: Some(c1.delta(c0)),
        purge,
        notes,
        errors: outcome.errors,
        ..Default::default()
    })
}

/// One reading of the gateway's counters during an ingest run.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    /// Seconds since the first publish.
    at: f64,
    stored: u64,
    purged: u64,
}

/// The purge's part in an ingest run, from the counts sampled while publishing (every 250 ms):
/// the purge is taken to run from the first sample interval in which the purged count rose to
/// the last, within the publishing time.
fn purge_figures(
    pair: &str,
    args: &Args,
    samples: &[Sample],
    publish_s: f64,
    purged: u64,
    commits: &Histogram,
) -> PurgeFigures {
    let first = samples.first().copied().unwrap_or_default();
    let publishing: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.at <= publish_s + 1e-3)
        .collect();
    let rises: Vec<(f64, f64)> = publishing
        .windows(2)
        .filter(|w| w[1].purged > w[0].purged)
        .map(|w| (w[0].at, w[1].at))
        .collect();
    let active = match (rises.first(), rises.last()) {
        (Some(a), Some(b)) => (b.1.min(publish_s) - a.0.max(0.0)).max(0.0),
        _ => 0.0,
    };
    let purged_publishing = publishing
        .last()
        .map_or(0, |s| s.purged.saturating_sub(first.purged));
    // Caught up: the count rose, then stood still for the last 2 s sampled.
    let last_sampled = samples.last().map_or(0.0, |s| s.at);
    let ended = samples
        .windows(2)
        .rev()
        .find(|w| w[1].purged > w[0].purged)
        .map(|w| w[1].at)
        .filter(|at| last_sampled - at >= 2.0);
    PurgeFigures {
        pair: pair.to_owned(),
        purging: args.purging,
        seeded_rows: args.seeded_rows,
        purged_before: first.purged,
        purged,
        purged_publishing,
        purge_active_s: active,
        publish_s,
        overlap_percent: if publish_s > 0.0 {
            (active / publish_s * 100.0).min(100.0)
        } else {
            0.0
        },
        purge_rows_per_s: (active > 0.0).then(|| purged_publishing as f64 / active),
        purge_ended_at_s: ended,
        commit_mean_ms: commits.mean().map(|s| s * 1000.0),
        commit_p99_le_ms: commits
            .quantile_bound(0.99)
            .filter(|b| b.is_finite())
            .map(|b| b * 1000.0),
        commits: commits.count,
    }
}

async fn idle(args: &Args, env: &Env) -> Result<Report> {
    let before_connect = env.server_pid.and_then(probe::sample);
    let pool = start_clients(args, env).await?;
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let after_connect = env.server_pid.and_then(probe::sample);
    let connections = pool.progress.connected.load(Relaxed);
    let r0 = read_all(env);
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let r1 = read_all(env);
    let counters1 = counters(env).await;
    let u = usage(env, &r0, &r1, before_connect, after_connect, connections);
    let closed = pool
        .slots
        .iter()
        // unwrap: the tracker's lock is never held across a panic.
        .filter(|s| s.tracker.lock().unwrap().closed.is_some())
        .count() as u64;
    let failed = pool.progress.failed.load(Relaxed);
    let mut notes = vec![format!("{connections} connections held {}s", args.duration)];
    if let Some(c) = counters1 {
        notes.push(format!(
            "gateway reports {} active connections",
            c.active_connections
        ));
    }
    pool.stop().await;
    Ok(Report {
        scenario: args.scenario_name(),
        kind: "idle".into(),
        params: params(args, 0.0, 0),
        server: u.server,
        broker_cpu_percent: u.broker_cpu,
        bench_cpu_percent: u.bench_cpu,
        machine_idle_percent: u.machine_idle,
        clients_connected: connections,
        clients_failed: failed,
        healthy_closed: closed.saturating_sub(failed),
        notes,
        ..Default::default()
    })
}

/// Waits until the gateway knows every vehicle in `ids` (commands to a vehicle it never heard
/// from are refused), up to --ready-timeout.
async fn wait_for_vehicles(args: &Args, env: &Env, ids: &[i64]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs_f64(args.ready_timeout.max(1.0));
    loop {
        let known: HashSet<i64> = probe::vehicle_ids(env.gateway, &env.gateway_authority)
            .await?
            .into_iter()
            .collect();
        let missing: Vec<i64> = ids.iter().copied().filter(|v| !known.contains(v)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} of the {} boats never sent telemetry (first: vehicle {}); commands need boats \
                 that publish and answer, e.g. `jetson-sim --prefix {} --start-id {} --vehicles {}`",
                missing.len(),
                ids.len(),
                missing[0],
                args.prefix,
                args.start_id,
                args.vehicles
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Commands mode: `--clients` sockets, client c owning the boats whose index is c modulo the
/// clients; command k goes to boat k modulo the boats, due at k / --command-rate seconds, with
/// the boat's next name from --commands. Then waits for every final state (at most the
/// commands' timeout plus --drain after the last one) and accounts.
async fn command_round_trips(args: &Args, env: &Env) -> Result<Report> {
    let ids: Vec<i64> = (0..i64::from(args.vehicles))
        .map(|k| args.start_id + k)
        .collect();
    wait_for_vehicles(args, env, &ids).await?;
    let clients = args.clients as usize;
    let owned: Vec<Vec<i64>> = (0..clients)
        .map(|c| ids.iter().copied().skip(c).step_by(clients).collect())
        .collect();

    let before_connect = env.server_sample();
    let streams = futures_util::future::try_join_all(owned.iter().map(|vehicles| {
        commands::connect(
            env.gateway,
            &env.gateway_authority,
            args.read_buffer,
            vehicles,
        )
    }))
    .await
    .context("connecting the command clients")?;
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let after_connect = env.server_sample();

    let progress = Arc::new(commands::Progress::default());
    let (stop, stop_rx) = watch::channel(false);
    let mut orders = Vec::with_capacity(clients);
    let mut tasks = Vec::with_capacity(clients);
    for ws in streams {
        // A client that cannot keep up holds the pacer back, which shows as a lower send rate.
        let (tx, rx) = mpsc::channel(256);
        orders.push(tx);
        tasks.push(tokio::spawn(commands::run_client(
            ws,
            args.command_timeout_ms,
            rx,
            progress.clone(),
            stop_rx.clone(),
        )));
    }

    let counters0 = counters(env).await;
    let r0 = read_all(env);
    let start = Instant::now();
    let mut attempted = 0u64;
    let mut undelivered = 0u64;
    let boats = ids.len() as u64;
    while (attempted as f64) / args.command_rate < args.duration {
        let due = start + Duration::from_secs_f64(attempted as f64 / args.command_rate);
        tokio::time::sleep_until(due.into()).await;
        let boat = (attempted % boats) as usize;
        let turn = (attempted / boats) as usize;
        let order = Order {
            vehicle: ids[boat],
            command: args.commands[turn % args.commands.len()].clone(),
            request_id: format!("bench-{}-{attempted}", env.tag),
        };
        if orders[boat % clients].send(order).await.is_err() {
            undelivered += 1;
        }
        attempted += 1;
    }
    // At least the duration, as for publishers: the last command is due before its end.
    let send_secs = start.elapsed().as_secs_f64().max(args.duration);
    drop(orders);

    let deadline = Instant::now()
        + Duration::from_millis(args.command_timeout_ms)
        + Duration::from_secs_f64(args.drain);
    loop {
        let sent = progress.sent.load(Relaxed);
        let all_sent = sent + undelivered >= attempted;
        if (all_sent && progress.settled.load(Relaxed) >= sent) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r1 = read_all(env);
    let counters1 = counters(env).await;
    let _ = stop.send(true);
    let mut logs = Vec::with_capacity(tasks.len());
    let mut errors = Vec::new();
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(15), t).await {
            Ok(Ok(log)) => logs.push(log),
            Ok(Err(e)) => errors.push(format!("a command client failed: {e}")),
            Err(_) => errors.push("a command client did not stop in 15 s".into()),
        }
    }

    let mut figures = commands::account(&logs, start);
    figures.vehicles = args.vehicles;
    figures.clients = args.clients;
    figures.target_rate = args.command_rate;
    figures.send_rate = figures.sent as f64 / send_secs.max(1e-3);
    let mut u = usage(env, &r0, &r1, before_connect, after_connect, clients as u64);
    if let (Some(s), Some(cpu)) = (u.server.as_mut(), u.server_cpu_s) {
        if figures.sent > 0 {
            s.cpu_us_per_frame = Some(cpu * 1e6 / figures.sent as f64);
        }
    }
    let closed = logs.iter().filter(|l| l.closed.is_some()).count() as u64;
    let mut notes = Vec::new();
    for (what, per_second, gateway_default) in [
        ("per client", args.command_rate / clients as f64, 20.0),
        ("per boat", args.command_rate / boats as f64, 2.0),
    ] {
        if per_second > gateway_default {
            notes.push(format!(
                "{per_second:.1} commands/s {what} is above the gateway's default limit ({gateway_default}/s)"
            ));
        }
    }
    if undelivered > 0 {
        errors.push(format!(
            "{undelivered} commands not handed to a client (it had ended)"
        ));
    }
    if let Some(why) = logs.iter().find_map(|l| l.closed.clone()) {
        errors.push(format!(
            "{closed} command clients ended early (first: {why})"
        ));
    }
    for text in commands::notices(&logs) {
        notes.push(format!("gateway error frame: {text}"));
    }
    if figures.repeats + figures.extra_finals + figures.foreign_frames > 0 {
        notes.push(format!(
            "{} repeats, {} extra final states, {} frames of other commands",
            figures.repeats, figures.extra_finals, figures.foreign_frames
        ));
    }
    Ok(Report {
        scenario: args.scenario_name(),
        kind: "commands".into(),
        params: Params {
            publishers: 0,
            ..params(args, args.command_rate, 0)
        },
        target_rate: args.command_rate,
        limit: limits(args.command_rate, figures.send_rate, &u, env.threads),
        commands: Some(figures),
        server: u.server,
        broker_cpu_percent: u.broker_cpu,
        bench_cpu_percent: u.bench_cpu,
        machine_idle_percent: u.machine_idle,
        clients_connected: clients as u64,
        healthy_closed: closed,
        gateway_counters: counters0.zip(counters1).map(|(a, b)| b.delta(a)),
        notes,
        errors,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn samples(purged: &[u64]) -> Vec<Sample> {
        purged
            .iter()
            .enumerate()
            .map(|(i, &p)| Sample {
                at: i as f64 * 0.25,
                stored: 0,
                purged: p,
            })
            .collect()
    }

    #[test]
    fn the_purge_is_timed_from_its_first_rise_to_its_last() {
        let args = Args::parse_from([
            "bench",
            "--clients",
            "0",
            "--purge-pair",
            "p",
            "--purging",
            "--seeded-rows",
            "100000",
        ]);
        // 3 s of publishing: the purge had removed 4,000 rows before, removes 2,000 per 0.5 s
        // until 1.5 s, then nothing more for the rest (and the 2 s sampled after it).
        let mut counts = vec![4000, 5000, 6000, 7000, 8000, 9000, 10_000];
        counts.resize(21, 10_000);
        let s = samples(&counts);
        let commits = Histogram {
            buckets: vec![(0.01, 90), (0.1, 100), (f64::INFINITY, 100)],
            sum: 2.0,
            count: 100,
        };
        let p = purge_figures("p", &args, &s, 3.0, 6000, &commits);
        assert_eq!(
            (p.purged_before, p.purged, p.purged_publishing),
            (4000, 6000, 6000)
        );
        assert!((p.purge_active_s - 1.5).abs() < 1e-9, "{p:?}");
        assert!((p.overlap_percent - 50.0).abs() < 1e-9, "{p:?}");
        assert_eq!(p.purge_rows_per_s, Some(4000.0));
        assert_eq!(p.purge_ended_at_s, Some(1.5));
        assert!(p.purging && p.seeded_rows == 100_000);
        assert_eq!(p.commit_mean_ms, Some(20.0));
        assert_eq!(p.commit_p99_le_ms, Some(100.0));

        // Still purging at the end: the whole run overlapped, no end.
        let s = samples(&(0..=12).map(|i| i * 1000).collect::<Vec<_>>());
        let p = purge_figures("p", &args, &s, 3.0, 12_000, &Histogram::default());
        assert!((p.overlap_percent - 100.0).abs() < 1e-9, "{p:?}");
        assert_eq!(p.purge_ended_at_s, None);
        assert_eq!((p.commit_mean_ms, p.commit_p99_le_ms), (None, None));

        // Nothing purged (the baseline).
        let p = purge_figures(
            "p",
            &args,
            &samples(&[0; 13]),
            3.0,
            0,
            &Histogram::default(),
        );
        assert_eq!((p.purge_active_s, p.purge_rows_per_s), (0.0, None));
    }
}
