//! [`SimConfig`]: everything one run of the simulator needs, constructible in code (tests) or
//! from the command line ([`crate::cli`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure};
use chrono::{DateTime, Utc};

use crate::bad::BadKind;

/// The defaults shared by [`SimConfig::default`] and `--help`.
pub mod defaults {
    pub const BROKER: &str = "mqtt://127.0.0.1:1883";
    pub const CLIENT_ID: &str = "jetson-sim";
    pub const PREFIX: &str = "seano";
    pub const VEHICLES: u32 = 5;
    pub const START_ID: i64 = 1;
    pub const RATE_HZ: f64 = 10.0;
    pub const SENSOR_RATE_HZ: f64 = 1.0;
    pub const RAW_RATE_HZ: f64 = 0.0;
    pub const QOS: u8 = 1;
    /// Jakarta bay.
    pub const HOME: &str = "-6.2088,106.8456";
    pub const HOME_LAT: f64 = -6.2088;
    pub const HOME_LON: f64 = 106.8456;
    pub const RADIUS_M: f64 = 500.0;
    pub const BAD_RATIO: f64 = 0.0;
    /// Above the gateway's default `MAX_PAYLOAD_BYTES` (262144).
    pub const BAD_OVERSIZE_BYTES: usize = 300_000;
    pub const INFLIGHT: u16 = 100;
    pub const DRAIN_TIMEOUT_SECS: f64 = 10.0;
    pub const CONNECT_TIMEOUT_SECS: f64 = 30.0;
    pub const ACK_DELAY_MS: u64 = 0;
    /// The longest `--ack-delay-ms`: an hour.
    pub const MAX_ACK_DELAY_MS: u64 = 3_600_000;
    pub const FAIL_RATIO: f64 = 0.0;
    pub const SILENT_BOATS: u32 = 0;
}

/// A point on the globe, in degrees.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
}

impl std::str::FromStr for GeoPoint {
    type Err = String;

    /// Parses `LAT,LON`, e.g. `-6.2088,106.8456`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (lat, lon) = s
            .split_once(',')
            .ok_or_else(|| format!("'{s}' is not LAT,LON"))?;
        let parse = |v: &str, what: &str| {
            v.trim()
                .parse::<f64>()
                .map_err(|_| format!("{what} '{}' is not a number", v.trim()))
        };
        let p = GeoPoint {
            lat: parse(lat, "latitude")?,
            lon: parse(lon, "longitude")?,
        };
        if !(-85.0..=85.0).contains(&p.lat) || !(-180.0..=180.0).contains(&p.lon) {
            return Err(format!(
                "'{s}' is out of range (latitude within ±85, longitude within ±180)"
            ));
        }
        Ok(p)
    }
}

/// One run of the simulator. [`Default`] is what `jetson-sim` does with no flags.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// `mqtt://[user:pass@]host[:port]` or `mqtts://...`.
    pub broker: String,
    /// Overrides the user name in `broker`.
    pub username: Option<String>,
    /// Overrides the password in `broker`.
    pub password: Option<String>,
    /// PEM file with the CA that signed the broker's certificate (`mqtts` only); without it
    /// the platform's roots are used.
    pub ca_file: Option<PathBuf>,
    /// Prefix of the MQTT client id; a per-run suffix keeps parallel runs apart.
    pub client_id: String,
    /// First topic level: `{prefix}/{vehicle_id}/{type}`.
    pub prefix: String,
    /// How many boats; their ids are `start_id..start_id + vehicles`.
    pub vehicles: u32,
    pub start_id: i64,
    /// `vehicle_log` messages per second per boat (0 = none).
    pub rate: f64,
    /// Sensor ticks per second per boat; each tick is one `sensor_log` per sensor (0 = none).
    pub sensor_rate: f64,
    /// Periodic status `raw_log` lines per second per boat, on top of the events (0 = events only).
    pub raw_rate: f64,
    /// Same seed, same payloads (apart from timestamps unless `start_time` is set). `None`: random.
    pub seed: Option<u64>,
    /// Stop after this long (wall clock, from the first connection).
    pub duration: Option<Duration>,
    /// Stop after exactly this many messages of all types, bad ones included.
    pub count: Option<u64>,
    /// 0 or 1. With 1 a message counts as sent once the broker acknowledged it.
    pub qos: u8,
    /// Centre of every boat's track.
    pub home: GeoPoint,
    /// The boats stay within this distance of `home`.
    pub radius_m: f64,
    /// Fraction of messages replaced by malformed ones (0..=1).
    pub bad_ratio: f64,
    /// The malformed kinds to draw from, uniformly.
    pub bad_kinds: Vec<BadKind>,
    /// Size of an [`BadKind::OversizedPayload`] message.
    pub bad_oversize_bytes: usize,
    /// Put an RFC 3339 `timestamp` in `vehicle_log` and `sensor_log` payloads.
    pub timestamps: bool,
    /// The time of simulation second 0, for the timestamps. `None`: when publishing starts.
    /// Set it to make payloads byte-for-byte reproducible.
    pub start_time: Option<DateTime<Utc>>,
    /// QoS 1 messages in flight (sent, not yet acknowledged) at most.
    pub inflight: u16,
    /// How long to wait at the end for outstanding acknowledgements.
    pub drain_timeout: Duration,
    /// Give up if the first connection has not succeeded by then. `None`: keep trying.
    pub connect_timeout: Option<Duration>,
    /// One progress line per second to stderr.
    pub progress: bool,
    /// How long a boat waits before it answers a command (it obeys at once).
    pub ack_delay: Duration,
    /// Fraction of commands (0..=1) answered `error` ("simulated failure") and not carried out.
    pub fail_ratio: f64,
    /// The first this many boats neither answer commands nor obey them.
    pub silent_boats: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            broker: defaults::BROKER.into(),
            username: None,
            password: None,
            ca_file: None,
            client_id: defaults::CLIENT_ID.into(),
            prefix: defaults::PREFIX.into(),
            vehicles: defaults::VEHICLES,
            start_id: defaults::START_ID,
            rate: defaults::RATE_HZ,
            sensor_rate: defaults::SENSOR_RATE_HZ,
            raw_rate: defaults::RAW_RATE_HZ,
            seed: None,
            duration: None,
            count: None,
            qos: defaults::QOS,
            home: GeoPoint {
                lat: defaults::HOME_LAT,
                lon: defaults::HOME_LON,
            },
            radius_m: defaults::RADIUS_M,
            bad_ratio: defaults::BAD_RATIO,
            bad_kinds: BadKind::DEFAULT.to_vec(),
            bad_oversize_bytes: defaults::BAD_OVERSIZE_BYTES,
            timestamps: true,
            start_time: None,
            inflight: defaults::INFLIGHT,
            drain_timeout: Duration::from_secs_f64(defaults::DRAIN_TIMEOUT_SECS),
            connect_timeout: Some(Duration::from_secs_f64(defaults::CONNECT_TIMEOUT_SECS)),
            progress: false,
            ack_delay: Duration::from_millis(defaults::ACK_DELAY_MS),
            fail_ratio: defaults::FAIL_RATIO,
            silent_boats: defaults::SILENT_BOATS,
        }
    }
}

