//! Timestamps: what vehicles send in, what frames carry out.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// Parses an RFC 3339 time, or a naive ISO 8601 time taken as UTC (what SEANO's Python sends).
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|fmt| NaiveDateTime::parse_from_str(s, fmt).ok())
        .map(|t| t.and_utc())
}

/// UTC, RFC 3339, milliseconds and `Z`: `2025-10-18T16:30:00.123Z`.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rfc3339_and_naive_iso() {
        let z = parse_timestamp("2025-10-18T16:30:00.123Z").unwrap();
        assert_eq!(format_time(z), "2025-10-18T16:30:00.123Z");
        let offset = parse_timestamp("2025-10-18T23:30:00.123+07:00").unwrap();
        assert_eq!(offset, z);
        let naive = parse_timestamp("2025-10-18T16:30:00.123456").unwrap();
        assert_eq!(format_time(naive), "2025-10-18T16:30:00.123Z");
        assert!(parse_timestamp("2025-10-18 16:30:00").is_some());
        assert!(parse_timestamp("yesterday").is_none());
    }
}
