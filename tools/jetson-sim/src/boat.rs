//! One simulated boat: kinematics, battery, modes, sensors and the events they raise.
//!
//! The boat is integrated in sub-steps of at most [`SUBSTEP_S`] with a rate-limited heading
//! and speed, so consecutive positions always agree with the reported heading and speed.
//! All randomness comes from the boat's own ChaCha stream: its story depends on the seed,
//! its id and the tick times only, not on other boats or on the bad-message draws.

use std::f64::consts::PI;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use seano_wire::VehicleState;
use serde_json::{Map, Value};

use crate::config::GeoPoint;

/// The longest integration step, in seconds.
pub(crate) const SUBSTEP_S: f64 = 0.05;
const M_PER_DEG_LAT: f64 = 111_320.0;
/// Degrees per second.
const TURN_RATE: f64 = 25.0;
const ACCEL: f64 = 0.8;
const DECEL: f64 = 1.5;
/// Below this state of charge the boat returns to launch.
const LOW_BATTERY_SOC: f64 = 0.2;
const MEAN_MODE_CHANGE_S: f64 = 120.0;
/// After an operator's command the boat's own behaviour leaves it alone this long: no random
/// mode change, no arming by itself, so nothing undoes what was commanded.
pub(crate) const COMMAND_RESPECT_S: f64 = 300.0;
/// Within this distance of its loiter point a loitering boat stops.
const LOITER_RADIUS_M: f64 = 3.0;
/// Why ARM is refused below [`LOW_BATTERY_SOC`] (FORCE_ARM skips the check), as ArduPilot says it.
pub(crate) const LOW_BATTERY_PREARM: &str = "PreArm: battery below failsafe voltage";
const MEAN_WARNING_S: f64 = 120.0;

/// Flight modes, as ArduPilot's Rover names them. HOLD and LOITER only come from an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Manual,
    Guided,
    Auto,
    Rtl,
    /// Stop where it is.
    Hold,
    /// Stay at the point where the mode was entered.
    Loiter,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Manual => "MANUAL",
            Mode::Guided => "GUIDED",
            Mode::Auto => "AUTO",
            Mode::Rtl => "RTL",
            Mode::Hold => "HOLD",
            Mode::Loiter => "LOITER",
        }
    }
}

/// What an operator's command asks of a boat (see `crate::command` for the names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// `force` skips the pre-arm checks (FORCE_ARM).
    Arm {
        force: bool,
    },
    Disarm {
        force: bool,
    },
    SetMode(Mode),
}

pub(crate) struct Boat {
    pub id: i64,
    pub rng: ChaCha8Rng,
    /// Simulation seconds reached.
    t: f64,
    home: GeoPoint,
    m_per_deg_lon: f64,
    radius: f64,
    /// Metres east and north of home.
    x: f64,
    y: f64,
    /// Compass degrees, 0..360.
    heading: f64,
    /// Metres per second over ground.
    speed: f64,
    cruise: f64,
    waypoints: Vec<(f64, f64)>,
    wp: usize,
    guided_target: Option<(f64, f64)>,
    /// Where LOITER holds the boat (metres east and north of home).
    loiter_at: (f64, f64),
    manual_heading: f64,
    /// Degrees per second the MANUAL helmsman drifts by.
    wander_rate: f64,
    mode: Mode,
    armed: bool,
    low_battery: bool,
    /// A disarmed boat arms (after a battery swap if `low_battery`) at this time.
    arm_at: Option<f64>,
    soc: f64,
    capacity_ah: f64,
    current: f64,
    cpu_temp: f64,
    satellites: u32,
    next_mode_change: f64,
    /// Until then the boat leaves its state to the operator ([`COMMAND_RESPECT_S`]).
    command_until: f64,
    next_warning: f64,
    phase: f64,
    pub sensors: Vec<Sensor>,
    events: Vec<String>,
}

