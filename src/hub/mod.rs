//! Fan-out: the hub task owns the set of connected clients and their filters, and turns each
//! committed message into one frame that every matching client gets a clone of.
//!
//! Every client has a bounded queue. The hub never waits on a client: `try_send`. When a
//! client's queue is full (a burst larger than the queue, or a client that stopped reading), the
//! hub stops queueing for it and tells its session, which catches up from the database after
//! the frames it has, then rejoins ([`HubHandle::rejoin`]) at a seam with no gap and no
//! duplicate. So a burst never costs a reading client its connection, a slow client cannot
//! delay ingest or anyone else, and what a lagging client holds stays bounded.
//!
//! When the hub ends (after the store has drained at shutdown), it drops every client's queue:
//! client's body (`ws::body`) writes what is left in it, the last committed frames included, and
//! its session then closes 1001.

mod conflate;
pub mod frame;
mod pace;
mod ring;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytestring::ByteString;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub use conflate::{Conflation, ConflationKey};
pub use pace::ReplayPace;
pub use ring::ReplayRing;
pub use seano_wire::{parse_types, Filter, FilterChange};

use crate::domain::{format_time, StoredMessage};
use crate::metrics::Metrics;
use crate::store::replay::Selection;
use crate::store::Backlog;

pub type ClientId = u64;

/// Which endpoint a client connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "stream", content = "vehicle_id")]
pub enum Stream {
    AllVehicles,
    Vehicle(i64),
}

/// A place among the capped number of connections, taken before the upgrade and given back
/// when dropped.
pub struct ConnectionSlot {
    count: Arc<AtomicUsize>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Relaxed);
    }
}

/// One serialized data frame on its way to a client, with its seq for the resume seam.
#[derive(Clone, Debug)]
pub struct Frame {
    pub seq: i64,
    pub bytes: ByteString,
    /// Vehicle, type and sensor: what `conflate=latest` keeps the latest of.
    pub key: ConflationKey,
}

/// A run of frames in seq order: what one batch holds for a filter, shared by every client
/// with that filter (each gets an `Arc`, not a copy).
pub type Frames = Arc<[Frame]>;

/// A client's frames: what the hub queued for it, in commit order, and for `conflate=latest`
/// what it parked while the queue was full. The queue closes when the hub ends.
pub struct Queue {
    pub frames: mpsc::UnboundedReceiver<Frames>,
    /// Frames queued and not yet taken: the body takes them off as it writes them.
    pub queued: Arc<AtomicUsize>,
    pub conflation: Option<Arc<Conflation>>,
}

/// The hub's end of a client's queue, bounded by frames (`WS_CLIENT_QUEUE`), not by runs.
pub struct QueueTx {
    tx: mpsc::UnboundedSender<Frames>,
    queued: Arc<AtomicUsize>,
    limit: usize,
}

/// Why a run was not queued, or not all of it.
pub enum Refused {
    /// The queue is full: the run's frames from this index on did not fit (those before it
    /// were queued).
    Full(Frames, usize),
    /// The client's body is gone.
    Closed,
}

impl QueueTx {
    fn new(limit: usize, conflation: Option<Arc<Conflation>>) -> (QueueTx, Queue) {
        let (tx, frames) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let queue = Queue {
            frames,
            queued: queued.clone(),
            conflation,
        };
        (QueueTx { tx, queued, limit }, queue)
    }

    /// Queues as much of `run` as fits under the limit: all of it, or the frames up to the
    /// limit (copied into a run of their own, which only an overflow costs) and `Full`.
    pub fn try_send(&self, run: Frames) -> Result<(), Refused> {
        let room = self.limit.saturating_sub(self.queued.load(Relaxed));
        let fits = room.min(run.len());
        if fits > 0 {
            let head = if fits == run.len() {
                run.clone()
            } else {
                run[..fits].iter().cloned().collect()
            };
            self.queued.fetch_add(fits, Relaxed);
            self.tx.send(head).map_err(|_| Refused::Closed)?;
        }
        if fits < run.len() {
            return Err(Refused::Full(run, fits));
        }
        Ok(())
    }
}

