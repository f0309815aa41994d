//! The command line: one flat set of flags; `--idle`, `--ramp`, `--mqtt-subscribers`,
//! `--clients 0` (ingest), `--mode commands` and `--mode history` pick the scenario.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Drives a RUNNING SEANO gateway (it starts nothing itself): N MQTT publishers at a paced rate,
/// M WebSocket clients (or plain MQTT subscribers), and reports published, received, lost and
/// duplicated messages, publish-to-frame latency, delivered frames/s, and the gateway's CPU and
/// memory from /proc.
///
/// Scenarios: fan-out (`--clients M`, the default), ingest (`--clients 0`: stored msg/s from
/// `GET /api/ws/stats`), broker baseline (`--mqtt-subscribers M`), rate ramp (`--ramp`), idle
/// connections (`--idle`), command round trips (`--mode commands`, against boats that
/// answer, e.g. `jetson-sim`) and history queries (`--mode history`: seeds one boat's day of
/// telemetry over MQTT, then times raw and bucketed history requests).
#[derive(Clone, Debug, Parser)]
#[command(version, about, long_about)]
pub struct Args {
    /// Label of this run in the table and the JSON (default: derived from the flags).
    #[arg(long)]
    pub name: Option<String>,

    /// The gateway's HTTP base URL; WebSocket URLs are derived from it (ws://HOST:PORT/api/ws).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub gateway: String,

    /// More instances of the same gateway (one MQTT_SHARED_GROUP, one database): clients are
    /// spread round-robin over --gateway and these; CPU, memory and counters (stored messages,
    /// frames sent) are summed over all of them.
    #[arg(long, value_name = "URL")]
    pub also_gateway: Vec<String>,

    /// Processes of the --also-gateway instances, in the same order (default: the process
    /// listening on each one's port).
    #[arg(long, value_name = "PID")]
    pub also_gateway_pid: Vec<u32>,

    /// The MQTT broker the gateway subscribes to (mqtt://HOST:PORT).
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,

    /// First topic level; must match the gateway's MQTT_TOPIC_PREFIX.
    #[arg(long, default_value = "seano")]
    pub prefix: String,

    /// Publishers: one MQTT client per vehicle, vehicle ids START_ID..START_ID+N-1.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub publishers: u32,

    /// Vehicle id of the first publisher.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..))]
    pub start_id: i64,

    /// Total messages per second across all publishers, paced evenly (0: as fast as possible).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,

    /// Seconds of publishing (per ramp step with --ramp; of idle time with --idle).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// MQTT QoS of the publishes: 0 counts a message as published when written, 1 when PUBACKed.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,

    /// Pad every payload with a `bench_pad` field up to this many bytes (0: no padding, ~190 B).
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,

    /// Unacknowledged QoS 1 publishes each publisher may have in flight.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    pub inflight: u16,

    /// WebSocket clients (0 with no --mqtt-subscribers: ingest scenario, no subscribers at all).
    #[arg(long, default_value_t = 10)]
    pub clients: u32,

    /// `all`: every client on /api/ws; `vehicle`: clients spread round-robin over
    /// /api/ws/vehicle/{id} of the publishers' vehicles, each checked to receive only its vehicle;
    /// `commands`: no publishers, the clients send commands to --vehicles running boats and time
    /// each one to its final command_status; `history`: one publisher (vehicle --start-id)
    /// sends --history-rows vehicle_logs as fast as it can at QoS 1 (whatever --rate and --qos
    /// say), their timestamps stepping 1/--history-rate-hz s and ending at the current minute;
    /// once all are stored, each history request is timed --history-repeats times.
    #[arg(long, value_enum, default_value_t = Mode::All)]
    pub mode: Mode,

    /// Ingest (--clients 0): this many clients read /api/ws while the messages are stored (the
    /// mixed scenario); their frames are counted by the gateway, not checked for loss.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub readers: u32,

    /// Storm mode: clients that reconnect at once with `since=`.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub storm_clients: u32,

    /// Storm mode: how far back (seqs) their `since=` is; that many vehicle_logs are seeded.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub storm_back: u64,

