//! The bench's `vehicle_log` payload and the parse of what comes back, both through the
//! gateway's own wire types (`seano_wire`), so a change to the wire format breaks the bench's
//! build or its tests, never silently its figures.
//!
//! Each payload is a [`VehicleState`] whose extra fields carry the mark (`bench_run`,
//! `bench_pub`, `bench_seq`, `bench_sent_us`); a frame is read as a [`DataFrame`], its `data`
//! borrowed and only the mark's fields decoded.
//!
//! The history mode's payloads ([`history_log`]) carry no mark: they are one boat's state at a
//! given time, written as the payload's `timestamp`.

use std::time::{SystemTime, UNIX_EPOCH};

use seano_wire::frame::{ConnectionFrame, DataFrame};
use seano_wire::{MessageType, VehicleState};
use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch, the clock both ends of a latency sample use.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The bench fields of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// Which run (ramp step) published it: frames of another step are not counted.
    pub run: u64,
    /// Publisher index (vehicle = start id + index).
    pub publisher: u32,
    pub seq: u64,
    pub sent_us: u64,
}

/// The bench mark as it travels in a `vehicle_log`'s extra fields.
#[derive(Serialize, Deserialize)]
struct BenchFields {
    bench_run: u64,
    bench_pub: u32,
    bench_seq: u64,
    bench_sent_us: u64,
}

impl From<Mark> for BenchFields {
    fn from(m: Mark) -> Self {
        BenchFields {
            bench_run: m.run,
            bench_pub: m.publisher,
            bench_seq: m.seq,
            bench_sent_us: m.sent_us,
        }
    }
}

impl From<BenchFields> for Mark {
    fn from(b: BenchFields) -> Self {
        Mark {
            run: b.bench_run,
            publisher: b.bench_pub,
            seq: b.bench_seq,
            sent_us: b.bench_sent_us,
        }
    }
}

/// A `vehicle_log` payload: realistic telemetry (the gateway's own [`VehicleState`]) plus the
/// bench mark in its extra fields, padded to `pad_to` bytes.
pub fn vehicle_log(mark: Mark, pad_to: usize) -> String {
    let s = mark.seq as f64;
    let mut state = VehicleState {
        battery_voltage: Some(12.6 - (s * 1e-5) % 1.0),
        battery_current: Some(1.8),
        rssi: Some(-40),
        mode: Some("AUTO".into()),
        latitude: Some(-6.2088 + (s * 1e-6) % 0.01),
        longitude: Some(106.8456 + f64::from(mark.publisher) * 1e-3),
        heading: Some((s * 3.0) % 360.0),
        armed: Some(true),
        ..VehicleState::default()
    };
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(BenchFields::from(mark)) {
        state.extra = fields;
    }
    // unwrap: a struct of numbers, strings and a JSON object always serializes.
    let plain = serde_json::to_string(&state).unwrap();
    // `,"bench_pad":""` is 15 bytes.
    if pad_to <= plain.len() + 15 {
        return plain;
    }
    let pad = "x".repeat(pad_to - plain.len() - 15);
    state.extra.insert("bench_pad".into(), pad.into());
    serde_json::to_string(&state).unwrap()
}