/// What a session gets back from [`HubHandle::register`], with its [`Queue`].
pub struct Registration {
    pub id: ClientId,
    /// Notified when the queue overflowed: the hub queues nothing more for this client until
    /// its session catches up from the database and calls [`HubHandle::rejoin`].
    pub lagged: Arc<Notify>,
    pub filter: Filter,
    /// The last seq broadcast before this client was added: live frames start after it.
    pub last_seq: i64,
    _slot: ConnectionSlot,
}

/// One connection as `/api/ws/stats` shows it (SEANO's shape plus our fields).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectionInfo {
    #[schema(value_type = u64)]
    pub client_id: ClientId,
    pub connected_at: String,
    /// `{}` on `/api/ws`, `{"vehicle_filter": id}` on a vehicle stream (as SEANO reports it).
    pub client_info: serde_json::Value,
    pub filter: Filter,
}

/// The hub's half of `/api/ws/stats`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct HubSnapshot {
    pub active_connections: usize,
    pub connections_info: Vec<ConnectionInfo>,
    /// Connections per endpoint: `all_vehicles` and `vehicle`.
    pub connections_by_stream: BTreeMap<&'static str, usize>,
    /// Connections whose filter names each vehicle.
    pub connections_by_vehicle: BTreeMap<i64, usize>,
}

enum Command {
    Register {
        filter: Filter,
        stream: Stream,
        conflate: bool,
        slot: ConnectionSlot,
        reply: oneshot::Sender<(Registration, Queue)>,
    },
    Update {
        id: ClientId,
        change: FilterChange,
        reply: oneshot::Sender<Filter>,
    },
    Rejoin {
        id: ClientId,
        reply: oneshot::Sender<i64>,
    },
    Unregister(ClientId),
    Snapshot(oneshot::Sender<HubSnapshot>),
}

/// A cheap handle to the hub task.
#[derive(Clone)]
pub struct HubHandle {
    commands: mpsc::Sender<Command>,
    committed: mpsc::Sender<Vec<StoredMessage>>,
    connections: Arc<AtomicUsize>,
    max_connections: usize,
    ring: Arc<RwLock<ReplayRing>>,
    replays: Arc<Semaphore>,
    pace: Arc<ReplayPace>,
    paced: prometheus::Counter,
}

/// Replay pages read from the database at once, over every client (see
/// [`HubHandle::replay_turn`]): half of SQLite's pool, so requests and the commands service
/// always find a connection.
const REPLAY_TURNS: usize = 2;

impl HubHandle {
    /// Takes a connection slot, or `None` when the cap is reached.
    pub fn try_reserve(&self) -> Option<ConnectionSlot> {
        self.connections
            .fetch_update(Relaxed, Relaxed, |n| {
                (n < self.max_connections).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionSlot {
                count: self.connections.clone(),
            })
    }

    /// A turn to read one page of a replay from the database, held while it is read (not
    /// while it is sent: a client that stops reading holds no turn). At most [`REPLAY_TURNS`]
    /// are read at once, so a storm of resumes (or of catch-ups) takes turns page by page and
    /// cannot take every database connection; the store writer has its own. `None` once the
    /// hub is gone.
    pub async fn replay_turn(&self) -> Option<OwnedSemaphorePermit> {
        self.replays.clone().acquire_owned().await.ok()
    }

    /// Waits for the replay budget (`WS_REPLAY_RATE`, or `WS_REPLAY_RATE_BEHIND` while the store
    /// is behind) to give a page of `frames` its slot.
    pub async fn replay_pace(&self, frames: usize) {
        if let Some(at) = self.pace.slot(frames) {
            let from = tokio::time::Instant::now();
            tokio::time::sleep_until(at).await;
            self.paced.inc_by((at - from).as_secs_f64());
        }
    }

    /// Up to `limit` frames of a replay from the replay ring, with their seqs; `None` when the
    /// ring does not reach back to `sel.after_seq`. See [`ReplayRing::page`].
    pub fn replay_page(&self, sel: &Selection, limit: usize) -> Option<Vec<(i64, ByteString)>> {
        // unwrap: the lock is never held across a panic (`ReplayRing` cannot panic).
        self.ring.read().unwrap().page(sel, limit)
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Relaxed)
    }

