//! [`Fleet`]: the message generator. Pure and deterministic: no I/O, no clock; given the
//! same [`SimConfig`] (and seed) it yields the same [`SimMessage`]s in the same order, as long
//! as no boat is commanded (a command changes that boat's story from then on).
//!
//! Every boat has three streams (vehicle_log, sensor ticks, periodic raw_log) that tick on a
//! shared simulation clock; a binary heap merges them in time order. Event raw logs (GPS fix,
//! mode changes, low battery, warnings) are emitted on the boat's next tick after they happen.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use seano_wire::{format_time, MessageType, SensorPayload, Topic};
use serde_json::Value;

use crate::bad::{self, BadKind, BadSource};
use crate::boat::{Boat, VehicleNoise};
use crate::config::SimConfig;

/// One MQTT message to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct SimMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    /// The telemetry type; `None` for a malformed message.
    pub kind: Option<MessageType>,
    /// Which kind of malformed message this is; `None` for a good one.
    pub bad: Option<BadKind>,
    /// The boat that produced it (for a [`BadKind::NonIntegerVehicleId`] message, the id that
    /// the topic garbles).
    pub vehicle_id: i64,
    /// When to publish it, from the start of the run (simulation time).
    pub at: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stream {
    Vehicle,
    Sensor,
    Raw,
}

/// A tick of one stream of one boat: (time in ns, boat index, stream, tick number).
type Tick = Reverse<(u64, usize, Stream, u64)>;

/// A good message before the bad-message draw.
struct Pending {
    boat: usize,
    kind: MessageType,
    topic: String,
    payload: Vec<u8>,
    at_ns: u64,
}

/// The simulated fleet; see the module docs.
pub struct Fleet {
    prefix: String,
    timestamps: bool,
    origin: DateTime<Utc>,
    seed: u64,
    boats: Vec<Boat>,
    /// Tick period in ns and phase of boat 0, per stream; `None` when the stream is off.
    periods: [Option<f64>; 3],
    ticks: BinaryHeap<Tick>,
    ready: VecDeque<Pending>,
    bad_rng: ChaCha8Rng,
    bad_ratio: f64,
    bad_kinds: Vec<BadKind>,
    oversize_bytes: usize,
    emitted: u64,
    limit: Option<u64>,
}

