//! `/api/vehicles`: registered vehicles, their stored history by type, and their tracks.
//!
//! Handlers parse every parameter themselves so that a bad one is a 400 naming it; the reads
//! are in [`crate::store::queries`]. History items have the shape of WebSocket data frames and
//! are paged by the same `seq` the streams resume from: page with `after_seq`, then open the
//! socket with `since=` the page's `live_since`, and nothing is missed or repeated.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::access::{FleetAccess, VehicleAccess};
use super::{ApiError, AppState};
use crate::domain::{
    format_time, parse_timestamp, MessageType, SensorRef, StoredMessage, VehicleKey,
};
use crate::retention::{Period, Table};
use crate::store::queries::{
    self, HistoryQuery, SortOrder, TrackQuery, VehicleRecord, MAX_HISTORY_LIMIT, MAX_TRACK_POINTS,
};
use crate::store::rollup::{self, BucketQuery, Source};

/// The default page size of a history query.
pub const DEFAULT_HISTORY_LIMIT: u64 = 100;

/// The default number of track points (before the track is downsampled).
pub const DEFAULT_TRACK_POINTS: usize = 1000;

/// The most buckets a bucketed query returns, and its default.
pub const MAX_BUCKETS: u64 = 10_000;
pub const DEFAULT_BUCKETS: u64 = 1000;

/// `GET /api/vehicles`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VehicleList {
    /// Every vehicle that ever sent a message, by id.
    pub vehicles: Vec<VehicleSummary>,
}

/// A vehicle, as registered on its first message.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 1,
    "first_seen_at": "2025-10-18T16:00:00.000Z",
    "last_seen_at": "2025-10-18T16:30:00.123Z",
    "latest_vehicle_log": {
        "id": 88, "seq": 1044, "timestamp": "2025-10-18T16:30:00.100Z",
        "data": {"battery_voltage": 12.4, "mode": "GUIDED", "armed": true,
                 "latitude": -6.2088, "longitude": 106.8456}
    }
}))]
pub struct VehicleSummary {
    /// The vehicle id from its MQTT topic (or given on first sight to a vehicle that names
    /// itself by a code).
    pub id: i64,
    /// The registration code it publishes under (`USV-003`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vehicle_code: Option<String>,
    /// When the gateway received its first message (UTC, RFC 3339).
    pub first_seen_at: String,
    /// When the gateway received its latest message.
    pub last_seen_at: String,
    /// Its latest stored vehicle_log (highest `seq`); null if it never sent one.
    pub latest_vehicle_log: Option<LatestVehicleLog>,
}

/// A stored vehicle_log: `data` is exactly what the live `vehicle_log` frame carried.
#[derive(Debug, Serialize, ToSchema)]
pub struct LatestVehicleLog {
    /// Row id in `vehicle_logs`.
    pub id: i64,
    /// Gateway-wide cursor (see the streams' `since=`).
    pub seq: i64,
    /// The vehicle's timestamp, or the receive time when it sent none.
    pub timestamp: String,
    #[schema(value_type = crate::domain::VehicleState)]
    pub data: Box<RawValue>,
}

impl From<VehicleRecord> for VehicleSummary {
    fn from(v: VehicleRecord) -> Self {
        VehicleSummary {
            id: v.id,
            vehicle_code: v.code,
            first_seen_at: format_time(v.first_seen_at),
            last_seen_at: format_time(v.last_seen_at),
            latest_vehicle_log: v.latest.map(|m| LatestVehicleLog {
                id: m.id,
                seq: m.seq,
                timestamp: format_time(m.timestamp),
                data: m.data,
            }),
        }
    }
}

/// One stored message, in the shape of a WebSocket data frame (without the live-only
/// `broadcast_time` and `connection_count`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "sensor_log", "vehicle_id": 1, "sensor_id": 5,
    "data": {"temperature": 28.5}, "timestamp": "2025-10-18T16:30:00.123Z", "id": 9, "seq": 1043
}))]
pub struct HistoryItem {
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub vehicle_id: i64,
    /// The vehicle's registration code, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vehicle_code: Option<String>,
    /// sensor_log only: the integer sensor id...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor_id: Option<i64>,
    /// ...or the sensor's code, for a sensor named by one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor_code: Option<String>,
    /// A string (raw_log), the sensor's values (sensor_log) or the vehicle state (vehicle_log).
    #[schema(value_type = Value)]
    pub data: Box<RawValue>,
    pub timestamp: String,
    /// Row id in the type's table.
    pub id: i64,
    /// Gateway-wide cursor, increasing in commit order across all types.
    pub seq: i64,
}