impl Boat {
    pub(crate) fn new(id: i64, mut rng: ChaCha8Rng, home: GeoPoint, radius: f64) -> Boat {
        let n_wp = rng.random_range(4..=6);
        let clockwise = rng.random_bool(0.5);
        let spin = rng.random_range(0.0..2.0 * PI);
        let waypoints: Vec<(f64, f64)> = (0..n_wp)
            .map(|i| {
                let step = 2.0 * PI / n_wp as f64;
                let mut a = spin + step * i as f64 + rng.random_range(-0.3..0.3) * step;
                if clockwise {
                    a = -a;
                }
                let r = rng.random_range(0.3..0.75) * radius;
                (r * a.cos(), r * a.sin())
            })
            .collect();
        let (x, y) = waypoints[0];
        let heading = bearing(x, y, waypoints[1].0, waypoints[1].1);
        let n_sensors = rng.random_range(2..=4);
        let sensors = (1..=n_sensors)
            .map(|k| Sensor::new(id * 10 + k, SensorKind::for_slot(k), &mut rng))
            .collect::<Vec<_>>();
        let satellites = rng.random_range(9..=14);
        let mut boat = Boat {
            id,
            t: 0.0,
            home,
            m_per_deg_lon: M_PER_DEG_LAT * home.lat.to_radians().cos(),
            radius,
            x,
            y,
            heading,
            speed: 0.0,
            cruise: rng.random_range(2.5..5.0),
            waypoints,
            wp: 1,
            guided_target: None,
            loiter_at: (x, y),
            manual_heading: heading,
            wander_rate: 0.0,
            mode: Mode::Manual,
            armed: false,
            low_battery: false,
            arm_at: Some(rng.random_range(1.0..4.0)),
            soc: rng.random_range(0.3..1.0),
            capacity_ah: rng.random_range(6.0..12.0),
            current: 0.6,
            cpu_temp: rng.random_range(44.0..50.0),
            satellites,
            next_mode_change: f64::INFINITY,
            command_until: f64::NEG_INFINITY,
            next_warning: exp(&mut rng, MEAN_WARNING_S),
            phase: rng.random_range(0.0..2.0 * PI),
            sensors,
            events: Vec::new(),
            rng,
        };
        boat.events.push(format!(
            "Jetson telemetry service started (vehicle {id}, {} sensors)",
            boat.sensors.len()
        ));
        boat.events
            .push(format!("GPS fix acquired (3D, {satellites} satellites)"));
        boat
    }

    /// Integrates up to simulation time `t` (seconds), collecting events on the way.
    pub(crate) fn advance(&mut self, t: f64) {
        if t <= self.t {
            return;
        }
        let n = ((t - self.t) / SUBSTEP_S).ceil().max(1.0);
        let dt = (t - self.t) / n;
        for _ in 0..n as usize {
            self.step(dt);
        }
        self.t = t;
    }

    /// The log lines raised since the last call, oldest first.
    pub(crate) fn take_events(&mut self) -> Vec<String> {
        std::mem::take(&mut self.events)
    }

    fn step(&mut self, dt: f64) {
        self.t += dt;
        self.update_mode();
        let (want_heading, mut want_speed) = self.guidance(dt);
        if let Some(h) = want_heading {
            let err = wrap180(h - self.heading);
            // Slow down for sharp turns, as a helmsman would; it also keeps the turning
            // circle small enough that the boat never orbits its target.
            want_speed *= (0.5 + 0.5 * err.to_radians().cos()).max(0.2);
            let turn = err.clamp(-TURN_RATE * dt, TURN_RATE * dt);
            self.heading = wrap360(self.heading + turn);
        }
        let dv = want_speed - self.speed;
        self.speed = (self.speed + dv.clamp(-DECEL * dt, ACCEL * dt)).max(0.0);
        let h = self.heading.to_radians();
        self.x += self.speed * h.sin() * dt;
        self.y += self.speed * h.cos() * dt;

        // Electronics draw ~0.6-0.9 A; propulsion grows with the square of speed.
        let base = if self.armed { 0.9 } else { 0.6 };
        self.current = base + 0.42 * self.speed * self.speed;
        self.soc = (self.soc - self.current * dt / 3600.0 / self.capacity_ah).max(0.0);
        let target_temp = 47.0 + 0.9 * self.current;
        self.cpu_temp += (target_temp - self.cpu_temp) * (dt / 60.0).min(1.0);
        if self.rng.random_bool((0.03 * dt).min(1.0)) {
            let delta: i32 = if self.rng.random_bool(0.5) { 1 } else { -1 };
            self.satellites = (self.satellites as i32 + delta).clamp(8, 15) as u32;
        }
        if self.t >= self.next_warning {
            self.warn();
            self.next_warning = self.t + exp(&mut self.rng, MEAN_WARNING_S);
        }
    }

