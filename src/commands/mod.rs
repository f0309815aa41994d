//! Commands to vehicles (SPEC §7, "Downlink"): accepted from a socket or REST, stored, published
//! to the boat, and followed to a final state, every state change a stored `command_status`
//! message with a `seq` that streams, resumes and replays like telemetry.
//!
//! - **Who changes what.** This service writes `accepted` (with the command), `sent` (the
//!   broker's PUBACK, reported by the MQTT task), `timed_out` and `expired` (the deadline sweep).
//!   The store's writer writes `succeeded` / `failed` from the boat's ack, in the same
//!   transaction as the rest of its batch, so an answer is acknowledged to the broker only once
//!   it is committed ([`apply_acks`]). Every change is a conditional update of an open command:
//!   two writers (tasks or instances) racing on one command change it once.
//! - **Order.** Each change reserves its seq from `seq_cursor` in its own transaction, like a
//!   writer batch, and the committed change goes to the sequencer, which hands the hub every
//!   seq in order whichever task committed it.
//! - **Deadlines from the database.** The sweep reads open commands past their deadline from the
//!   table, at the next known deadline and at least every [`SWEEP`]: a restarted gateway, or
//!   another instance, enforces the deadlines of commands it never saw accepted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{command, command_event, vehicle};
use sea_orm::sea_query::Query;
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ActiveValue::Set, ColumnTrait, ConnectionTrait,
    DatabaseConnection, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait,
};
use seano_wire::command::{CommandAck, CommandMessage};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::auth::Grant;
use crate::domain::{
    format_time, raw_json, CommandRecord, CommandRequest, CommandState, MessageType, StoredMessage,
    Topic, VehicleKey,
};
use crate::metrics::Metrics;
use crate::store::queries::resolve_vehicle;
use crate::store::queries::VehicleRef;
use crate::store::{begin_write, dedup_key, reserve_seqs};

/// The longest the deadline sweep sleeps: how late a deadline can be enforced when this
/// instance did not accept the command (another instance did, or a previous run).
pub const SWEEP: Duration = Duration::from_secs(1);

/// A command on its way to the broker, for the MQTT task.
#[derive(Debug)]
pub struct Downlink {
    pub request_id: String,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// The commands settings (`COMMANDS`, `COMMAND_TIMEOUT_MS`, `COMMAND_RATE`, `COMMAND_BURST`).
#[derive(Clone, Debug)]
pub struct CommandSettings {
    pub names: Vec<String>,
    pub timeout: Duration,
    /// Commands per second per vehicle on average, and in a burst.
    pub rate: f64,
    pub burst: f64,
    pub prefix: String,
    /// Whether commands may be sent at all with this configuration: with access control off
    /// they are accepted only on a loopback HTTP address, unless
    /// `COMMANDS_WITHOUT_AUTH=true`. `Err` holds the reason given to every sender.
    pub open: Result<(), String>,
}

/// Who is sending, as the HTTP layer saw the request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub grant: Grant,
    /// Access control is on (then the credential must carry command rights).
    pub auth_on: bool,
    /// The request's browser Origin, when it had one, and whether commands may come from it.
    pub origin: Option<(String, bool)>,
}

/// Why a command was not accepted. Nothing was stored or sent.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    UnknownVehicle(String),
    #[error("{0}")]
    Conflict(String),
    #[error("too many commands to vehicle {vehicle}: at most {rate} per second (bursts of {burst}); retry in a moment")]
    RateLimited { vehicle: i64, rate: f64, burst: f64 },
    #[error("the database is unavailable: {0}")]
    Database(#[from] DbErr),
}

/// A token bucket per vehicle.
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
}

struct Inner {
    db: DatabaseConnection,
    settings: CommandSettings,
    outbox: mpsc::UnboundedSender<Downlink>,
    /// Committed state changes, to the sequencer.
    feed: mpsc::Sender<Vec<StoredMessage>>,
    /// In a shared group, this instance's id: changes are announced like writer commits.
    announce: Option<String>,
    buckets: Mutex<HashMap<i64, Bucket>>,
    /// A new deadline: the sweep recomputes when to wake.
    wake: Notify,
    metrics: Arc<Metrics>,
}

