//! Settings, from CLI flags, environment variables and a `.env` file (in that order of
//! precedence). Each documented field is one line of `--help`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::retention::{Period, RetentionConfig};

/// The default of each setting, in `--help` and hence in [`Settings::default`].
pub mod defaults {
    pub const HTTP_ADDR: &str = "127.0.0.1:8000";
    pub const DATABASE_URL: &str = "sqlite://seano.db?mode=rwc";
    pub const MQTT_EMBEDDED_ADDR: &str = "127.0.0.1:1883";
    pub const MQTT_TOPIC_PREFIX: &str = "seano";
    pub const MQTT_CLIENT_ID: &str = "seano-gateway";
    pub const MQTT_KEEP_ALIVE_SECS: u64 = 30;
    pub const MAX_PAYLOAD_BYTES: u64 = 256 * 1024;
    pub const BATCH_MAX_MESSAGES: u64 = 2000;
    pub const BATCH_WINDOW_MS: u64 = 2;
    pub const WS_CLIENT_QUEUE: u64 = 1024;
    pub const WS_MAX_CONNECTIONS: u64 = 20_000;
    pub const WS_MAX_FRAME_BYTES: u64 = 64 * 1024;
    pub const WS_HEARTBEAT_SECS: u64 = 15;
    pub const WS_CLIENT_TIMEOUT_SECS: u64 = 45;
    pub const WS_STALL_TIMEOUT_SECS: u64 = 30;
    pub const SHUTDOWN_TIMEOUT_SECS: u64 = 10;
    pub const WS_REPLAY_WINDOW: u64 = 100_000;
    pub const WS_REPLAY_RING_MB: u64 = 64;
    pub const WS_REPLAY_RATE: u64 = 1_000_000;
    pub const WS_REPLAY_RATE_BEHIND: u64 = 5_000;
    pub const WS_GATHER_MS: u64 = 20;
    pub const HTTP_WORKER_NICE: u64 = 10;
    pub const WS_CLIENT_RATE: u64 = 20;
    pub const WS_CLIENT_BURST: u64 = 40;
    pub const DEDUP_WINDOW: u64 = 100_000;
    pub const INGEST_STALL_SECS: u64 = 30;
    pub const COMMANDS: &str = "ARM,FORCE_ARM,DISARM,FORCE_DISARM,AUTO,MANUAL,HOLD,LOITER,RTL";
    pub const COMMAND_TIMEOUT_MS: u64 = seano_wire::command::DEFAULT_TIMEOUT_MS;
    pub const COMMAND_RATE: u64 = 2;
    pub const COMMAND_BURST: u64 = 5;
    pub const AUTH_JWKS_REFRESH_SECS: u64 = 300;
    pub const AUTH_JWT_LEEWAY_SECS: u64 = 60;
    pub const AUTH_JWT_VEHICLES_CLAIM: &str = "vehicles";
    pub const AUTH_JWT_COMMANDS_CLAIM: &str = "commands";
    pub const RETENTION_RAW_LOG: &str = "30d";
    pub const RETENTION_SENSOR_LOG: &str = "14d";
    pub const RETENTION_VEHICLE_LOG: &str = "7d";
    pub const RETENTION_REJECTED: &str = "7d";
    pub const RETENTION_COMMANDS: &str = "90d";
    pub const RETENTION_ROLLUP: &str = "365d";
    pub const PURGE_INTERVAL: &str = "1m";
    pub const PURGE_BATCH: u64 = 2000;
}