    fn update_mode(&mut self) {
        if !self.armed {
            if self.t >= self.command_until && self.arm_at.is_some_and(|at| self.t >= at) {
                self.arm_at = None;
                if self.low_battery {
                    self.soc = 1.0;
                    self.low_battery = false;
                    self.events
                        .push(format!("Battery replaced: {:.2} V", self.voltage()));
                }
                self.armed = true;
                self.events
                    .push("Pre-arm checks passed, vehicle armed".to_owned());
                self.set_mode(Mode::Auto);
                self.next_mode_change = self.t + exp(&mut self.rng, MEAN_MODE_CHANGE_S).max(15.0);
            }
            return;
        }
        if !self.low_battery && self.soc < LOW_BATTERY_SOC {
            self.low_battery = true;
            self.events.push(format!(
                "Low battery: {:.2} V ({:.0}%), returning to launch",
                self.voltage(),
                self.soc * 100.0
            ));
            self.set_mode(Mode::Rtl);
            return;
        }
        if self.low_battery || self.t < self.next_mode_change {
            return;
        }
        self.next_mode_change = self.t + exp(&mut self.rng, MEAN_MODE_CHANGE_S).max(15.0);
        let r: f64 = self.rng.random();
        let next = match self.mode {
            Mode::Auto if r < 0.45 => Mode::Guided,
            Mode::Auto if r < 0.85 => Mode::Manual,
            Mode::Auto => Mode::Rtl,
            Mode::Guided if r < 0.6 => Mode::Auto,
            Mode::Guided if r < 0.85 => Mode::Manual,
            Mode::Guided => Mode::Rtl,
            Mode::Manual if r < 0.65 => Mode::Auto,
            Mode::Manual => Mode::Guided,
            Mode::Rtl if r < 0.5 => Mode::Auto,
            Mode::Rtl => Mode::Rtl,
            Mode::Hold | Mode::Loiter if r < 0.7 => Mode::Auto,
            Mode::Hold | Mode::Loiter => Mode::Manual,
        };
        if next == Mode::Rtl && self.mode != Mode::Rtl {
            self.events.push("RTL requested by operator".to_owned());
        }
        self.set_mode(next);
    }

    fn set_mode(&mut self, mode: Mode) {
        if mode == self.mode {
            return;
        }
        self.events.push(format!(
            "Mode changed from {} to {}",
            self.mode.as_str(),
            mode.as_str()
        ));
        match mode {
            Mode::Guided => {
                let a = self.rng.random_range(0.0..2.0 * PI);
                let r = self.rng.random_range(0.2..0.7) * self.radius;
                let (x, y) = (r * a.cos(), r * a.sin());
                let (lat, lon) = self.to_geo(x, y);
                self.events
                    .push(format!("Guided target set: {lat:.6}, {lon:.6}"));
                self.guided_target = Some((x, y));
            }
            Mode::Manual => {
                self.manual_heading = self.heading;
                self.wander_rate = 0.0;
            }
            Mode::Auto => {
                // Resume the loop at the nearest waypoint, or the one after if already there.
                self.wp = self.nearest_waypoint();
                let (x, y) = self.waypoints[self.wp];
                if dist(self.x, self.y, x, y) < 12.0 {
                    self.wp = (self.wp + 1) % self.waypoints.len();
                }
            }
            Mode::Loiter => self.loiter_at = (self.x, self.y),
            Mode::Rtl | Mode::Hold => {}
        }
        self.mode = mode;
    }

