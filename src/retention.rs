//! Retention: how long each table keeps its rows, and the purge task that removes older ones.
//!
//! The purge runs every `PURGE_INTERVAL` in small batches (`PURGE_BATCH` rows per statement,
//! each in its own short transaction, with a pause after each as long as the batch took), so
//! the store's writer never waits long for the database. It goes by the gateway's clock
//! (`received_at`), never by the time a vehicle claims. Each purge moves the table's mark in
//! `retention_marks`: the highest seq removed (a stream resuming from below it gets `resync`)
//! and the time before which everything is gone (REST's `history_begins_at`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::retention_mark;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Order, Query};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait};
use tokio_util::sync::CancellationToken;

use crate::domain::MessageType;
use crate::metrics::Metrics;

/// A retention period: a whole number of seconds, minutes, hours, days or weeks (`30s`,
/// `12h`, `90d`), or `0` to keep forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period(pub Option<Duration>);

impl Period {
    pub const FOREVER: Period = Period(None);

    pub fn days(d: u64) -> Period {
        Period(Some(Duration::from_secs(d * 86_400)))
    }

    /// Rows received before this moment are purged; `None` keeps everything.
    pub fn cutoff(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let d = chrono::Duration::from_std(self.0?).ok()?;
        now.checked_sub_signed(d)
    }
}

impl FromStr for Period {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "0" {
            return Ok(Period::FOREVER);
        }
        let bad = || {
            format!(
                "'{s}' is not a duration: a whole number and a unit, s, m, h, d or w (30s, 12h, 90d), or 0 to keep forever"
            )
        };
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (n, unit) = s.split_at(split);
        let n: u64 = n.parse().map_err(|_| bad())?;
        let unit_secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(bad()),
        };
        let secs = n
            .checked_mul(unit_secs)
            .filter(|s| *s <= 100 * 365 * 86_400)
            .ok_or_else(|| format!("'{s}' is longer than 100 years; use 0 to keep forever"))?;
        if secs == 0 {
            return Err(format!(
                "'{s}' would purge everything at once; use 0 to keep forever"
            ));
        }
        Ok(Period(Some(Duration::from_secs(secs))))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(d) = self.0 else {
            return f.write_str("0");
        };
        let secs = d.as_secs();
        for (unit, size) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
            if secs % size == 0 {
                return write!(f, "{}{unit}", secs / size);
            }
        }
        write!(f, "{secs}s")
    }
}

/// The tables retention purges, with the column it goes by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Table {
    RawLogs,
    SensorLogs,
    VehicleLogs,
    CommandEvents,
    Commands,
    RejectedMessages,
    Rollups,
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::RawLogs,
        Table::SensorLogs,
        Table::VehicleLogs,
        Table::CommandEvents,
        Table::Commands,
        Table::RejectedMessages,
        Table::Rollups,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::RawLogs => "raw_logs",
            Table::SensorLogs => "sensor_logs",
            Table::VehicleLogs => "vehicle_logs",
            Table::CommandEvents => "command_events",
            Table::Commands => "commands",
            Table::RejectedMessages => "rejected_messages",
            Table::Rollups => "rollups",
        }
    }

    /// The table of a message type's rows.
    pub fn of(kind: MessageType) -> Table {
        match kind {
            MessageType::RawLog => Table::RawLogs,
            MessageType::SensorLog => Table::SensorLogs,
            MessageType::VehicleLog => Table::VehicleLogs,
            MessageType::CommandStatus => Table::CommandEvents,
        }
    }

    /// The time a row's age is counted from.
    fn time_column(self) -> &'static str {
        match self {
            Table::Commands => "accepted_at",
            Table::Rollups => "minute",
            _ => "received_at",
        }
    }

    fn has_seq(self) -> bool {
        matches!(
            self,
            Table::RawLogs | Table::SensorLogs | Table::VehicleLogs | Table::CommandEvents
        )
    }
}

/// RETENTION_* and PURGE_* as the purge task uses them.
#[derive(Clone, Debug)]
pub struct RetentionConfig {
    pub raw_log: Period,
    pub sensor_log: Period,
    pub vehicle_log: Period,
    pub rejected: Period,
    /// Commands and their state changes (`command_status`).
    pub commands: Period,
    pub rollup: Period,
    pub interval: Duration,
    pub batch: u64,
}

impl RetentionConfig {
    /// The periods of the telemetry tables the rollups summarize.
    pub fn raw_periods(&self) -> [Period; 3] {
        [self.raw_log, self.sensor_log, self.vehicle_log]
    }

