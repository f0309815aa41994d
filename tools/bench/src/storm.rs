//! The storm mode: a reconnect storm beside live traffic.
//!
//! Seeds `--storm-back` vehicle_logs (as the history mode does), connects `--clients` live
//! clients on /api/ws and runs them at `--rate` for `--duration` (the quiet step); then runs the
//! same step again while `--storm-clients` clients connect at once with `since=` that many seqs
//! back (the storm step). Each storm client is caught up when it has received the frame of the
//! last seq stored when the storm began: the gateway sends in seq order, so it then has every
//! frame before it. The report is the two steps' rows (the live clients' latency without and
//! with the storm) and, on the storm row, the replay's figures.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::{watch, Notify};

use crate::cli::Args;
use crate::clients::{open, read_until_stop};
use crate::history::seed;
use crate::payload::frame_seq;
use crate::report::{Report, StormFigures};
use crate::scenario::{counters, fan_out_step, params, start_clients, Env};
use crate::track::latency;

/// What one storm client saw.
#[derive(Default)]
struct StormSlot {
    /// Microseconds from the storm's start to its catching up; 0 until then.
    caught_up_us: AtomicU64,
    frames: AtomicU64,
    /// How its connection ended before the bench closed it, if it did.
    ended: Mutex<Option<String>>,
}

/// What the storm clients share.
struct Storm {
    addr: SocketAddr,
    authority: String,
    path: String,
    read_buffer: usize,
    /// The last seq stored when the storm began.
    target: u64,
    start: Instant,
    caught_up: AtomicU64,
    ended: AtomicU64,
    notify: Notify,
}

pub async fn run(args: &Args, env: &Env) -> Result<Vec<Report>> {
    let seeded = seed(args, env, args.storm_back).await?;
    anyhow::ensure!(
        seeded.stored >= seeded.outcome.confirmed_total,
        "only {} of the {} seeded messages were stored",
        seeded.stored,
        seeded.outcome.confirmed_total
    );

    let before_connect = env.server_sample();
    let pool = start_clients(args, env).await?;
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let after_connect = env.server_sample();
    let connections = pool.progress.connected.load(Relaxed);
    let step = |n: u32| {
        fan_out_step(
            args,
            env,
            &pool,
            n,
            args.rate,
            before_connect,
            after_connect,
            connections,
        )
    };

    // Run 1 is the seeding's; the quiet step is run 2 and the storm step run 3.
    let mut quiet = step(2).await?;
    quiet.kind = "storm-quiet".into();
    quiet.scenario = format!("{}: live clients alone", args.scenario_name());
    quiet.params = params(args, args.rate, 0);

    let target = counters(env)
        .await
        .context("the storm reads GET /api/ws/stats")?
        .last_seq;
    let since = target.saturating_sub(args.storm_back);
    let storm = Arc::new(Storm {
        addr: env.gateway,
        authority: env.gateway_authority.clone(),
        path: format!("/api/ws?since={since}"),
        read_buffer: args.read_buffer,
        target,
        start: Instant::now(),
        caught_up: AtomicU64::new(0),
        ended: AtomicU64::new(0),
        notify: Notify::new(),
    });
    eprintln!(
        "bench: storm: {} clients with since={since}, {} frames each to catch up",
        args.storm_clients,
        target - since
    );
    let (stop, stop_rx) = watch::channel(false);
    let slots: Vec<Arc<StormSlot>> = (0..args.storm_clients)
        .map(|_| Arc::new(StormSlot::default()))
        .collect();
    let tasks: Vec<_> = slots
        .iter()
        .map(|slot| tokio::spawn(storm_client(storm.clone(), slot.clone(), stop_rx.clone())))
        .collect();
    let mut loud = step(3).await?;
    loud.kind = "storm".into();
    loud.scenario = format!("{}: with the storm", args.scenario_name());
    loud.params = params(args, args.rate, 0);

    // The replay may outlast the step.
    let deadline = storm.start + Duration::from_secs_f64(args.storm_timeout);
    let clients = u64::from(args.storm_clients);
    while storm.caught_up.load(Relaxed) + storm.ended.load(Relaxed) < clients
        && Instant::now() < deadline
    {
        let _ = tokio::time::timeout(Duration::from_millis(500), storm.notify.notified()).await;
    }
    let _ = stop.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    pool.stop().await;

    let mut replay_us: Vec<u32> = slots
        .iter()
        .map(|s| s.caught_up_us.load(Relaxed))
        .filter(|us| *us > 0)
        .map(|us| us.min(u64::from(u32::MAX)) as u32)
        .collect();
    let replay = latency(&mut replay_us);
    let back = target - since;
    let caught_up = replay_us.len() as u64;
    let closed: Vec<String> = slots
        .iter()
        // unwrap: the lock is never held across a panic.
        .filter_map(|s| s.ended.lock().unwrap().clone())
        .collect();
    let figures = StormFigures {
        clients,
        since,
        frames_each: back,
        caught_up,
        closed: closed.len() as u64,
        first_close: closed.first().cloned(),
        // `latency` gives milliseconds.
        replay_p50_s: replay.as_ref().map(|l| l.p50 / 1000.0),
        replay_max_s: replay.as_ref().map(|l| l.max / 1000.0),
        replay_frames_per_s: replay
            .as_ref()
            .map(|l| (caught_up * back) as f64 / (l.max / 1000.0).max(1e-3)),
        frames_received: slots.iter().map(|s| s.frames.load(Relaxed)).sum(),
        live_p99_quiet_ms: quiet.latency_ms.as_ref().map(|l| l.p99),
        live_p99_storm_ms: loud.latency_ms.as_ref().map(|l| l.p99),
    };
    loud.notes.push(figures.summary(args.duration));
    if caught_up < clients {
        loud.errors.push(format!(
            "{} of {clients} storm clients did not catch up in {} s",
            clients - caught_up,
            args.storm_timeout
        ));
    }
    // The gateway's CPU in the storm step went mostly to the storm clients, whose frames the
    // live clients' per-frame figure does not count.
    if let Some(s) = loud.server.as_mut() {
        s.cpu_us_per_frame = None;
    }
    loud.storm = Some(figures);
    Ok(vec![quiet, loud])
}

/// One storm client: connects with `since=`, reads until caught up and then live frames until
/// the run ends.
async fn storm_client(storm: Arc<Storm>, slot: Arc<StormSlot>, mut stop: watch::Receiver<bool>) {
    let ended = |how: String| {
        // unwrap: the lock is never held across a panic.
        *slot.ended.lock().unwrap() = Some(how);
        // One that caught up is counted already.
        if slot.caught_up_us.load(Relaxed) == 0 {
            storm.ended.fetch_add(1, Relaxed);
        }
        storm.notify.notify_one();
    };
    let mut ws = match open(
        storm.addr,
        &storm.authority,
        &storm.path,
        storm.read_buffer,
        None,
    )
    .await
    {
        Ok(ws) => ws,
        Err(e) => return ended(format!("connect: {e:#}")),
    };
    let mut caught_up = false;
    let end = read_until_stop(&mut ws, &mut stop, |text| {
        slot.frames.fetch_add(1, Relaxed);
        if !caught_up && frame_seq(text).is_some_and(|seq| seq >= storm.target) {
            caught_up = true;
            let us = storm.start.elapsed().as_micros().max(1) as u64;
            slot.caught_up_us.store(us, Relaxed);
            storm.caught_up.fetch_add(1, Relaxed);
            storm.notify.notify_one();
        }
    })
    .await;
    match end {
        Some(how) => ended(format!("{how:?}")),
        None => {
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        }
    }
}
