//! One WebSocket session: sends the snapshot and replay, answers client frames, pings, catches
//! a lagging client up, and closes with the right code. Live frames do not pass through it: the
//! connection's body takes them from the hub queue ([`super::body`]). Runs on the actix worker
//! that accepted the connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason};
use bytestring::ByteString;
use chrono::Utc;
use sea_orm::DatabaseConnection;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

use super::body::{BodyHandle, Out as BodyOut};
use super::protocol::{self, close, ClientFrame};
use crate::commands::{Caller, Commands, Refused};
use crate::domain::{format_time, MessageType};
use crate::hub::{
    frame, ConnectionSlot, Filter, FilterChange, HubHandle, Queue, Registration, Stream,
};
use crate::metrics::Metrics;
use crate::store::replay;

#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    pub heartbeat: Duration,
    pub client_timeout: Duration,
    /// How many seqs back `since=` may reach before the client is told to resync.
    pub replay_window: i64,
    /// Client messages per second allowed on average, and in a burst.
    pub client_rate: f64,
    pub client_burst: f64,
    /// A client whose socket takes nothing for this long is closed (3001).
    pub stall_timeout: Duration,
}

pub struct SessionContext {
    pub hub: HubHandle,
    pub db: DatabaseConnection,
    pub metrics: Arc<Metrics>,
    pub config: SessionConfig,
    pub commands: Commands,
}

/// What the client asked for when it connected.
pub struct Opening {
    pub slot: ConnectionSlot,
    pub stream: Stream,
    pub filter: Filter,
    /// `since=`: replay every stored message after this seq first.
    pub since: Option<i64>,
    /// `snapshot=latest`: first the latest vehicle_log of each vehicle in the filter.
    pub snapshot: bool,
    /// Who the client is: what its credential allows it to subscribe to and to command.
    pub caller: Caller,
    /// `conflate=latest`: when behind, skip to the latest message per vehicle and type instead
    /// of being disconnected.
    pub conflate: bool,
}

/// Messages read from the database per query while replaying.
const REPLAY_PAGE: u64 = 500;

/// Runs the session until either side ends it.
///
/// An `async move` block rather than an `async fn`: an `async fn` keeps its arguments twice in
/// its future (as arguments, then as the body's locals), and this future is what every idle
/// connection's task holds. It was 2,344 bytes as an `async fn`; 1,752 as this block; 1,560
/// with [`Out`]'s sends that wait in futures of their own; 1,360 with the opening boxed (it is
/// used up, and its box freed, before the session settles).
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn run(
    body: BodyHandle,
    mut stream: AggregatedMessageStream,
    opening: Box<Opening>,
    ctx: SessionContext,
) -> impl Future<Output = ()> {
    async move {
        let vehicle_id = match opening.stream {
            Stream::Vehicle(id) => Some(id),
            Stream::AllVehicles => None,
        };
        let hello = protocol::connection(ctx.hub.connection_count(), vehicle_id, &opening.filter);
        let caller = opening.caller.clone();
        let mut out = Out {
            body: &body.out,
            stall_timeout: ctx.config.stall_timeout,
            stalled: false,
        };
        let closing = match out.send(hello).await {
            Err(Closed) => None,
            // Boxed, like the other rare paths below: a future holds room for its largest state, and
            // the database queries of opening, catching up and commands would otherwise make every
            // idle connection's task 6.7 KiB.
            Ok(()) => match Box::pin(open_stream(&mut out, &ctx, opening)).await {
                Ok(mut reg) => {
                    let reason = serve(
                        &mut out,
                        &mut stream,
                        &mut reg,
                        &body,
                        (vehicle_id, &caller),
                        &ctx,
                    )
                    .await;
                    ctx.hub.unregister(reg.id).await;
                    reason
                }
                Err(reason) => reason,
            },
        };
        let closing = if out.stalled {
            ctx.metrics.slow_clients_dropped.inc();
            log::warn!(
                "ws: a client took nothing for {:?}; closing it as a slow consumer",
                ctx.config.stall_timeout
            );
            Some(reason(
                close::SLOW_CONSUMER,
                "slow consumer: reconnect and resume with since=",
            ))
        } else {
            closing
        };
        if let Some(r) = &closing {
            log::debug!("ws: closing with {r:?}");
        }
        // The hub no longer holds anything for this client; the close frame waits behind what the
        // socket has not taken, for at most the client timeout.
        let close = body.out.send(Box::new(BodyOut::Close(closing)));
        let _ = tokio::time::timeout(ctx.config.client_timeout, close).await;
    }
}

