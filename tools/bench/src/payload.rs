//! The bench's `vehicle_log` payload and the cheap parse of what comes back.
//!
//! Each payload carries `"bench_run":R,"bench_pub":P,"bench_seq":N,"bench_sent_us":T`; a
//! receiver finds them with a substring scan instead of a full JSON parse (at 200,000 frames/s
//! the receiving side must stay cheap). Anything that does not match the fast path (whitespace,
//! another serializer) falls back to serde_json.

use std::time::{SystemTime, UNIX_EPOCH};

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

/// A `vehicle_log` payload: realistic telemetry plus the bench mark, padded to `pad_to` bytes.
pub fn vehicle_log(mark: Mark, pad_to: usize) -> String {
    let s = mark.seq as f64;
    let mut p = format!(
        concat!(
            r#"{{"battery_voltage":{:.2},"battery_current":1.8,"rssi":-40,"mode":"AUTO","#,
            r#""latitude":{:.6},"longitude":{:.6},"heading":{:.1},"armed":true,"#,
            r#""bench_run":{},"bench_pub":{},"bench_seq":{},"bench_sent_us":{}"#
        ),
        12.6 - (s * 1e-5) % 1.0,
        -6.2088 + (s * 1e-6) % 0.01,
        106.8456 + (mark.publisher as f64) * 1e-3,
        (s * 3.0) % 360.0,
        mark.run,
        mark.publisher,
        mark.seq,
        mark.sent_us,
    );
    // `,"bench_pad":""` is 15 bytes, the closing brace 1.
    if pad_to > p.len() + 16 {
        let n = pad_to - p.len() - 16;
        p.push_str(r#","bench_pad":""#);
        p.extend(std::iter::repeat_n('x', n));
        p.push('"');
    }
    p.push('}');
    p
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

const BENCH_KEY: &str = "\"bench_";

/// Parses a WebSocket frame of the gateway (SPEC §3).
pub fn parse_frame(text: &str) -> Frame {
    let kind = str_field(text, r#""type":""#);
    if kind == Some("connection") {
        return Frame::Connection;
    }
    if let Some(mark) = fast_mark(text) {
        // The frame's own `vehicle_id` precedes `data`, so the first occurrence is top-level.
        let vehicle_id = int_field(text, r#""vehicle_id":"#);
        if kind == Some("vehicle_log") {
            return Frame::Bench { mark, vehicle_id };
        }
        return Frame::Other;
    }
    slow_parse(text, true)
}

/// Parses a raw MQTT payload (the object the bench published).
pub fn parse_payload(payload: &[u8]) -> Frame {
    let Ok(text) = std::str::from_utf8(payload) else {
        return Frame::Other;
    };
    match fast_mark(text) {
        Some(mark) => Frame::Bench {
            mark,
            vehicle_id: None,
        },
        None => slow_parse(text, false),
    }
}

/// The four `bench_*` fields, in any order (the gateway keeps unknown fields but may reorder
/// them), found by one pass over the occurrences of `"bench_`.
fn fast_mark(text: &str) -> Option<Mark> {
    let (mut run, mut publisher, mut seq, mut sent_us) = (None, None, None, None);
    for (at, _) in text.match_indices(BENCH_KEY) {
        let mut rest = &text[at + BENCH_KEY.len()..];
        let (name, after) = rest.split_once("\":")?;
        rest = after;
        let slot = match name {
            "run" => &mut run,
            "pub" => &mut publisher,
            "seq" => &mut seq,
            "sent_us" => &mut sent_us,
            _ => continue,
        };
        *slot = Some(take_u64(&mut rest)?);
        if run.is_some() && publisher.is_some() && seq.is_some() && sent_us.is_some() {
            break;
        }
    }
    Some(Mark {
        run: run?,
        publisher: u32::try_from(publisher?).ok()?,
        seq: seq?,
        sent_us: sent_us?,
    })
}

fn take_u64(rest: &mut &str) -> Option<u64> {
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let n = rest[..digits].parse().ok()?;
    *rest = &rest[digits..];
    Some(n)
}

/// `"key":"value"` at its first occurrence; `pat` is `"key":"` (no escapes expected in the
/// values we read).
fn str_field<'a>(text: &'a str, pat: &str) -> Option<&'a str> {
    let at = text.find(pat)? + pat.len();
    let end = text[at..].find('"')?;
    Some(&text[at..at + end])
}

/// `"key":123` at its first occurrence; `pat` is `"key":`.
fn int_field(text: &str, pat: &str) -> Option<i64> {
    let at = text.find(pat)? + pat.len();
    let rest = text[at..].trim_start();
    let len = rest
        .bytes()
        .enumerate()
        .take_while(|(i, b)| b.is_ascii_digit() || (*i == 0 && *b == b'-'))
        .count();
    rest[..len].parse().ok()
}

/// The general path: a real JSON parse (other field order, whitespace, another serializer).
fn slow_parse(text: &str, framed: bool) -> Frame {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return Frame::Other;
    };
    if framed {
        match v.get("type").and_then(|t| t.as_str()) {
            Some("connection") => return Frame::Connection,
            Some("vehicle_log") => {}
            _ => return Frame::Other,
        }
    }
    let data = if framed { v.get("data") } else { Some(&v) };
    let Some(data) = data else {
        return Frame::Other;
    };
    let field = |k: &str| data.get(k).and_then(|x| x.as_u64());
    match (
        field("bench_run"),
        field("bench_pub"),
        field("bench_seq"),
        field("bench_sent_us"),
    ) {
        (Some(run), Some(publisher), Some(seq), Some(sent_us)) => Frame::Bench {
            mark: Mark {
                run,
                publisher: publisher as u32,
                seq,
                sent_us,
            },
            vehicle_id: if framed {
                v.get("vehicle_id").and_then(|x| x.as_i64())
            } else {
                None
            },
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
    fn padding_reaches_the_requested_size() {
        for size in [300, 512, 4096] {
            let p = vehicle_log(mark(), size);
            assert_eq!(p.len(), size);
            serde_json::from_str::<serde_json::Value>(&p).unwrap();
        }
        // Too small to pad: left as is.
        assert!(vehicle_log(mark(), 10).len() > 10);
    }

    #[test]
    fn a_gateway_frame_is_parsed_on_the_fast_path() {
        let data = vehicle_log(mark(), 0);
        let frame = format!(
            r#"{{"type":"vehicle_log","vehicle_id":8,"data":{data},"timestamp":"2025-10-18T16:30:00.123Z","broadcast_time":"2025-10-18T16:30:00.124Z","connection_count":3,"id":17,"seq":1042}}"#
        );
        assert_eq!(
            parse_frame(&frame),
            Frame::Bench {
                mark: mark(),
                vehicle_id: Some(8)
            }
        );
    }

    #[test]
    fn reordered_extras_stay_on_the_fast_path() {
        // The gateway writes the known fields first and the extras sorted by name.
        let frame = r#"{"type":"vehicle_log","vehicle_id":8,"data":{"battery_voltage":12.6,"mode":"AUTO","bench_pad":"xx","bench_pub":7,"bench_run":3,"bench_sent_us":1760000000000000,"bench_seq":123456},"id":1,"seq":1}"#;
        assert_eq!(fast_mark(frame), Some(mark()));
        assert_eq!(
            parse_frame(frame),
            Frame::Bench {
                mark: mark(),
                vehicle_id: Some(8)
            }
        );
    }

    #[test]
    fn a_reformatted_frame_falls_back_to_a_full_parse() {
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
    fn connection_and_other_frames_are_told_apart() {
        let c = r#"{"type":"connection","message":"Connected to SEANO real-time data stream","timestamp":"2025-10-18T16:30:00.123Z","connection_count":3,"vehicle_id":2}"#;
        assert_eq!(parse_frame(c), Frame::Connection);
        let raw = r#"{"type":"raw_log","vehicle_id":1,"data":"GPS initialized","id":1,"seq":2}"#;
        assert_eq!(parse_frame(raw), Frame::Other);
        let foreign = r#"{"type":"vehicle_log","vehicle_id":1,"data":{"battery_voltage":12.1}}"#;
        assert_eq!(parse_frame(foreign), Frame::Other);
        assert_eq!(parse_frame("not json"), Frame::Other);
    }
}