impl From<StoredMessage> for HistoryItem {
    fn from(m: StoredMessage) -> Self {
        HistoryItem {
            kind: m.kind,
            vehicle_id: m.vehicle_id,
            vehicle_code: m.vehicle_code,
            sensor_id: m.sensor_id,
            sensor_code: m.sensor_code,
            data: m.data,
            timestamp: format_time(m.timestamp),
            id: m.id,
            seq: m.seq,
        }
    }
}

/// A page of one vehicle's messages of one type.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "vehicle_id": 1, "type": "raw_log", "order": "asc", "limit": 2,
    "items": [
        {"type": "raw_log", "vehicle_id": 1, "data": "GPS initialized successfully",
         "timestamp": "2025-10-18T16:30:00.123Z", "id": 17, "seq": 1042},
        {"type": "raw_log", "vehicle_id": 1, "data": "Mission started",
         "timestamp": "2025-10-18T16:30:01.000Z", "id": 18, "seq": 1045}
    ],
    "has_more": true, "next_after_seq": 1045, "next_before_seq": null, "live_since": 1050
}))]
pub struct HistoryPage {
    pub vehicle_id: i64,
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub order: SortOrder,
    pub limit: u64,
    pub items: Vec<HistoryItem>,
    /// More messages match beyond this page in the same direction.
    pub has_more: bool,
    /// Ascending pages: pass as `after_seq` for the next page (the last item's seq, or the
    /// request's `after_seq` when the page is empty). Null on descending pages.
    pub next_after_seq: Option<i64>,
    /// Descending pages with more to come: pass as `before_seq` for the next (older) page.
    pub next_before_seq: Option<i64>,
    /// The newest seq the gateway had committed when this page was read (at least the newest
    /// item's). Once you have paged up to here, open the stream with `since=` this value
    /// (and `types=` this type) to continue live with no gap and no duplicate.
    pub live_since: i64,
    /// Retention has removed everything of this type received before this time (RFC 3339);
    /// null while nothing has been removed.
    pub history_begins_at: Option<String>,
}

/// One numeric field's figures over a bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldFigures {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// The value of the bucket's latest message (by timestamp, then seq) that had the field.
    pub last: f64,
}

/// A position: the last latitude and longitude of a bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct Position {
    pub latitude: f64,
    pub longitude: f64,
}

/// One bucket of one vehicle's messages of one type (of one sensor, for sensor_log).
#[derive(Debug, Serialize, ToSchema)]
pub struct BucketItem {
    /// Where the bucket begins (inclusive), aligned on the Unix epoch.
    pub start: String,
    /// Where it ends (exclusive).
    pub end: String,
    /// sensor_log: the sensor, by integer id...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor_id: Option<i64>,
    /// ...or by code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor_code: Option<String>,
    /// Messages in the bucket.
    pub count: i64,
    /// Each numeric field of sensor_log data or vehicle state (nested objects as `a.b`);
    /// empty for raw_log and command_status, which are counted only.
    pub fields: BTreeMap<String, FieldFigures>,
    /// vehicle_log: the last position in the bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
}

/// A vehicle's messages of one type, one item per bucket that has any (`bucket=`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "vehicle_id": 1, "type": "vehicle_log", "bucket": "1m", "bucket_seconds": 60, "source": "rollup",
    "items": [{"start": "2025-10-18T16:30:00.000Z", "end": "2025-10-18T16:31:00.000Z", "count": 600,
               "fields": {"speed": {"min": 2.1, "max": 15.5, "mean": 9.8, "last": 12.5}},
               "position": {"latitude": -6.2088, "longitude": 106.8456}}],
    "has_more": false, "next_from": null, "history_begins_at": null
}))]
pub struct BucketPage {
    pub vehicle_id: i64,
    #[serde(rename = "type")]
    pub kind: MessageType,
    /// The bucket size as asked (`10s`, `1m`, `1h`).
    pub bucket: String,
    pub bucket_seconds: i64,
    /// `rollup` (whole minutes, from the per-minute rollups) or `raw` (from the rows).
    pub source: Source,
    /// In time order (then by sensor); buckets with no message are left out.
    pub items: Vec<BucketItem>,
    /// More buckets follow in the range: ask again with `from` = `next_from`.
    pub has_more: bool,
    pub next_from: Option<String>,
    /// Retention has removed what this answer is made from (raw rows, or rollups for whole
    /// minutes) before this time (RFC 3339); null while nothing has been removed.
    pub history_begins_at: Option<String>,
}