    /// Storm mode: seconds the storm clients get to catch up before the run is reported.
    #[arg(long, default_value_t = 300.0)]
    pub storm_timeout: f64,

    /// History mode: vehicle_logs seeded (864,000: a day at 10 Hz). Publishing is at full speed,
    /// so they queue in the broker while the gateway stores them: keep this below the broker's
    /// queue for one subscriber (tools/bench/mosquitto.conf: 1,000,000 messages).
    #[arg(long, default_value_t = 864_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub history_rows: u64,

    /// History mode: messages per second of the seeded boat, i.e. the timestamp step
    /// (10: 100 ms). The seeded span is --history-rows / this.
    #[arg(long, default_value_t = 10.0)]
    pub history_rate_hz: f64,

    /// History mode: timed runs of each request (p50 and p99 over them; the first is also
    /// reported on its own).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub history_repeats: u32,

    /// History mode: seconds one request may take before it counts as failed.
    #[arg(long, default_value_t = 120.0)]
    pub history_timeout: f64,

    /// Ingest: this run is one of a pair measuring retention's purge under load (the label
    /// names the pair in the "purge under load" table); the bench records the vehicle_log rows
    /// the gateway purged (`.messages.purged.vehicle_logs` of GET /api/ws/stats), when it
    /// purged them, and the commit times of /metrics (`seano_commit_seconds`).
    #[arg(long, value_name = "LABEL")]
    pub purge_pair: Option<String>,

    /// With --purge-pair: the gateway of this run purges (retention on); without it, the run is
    /// the pair's baseline (retention off).
    #[arg(long)]
    pub purging: bool,

    /// With --purge-pair: old vehicle_log rows seeded into the database before the gateway
    /// started (for the table; the bench seeds nothing itself).
    #[arg(long, default_value_t = 0)]
    pub seeded_rows: u64,

    /// Commands mode: the boats commanded, START_ID..START_ID+N-1, round-robin. They must have
    /// sent telemetry (the bench waits up to --ready-timeout for them in GET /api/vehicles) and
    /// must answer (`jetson-sim --vehicles N`).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub vehicles: u32,

    /// Commands mode: commands per second over all clients and boats, paced evenly. Keep it
    /// within the gateway's limits: COMMAND_RATE per boat, WS_CLIENT_RATE per client (20 by
    /// default; a client frame over it is dropped unanswered).
    #[arg(long, default_value_t = 10.0)]
    pub command_rate: f64,

    /// Commands mode: the commands sent, comma-separated; each boat is sent them in turn.
    #[arg(long, value_delimiter = ',', default_value = "HOLD,LOITER,AUTO,MANUAL")]
    pub commands: Vec<String>,

    /// Commands mode: each command's `timeout_ms`; after the last command the bench waits this
    /// long, plus --drain seconds, for every final state.
    #[arg(long, default_value_t = 8000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub command_timeout_ms: u64,

    /// Fraction of the clients that connect and then never read (slow consumers); they are
    /// excluded from loss and latency, and read at the end to see whether they were disconnected.
    #[arg(long, default_value_t = 0.0)]
    pub slow_ratio: f64,

    /// Socket receive buffer of a slow client, in bytes, so its backlog reaches the gateway soon.
    #[arg(long, default_value_t = 4096)]
    pub slow_rcvbuf: u32,

    /// Broker baseline: this many plain MQTT subscribers (QoS 0, `{prefix}/+/vehicle_log`, or one
    /// vehicle's topic with --mode vehicle) instead of WebSocket clients; the "gateway" figures
    /// are then the broker process's.
    #[arg(long, default_value_t = 0)]
    pub mqtt_subscribers: u32,

    /// Process to measure (CPU, RSS). Default: the process listening on the gateway's port, else
    /// the only process named `seano-gateway`; with --mqtt-subscribers, the broker's process.
    #[arg(long)]
    pub gateway_pid: Option<u32>,

    /// Broker process whose CPU is reported alongside. Default: the process listening on the
    /// broker's port, if any.
    #[arg(long)]
    pub broker_pid: Option<u32>,

    /// Seconds between all clients being connected and the start of publishing.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,

    /// After publishing: wait until every client has every expected frame, or until this many
    /// seconds pass with no new frame (with no stored message, for ingest).
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,