    /// Carries out an operator's command: `Ok` with the boat's confirmation, or `Err` with its
    /// reason for refusing (then nothing changed). Afterwards the boat's own behaviour leaves
    /// the commanded state alone for [`COMMAND_RESPECT_S`]; after DISARM it waits for ARM.
    pub(crate) fn obey(&mut self, action: Action) -> Result<String, String> {
        let confirmation = match action {
            Action::Arm { .. } if self.armed => "Already armed".to_owned(),
            Action::Arm { force } => {
                if !force && self.soc < LOW_BATTERY_SOC {
                    self.events.push(LOW_BATTERY_PREARM.to_owned());
                    return Err(LOW_BATTERY_PREARM.to_owned());
                }
                self.armed = true;
                self.arm_at = None;
                self.events.push(if force {
                    "Vehicle armed, pre-arm checks skipped".to_owned()
                } else {
                    "Pre-arm checks passed, vehicle armed".to_owned()
                });
                "Armed".to_owned()
            }
            Action::Disarm { force } => {
                self.arm_at = None;
                if self.armed {
                    self.armed = false;
                    self.events.push(if force {
                        "Vehicle disarmed (forced) by operator".to_owned()
                    } else {
                        "Vehicle disarmed by operator".to_owned()
                    });
                    "Disarmed".to_owned()
                } else {
                    "Already disarmed".to_owned()
                }
            }
            Action::SetMode(Mode::Rtl) => {
                if self.mode != Mode::Rtl {
                    self.events.push("RTL requested by operator".to_owned());
                }
                self.set_mode(Mode::Rtl);
                "Returning to launch".to_owned()
            }
            Action::SetMode(mode) => {
                self.set_mode(mode);
                format!("Mode {}", mode.as_str())
            }
        };
        self.command_until = self.t + COMMAND_RESPECT_S;
        self.next_mode_change = self
            .next_mode_change
            .max(self.command_until + exp(&mut self.rng, MEAN_MODE_CHANGE_S));
        Ok(confirmation)
    }

    /// What the autopilot (or helmsman) steers for: heading (None: keep) and speed.
    fn guidance(&mut self, dt: f64) -> (Option<f64>, f64) {
        if !self.armed {
            return (None, 0.0);
        }
        let cruise = self.cruise * (0.9 + 0.1 * (self.t / 23.0 + self.phase).sin());
        match self.mode {
            Mode::Auto => {
                let (tx, ty) = self.waypoints[self.wp];
                if dist(self.x, self.y, tx, ty) < 12.0 {
                    let reached = self.wp + 1;
                    self.wp = (self.wp + 1) % self.waypoints.len();
                    self.events.push(format!(
                        "Waypoint {reached} reached, heading to waypoint {}",
                        self.wp + 1
                    ));
                }
                let (tx, ty) = self.waypoints[self.wp];
                (Some(bearing(self.x, self.y, tx, ty)), cruise)
            }
            Mode::Guided => {
                let (tx, ty) = self.guided_target.unwrap_or((0.0, 0.0));
                if dist(self.x, self.y, tx, ty) < 10.0 {
                    self.events
                        .push("Guided target reached, resuming mission".to_owned());
                    self.set_mode(Mode::Auto);
                    return self.guidance(dt);
                }
                (Some(bearing(self.x, self.y, tx, ty)), cruise)
            }
            Mode::Manual => {
                self.wander_rate +=
                    -0.2 * self.wander_rate * dt + 4.0 * dt.sqrt() * gauss(&mut self.rng);
                self.manual_heading = wrap360(self.manual_heading + self.wander_rate * dt);
                if self.distance_home() > 0.7 * self.radius {
                    self.manual_heading = bearing(self.x, self.y, 0.0, 0.0);
                    self.wander_rate = 0.0;
                }
                (Some(self.manual_heading), 0.7 * cruise)
            }
            Mode::Rtl => {
                let d = self.distance_home();
                if d < 5.0 {
                    self.events.push("Arrived home, disarming".to_owned());
                    self.armed = false;
                    self.set_mode(Mode::Manual);
                    let wait = if self.low_battery {
                        self.rng.random_range(20.0..60.0)
                    } else {
                        self.rng.random_range(10.0..30.0)
                    };
                    // Sent home by an operator, it waits for their ARM.
                    self.arm_at = (self.t >= self.command_until).then_some(self.t + wait);
                    return (None, 0.0);
                }
                (Some(bearing(self.x, self.y, 0.0, 0.0)), cruise.min(0.5 * d))
            }
            Mode::Hold => (None, 0.0),
            Mode::Loiter => {
                let (tx, ty) = self.loiter_at;
                let d = dist(self.x, self.y, tx, ty);
                if d < LOITER_RADIUS_M {
                    (None, 0.0)
                } else {
                    (
                        Some(bearing(self.x, self.y, tx, ty)),
                        (0.5 * cruise).min(0.5 * d),
                    )
                }
            }
        }
    }