    /// Adds a client; `None` if the hub has stopped.
    pub async fn register(
        &self,
        slot: ConnectionSlot,
        filter: Filter,
        stream: Stream,
        conflate: bool,
    ) -> Option<(Registration, Queue)> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Register {
                filter,
                stream,
                conflate,
                slot,
                reply,
            })
            .await
            .ok()?;
        rx.await.ok()
    }

    /// Changes a client's filter; returns the filter now in force. It applies from the next
    /// message the hub broadcasts.
    pub async fn update(&self, id: ClientId, change: FilterChange) -> Option<Filter> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Update { id, change, reply })
            .await
            .ok()?;
        rx.await.ok()
    }

    /// A lagging client's session has caught up from the database: the hub queues for it again
    /// from the next batch. Returns the last seq broadcast before that (the seam: the session
    /// replays from the database up to it). `None` if the hub has stopped.
    pub async fn rejoin(&self, id: ClientId) -> Option<i64> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Rejoin { id, reply })
            .await
            .ok()?;
        rx.await.ok()
    }

    pub async fn unregister(&self, id: ClientId) {
        let _ = self.commands.send(Command::Unregister(id)).await;
    }

    /// Where committed messages go to be fanned out: batches in seq order, with no gap.
    pub fn feed(&self) -> mpsc::Sender<Vec<StoredMessage>> {
        self.committed.clone()
    }

    pub async fn snapshot(&self) -> Option<HubSnapshot> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Snapshot(reply)).await.ok()?;
        rx.await.ok()
    }
}

struct Client {
    filter: Filter,
    stream: Stream,
    connected_at: DateTime<Utc>,
    tx: QueueTx,
    /// The queue overflowed: nothing is queued until the session rejoins.
    lagging: bool,
    lagged: Arc<Notify>,
    conflation: Option<Arc<Conflation>>,
}

/// Who may receive a vehicle's messages: the clients whose filter takes every vehicle, and
/// the others by the vehicles their filter names. A message is offered to those only, so its
/// cost is its receivers, not every client (a vehicle stream's message used to be checked
/// against all of them).
#[derive(Default)]
struct Receivers {
    fleet: HashSet<ClientId>,
    by_vehicle: HashMap<i64, HashSet<ClientId>>,
}

impl Receivers {
    fn add(&mut self, id: ClientId, filter: &Filter) {
        if filter.all {
            self.fleet.insert(id);
        } else {
            for v in &filter.vehicles {
                self.by_vehicle.entry(*v).or_default().insert(id);
            }
        }
    }

    fn remove(&mut self, id: ClientId, filter: &Filter) {
        if filter.all {
            self.fleet.remove(&id);
        } else {
            for v in &filter.vehicles {
                if let Some(ids) = self.by_vehicle.get_mut(v) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.by_vehicle.remove(v);
                    }
                }
            }
        }
    }

    /// Whether any client may want a message of `vehicle`.
    fn any_of(&self, vehicle: i64) -> bool {
        !self.fleet.is_empty() || self.by_vehicle.contains_key(&vehicle)
    }

    /// Every client that may want a message of one of `vehicles`, each once.
    fn of(&self, vehicles: &BTreeSet<i64>) -> Vec<ClientId> {
        // A client naming several of them is in several lists; fleet clients are in none.
        let mut named: Vec<ClientId> = vehicles
            .iter()
            .filter_map(|v| self.by_vehicle.get(v))
            .flatten()
            .copied()
            .collect();
        named.sort_unstable();
        named.dedup();
        self.fleet.iter().copied().chain(named).collect()
    }
}