/// A history answer: a page of messages, or buckets when `bucket=` is given.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum HistoryAnswer {
    Page(HistoryPage),
    Buckets(BucketPage),
}

/// A point of a track.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrackPoint {
    /// The vehicle_log's timestamp.
    pub time: String,
    pub latitude: f64,
    pub longitude: f64,
}

/// A vehicle's positions (vehicle_logs with both latitude and longitude), oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "vehicle_id": 1, "total_points": 3, "downsampled": false,
    "points": [
        {"time": "2025-10-18T16:30:00.000Z", "latitude": -6.2088, "longitude": 106.8456},
        {"time": "2025-10-18T16:30:01.000Z", "latitude": -6.2087, "longitude": 106.8457},
        {"time": "2025-10-18T16:30:02.000Z", "latitude": -6.2086, "longitude": 106.8458}
    ]
}))]
pub struct Track {
    pub vehicle_id: i64,
    /// Positions in the range before downsampling.
    pub total_points: u64,
    /// True when `points` holds an evenly spaced selection (first and last included), or
    /// the last position of each bucket.
    pub downsampled: bool,
    /// With `bucket=`: the bucket size; each point is the last position in its bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    pub points: Vec<TrackPoint>,
}

/// Every vehicle with first/last seen and its latest state.
#[utoipa::path(
    get,
    path = "/api/vehicles",
    tag = "vehicles",
    responses(
        (status = 200, description = "Every registered vehicle, by id", body = VehicleList),
        (status = 401, description = "Authentication is on and no valid token was given", body = super::error::ErrorBody),
        (status = 403, description = "A vehicle-scoped token cannot list the fleet", body = super::error::ErrorBody),
        (status = 500, description = "Database error", body = super::error::ErrorBody),
    )
)]
pub async fn list(_: FleetAccess, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let vehicles = queries::vehicles(&state.db)
        .await
        .map_err(|e| internal(e, "listing vehicles"))?;
    Ok(HttpResponse::Ok().json(VehicleList {
        vehicles: vehicles.into_iter().map(Into::into).collect(),
    }))
}

/// One vehicle with first/last seen and its latest state.
#[utoipa::path(
    get,
    path = "/api/vehicles/{vehicle_id}",
    tag = "vehicles",
    params(("vehicle_id" = inline(VehicleKey), Path, description = "Vehicle id (a positive integer) or registration code (`USV-003`)")),
    responses(
        (status = 200, description = "The vehicle", body = VehicleSummary),
        (status = 400, description = "`vehicle_id` is neither an id nor a code", body = super::error::ErrorBody,
         example = json!({"error": "bad_parameter", "parameter": "vehicle_id",
                          "message": "invalid parameter 'vehicle_id': '1.5' is neither a positive integer id nor a code (1 to 64 letters, digits, '-' or '_', with a letter)"})),
        (status = 401, description = "Authentication is on and no valid token was given", body = super::error::ErrorBody),
        (status = 403, description = "The token does not allow this vehicle", body = super::error::ErrorBody),
        (status = 404, description = "No such vehicle", body = super::error::ErrorBody,
         example = json!({"error": "not_found", "message": "vehicle 42 not found"})),
    )
)]
pub async fn get(
    access: VehicleAccess,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = access.vehicle.id;
    no_query_params(&req)?;
    let vehicle = queries::vehicle(&state.db, id)
        .await
        .map_err(|e| internal(e, "reading a vehicle"))?
        .ok_or_else(|| not_found(id))?;
    Ok(HttpResponse::Ok().json(VehicleSummary::from(vehicle)))
}