impl SimConfig {
    /// Checks the settings that would otherwise fail late or silently.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.vehicles > 0, "--vehicles must be at least 1");
        ensure!(self.start_id > 0, "--start-id must be a positive integer");
        ensure!(
            self.start_id
                .checked_add(i64::from(self.vehicles))
                .is_some(),
            "--start-id + --vehicles overflows"
        );
        for (name, hz) in [
            ("--rate", self.rate),
            ("--sensor-rate", self.sensor_rate),
            ("--raw-rate", self.raw_rate),
        ] {
            ensure!(
                hz.is_finite() && (0.0..=10_000.0).contains(&hz),
                "{name} must be between 0 and 10000 Hz, got {hz}"
            );
        }
        ensure!(
            self.rate > 0.0 || self.sensor_rate > 0.0 || self.raw_rate > 0.0,
            "at least one of --rate, --sensor-rate, --raw-rate must be above 0"
        );
        ensure!(self.qos <= 1, "--qos must be 0 or 1, got {}", self.qos);
        ensure!(
            self.radius_m.is_finite() && self.radius_m >= 50.0,
            "--radius-m must be at least 50, got {}",
            self.radius_m
        );
        ensure!(
            (0.0..=1.0).contains(&self.bad_ratio),
            "--bad-ratio must be between 0 and 1, got {}",
            self.bad_ratio
        );
        if self.bad_ratio > 0.0 && self.bad_kinds.is_empty() {
            bail!("--bad-ratio is above 0 but --bad-kinds is empty");
        }
        ensure!(
            self.bad_oversize_bytes > 0,
            "--bad-oversize-bytes must be above 0"
        );
        ensure!(
            !self.prefix.is_empty() && !self.prefix.contains(['+', '#']),
            "--prefix must be a non-empty topic level without wildcards"
        );
        ensure!(self.inflight > 0, "--inflight must be at least 1");
        ensure!(
            self.ack_delay <= Duration::from_millis(defaults::MAX_ACK_DELAY_MS),
            "--ack-delay-ms must be at most {} (an hour), got {}",
            defaults::MAX_ACK_DELAY_MS,
            self.ack_delay.as_millis()
        );
        ensure!(
            (0.0..=1.0).contains(&self.fail_ratio),
            "--fail-ratio must be between 0 and 1, got {}",
            self.fail_ratio
        );
        ensure!(
            self.silent_boats <= self.vehicles,
            "--silent-boats must be at most --vehicles ({}), got {}",
            self.vehicles,
            self.silent_boats
        );
        Ok(())
    }

    /// The vehicle ids this run simulates.
    pub fn vehicle_ids(&self) -> std::ops::Range<i64> {
        self.start_id..self.start_id + i64::from(self.vehicles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        SimConfig::default().validate().unwrap();
        assert_eq!(SimConfig::default().vehicle_ids(), 1..6);
    }

    #[test]
    fn home_parses_lat_lon() {
        let p: GeoPoint = "-6.2088, 106.8456".parse().unwrap();
        assert_eq!(
            p,
            GeoPoint {
                lat: -6.2088,
                lon: 106.8456
            }
        );
        assert!("-6.2".parse::<GeoPoint>().is_err());
        assert!("x,1".parse::<GeoPoint>().is_err());
        assert!("91,1".parse::<GeoPoint>().is_err());
    }

    #[test]
    fn validate_names_the_bad_setting() {
        let bad = SimConfig {
            qos: 2,
            ..SimConfig::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("--qos"));
        let bad = SimConfig {
            rate: 0.0,
            sensor_rate: 0.0,
            raw_rate: 0.0,
            ..SimConfig::default()
        };
        assert!(bad.validate().is_err());
        for (bad, flag) in [
            (
                SimConfig {
                    fail_ratio: f64::NAN,
                    ..SimConfig::default()
                },
                "--fail-ratio",
            ),
            (
                SimConfig {
                    silent_boats: 6,
                    ..SimConfig::default()
                },
                "--silent-boats",
            ),
            (
                SimConfig {
                    ack_delay: Duration::from_secs(3601),
                    ..SimConfig::default()
                },
                "--ack-delay-ms",
            ),
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(flag), "{e}");
        }
    }
}
