//! The generator against the gateway's own decoder: what the simulator calls good decodes,
//! what it calls bad is rejected for the reason it claims, and the values are realistic.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use jetson_sim::{BadKind, Fleet, SimConfig, SimMessage};
use seano_wire::{decode, parse_timestamp, MessageType, Telemetry, VehicleKey, VehicleState};

const MAX_PAYLOAD: usize = 262_144;
const EARTH_M_PER_DEG: f64 = 111_320.0;

fn config(seed: u64) -> SimConfig {
    SimConfig {
        seed: Some(seed),
        ..SimConfig::default()
    }
}

fn take(config: &SimConfig, n: usize) -> Vec<SimMessage> {
    Fleet::new(config).unwrap().take(n).collect()
}

#[test]
fn every_good_message_decodes_and_every_bad_one_is_rejected_for_its_reason() {
    let mut bad_seen: HashMap<BadKind, u64> = HashMap::new();
    let mut kinds_seen: HashMap<MessageType, u64> = HashMap::new();
    for seed in 0..50u64 {
        let config = SimConfig {
            vehicles: 1 + (seed % 7) as u32,
            start_id: 1 + (seed % 3) as i64 * 100,
            raw_rate: if seed % 2 == 0 { 0.0 } else { 0.5 },
            bad_ratio: 0.2,
            bad_kinds: BadKind::ALL.to_vec(),
            timestamps: seed % 3 != 0,
            ..config(seed)
        };
        let fleet = Fleet::new(&config).unwrap();
        let ids: Vec<i64> = fleet.vehicle_ids().collect();
        let sensors: HashMap<i64, Vec<i64>> =
            ids.iter().map(|&id| (id, fleet.sensor_ids(id))).collect();
        for (i, m) in fleet.take(500).enumerate() {
            let what = format!("seed {seed} message {i}: {} {:?}", m.topic, m.bad);
            let outcome = decode("seano", &m.topic, &m.payload, MAX_PAYLOAD);
            match (m.kind, m.bad) {
                (Some(kind), None) => {
                    let d = outcome.unwrap_or_else(|r| panic!("{what}: rejected {r:?}"));
                    *kinds_seen.entry(kind).or_default() += 1;
                    assert_eq!(d.body.kind(), kind, "{what}");
                    assert_eq!(d.vehicle, VehicleKey::Id(m.vehicle_id), "{what}");
                    assert!(ids.contains(&m.vehicle_id), "{what}");
                    let stamped = kind != MessageType::RawLog && config.timestamps;
                    assert_eq!(d.timestamp.is_some(), stamped, "{what}");
                    if let Telemetry::SensorLog { sensor, data } = &d.body {
                        let sensor_id = sensor.id().expect("the simulator names sensors by id");
                        assert!(sensors[&m.vehicle_id].contains(&sensor_id), "{what}");
                        assert!(!data.is_empty(), "{what}");
                    }
                }
                (None, Some(bad)) => {
                    *bad_seen.entry(bad).or_default() += 1;
                    let r = outcome.expect_err(&what);
                    assert_eq!(r.reason, bad.expected_reason(), "{what}: {}", r.detail);
                }
                other => panic!("{what}: kind and bad are {other:?}"),
            }
        }
    }
    for kind in BadKind::ALL {
        assert!(
            bad_seen.get(&kind).copied().unwrap_or(0) > 50,
            "{kind}: {bad_seen:?}"
        );
    }
    for kind in MessageType::TELEMETRY {
        assert!(
            kinds_seen.get(&kind).copied().unwrap_or(0) > 100,
            "{kind}: {kinds_seen:?}"
        );
    }
}

#[test]
fn good_payloads_are_exactly_what_the_gateway_stores() {
    for m in take(&config(3), 300) {
        let value: serde_json::Value = match m.kind {
            Some(MessageType::VehicleLog) => serde_json::from_slice(&m.payload).unwrap(),
            _ => continue,
        };
        let d = decode("seano", &m.topic, &m.payload, MAX_PAYLOAD).unwrap();
        let Telemetry::VehicleLog(state) = d.body else {
            panic!("not a vehicle_log")
        };
        // Everything but the timestamp lands in typed columns or extra, unchanged.
        let mut sent = value.as_object().unwrap().clone();
        sent.remove("timestamp");
        assert_eq!(
            serde_json::to_value(&*state).unwrap(),
            serde_json::Value::Object(sent)
        );
        assert!(state.extra.contains_key("satellites"));
    }
}

#[test]
fn same_seed_gives_the_same_payloads_and_another_seed_does_not() {
    let fixed = Utc.with_ymd_and_hms(2025, 10, 18, 16, 30, 0).unwrap();
    let stamped = SimConfig {
        start_time: Some(fixed),
        bad_ratio: 0.05,
        ..config(11)
    };
    assert_eq!(take(&stamped, 2000), take(&stamped, 2000));

    let unstamped = SimConfig {
        timestamps: false,
        bad_ratio: 0.05,
        ..config(11)
    };
    assert_eq!(take(&unstamped, 2000), take(&unstamped, 2000));
    let other = SimConfig {
        seed: Some(12),
        ..unstamped.clone()
    };
    assert_ne!(take(&unstamped, 2000), take(&other, 2000));
}

