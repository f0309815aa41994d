//! CI smoke run of the harness: the workspace's gateway binary on port 0 with a temporary
//! SQLite file and its embedded broker (or the broker of `TEST_MQTT_URL`, under a topic prefix
//! of its own), then the bench binary for two seconds per scenario, and its JSON checked for
//! delivery without loss or duplicates; for the commands mode, a simulated fleet
//! (`jetson-sim`, in-process) answers, and every command must come back with its round trip;
//! for the history mode, two minutes of one boat are seeded and every history request must
//! answer with what the seeded rows make. Nothing about time is asserted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// A gateway process, stopped (SIGTERM, then SIGKILL) when dropped.
struct Gateway {
    child: Child,
    http: String,
    broker: String,
    prefix: String,
    dir: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The gateway binary beside the bench binary, built first if it is not there.
fn gateway_binary() -> PathBuf {
    let bench = Path::new(env!("CARGO_BIN_EXE_bench"));
    let dir = bench.parent().expect("the bench binary has a directory");
    let exe = dir.join("seano-gateway");
    if !exe.exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "seano-gateway"]).current_dir(root);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build -p seano-gateway");
        assert!(status.success(), "cargo build -p seano-gateway failed");
    }
    exe
}

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}x{nanos}", std::process::id())
}

fn spawn_gateway() -> Gateway {
    let id = unique();
    let dir = std::env::temp_dir().join(format!("bench-smoke-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = format!("benchsmoke{id}");
    let external = std::env::var("TEST_MQTT_URL").ok();
    let mut cmd = Command::new(gateway_binary());
    cmd.current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.join("smoke.db").display()),
        )
        .env("MQTT_TOPIC_PREFIX", &prefix)
        .env("MQTT_CLIENT_ID", format!("bench-smoke-gw-{id}"))
        .env(
            "RUST_LOG",
            "warn,seano_gateway::startup=info,seano_gateway::mqtt::embedded=info",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match &external {
        Some(url) => cmd.env("MQTT_URL", url),
        None => cmd.env("MQTT_EMBEDDED_ADDR", "127.0.0.1:0"),
    };
    let mut child = cmd.spawn().expect("starting the gateway");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    // Keeps reading after the ports are known, so the gateway never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("gateway: {line}");
            let _ = tx.send(line);
        }
    });
    let port_after = |line: &str, marker: &str| -> Option<String> {
        let at = line.find(marker)? + marker.len();
        let digits: String = line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        (!digits.is_empty()).then_some(digits)
    };
    let mut gw = Gateway {
        child,
        http: String::new(),
        broker: external.clone().unwrap_or_default(),
        prefix,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while gw.http.is_empty() || gw.broker.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the gateway did not log its ports in 90 s");
        if let Some(p) = port_after(&line, "embedded MQTT broker listening on mqtt://127.0.0.1:") {
            gw.broker = format!("mqtt://127.0.0.1:{p}");
        } else if let Some(p) = port_after(&line, "listening on http://127.0.0.1:") {
            gw.http = format!("http://127.0.0.1:{p}");
        }
    }
    gw
}

fn bench(gw: &Gateway, extra: &[&str]) -> Value {
    let pid = gw.child.id().to_string();
    let mut args = vec![
        "--gateway",
        &gw.http,
        "--broker",
        &gw.broker,
        "--prefix",
        &gw.prefix,
        "--gateway-pid",
        &pid,
        "--publishers",
        "2",
        "--rate",
        "40",
        "--duration",
        "2",
        "--warmup",
        "0.2",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(&args)
        .output()
        .expect("running the bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bench printed no JSON ({e}): {stdout}"))
}

fn assert_delivered_without_loss(r: &Value) {
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("no {k} in {r}"));
    assert!(n("published") > 0, "nothing published: {r}");
    assert!(n("frames_received") > 0, "nothing received: {r}");
    assert_eq!(n("lost"), 0, "{r}");
    assert_eq!(n("duplicated"), 0, "{r}");
    assert_eq!(n("wrong_vehicle"), 0, "{r}");
    assert_eq!(n("healthy_closed"), 0, "{r}");
    assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
}