/// A `vehicle_log` of the history mode: one boat's state at `at_ms` (Unix milliseconds), with
/// that time as its `timestamp`. The boat runs a loop of about 2 km an hour, its speed swinging
/// between 0.5 and 3.5 m/s every 10 minutes, its battery draining from 16.8 V over
/// `elapsed_ms` (time since the first message) by 0.1 V an hour: every numeric field moves, so
/// each bucket's min, max, mean and last differ. No bench mark: its numbers would be rolled up
/// as fields of their own.
pub fn history_log(at_ms: i64, elapsed_ms: i64) -> String {
    use std::f64::consts::TAU;
    let t = at_ms as f64 / 1000.0;
    let hours = elapsed_ms as f64 / 3_600_000.0;
    let lap = TAU * (t % 3600.0) / 3600.0;
    let state = VehicleState {
        battery_voltage: Some(16.8 - 0.1 * hours - 0.02 * (TAU * t / 60.0).sin()),
        battery_current: Some(4.0 + 1.5 * (TAU * t / 600.0).sin()),
        rssi: Some(-40 - ((at_ms / 1000) % 20) as i32),
        mode: Some("AUTO".into()),
        latitude: Some(-6.2088 + 0.003 * lap.sin()),
        longitude: Some(106.8456 + 0.003 * lap.cos()),
        heading: Some((360.0 - lap.to_degrees()) % 360.0),
        speed: Some(2.0 + 1.5 * (TAU * t / 600.0).sin()),
        armed: Some(true),
        gps_fix: Some(3),
        ..VehicleState::default()
    };
    let mut fields = match serde_json::to_value(&state) {
        Ok(serde_json::Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    };
    fields.insert("timestamp".into(), rfc3339_ms(at_ms).into());
    serde_json::Value::Object(fields).to_string()
}

/// `2026-12-01T04:00:00.100Z`: Unix milliseconds as RFC 3339 UTC, as the gateway writes times.
pub fn rfc3339_ms(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// What a received frame (or MQTT payload) is, as far as the bench cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// `{"type":"connection",...}`, the first frame on every socket.
    Connection,
    /// A data frame carrying a bench mark; `vehicle_id` is the frame's top-level vehicle id.
    Bench { mark: Mark, vehicle_id: Option<i64> },
    /// Anything else (another type, or a vehicle_log without a bench mark).
    Other,
}

/// The gateway's `seq` of a frame, read without parsing the rest (the bench's own fields are
/// `bench_seq`, which this does not match).
pub fn frame_seq(text: &str) -> Option<u64> {
    let at = text.find("\"seq\":")? + "\"seq\":".len();
    let digits = text[at..].trim_start();
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// Parses a WebSocket frame. The gateway's own frames are read as what it sends
/// (`seano_wire::frame`); anything else (another gateway's frames, in a side-by-side run) goes
/// through a lenient parse that looks for `type`, `vehicle_id` and the bench fields.
pub fn parse_frame(text: &str) -> Frame {
    if let Ok(frame) = serde_json::from_str::<DataFrame>(text) {
        return match frame.kind {
            MessageType::VehicleLog => match mark_of(frame.data.get()) {
                Some(mark) => Frame::Bench {
                    mark,
                    vehicle_id: Some(frame.vehicle_id),
                },
                None => Frame::Other,
            },
            _ => Frame::Other,
        };
    }
    if serde_json::from_str::<ConnectionFrame>(text).is_ok() {
        return Frame::Connection;
    }
    foreign_frame(text)
}

/// Parses a raw MQTT payload (the object the bench published).
pub fn parse_payload(payload: &[u8]) -> Frame {
    let Ok(text) = std::str::from_utf8(payload) else {
        return Frame::Other;
    };
    match mark_of(text) {
        Some(mark) => Frame::Bench {
            mark,
            vehicle_id: None,
        },
        None => Frame::Other,
    }
}

/// The bench mark in a vehicle state's JSON, if it carries one.
fn mark_of(state: &str) -> Option<Mark> {
    serde_json::from_str::<BenchFields>(state)
        .ok()
        .map(Mark::from)
}

/// Another gateway's frame: `type`, a top-level `vehicle_id` and the mark in `data`, whatever
/// else it carries or lacks.
fn foreign_frame(text: &str) -> Frame {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return Frame::Other;
    };
    match v.get("type").and_then(|t| t.as_str()) {
        Some("connection") => Frame::Connection,
        Some("vehicle_log") => match v.get("data").and_then(|d| BenchFields::deserialize(d).ok()) {
            Some(fields) => Frame::Bench {
                mark: fields.into(),
                vehicle_id: v.get("vehicle_id").and_then(|x| x.as_i64()),
            },
            None => Frame::Other,
        },
        _ => Frame::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark() -> Mark {
        Mark {
            run: 3,
            publisher: 7,
            seq: 123_456,
            sent_us: 1_760_000_000_000_000,
        }
    }

    #[test]
    fn a_payload_is_valid_json_with_the_mark() {
        let p = vehicle_log(mark(), 0);
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v["bench_seq"], 123_456);
        assert_eq!(
            parse_payload(p.as_bytes()),
            Frame::Bench {
                mark: mark(),
                vehicle_id: None
            }
        );
    }

    #[test]
    fn times_are_written_as_the_gateway_writes_them() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_796_097_600_100), "2026-12-01T04:00:00.100Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_735_689_599_999), "2024-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        for ms in [0, 1_796_097_600_100, 4_102_444_800_000] {
            let back = seano_wire::parse_timestamp(&rfc3339_ms(ms)).unwrap();
            assert_eq!(back.timestamp_millis(), ms);
        }
    }

    #[test]
    fn a_history_payload_is_a_vehicle_state_with_its_timestamp() {
        let p = history_log(1_796_097_600_100, 3_600_000);
        // As the gateway decodes it: the timestamp is the message's, nothing is left in extra.
        let decoded =
            seano_wire::decode("seano", "seano/1/vehicle_log", p.as_bytes(), 1 << 16).unwrap();
        assert_eq!(
            decoded.timestamp.map(|t| t.timestamp_millis()),
            Some(1_796_097_600_100)
        );
        let seano_wire::Telemetry::VehicleLog(state) = decoded.body else {
            panic!("not a vehicle_log: {p}");
        };
        assert!(state.extra.is_empty(), "{p}");
        for field in [
            state.latitude,
            state.longitude,
            state.speed,
            state.battery_voltage,
            state.heading,
        ] {
            assert!(field.is_some_and(f64::is_finite), "{p}");
        }
        // Consecutive states differ.
        assert_ne!(
            history_log(1_796_097_600_100, 0).replace("00.100Z", ""),
            history_log(1_796_097_600_200, 100).replace("00.200Z", "")
        );
    }

    #[test]
    fn padding_reaches_the_requested_size() {
        for size in [300, 512, 4096] {
            let p = vehicle_log(mark(), size);
            assert_eq!(p.len(), size);
            serde_json::from_str::<serde_json::Value>(&p).unwrap();
        }
        // Too small to pad: left as is.
        assert!(vehicle_log(mark(), 10).len() > 10);
    }

    /// A frame as the gateway writes it, carrying `data`.
    fn gateway_frame(data: &str) -> String {
        let data = serde_json::value::RawValue::from_string(data.to_owned()).unwrap();
        seano_wire::frame::to_text(&DataFrame {
            kind: MessageType::VehicleLog,
            vehicle_id: 8,
            vehicle_code: None,
            sensor_id: None,
            sensor_code: None,
            data: &data,
            timestamp: "2025-10-18T16:30:00.123Z".into(),
            broadcast_time: "2025-10-18T16:30:00.124Z".into(),
            connection_count: 3,
            id: 17,
            seq: 1042,
            snapshot: false,
        })
    }

    #[test]
    fn a_gateway_frame_is_read_as_the_gateway_writes_it() {
        let frame = gateway_frame(&vehicle_log(mark(), 600));
        assert_eq!(
            parse_frame(&frame),
            Frame::Bench {
                mark: mark(),
                vehicle_id: Some(8)
            }
        );
        // The state the gateway stores and sends back keeps the extras, in any order.
        let reordered = r#"{"battery_voltage":12.6,"mode":"AUTO","bench_pad":"xx","bench_pub":7,"bench_run":3,"bench_sent_us":1760000000000000,"bench_seq":123456}"#;
        assert_eq!(
            parse_frame(&gateway_frame(reordered)),
            Frame::Bench {
                mark: mark(),
                vehicle_id: Some(8)
            }
        );
    }

    #[test]
    fn another_gateways_frame_falls_back_to_a_lenient_parse() {
        let frame = r#"{"data": {"bench_seq": 123456, "bench_pub": 7, "bench_run": 3, "bench_sent_us": 1760000000000000}, "type": "vehicle_log", "vehicle_id": 8}"#;
        assert_eq!(
            parse_frame(frame),
            Frame::Bench {
                mark: mark(),
                vehicle_id: Some(8)
            }
        );
    }

    #[test]
    fn a_frames_seq_is_read_and_the_bench_seq_is_not_taken_for_it() {
        let frame =
            r#"{"type":"vehicle_log","vehicle_id":1,"data":{"bench_seq":7},"id":3,"seq":1042}"#;
        assert_eq!(frame_seq(frame), Some(1042));
        assert_eq!(frame_seq(r#"{"seq": 5, "type":"raw_log"}"#), Some(5));
        assert_eq!(frame_seq(r#"{"type":"connection","bench_seq":9}"#), None);
    }

    #[test]
    fn connection_and_other_frames_are_told_apart() {
        let filter = seano_wire::Filter::vehicle(2, MessageType::ALL.into_iter().collect());
        let c = seano_wire::frame::to_text(&ConnectionFrame::new(3, Some(2), filter));
        assert_eq!(parse_frame(&c), Frame::Connection);
        let raw = r#"{"type":"raw_log","vehicle_id":1,"data":"GPS initialized","id":1,"seq":2}"#;
        assert_eq!(parse_frame(raw), Frame::Other);
        let foreign = r#"{"type":"vehicle_log","vehicle_id":1,"data":{"battery_voltage":12.1}}"#;
        assert_eq!(parse_frame(foreign), Frame::Other);
        assert_eq!(parse_frame("not json"), Frame::Other);
    }
}