    pub fn period(&self, table: Table) -> Period {
        match table {
            Table::RawLogs => self.raw_log,
            Table::SensorLogs => self.sensor_log,
            Table::VehicleLogs => self.vehicle_log,
            Table::CommandEvents | Table::Commands => self.commands,
            Table::RejectedMessages => self.rejected,
            Table::Rollups => self.rollup,
        }
    }
}

/// Runs the purge every `config.interval` until `stop`.
pub async fn run(
    db: DatabaseConnection,
    config: RetentionConfig,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    if Table::ALL.iter().all(|t| config.period(*t).0.is_none()) {
        return;
    }
    loop {
        match purge(&db, &config, &metrics, &stop).await {
            Ok(purged) if purged > 0 => log::info!("retention: purged {purged} rows"),
            Ok(_) => {}
            Err(e) => log::warn!("retention: purge failed, trying again later: {e}"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(config.interval) => {}
        }
    }
}

/// One round: every table down to its cutoff, batch by batch. Returns the rows purged.
pub async fn purge(
    db: &DatabaseConnection,
    config: &RetentionConfig,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Result<u64, DbErr> {
    let now = Utc::now();
    let mut total = 0;
    for table in Table::ALL {
        let Some(cutoff) = config.period(table).cutoff(now) else {
            continue;
        };
        loop {
            if stop.is_cancelled() {
                return Ok(total);
            }
            let started = std::time::Instant::now();
            let (purged, done) = purge_batch(db, table, cutoff, config.batch).await?;
            metrics.purged(table.name(), purged);
            total += purged;
            // Nothing could go (the oldest are open commands): the next round tries again.
            if done || purged == 0 {
                break;
            }
            // Leave the database to the writer at least as long as the batch held it.
            tokio::time::sleep(started.elapsed().max(Duration::from_millis(1))).await;
        }
    }
    Ok(total)
}

/// Purges up to `batch` of the oldest rows of `table` older than `cutoff`. Returns the rows
/// removed and whether the table is now clear of rows older than the cutoff.
///
/// It reads the oldest rows by primary key (an index every table has), removes the run of
/// them that is older than the cutoff, and stops at the first row that is not: rows arrive in
/// id order, so nothing older can follow it except by a few milliseconds, and those go next
/// round. The statement re-checks the age, so a row committed meanwhile with a lower id
/// (another instance's) is never taken.
async fn purge_batch(
    db: &DatabaseConnection,
    table: Table,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<(u64, bool), DbErr> {
    let name = Alias::new(table.name());
    let time = Alias::new(table.time_column());
    let id = Alias::new("id");
    if table == Table::Rollups {
        // Its own index on `minute`: the oldest minutes, whatever their ids.
        let oldest = Query::select()
            .column(id.clone())
            .from(name.clone())
            .and_where(Expr::col(time.clone()).lt(cutoff))
            .order_by(time.clone(), Order::Asc)
            .limit(batch)
            .to_owned();
        let ids: Vec<i64> = db
            .query_all(&oldest)
            .await?
            .iter()
            .map(|r| r.try_get_by_index(0))
            .collect::<Result<_, _>>()?;
        let n = ids.len() as u64;
        if n > 0 {
            let txn = crate::store::begin_write(db).await?;
            let delete = Query::delete()
                .from_table(name)
                .and_where(Expr::col(id).is_in(ids))
                .to_owned();
            let removed = txn.execute(&delete).await?.rows_affected();
            mark(&txn, table, 0, cutoff, removed).await?;
            txn.commit().await?;
            return Ok((removed, n < batch));
        }
        mark_time(db, table, cutoff).await?;
        return Ok((0, true));
    }
    let mut columns = vec![id.clone(), time.clone()];
    if table.has_seq() {
        columns.push(Alias::new("seq"));
    }
    let oldest = Query::select()
        .columns(columns)
        .from(name.clone())
        .order_by(id.clone(), Order::Asc)
        .limit(batch)
        .to_owned();
    let rows = db.query_all(&oldest).await?;
    let mut last_id = None;
    let mut max_seq = 0i64;
    let mut newest_time = None;
    let mut reached_young = rows.len() < batch as usize;
    for row in &rows {
        let at: DateTime<Utc> = row.try_get_by_index(1)?;
        if at >= cutoff {
            reached_young = true;
            break;
        }
        last_id = Some(row.try_get_by_index::<i64>(0)?);
        newest_time = Some(at);
        if table.has_seq() {
            max_seq = Ord::max(max_seq, row.try_get_by_index::<i64>(2)?);
        }
    }
    let Some(last_id) = last_id else {
        mark_time(db, table, cutoff).await?;
        return Ok((0, true));
    };
    let txn = crate::store::begin_write(db).await?;
    let mut delete = Query::delete()
        .from_table(name)
        .and_where(Expr::col(id).lte(last_id))
        .and_where(Expr::col(time).lt(cutoff))
        .to_owned();
    if table == Table::Commands {
        // An open command is never purged: its deadline is still being watched.
        delete.and_where(Expr::col(Alias::new("resolved_at")).is_not_null());
    }
    let removed = txn.execute(&delete).await?.rows_affected();
    // Everything before the cutoff is gone once the young rows are reached; until then, up to
    // the newest row removed.
    let before = if reached_young {
        cutoff
    } else {
        newest_time.unwrap_or(cutoff)
    };
    mark(&txn, table, max_seq, before, removed).await?;
    txn.commit().await?;
    Ok((removed, reached_young))
}

/// Moves a table's mark forward (never back) and adds to its purged count.
async fn mark(
    txn: &impl ConnectionTrait,
    table: Table,
    purged_through_seq: i64,
    purged_before: DateTime<Utc>,
    removed: u64,
) -> Result<(), DbErr> {
    let old = retention_mark::Entity::find_by_id(table.name().to_owned())
        .one(txn)
        .await?;
    let (seq, before, rows) = match old {
        Some(m) => (
            Ord::max(m.purged_through_seq, purged_through_seq),
            Ord::max(m.purged_before, purged_before),
            m.rows_purged + removed as i64,
        ),
        None => (purged_through_seq, purged_before, removed as i64),
    };
    use retention_mark::Column as C;
    retention_mark::Entity::insert(retention_mark::ActiveModel {
        table_name: Set(table.name().to_owned()),
        purged_through_seq: Set(seq),
        purged_before: Set(before),
        rows_purged: Set(rows),
    })
    .on_conflict(
        OnConflict::column(C::TableName)
            .update_columns([C::PurgedThroughSeq, C::PurgedBefore, C::RowsPurged])
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// A round found nothing older than the cutoff: history still begins at the first purge's
/// mark, if any; a table never purged keeps no mark (its history is whole).
async fn mark_time(
    db: &DatabaseConnection,
    table: Table,
    cutoff: DateTime<Utc>,
) -> Result<(), DbErr> {
    if history_begins(db, table).await?.is_some() {
        let txn = crate::store::begin_write(db).await?;
        mark(&txn, table, 0, cutoff, 0).await?;
        txn.commit().await?;
    }
    Ok(())
}

/// Each purged table's mark, by table name.
pub async fn marks(
    db: &impl ConnectionTrait,
) -> Result<BTreeMap<String, retention_mark::Model>, DbErr> {
    Ok(retention_mark::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|m| (m.table_name.clone(), m))
        .collect())
}

/// Where retention has left `table`'s history beginning: everything received before this is
/// gone. `None` while it has removed nothing.
pub async fn history_begins(
    db: &impl ConnectionTrait,
    table: Table,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    Ok(retention_mark::Entity::find_by_id(table.name().to_owned())
        .one(db)
        .await?
        .map(|m| m.purged_before))
}

/// The highest seq purged among the tables of `types`: a stream resuming from below it has
/// lost messages it asked for.
pub async fn purged_through(
    db: &impl ConnectionTrait,
    types: impl IntoIterator<Item = MessageType>,
) -> Result<i64, DbErr> {
    let marks = marks(db).await?;
    Ok(types
        .into_iter()
        .filter_map(|k| marks.get(Table::of(k).name()))
        .map(|m| m.purged_through_seq)
        .max()
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_and_print() {
        for (text, secs) in [
            ("30s", 30),
            ("12h", 43_200),
            ("90d", 7_776_000),
            ("2w", 1_209_600),
            ("5m", 300),
        ] {
            let p: Period = text.parse().unwrap();
            assert_eq!(p.0, Some(Duration::from_secs(secs)), "{text}");
            assert_eq!(p.to_string(), text);
        }
        assert_eq!("0".parse::<Period>().unwrap(), Period::FOREVER);
        assert_eq!("60s".parse::<Period>().unwrap().to_string(), "1m");
        for bad in ["", "d", "10", "1.5d", "-1d", "10y", "0d", "999999999w"] {
            let err = bad.parse::<Period>().unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn cutoff_is_now_minus_the_period() {
        let now = Utc::now();
        assert_eq!(Period::FOREVER.cutoff(now), None);
        assert_eq!(
            Period::days(1).cutoff(now),
            Some(now - chrono::Duration::days(1))
        );
    }
}