    fn warn(&mut self) {
        let line = match self.rng.random_range(0..7) {
            0 => format!(
                "WARNING: Motor temperature high ({:.1} C)",
                self.cpu_temp + 18.0
            ),
            1 => format!(
                "WARNING: GPS HDOP {:.1}, position accuracy degraded",
                self.rng.random_range(1.8..3.5)
            ),
            2 => format!(
                "WARNING: Weak telemetry link (RSSI {} dBm)",
                self.rssi_clean().round() as i32 - 6
            ),
            3 => {
                let k = self.rng.random_range(0..self.sensors.len());
                format!(
                    "ERROR: Sensor {} read timeout, retrying",
                    self.sensors[k].id
                )
            }
            4 => format!(
                "ERROR: Camera pipeline stalled for {} ms, frame dropped",
                self.rng.random_range(150..900)
            ),
            5 => format!(
                "Obstacle detected {:.0} m ahead, adjusting course",
                self.rng.random_range(8.0..40.0)
            ),
            _ => "WARNING: Bilge water level high, pump activated".to_owned(),
        };
        self.events.push(line);
    }

    /// The boat's `vehicle_log`, with measurement noise `noise` (see [`VehicleNoise::draw`]).
    pub(crate) fn vehicle_state(&self, noise: &VehicleNoise) -> VehicleState {
        let n = &noise.0;
        let (lat, lon) = self.to_geo(self.x, self.y);
        let voltage = (self.voltage() + 0.015 * n[0]).clamp(10.0, 13.0);
        let current = (self.current + 0.08 * n[1]).max(0.0);
        let rssi = (self.rssi_clean() + 2.0 * n[2])
            .round()
            .clamp(-100.0, -20.0) as i32;
        let t = self.t;
        let roll = 3.0 * (2.0 * PI * t / 6.5 + self.phase).sin() + 0.5 * n[3] + 0.2 * self.speed;
        let pitch = 1.5 * (2.0 * PI * t / 4.1 + self.phase).sin() + 0.3 * n[4] + 0.25 * self.speed;
        let heading = round_heading(self.heading);
        let mut extra = Map::new();
        extra.insert("satellites".into(), Value::from(self.satellites));
        extra.insert(
            "battery_remaining".into(),
            Value::from((self.soc * 100.0).round() as i64),
        );
        VehicleState {
            battery_voltage: Some(round(voltage, 2)),
            battery_current: Some(round(current, 2)),
            rssi: Some(rssi),
            mode: Some(self.mode.as_str().to_owned()),
            latitude: Some(round(lat, 7)),
            longitude: Some(round(lon, 7)),
            altitude: Some(round(0.3 * n[5], 2)),
            heading: Some(heading),
            speed: Some(round(self.speed, 2)),
            armed: Some(self.armed),
            guided: Some(self.armed && self.mode != Mode::Manual),
            system_status: Some(self.system_status().to_owned()),
            gps_fix: Some(3),
            roll: Some(round(roll, 1)),
            pitch: Some(round(pitch, 1)),
            yaw: Some(round(wrap180(heading), 1)),
            temperature: Some(round(self.cpu_temp + 0.3 * n[6], 1)),
            extra,
        }
    }