/// SEANO telemetry gateway: MQTT ingest, storage with sea-orm, WebSocket streams.
#[derive(Clone, Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Settings {
    /// HTTP and WebSocket listen address (`:0` picks a free port; the log says which).
    #[arg(long, env = "HTTP_ADDR", value_name = "HTTP_ADDR", default_value = defaults::HTTP_ADDR)]
    pub http_addr: SocketAddr,

    /// Database: `sqlite://FILE?mode=rwc` or `postgres://user@host/db`.
    #[arg(long, env = "DATABASE_URL", value_name = "DATABASE_URL", default_value = defaults::DATABASE_URL)]
    pub database_url: String,

    /// External MQTT broker, `mqtt://host:1883` or `mqtts://host:8883`; unset starts the embedded broker.
    #[arg(long, env = "MQTT_URL", value_name = "MQTT_URL")]
    pub mqtt_url: Option<String>,

    /// Where the embedded MQTT broker listens when MQTT_URL is unset (`:0` picks a free port).
    #[arg(long, env = "MQTT_EMBEDDED_ADDR", value_name = "MQTT_EMBEDDED_ADDR", default_value = defaults::MQTT_EMBEDDED_ADDR)]
    pub mqtt_embedded_addr: SocketAddr,

    /// First topic level: vehicles publish on `{prefix}/{vehicle_id}/{type}`.
    #[arg(long, env = "MQTT_TOPIC_PREFIX", value_name = "MQTT_TOPIC_PREFIX", default_value = defaults::MQTT_TOPIC_PREFIX)]
    pub mqtt_topic_prefix: String,

    /// Client id of the gateway's persistent MQTT session (with MQTT_SHARED_GROUP, followed by `-{INSTANCE_ID}`).
    #[arg(long, env = "MQTT_CLIENT_ID", value_name = "MQTT_CLIENT_ID", default_value = defaults::MQTT_CLIENT_ID)]
    pub mqtt_client_id: String,

    /// This instance's name among several (log, stats, `/api/cluster`, the `instance` metric
    /// label); unset: the host name. With MQTT_SHARED_GROUP the MQTT client id is
    /// `{MQTT_CLIENT_ID}-{INSTANCE_ID}`, so keep it stable across restarts.
    #[arg(long, env = "INSTANCE_ID", value_name = "INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Share ingest with the other instances of this group through the MQTT shared subscription
    /// `$share/{group}/{prefix}/#` (each message is stored by one instance); needs PostgreSQL and MQTT_URL.
    #[arg(long, env = "MQTT_SHARED_GROUP", value_name = "MQTT_SHARED_GROUP")]
    pub mqtt_shared_group: Option<String>,

    /// MQTT user name (also settable in MQTT_URL as `mqtt://user:pass@host`).
    #[arg(long, env = "MQTT_USERNAME", value_name = "MQTT_USERNAME")]
    pub mqtt_username: Option<String>,

    /// MQTT password.
    #[arg(
        long,
        env = "MQTT_PASSWORD",
        value_name = "MQTT_PASSWORD",
        hide_env_values = true
    )]
    pub mqtt_password: Option<String>,

    /// PEM file of the CA that signed the broker's certificate (mqtts://); unset: the system's roots.
    #[arg(long, env = "MQTT_CA_FILE", value_name = "MQTT_CA_FILE")]
    pub mqtt_ca_file: Option<std::path::PathBuf>,

    /// MQTT keep-alive in seconds.
    #[arg(long, env = "MQTT_KEEP_ALIVE_SECS", value_name = "MQTT_KEEP_ALIVE_SECS", default_value_t = defaults::MQTT_KEEP_ALIVE_SECS,
          value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub mqtt_keep_alive_secs: u64,

    /// Largest payload accepted as telemetry, in bytes; larger ones go to rejected_messages.
    #[arg(long, env = "MAX_PAYLOAD_BYTES", value_name = "MAX_PAYLOAD_BYTES", default_value_t = defaults::MAX_PAYLOAD_BYTES,
          value_parser = clap::value_parser!(u64).range(64..=16 * 1024 * 1024))]
    pub max_payload_bytes: u64,

    /// Most messages written in one database transaction.
    #[arg(long, env = "BATCH_MAX_MESSAGES", value_name = "BATCH_MAX_MESSAGES", default_value_t = defaults::BATCH_MAX_MESSAGES,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch_max_messages: u64,

    /// How long a batch may wait to fill after its first message, in milliseconds.
    #[arg(long, env = "BATCH_WINDOW_MS", value_name = "BATCH_WINDOW_MS", default_value_t = defaults::BATCH_WINDOW_MS,
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub batch_window_ms: u64,

    /// Frames queued for one WebSocket client; past it the client catches up from the database.
    #[arg(long, env = "WS_CLIENT_QUEUE", value_name = "WS_CLIENT_QUEUE", default_value_t = defaults::WS_CLIENT_QUEUE,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub ws_client_queue: u64,

    /// Most WebSocket connections at once; past it the upgrade is refused with HTTP 503.
    #[arg(long, env = "WS_MAX_CONNECTIONS", value_name = "WS_MAX_CONNECTIONS", default_value_t = defaults::WS_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub ws_max_connections: u64,

    /// Largest frame a client may send, in bytes; a larger one closes the connection with 1009.
    #[arg(long, env = "WS_MAX_FRAME_BYTES", value_name = "WS_MAX_FRAME_BYTES", default_value_t = defaults::WS_MAX_FRAME_BYTES,
          value_parser = clap::value_parser!(u64).range(128..=16 * 1024 * 1024))]
    pub ws_max_frame_bytes: u64,

    /// Seconds between server pings on each WebSocket.
    #[arg(long, env = "WS_HEARTBEAT_SECS", value_name = "WS_HEARTBEAT_SECS", default_value_t = defaults::WS_HEARTBEAT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ws_heartbeat_secs: u64,

    /// Seconds without any frame from a client before it is closed as dead.
    #[arg(long, env = "WS_CLIENT_TIMEOUT_SECS", value_name = "WS_CLIENT_TIMEOUT_SECS", default_value_t = defaults::WS_CLIENT_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(2..=86_400))]
    pub ws_client_timeout_secs: u64,

    /// Seconds a client's socket may take nothing before it is closed as a slow consumer (3001).
    #[arg(long, env = "WS_STALL_TIMEOUT_SECS", value_name = "WS_STALL_TIMEOUT_SECS", default_value_t = defaults::WS_STALL_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ws_stall_timeout_secs: u64,

    /// Messages per second a client may send on average (pings, subscriptions); more are dropped.
    #[arg(long, env = "WS_CLIENT_RATE", value_name = "WS_CLIENT_RATE", default_value_t = defaults::WS_CLIENT_RATE,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub ws_client_rate: u64,

    /// Messages a client may send in a burst above WS_CLIENT_RATE.
    #[arg(long, env = "WS_CLIENT_BURST", value_name = "WS_CLIENT_BURST", default_value_t = defaults::WS_CLIENT_BURST,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub ws_client_burst: u64,

    /// How many seqs back a `since=` resume may reach; older gets a `resync` frame.
    #[arg(long, env = "WS_REPLAY_WINDOW", value_name = "WS_REPLAY_WINDOW", default_value_t = defaults::WS_REPLAY_WINDOW,
          value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    pub ws_replay_window: u64,

    /// MiB of the last committed frames kept in memory, already serialized, to serve `since=`
    /// and catch-ups within their reach without the database (0: none kept).
    #[arg(long, env = "WS_REPLAY_RING_MB", value_name = "WS_REPLAY_RING_MB", default_value_t = defaults::WS_REPLAY_RING_MB,
          value_parser = clap::value_parser!(u64).range(0..=65_536))]
    pub ws_replay_ring_mb: u64,

    /// Frames per second of every replay together (`since=` resumes and catch-ups), so that a
    /// reconnect storm leaves the machine to live delivery and ingest (0: no limit).
    #[arg(long, env = "WS_REPLAY_RATE", value_name = "WS_REPLAY_RATE", default_value_t = defaults::WS_REPLAY_RATE,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000_000))]
    pub ws_replay_rate: u64,

    /// Frames per second of every replay together while the store is behind (a batch was full
    /// within the last second), if smaller than `WS_REPLAY_RATE`: with both cores busy, storing
    /// comes first and readers catch up later (0: `WS_REPLAY_RATE` throughout).
    #[arg(long, env = "WS_REPLAY_RATE_BEHIND", value_name = "WS_REPLAY_RATE_BEHIND", default_value_t = defaults::WS_REPLAY_RATE_BEHIND,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000_000))]
    pub ws_replay_rate_behind: u64,

    /// Milliseconds committed messages are gathered before they are fanned out, so that each
    /// client writes them with one `write()` (0: each commit at once).
    #[arg(long, env = "WS_GATHER_MS", value_name = "WS_GATHER_MS", default_value_t = defaults::WS_GATHER_MS,
          value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pub ws_gather_ms: u64,

    /// The nice value of the HTTP workers (WebSocket streams and REST) relative to the threads
    /// that take messages in and store them: with both cores busy, storing comes first and
    /// live streams fall behind (and catch up) instead. 0: the same priority.
    #[arg(long, env = "HTTP_WORKER_NICE", value_name = "HTTP_WORKER_NICE", default_value_t = defaults::HTTP_WORKER_NICE,
          value_parser = clap::value_parser!(u64).range(0..=19))]
    pub http_worker_nice: u64,

    /// How many seqs back a redelivered (DUP) message is looked for before it is stored again.
    #[arg(long, env = "DEDUP_WINDOW", value_name = "DEDUP_WINDOW", default_value_t = defaults::DEDUP_WINDOW,
          value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    pub dedup_window: u64,

    /// Static API tokens, comma-separated: `TOKEN` (every vehicle) or `TOKEN:1+2` (those vehicles),
    /// read only; `TOKEN:*:commands` / `TOKEN:1+2:commands` may also send commands.
    /// Setting this, AUTH_JWT_SECRET or AUTH_JWKS_URL turns access control on.
    #[arg(
        long,
        env = "AUTH_TOKENS",
        value_name = "AUTH_TOKENS",
        hide_env_values = true
    )]
    pub auth_tokens: Option<String>,

    /// Secret for HS256 JWTs (claims: `exp` required, `vehicles` optional list of ids,
    /// `commands: true` for command rights, `sub` names the sender).
    #[arg(
        long,
        env = "AUTH_JWT_SECRET",
        value_name = "AUTH_JWT_SECRET",
        hide_env_values = true
    )]
    pub auth_jwt_secret: Option<String>,

    /// The identity provider's key set (JWKS) for RS256, ES256 and EdDSA JWTs, by `kid`:
    /// `https://`, `http://` or `file://`. Fetched at start-up (JWTs are refused until it is),
    /// every AUTH_JWKS_REFRESH_SECS and when a token names an unknown key.
    #[arg(long, env = "AUTH_JWKS_URL", value_name = "AUTH_JWKS_URL")]
    pub auth_jwks_url: Option<String>,

    /// Seconds between two fetches of AUTH_JWKS_URL (sooner while it cannot be reached).
    #[arg(long, env = "AUTH_JWKS_REFRESH_SECS", value_name = "AUTH_JWKS_REFRESH_SECS", default_value_t = defaults::AUTH_JWKS_REFRESH_SECS,
          value_parser = clap::value_parser!(u64).range(10..=86_400))]
    pub auth_jwks_refresh_secs: u64,

    /// When set, a JWT's `iss` must be exactly this (e.g. https://idp.example/realms/seano).
    #[arg(long, env = "AUTH_JWT_ISSUER", value_name = "AUTH_JWT_ISSUER")]
    pub auth_jwt_issuer: Option<String>,

    /// When set, a JWT's `aud` must name this (e.g. the gateway's client id at the provider).
    #[arg(long, env = "AUTH_JWT_AUDIENCE", value_name = "AUTH_JWT_AUDIENCE")]
    pub auth_jwt_audience: Option<String>,

    /// Clock skew allowed on a JWT's `exp` and `nbf`, in seconds.
    #[arg(long, env = "AUTH_JWT_LEEWAY_SECS", value_name = "AUTH_JWT_LEEWAY_SECS", default_value_t = defaults::AUTH_JWT_LEEWAY_SECS,
          value_parser = clap::value_parser!(u64).range(0..=600))]
    pub auth_jwt_leeway_secs: u64,

    /// The JWT claim (its key, taken literally) listing the vehicle ids a token covers; absent: every vehicle.
    #[arg(long, env = "AUTH_JWT_VEHICLES_CLAIM", value_name = "AUTH_JWT_VEHICLES_CLAIM", default_value = defaults::AUTH_JWT_VEHICLES_CLAIM)]
    pub auth_jwt_vehicles_claim: String,

    /// The JWT claim (its key, taken literally) whose `true` grants command rights.
    #[arg(long, env = "AUTH_JWT_COMMANDS_CLAIM", value_name = "AUTH_JWT_COMMANDS_CLAIM", default_value = defaults::AUTH_JWT_COMMANDS_CLAIM)]
    pub auth_jwt_commands_claim: String,

    /// Browser origins allowed besides the gateway's own (comma-separated, or `*` for any);
    /// unset: loopback origins only. Also the CORS allow-list.
    #[arg(long, env = "ALLOWED_ORIGINS", value_name = "ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,

    /// `/ready` fails when messages have waited this many seconds without any commit.
    #[arg(long, env = "INGEST_STALL_SECS", value_name = "INGEST_STALL_SECS", default_value_t = defaults::INGEST_STALL_SECS,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub ingest_stall_secs: u64,

    /// The commands a vehicle may be sent, comma-separated (anything else is refused).
    #[arg(long, env = "COMMANDS", value_name = "COMMANDS", default_value = defaults::COMMANDS)]
    pub commands: String,

    /// Milliseconds to wait for a vehicle's answer to a command (a command may ask for another).
    #[arg(long, env = "COMMAND_TIMEOUT_MS", value_name = "COMMAND_TIMEOUT_MS", default_value_t = defaults::COMMAND_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub command_timeout_ms: u64,

    /// Commands per second one vehicle may be sent on average; more are refused.
    #[arg(long, env = "COMMAND_RATE", value_name = "COMMAND_RATE", default_value_t = defaults::COMMAND_RATE,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub command_rate: u64,

    /// Commands one vehicle may be sent in a burst above COMMAND_RATE.
    #[arg(long, env = "COMMAND_BURST", value_name = "COMMAND_BURST", default_value_t = defaults::COMMAND_BURST,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub command_burst: u64,

    /// With access control off, accept commands even though HTTP_ADDR is not loopback (anyone
    /// who reaches the port can then command the fleet).
    #[arg(long, env = "COMMANDS_WITHOUT_AUTH", value_name = "COMMANDS_WITHOUT_AUTH", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub commands_without_auth: bool,

    /// How long raw_log rows are kept (`90d`, `12h`, `30s`; `0` keeps forever).
    #[arg(long, env = "RETENTION_RAW_LOG", value_name = "RETENTION_RAW_LOG", default_value = defaults::RETENTION_RAW_LOG)]
    pub retention_raw_log: Period,

    /// How long sensor_log rows are kept (`0` keeps forever).
    #[arg(long, env = "RETENTION_SENSOR_LOG", value_name = "RETENTION_SENSOR_LOG", default_value = defaults::RETENTION_SENSOR_LOG)]
    pub retention_sensor_log: Period,

    /// How long vehicle_log rows are kept (`0` keeps forever).
    #[arg(long, env = "RETENTION_VEHICLE_LOG", value_name = "RETENTION_VEHICLE_LOG", default_value = defaults::RETENTION_VEHICLE_LOG)]
    pub retention_vehicle_log: Period,

    /// How long rejected messages are kept (`0` keeps forever).
    #[arg(long, env = "RETENTION_REJECTED", value_name = "RETENTION_REJECTED", default_value = defaults::RETENTION_REJECTED)]
    pub retention_rejected: Period,

    /// How long finished commands and their command_status changes are kept (`0` keeps forever).
    #[arg(long, env = "RETENTION_COMMANDS", value_name = "RETENTION_COMMANDS", default_value = defaults::RETENTION_COMMANDS)]
    pub retention_commands: Period,

    /// How long the per-minute rollups behind `bucket=` history are kept (`0` keeps forever).
    #[arg(long, env = "RETENTION_ROLLUP", value_name = "RETENTION_ROLLUP", default_value = defaults::RETENTION_ROLLUP)]
    pub retention_rollup: Period,

    /// How often retention purges what has grown older than its period (`30s`, `1m`, `1h`).
    #[arg(long, env = "PURGE_INTERVAL", value_name = "PURGE_INTERVAL", default_value = defaults::PURGE_INTERVAL)]
    pub purge_interval: Period,

    /// Rows one purge statement removes; each runs in a short transaction of its own.
    #[arg(long, env = "PURGE_BATCH", value_name = "PURGE_BATCH", default_value_t = defaults::PURGE_BATCH,
          value_parser = clap::value_parser!(u64).range(10..=100_000))]
    pub purge_batch: u64,

    /// Seconds a graceful shutdown may spend committing what is in flight.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", value_name = "SHUTDOWN_TIMEOUT_SECS", default_value_t = defaults::SHUTDOWN_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub shutdown_timeout_secs: u64,
}

