//! The command line: [`Cli`] (clap) and its conversion to a [`SimConfig`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::bad::BadKind;
use crate::config::{defaults, GeoPoint, SimConfig};

/// Stands in for the SEANO fleet's Jetsons: publishes realistic raw_log, sensor_log and
/// vehicle_log telemetry for N boats to an MQTT broker, then prints what was sent.
#[derive(Debug, Parser)]
#[command(name = "jetson-sim", version, about, long_about = None)]
pub struct Cli {
    /// MQTT broker, `mqtt://[user:pass@]host[:port]` or `mqtts://...` for TLS.
    #[arg(long, env = "MQTT_URL", value_name = "URL", default_value = defaults::BROKER)]
    pub broker: String,

    /// MQTT user name (overrides one in --broker).
    #[arg(long, env = "MQTT_USERNAME")]
    pub username: Option<String>,

    /// MQTT password (overrides one in --broker).
    #[arg(long, env = "MQTT_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,

    /// PEM file with the CA certificate of an mqtts:// broker (default: the platform's roots).
    #[arg(long, env = "MQTT_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,

    /// Prefix of the MQTT client ids: telemetry adds a per-run suffix; commands come in on the persistent session {client-id}-{prefix}-{start-id}-cmd, the same on every run of this fleet.
    #[arg(long, env = "SIM_CLIENT_ID", default_value = defaults::CLIENT_ID)]
    pub client_id: String,

    /// Topic prefix: {prefix}/{vehicle_id}/{raw_log|sensor_log|vehicle_log}; commands come on {prefix}/{vehicle_id}/command, answers go on {prefix}/{vehicle_id}/ack.
    #[arg(long, env = "MQTT_TOPIC_PREFIX", default_value = defaults::PREFIX)]
    pub prefix: String,

    /// Number of boats.
    #[arg(long, env = "SIM_VEHICLES", default_value_t = defaults::VEHICLES)]
    pub vehicles: u32,

    /// Id of the first boat; the ids are start-id .. start-id + vehicles.
    #[arg(long, env = "SIM_START_ID", default_value_t = defaults::START_ID)]
    pub start_id: i64,

    /// vehicle_log messages per second per boat (0 = none).
    #[arg(long, env = "SIM_RATE", value_name = "HZ", default_value_t = defaults::RATE_HZ)]
    pub rate: f64,

    /// Sensor ticks per second per boat; a tick is one sensor_log per sensor (2-4 per boat).
    #[arg(long, env = "SIM_SENSOR_RATE", value_name = "HZ", default_value_t = defaults::SENSOR_RATE_HZ)]
    pub sensor_rate: f64,

    /// Status raw_log lines per second per boat, on top of the event lines (0 = events only).
    #[arg(long, env = "SIM_RAW_RATE", value_name = "HZ", default_value_t = defaults::RAW_RATE_HZ)]
    pub raw_rate: f64,

    /// Seed of a reproducible run: same seed, same payloads apart from timestamps (default: random; the summary prints it).
    #[arg(long, env = "SIM_SEED")]
    pub seed: Option<u64>,

    /// Stop after this many seconds, counted from the first connection.
    #[arg(long, env = "SIM_DURATION", value_name = "SECS")]
    pub duration: Option<f64>,

    /// Stop after exactly this many messages, all types, malformed ones included.
    #[arg(long, env = "SIM_COUNT", value_name = "N")]
    pub count: Option<u64>,

    /// QoS of every publish; with 1 a message counts as sent once the broker acknowledged it.
    #[arg(long, env = "SIM_QOS", default_value_t = defaults::QOS, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,

    /// Centre of the boats' tracks (default: Jakarta bay).
    #[arg(long, env = "SIM_HOME", value_name = "LAT,LON", default_value = defaults::HOME, allow_hyphen_values = true)]
    pub home: GeoPoint,

    /// The boats stay within this many metres of --home.
    #[arg(long, env = "SIM_RADIUS_M", value_name = "METRES", default_value_t = defaults::RADIUS_M)]
    pub radius_m: f64,