/// The hub task's private state.
pub struct Hub {
    clients: HashMap<ClientId, Client>,
    receivers: Receivers,
    next_id: ClientId,
    last_seq: i64,
    queue: usize,
    commands: mpsc::Receiver<Command>,
    committed: mpsc::Receiver<Vec<StoredMessage>>,
    connections: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    ring: Arc<RwLock<ReplayRing>>,
    /// A ring is kept: every message is serialized, even one no client receives.
    keep_frames: bool,
    /// How long committed batches are gathered into one fan-out (`WS_GATHER_MS`).
    gather: Duration,
}

/// How the hub is sized (the `WS_*` settings).
pub struct HubSettings {
    /// Bounds each client's frame queue.
    pub queue: usize,
    pub max_connections: usize,
    /// Bounds the replay ring (0: none).
    pub ring_bytes: usize,
    /// Frames per second of every replay together (0: no limit).
    pub replay_rate: u64,
    /// The same while the store is behind (0: `replay_rate`).
    pub replay_rate_behind: u64,
    /// How long committed messages are gathered before they are fanned out (0: at once).
    pub gather: Duration,
}

impl Hub {
    /// `last_seq` is where the stream starts.
    pub fn new(
        HubSettings {
            queue,
            max_connections,
            ring_bytes,
            replay_rate,
            replay_rate_behind,
            gather,
        }: HubSettings,
        last_seq: i64,
        backlog: Backlog,
        metrics: Arc<Metrics>,
    ) -> (Hub, HubHandle) {
        let ring = Arc::new(RwLock::new(ReplayRing::new(ring_bytes, last_seq)));
        let (cmd_tx, commands) = mpsc::channel(1024);
        let (committed_tx, committed) = mpsc::channel(64);
        let connections = Arc::new(AtomicUsize::new(0));
        let paced = metrics.replay_paced_seconds.clone();
        let hub = Hub {
            clients: HashMap::new(),
            receivers: Receivers::default(),
            next_id: 1,
            last_seq,
            queue,
            commands,
            committed,
            connections: connections.clone(),
            metrics,
            ring: ring.clone(),
            keep_frames: ring_bytes > 0,
            gather,
        };
        let handle = HubHandle {
            commands: cmd_tx,
            committed: committed_tx,
            connections,
            max_connections,
            ring,
            replays: Arc::new(Semaphore::new(REPLAY_TURNS)),
            pace: Arc::new(ReplayPace::new(replay_rate, replay_rate_behind, backlog)),
            paced,
        };
        (hub, handle)
    }