/// The session's writing half: what it sends goes through the connection's body, in order.
struct Out<'a> {
    body: &'a tokio::sync::mpsc::Sender<Box<BodyOut>>,
    stall_timeout: Duration,
    /// A send made no progress for `stall_timeout`: the client is not reading.
    stalled: bool,
}

struct Closed;

impl<'a> Out<'a> {
    fn send<T: Into<ByteString>>(
        &mut self,
        text: T,
    ) -> impl Future<Output = Result<(), Closed>> + use<'_, 'a, T> {
        self.put(BodyOut::Text(text.into()))
    }

    /// Most sends find room at once and are done before the future is polled; only one that
    /// waits gets a timer, in a future of its own (boxed: the session's future, which every
    /// idle connection holds, would otherwise keep room for it at each place it sends).
    fn put(&mut self, out: BodyOut) -> impl Future<Output = Result<(), Closed>> + use<'_, 'a> {
        let queued = match self.body.try_send(Box::new(out)) {
            Ok(()) => Ok(None),
            Err(TrySendError::Closed(_)) => Err(Closed),
            Err(TrySendError::Full(out)) => Ok(Some(out)),
        };
        async move {
            match queued? {
                None => Ok(()),
                Some(out) => Box::pin(self.wait_to_put(out)).await,
            }
        }
    }

    async fn wait_to_put(&mut self, out: Box<BodyOut>) -> Result<(), Closed> {
        match tokio::time::timeout(self.stall_timeout, self.body.send(out)).await {
            Ok(sent) => sent.map_err(|_| Closed),
            Err(_) => {
                self.stalled = true;
                Err(Closed)
            }
        }
    }

    /// Lets the body take live frames after `after` (with the client's queue the first time).
    async fn live(&mut self, after: i64, queue: Option<Queue>) -> Result<(), Closed> {
        self.put(BodyOut::Live { after, queue }).await
    }

    /// Stops live frames once the client's queue is written; returns the last seq written.
    async fn pause(&mut self) -> Result<i64, Closed> {
        let (reply, written) = tokio::sync::oneshot::channel();
        self.put(BodyOut::Pause(reply)).await?;
        match tokio::time::timeout(self.stall_timeout, written).await {
            Ok(written) => written.map_err(|_| Closed),
            Err(_) => {
                self.stalled = true;
                Err(Closed)
            }
        }
    }
}

/// Sends the snapshot and the replay the client asked for, joins the hub, and lets the body
/// take live frames after the last seq already sent, so the seam between replay and live has no
/// gap and no duplicate.
async fn open_stream(
    out: &mut Out<'_>,
    ctx: &SessionContext,
    opening: Box<Opening>,
) -> Result<Registration, Option<CloseReason>> {
    let ((reg, queue), after) = replay_and_register(out, ctx, *opening).await?;
    out.live(after, Some(queue)).await.map_err(|_| None)?;
    Ok(reg)
}