/// The query of a history page (documentation: [`history`] parses each parameter itself, so
/// that a bad one is a 400 naming it).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct HistoryParams {
    /// Only messages with a timestamp at or after this (RFC 3339).
    #[param(example = "2025-10-18T16:00:00Z")]
    from: Option<DateTime<Utc>>,
    /// Only messages with a timestamp before this (RFC 3339).
    to: Option<DateTime<Utc>>,
    /// Cursor: only messages with a larger seq.
    #[param(minimum = 0)]
    after_seq: Option<i64>,
    /// Cursor: only messages with a smaller seq.
    #[param(minimum = 0)]
    before_seq: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
    /// `asc` (oldest first, the default) or `desc` (newest first), by seq.
    order: Option<SortOrder>,
    /// One item per bucket of this size (`10s`, `1m`, `1h`, `1d`: 1 to 999 and a unit, s, m,
    /// h, d or w) instead of messages: per numeric field min, max, mean and last, the count,
    /// the last position. Buckets align on the Unix epoch; `from`/`to` widen to whole buckets;
    /// `limit` counts buckets (1 to 10000, default 1000); not with `after_seq`, `before_seq`
    /// or `order=desc` (a 400 naming them).
    #[param(example = "1m", pattern = "^[1-9][0-9]{0,2}[smhdw]$")]
    bucket: Option<String>,
}

/// The sensor filter of a history page (`sensor_log` only: with another type it is a 400).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct SensorParams {
    /// Only this sensor: its integer id, or its code.
    #[param(inline)]
    sensor_id: Option<SensorRef>,
}

/// A vehicle's stored messages of one type, paged by `seq`.
///
/// Items have the shape of the WebSocket data frames. Page forward with `after_seq` =
/// `next_after_seq` (oldest first) or backward with `before_seq` = `next_before_seq`
/// (`order=desc`). `from`/`to` select by the message's timestamp, half-open: `from <= t < to`.
#[utoipa::path(
    get,
    path = "/api/vehicles/{vehicle_id}/{type}",
    tag = "vehicles",
    params(
        ("vehicle_id" = inline(VehicleKey), Path, description = "Vehicle id (a positive integer) or registration code (`USV-003`)"),
        ("type" = MessageType, Path, description = "Message type: `raw_log`, `sensor_log`, `vehicle_log`, or `command_status` (commands' state changes)"),
        HistoryParams,
        SensorParams,
    ),
    responses(
        (status = 200, description = "A page of messages, or with `bucket=` the buckets", body = HistoryAnswer),
        (status = 400, description = "A parameter is malformed or out of range; `parameter` names it", body = super::error::ErrorBody,
         example = json!({"error": "bad_parameter", "parameter": "limit",
                          "message": "invalid parameter 'limit': must be between 1 and 1000, got 5000"})),
        (status = 401, description = "Authentication is on and no valid token was given", body = super::error::ErrorBody),
        (status = 403, description = "The token does not allow this vehicle", body = super::error::ErrorBody),
        (status = 404, description = "No such vehicle", body = super::error::ErrorBody),
    )
)]
pub async fn history(
    access: VehicleAccess,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = access.vehicle.id;
    let raw_type = req.match_info().get("type").unwrap_or_default();
    let kind: MessageType = raw_type
        .parse()
        .map_err(|e: String| ApiError::bad_parameter("type", e))?;
    let mut params = Params::parse(
        &req,
        &[
            "from",
            "to",
            "after_seq",
            "before_seq",
            "sensor_id",
            "limit",
            "order",
            "bucket",
        ],
    )?;
    let bucket = params
        .take("bucket")
        .map(|raw| parse_bucket(&raw))
        .transpose()?;
    let (from, to) = params.time_range()?;
    let sensor = params
        .take("sensor_id")
        .map(|raw| {
            SensorRef::parse(&raw).ok_or_else(|| {
                ApiError::bad_parameter(
                    "sensor_id",
                    format!("'{raw}' is neither an integer sensor id nor a sensor code"),
                )
            })
        })
        .transpose()?;
    if sensor.is_some() && kind != MessageType::SensorLog {
        return Err(ApiError::bad_parameter(
            "sensor_id",
            format!("only applies to sensor_log, not {kind}"),
        ));
    }
    if let Some((text, secs)) = bucket {
        for cursor in ["after_seq", "before_seq"] {
            if params.take(cursor).is_some() {
                return Err(ApiError::bad_parameter(
                    cursor,
                    "does not apply with bucket=; page buckets with from= the answer's next_from",
                ));
            }
        }
        if params.take("order").is_some_and(|o| o != "asc") {
            return Err(ApiError::bad_parameter(
                "order",
                "bucketed history is oldest first only",
            ));
        }
        let limit = params.take_count("limit", DEFAULT_BUCKETS, MAX_BUCKETS)? as usize;
        let q = BucketQuery {
            vehicle_id: id,
            kind,
            sensor,
            from,
            to,
            bucket_secs: secs,
            limit,
        };
        ensure_vehicle(&state, id).await?;
        let page = bucket_page(&state, &q, text).await?;
        return Ok(HttpResponse::Ok().json(HistoryAnswer::Buckets(page)));
    }
    let limit = params.take_count("limit", DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT)?;
    let order = match params.take("order").as_deref() {
        None | Some("asc") => SortOrder::Asc,
        Some("desc") => SortOrder::Desc,
        Some(other) => {
            return Err(ApiError::bad_parameter(
                "order",
                format!("must be asc or desc, got '{other}'"),
            ))
        }
    };
    let query = HistoryQuery {
        vehicle_id: id,
        kind,
        from,
        to,
        after_seq: params.take_int("after_seq", 0)?,
        before_seq: params.take_int("before_seq", 0)?,
        sensor,
        limit,
        order,
    };
    ensure_vehicle(&state, id).await?;
    let page = queries::history(&state.db, &query)
        .await
        .map_err(|e| internal(e, "reading history"))?;
    let last_on_page = page.items.last().map(|m| m.seq);
    let (next_after_seq, next_before_seq) = match order {
        SortOrder::Asc => (last_on_page.or(query.after_seq), None),
        SortOrder::Desc => (None, last_on_page.filter(|_| page.has_more)),
    };
    let history_begins_at = history_begins(&state, Table::of(kind)).await?;
    Ok(HttpResponse::Ok().json(HistoryAnswer::Page(HistoryPage {
        vehicle_id: id,
        kind,
        order,
        limit,
        has_more: page.has_more,
        next_after_seq,
        next_before_seq,
        live_since: page.high_water_seq,
        items: page.items.into_iter().map(Into::into).collect(),
        history_begins_at,
    })))
}