    /// A periodic status line (`--raw-rate`).
    pub(crate) fn status_line(&self) -> String {
        format!(
            "Status: {} {}, battery {:.2} V ({:.0}%), {} satellites, {:.0} m from home, heading {:.0}",
            self.mode.as_str(),
            if self.armed { "armed" } else { "disarmed" },
            self.voltage(),
            self.soc * 100.0,
            self.satellites,
            self.distance_home(),
            self.heading
        )
    }

    fn system_status(&self) -> &'static str {
        if !self.armed {
            "STANDBY"
        } else if self.low_battery {
            "CRITICAL"
        } else {
            "ACTIVE"
        }
    }

    /// Open-circuit voltage of a 3S pack (12.6 V full, 10.5 V empty) less the sag under load.
    fn voltage(&self) -> f64 {
        let s = self.soc;
        10.5 + 1.6 * s + 0.5 * s * s * s - 0.025 * self.current
    }

    /// -30 dBm at home, -90 dBm at `radius`, log-distance in between.
    fn rssi_clean(&self) -> f64 {
        -30.0 - 60.0 * (1.0 + 9.0 * self.distance_home() / self.radius).log10()
    }

    /// Sets the battery's state of charge (0..=1), for tests.
    #[cfg(test)]
    pub(crate) fn set_charge(&mut self, soc: f64) {
        self.soc = soc;
    }

    fn distance_home(&self) -> f64 {
        dist(self.x, self.y, 0.0, 0.0)
    }

    fn nearest_waypoint(&self) -> usize {
        let d = |&(x, y): &(f64, f64)| dist(self.x, self.y, x, y);
        (0..self.waypoints.len())
            .min_by(|&a, &b| d(&self.waypoints[a]).total_cmp(&d(&self.waypoints[b])))
            .unwrap_or(0)
    }

    fn to_geo(&self, x: f64, y: f64) -> (f64, f64) {
        (
            self.home.lat + y / M_PER_DEG_LAT,
            self.home.lon + x / self.m_per_deg_lon,
        )
    }
}

/// The measurement noise of one `vehicle_log`, drawn apart from the state so that a
/// malformed copy can take its noise from another stream.
pub(crate) struct VehicleNoise([f64; 7]);

impl VehicleNoise {
    pub(crate) fn draw(rng: &mut ChaCha8Rng) -> VehicleNoise {
        VehicleNoise(std::array::from_fn(|_| gauss(rng)))
    }
}

/// Which instrument sits in a sensor slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SensorKind {
    /// Air temperature, humidity, pressure.
    Environment,
    /// pH, turbidity, dissolved oxygen, water temperature.
    WaterQuality,
    /// Temperature and humidity inside the hull.
    Hull,
}

impl SensorKind {
    fn for_slot(k: i64) -> SensorKind {
        match k {
            1 => SensorKind::Environment,
            3 => SensorKind::Hull,
            _ => SensorKind::WaterQuality,
        }
    }

    /// (name, mean, standard deviation, correlation time in s, decimals, min, max)
    fn fields(self) -> &'static [FieldSpec] {
        match self {
            SensorKind::Environment => &[
                ("temperature", 29.5, 1.2, 600.0, 2, -10.0, 60.0),
                ("humidity", 78.0, 6.0, 900.0, 1, 0.0, 100.0),
                ("pressure", 1010.5, 1.5, 1800.0, 1, 950.0, 1050.0),
            ],
            SensorKind::WaterQuality => &[
                ("ph", 8.05, 0.12, 900.0, 2, 0.0, 14.0),
                ("turbidity_ntu", 8.0, 3.5, 300.0, 2, 0.1, 1000.0),
                ("dissolved_oxygen_mg_l", 6.6, 0.5, 600.0, 2, 0.0, 20.0),
                ("water_temperature", 29.8, 0.4, 1200.0, 2, 0.0, 40.0),
            ],
            SensorKind::Hull => &[
                ("temperature", 34.0, 2.5, 300.0, 2, -10.0, 80.0),
                ("humidity", 62.0, 5.0, 600.0, 1, 0.0, 100.0),
            ],
        }
    }
}