/// The registration with its queue, and the last seq already sent.
async fn replay_and_register(
    out: &mut Out<'_>,
    ctx: &SessionContext,
    opening: Opening,
) -> Result<((Registration, Queue), i64), Option<CloseReason>> {
    let Opening {
        slot,
        stream,
        filter,
        since,
        snapshot,
        caller: _,
        conflate,
    } = opening;
    let vehicles = (!filter.all).then(|| filter.vehicles.clone());
    let now = || format_time(Utc::now());
    let count = ctx.hub.connection_count();

    // The live stream starts after the snapshot's newest message at least: a message committed
    // before the snapshot was read but not yet broadcast (the hub gathers for `WS_GATHER_MS`)
    // is older than the state the client was just given.
    let mut snapshot_seq = 0;
    if snapshot && filter.types.contains(&MessageType::VehicleLog) {
        let latest = replay::latest_vehicle_logs(&ctx.db, vehicles.as_ref())
            .await
            .map_err(unavailable)?;
        snapshot_seq = latest.iter().map(|m| m.seq).max().unwrap_or(0);
        let at = now();
        for msg in &latest {
            out.send(frame::encode(msg, &at, count, true))
                .await
                .map_err(|_| None)?;
        }
    }

    let mut sel = replay::Selection {
        vehicles,
        types: filter.types.clone(),
        after_seq: 0,
        up_to_seq: None,
    };
    // `floor`: a client told to reload history (resync) up to the last stored seq goes live
    // after it, even if those messages are still being gathered for broadcast.
    let register = move |floor: i64| async move {
        let (reg, queue) = ctx.hub.register(slot, filter, stream, conflate).await?;
        let seam = reg.last_seq.max(snapshot_seq).max(floor);
        Some(((reg, queue), seam))
    };
    if let Some(since) = since {
        let last = replay::last_seq(&ctx.db).await.map_err(unavailable)?;
        let purged = crate::retention::purged_through(&ctx.db, sel.types.iter().copied())
            .await
            .map_err(unavailable)?;
        if since < purged && since <= last {
            out.send(protocol::purged(
                since,
                last,
                ctx.config.replay_window,
                purged,
            ))
            .await
            .map_err(|_| None)?;
            return register(last).await.ok_or_else(shutting_down);
        }
        if since <= last && last - since <= ctx.config.replay_window {
            // Catch up from the database without holding a hub queue, which could overflow.
            sel.after_seq = since;
            return replay_then_join(out, ctx, &mut sel, count, register(0)).await;
        }
        out.send(protocol::resync(since, last, ctx.config.replay_window))
            .await
            .map_err(|_| None)?;
        return register(last).await.ok_or_else(shutting_down);
    }
    register(0).await.ok_or_else(shutting_down)
}

/// Sends what is stored after `sel.after_seq`, joins the live stream with `join` (which gives
/// the last seq broadcast before the join: the seam), then sends what was committed up to the
/// seam. Returns what `join` gave and the cursor: live frames up to it must be skipped. Used
/// when a stream opens with `since=` and when a client catches up after a burst.
async fn replay_then_join<T>(
    out: &mut Out<'_>,
    ctx: &SessionContext,
    sel: &mut replay::Selection,
    count: usize,
    join: impl Future<Output = Option<(T, i64)>>,
) -> Result<(T, i64), Option<CloseReason>> {
    replay_pages(out, ctx, sel, count).await?;
    let (joined, seam) = join.await.ok_or_else(shutting_down)?;
    sel.up_to_seq = Some(seam);
    replay_pages(out, ctx, sel, count).await?;
    Ok((joined, sel.after_seq.max(seam)))
}

fn shutting_down() -> Option<CloseReason> {
    Some(reason(close::GOING_AWAY, "server shutting down"))
}

/// Stored messages could not be read: the client should come back later.
fn unavailable(e: sea_orm::DbErr) -> Option<CloseReason> {
    log::error!("ws: reading stored messages failed: {e}");
    Some(reason(
        close::TRY_AGAIN_LATER,
        "stored messages are unavailable; retry",
    ))
}

