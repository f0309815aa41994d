//! Several instances on one broker and one PostgreSQL.
//!
//! - **Who stores what**: the broker. With MQTT_SHARED_GROUP every instance subscribes through
//!   `$share/{group}/{prefix}/#` with a persistent session of its own, and the broker hands each
//!   message to one of them (`mqtt`).
//! - **One order**: `seq_cursor`. Every writer reserves its seqs with an `UPDATE` of the cursor's
//!   single row inside its commit transaction (`store::writer::reserve_seqs`). PostgreSQL holds
//!   that row lock until the transaction ends, so a second writer's `UPDATE` waits for the first
//!   to commit (or roll back) and then reads the value it left: seqs are handed out in commit
//!   order, and a rolled-back reservation is rolled back with its rows, so there is no gap. The
//!   cost: commits of all instances are serialized on that row, so the cluster's ingest rate is
//!   about one instance's (several instances are for fan-out and availability, not for writing
//!   faster).
//! - **Everyone sees everything**: the [`Sequencer`]. The hub's input is not the local writer
//!   but the sequencer, which hands the hub committed messages in seq order with no gap, from
//!   whichever task (the writer, the commands service) or instance committed them. The
//!   database is the source of truth: a seq the sequencer has not seen is read back from it.
//! - **Wake-ups**: PostgreSQL `LISTEN/NOTIFY`. Each commit of a shared-group writer carries a
//!   `NOTIFY seano_committed, '<last seq>:<instance>'` in its own transaction, so the
//!   notification exists only if the rows do, and it is delivered after the commit, in commit
//!   order (an instance skips its own: its writer hands it those batches). It was chosen
//!   over a broker topic for exactly that: a broker message could arrive before the commit is
//!   visible, or be published for a transaction that then failed. A wake-up is only a hint:
//!   every [`POLL`] the sequencer also reads the cursor, and whenever the listener reconnects it
//!   catches up, so a lost notification costs at most [`POLL`] of latency, never a message.
//! - **Who is alive**: [`heartbeat`] rewrites this instance's row in `gateway_instances` every
//!   [`HEARTBEAT`]; `GET /api/cluster` lists the rows younger than [`LIVE`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::gateway_instance;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, DatabaseConnection, DbErr, EntityTrait, Iterable};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::domain::{MessageType, StoredMessage};
use crate::metrics::Metrics;
use crate::store::replay::{self, Selection};

/// The PostgreSQL notification channel a commit is announced on (payload: `<last seq>:<instance>`).
pub const CHANNEL: &str = "seano_committed";
/// How often the sequencer reads the cursor whatever the notifications say: the most a lost
/// wake-up can delay a message.
pub const POLL: Duration = Duration::from_secs(1);
/// How often an instance rewrites its heartbeat row.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A heartbeat older than this is an instance that stopped.
pub const LIVE: Duration = Duration::from_secs(10);
/// Messages read back from the database per query while catching up.
const PAGE: u64 = 2000;

/// Who this instance is (log, stats, heartbeat).
#[derive(Clone, Debug)]
pub struct Instance {
    pub id: String,
    pub client_id: String,
    pub shared_group: Option<String>,
    pub started_at: DateTime<Utc>,
}

/// Hands the hub every committed message in seq order, exactly once: this instance's commits as
/// they come, the others' read back from the database.
pub struct Sequencer {
    db: DatabaseConnection,
    /// This instance's writer's commits, each batch in seq order.
    local: mpsc::Receiver<Vec<StoredMessage>>,
    /// This instance's other commits: command state changes ([`crate::commands`]).
    commands: mpsc::Receiver<Vec<StoredMessage>>,
    /// The highest seq another instance announced.
    announced: watch::Receiver<i64>,
    hub: mpsc::Sender<Vec<StoredMessage>>,
    /// The last seq handed to the hub.
    last: i64,
    metrics: Arc<Metrics>,
    healthy: bool,
}

