//! Downsampled history: per-bucket figures of a vehicle's messages, and the per-minute rollups
//! the writer keeps so that long ranges are answered without reading raw rows.
//!
//! One accumulator ([`Acc`]) serves both ways: the writer adds each committed message to its
//! minute's row, a bucketed query of whole minutes merges those
//! rows, and a bucket shorter than a minute (or not a whole number of them) adds raw rows. So
//! both answers are the same figures: per numeric field its min, max, mean and last value (the
//! value of the latest message, by timestamp then seq, that had the field), and the count.
//!
//! Rewriting a minute's rows for every batch cost ingest a quarter of its rate on PostgreSQL,
//! so the writer keeps the figures of what it committed in memory ([`Pending`]) and writes
//! them about once a second (in a batch's own transaction, or on their own when no batch
//! comes), always in a shared group, and at once when a bucketed query asks ([`RollupSync`]):
//! a reader sees every committed message. `rollup_cursor` records through which seq everything is rolled
//! up, in the same transaction, so a crash loses nothing: at start-up [`recover`] rolls up what
//! came after it from the rows.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeZone, Utc};
use entity::rollup;
use futures_util::TryStreamExt;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Statement,
};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::tables::{for_table, MessageTable};
use crate::domain::{MessageType, SensorRef, StoredMessage};

/// Nested objects are read this deep for numeric fields (`a.b.c`).
const MAX_DEPTH: usize = 3;

/// Rows per upsert statement (9 columns each: under both databases' parameter limits).
const ROWS_PER_STATEMENT: usize = 1000;

/// When and which: what orders messages for "last".
type Stamp = (i64, i64);

/// One numeric field's figures over some messages.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FieldStats {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub n: i64,
    pub last: f64,
    last_at: Stamp,
}

impl FieldStats {
    fn one(v: f64, at: Stamp) -> Self {
        FieldStats {
            min: v,
            max: v,
            sum: v,
            n: 1,
            last: v,
            last_at: at,
        }
    }

    fn merge(&mut self, o: &FieldStats) {
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        self.n += o.n;
        if o.last_at > self.last_at {
            self.last = o.last;
            self.last_at = o.last_at;
        }
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.n as f64
    }

    /// When the message that gave `last` was sent.
    pub fn last_time(&self) -> DateTime<Utc> {
        ms_time(self.last_at.0)
    }
}

/// The numeric fields of one JSON object, added to an accumulator as they are read from the
/// text: no value tree is built, and a field's name is copied only the first time the
/// accumulator meets it. Reading each message into a `serde_json::Value` again for this took
/// 8 % of the main thread during ingest (`perf`, the ingest benchmark); this takes 4 %. A
/// nested object's fields are `a.b`, down to [`MAX_DEPTH`] levels of objects; everything that
/// is not a number is skipped.
struct Numbers<'a> {
    acc: &'a mut Acc,
    /// The dotted name of the value being read.
    name: &'a mut String,
    at: Stamp,
    /// 1 + how many objects are around the value being read.
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Numbers<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Numbers<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Objects nested deeper than MAX_DEPTH are skipped.
        if self.depth > MAX_DEPTH {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        }
        while let Some(FieldName(key)) = map.next_key()? {
            let len = self.name.len();
            if len > 0 {
                self.name.push('.');
            }
            self.name.push_str(&key);
            map.next_value_seed(Numbers {
                acc: &mut *self.acc,
                name: &mut *self.name,
                at: self.at,
                depth: self.depth + 1,
            })?;
            self.name.truncate(len);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.number(v)
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.number(v as f64)
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.number(v as f64)
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

impl Numbers<'_> {
    /// A number is a field only inside an object.
    fn number<E>(self, v: f64) -> Result<(), E> {
        if self.depth > 1 {
            self.acc.add_number(self.name, v, self.at);
        }
        Ok(())
    }
}