    /// Fraction of messages replaced by malformed ones, e.g. 0.01.
    #[arg(long, env = "SIM_BAD_RATIO", value_name = "RATIO", default_value_t = defaults::BAD_RATIO)]
    pub bad_ratio: f64,

    /// Malformed kinds to draw from, comma-separated: non_integer_vehicle_id, invalid_json, wrong_field_type, non_integer_sensor_id, empty_payload, oversized_payload, invalid_utf8, unknown_topic (default: all but unknown_topic, which a gateway never receives).
    #[arg(
        long,
        env = "SIM_BAD_KINDS",
        value_name = "KINDS",
        value_delimiter = ','
    )]
    pub bad_kinds: Vec<BadKind>,

    /// Size of an oversized_payload message; keep it above the gateway's MAX_PAYLOAD_BYTES.
    #[arg(long, value_name = "BYTES", default_value_t = defaults::BAD_OVERSIZE_BYTES)]
    pub bad_oversize_bytes: usize,

    /// Put an RFC 3339 `timestamp` in vehicle_log and sensor_log payloads (the default).
    #[arg(long, overrides_with = "no_timestamps")]
    pub timestamps: bool,

    /// Leave the timestamp out, so the gateway uses its receive time.
    #[arg(long, overrides_with = "timestamps")]
    pub no_timestamps: bool,

    /// QoS 1 messages in flight (unacknowledged) at most.
    #[arg(long, value_name = "N", default_value_t = defaults::INFLIGHT)]
    pub inflight: u16,

    /// Seconds to wait at the end for outstanding acknowledgements.
    #[arg(long, value_name = "SECS", default_value_t = defaults::DRAIN_TIMEOUT_SECS)]
    pub drain_timeout: f64,

    /// Give up if the broker cannot be reached within this many seconds (0 = keep trying).
    #[arg(long, value_name = "SECS", default_value_t = defaults::CONNECT_TIMEOUT_SECS)]
    pub connect_timeout: f64,

    /// Milliseconds a boat waits before answering a command on {prefix}/{id}/ack (it obeys at once).
    #[arg(long, env = "SIM_ACK_DELAY_MS", value_name = "MS", default_value_t = defaults::ACK_DELAY_MS)]
    pub ack_delay_ms: u64,

    /// Fraction of commands (0 to 1) answered "error" with "simulated failure" and not carried out; reproducible with --seed.
    #[arg(long, env = "SIM_FAIL_RATIO", value_name = "RATIO", default_value_t = defaults::FAIL_RATIO)]
    pub fail_ratio: f64,

    /// The first K boats of the fleet ignore commands: no answer, no effect (the gateway times them out).
    #[arg(long, env = "SIM_SILENT_BOATS", value_name = "K", default_value_t = defaults::SILENT_BOATS)]
    pub silent_boats: u32,

    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,

    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl Cli {
    /// The run these flags describe, validated.
    pub fn into_config(self) -> anyhow::Result<SimConfig> {
        let secs = |flag: &str, s: f64| {
            Duration::try_from_secs_f64(s).with_context(|| format!("{flag} {s} is not a duration"))
        };
        let config = SimConfig {
            broker: self.broker,
            username: self.username,
            password: self.password,
            ca_file: self.ca_file,
            client_id: self.client_id,
            prefix: self.prefix,
            vehicles: self.vehicles,
            start_id: self.start_id,
            rate: self.rate,
            sensor_rate: self.sensor_rate,
            raw_rate: self.raw_rate,
            seed: self.seed,
            duration: self.duration.map(|d| secs("--duration", d)).transpose()?,
            count: self.count,
            qos: self.qos,
            home: self.home,
            radius_m: self.radius_m,
            bad_ratio: self.bad_ratio,
            bad_kinds: if self.bad_kinds.is_empty() {
                BadKind::DEFAULT.to_vec()
            } else {
                self.bad_kinds
            },
            bad_oversize_bytes: self.bad_oversize_bytes,
            timestamps: !self.no_timestamps,
            start_time: None,
            inflight: self.inflight,
            drain_timeout: secs("--drain-timeout", self.drain_timeout)?,
            connect_timeout: match secs("--connect-timeout", self.connect_timeout)? {
                d if d.is_zero() => None,
                d => Some(d),
            },
            progress: !self.quiet,
            ack_delay: Duration::from_millis(self.ack_delay_ms),
            fail_ratio: self.fail_ratio,
            silent_boats: self.silent_boats,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> anyhow::Result<SimConfig> {
        let cli = Cli::try_parse_from(std::iter::once("jetson-sim").chain(args.iter().copied()))?;
        cli.into_config()
    }

    #[test]
    fn cli_is_well_formed_and_documents_every_flag() {
        Cli::command().debug_assert();
        for arg in Cli::command().get_arguments() {
            if arg.get_id() != "help" && arg.get_id() != "version" {
                assert!(arg.get_help().is_some(), "--{} has no help", arg.get_id());
            }
        }
    }

    #[test]
    fn defaults_match_sim_config_defaults() {
        let c = parse(&[]).unwrap();
        let d = SimConfig::default();
        assert_eq!(c.broker, d.broker);
        assert_eq!(
            (c.vehicles, c.rate, c.sensor_rate, c.raw_rate),
            (5, 10.0, 1.0, 0.0)
        );
        assert_eq!(c.home, d.home);
        assert_eq!(c.bad_kinds, d.bad_kinds);
        assert!(c.timestamps);
        assert_eq!(c.connect_timeout, d.connect_timeout);
        assert!(c.progress);
        assert_eq!(
            (c.ack_delay, c.fail_ratio, c.silent_boats),
            (d.ack_delay, d.fail_ratio, d.silent_boats)
        );
    }

    #[test]
    fn parses_the_documented_example_and_every_kind_of_flag() {
        let c = parse(&[
            "--vehicles",
            "3",
            "--rate",
            "2.5",
            "--home",
            "-7.25,112.75",
            "--seed",
            "42",
            "--count",
            "100",
            "--duration",
            "1.5",
            "--qos",
            "0",
            "--bad-ratio",
            "0.1",
            "--bad-kinds",
            "empty_payload,invalid-json",
            "--no-timestamps",
            "--quiet",
            "--connect-timeout",
            "0",
            "--ack-delay-ms",
            "250",
            "--fail-ratio",
            "0.25",
            "--silent-boats",
            "1",
        ])
        .unwrap();
        assert_eq!(c.vehicles, 3);
        assert_eq!(
            c.home,
            GeoPoint {
                lat: -7.25,
                lon: 112.75
            }
        );
        assert_eq!(c.seed, Some(42));
        assert_eq!(c.count, Some(100));
        assert_eq!(c.duration, Some(Duration::from_millis(1500)));
        assert_eq!(c.qos, 0);
        assert_eq!(c.bad_kinds, [BadKind::EmptyPayload, BadKind::InvalidJson]);
        assert!(!c.timestamps && !c.progress);
        assert_eq!(c.connect_timeout, None);
        assert_eq!(c.ack_delay, Duration::from_millis(250));
        assert_eq!((c.fail_ratio, c.silent_boats), (0.25, 1));
    }

    #[test]
    fn rejects_out_of_range_values() {
        assert!(parse(&["--qos", "2"]).is_err());
        assert!(parse(&["--bad-ratio", "1.5"]).is_err());
        assert!(parse(&["--duration", "-1"]).is_err());
        assert!(parse(&["--vehicles", "0"]).is_err());
        assert!(parse(&["--bad-kinds", "nonsense"]).is_err());
        assert!(parse(&["--fail-ratio", "-0.1"]).is_err());
        assert!(parse(&["--vehicles", "2", "--silent-boats", "3"]).is_err());
        assert!(parse(&["--ack-delay-ms", "-5"]).is_err());
    }
}