impl Sequencer {
    pub fn new(
        db: DatabaseConnection,
        (local, commands): (
            mpsc::Receiver<Vec<StoredMessage>>,
            mpsc::Receiver<Vec<StoredMessage>>,
        ),
        announced: watch::Receiver<i64>,
        hub: mpsc::Sender<Vec<StoredMessage>>,
        last_seq: i64,
        metrics: Arc<Metrics>,
    ) -> Sequencer {
        Sequencer {
            db,
            local,
            commands,
            announced,
            hub,
            last: last_seq,
            metrics,
            healthy: true,
        }
    }

    /// Runs until the local writer has stopped (its channel closed) and its last batch is out.
    /// Command changes committed after that reach clients on their next resume, not live.
    pub async fn run(mut self) {
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                batch = self.local.recv() => match batch {
                    Some(batch) => self.local_batch(batch).await,
                    None => return,
                },
                Some(batch) = self.commands.recv() => self.local_batch(batch).await,
                Ok(()) = self.announced.changed() => {
                    let seq = *self.announced.borrow_and_update();
                    if seq > self.last {
                        self.catch_up(Some(seq)).await;
                    }
                }
                _ = poll.tick() => self.catch_up(None).await,
            }
        }
    }

    /// A batch this instance committed: whatever others committed before it first (it is all
    /// committed, since this batch's seqs were handed out after it), then the batch.
    async fn local_batch(&mut self, mut batch: Vec<StoredMessage>) {
        let Some(first) = batch.first().map(|m| m.seq) else {
            return;
        };
        if first > self.last + 1 {
            self.catch_up(Some(first - 1)).await;
        }
        batch.retain(|m| m.seq > self.last);
        self.forward(batch).await;
    }

    /// Reads every message after the last one forwarded, up to `up_to` (or the cursor), from the
    /// database and forwards it. Retries while the database is away: meanwhile the local writer
    /// waits on this task, which is the backpressure it would get from a slow hub.
    async fn catch_up(&mut self, up_to: Option<i64>) {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.read_up_to(up_to).await {
                Ok(()) => {
                    if !std::mem::replace(&mut self.healthy, true) {
                        log::info!("cluster: reading other instances' commits again");
                    }
                    return;
                }
                Err(e) => {
                    if std::mem::replace(&mut self.healthy, false) {
                        log::error!("cluster: cannot read other instances' commits, retrying: {e}");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    async fn read_up_to(&mut self, up_to: Option<i64>) -> Result<(), DbErr> {
        let up_to = match up_to {
            Some(seq) => seq,
            None => replay::last_seq(&self.db).await?,
        };
        while self.last < up_to {
            let sel = Selection {
                vehicles: None,
                types: MessageType::ALL.into_iter().collect(),
                after_seq: self.last,
                up_to_seq: Some(up_to),
            };
            let page = replay::messages_after(&self.db, &sel, PAGE).await?;
            if page.is_empty() {
                // Nothing stored in that range any more (retention removed it): skip it.
                self.last = up_to;
                break;
            }
            self.metrics.cluster_read.add(page.len() as i64);
            self.forward(page).await;
        }
        Ok(())
    }

    async fn forward(&mut self, batch: Vec<StoredMessage>) {
        let Some(last) = batch.last().map(|m| m.seq) else {
            return;
        };
        self.last = last;
        self.metrics.last_seq.fetch_max(last, Relaxed);
        let _ = self.hub.send(batch).await;
    }
}

/// Listens on [`CHANNEL`] and publishes the highest seq another instance announced (this
/// instance's own commits reach the sequencer from its writer, so their notifications are left
/// out). Reconnects on its own after a lost connection, and then announces the cursor's value
/// (notifications sent meanwhile are gone). Ends when `shutdown` is cancelled.
pub async fn listen(
    database_url: String,
    db: DatabaseConnection,
    instance: String,
    announced: watch::Sender<i64>,
    shutdown: CancellationToken,
) {
    use sea_orm::sqlx::postgres::PgListener;
    let announce = |seq: i64| {
        announced.send_if_modified(|v| {
            let higher = seq > *v;
            *v = (*v).max(seq);
            higher
        });
    };
    let mut healthy = true;
    loop {
        let session = async {
            let mut listener = PgListener::connect(&database_url).await?;
            listener.listen(CHANNEL).await?;
            if !std::mem::replace(&mut healthy, true) {
                log::info!("cluster: listening for other instances' commits again");
            }
            // Whatever was announced while no one listened.
            if let Ok(seq) = replay::last_seq(&db).await {
                announce(seq);
            }
            loop {
                match listener.try_recv().await? {
                    Some(n) => match n.payload().split_once(':') {
                        Some((_, from)) if from == instance => {}
                        Some((seq, _)) => {
                            if let Ok(seq) = seq.parse::<i64>() {
                                announce(seq);
                            }
                        }
                        None => {
                            log::warn!("cluster: a notification of another shape: {}", n.payload())
                        }
                    },
                    // The connection dropped: catch up after reconnecting.
                    None => return Ok::<(), sea_orm::sqlx::Error>(()),
                }
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            result = session => if let Err(e) = result {
                if std::mem::replace(&mut healthy, false) {
                    log::warn!("cluster: the LISTEN connection failed ({e}); until it is back, other instances' commits arrive within {}s", POLL.as_secs());
                }
            },
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Rewrites this instance's `gateway_instances` row every [`HEARTBEAT`] until `shutdown`, then
/// deletes it (an instance that dies leaves a row that simply ages out).
pub async fn heartbeat(
    db: DatabaseConnection,
    instance: Instance,
    metrics: Arc<Metrics>,
    connections: impl Fn() -> usize,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<(std::time::Instant, u64, u64)> = None;
    let mut healthy = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = std::time::Instant::now();
        let stored: u64 = MessageType::ALL
            .iter()
            .map(|k| metrics.stored.get(*k))
            .sum();
        let frames = metrics.frames_sent.get();
        let (stored_rate, frames_rate) = match previous {
            Some((at, s, f)) => {
                let secs = now.duration_since(at).as_secs_f64().max(1e-3);
                ((stored - s) as f64 / secs, (frames - f) as f64 / secs)
            }
            None => (0.0, 0.0),
        };
        previous = Some((now, stored, frames));
        let row = gateway_instance::ActiveModel {
            instance_id: Set(instance.id.clone()),
            client_id: Set(instance.client_id.clone()),
            shared_group: Set(instance.shared_group.clone()),
            started_at: Set(instance.started_at),
            heartbeat_at: Set(Utc::now()),
            connections: Set(connections() as i64),
            messages_stored: Set(stored as i64),
            frames_sent: Set(frames as i64),
            stored_per_second: Set(stored_rate),
            frames_per_second: Set(frames_rate),
            last_seq: Set(metrics.last_seq.load(Relaxed)),
        };
        let result = gateway_instance::Entity::insert(row)
            .on_conflict(
                OnConflict::column(gateway_instance::Column::InstanceId)
                    // Every column but the key: the row is the instance's latest word.
                    .update_columns(
                        gateway_instance::Column::iter()
                            .filter(|c| !matches!(c, gateway_instance::Column::InstanceId)),
                    )
                    .to_owned(),
            )
            .exec_without_returning(&db)
            .await;
        match result {
            Ok(_) => healthy = true,
            Err(e) => {
                if std::mem::replace(&mut healthy, false) {
                    log::warn!("cluster: heartbeat not written: {e}");
                }
            }
        }
    }
    let _ = gateway_instance::Entity::delete_by_id(instance.id.clone())
        .exec(&db)
        .await;
}

/// The instances whose heartbeat is younger than [`LIVE`], by id.
pub async fn live_instances(
    db: &DatabaseConnection,
) -> Result<Vec<gateway_instance::Model>, DbErr> {
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
    let since = Utc::now() - chrono::Duration::from_std(LIVE).unwrap_or_default();
    gateway_instance::Entity::find()
        .filter(gateway_instance::Column::HeartbeatAt.gt(since))
        .order_by_asc(gateway_instance::Column::InstanceId)
        .all(db)
        .await
}