impl Default for Settings {
    /// The defaults `--help` shows, whatever the environment says (for tests and embedding):
    /// the command line parsed with no arguments and no environment, so the defaults are the
    /// ones in the attributes above and nowhere else.
    fn default() -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Settings::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(["seano-gateway"])
            // unwrap: every setting has a default or is optional.
            .unwrap();
        // unwrap: the matches come from this very command.
        Settings::from_arg_matches(&matches).unwrap()
    }
}

/// A configuration value that cannot work, with the variable and how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("invalid {variable}: {problem}. {fix}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
    pub fix: &'static str,
}

impl Settings {
    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database_url.as_str();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError {
                variable: "DATABASE_URL",
                problem: format!("'{url}' is neither SQLite nor PostgreSQL"),
                fix: "Use sqlite://seano.db?mode=rwc or postgres://user:password@host:5432/dbname",
            });
        }
        if let Some(mqtt) = &self.mqtt_url {
            crate::mqtt::BrokerAddress::parse(mqtt).map_err(|problem| ConfigError {
                variable: "MQTT_URL",
                problem,
                fix: "Use mqtt://host:1883 or mqtts://host:8883, or unset it for the embedded broker",
            })?;
        }
        let prefix = &self.mqtt_topic_prefix;
        if prefix.is_empty() || prefix.contains(['/', '+', '#', '\0']) || prefix.starts_with('$') {
            return Err(ConfigError {
                variable: "MQTT_TOPIC_PREFIX",
                problem: format!("'{prefix}' is not a single topic level"),
                fix: "Use a plain word such as seano (no '/', '+', '#', leading '$')",
            });
        }
        if self.mqtt_client_id.is_empty() || self.mqtt_client_id.len() > 256 {
            return Err(ConfigError {
                variable: "MQTT_CLIENT_ID",
                problem: "must be 1 to 256 characters".into(),
                fix:
                    "Use a stable name such as seano-gateway; it identifies the persistent session",
            });
        }
        let instance = self.instance_id();
        if !is_name(&instance) {
            return Err(ConfigError {
                variable: "INSTANCE_ID",
                problem: format!("'{instance}' is not 1 to 64 letters, digits, '.', '_' or '-'"),
                fix: "Use a stable name per instance such as gw-1 (it names its MQTT session)",
            });
        }
        if let Some(group) = &self.mqtt_shared_group {
            if !is_name(group) {
                return Err(ConfigError {
                    variable: "MQTT_SHARED_GROUP",
                    problem: format!("'{group}' is not 1 to 64 letters, digits, '.', '_' or '-'"),
                    fix: "Use one plain word for every instance of the deployment, such as seano-gateways",
                });
            }
            if !self.database_url.starts_with("postgres") {
                return Err(ConfigError {
                    variable: "MQTT_SHARED_GROUP",
                    problem: "several instances need one shared PostgreSQL; SQLite is one process's file".into(),
                    fix: "Set DATABASE_URL=postgres://user:password@host:5432/dbname on every instance, or unset MQTT_SHARED_GROUP",
                });
            }
            if self.mqtt_url.is_none() {
                return Err(ConfigError {
                    variable: "MQTT_SHARED_GROUP",
                    problem: "the embedded broker lives inside one instance; the others cannot share it".into(),
                    fix: "Set MQTT_URL=mqtt://host:1883 (Mosquitto, EMQX) on every instance, or unset MQTT_SHARED_GROUP",
                });
            }
        }
        self.auth()?;
        self.command_names().map_err(|problem| ConfigError {
            variable: "COMMANDS",
            problem,
            fix: "Use comma-separated names of A-Z, 0-9 and '_', such as ARM,DISARM,RTL",
        })?;
        if self.purge_interval == Period::FOREVER {
            return Err(ConfigError {
                variable: "PURGE_INTERVAL",
                problem: "0 is not an interval".into(),
                fix: "Use a duration such as 1m; to keep everything, set the RETENTION_* periods to 0",
            });
        }
        if self.ws_client_timeout_secs <= self.ws_heartbeat_secs {
            return Err(ConfigError {
                variable: "WS_CLIENT_TIMEOUT_SECS",
                problem: format!(
                    "{}s is not longer than WS_HEARTBEAT_SECS ({}s)",
                    self.ws_client_timeout_secs, self.ws_heartbeat_secs
                ),
                fix: "Make it at least twice WS_HEARTBEAT_SECS",
            });
        }
        Ok(())
    }

    /// Access control from AUTH_TOKENS, the AUTH_JWT_* and AUTH_JWKS_* settings and
    /// ALLOWED_ORIGINS.
    pub fn auth(&self) -> Result<crate::auth::Auth, ConfigError> {
        crate::auth::Auth::new(
            self.auth_tokens.as_deref(),
            &crate::auth::JwtSettings {
                secret: self.auth_jwt_secret.clone(),
                jwks_url: self.auth_jwks_url.clone(),
                jwks_refresh: Duration::from_secs(self.auth_jwks_refresh_secs),
                issuer: self.auth_jwt_issuer.clone(),
                audience: self.auth_jwt_audience.clone(),
                leeway_secs: self.auth_jwt_leeway_secs,
                vehicles_claim: self.auth_jwt_vehicles_claim.clone(),
                commands_claim: self.auth_jwt_commands_claim.clone(),
            },
            self.allowed_origins.as_deref(),
        )
    }

    /// INSTANCE_ID, or the host name.
    pub fn instance_id(&self) -> String {
        self.instance_id.clone().unwrap_or_else(host_name)
    }

    /// The MQTT client id: MQTT_CLIENT_ID alone, or with the instance in a shared group (every
    /// member needs a persistent session of its own).
    pub fn client_id(&self) -> String {
        match &self.mqtt_shared_group {
            Some(_) => format!("{}-{}", self.mqtt_client_id, self.instance_id()),
            None => self.mqtt_client_id.clone(),
        }
    }

    /// COMMANDS as a list.
    pub fn command_names(&self) -> Result<Vec<String>, String> {
        let mut names = Vec::new();
        for name in self.commands.split(',').map(str::trim) {
            seano_wire::command::check_command_name(name)?;
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    /// Whether commands may be sent with this configuration, and the reason if not: with
    /// access control off, only on a loopback HTTP address or with COMMANDS_WITHOUT_AUTH.
    pub fn commands_open(&self) -> Result<(), String> {
        let auth_on = self
            .auth_tokens
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty())
            || self
                .auth_jwt_secret
                .as_deref()
                .is_some_and(|s| !s.is_empty())
            || self.auth_jwks_url.as_deref().is_some_and(|u| !u.is_empty());
        if auth_on || self.http_addr.ip().is_loopback() || self.commands_without_auth {
            Ok(())
        } else {
            Err(format!(
                "commands are off: access control is off and HTTP_ADDR {} is not loopback; set AUTH_TOKENS (with :commands), AUTH_JWT_SECRET or AUTH_JWKS_URL, or COMMANDS_WITHOUT_AUTH=true",
                self.http_addr
            ))
        }
    }

    /// The RETENTION_* and PURGE_* settings.
    pub fn retention(&self) -> RetentionConfig {
        RetentionConfig {
            raw_log: self.retention_raw_log,
            sensor_log: self.retention_sensor_log,
            vehicle_log: self.retention_vehicle_log,
            rejected: self.retention_rejected,
            commands: self.retention_commands,
            rollup: self.retention_rollup,
            interval: self.purge_interval.0.unwrap_or(Duration::from_secs(60)),
            batch: self.purge_batch,
        }
    }

    /// A warning when rollups go before raw rows of some type: `bucket=` history of whole
    /// minutes would then end before raw history does.
    pub fn retention_warning(&self) -> Option<String> {
        let rollup = self.retention_rollup.0?;
        let raw = self.retention().raw_periods();
        raw.iter().any(|p| p.0.is_none_or(|d| d > rollup)).then(|| {
            format!(
                "RETENTION_ROLLUP ({}) is shorter than a raw retention period: bucketed history of whole minutes ends before raw history does",
                self.retention_rollup
            )
        })
    }

    pub fn batch_window(&self) -> Duration {
        Duration::from_millis(self.batch_window_ms)
    }
}

/// A name that is safe as an MQTT topic level and client id part.
fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The host name, cut to what [`is_name`] accepts; `gateway` if there is none.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let raw = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "gateway".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let s = Settings::default();
        s.validate().unwrap();
        assert_eq!(s.http_addr.to_string(), defaults::HTTP_ADDR);
        assert!(s.mqtt_url.is_none());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let s = Settings {
            database_url: "mysql://x".into(),
            ..Default::default()
        };
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("invalid DATABASE_URL"));
        let s = Settings {
            mqtt_url: Some("http://broker".into()),
            ..Default::default()
        };
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("invalid MQTT_URL"));
        let s = Settings {
            mqtt_topic_prefix: "a/b".into(),
            ..Default::default()
        };
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("invalid MQTT_TOPIC_PREFIX"));
        let err = Settings::try_parse_from(["x", "--http-addr", "nowhere"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("HTTP_ADDR"), "{err}");
    }
}