type FieldSpec = (&'static str, f64, f64, f64, i32, f64, f64);

/// One sensor: each field is a mean-reverting random walk plus measurement noise.
pub(crate) struct Sensor {
    pub id: i64,
    pub kind: SensorKind,
    values: Vec<f64>,
    t: f64,
}

impl Sensor {
    fn new(id: i64, kind: SensorKind, rng: &mut ChaCha8Rng) -> Sensor {
        let values = kind
            .fields()
            .iter()
            .map(|&(_, mean, sd, ..)| mean + sd * gauss(rng))
            .collect();
        Sensor {
            id,
            kind,
            values,
            t: 0.0,
        }
    }

    /// Moves the underlying values on to time `t` (an exact Ornstein-Uhlenbeck step).
    pub(crate) fn evolve(&mut self, t: f64, rng: &mut ChaCha8Rng) {
        let dt = t - self.t;
        if dt <= 0.0 {
            return;
        }
        self.t = t;
        for (v, &(_, mean, sd, tau, ..)) in self.values.iter_mut().zip(self.kind.fields()) {
            let decay = (-dt / tau).exp();
            *v = mean + (*v - mean) * decay + sd * (1.0 - decay * decay).sqrt() * gauss(rng);
        }
    }

    /// One reading of every field, with measurement noise drawn from `rng`.
    pub(crate) fn reading(&self, rng: &mut ChaCha8Rng) -> Map<String, Value> {
        self.kind
            .fields()
            .iter()
            .zip(&self.values)
            .map(|(&(name, _, sd, _, decimals, min, max), v)| {
                let noisy = (v + 0.05 * sd * gauss(rng)).clamp(min, max);
                (name.to_owned(), Value::from(round(noisy, decimals)))
            })
            .collect()
    }
}

/// A standard normal draw (Box-Muller).
pub(crate) fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

/// An exponential draw with the given mean.
fn exp(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    -mean * u.ln()
}

fn dist(x0: f64, y0: f64, x1: f64, y1: f64) -> f64 {
    (x1 - x0).hypot(y1 - y0)
}

/// Compass bearing (0 = north, clockwise) from (x0, y0) to (x1, y1), in degrees.
fn bearing(x0: f64, y0: f64, x1: f64, y1: f64) -> f64 {
    wrap360((x1 - x0).atan2(y1 - y0).to_degrees())
}

pub(crate) fn wrap360(deg: f64) -> f64 {
    let d = deg.rem_euclid(360.0);
    if d >= 360.0 {
        0.0
    } else {
        d
    }
}

pub(crate) fn wrap180(deg: f64) -> f64 {
    let d = wrap360(deg);
    if d > 180.0 {
        d - 360.0
    } else {
        d
    }
}

fn round_heading(deg: f64) -> f64 {
    wrap360(round(deg, 1))
}

fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn boat(seed: u64) -> Boat {
        let home = GeoPoint {
            lat: -6.2088,
            lon: 106.8456,
        };
        Boat::new(3, ChaCha8Rng::seed_from_u64(seed), home, 500.0)
    }

    #[test]
    fn boat_boots_disarmed_then_arms_in_auto() {
        let mut b = boat(1);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let s = b.vehicle_state(&VehicleNoise::draw(&mut rng));
        assert_eq!(s.armed, Some(false));
        assert_eq!(s.system_status.as_deref(), Some("STANDBY"));
        let boot = b.take_events();
        assert!(boot[1].starts_with("GPS fix acquired (3D, "), "{boot:?}");
        b.advance(5.0);
        let s = b.vehicle_state(&VehicleNoise::draw(&mut rng));
        assert_eq!(s.armed, Some(true));
        assert_eq!(s.mode.as_deref(), Some("AUTO"));
        assert_eq!(s.guided, Some(true));
        let events = b.take_events();
        assert!(events.contains(&"Mode changed from MANUAL to AUTO".to_owned()));
    }

    #[test]
    fn low_battery_returns_home_disarms_and_swaps_the_battery() {
        let mut b = boat(2);
        b.soc = 0.21;
        b.capacity_ah = 0.5; // drains in minutes
        let mut seen = Vec::new();
        for s in 1..=3600 {
            b.advance(s as f64);
            seen.extend(b.take_events());
            if seen.iter().any(|e| e.starts_with("Battery replaced")) {
                break;
            }
        }
        let pos = |p: &str| seen.iter().position(|e| e.starts_with(p)).unwrap();
        assert!(pos("Low battery") < pos("Arrived home"));
        assert!(pos("Arrived home") < pos("Battery replaced"));
        assert!(b.soc > 0.9);
    }

    #[test]
    fn rtl_heads_home_and_waits_there_for_the_operator() {
        let mut b = boat(4);
        b.advance(60.0);
        let far = b.distance_home();
        assert!(far > 50.0, "{far}");
        assert_eq!(
            b.obey(Action::SetMode(Mode::Rtl)).unwrap(),
            "Returning to launch"
        );
        b.advance(70.0);
        let home = bearing(b.x, b.y, 0.0, 0.0);
        assert!(wrap180(b.heading - home).abs() < 20.0, "heading for home");
        assert!(b.distance_home() < far - 20.0, "closer to home");
        b.advance(400.0);
        assert!(b.distance_home() < 5.0 && !b.armed, "arrived and disarmed");
        assert_eq!(b.arm_at, None, "sent home by an operator, it waits for ARM");
        let events = b.take_events();
        assert!(events.contains(&"RTL requested by operator".to_owned()));
    }

    #[test]
    fn hold_stops_and_loiter_stays_near_where_it_began() {
        let mut b = boat(5);
        b.advance(60.0);
        b.obey(Action::SetMode(Mode::Hold)).unwrap();
        b.advance(75.0);
        assert_eq!(b.speed, 0.0);
        b.obey(Action::SetMode(Mode::Auto)).unwrap();
        b.advance(120.0);
        b.obey(Action::SetMode(Mode::Loiter)).unwrap();
        let start = (b.x, b.y);
        for s in 121..300 {
            b.advance(s as f64);
            assert!(dist(b.x, b.y, start.0, start.1) < 40.0, "strays at {s} s");
        }
        assert!(b.speed < 0.5);
    }

    #[test]
    fn the_boats_own_behaviour_leaves_a_commanded_state_alone() {
        let mut b = boat(6);
        b.advance(10.0);
        b.obey(Action::SetMode(Mode::Manual)).unwrap();
        // Without the command, a mode change every 120 s on average.
        for s in 11..(10 + COMMAND_RESPECT_S as u64) {
            b.advance(s as f64);
            assert_eq!(b.mode, Mode::Manual, "at {s} s");
        }
        let mut b = boat(6);
        b.obey(Action::Disarm { force: false }).unwrap();
        b.advance(3.0 * COMMAND_RESPECT_S);
        assert!(!b.armed, "after DISARM it waits for ARM");
        assert_eq!(b.obey(Action::Arm { force: false }).unwrap(), "Armed");
        assert!(b.armed);
    }

    #[test]
    fn angles_wrap_into_range() {
        assert_eq!(wrap360(-90.0), 270.0);
        assert_eq!(wrap360(360.0), 0.0);
        assert_eq!(wrap180(270.0), -90.0);
        assert_eq!(round_heading(359.97), 0.0);
        assert!((bearing(0.0, 0.0, 1.0, 0.0) - 90.0).abs() < 1e-9);
    }
}