/// An object's key, borrowed from the text unless it has escapes.
struct FieldName<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldName<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<FieldName<'de>, E> {
                Ok(FieldName(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<FieldName<'de>, E> {
                Ok(FieldName(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The figures of some messages: how many, and each numeric field's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Acc {
    pub count: i64,
    pub fields: BTreeMap<String, FieldStats>,
    last_at: Stamp,
}

impl Acc {
    /// Adds one message: its timestamp and seq, and (sensor_log, vehicle_log) its numeric fields.
    pub fn add(&mut self, msg: &StoredMessage) {
        let at = (msg.timestamp.timestamp_millis(), msg.seq);
        self.count += 1;
        self.last_at = self.last_at.max(at);
        if matches!(msg.kind, MessageType::SensorLog | MessageType::VehicleLog) {
            let mut de = serde_json::Deserializer::from_str(msg.data.get());
            let mut name = String::new();
            // The text is the store's own serialization, so it parses; were it not an object,
            // it would have no fields to add.
            let _ = Numbers {
                acc: self,
                name: &mut name,
                at,
                depth: 1,
            }
            .deserialize(&mut de);
        }
    }

    fn add_number(&mut self, name: &str, v: f64, at: Stamp) {
        if !v.is_finite() {
            return;
        }
        let one = FieldStats::one(v, at);
        match self.fields.get_mut(name) {
            Some(f) => f.merge(&one),
            None => {
                self.fields.insert(name.to_owned(), one);
            }
        }
    }

    pub fn merge(&mut self, o: &Acc) {
        self.count += o.count;
        self.last_at = self.last_at.max(o.last_at);
        for (name, f) in &o.fields {
            match self.fields.get_mut(name) {
                Some(mine) => mine.merge(f),
                None => {
                    self.fields.insert(name.clone(), *f);
                }
            }
        }
    }

    /// The latest position (vehicle_log): the last latitude and longitude.
    pub fn position(&self) -> Option<(f64, f64, DateTime<Utc>)> {
        let lat = self.fields.get("latitude")?;
        let lon = self.fields.get("longitude")?;
        Some((lat.last, lon.last, lat.last_time().max(lon.last_time())))
    }

    /// `{name: [min, max, sum, n, last, last_ms, last_seq]}`, as the `fields` column holds it.
    fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.fields
                .iter()
                .map(|(name, f)| {
                    (
                        name.clone(),
                        serde_json::json!([
                            f.min,
                            f.max,
                            f.sum,
                            f.n,
                            f.last,
                            f.last_at.0,
                            f.last_at.1
                        ]),
                    )
                })
                .collect(),
        )
    }

    fn from_row(row: &rollup::Model) -> Acc {
        let mut fields = BTreeMap::new();
        if let serde_json::Value::Object(map) = &row.fields {
            for (name, v) in map {
                let Some(a) = v.as_array().filter(|a| a.len() == 7) else {
                    continue;
                };
                let f = |i: usize| a[i].as_f64().unwrap_or(f64::NAN);
                let int = |i: usize| a[i].as_i64().unwrap_or(0);
                fields.insert(
                    name.clone(),
                    FieldStats {
                        min: f(0),
                        max: f(1),
                        sum: f(2),
                        n: int(3),
                        last: f(4),
                        last_at: (int(5), int(6)),
                    },
                );
            }
        }
        Acc {
            count: row.count,
            fields,
            last_at: (row.last_timestamp.timestamp_millis(), row.last_seq),
        }
    }
}

fn ms_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// The sensor part of a rollup's key: its code or its id as [`SensorRef::parse`] reads them
/// back; empty for the other types.
fn sensor_key(msg: &StoredMessage) -> String {
    match (&msg.sensor_code, msg.sensor_id) {
        (Some(code), _) => code.clone(),
        (None, Some(id)) => id.to_string(),
        _ => String::new(),
    }
}

/// The same key for a sensor a query names.
fn ref_key(sensor: &SensorRef) -> String {
    match sensor {
        SensorRef::Id(id) => id.to_string(),
        SensorRef::Code(code) => code.clone(),
    }
}

/// The start of the bucket of `bucket_secs` seconds (aligned on the Unix epoch) holding `t`.
pub fn bucket_start(t: DateTime<Utc>, bucket_secs: i64) -> DateTime<Utc> {
    let ms = t.timestamp_millis();
    let size = bucket_secs * 1000;
    ms_time(ms.div_euclid(size) * size)
}

/// Asks the store's writer to write its pending figures now, for a reader that wants the
/// rollups complete up to the last commit (bucketed history of whole minutes).
#[derive(Clone)]
pub struct RollupSync {
    tx: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
}

impl RollupSync {
    pub fn new() -> (
        RollupSync,
        tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<()>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        (RollupSync { tx }, rx)
    }

    /// Returns once everything committed before the call is in `rollups`, or the writer has
    /// stopped (having written what it had), or after [`SYNC_WAIT`]: a writer retrying a
    /// commit through an outage does not hold readers, who then get rollups at most about a
    /// second behind.
    pub async fn sync(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        let _ = tokio::time::timeout(SYNC_WAIT, async {
            if self.tx.send(done).await.is_ok() {
                let _ = wait.await;
            }
        })
        .await;
    }
}

/// How long a reader waits for the writer to write its pending figures.
const SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A rollup row's key: vehicle, type, sensor, minute.
pub type Key = (i64, MessageType, String, DateTime<Utc>);

/// Committed messages' figures not yet written to `rollups`, by row.
pub type Pending = HashMap<Key, Acc>;

/// The figures of some committed messages, by rollup row.
pub fn summarize(committed: &[StoredMessage]) -> Pending {
    let mut minutes = Pending::new();
    for msg in committed {
        if msg.kind == MessageType::CommandStatus {
            continue;
        }
        let key = (
            msg.vehicle_id,
            msg.kind,
            sensor_key(msg),
            bucket_start(msg.timestamp, 60),
        );
        minutes.entry(key).or_default().add(msg);
    }
    minutes
}

/// Adds `more` to `into`.
pub fn merge(into: &mut Pending, more: Pending) {
    for (key, acc) in more {
        match into.get_mut(&key) {
            Some(mine) => mine.merge(&acc),
            None => {
                into.insert(key, acc);
            }
        }
    }
}

/// Writes `pending` and `batch` into their rollup rows (read, merge, upsert) and records that
/// every telemetry message through `through_seq` is now rolled up. Runs in a writing
/// transaction that holds the seq cursor's lock (the batch's own, after its seqs were
/// reserved), so writers take turns and each reads the rows the previous one left.
pub async fn flush(
    txn: &impl ConnectionTrait,
    pending: &Pending,
    batch: &Pending,
    through_seq: i64,
) -> Result<(), DbErr> {
    let mut minutes = pending.clone();
    merge(&mut minutes, batch.clone());
    write_rows(txn, minutes).await?;
    txn.execute_raw(Statement::from_string(
        txn.get_database_backend(),
        format!(
            "UPDATE rollup_cursor SET through_seq = {through_seq} WHERE id = 1 AND through_seq < {through_seq}"
        ),
    ))
    .await?;
    Ok(())
}

async fn write_rows(txn: &impl ConnectionTrait, minutes: Pending) -> Result<(), DbErr> {
    if minutes.is_empty() {
        return Ok(());
    }
    use rollup::Column as C;
    let mut vehicles: Vec<i64> = minutes.keys().map(|k| k.0).collect();
    vehicles.sort_unstable();
    vehicles.dedup();
    let mut times: Vec<DateTime<Utc>> = minutes.keys().map(|k| k.3).collect();
    times.sort_unstable();
    times.dedup();
    let mut existing = HashMap::new();
    // Usually one or two minutes; a batch replayed from a boat's buffer may span many.
    for vs in vehicles.chunks(ROWS_PER_STATEMENT / 2) {
        for ts in times.chunks(ROWS_PER_STATEMENT / 2) {
            let rows = rollup::Entity::find()
                .filter(C::VehicleId.is_in(vs.iter().copied()))
                .filter(C::Minute.is_in(ts.iter().copied()))
                .all(txn)
                .await?;
            for row in rows {
                let Ok(kind) = row.kind.parse::<MessageType>() else {
                    continue;
                };
                existing.insert((row.vehicle_id, kind, row.sensor.clone(), row.minute), row);
            }
        }
    }
    let mut rows = Vec::with_capacity(minutes.len());
    for (key, mut acc) in minutes {
        if let Some(row) = existing.get(&key) {
            let mut merged = Acc::from_row(row);
            merged.merge(&acc);
            acc = merged;
        }
        let (vehicle_id, kind, sensor, minute) = key;
        rows.push(rollup::ActiveModel {
            id: NotSet,
            vehicle_id: Set(vehicle_id),
            kind: Set(kind.as_str().to_owned()),
            sensor: Set(sensor),
            minute: Set(minute),
            count: Set(acc.count),
            fields: Set(acc.to_json()),
            last_seq: Set(acc.last_at.1),
            last_timestamp: Set(ms_time(acc.last_at.0)),
        });
    }
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(ROWS_PER_STATEMENT));
        let chunk = std::mem::replace(&mut rows, rest);
        rollup::Entity::insert_many(chunk)
            .on_conflict(
                OnConflict::columns([C::VehicleId, C::Kind, C::Minute, C::Sensor])
                    .update_columns([C::Count, C::Fields, C::LastSeq, C::LastTimestamp])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// At start-up: rolls up the committed messages a previous run had not yet written to
/// `rollups` (those after `rollup_cursor`, at most about a second's worth after a crash).
/// Holds the seq cursor's lock meanwhile, so no other writer commits in between. Returns how
/// many messages it rolled up.
pub async fn recover(db: &DatabaseConnection) -> Result<usize, DbErr> {
    let txn = super::begin_write(db).await?;
    let backend = txn.get_database_backend();
    let last: i64 = txn
        .query_one_raw(Statement::from_string(
            backend,
            "UPDATE seq_cursor SET value = value WHERE id = 1 RETURNING value".to_owned(),
        ))
        .await?
        .map(|r| r.try_get_by_index(0))
        .transpose()?
        .unwrap_or(0);
    let through: i64 = txn
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT through_seq FROM rollup_cursor WHERE id = 1".to_owned(),
        ))
        .await?
        .map(|r| r.try_get_by_index(0))
        .transpose()?
        .unwrap_or(last);
    if through >= last {
        return Ok(0);
    }
    if last - through > RECOVER_MAX {
        // Not what a crash leaves (about a second of ingest): rows written by something else
        // (a restored dump, a bulk load). They stay out of the rollups rather than hold up
        // the start for as long as reading them would take.
        log::warn!(
            "store: {} seqs after the rollups' cursor were not stored by a gateway run; they are left out of bucketed history",
            last - through
        );
        flush(&txn, &Pending::new(), &Pending::new(), last).await?;
        txn.commit().await?;
        return Ok(0);
    }
    let mut figures = Pending::new();
    let mut n = 0;
    let mut after = through;
    while after < last {
        let upto = (after + RECOVER_PAGE).min(last);
        for kind in MessageType::TELEMETRY {
            let rows = for_table!(kind, rows_between(&txn, after, upto))?;
            n += rows.len();
            merge(&mut figures, summarize(&rows));
        }
        after = upto;
    }
    flush(&txn, &Pending::new(), &figures, last).await?;
    txn.commit().await?;
    Ok(n)
}