/// Sends every stored message matching `sel`, page by page; leaves `sel.after_seq` at the last
/// one sent. Within the replay ring's reach the pages are the hub's own frames (what it has
/// broadcast so far: the seam's second pass sends the rest); older ones are read from the
/// database and serialized.
async fn replay_pages(
    out: &mut Out<'_>,
    ctx: &SessionContext,
    sel: &mut replay::Selection,
    count: usize,
) -> Result<(), Option<CloseReason>> {
    loop {
        if let Some(page) = ctx.hub.replay_page(sel, REPLAY_PAGE as usize) {
            let full = page.len() == REPLAY_PAGE as usize;
            ctx.hub.replay_pace(page.len()).await;
            ctx.metrics.replayed_from_ring.inc_by(page.len() as u64);
            for (seq, bytes) in page {
                out.send(bytes).await.map_err(|_| None)?;
                sel.after_seq = seq;
            }
            if !full {
                return Ok(());
            }
            continue;
        }
        let turn = ctx.hub.replay_turn().await;
        let page = replay::messages_after(&ctx.db, sel, REPLAY_PAGE)
            .await
            .map_err(unavailable)?;
        drop(turn);
        ctx.hub.replay_pace(page.len()).await;
        let at = format_time(Utc::now());
        ctx.metrics.replayed_from_database.inc_by(page.len() as u64);
        for msg in &page {
            out.send(frame::encode(msg, &at, count, false))
                .await
                .map_err(|_| None)?;
            sel.after_seq = msg.seq;
        }
        if (page.len() as u64) < REPLAY_PAGE {
            return Ok(());
        }
    }
}

