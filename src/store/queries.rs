//! Read queries behind the REST API: vehicles, per-type history paged by `seq`, and tracks.
//!
//! Called from HTTP handlers on actix workers; each call runs its own statements on the shared
//! pool and holds no state. Rows come back as [`StoredMessage`]s, the very form the hub
//! broadcasts, so a history item and a live frame carry the same `data`.

use chrono::{DateTime, Utc};
use entity::{vehicle, vehicle_log};
use futures_util::TryStreamExt;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, Order, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::replay::{last_seq, latest_vehicle_logs};
use super::tables::{for_table, MessageTable};
use crate::domain::{MessageType, SensorRef, StoredMessage, VehicleKey, MAX_TOPIC_VEHICLE_ID};

/// The largest page a history query returns.
pub const MAX_HISTORY_LIMIT: u64 = 1000;

/// The most points a track returns; longer tracks are downsampled to it.
pub const MAX_TRACK_POINTS: usize = 10_000;

/// A registered vehicle and its latest stored state.
#[derive(Debug, Clone)]
pub struct VehicleRecord {
    pub id: i64,
    /// The registration code it publishes under, if it has one.
    pub code: Option<String>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// The vehicle_log with the highest seq, if the vehicle ever sent one.
    pub latest: Option<StoredMessage>,
}

/// Every registered vehicle by id, each with its latest vehicle_log.
pub async fn vehicles(db: &DatabaseConnection) -> Result<Vec<VehicleRecord>, DbErr> {
    let rows = vehicle::Entity::find()
        .order_by_asc(vehicle::Column::Id)
        .all(db)
        .await?;
    let mut latest: std::collections::HashMap<i64, StoredMessage> = latest_vehicle_logs(db, None)
        .await?
        .into_iter()
        .map(|m| (m.vehicle_id, m))
        .collect();
    Ok(rows
        .into_iter()
        .map(|v| VehicleRecord {
            latest: latest.remove(&v.id),
            id: v.id,
            code: v.code,
            first_seen_at: v.first_seen_at,
            last_seen_at: v.last_seen_at,
        })
        .collect())
}

/// One vehicle, or `None` if it never sent anything.
pub async fn vehicle(db: &DatabaseConnection, id: i64) -> Result<Option<VehicleRecord>, DbErr> {
    let Some(v) = vehicle::Entity::find_by_id(id).one(db).await? else {
        return Ok(None);
    };
    let latest = latest_vehicle_logs(db, Some(&std::collections::BTreeSet::from([id])))
        .await?
        .pop();
    Ok(Some(VehicleRecord {
        id: v.id,
        code: v.code,
        first_seen_at: v.first_seen_at,
        last_seen_at: v.last_seen_at,
        latest,
    }))
}

/// The vehicle a path names, by id or code; `None` for a code no vehicle has registered.
///
/// An id is taken as it is (whether that vehicle exists is the handler's question); for ids
/// in the code range the code is looked up so answers can carry it.
pub async fn resolve_vehicle(
    db: &impl sea_orm::ConnectionTrait,
    key: &VehicleKey,
) -> Result<Option<VehicleRef>, DbErr> {
    match key {
        VehicleKey::Id(id) if *id <= MAX_TOPIC_VEHICLE_ID => Ok(Some(VehicleRef {
            id: *id,
            code: None,
        })),
        VehicleKey::Id(id) => {
            let code = vehicle::Entity::find_by_id(*id)
                .one(db)
                .await?
                .and_then(|v| v.code);
            Ok(Some(VehicleRef { id: *id, code }))
        }
        VehicleKey::Code(code) => Ok(vehicle::Entity::find()
            .filter(vehicle::Column::Code.eq(code.as_str()))
            .one(db)
            .await?
            .map(|v| VehicleRef {
                id: v.id,
                code: v.code,
            })),
    }
}

/// A vehicle as answers name it: its id, and its code when it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VehicleRef {
    pub id: i64,
    pub code: Option<String>,
}