/// The most seqs [`recover`] rolls up; a crash leaves about a second of ingest.
const RECOVER_MAX: i64 = 500_000;

/// Seqs [`recover`] reads per query.
const RECOVER_PAGE: i64 = 10_000;

/// One table's messages with a seq in (`after`, `through`].
async fn rows_between<E: MessageTable>(
    db: &impl ConnectionTrait,
    after: i64,
    through: i64,
) -> Result<Vec<StoredMessage>, DbErr> {
    let rows = E::find()
        .filter(E::SEQ.gt(after))
        .filter(E::SEQ.lte(through))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(E::message).collect())
}

/// A bucketed history request.
#[derive(Clone, Debug)]
pub struct BucketQuery {
    pub vehicle_id: i64,
    pub kind: MessageType,
    pub sensor: Option<SensorRef>,
    /// Widened to whole buckets: from the start of the bucket holding `from`...
    pub from: Option<DateTime<Utc>>,
    /// ...to the end of the bucket holding the instant before `to`.
    pub to: Option<DateTime<Utc>>,
    pub bucket_secs: i64,
    /// At most this many buckets.
    pub limit: usize,
}

/// Where a bucketed answer was computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The per-minute rollups (buckets of whole minutes).
    Rollup,
    /// The raw rows (buckets shorter than a minute or not a whole number of minutes).
    Raw,
}