    /// Runs until `stop` is cancelled (after the store has drained).
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                Some(cmd) = self.commands.recv() => self.handle(cmd),
                Some(batch) = self.committed.recv() => {
                    let batch = self.gather(batch, &stop).await;
                    self.fan_out(batch);
                }
                _ = stop.cancelled() => break,
            }
        }
        // Flush what the store committed last; dropping the queues then tells each client's body
        // to write what is left, and its session to close.
        while let Ok(batch) = self.committed.try_recv() {
            self.fan_out(batch);
        }
    }

    /// Adds to `batch` what is committed within the gather window after it, so each client is
    /// woken once and writes once for all of it: at 100 messages a second, a fleet client's
    /// frames otherwise each cost a wake-up and a `write()` of their own. With no fleet client
    /// connected, nothing is gathered. Clients joining meanwhile are added as usual: the seam
    /// is the last seq fanned out, which these are not yet.
    async fn gather(
        &mut self,
        mut batch: Vec<StoredMessage>,
        stop: &CancellationToken,
    ) -> Vec<StoredMessage> {
        // Only a client that takes every vehicle gets enough frames in a window for them to
        // share a write; a vehicle stream's next frame is usually a window or more away.
        if self.gather.is_zero() || self.receivers.fleet.is_empty() {
            return batch;
        }
        let until = tokio::time::sleep(self.gather);
        tokio::pin!(until);
        loop {
            tokio::select! {
                biased;
                Some(cmd) = self.commands.recv() => self.handle(cmd),
                more = self.committed.recv() => match more {
                    Some(more) => batch.extend(more),
                    None => return batch,
                },
                _ = &mut until => return batch,
                _ = stop.cancelled() => return batch,
            }
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Register {
                filter,
                stream,
                conflate,
                slot,
                reply,
            } => {
                let conflation = conflate.then(|| Arc::new(Conflation::default()));
                let id = self.next_id;
                self.next_id += 1;
                let (tx, queue) = QueueTx::new(self.queue, conflation.clone());
                let lagged = Arc::new(Notify::new());
                self.receivers.add(id, &filter);
                self.clients.insert(
                    id,
                    Client {
                        filter: filter.clone(),
                        stream,
                        connected_at: Utc::now(),
                        tx,
                        lagging: false,
                        lagged: lagged.clone(),
                        conflation,
                    },
                );
                let registration = Registration {
                    id,
                    lagged,
                    filter,
                    last_seq: self.last_seq,
                    _slot: slot,
                };
                if reply.send((registration, queue)).is_err() {
                    self.remove(id);
                }
            }
            Command::Update { id, change, reply } => {
                if let Some(client) = self.clients.get_mut(&id) {
                    self.receivers.remove(id, &client.filter);
                    client.filter.apply(change);
                    self.receivers.add(id, &client.filter);
                    let _ = reply.send(client.filter.clone());
                }
            }
            Command::Rejoin { id, reply } => {
                if let Some(client) = self.clients.get_mut(&id) {
                    client.lagging = false;
                    let _ = reply.send(self.last_seq);
                }
            }
            Command::Unregister(id) => self.remove(id),
            Command::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
        }
    }

    fn remove(&mut self, id: ClientId) {
        if let Some(client) = self.clients.remove(&id) {
            self.receivers.remove(id, &client.filter);
        }
    }

    /// Sends each client what `batch` holds for it as one run: the frames of a filter are
    /// gathered once and shared by every client with that filter, so a batch costs each
    /// receiver one queue push, not one per message (a thousand fleet clients at ingest rates
    /// were millions of pushes a second on the thread that also stores).
    fn fan_out(&mut self, batch: Vec<StoredMessage>) {
        let now = Utc::now();
        let broadcast_time = format_time(now);
        let count = self.connections.load(Relaxed);
        // Observed locally and added to the shared histogram once, when the batch is done.
        let lags = self.metrics.broadcast_lag_seconds.local();
        let keep = self.keep_frames;
        let mut vehicles = BTreeSet::new();
        // Every message is serialized once, if a client may take it or the ring keeps it.
        let frames: Vec<Option<Frame>> = batch
            .iter()
            .map(|msg| {
                self.metrics.broadcast.add(msg.kind, 1);
                let lag = (now - msg.received_at)
                    .num_microseconds()
                    .unwrap_or(0)
                    .max(0);
                lags.observe(lag as f64 / 1e6);
                vehicles.insert(msg.vehicle_id);
                (keep || self.receivers.any_of(msg.vehicle_id)).then(|| Frame {
                    seq: msg.seq,
                    bytes: frame::encode(msg, &broadcast_time, count, false),
                    key: conflate::key_of(msg),
                })
            })
            .collect();
        lags.flush();
        let mut runs: HashMap<Filter, Frames> = HashMap::new();
        let mut dropped = Vec::new();
        for id in self.receivers.of(&vehicles) {
            let Some(client) = self.clients.get_mut(&id) else {
                continue;
            };
            if client.lagging {
                continue;
            }
            let run = match runs.get(&client.filter) {
                Some(run) => run.clone(),
                None => {
                    let run: Frames = batch
                        .iter()
                        .zip(&frames)
                        .filter(|(msg, _)| client.filter.matches(msg.vehicle_id, msg.kind))
                        .filter_map(|(_, frame)| frame.clone())
                        .collect();
                    runs.insert(client.filter.clone(), run.clone());
                    run
                }
            };
            if run.is_empty() {
                continue;
            }
            let sent = match &client.conflation {
                Some(conflation) => conflation.offer(run, &client.tx),
                None => client.tx.try_send(run),
            };
            match sent {
                Ok(()) => {}
                Err(Refused::Full(..)) => {
                    // Its session catches up (from the replay ring or the database) after the
                    // last frame queued.
                    client.lagging = true;
                    client.lagged.notify_one();
                    self.metrics.clients_caught_up.inc();
                    log::debug!(
                        "hub: client {id} fell {} frames behind; it catches up from the database",
                        self.queue
                    );
                }
                // The session is ending; its Unregister is on the way.
                Err(Refused::Closed) => dropped.push(id),
            }
        }
        if keep {
            // unwrap: see `HubHandle::replay_page`.
            let mut ring = self.ring.write().unwrap();
            for (msg, frame) in batch.iter().zip(frames) {
                if let Some(frame) = frame {
                    ring.push(msg.seq, msg.vehicle_id, msg.kind, frame.bytes);
                }
            }
        }
        for id in dropped {
            self.remove(id);
        }
        if let Some(last) = batch.last() {
            self.last_seq = last.seq;
        }
    }

    fn snapshot(&self) -> HubSnapshot {
        let mut by_stream = BTreeMap::from([("all_vehicles", 0), ("vehicle", 0)]);
        let mut by_vehicle = BTreeMap::new();
        let mut infos: Vec<_> = self
            .clients
            .iter()
            .map(|(id, c)| {
                let client_info = match c.stream {
                    Stream::AllVehicles => {
                        *by_stream.entry("all_vehicles").or_default() += 1;
                        serde_json::json!({})
                    }
                    Stream::Vehicle(v) => {
                        *by_stream.entry("vehicle").or_default() += 1;
                        serde_json::json!({ "vehicle_filter": v })
                    }
                };
                for v in &c.filter.vehicles {
                    *by_vehicle.entry(*v).or_default() += 1;
                }
                ConnectionInfo {
                    client_id: *id,
                    connected_at: format_time(c.connected_at),
                    client_info,
                    filter: c.filter.clone(),
                }
            })
            .collect();
        infos.sort_by_key(|i| i.client_id);
        HubSnapshot {
            active_connections: self.clients.len(),
            connections_info: infos,
            connections_by_stream: by_stream,
            connections_by_vehicle: by_vehicle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MessageType;

    fn ids(r: &Receivers, vehicle: i64) -> Vec<ClientId> {
        let mut v = r.of(&BTreeSet::from([vehicle]));
        v.sort_unstable();
        v
    }

    #[test]
    fn receivers_are_the_fleet_clients_and_those_naming_the_vehicle_each_once() {
        let types = BTreeSet::from([MessageType::VehicleLog]);
        let mut fleet = Filter::all_vehicles(types.clone());
        fleet.vehicles.insert(1); // "all" and a vehicle: still one receiver
        let one = Filter::vehicle(1, types.clone());
        let mut both = Filter::vehicle(1, types.clone());
        both.vehicles.insert(2);
        let mut r = Receivers::default();
        r.add(10, &fleet);
        r.add(11, &one);
        r.add(12, &both);
        assert_eq!(ids(&r, 1), [10, 11, 12]);
        assert_eq!(ids(&r, 2), [10, 12]);
        assert_eq!(ids(&r, 3), [10]);
        let mut both_ids = r.of(&BTreeSet::from([1, 2]));
        both_ids.sort_unstable();
        assert_eq!(
            both_ids,
            [10, 11, 12],
            "a client naming both is offered the batch once"
        );
        r.remove(12, &both);
        r.remove(10, &fleet);
        assert_eq!(ids(&r, 1), [11]);
        assert!(ids(&r, 2).is_empty());
        assert!(!r.by_vehicle.contains_key(&2), "empty lists are dropped");
    }
}