#[test]
fn the_harness_measures_a_real_gateway_without_loss() {
    let gw = spawn_gateway();

    let all = bench(&gw, &["--clients", "5"]);
    assert_delivered_without_loss(&all);
    assert_eq!(all["frames_expected"], all["frames_received"]);
    assert_eq!(all["clients_connected"], 5);
    assert!(all["latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{all}");

    let vehicle = bench(&gw, &["--clients", "4", "--mode", "vehicle"]);
    assert_delivered_without_loss(&vehicle);

    let ingest = bench(&gw, &["--clients", "0", "--qos", "1"]);
    assert_delivered_without_loss(&ingest);
    assert_eq!(ingest["frames_received"], ingest["published"]);

    // Mixed: the same ingest with fleet clients reading; the gateway counts what it sent them.
    let mixed = bench(&gw, &["--clients", "0", "--qos", "1", "--readers", "3"]);
    assert_delivered_without_loss(&mixed);
    assert_eq!(mixed["frames_received"], mixed["published"]);
    let sent = mixed["gateway_counters"]["frames_sent"].as_u64().unwrap();
    assert!(
        sent >= 3 * mixed["published"].as_u64().unwrap(),
        "every reader gets every message: {mixed}"
    );

    let baseline = bench(&gw, &["--mqtt-subscribers", "3"]);
    assert_delivered_without_loss(&baseline);

    // Only --ramp-max-steps ends this ramp: a loaded CI machine must not stop it on latency.
    let ramp = bench(
        &gw,
        &[
            "--clients",
            "3",
            "--ramp",
            "--ramp-max-steps",
            "2",
            "--ramp-p99-ms",
            "60000",
        ],
    );
    assert_eq!(ramp["kind"], "ramp", "{ramp}");
    let steps = ramp["steps"].as_array().expect("a ramp has steps");
    assert_eq!(steps.len(), 2, "{ramp}");
    for step in steps {
        assert_delivered_without_loss(step);
    }
    assert!(
        steps[1]["target_rate"].as_f64().unwrap() > steps[0]["target_rate"].as_f64().unwrap(),
        "{ramp}"
    );

    let slow = bench(&gw, &["--clients", "10", "--slow-ratio", "0.1"]);
    assert_delivered_without_loss(&slow);
    assert_eq!(slow["slow"]["clients"], 1, "{slow}");

    let idle = bench(&gw, &["--clients", "5", "--idle"]);
    assert_eq!(idle["kind"], "idle", "{idle}");
    assert_eq!(idle["clients_connected"], 5, "{idle}");
    assert_eq!(idle["healthy_closed"], 0, "{idle}");
}

#[test]
fn the_storm_mode_times_clients_that_resume_together_beside_live_ones() {
    let gw = spawn_gateway();
    // 500 seeded: within the 1,000 a stock Mosquitto queues for one QoS 1 subscriber.
    let r = bench(
        &gw,
        &[
            "--mode",
            "storm",
            "--start-id",
            "7",
            "--storm-back",
            "500",
            "--storm-clients",
            "4",
            "--clients",
            "2",
        ],
    );
    assert_eq!(r["kind"], "steps", "{r}");
    let steps = r["steps"].as_array().expect("a quiet and a storm step");
    assert_eq!(steps.len(), 2, "{r}");
    for step in steps {
        assert_delivered_without_loss(step);
    }
    let s = &steps[1]["storm"];
    assert_eq!(steps[0]["storm"], Value::Null, "{r}");
    assert_eq!(s["clients"], 4, "{s}");
    assert_eq!(s["caught_up"], 4, "every storm client caught up: {s}");
    assert_eq!(s["closed"], 0, "{s}");
    // since= is 500 back from the last seq stored when the storm began.
    assert_eq!(s["frames_each"], 500, "{s}");
    assert!(
        s["frames_received"].as_u64().unwrap() >= 4 * 500,
        "each storm client got at least its replay: {s}"
    );
    assert!(s["replay_max_s"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s["live_p99_storm_ms"].as_f64().unwrap() > 0.0, "{s}");
}

/// A simulated fleet on the gateway's broker and prefix, run in-process until dropped.
struct Fleet {
    rt: tokio::runtime::Runtime,
    stop: jetson_sim::CancellationToken,
    run: Option<tokio::task::JoinHandle<anyhow::Result<jetson_sim::Summary>>>,
}

impl Fleet {
    /// Starts `vehicles` boats and waits until they listen for commands.
    fn start(gw: &Gateway, vehicles: u32) -> Fleet {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let stop = jetson_sim::CancellationToken::new();
        let config = jetson_sim::SimConfig {
            broker: gw.broker.clone(),
            client_id: format!("bench-smoke-sim-{}", gw.prefix),
            prefix: gw.prefix.clone(),
            vehicles,
            rate: 2.0,
            sensor_rate: 0.0,
            seed: Some(7),
            drain_timeout: Duration::from_secs(2),
            ..jetson_sim::SimConfig::default()
        };
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let hooks = jetson_sim::RunHooks {
            commands_ready: Some(ready_tx),
        };
        let run = rt.spawn(jetson_sim::run_with(config, stop.clone(), hooks));
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), ready)
                .await
                .expect("the boats did not subscribe to their commands in 30 s")
                .expect("the simulator ended before its boats listened");
        });
        Fleet {
            rt,
            stop,
            run: Some(run),
        }
    }

    /// Stops the fleet; what it did.
    fn stop(mut self) -> jetson_sim::Summary {
        self.stop.cancel();
        let run = self.run.take().unwrap();
        self.rt
            .block_on(run)
            .expect("the simulator task")
            .expect("the simulator run")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[test]
fn the_commands_mode_times_every_command_to_a_simulated_boat() {
    let gw = spawn_gateway();
    let fleet = Fleet::start(&gw, 3);

    // 3 boats, 2 clients, 6 commands/s for 2 s: 2 per boat per second, within COMMAND_RATE.
    let r = bench(
        &gw,
        &[
            "--mode",
            "commands",
            "--vehicles",
            "3",
            "--clients",
            "2",
            "--command-rate",
            "6",
            "--command-timeout-ms",
            "5000",
        ],
    );
    let summary = fleet.stop();

    assert_eq!(r["kind"], "commands", "{r}");
    let c = &r["commands"];
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("no {k} in {c}"));
    assert!(n("sent") >= 10, "{r}");
    assert_eq!(n("accepted"), n("sent"), "{r}");
    assert_eq!(n("succeeded"), n("sent"), "{r}");
    for k in [
        "failed",
        "timed_out",
        "expired",
        "refused",
        "missing",
        "notices",
    ] {
        assert_eq!(n(k), 0, "{k}: {r}");
    }
    let round_trip = &c["round_trip_ms"];
    assert_eq!(round_trip["samples"].as_u64(), Some(n("sent")), "{r}");
    assert!(round_trip["p50"].as_f64().unwrap() > 0.0, "{r}");
    assert!(
        round_trip["max"].as_f64() >= round_trip["p99"].as_f64(),
        "{r}"
    );
    assert!(c["accepted_ms"]["samples"].as_u64().unwrap() > 0, "{r}");
    assert!(r["server"]["cpu_percent"].as_f64().is_some(), "{r}");
    assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
    // The boats answered exactly the commands the bench counted.
    assert_eq!(summary.commands.answered_ok, n("succeeded"), "{summary:?}");
}