/// One bucket's figures, for one sensor (sensor_log) or the vehicle.
#[derive(Clone, Debug)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    /// sensor_log: the sensor's id or code.
    pub sensor: String,
    pub acc: Acc,
}

#[derive(Debug)]
pub struct Buckets {
    /// In time order, then by sensor.
    pub buckets: Vec<Bucket>,
    /// Later buckets exist: ask again from `next_from`.
    pub next_from: Option<DateTime<Utc>>,
    pub source: Source,
}

/// Collects buckets from items in time order, stopping after `limit` bucket starts.
struct Collector {
    bucket_secs: i64,
    limit: usize,
    starts: usize,
    buckets: BTreeMap<(DateTime<Utc>, String), Acc>,
    last_start: Option<DateTime<Utc>>,
    next_from: Option<DateTime<Utc>>,
}

impl Collector {
    /// Takes an item of time `t`; false once the limit is passed (the rest is not needed).
    fn take(&mut self, t: DateTime<Utc>, sensor: String, acc: impl FnOnce(&mut Acc)) -> bool {
        let start = bucket_start(t, self.bucket_secs);
        if self.last_start != Some(start) {
            if self.starts == self.limit {
                self.next_from = Some(start);
                return false;
            }
            self.starts += 1;
            self.last_start = Some(start);
        }
        acc(self.buckets.entry((start, sensor)).or_default());
        true
    }
}