impl Fleet {
    /// Validates `config` and places the boats. The seed is `config.seed` or a random one
    /// ([`Fleet::seed`] tells which).
    pub fn new(config: &SimConfig) -> anyhow::Result<Fleet> {
        config.validate()?;
        let seed = config.seed.unwrap_or_else(random_seed);
        let boats: Vec<Boat> = config
            .vehicle_ids()
            .map(|id| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(id as u64);
                Boat::new(id, rng, config.home, config.radius_m)
            })
            .collect();
        let period = |hz: f64| (hz > 0.0).then(|| 1e9 / hz);
        let periods = [
            period(config.rate),
            period(config.sensor_rate),
            period(config.raw_rate),
        ];
        let mut bad_rng = ChaCha8Rng::seed_from_u64(seed);
        bad_rng.set_stream(u64::MAX);
        let mut fleet = Fleet {
            prefix: config.prefix.clone(),
            timestamps: config.timestamps,
            origin: config.start_time.unwrap_or_else(Utc::now),
            seed,
            boats,
            periods,
            ticks: BinaryHeap::new(),
            ready: VecDeque::new(),
            bad_rng,
            bad_ratio: config.bad_ratio,
            bad_kinds: config.bad_kinds.clone(),
            oversize_bytes: config.bad_oversize_bytes,
            emitted: 0,
            limit: config.count,
        };
        for boat in 0..fleet.boats.len() {
            for stream in [Stream::Vehicle, Stream::Sensor, Stream::Raw] {
                if let Some(t) = fleet.tick_time(boat, stream, 0) {
                    fleet.ticks.push(Reverse((t, boat, stream, 0)));
                }
            }
        }
        Ok(fleet)
    }

    /// The seed this fleet runs on; pass it as `--seed` to replay the run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The time of simulation second 0, from which payload timestamps count.
    pub fn origin(&self) -> DateTime<Utc> {
        self.origin
    }

    /// Moves simulation second 0 (and so every later timestamp) to `origin`.
    pub fn set_origin(&mut self, origin: DateTime<Utc>) {
        self.origin = origin;
    }

    /// The simulated vehicle ids, in order.
    pub fn vehicle_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.boats.iter().map(|b| b.id)
    }

    /// The sensor ids of one vehicle (`vehicle_id * 10 + k`, k = 1..=2..4).
    pub fn sensor_ids(&self, vehicle_id: i64) -> Vec<i64> {
        self.boats
            .iter()
            .find(|b| b.id == vehicle_id)
            .map(|b| b.sensors.iter().map(|s| s.id).collect())
            .unwrap_or_default()
    }

    /// Messages per second the fleet publishes on schedule, events aside.
    pub fn nominal_rate(&self) -> f64 {
        let hz = |p: Option<f64>| p.map_or(0.0, |p| 1e9 / p);
        self.boats
            .iter()
            .map(|b| {
                hz(self.periods[0])
                    + hz(self.periods[1]) * b.sensors.len() as f64
                    + hz(self.periods[2])
            })
            .sum()
    }

    /// When the next message is due (simulation time), without making it: a boat's state
    /// (a command it obeyed) may still change until then. `None` once `config.count` is reached.
    pub fn next_due(&self) -> Option<Duration> {
        if self.limit.is_some_and(|limit| self.emitted >= limit) {
            return None;
        }
        let ns = match self.ready.front() {
            Some(p) => p.at_ns,
            // unwrap: validate() guarantees at least one stream, and every pop pushes a tick.
            None => self.ticks.peek().expect("a stream is on").0 .0,
        };
        Some(Duration::from_nanos(ns))
    }

    /// The boat with this vehicle id.
    pub(crate) fn boat_mut(&mut self, vehicle_id: i64) -> Option<&mut Boat> {
        self.boats.iter_mut().find(|b| b.id == vehicle_id)
    }

    /// How many messages [`Fleet::next_message`] has returned.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// The next message in time order, or `None` once `config.count` messages were returned
    /// (never, without a count). A fraction `bad_ratio` of them is replaced by malformed ones;
    /// the boats' own story does not depend on which.
    pub fn next_message(&mut self) -> Option<SimMessage> {
        if self.limit.is_some_and(|limit| self.emitted >= limit) {
            return None;
        }
        let good = self.next_good();
        self.emitted += 1;
        let draw: f64 = self.bad_rng.random();
        let message = if draw < self.bad_ratio {
            self.make_bad(good)
        } else {
            SimMessage {
                topic: good.topic,
                payload: good.payload,
                kind: Some(good.kind),
                bad: None,
                vehicle_id: self.boats[good.boat].id,
                at: Duration::from_nanos(good.at_ns),
            }
        };
        Some(message)
    }

    fn tick_time(&self, boat: usize, stream: Stream, k: u64) -> Option<u64> {
        let period = self.periods[stream as usize]?;
        // Spread the boats over the period so the load is smooth.
        let phase = period * boat as f64 / self.boats.len() as f64;
        Some((phase + period * k as f64).round() as u64)
    }

    fn next_good(&mut self) -> Pending {
        loop {
            if let Some(p) = self.ready.pop_front() {
                return p;
            }
            // unwrap: validate() guarantees at least one stream, and every pop pushes a tick.
            let Reverse((t_ns, idx, stream, k)) = self.ticks.pop().expect("a stream is on");
            if let Some(next) = self.tick_time(idx, stream, k + 1) {
                self.ticks.push(Reverse((next, idx, stream, k + 1)));
            }
            self.tick(idx, stream, t_ns);
        }
    }

    fn tick(&mut self, idx: usize, stream: Stream, t_ns: u64) {
        let t = t_ns as f64 / 1e9;
        let timestamp = self
            .timestamps
            .then(|| format_time(self.origin + chrono::Duration::nanoseconds(t_ns as i64)));
        let boat = &mut self.boats[idx];
        boat.advance(t);
        let id = boat.id;
        let pending = |kind, payload: Vec<u8>| Pending {
            boat: idx,
            kind,
            topic: Topic::format(&self.prefix, id, kind),
            payload,
            at_ns: t_ns,
        };
        let mut out = Vec::new();
        for line in boat.take_events() {
            out.push(pending(MessageType::RawLog, line.into_bytes()));
        }
        match stream {
            Stream::Vehicle => {
                let noise = VehicleNoise::draw(&mut boat.rng);
                let mut state = boat.vehicle_state(&noise);
                if let Some(ts) = timestamp {
                    state.extra.insert("timestamp".into(), Value::String(ts));
                }
                out.push(pending(MessageType::VehicleLog, to_json(&state)));
            }
            Stream::Sensor => {
                for sensor in &mut boat.sensors {
                    sensor.evolve(t, &mut boat.rng);
                    let payload = SensorPayload {
                        sensor_id: sensor.id,
                        data: sensor.reading(&mut boat.rng),
                        timestamp: timestamp.clone(),
                    };
                    out.push(pending(MessageType::SensorLog, to_json(&payload)));
                }
            }
            Stream::Raw => out.push(pending(
                MessageType::RawLog,
                boat.status_line().into_bytes(),
            )),
        }
        self.ready.extend(out);
    }

    fn make_bad(&mut self, good: Pending) -> SimMessage {
        let kind = self.bad_kinds[self.bad_rng.random_range(0..self.bad_kinds.len())];
        let boat = &self.boats[good.boat];
        let sensor = &boat.sensors[self.bad_rng.random_range(0..boat.sensors.len())];
        let noise = VehicleNoise::draw(&mut self.bad_rng);
        let src = BadSource {
            prefix: &self.prefix,
            vehicle_id: boat.id,
            replaced: (good.kind, &good.payload),
            state: boat.vehicle_state(&noise),
            reading: SensorPayload {
                sensor_id: sensor.id,
                data: sensor.reading(&mut self.bad_rng),
                timestamp: None,
            },
            oversize_bytes: self.oversize_bytes,
        };
        let (topic, payload) = bad::build(kind, src, &mut self.bad_rng);
        SimMessage {
            topic,
            payload,
            kind: None,
            bad: Some(kind),
            vehicle_id: boat.id,
            at: Duration::from_nanos(good.at_ns),
        }
    }
}

impl Iterator for Fleet {
    type Item = SimMessage;

    fn next(&mut self) -> Option<SimMessage> {
        self.next_message()
    }
}

fn to_json<T: serde::Serialize>(payload: &T) -> Vec<u8> {
    // unwrap: the payload types are plain structs with string-keyed maps; they always serialize.
    serde_json::to_vec(payload).expect("payload serializes")
}

fn random_seed() -> u64 {
    use rand::TryRngCore;
    rand::rngs::OsRng.try_next_u64().unwrap_or_else(|_| {
        // No OS randomness: the clock and pid are random enough for a simulator.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (u64::from(std::process::id()) << 32)
    })
}