#[test]
fn timestamps_follow_the_simulation_clock() {
    let fixed = Utc.with_ymd_and_hms(2025, 10, 18, 16, 30, 0).unwrap();
    let c = SimConfig {
        start_time: Some(fixed),
        ..config(5)
    };
    let mut last = Default::default();
    for m in take(&c, 500) {
        assert!(m.at >= last, "messages come in time order");
        last = m.at;
        if m.kind == Some(MessageType::RawLog) {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        let ts = parse_timestamp(v["timestamp"].as_str().unwrap()).unwrap();
        let expected = fixed + chrono::Duration::from_std(m.at).unwrap();
        assert!(
            (ts - expected).num_milliseconds().abs() <= 1,
            "{ts} vs {expected}"
        );
    }
}

#[test]
fn malformed_draws_do_not_change_the_good_messages() {
    let clean = SimConfig {
        timestamps: false,
        ..config(21)
    };
    let dirty = SimConfig {
        bad_ratio: 0.3,
        ..clean.clone()
    };
    let (a, b) = (take(&clean, 3000), take(&dirty, 3000));
    let mut compared = 0;
    for (x, y) in a.iter().zip(&b) {
        if y.bad.is_none() {
            assert_eq!(x, y);
            compared += 1;
        }
    }
    assert!(compared > 1500 && compared < 2500, "{compared}");
}

#[test]
fn count_is_exact_with_and_without_bad_messages() {
    for (count, bad_ratio) in [(0, 0.0), (1, 0.0), (7, 0.5), (1000, 0.01), (2500, 1.0)] {
        let c = SimConfig {
            count: Some(count),
            bad_ratio,
            ..config(count)
        };
        let mut fleet = Fleet::new(&c).unwrap();
        let n = fleet.by_ref().count() as u64;
        assert_eq!(n, count);
        assert_eq!(fleet.emitted(), count);
        assert!(fleet.next_message().is_none(), "stays exhausted");
    }
}

#[test]
fn oversized_messages_have_the_configured_size() {
    let c = SimConfig {
        bad_ratio: 1.0,
        bad_kinds: vec![BadKind::OversizedPayload],
        ..config(1)
    };
    for m in take(&c, 5) {
        assert_eq!(m.payload.len(), 300_000);
        assert!(m.payload.len() > MAX_PAYLOAD);
    }
}

/// Per vehicle, its states in order with their simulation time in seconds.
type Tracks = HashMap<i64, Vec<(f64, VehicleState)>>;

/// The first `secs` simulated seconds: vehicle states per vehicle, in order, with their
/// simulation time in seconds, and the raw log lines. Checks the sensor values on the way.
fn states(c: &SimConfig, secs: f64) -> (Tracks, Vec<String>) {
    let mut by_vehicle = Tracks::new();
    let mut logs = Vec::new();
    let fleet = Fleet::new(c).unwrap();
    for m in fleet.take_while(|m| m.at.as_secs_f64() < secs) {
        match decode("seano", &m.topic, &m.payload, MAX_PAYLOAD)
            .unwrap()
            .body
        {
            Telemetry::VehicleLog(s) => by_vehicle
                .entry(m.vehicle_id)
                .or_default()
                .push((m.at.as_secs_f64(), *s)),
            Telemetry::RawLog(line) => logs.push(line),
            Telemetry::SensorLog { data, .. } => {
                for (k, v) in data {
                    let v = v.as_f64().unwrap();
                    let ok = match k.as_str() {
                        "temperature" => (15.0..60.0).contains(&v),
                        "water_temperature" => (20.0..40.0).contains(&v),
                        "humidity" => (0.0..=100.0).contains(&v),
                        "pressure" => (980.0..1040.0).contains(&v),
                        "ph" => (6.5..9.5).contains(&v),
                        "turbidity_ntu" => (0.1..100.0).contains(&v),
                        "dissolved_oxygen_mg_l" => (2.0..12.0).contains(&v),
                        other => panic!("unexpected sensor field {other}"),
                    };
                    assert!(ok, "{k} = {v}");
                }
            }
            other => panic!("the generator made {other:?}, which is not telemetry"),
        }
    }
    (by_vehicle, logs)
}

fn metres(c: &SimConfig, s: &VehicleState) -> (f64, f64) {
    let lat = s.latitude.unwrap();
    let lon = s.longitude.unwrap();
    let y = (lat - c.home.lat) * EARTH_M_PER_DEG;
    let x = (lon - c.home.lon) * EARTH_M_PER_DEG * c.home.lat.to_radians().cos();
    (x, y)
}

fn angle_diff(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(360.0);
    d.min(360.0 - d)
}

#[test]
fn consecutive_positions_agree_with_speed_and_heading() {
    for seed in [1, 2, 3, 4] {
        let c = SimConfig {
            vehicles: 3,
            sensor_rate: 0.0,
            ..config(seed)
        };
        let (by_vehicle, _) = states(&c, 1000.0);
        let mut moving = 0;
        for (id, states) in by_vehicle {
            for pair in states.windows(2) {
                let ((t0, a), (t1, b)) = (&pair[0], &pair[1]);
                let dt = t1 - t0;
                let (x0, y0) = metres(&c, a);
                let (x1, y1) = metres(&c, b);
                let d = (x1 - x0).hypot(y1 - y0);
                let v = (a.speed.unwrap() + b.speed.unwrap()) / 2.0;
                let what = format!("seed {seed} vehicle {id} t={t0:.1}: d={d:.3} v={v:.2}");
                assert!((d - v * dt).abs() <= 0.05 + 0.02 * v * dt, "{what}");
                if d > 0.3 {
                    moving += 1;
                    let chord = (x1 - x0).atan2(y1 - y0).to_degrees().rem_euclid(360.0);
                    let (h0, h1) = (a.heading.unwrap(), b.heading.unwrap());
                    let turn = (h1 - h0 + 540.0).rem_euclid(360.0) - 180.0;
                    let mid = (h0 + turn / 2.0).rem_euclid(360.0);
                    let tolerance = 3.0 + (0.05 / d).atan().to_degrees();
                    assert!(
                        angle_diff(chord, mid) <= tolerance,
                        "{what}: chord {chord:.1} vs heading {h0}..{h1}"
                    );
                }
            }
        }
        assert!(moving > 10_000, "seed {seed}: only {moving} moving samples");
    }
}

#[test]
fn values_stay_plausible_and_modes_stay_consistent_over_a_long_run() {
    let mut modes_seen = std::collections::BTreeSet::new();
    let mut low_battery_seen = false;
    for seed in [7, 8] {
        let c = SimConfig {
            vehicles: 20,
            rate: 0.2,
            sensor_rate: 0.02,
            ..config(seed)
        };
        let (by_vehicle, logs) = states(&c, 7200.0);
        for (id, states) in &by_vehicle {
            for (t, s) in states {
                let what = format!("seed {seed} vehicle {id} t={t:.0}: {s:?}");
                let (x, y) = metres(&c, s);
                assert!(x.hypot(y) <= c.radius_m, "{what}");
                assert!(
                    (10.0..=13.0).contains(&s.battery_voltage.unwrap()),
                    "{what}"
                );
                assert!(s.battery_current.unwrap() >= 0.0, "{what}");
                assert!((-100..=-20).contains(&s.rssi.unwrap()), "{what}");
                assert!((0.0..360.0).contains(&s.heading.unwrap()), "{what}");
                assert!((0.0..=6.0).contains(&s.speed.unwrap()), "{what}");
                assert_eq!(s.gps_fix, Some(3));
                let (mode, armed, guided) = (
                    s.mode.as_deref().unwrap(),
                    s.armed.unwrap(),
                    s.guided.unwrap(),
                );
                let status = s.system_status.as_deref().unwrap();
                match (armed, status) {
                    (false, "STANDBY") | (true, "ACTIVE") => {}
                    (true, "CRITICAL") => assert_eq!(mode, "RTL", "{what}"),
                    _ => panic!("{what}"),
                }
                match mode {
                    "MANUAL" => assert!(!guided, "{what}"),
                    "GUIDED" | "AUTO" | "RTL" => assert!(guided && armed, "{what}"),
                    _ => panic!("{what}"),
                }
                if !armed {
                    assert_eq!(mode, "MANUAL", "{what}");
                }
                modes_seen.insert(mode.to_owned());
                low_battery_seen |= status == "CRITICAL";
            }
        }
        assert!(logs.iter().any(|l| l.starts_with("GPS fix acquired")));
        assert!(logs.iter().any(|l| l.starts_with("Mode changed from")));
        assert!(logs.iter().any(|l| l.starts_with("Low battery")));
        assert!(logs
            .iter()
            .any(|l| l.starts_with("WARNING") || l.starts_with("ERROR")));
    }
    assert_eq!(modes_seen.len(), 4, "{modes_seen:?}");
    assert!(low_battery_seen);
}

#[test]
fn rssi_falls_with_distance_from_home() {
    let c = SimConfig {
        vehicles: 10,
        rate: 0.5,
        sensor_rate: 0.0,
        ..config(9)
    };
    let (by_vehicle, _) = states(&c, 3600.0);
    let (mut near, mut far) = (Vec::new(), Vec::new());
    for s in by_vehicle.values().flatten().map(|(_, s)| s) {
        let (x, y) = metres(&c, s);
        let d = x.hypot(y);
        if d < 0.3 * c.radius_m {
            near.push(s.rssi.unwrap() as f64);
        } else if d > 0.6 * c.radius_m {
            far.push(s.rssi.unwrap() as f64);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(!near.is_empty() && !far.is_empty());
    assert!(
        mean(&near) > mean(&far) + 10.0,
        "{} vs {}",
        mean(&near),
        mean(&far)
    );
}