    /// Repeat the scenario with the rate multiplied by --ramp-factor each step, until p99 passes
    /// --ramp-p99-ms, a message is lost, the generator cannot keep the rate, or --ramp-max-steps.
    #[arg(long)]
    pub ramp: bool,

    /// Rate multiplier between ramp steps.
    #[arg(long, default_value_t = 1.5)]
    pub ramp_factor: f64,

    /// Ramp stops after the first step whose p99 latency exceeds this (milliseconds).
    #[arg(long, default_value_t = 100.0)]
    pub ramp_p99_ms: f64,

    /// Most ramp steps.
    #[arg(long, default_value_t = 12)]
    pub ramp_max_steps: u32,

    /// Connect the clients, publish nothing for --duration, report the gateway's RSS per
    /// connection and CPU (its heartbeats keep running; clients answer the pings).
    #[arg(long)]
    pub idle: bool,

    /// WebSocket connections being opened at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,

    /// Seconds allowed for all clients to connect and get their first frame.
    #[arg(long, default_value_t = 120.0)]
    pub connect_timeout: f64,

    /// Seconds to wait for the gateway's GET /ready before starting (0: do not wait).
    #[arg(long, default_value_t = 30.0)]
    pub ready_timeout: f64,

    /// Read buffer of each WebSocket client, in bytes. tungstenite zeroes it before every read,
    /// so small is cheaper for small frames, and keeps 10,000 clients light.
    #[arg(long, default_value_t = 2048)]
    pub read_buffer: usize,

    /// Worker threads of the load generator (default: the number of CPUs).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Print the result as one JSON object (a ramp: its steps under `steps`) instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Print one combined table from JSON result files written by earlier `--json` runs, and exit.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub render: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every client on /api/ws.
    All,
    /// Clients spread over /api/ws/vehicle/{id}.
    Vehicle,
    /// Clients send commands and time their round trips.
    Commands,
    /// Seed one boat's history over MQTT, then time history requests.
    History,
    /// Reconnect storm: seed --storm-back vehicle_logs, run --clients live clients at --rate
    /// for --duration, then again while --storm-clients connect at once with `since=` that far
    /// back; time their replay and compare the live clients' latency with and without it.
    Storm,
}