/// A vehicle's track: time, latitude and longitude, oldest first, optionally downsampled.
#[utoipa::path(
    get,
    path = "/api/vehicles/{vehicle_id}/track",
    tag = "vehicles",
    params(
        ("vehicle_id" = inline(VehicleKey), Path, description = "Vehicle id (a positive integer) or registration code (`USV-003`)"),
        ("from" = Option<String>, Query, format = DateTime, description = "Only positions at or after this time (RFC 3339)"),
        ("to" = Option<String>, Query, format = DateTime, description = "Only positions before this time (RFC 3339)"),
        ("points" = Option<u64>, Query, minimum = 1, maximum = 10000,
         description = "At most this many points (1 to 10000, default 1000): a longer track is downsampled evenly in time order, first and last kept; 1 gives the latest position. With `bucket=`: at most this many buckets"),
        ("bucket" = Option<String>, Query, example = "1m", pattern = "^[1-9][0-9]{0,2}[smhdw]$",
         description = "One point per bucket of this size (`10s`, `1m`, `1h`: 1 to 999 and a unit, s, m, h, d or w): the last position in it. Whole minutes are read from the per-minute rollups"),
    ),
    responses(
        (status = 200, description = "The track", body = Track),
        (status = 400, description = "A parameter is malformed or out of range", body = super::error::ErrorBody),
        (status = 401, description = "Authentication is on and no valid token was given", body = super::error::ErrorBody),
        (status = 403, description = "The token does not allow this vehicle", body = super::error::ErrorBody),
        (status = 404, description = "No such vehicle", body = super::error::ErrorBody),
    )
)]
pub async fn track(
    access: VehicleAccess,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = access.vehicle.id;
    let mut params = Params::parse(&req, &["from", "to", "points", "bucket"])?;
    let (from, to) = params.time_range()?;
    if let Some((text, secs)) = params
        .take("bucket")
        .map(|raw| parse_bucket(&raw))
        .transpose()?
    {
        let limit = params.take_count("points", DEFAULT_BUCKETS, MAX_BUCKETS)? as usize;
        ensure_vehicle(&state, id).await?;
        let q = BucketQuery {
            vehicle_id: id,
            kind: MessageType::VehicleLog,
            sensor: None,
            from,
            to,
            bucket_secs: secs,
            limit,
        };
        let buckets = read_buckets(&state, &q).await?;
        let total = buckets
            .buckets
            .iter()
            .filter_map(|b| b.acc.fields.get("latitude").map(|f| f.n as u64))
            .sum();
        return Ok(HttpResponse::Ok().json(Track {
            vehicle_id: id,
            total_points: total,
            downsampled: true,
            bucket: Some(text),
            points: buckets
                .buckets
                .iter()
                .filter_map(|b| b.acc.position())
                .map(|(latitude, longitude, time)| TrackPoint {
                    time: format_time(time),
                    latitude,
                    longitude,
                })
                .collect(),
        }));
    }
    let points = params.take_count(
        "points",
        DEFAULT_TRACK_POINTS as u64,
        MAX_TRACK_POINTS as u64,
    )? as usize;
    ensure_vehicle(&state, id).await?;
    let track = queries::track(
        &state.db,
        &TrackQuery {
            vehicle_id: id,
            from,
            to,
            points,
        },
    )
    .await
    .map_err(|e| internal(e, "reading a track"))?;
    Ok(HttpResponse::Ok().json(Track {
        vehicle_id: id,
        total_points: track.total,
        downsampled: (track.points.len() as u64) < track.total,
        bucket: None,
        points: track
            .points
            .into_iter()
            .map(|p| TrackPoint {
                time: format_time(p.time),
                latitude: p.latitude,
                longitude: p.longitude,
            })
            .collect(),
    }))
}

