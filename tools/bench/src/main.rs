//! `bench`: load generator and benchmark harness for a running SEANO gateway.
//!
//! It starts nothing: point it at a gateway (`--gateway`) and the broker that gateway
//! subscribes to (`--broker`, `--prefix`). `tools/bench/run.sh` starts a gateway per scenario
//! and runs the standard set.
//!
//! # Layout
//! - `cli`: the flags.
//! - `scenario`: the runs (fan-out and its ramp, MQTT baseline, ingest with the purge's
//!   progress, idle, commands), drain, accounting.
//! - `publish`: paced MQTT publishers and the confirmation of each message.
//! - `clients`: WebSocket clients and MQTT subscribers, one task each.
//! - `commands`: the commands mode's clients, which send commands and time each one to its
//!   answer and its final state, and their accounting.
//! - `history`: the history mode, which seeds one boat's day over MQTT and times the history
//!   requests over it.
//! - `storm`: the storm mode, a reconnect storm with `since=` beside live clients: how fast
//!   the storm replays and what it costs the live clients' latency.
//! - `track`: per-client received sets, loss, duplicates, latency percentiles.
//! - `payload`: the payload written and the cheap parse of frames read.
//! - `probe`: /proc sampling, the listening process of a port, the open-file limit, HTTP GET.
//! - `report`: the JSON result and the Markdown table.
//!
//! Exit status: 0 when the run completed (whatever it measured), 1 on an error, 2 on bad flags.

mod cli;
mod clients;
mod commands;
mod history;
mod payload;
mod probe;
mod publish;
mod report;
mod scenario;
mod storm;
mod track;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    if !args.render.is_empty() {
        return match render(&args.render) {
            Ok(t) => {
                print!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = args.validate() {
        eprintln!("bench: {e:#}");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &cli::Args) -> anyhow::Result<()> {
    let sockets = u64::from(args.clients.max(args.mqtt_subscribers)) + u64::from(args.publishers);
    probe::raise_nofile(sockets + 256)?;
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut reports = rt.block_on(scenario::run(args, threads))?;
    let hwm = probe::sample(std::process::id()).map(|s| s.hwm_kib as f64 / 1024.0);
    for r in &mut reports {
        r.bench_peak_rss_mib = hwm;
    }
    // Client tasks that did not stop in time must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    if args.json {
        // One JSON object either way: a ramp's steps (a storm's two) are under `steps`.
        let out = if args.ramp || reports.len() > 1 {
            serde_json::to_string_pretty(&serde_json::json!({
                "scenario": args.scenario_name(),
                "kind": if args.ramp { "ramp" } else { "steps" },
                "steps": reports,
            }))?
        } else {
            serde_json::to_string_pretty(&reports[0])?
        };
        println!("{out}");
    } else {
        print!("{}", report::table(&reports));
    }
    Ok(())
}

/// One table from result files, each holding one report or a ramp (`{"steps": [..]}`).
fn render(files: &[std::path::PathBuf]) -> anyhow::Result<String> {
    let mut all = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
        let steps = match v {
            serde_json::Value::Object(mut ramp) if ramp.contains_key("steps") => {
                ramp["steps"].take()
            }
            // Files of earlier versions held a ramp as a bare array.
            other => other,
        };
        match steps {
            serde_json::Value::Array(steps) => {
                for step in steps {
                    all.push(serde_json::from_value(step)?);
                }
            }
            one => all.push(serde_json::from_value(one)?),
        }
    }
    Ok(report::table(&all))
}