#[test]
fn the_history_mode_seeds_a_boat_and_times_each_request() {
    let gw = spawn_gateway();
    // Two whole minutes at 5 Hz: 600 messages, within the 1,000 a stock Mosquitto queues for
    // one QoS 1 subscriber (TEST_MQTT_URL), since the publisher does not wait for the gateway.
    let r = bench(
        &gw,
        &[
            "--mode",
            "history",
            "--start-id",
            "9",
            "--history-rows",
            "600",
            "--history-rate-hz",
            "5",
            "--history-repeats",
            "2",
        ],
    );
    assert_eq!(r["kind"], "history", "{r}");
    assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(r["published"], 600, "{r}");
    assert_eq!(r["frames_received"], 600, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    let h = &r["history"];
    assert_eq!(h["vehicle_id"], 9, "{h}");
    assert_eq!(h["stored"], 600, "{h}");
    assert_eq!(h["span_s"].as_f64(), Some(120.0), "{h}");

    let requests = h["requests"].as_array().expect("history has requests");
    let by_name = |name: &str| {
        requests
            .iter()
            .find(|q| q["name"] == name)
            .unwrap_or_else(|| panic!("no {name} request in {h}"))
    };
    for q in requests {
        assert_eq!(q["status"], 200, "{q}");
        assert!(q["errors"].as_array().unwrap().is_empty(), "{q}");
        assert_eq!(q["ms"]["samples"], 2, "{q}");
        assert!(q["ms"]["p50"].as_f64().unwrap() > 0.0, "{q}");
        assert!(q["bytes"].as_u64().unwrap() > 0, "{q}");
        assert!(
            q["path"].as_str().unwrap().starts_with("/api/vehicles/9/"),
            "{q}"
        );
    }
    // Raw: every message (the page holds up to 1,000), every position.
    let page = by_name("raw page");
    assert_eq!(
        (page["items"].as_u64(), page["has_more"].as_bool()),
        (Some(600), Some(false)),
        "{page}"
    );
    let track = by_name("raw track");
    assert_eq!(
        (track["items"].as_u64(), track["total_points"].as_u64()),
        (Some(600), Some(600)),
        "{track}"
    );
    // Whole minutes from the rollups, whose counts add up to every message seeded.
    let minutes = by_name("1m buckets");
    assert_eq!(minutes["source"], "rollup", "{minutes}");
    assert_eq!(
        (minutes["items"].as_u64(), minutes["counted"].as_u64()),
        (Some(2), Some(600)),
        "{minutes}"
    );
    let quarters = by_name("15m buckets");
    assert_eq!(quarters["source"], "rollup", "{quarters}");
    assert_eq!(quarters["counted"], 600, "{quarters}");
    assert_eq!(by_name("1m track")["items"], 2, "{h}");
    // 30 s buckets are built from the raw rows: the whole span is within the last hour.
    let raw_buckets = by_name("30s buckets, last hour");
    assert_eq!(raw_buckets["source"], "raw", "{raw_buckets}");
    assert_eq!(
        (
            raw_buckets["items"].as_u64(),
            raw_buckets["counted"].as_u64()
        ),
        (Some(4), Some(600)),
        "{raw_buckets}"
    );
}