/// `bucket=`: its text as given and its length in seconds.
fn parse_bucket(raw: &str) -> Result<(String, i64), ApiError> {
    let digits = raw.len().saturating_sub(1);
    let well_formed = raw.is_ascii()
        && (1..=3).contains(&digits)
        && raw.as_bytes()[0] != b'0'
        && raw[..digits].bytes().all(|b| b.is_ascii_digit());
    let secs = match raw.parse::<Period>() {
        Ok(Period(Some(d))) if well_formed => d.as_secs() as i64,
        _ => {
            return Err(ApiError::bad_parameter(
                "bucket",
                format!("'{raw}' is not a bucket size: 1 to 999 and a unit, s, m, h, d or w (10s, 1m, 15m, 1h, 1d)"),
            ))
        }
    };
    Ok((raw.to_owned(), secs))
}

/// Bucketed history: whole minutes come from the rollups, once the writer has written what it
/// committed.
async fn read_buckets(state: &AppState, q: &BucketQuery) -> Result<rollup::Buckets, ApiError> {
    if q.bucket_secs % 60 == 0 {
        state.rollup_sync.sync().await;
    }
    rollup::buckets(&state.db, q)
        .await
        .map_err(|e| internal(e, "reading bucketed history"))
}

async fn bucket_page(
    state: &AppState,
    q: &BucketQuery,
    text: String,
) -> Result<BucketPage, ApiError> {
    let answer = read_buckets(state, q).await?;
    let table = match answer.source {
        Source::Rollup => Table::Rollups,
        Source::Raw => Table::of(q.kind),
    };
    let size = chrono::Duration::seconds(q.bucket_secs);
    Ok(BucketPage {
        vehicle_id: q.vehicle_id,
        kind: q.kind,
        bucket: text,
        bucket_seconds: q.bucket_secs,
        source: answer.source,
        has_more: answer.next_from.is_some(),
        next_from: answer.next_from.map(format_time),
        history_begins_at: history_begins(state, table).await?,
        items: answer
            .buckets
            .into_iter()
            .map(|b| {
                let sensor = SensorRef::parse(&b.sensor);
                BucketItem {
                    start: format_time(b.start),
                    end: format_time(b.start + size),
                    sensor_id: sensor.as_ref().and_then(SensorRef::id),
                    sensor_code: sensor.as_ref().and_then(|s| s.code().map(str::to_owned)),
                    count: b.acc.count,
                    position: (q.kind == MessageType::VehicleLog)
                        .then(|| b.acc.position())
                        .flatten()
                        .map(|(latitude, longitude, _)| Position {
                            latitude,
                            longitude,
                        }),
                    fields: b
                        .acc
                        .fields
                        .iter()
                        .map(|(name, f)| {
                            (
                                name.clone(),
                                FieldFigures {
                                    min: f.min,
                                    max: f.max,
                                    mean: f.mean(),
                                    last: f.last,
                                },
                            )
                        })
                        .collect(),
                }
            })
            .collect(),
    })
}