async fn serve(
    out: &mut Out<'_>,
    stream: &mut AggregatedMessageStream,
    reg: &mut Registration,
    body: &BodyHandle,
    (vehicle_id, caller): (Option<i64>, &Caller),
    ctx: &SessionContext,
) -> Option<CloseReason> {
    let config = ctx.config;
    let mut limiter = RateLimit::new(config.client_rate, config.client_burst);
    let mut last_heard = Instant::now();
    let mut heartbeat = interval_at(Instant::now() + config.heartbeat, config.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let lagged = reg.lagged.clone();
    loop {
        let reply = tokio::select! {
            biased;
            // The hub has ended (shutdown, after the store's last commit) and the body has
            // written every committed frame queued for this client.
            _ = body.hub_ended.notified() => return shutting_down(),
            // The hub stopped queueing for this client when its queue overflowed: once the body
            // has written the queue, catch up from the database and rejoin.
            _ = lagged.notified() => {
                if let Err(reason) = Box::pin(catch_up(out, ctx, reg)).await {
                    return reason;
                }
                // The client's messages were not read meanwhile; that was our doing.
                last_heard = Instant::now();
                continue;
            }
            msg = stream.recv() => {
                last_heard = Instant::now();
                match msg {
                    None => return None,
                    Some(Err(actix_ws::ProtocolError::Overflow)) => {
                        return Some(reason(close::TOO_BIG, "frame too large"));
                    }
                    Some(Err(e)) => return Some(CloseReason { code: CloseCode::Protocol, description: Some(e.to_string()) }),
                    Some(Ok(AggregatedMessage::Text(_) | AggregatedMessage::Binary(_))) if !limiter.allow() => {
                        ctx.metrics.client_messages_dropped.inc();
                        match limiter.notice() {
                            Some(dropped) => protocol::error(&format!(
                                "Rate limit exceeded: at most {} messages per second; {dropped} dropped", config.client_rate
                            )),
                            None => continue,
                        }
                    }
                    Some(Ok(AggregatedMessage::Text(text))) => Box::pin(handle_text(&text, reg, vehicle_id, caller, ctx)).await,
                    Some(Ok(AggregatedMessage::Binary(_))) => protocol::error("Binary frames are not supported; send JSON text"),
                    Some(Ok(AggregatedMessage::Ping(bytes))) => {
                        if out.put(BodyOut::Pong(bytes)).await.is_err() {
                            return None;
                        }
                        continue;
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => continue,
                    Some(Ok(AggregatedMessage::Close(r))) => return r,
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > config.client_timeout {
                    return Some(reason(close::HEARTBEAT_TIMEOUT, "no answer to pings"));
                }
                if out.put(BodyOut::Ping).await.is_err() {
                    return None;
                }
                continue;
            }
        };
        if out.send(reply).await.is_err() {
            return None;
        }
    }
}

/// After a burst overflowed the client's queue: once the body has written what was queued,
/// sends every stored message after it that matches the client's filter, rejoins the hub,
/// sends what was committed up to the seam, and lets the body take live frames after that. A
/// client further behind than the replay window is closed (3001) instead.
async fn catch_up(
    out: &mut Out<'_>,
    ctx: &SessionContext,
    reg: &Registration,
) -> Result<(), Option<CloseReason>> {
    let cursor = out.pause().await.map_err(|_| None)?;
    let last = replay::last_seq(&ctx.db).await.map_err(unavailable)?;
    if last - cursor > ctx.config.replay_window {
        ctx.metrics.slow_clients_dropped.inc();
        return Err(Some(reason(
            close::SLOW_CONSUMER,
            "slow consumer: fell behind the replay window; reload history over REST and resume",
        )));
    }
    let mut sel = replay::Selection {
        vehicles: (!reg.filter.all).then(|| reg.filter.vehicles.clone()),
        types: reg.filter.types.clone(),
        after_seq: cursor,
        up_to_seq: None,
    };
    let count = ctx.hub.connection_count();
    let rejoin = async { ctx.hub.rejoin(reg.id).await.map(|seam| ((), seam)) };
    let ((), cursor) = replay_then_join(out, ctx, &mut sel, count, rejoin).await?;
    out.live(cursor, None).await.map_err(|_| None)
}

/// A token bucket for what a client sends: a flood is dropped (with an error frame at most
/// once a second) instead of costing the server work or memory.
struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
    dropped: u64,
    noticed: Option<Instant>,
}

impl RateLimit {
    fn new(rate: f64, burst: f64) -> Self {
        RateLimit {
            rate,
            burst,
            tokens: burst,
            at: Instant::now(),
            dropped: 0,
            noticed: None,
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// The number dropped so far, if the client should be told now.
    fn notice(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .noticed
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return None;
        }
        self.noticed = Some(now);
        Some(self.dropped)
    }
}

async fn handle_text(
    text: &str,
    reg: &mut Registration,
    vehicle_id: Option<i64>,
    caller: &Caller,
    ctx: &SessionContext,
) -> String {
    let (scope, hub) = (&caller.grant.scope, &ctx.hub);
    match ClientFrame::parse(text) {
        Ok(ClientFrame::Ping(ts)) => protocol::pong(ts, vehicle_id),
        Ok(ClientFrame::Change(FilterChange::Subscribe(v)))
            if !v.map_or(scope.is_all(), |id| scope.allows(id)) =>
        {
            protocol::error(&match v {
                Some(id) => format!("Not allowed: this token does not allow vehicle {id}"),
                None => "Not allowed: this token is limited to some vehicles".to_owned(),
            })
        }
        Ok(ClientFrame::Change(change)) => match hub.update(reg.id, change).await {
            Some(filter) => {
                let ack = protocol::subscription_ack(change, &filter);
                reg.filter = filter;
                ack
            }
            None => protocol::error("The server is shutting down"),
        },
        Ok(ClientFrame::Command(vehicle, request)) => {
            let request_id = request.request_id.clone();
            match send_command(ctx, caller, vehicle, request).await {
                Ok((record, repeat)) => protocol::command_accepted(record, repeat),
                Err(e) => protocol::command_error(&e.to_string(), request_id),
            }
        }
        Err(e) => protocol::command_error(&e.message, e.request_id),
    }
}

/// A `command` frame: the vehicle by id, then the commands service's checks.
async fn send_command(
    ctx: &SessionContext,
    caller: &Caller,
    vehicle: i64,
    request: seano_wire::CommandRequest,
) -> Result<(seano_wire::CommandRecord, bool), Refused> {
    let key = crate::domain::VehicleKey::Id(vehicle);
    let Some(vehicle) = crate::store::queries::resolve_vehicle(&ctx.db, &key).await? else {
        return Err(Refused::UnknownVehicle(format!("no vehicle {vehicle}")));
    };
    ctx.commands.send(caller, &vehicle, request).await
}

fn reason(code: u16, description: &str) -> CloseReason {
    CloseReason {
        code: CloseCode::from(code),
        description: Some(description.to_owned()),
    }
}