/// The order of a history page, by `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Order)]
pub enum SortOrder {
    /// Oldest first.
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// A history request: one vehicle, one message type, a time range and a `seq` window.
#[derive(Clone, Debug)]
pub struct HistoryQuery {
    pub vehicle_id: i64,
    pub kind: MessageType,
    /// Messages whose timestamp is at or after this.
    pub from: Option<DateTime<Utc>>,
    /// Messages whose timestamp is before this (the range is half-open).
    pub to: Option<DateTime<Utc>>,
    /// Messages with a larger seq (the cursor for ascending pages).
    pub after_seq: Option<i64>,
    /// Messages with a smaller seq (the cursor for descending pages).
    pub before_seq: Option<i64>,
    /// Only this sensor (sensor_log only).
    pub sensor: Option<SensorRef>,
    pub limit: u64,
    pub order: SortOrder,
}

/// One page of history.
#[derive(Debug)]
pub struct HistoryPage {
    /// In the requested order.
    pub items: Vec<StoredMessage>,
    /// More messages match beyond this page, in the same direction.
    pub has_more: bool,
    /// The highest seq committed when the page was read, and at least the highest seq on it:
    /// a stream opened with `since=` this value continues after everything the query could see.
    pub high_water_seq: i64,
}

/// Reads one page of a vehicle's messages of one type, ordered by `seq`.
pub async fn history(db: &DatabaseConnection, q: &HistoryQuery) -> Result<HistoryPage, DbErr> {
    // Read before the query: with commits in seq order, every seq up to this one is visible to it.
    let high_water = last_seq(db).await?;
    let fetch = q.limit + 1;
    let mut items = for_table!(q.kind, history_rows(db, q, fetch))?;
    let has_more = items.len() as u64 > q.limit;
    items.truncate(q.limit as usize);
    super::replay::with_vehicle_codes(db, &mut items).await?;
    let newest_on_page = items.iter().map(|m| m.seq).max().unwrap_or(0);
    Ok(HistoryPage {
        items,
        has_more,
        high_water_seq: high_water.max(newest_on_page),
    })
}

/// Up to `fetch` of one table's messages for `q`: its vehicle, sensor, time range, cursor
/// and order.
async fn history_rows<E: MessageTable>(
    db: &DatabaseConnection,
    q: &HistoryQuery,
    fetch: u64,
) -> Result<Vec<StoredMessage>, DbErr> {
    let mut s = E::find().filter(E::VEHICLE_ID.eq(q.vehicle_id));
    if let Some(sensor) = &q.sensor {
        s = E::of_sensor(s, sensor);
    }
    if let Some(from) = q.from {
        s = s.filter(E::TIMESTAMP.gte(from));
    }
    if let Some(to) = q.to {
        s = s.filter(E::TIMESTAMP.lt(to));
    }
    if let Some(after) = q.after_seq {
        s = s.filter(E::SEQ.gt(after));
    }
    if let Some(before) = q.before_seq {
        s = s.filter(E::SEQ.lt(before));
    }
    let order = match q.order {
        SortOrder::Asc => Order::Asc,
        SortOrder::Desc => Order::Desc,
    };
    let rows = s.order_by(E::SEQ, order).limit(fetch).all(db).await?;
    Ok(rows.into_iter().map(E::message).collect())
}

/// A track request: one vehicle's positions in a time range, at most `points` of them.
#[derive(Clone, Debug)]
pub struct TrackQuery {
    pub vehicle_id: i64,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// At most this many points (1..=[`MAX_TRACK_POINTS`]), picked evenly in time order.
    pub points: usize,
}

/// A position from a vehicle_log that had both latitude and longitude.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrackPoint {
    pub time: DateTime<Utc>,
    pub latitude: f64,
    pub longitude: f64,
}

/// A vehicle's track, in time order.
#[derive(Debug)]
pub struct Track {
    /// Positions in the range before downsampling.
    pub total: u64,
    pub points: Vec<TrackPoint>,
}

/// Reads a track. When the range holds more than `points` positions, it keeps `points` of them
/// spread evenly, first and last included, streaming the rows so memory stays O(points).
pub async fn track(db: &DatabaseConnection, q: &TrackQuery) -> Result<Track, DbErr> {
    use vehicle_log::Column as C;
    // Fix the set of rows so that the count and the stream agree while ingest goes on.
    let high_water = last_seq(db).await?;
    let mut select = vehicle_log::Entity::find()
        .filter(C::VehicleId.eq(q.vehicle_id))
        .filter(C::Seq.lte(high_water))
        .filter(C::Latitude.is_not_null())
        .filter(C::Longitude.is_not_null());
    if let Some(from) = q.from {
        select = select.filter(C::Timestamp.gte(from));
    }
    if let Some(to) = q.to {
        select = select.filter(C::Timestamp.lt(to));
    }
    let total = select.clone().count(db).await?;
    let wanted = q.points.max(1);
    let mut picks = Picks::new(total, wanted);
    let mut rows = select
        .select_only()
        .columns([C::Timestamp, C::Latitude, C::Longitude])
        .order_by_asc(C::Timestamp)
        .order_by_asc(C::Seq)
        .into_tuple::<(DateTime<Utc>, f64, f64)>()
        .stream(db)
        .await?;
    let mut points = Vec::with_capacity(wanted.min(total as usize));
    let mut index = 0u64;
    while let Some((time, latitude, longitude)) = rows.try_next().await? {
        if picks.take(index) {
            points.push(TrackPoint {
                time,
                latitude,
                longitude,
            });
        }
        index += 1;
        if picks.done() {
            break;
        }
    }
    Ok(Track { total, points })
}

/// Which row indices of `total` to keep so that `wanted` of them are spread evenly.
struct Picks {
    total: u64,
    wanted: u64,
    /// The k-th pick to find next.
    k: u64,
}

impl Picks {
    fn new(total: u64, wanted: usize) -> Self {
        Picks {
            total,
            wanted: (wanted as u64).min(total),
            k: 0,
        }
    }

    /// Index of the k-th pick: evenly from 0 to total-1; a single pick is the latest row.
    fn target(&self, k: u64) -> u64 {
        if self.wanted <= 1 {
            return self.total.saturating_sub(1);
        }
        // Rounded k * (total-1) / (wanted-1), in integers.
        (2 * k * (self.total - 1) + (self.wanted - 1)) / (2 * (self.wanted - 1))
    }

    fn take(&mut self, index: u64) -> bool {
        if self.done() || self.target(self.k) != index {
            return false;
        }
        self.k += 1;
        true
    }

    fn done(&self) -> bool {
        self.k >= self.wanted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picked(total: u64, wanted: usize) -> Vec<u64> {
        let mut p = Picks::new(total, wanted);
        (0..total).filter(|i| p.take(*i)).collect()
    }

    #[test]
    fn downsampling_keeps_the_first_and_last_points_evenly_spaced() {
        assert_eq!(picked(10, 4), vec![0, 3, 6, 9]);
        assert_eq!(picked(5, 5), vec![0, 1, 2, 3, 4]);
        assert_eq!(picked(3, 10), vec![0, 1, 2]);
        assert_eq!(picked(1000, 2), vec![0, 999]);
        assert_eq!(picked(7, 1), vec![6]);
        assert!(picked(0, 5).is_empty());
        let many = picked(100_000, 1000);
        assert_eq!(many.len(), 1000);
        assert!(many.windows(2).all(|w| w[1] > w[0]));
    }
}