/// Reads a vehicle's messages of one type as buckets.
pub async fn buckets(db: &DatabaseConnection, q: &BucketQuery) -> Result<Buckets, DbErr> {
    let mut c = Collector {
        bucket_secs: q.bucket_secs,
        limit: q.limit,
        starts: 0,
        buckets: BTreeMap::new(),
        last_start: None,
        next_from: None,
    };
    let from = q.from.map(|t| bucket_start(t, q.bucket_secs));
    let to =
        q.to.map(|t| bucket_start(t - chrono::Duration::milliseconds(1), q.bucket_secs))
            .map(|t| t + chrono::Duration::seconds(q.bucket_secs));
    let source = if q.bucket_secs % 60 == 0 {
        use rollup::Column as C;
        let mut s = rollup::Entity::find()
            .filter(C::VehicleId.eq(q.vehicle_id))
            .filter(C::Kind.eq(q.kind.as_str()));
        if let Some(sensor) = &q.sensor {
            s = s.filter(C::Sensor.eq(ref_key(sensor)));
        }
        if let Some(from) = from {
            s = s.filter(C::Minute.gte(from));
        }
        if let Some(to) = to {
            s = s.filter(C::Minute.lt(to));
        }
        let mut rows = s
            .order_by_asc(C::Minute)
            .order_by_asc(C::Sensor)
            .stream(db)
            .await?;
        while let Some(row) = rows.try_next().await? {
            let acc = Acc::from_row(&row);
            if !c.take(row.minute, row.sensor, |b| b.merge(&acc)) {
                break;
            }
        }
        Source::Rollup
    } else {
        let window = (from, to);
        for_table!(q.kind, raw_buckets(db, q, window, &mut c))?;
        Source::Raw
    };
    Ok(Buckets {
        buckets: c
            .buckets
            .into_iter()
            .map(|((start, sensor), acc)| Bucket { start, sensor, acc })
            .collect(),
        next_from: c.next_from,
        source,
    })
}