/// Where retention has left `table`'s history beginning, if it has removed anything.
async fn history_begins(state: &AppState, table: Table) -> Result<Option<String>, ApiError> {
    Ok(crate::retention::history_begins(&state.db, table)
        .await
        .map_err(|e| internal(e, "reading retention marks"))?
        .map(format_time))
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("vehicle {id} not found"))
}

fn internal(e: sea_orm::DbErr, what: &'static str) -> ApiError {
    ApiError::Internal(anyhow::Error::new(e).context(what))
}

async fn ensure_vehicle(state: &AppState, id: i64) -> Result<(), ApiError> {
    use sea_orm::EntityTrait;
    entity::vehicle::Entity::find_by_id(id)
        .one(&state.db)
        .await
        .map_err(|e| internal(e, "looking up a vehicle"))?
        .map(|_| ())
        .ok_or_else(|| not_found(id))
}

fn no_query_params(req: &HttpRequest) -> Result<(), ApiError> {
    Params::parse(req, &[]).map(|_| ())
}

/// `from` and `to`, each optional.
type TimeRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The query string, checked against the parameters an endpoint knows.
struct Params(BTreeMap<String, String>);

/// Accepted everywhere: the access token, when authentication is on.
const ALWAYS_ALLOWED: &[&str] = &["token"];

impl Params {
    /// Parses the query string; an unknown parameter is a 400 (it is most likely a typo that
    /// would otherwise silently widen the query).
    fn parse(req: &HttpRequest, known: &[&'static str]) -> Result<Params, ApiError> {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map_err(|e| ApiError::bad_parameter("query", e.to_string()))?
            .into_inner();
        let mut map = BTreeMap::new();
        for (key, value) in pairs {
            if !known.contains(&key.as_str()) && !ALWAYS_ALLOWED.contains(&key.as_str()) {
                let expected = if known.is_empty() {
                    "this endpoint takes no query parameters".to_owned()
                } else {
                    format!("expected one of: {}", known.join(", "))
                };
                return Err(ApiError::bad_parameter(
                    "query",
                    format!("unknown parameter '{key}'; {expected}"),
                ));
            }
            if let Some(name) = known
                .iter()
                .find(|k| **k == key)
                .filter(|_| value.is_empty())
            {
                return Err(ApiError::bad_parameter(
                    name,
                    "is empty; give a value or leave the parameter out",
                ));
            }
            map.insert(key, value);
        }
        Ok(Params(map))
    }

    /// The value, if present (never empty: see [`Params::parse`]).
    fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    /// An integer parameter that must be at least `min`.
    fn take_int(&mut self, name: &'static str, min: i64) -> Result<Option<i64>, ApiError> {
        let Some(raw) = self.take(name) else {
            return Ok(None);
        };
        match raw.parse::<i64>() {
            Ok(n) if n >= min => Ok(Some(n)),
            Ok(n) => Err(ApiError::bad_parameter(
                name,
                format!("must be at least {min}, got {n}"),
            )),
            Err(_) => Err(ApiError::bad_parameter(
                name,
                format!("'{raw}' is not an integer"),
            )),
        }
    }

    /// A count from 1 to `max`, `default` when absent.
    fn take_count(&mut self, name: &'static str, default: u64, max: u64) -> Result<u64, ApiError> {
        let n = self.take_int(name, 1)?.map_or(default, |n| n as u64);
        if n > max {
            return Err(ApiError::bad_parameter(
                name,
                format!("must be between 1 and {max}, got {n}"),
            ));
        }
        Ok(n)
    }

    fn take_time(&mut self, name: &'static str) -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(raw) = self.take(name) else {
            return Ok(None);
        };
        parse_timestamp(&raw).map(Some).ok_or_else(|| {
            ApiError::bad_parameter(
                name,
                format!("'{raw}' is not an RFC 3339 time (e.g. 2025-10-18T16:30:00Z)"),
            )
        })
    }

    /// `from` and `to`, with `from` not after `to`.
    fn time_range(&mut self) -> Result<TimeRange, ApiError> {
        let from = self.take_time("from")?;
        let to = self.take_time("to")?;
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                return Err(ApiError::bad_parameter(
                    "to",
                    format!("is before from ({} > {})", format_time(f), format_time(t)),
                ));
            }
        }
        Ok((from, to))
    }
}