impl Args {
    /// `mode` runs a scenario of its own: none of the fan-out variations go with it.
    fn alone(&self, mode: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            !(self.idle
                || self.ramp
                || self.mqtt_subscribers > 0
                || self.slow_ratio > 0.0
                || !self.also_gateway.is_empty()),
            "{mode} goes with none of --idle, --ramp, --mqtt-subscribers, --slow-ratio, --also-gateway"
        );
        Ok(())
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.rate >= 0.0 && self.rate.is_finite(),
            "--rate must be >= 0"
        );
        anyhow::ensure!(
            self.duration > 0.0 && self.duration.is_finite(),
            "--duration must be > 0"
        );
        anyhow::ensure!(
            (0.0..1.0).contains(&self.slow_ratio),
            "--slow-ratio must be in [0, 1)"
        );
        anyhow::ensure!(self.ramp_factor > 1.0, "--ramp-factor must be > 1");
        anyhow::ensure!(
            !(self.ramp && self.rate == 0.0),
            "--ramp needs a --rate > 0 to start from"
        );
        anyhow::ensure!(
            !(self.idle && self.ramp),
            "--idle and --ramp do not go together"
        );
        anyhow::ensure!(
            !(self.mqtt_subscribers > 0 && self.slow_ratio > 0.0),
            "--slow-ratio applies to WebSocket clients only"
        );
        anyhow::ensure!(
            !(self.idle && self.mqtt_subscribers > 0),
            "--idle measures WebSocket clients; drop --mqtt-subscribers"
        );
        anyhow::ensure!(
            !self.prefix.is_empty() && !self.prefix.contains(['/', '+', '#']),
            "--prefix must be one topic level"
        );
        anyhow::ensure!(self.read_buffer >= 512, "--read-buffer must be >= 512");
        anyhow::ensure!(
            self.also_gateway.is_empty() || (self.mqtt_subscribers == 0 && !self.idle),
            "--also-gateway applies to the fan-out and ingest scenarios"
        );
        anyhow::ensure!(
            self.also_gateway_pid.is_empty()
                || self.also_gateway_pid.len() == self.also_gateway.len(),
            "give one --also-gateway-pid per --also-gateway, or none"
        );
        anyhow::ensure!(
            self.connect_concurrency >= 1,
            "--connect-concurrency must be >= 1"
        );
        if self.mode == Mode::Commands {
            anyhow::ensure!(
                self.command_rate > 0.0 && self.command_rate.is_finite(),
                "--command-rate must be > 0"
            );
            anyhow::ensure!(
                self.clients >= 1 && self.clients <= self.vehicles,
                "--mode commands needs 1 to --vehicles clients (each one commands its own boats)"
            );
            self.alone("--mode commands")?;
            for name in &self.commands {
                seano_wire::command::check_command_name(name)
                    .map_err(|e| anyhow::anyhow!("--commands: {e}"))?;
            }
            anyhow::ensure!(!self.commands.is_empty(), "--commands is empty");
        }
        if self.mode == Mode::History {
            anyhow::ensure!(
                self.history_rate_hz > 0.0
                    && self.history_rate_hz <= 1000.0
                    && self.history_rate_hz.is_finite(),
                "--history-rate-hz must be in (0, 1000]"
            );
            anyhow::ensure!(
                self.history_timeout > 0.0 && self.history_timeout.is_finite(),
                "--history-timeout must be > 0"
            );
            self.alone("--mode history")?;
        }
        anyhow::ensure!(
            self.readers == 0 || (self.clients == 0 && self.mqtt_subscribers == 0 && !self.idle),
            "--readers goes with the ingest scenario (--clients 0)"
        );
        if self.mode == Mode::Storm {
            anyhow::ensure!(
                self.clients >= 1 && self.publishers >= 1 && self.rate > 0.0,
                "--mode storm needs live --clients, --publishers and a --rate"
            );
            anyhow::ensure!(
                self.storm_timeout > 0.0 && self.storm_timeout.is_finite(),
                "--storm-timeout must be > 0"
            );
            self.alone("--mode storm")?;
        }
        if self.purge_pair.is_some() {
            anyhow::ensure!(
                self.clients == 0
                    && self.mqtt_subscribers == 0
                    && !self.idle
                    && !self.ramp
                    && matches!(self.mode, Mode::All | Mode::Vehicle),
                "--purge-pair applies to the ingest scenario (--clients 0)"
            );
        } else {
            anyhow::ensure!(
                !self.purging && self.seeded_rows == 0,
                "--purging and --seeded-rows go with --purge-pair"
            );
        }
        Ok(())
    }

    /// The scenario's label.
    pub fn scenario_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let qos = self.qos;
        if self.mode == Mode::Commands {
            format!(
                "commands {} boats, {} cmd/s",
                self.vehicles, self.command_rate
            )
        } else if self.mode == Mode::History {
            format!(
                "history: {} vehicle_logs of one boat at {} Hz",
                self.history_rows, self.history_rate_hz
            )
        } else if self.mode == Mode::Storm {
            format!(
                "storm: {} clients since {} back, {} live clients at {} msg/s",
                self.storm_clients, self.storm_back, self.clients, self.rate
            )
        } else if self.idle {
            format!("idle {} clients", self.clients)
        } else if self.mqtt_subscribers > 0 {
            format!(
                "mqtt baseline {} subs, {} msg/s",
                self.mqtt_subscribers, self.rate
            )
        } else if self.clients == 0 {
            let readers = match self.readers {
                0 => String::new(),
                n => format!(", {n} readers"),
            };
            format!("ingest {} pubs qos{qos}{readers}", self.publishers)
        } else {
            let mode = match self.mode {
                Mode::All | Mode::Commands | Mode::History | Mode::Storm => "/api/ws",
                Mode::Vehicle => "vehicle streams",
            };
            let slow = if self.slow_ratio > 0.0 {
                format!(", {}% slow", self.slow_ratio * 100.0)
            } else {
                String::new()
            };
            format!("fan-out {} clients {mode}{slow}", self.clients)
        }
    }
}