/// Adds one table's raw rows in the (widened) window to the buckets, in time order.
async fn raw_buckets<E: MessageTable>(
    db: &DatabaseConnection,
    q: &BucketQuery,
    (from, to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    c: &mut Collector,
) -> Result<(), DbErr> {
    let mut s = E::find().filter(E::VEHICLE_ID.eq(q.vehicle_id));
    if let Some(sensor) = &q.sensor {
        s = E::of_sensor(s, sensor);
    }
    if let Some(from) = from {
        s = s.filter(E::TIMESTAMP.gte(from));
    }
    if let Some(to) = to {
        s = s.filter(E::TIMESTAMP.lt(to));
    }
    let mut rows = s
        .order_by_asc(E::TIMESTAMP)
        .order_by_asc(E::SEQ)
        .stream(db)
        .await?;
    while let Some(row) = rows.try_next().await? {
        let msg = E::message(row);
        let sensor = sensor_key(&msg);
        if !c.take(msg.timestamp, sensor, |b| b.add(&msg)) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn msg(seq: i64, ms: i64, data: &str) -> StoredMessage {
        StoredMessage {
            seq,
            id: seq,
            vehicle_id: 1,
            vehicle_code: None,
            kind: MessageType::VehicleLog,
            sensor_id: None,
            sensor_code: None,
            data: RawValue::from_string(data.to_owned()).unwrap(),
            timestamp: ms_time(ms),
            received_at: ms_time(ms),
        }
    }

    /// The fields as a `serde_json::Value` tree gives them: what `Acc::add` read before it
    /// walked the text.
    fn fields_of_tree(data: &str) -> BTreeMap<String, f64> {
        fn walk(
            prefix: &str,
            map: &serde_json::Map<String, serde_json::Value>,
            depth: usize,
            out: &mut BTreeMap<String, f64>,
        ) {
            for (key, value) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match value {
                    serde_json::Value::Number(n) => {
                        if let Some(v) = n.as_f64().filter(|v| v.is_finite()) {
                            out.insert(name, v);
                        }
                    }
                    serde_json::Value::Object(inner) if depth < MAX_DEPTH => {
                        walk(&name, inner, depth + 1, out)
                    }
                    _ => {}
                }
            }
        }
        let mut out = BTreeMap::new();
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(data) {
            walk("", &map, 1, &mut out);
        }
        out
    }

    #[test]
    fn fields_read_from_the_text_are_those_of_the_value_tree() {
        let cases = [
            r#"{"speed": 2.5, "rssi": -40, "count": 18446744073709551615, "mode": "AUTO", "armed": true, "x": null}"#,
            r#"{"imu": {"roll": 1, "gyro": {"x": 0.5, "deep": {"too": 7}}}, "list": [1, {"a": 2}], "e": 1e300}"#,
            r#"{"esc\"aped\u00e9": 3, "a.b": 4, "a": {"b": 5}}"#,
            r#"{}"#,
            r#"[1, 2]"#,
            r#"42"#,
            r#""text""#,
        ];
        for data in cases {
            let mut acc = Acc::default();
            acc.add(&msg(1, 1000, data));
            let read: BTreeMap<String, f64> = acc
                .fields
                .iter()
                .map(|(k, f)| (k.clone(), f.last))
                .collect();
            assert_eq!(read, fields_of_tree(data), "{data}");
            assert!(acc.fields.values().all(|f| f.n == 1 || f.n == 2), "{data}");
        }
    }

    #[test]
    fn merged_parts_give_the_figures_of_the_whole() {
        let msgs = [
            msg(
                1,
                1000,
                r#"{"speed": 2.0, "mode": "AUTO", "imu": {"roll": 1}}"#,
            ),
            msg(2, 3000, r#"{"speed": 6.0, "imu": {"roll": -1}}"#),
            msg(3, 2000, r#"{"speed": 1.0, "battery_voltage": 12.5}"#),
            msg(4, 3000, r#"{"speed": 4.0}"#),
        ];
        let mut whole = Acc::default();
        msgs.iter().for_each(|m| whole.add(m));
        let (mut a, mut b) = (Acc::default(), Acc::default());
        msgs[..2].iter().for_each(|m| a.add(m));
        msgs[2..].iter().for_each(|m| b.add(m));
        b.merge(&a);
        assert_eq!(b, whole);
        let speed = whole.fields["speed"];
        assert_eq!((speed.min, speed.max, speed.n), (1.0, 6.0, 4));
        assert_eq!(speed.mean(), 13.0 / 4.0);
        // The latest by timestamp, then seq: seq 4 at 3000 ms, not seq 3 (the highest seq at 2000).
        assert_eq!(speed.last, 4.0);
        assert_eq!(whole.fields["imu.roll"].last, -1.0);
        assert_eq!(whole.fields["battery_voltage"].n, 1);
        assert!(!whole.fields.contains_key("mode"));
        assert_eq!(whole.count, 4);
    }

    #[test]
    fn a_rollup_row_round_trips() {
        let mut acc = Acc::default();
        acc.add(&msg(7, 61_000, r#"{"latitude": -6.2, "longitude": 106.8}"#));
        let row = rollup::Model {
            id: 1,
            vehicle_id: 1,
            kind: "vehicle_log".into(),
            sensor: String::new(),
            minute: ms_time(60_000),
            count: acc.count,
            fields: acc.to_json(),
            last_seq: acc.last_at.1,
            last_timestamp: ms_time(acc.last_at.0),
        };
        assert_eq!(Acc::from_row(&row), acc);
        assert_eq!(acc.position().unwrap().0, -6.2);
    }

    #[test]
    fn buckets_align_on_the_epoch() {
        let t = ms_time(3_725_500); // 01:02:05.5
        assert_eq!(bucket_start(t, 60), ms_time(3_720_000));
        assert_eq!(bucket_start(t, 3600), ms_time(3_600_000));
        assert_eq!(bucket_start(t, 10), ms_time(3_720_000));
        assert_eq!(bucket_start(ms_time(-500), 10), ms_time(-10_000));
    }
}