/// The commands service; cheap to clone.
#[derive(Clone)]
pub struct Commands {
    inner: Arc<Inner>,
}

impl Commands {
    pub fn new(
        db: DatabaseConnection,
        settings: CommandSettings,
        outbox: mpsc::UnboundedSender<Downlink>,
        feed: mpsc::Sender<Vec<StoredMessage>>,
        announce: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Commands {
        Commands {
            inner: Arc::new(Inner {
                db,
                settings,
                outbox,
                feed,
                announce,
                buckets: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                metrics,
            }),
        }
    }

    pub fn settings(&self) -> &CommandSettings {
        &self.inner.settings
    }

    /// Whether `caller` may send commands at all (to the vehicles its credential covers), and
    /// if not, why: the rule the socket, REST and `/api/me` share.
    pub fn may_command(&self, caller: &Caller) -> Result<(), String> {
        self.inner.settings.open.clone()?;
        if caller.auth_on && !caller.grant.commands {
            return Err("this credential has no command rights (a static token needs the :commands flag, a JWT the \"commands\": true claim)".into());
        }
        if let Some((origin, false)) = &caller.origin {
            return Err(format!("commands are not accepted from the web page at {origin}: only from the gateway's own origin or one listed in ALLOWED_ORIGINS (never from ALLOWED_ORIGINS=*)"));
        }
        Ok(())
    }

    /// Accepts a command: checks it, stores it with its `accepted` change, and hands it to the
    /// MQTT task. Returns the record and whether the request_id was already a command (then
    /// nothing is stored or sent again).
    pub async fn send(
        &self,
        caller: &Caller,
        vehicle: &VehicleRef,
        request: CommandRequest,
    ) -> Result<(CommandRecord, bool), Refused> {
        let inner = &self.inner;
        self.may_command(caller).map_err(Refused::Forbidden)?;
        if !caller.grant.scope.allows(vehicle.id) {
            return Err(Refused::Forbidden(format!(
                "this credential does not allow vehicle {}",
                vehicle.id
            )));
        }
        request.check().map_err(Refused::Invalid)?;
        if !inner.settings.names.contains(&request.command) {
            return Err(Refused::Invalid(format!(
                "unknown command '{}': this gateway accepts {} (COMMANDS)",
                request.command,
                inner.settings.names.join(", ")
            )));
        }
        if let Some(id) = &request.request_id {
            if let Some(existing) = find(&inner.db, id).await? {
                return repeat(existing, vehicle, &request, &inner.db).await;
            }
        }
        if vehicle::Entity::find_by_id(vehicle.id)
            .one(&inner.db)
            .await?
            .is_none()
        {
            return Err(Refused::UnknownVehicle(format!(
                "vehicle {} has never sent anything: commands go to vehicles the gateway has seen",
                vehicle.id
            )));
        }
        self.take_token(vehicle.id)?;

        let now = Utc::now();
        let timeout = request
            .timeout_ms
            .map_or(inner.settings.timeout, Duration::from_millis);
        let request_id = request
            .request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let row = command::Model {
            id: 0,
            request_id: request_id.clone(),
            vehicle_id: vehicle.id,
            command: request.command.clone(),
            params: request.params.clone().map(serde_json::Value::Object),
            sent_by: caller.grant.subject.clone(),
            status: CommandState::Accepted.as_str().to_owned(),
            timeout_ms: timeout.as_millis() as i64,
            expires_at: now + timeout,
            accepted_at: now,
            sent_at: None,
            acked_at: None,
            resolved_at: None,
            ack_status: None,
            message: None,
            ack_timestamp: None,
            late_answer: false,
        };
        let txn = begin_write(&inner.db).await?;
        let mut active = row.clone().into_active_model();
        active.id = NotSet;
        if let Err(e) = active.insert(&txn).await {
            drop(txn);
            // The same request_id sent twice at once: the other one won.
            if let Some(existing) = find(&inner.db, &request_id).await? {
                return repeat(existing, vehicle, &request, &inner.db).await;
            }
            return Err(e.into());
        }
        let first = reserve_seqs(&txn, 1, inner.announce.as_deref()).await?;
        let record = to_record(&row, vehicle.code.clone());
        let event = insert_event(&txn, &record, first, now).await?;
        txn.commit().await?;
        inner.metrics.commands_accepted.inc();
        inner.metrics.stored.add(MessageType::CommandStatus, 1);
        log::info!(
            "commands: {} to vehicle {} accepted as {request_id} (from {})",
            row.command,
            vehicle.id,
            row.sent_by
        );
        let _ = inner.feed.send(vec![event]).await;
        let message = CommandMessage {
            request_id: request_id.clone(),
            command: row.command.clone(),
            params: request.params,
            expires_at: Some(record.expires_at.clone()),
        };
        let vehicle_level = vehicle
            .code
            .clone()
            .unwrap_or_else(|| vehicle.id.to_string());
        // unwrap: a plain struct of strings and JSON values.
        let payload = serde_json::to_vec(&message).unwrap();
        if inner
            .outbox
            .send(Downlink {
                request_id,
                topic: Topic::command(&inner.settings.prefix, &vehicle_level),
                payload,
            })
            .is_err()
        {
            log::warn!("commands: the MQTT task has stopped; the command will expire");
        }
        inner.wake.notify_one();
        Ok((record, false))
    }

    /// Takes one token from the vehicle's bucket.
    fn take_token(&self, vehicle: i64) -> Result<(), Refused> {
        let s = &self.inner.settings;
        let now = std::time::Instant::now();
        // unwrap: the lock is never held across a panic.
        let mut buckets = self.inner.buckets.lock().unwrap();
        let bucket = buckets.entry(vehicle).or_insert(Bucket {
            tokens: s.burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * s.rate).min(s.burst);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            self.inner.metrics.commands_refused.inc();
            return Err(Refused::RateLimited {
                vehicle,
                rate: s.rate,
                burst: s.burst,
            });
        }
        bucket.tokens -= 1.0;
        Ok(())
    }

    /// Follows sent commands and deadlines: `sent` carries the request ids whose publish the
    /// broker acknowledged. At shutdown the sweep stops (the next start, or another instance,
    /// takes over the deadlines) and the last PUBACKs are recorded until the MQTT task has
    /// stopped and closed `sent`.
    pub async fn run(self, mut sent: mpsc::UnboundedReceiver<String>, shutdown: CancellationToken) {
        let mut next_sweep = tokio::time::Instant::now();
        let mut stopping = false;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if !stopping => stopping = true,
                id = sent.recv() => match id {
                    Some(id) => self.retry(|| self.mark_sent(&id)).await,
                    None => return,
                },
                _ = tokio::time::sleep_until(next_sweep), if !stopping => {
                    let next = self.retry(|| self.sweep()).await;
                    let wait = next
                        .map(|at| (at - Utc::now()).to_std().unwrap_or_default())
                        .unwrap_or(SWEEP)
                        .min(SWEEP);
                    next_sweep = tokio::time::Instant::now() + wait;
                }
                _ = self.inner.wake.notified(), if !stopping => {
                    next_sweep = tokio::time::Instant::now();
                }
            }
        }
    }

    /// Runs `op` until the database takes it (an outage delays changes, never loses them).
    async fn retry<T, F, Fut>(&self, op: F) -> T
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, DbErr>>,
    {
        let mut backoff = Duration::from_millis(50);
        loop {
            match op().await {
                Ok(v) => return v,
                Err(e) => {
                    log::warn!("commands: database error, retrying: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// The broker took the command: `accepted` → `sent`. An answer may have come first (the
    /// boat is fast, the PUBACK is slow): then only `sent_at` is filled in.
    async fn mark_sent(&self, request_id: &str) -> Result<(), DbErr> {
        let now = Utc::now();
        self.change(request_id, |row| {
            if row.sent_at.is_some() {
                return None;
            }
            let mut row = row.clone();
            row.sent_at = Some(now);
            let open = row.status == CommandState::Accepted.as_str();
            if open {
                row.status = CommandState::Sent.as_str().to_owned();
            }
            Some((row, open))
        })
        .await
    }

    /// Ends every open command past its deadline (`timed_out` if the broker took it, `expired`
    /// if not); returns the next deadline of an open command.
    async fn sweep(&self) -> Result<Option<DateTime<Utc>>, DbErr> {
        let db = &self.inner.db;
        let open = [CommandState::Accepted.as_str(), CommandState::Sent.as_str()];
        let now = Utc::now();
        let due: Vec<String> = command::Entity::find()
            .select_only()
            .column(command::Column::RequestId)
            .filter(command::Column::Status.is_in(open))
            .filter(command::Column::ExpiresAt.lte(now))
            .order_by_asc(command::Column::ExpiresAt)
            .limit(500)
            .into_tuple()
            .all(db)
            .await?;
        for id in &due {
            self.change(id, |row| {
                if stored_state(&row.status).is_final() || row.expires_at > now {
                    return None;
                }
                let mut row = row.clone();
                let (state, why) = if row.sent_at.is_some() {
                    (
                        CommandState::TimedOut,
                        format!("no answer from the vehicle within {} ms", row.timeout_ms),
                    )
                } else {
                    (
                        CommandState::Expired,
                        "the broker did not take it before its deadline (broker unreachable?)"
                            .to_owned(),
                    )
                };
                row.status = state.as_str().to_owned();
                row.message = Some(why);
                row.resolved_at = Some(now);
                Some((row, true))
            })
            .await?;
        }
        if due.len() == 500 {
            return Ok(Some(now));
        }
        command::Entity::find()
            .select_only()
            .column_as(command::Column::ExpiresAt.min(), "expires_at")
            .filter(command::Column::Status.is_in(open))
            .into_tuple::<Option<DateTime<Utc>>>()
            .one(db)
            .await
            .map(Option::flatten)
    }

    /// Reads a command in a transaction, applies `f` (the new row, and whether that is a state
    /// change to announce), and commits the update with its event.
    async fn change<F>(&self, request_id: &str, f: F) -> Result<(), DbErr>
    where
        F: Fn(&command::Model) -> Option<(command::Model, bool)>,
    {
        let inner = &self.inner;
        let txn = begin_write(&inner.db).await?;
        // Locks the command's row, then (reserving a seq) the cursor: the order every writer
        // takes them in, the store's writer too (apply_acks), so none waits on another in a
        // circle.
        let Some(row) = find_for_update(&txn, request_id).await? else {
            return Ok(());
        };
        let Some((new, announce)) = f(&row) else {
            return Ok(());
        };
        update(&txn, &new).await?;
        let event = if announce {
            let seq = reserve_seqs(&txn, 1, inner.announce.as_deref()).await?;
            let record = record(&txn, &new).await?;
            Some(insert_event(&txn, &record, seq, Utc::now()).await?)
        } else {
            None
        };
        txn.commit().await?;
        if let Some(event) = event {
            inner.metrics.stored.add(MessageType::CommandStatus, 1);
            log::info!(
                "commands: {} {} ({})",
                new.request_id,
                new.status,
                new.message.as_deref().unwrap_or("")
            );
            let _ = inner.feed.send(vec![event]).await;
        }
        Ok(())
    }
}

/// The answer to a request_id already used: its record if it is the same command to the same
/// vehicle, a conflict otherwise.
async fn repeat(
    existing: command::Model,
    vehicle: &VehicleRef,
    request: &CommandRequest,
    db: &DatabaseConnection,
) -> Result<(CommandRecord, bool), Refused> {
    if existing.vehicle_id != vehicle.id || existing.command != request.command {
        return Err(Refused::Conflict(format!(
            "request_id {} is already {} to vehicle {}: use a new request_id for another command",
            existing.request_id, existing.command, existing.vehicle_id
        )));
    }
    Ok((record(db, &existing).await?, true))
}

/// A command by request_id.
pub async fn find(
    db: &impl ConnectionTrait,
    request_id: &str,
) -> Result<Option<command::Model>, DbErr> {
    command::Entity::find()
        .filter(command::Column::RequestId.eq(request_id))
        .one(db)
        .await
}

/// A command by request_id, locked for this transaction where the database locks rows.
async fn find_for_update(
    txn: &impl ConnectionTrait,
    request_id: &str,
) -> Result<Option<command::Model>, DbErr> {
    let mut q = command::Entity::find().filter(command::Column::RequestId.eq(request_id));
    if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        q = q.lock_exclusive();
    }
    q.one(txn).await
}

/// A command's record, as REST and the frames show it (with its vehicle's code, if any).
pub async fn record(
    db: &impl ConnectionTrait,
    row: &command::Model,
) -> Result<CommandRecord, DbErr> {
    let vehicle = resolve_vehicle(db, &VehicleKey::Id(row.vehicle_id)).await?;
    Ok(to_record(row, vehicle.and_then(|v| v.code)))
}

pub fn to_record(row: &command::Model, vehicle_code: Option<String>) -> CommandRecord {
    CommandRecord {
        request_id: row.request_id.clone(),
        vehicle_id: row.vehicle_id,
        vehicle_code,
        command: row.command.clone(),
        params: match &row.params {
            Some(serde_json::Value::Object(p)) => Some(p.clone()),
            _ => None,
        },
        status: stored_state(&row.status),
        sent_by: row.sent_by.clone(),
        timeout_ms: row.timeout_ms.max(0) as u64,
        expires_at: format_time(row.expires_at),
        accepted_at: format_time(row.accepted_at),
        sent_at: row.sent_at.map(format_time),
        acked_at: row.acked_at.map(format_time),
        resolved_at: row.resolved_at.map(format_time),
        ack_status: row.ack_status.clone(),
        message: row.message.clone(),
        ack_timestamp: row.ack_timestamp.map(format_time),
        late_answer: row.late_answer,
    }
}

/// Writes a command's whole row.
async fn update(txn: &impl ConnectionTrait, row: &command::Model) -> Result<(), DbErr> {
    let mut active = row.clone().into_active_model().reset_all();
    active.id = sea_orm::ActiveValue::Unchanged(row.id);
    active.update(txn).await?;
    Ok(())
}

/// Stores a state change with its seq and returns it as the hub streams it.
async fn insert_event(
    txn: &impl ConnectionTrait,
    record: &CommandRecord,
    seq: i64,
    at: DateTime<Utc>,
) -> Result<StoredMessage, DbErr> {
    let data = serde_json::to_value(record).map_err(|e| DbErr::Custom(e.to_string()))?;
    let key = dedup_key(&record.request_id, record.status.as_str().as_bytes());
    let row = command_event::ActiveModel {
        id: NotSet,
        seq: Set(seq),
        vehicle_id: Set(record.vehicle_id),
        request_id: Set(record.request_id.clone()),
        status: Set(record.status.as_str().to_owned()),
        data: Set(data),
        timestamp: Set(at),
        received_at: Set(at),
        dedup_key: Set(key),
    };
    let mut q = command_event::Entity::insert(row).into_query();
    q.returning(Query::returning().column(command_event::Column::Id));
    let id: i64 = txn
        .query_one(&q)
        .await?
        .ok_or_else(|| DbErr::Custom("no id returned for a command event".into()))?
        .try_get_by_index(0)?;
    Ok(StoredMessage {
        seq,
        id,
        vehicle_id: record.vehicle_id,
        vehicle_code: record.vehicle_code.clone(),
        kind: MessageType::CommandStatus,
        sensor_id: None,
        sensor_code: None,
        data: raw_json(record),
        timestamp: at,
        received_at: at,
    })
}

/// What a boat's answer did to its command.
pub enum AckEffect {
    /// `sent`/`accepted` → `succeeded` | `failed`: the new row, to store with an event.
    Resolved(command::Model),
    /// The command was already final (timed out, expired): the answer is kept on the row.
    Late(command::Model),
    /// The command already has an answer (a redelivery): nothing changes.
    Repeated,
    /// No command of that vehicle has this request_id: kept as a rejected message.
    Unknown(String),
}

/// Works out, in the writer's transaction, what each answer of a batch does (in order; two
/// answers to one command in a batch: the first counts). Rows are written by [`store_acks`].
pub async fn apply_acks(
    txn: &impl ConnectionTrait,
    acks: &[(i64, &CommandAck, DateTime<Utc>)],
) -> Result<Vec<AckEffect>, DbErr> {
    let ids: Vec<&str> = acks.iter().map(|(_, a, _)| a.request_id.as_str()).collect();
    let mut q = command::Entity::find().filter(command::Column::RequestId.is_in(ids));
    if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        q = q.lock_exclusive();
    }
    let mut rows: HashMap<String, command::Model> = q
        .all(txn)
        .await?
        .into_iter()
        .map(|r| (r.request_id.clone(), r))
        .collect();
    let mut out = Vec::with_capacity(acks.len());
    for (vehicle_id, ack, at) in acks {
        let Some(row) = rows
            .get_mut(&ack.request_id)
            .filter(|r| r.vehicle_id == *vehicle_id)
        else {
            out.push(AckEffect::Unknown(format!(
                "no command with request_id {} was sent to vehicle {vehicle_id}",
                ack.request_id
            )));
            continue;
        };
        if row.acked_at.is_some() {
            out.push(AckEffect::Repeated);
            continue;
        }
        row.acked_at = Some(*at);
        row.ack_status = Some(ack.status.clone());
        row.ack_timestamp = ack.timestamp;
        if stored_state(&row.status).is_final() {
            row.late_answer = true;
            if let Some(m) = &ack.message {
                let was = row.message.take().unwrap_or_default();
                row.message = Some(format!("{was}; late answer: {m}"));
            }
            out.push(AckEffect::Late(row.clone()));
        } else {
            row.status = ack.outcome.as_str().to_owned();
            row.message = ack.message.clone();
            row.resolved_at = Some(*at);
            // The answer proves the broker took it, whatever its PUBACK's fate.
            row.sent_at.get_or_insert(*at);
            out.push(AckEffect::Resolved(row.clone()));
        }
    }
    Ok(out)
}

/// Writes the effects of [`apply_acks`]: every changed row, and an event per resolved command
/// with the seqs from `first_seq` on. Returns the events.
pub async fn store_acks(
    txn: &impl ConnectionTrait,
    effects: &[AckEffect],
    first_seq: i64,
    now: DateTime<Utc>,
) -> Result<Vec<StoredMessage>, DbErr> {
    let mut events = Vec::new();
    let mut seq = first_seq;
    for effect in effects {
        match effect {
            AckEffect::Resolved(row) => {
                update(txn, row).await?;
                events.push(insert_event(txn, &record(txn, row).await?, seq, now).await?);
                seq += 1;
            }
            AckEffect::Late(row) => update(txn, row).await?,
            AckEffect::Repeated | AckEffect::Unknown(_) => {}
        }
    }
    Ok(events)
}

/// Commands of a vehicle, newest first, up to `limit`, before the id `before` when given.
pub async fn list(
    db: &DatabaseConnection,
    vehicle_id: i64,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<command::Model>, DbErr> {
    let mut q = command::Entity::find().filter(command::Column::VehicleId.eq(vehicle_id));
    if let Some(before) = before {
        q = q.filter(command::Column::Id.lt(before));
    }
    q.order_by_desc(command::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// A stored state; an unknown one (a newer gateway's) reads as final, so nothing reopens it.
fn stored_state(s: &str) -> CommandState {
    s.parse().unwrap_or(CommandState::Expired)
}
