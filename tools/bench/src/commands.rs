//! The commands mode's clients: each WebSocket client owns some of the boats, narrows its
//! stream to their `command_status` frames, sends the commands the pacer (in `scenario`) hands
//! it, and times each one from writing its frame to the `command_accepted` answer, to its
//! `sent` state and to its final state. Frames are written and read as the gateway's own wire
//! types (`seano_wire::frame`, `seano_wire::command`).
//!
//! One task per client owns its socket and its log; the coordinator only reads the shared
//! [`Progress`] counters until the end, then takes every [`ClientLog`] and [`account`]s them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use seano_wire::frame::{
    ClientFrame, CommandAcceptedFrame, DataFrame, ErrorFrame, SubscriptionAckFrame,
};
use seano_wire::{CommandRecord, CommandRequest, CommandState, Filter, FilterChange, MessageType};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::clients;
use crate::track::{latency, Latency};

/// The stream every command client opens: command state changes only.
pub const PATH: &str = "/api/ws?types=command_status";

/// Subscription frames a client sends at once before pacing them: the gateway drops a client
/// frame over WS_CLIENT_BURST (40 by default) unanswered.
const UNPACED_FRAMES: usize = 30;
/// The pace after those, below the default WS_CLIENT_RATE (20 per second).
const FRAME_GAP: Duration = Duration::from_millis(60);
/// `error` frames naming no command kept per client, for the notes.
const MAX_NOTICES: usize = 5;
/// Distinct refusal messages kept in the figures; the rest are counted under `other`.
const MAX_REFUSAL_KINDS: usize = 8;

/// One command for a client to send.
#[derive(Debug)]
pub struct Order {
    pub vehicle: i64,
    pub command: String,
    pub request_id: String,
}

/// What happened to one command, as its client saw it. Durations are from writing its frame.
#[derive(Clone, Debug)]
pub struct Entry {
    sent_at: Instant,
    /// To the `command_accepted` answer.
    accepted: Option<Duration>,
    /// The answer said `repeat: true`: the request_id was already a command.
    repeat: bool,
    /// To the `sent` command_status (the broker took it).
    sent: Option<Duration>,
    /// To the first final command_status, and its state.
    done: Option<(CommandState, Duration)>,
    /// Final command_status frames after the first.
    extra_finals: u64,
    /// The message of the `error` frame that refused it.
    refused: Option<String>,
}

impl Entry {
    fn new(sent_at: Instant) -> Self {
        Entry {
            sent_at,
            accepted: None,
            repeat: false,
            sent: None,
            done: None,
            extra_finals: 0,
            refused: None,
        }
    }

    fn settled(&self) -> bool {
        self.done.is_some() || self.refused.is_some()
    }
}

/// Counters the coordinator watches while the clients run.
#[derive(Debug, Default)]
pub struct Progress {
    /// Command frames written.
    pub sent: AtomicU64,
    /// Commands that reached a final state or were refused.
    pub settled: AtomicU64,
}

/// What one client saw.
#[derive(Debug, Default)]
pub struct ClientLog {
    /// Its commands, by request_id.
    entries: HashMap<String, Entry>,
    /// command_status / command_accepted frames of a request_id this client did not send.
    foreign: u64,
    /// `error` frames naming none of its commands (the gateway's client-rate notice, for one):
    /// how many, and the first few messages.
    notices: u64,
    notice_texts: Vec<String>,
    /// Why the connection ended before the bench closed it.
    pub closed: Option<String>,
}

/// A server frame, as far as the commands mode cares.
#[derive(Debug)]
enum Incoming {
    Status(CommandRecord),
    Accepted(CommandAcceptedFrame),
    Error(ErrorFrame),
    SubscriptionAck(SubscriptionAckFrame),
    Other,
}

fn parse(text: &str) -> Incoming {
    if let Ok(frame) = serde_json::from_str::<DataFrame>(text) {
        if frame.kind == MessageType::CommandStatus {
            if let Ok(record) = serde_json::from_str::<CommandRecord>(frame.data.get()) {
                return Incoming::Status(record);
            }
        }
        return Incoming::Other;
    }
    if let Ok(frame) = serde_json::from_str::<CommandAcceptedFrame>(text) {
        return Incoming::Accepted(frame);
    }
    if let Ok(frame) = serde_json::from_str::<ErrorFrame>(text) {
        return Incoming::Error(frame);
    }
    if let Ok(frame) = serde_json::from_str::<SubscriptionAckFrame>(text) {
        return Incoming::SubscriptionAck(frame);
    }
    Incoming::Other
}

impl ClientLog {
    fn record(&mut self, frame: Incoming, now: Instant, progress: &Progress) {
        let settle = || progress.settled.fetch_add(1, Relaxed);
        match frame {
            Incoming::Status(record) => {
                let Some(e) = self.entries.get_mut(&record.request_id) else {
                    self.foreign += 1;
                    return;
                };
                let after = now.duration_since(e.sent_at);
                if record.status == CommandState::Sent {
                    e.sent.get_or_insert(after);
                } else if record.status.is_final() {
                    if e.done.is_some() {
                        e.extra_finals += 1;
                    } else {
                        if !e.settled() {
                            settle();
                        }
                        e.done = Some((record.status, after));
                    }
                }
            }
            Incoming::Accepted(frame) => {
                let Some(e) = self.entries.get_mut(&frame.command.request_id) else {
                    self.foreign += 1;
                    return;
                };
                e.accepted.get_or_insert(now.duration_since(e.sent_at));
                e.repeat |= frame.repeat;
            }
            Incoming::Error(frame) => {
                match frame
                    .request_id
                    .as_ref()
                    .and_then(|id| self.entries.get_mut(id))
                {
                    Some(e) => {
                        if !e.settled() {
                            settle();
                        }
                        e.refused.get_or_insert(frame.message);
                    }
                    None => {
                        self.notices += 1;
                        if self.notice_texts.len() < MAX_NOTICES {
                            self.notice_texts.push(frame.message);
                        }
                    }
                }
            }
            Incoming::SubscriptionAck(_) | Incoming::Other => {}
        }
    }
}

/// Opens a command client's stream ([`PATH`]) and narrows it to `vehicles`: `unsubscribe` from
/// every vehicle, then `subscribe` to each of its own, each answered by a `subscription_ack`.
/// A client then receives the state changes of its own commands only.
pub async fn connect(
    addr: SocketAddr,
    authority: &str,
    read_buffer: usize,
    vehicles: &[i64],
) -> Result<WebSocketStream<TcpStream>> {
    let mut ws = clients::open(addr, authority, PATH, read_buffer, None).await?;
    let changes = std::iter::once(FilterChange::Unsubscribe(None))
        .chain(vehicles.iter().map(|v| FilterChange::Subscribe(Some(*v))));
    let mut filter = None;
    for (i, change) in changes.enumerate() {
        if i >= UNPACED_FRAMES {
            tokio::time::sleep(FRAME_GAP).await;
        }
        let text = ClientFrame::Change(change).to_text();
        ws.send(Message::Text(text.into()))
            .await
            .context("sending a subscription change")?;
        filter = Some(subscription_ack(&mut ws).await?);
    }
    let want = Filter {
        all: false,
        vehicles: vehicles.iter().copied().collect::<BTreeSet<_>>(),
        types: BTreeSet::from([MessageType::CommandStatus]),
    };
    if filter.as_ref() != Some(&want) {
        bail!("the gateway's filter is {filter:?} after subscribing, not {want:?}");
    }
    Ok(ws)
}

/// Reads up to the next `subscription_ack`; its filter.
async fn subscription_ack(ws: &mut WebSocketStream<TcpStream>) -> Result<Filter> {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => match parse(t.as_str()) {
                    Incoming::SubscriptionAck(ack) => return Ok(ack.filter),
                    Incoming::Error(e) => bail!("subscribing: the gateway said {}", e.message),
                    _ => continue,
                },
                Some(Ok(Message::Close(f))) => bail!("closed while subscribing: {f:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("while subscribing: {e}"),
                None => bail!("closed while subscribing"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read)
        .await
        .context("no subscription_ack in 15 s")?
}

/// One command client, from its narrowed stream to `stop`: sends each order it is handed as a
/// `command` frame with `timeout_ms`, and records every answer and state change of its own
/// commands. Frames are read before orders are taken, so a backlog of answers is timed when it
/// arrives rather than after the next command goes out.
pub async fn run_client(
    mut ws: WebSocketStream<TcpStream>,
    timeout_ms: u64,
    mut orders: mpsc::Receiver<Order>,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) -> ClientLog {
    let mut log = ClientLog::default();
    let mut orders_open = true;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    log.record(parse(text.as_str()), Instant::now(), &progress);
                }
                Some(Ok(Message::Close(f))) => {
                    log.closed = Some(format!("closed by the gateway: {f:?}"));
                    return log;
                }
                Some(Ok(_)) => {} // pings are answered by tungstenite
                Some(Err(e)) => {
                    log.closed = Some(e.to_string());
                    return log;
                }
                None => {
                    log.closed = Some("the connection ended".into());
                    return log;
                }
            },
            order = orders.recv(), if orders_open => match order {
                None => orders_open = false,
                Some(order) => {
                    let frame = ClientFrame::Command(
                        order.vehicle,
                        CommandRequest {
                            command: order.command,
                            params: None,
                            request_id: Some(order.request_id.clone()),
                            timeout_ms: Some(timeout_ms),
                        },
                    )
                    .to_text();
                    log.entries.insert(order.request_id, Entry::new(Instant::now()));
                    progress.sent.fetch_add(1, Relaxed);
                    if let Err(e) = ws.send(Message::Text(frame.into())).await {
                        log.closed = Some(format!("sending a command: {e}"));
                        return log;
                    }
                }
            },
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    log
}

/// The command figures of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CommandFigures {
    /// Boats commanded (START_ID..START_ID+N-1) and the clients that commanded them.
    pub vehicles: u32,
    pub clients: u32,
    /// Commands per second asked for.
    pub target_rate: f64,
    /// Achieved: command frames written / seconds of sending.
    pub send_rate: f64,
    /// Command frames written.
    pub sent: u64,
    /// Answered by `command_accepted`.
    pub accepted: u64,
    /// Final states.
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub expired: u64,
    /// Answered by an `error` frame naming the request_id (nothing was sent to the boat).
    pub refused: u64,
    /// Neither refused nor in a final state by the end of the wait (the commands' timeout plus
    /// --drain after the last one): a command frame dropped by the gateway's client rate limit,
    /// or a state change that never reached the client.
    pub missing: u64,
    /// `command_accepted` frames with `repeat: true`, and final states after the first: both 0
    /// unless request_ids collide.
    pub repeats: u64,
    pub extra_finals: u64,
    /// Status or accepted frames of a request_id the client did not send.
    pub foreign_frames: u64,
    /// `error` frames naming no command (the gateway's client-rate notice, for one).
    pub notices: u64,
    /// Refusals by message, digits replaced by `N`.
    pub refusals: BTreeMap<String, u64>,
    /// Final states per second, from the first command to the last final state.
    pub completed_per_s: f64,
    /// Command frame written → final command_status received, milliseconds, over every command
    /// that reached a final state (a timed-out one counts with its timeout).
    pub round_trip_ms: Option<Latency>,
    /// Command frame written → `command_accepted` received.
    pub accepted_ms: Option<Latency>,
    /// Command frame written → `sent` command_status received.
    pub sent_ms: Option<Latency>,
}

/// Adds the clients' logs up. `start` is when the first command was due.
pub fn account(logs: &[ClientLog], start: Instant) -> CommandFigures {
    let mut f = CommandFigures::default();
    let (mut round_trip, mut accepted, mut sent) = (Vec::new(), Vec::new(), Vec::new());
    let us = |d: Duration| d.as_micros().min(u128::from(u32::MAX)) as u32;
    let mut last_final = None::<Instant>;
    for log in logs {
        f.foreign_frames += log.foreign;
        f.notices += log.notices;
        for e in log.entries.values() {
            f.sent += 1;
            if let Some(d) = e.accepted {
                f.accepted += 1;
                accepted.push(us(d));
            }
            f.repeats += u64::from(e.repeat);
            f.extra_finals += e.extra_finals;
            if let Some(d) = e.sent {
                sent.push(us(d));
            }
            match (&e.done, &e.refused) {
                (Some((state, d)), _) => {
                    match state {
                        CommandState::Succeeded => f.succeeded += 1,
                        CommandState::Failed => f.failed += 1,
                        CommandState::TimedOut => f.timed_out += 1,
                        CommandState::Expired => f.expired += 1,
                        CommandState::Accepted | CommandState::Sent => {}
                    }
                    round_trip.push(us(*d));
                    let at = e.sent_at + *d;
                    last_final = Some(last_final.map_or(at, |l| l.max(at)));
                }
                (None, Some(message)) => {
                    f.refused += 1;
                    let kind = refusal_kind(message);
                    let key =
                        if f.refusals.contains_key(&kind) || f.refusals.len() < MAX_REFUSAL_KINDS {
                            kind
                        } else {
                            "other".into()
                        };
                    *f.refusals.entry(key).or_default() += 1;
                }
                (None, None) => f.missing += 1,
            }
        }
    }
    let finals = f.succeeded + f.failed + f.timed_out + f.expired;
    if let Some(last) = last_final {
        let span = last.saturating_duration_since(start).as_secs_f64();
        if span > 0.0 {
            f.completed_per_s = finals as f64 / span;
        }
    }
    f.round_trip_ms = latency(&mut round_trip);
    f.accepted_ms = latency(&mut accepted);
    f.sent_ms = latency(&mut sent);
    f
}

/// A refusal's message with every run of digits as `N`, so that one reason is one key.
fn refusal_kind(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('N') {
                out.push('N');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The first few `error` frames that named no command, over all clients.
pub fn notices(logs: &[ClientLog]) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for text in logs.iter().flat_map(|l| &l.notice_texts) {
        if !all.contains(text) && all.len() < MAX_NOTICES {
            all.push(text.clone());
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    use seano_wire::frame::to_text;

    fn record(request_id: &str, status: CommandState) -> CommandRecord {
        serde_json::from_value(serde_json::json!({
            "request_id": request_id, "vehicle_id": 3, "command": "HOLD", "status": status,
            "sent_by": "local", "timeout_ms": 8000, "expires_at": "2026-05-06T08:15:10.481Z",
            "accepted_at": "2026-05-06T08:15:02.481Z"
        }))
        .unwrap()
    }

    /// A `command_status` frame as the gateway writes it.
    fn status_frame(request_id: &str, status: CommandState) -> String {
        let data = serde_json::value::to_raw_value(&record(request_id, status)).unwrap();
        to_text(&DataFrame {
            kind: MessageType::CommandStatus,
            vehicle_id: 3,
            vehicle_code: None,
            sensor_id: None,
            sensor_code: None,
            data: &data,
            timestamp: "2026-05-06T08:15:02.481Z".into(),
            broadcast_time: "2026-05-06T08:15:02.482Z".into(),
            connection_count: 1,
            id: 1,
            seq: 9,
            snapshot: false,
        })
    }

    #[test]
    fn answers_and_state_changes_are_timed_per_command() {
        let progress = Progress::default();
        let start = Instant::now();
        let mut log = ClientLog::default();
        for id in ["a", "b", "c", "d"] {
            log.entries.insert(id.into(), Entry::new(start));
        }
        let later = start + Duration::from_millis(20);
        let feed = |log: &mut ClientLog, text: String| log.record(parse(&text), later, &progress);
        let accepted = to_text(&CommandAcceptedFrame::new(
            record("a", CommandState::Accepted),
            false,
        ));
        feed(&mut log, accepted);
        feed(&mut log, status_frame("a", CommandState::Accepted));
        feed(&mut log, status_frame("a", CommandState::Sent));
        feed(&mut log, status_frame("a", CommandState::Succeeded));
        feed(&mut log, status_frame("b", CommandState::TimedOut));
        feed(&mut log, status_frame("b", CommandState::Failed));
        feed(
            &mut log,
            to_text(&ErrorFrame::command(
                "too many commands to vehicle 3: at most 2 per second",
                Some("c".into()),
            )),
        );
        feed(&mut log, to_text(&ErrorFrame::new("Rate limit exceeded")));
        feed(&mut log, status_frame("zz", CommandState::Succeeded));
        assert_eq!(progress.settled.load(Relaxed), 3);

        let f = account(&[log], start);
        assert_eq!(
            (f.sent, f.accepted, f.succeeded, f.timed_out, f.failed),
            (4, 1, 1, 1, 0)
        );
        assert_eq!((f.refused, f.missing, f.extra_finals), (1, 1, 1));
        assert_eq!((f.foreign_frames, f.notices), (1, 1));
        assert_eq!(
            f.refusals.keys().next().unwrap(),
            "too many commands to vehicle N: at most N per second"
        );
        let rt = f.round_trip_ms.unwrap();
        assert_eq!((rt.samples, rt.p50), (2, 20.0));
        assert_eq!(f.sent_ms.unwrap().samples, 1);
        assert!(f.completed_per_s > 0.0);
    }

    #[test]
    fn a_command_frame_is_what_the_gateway_parses() {
        let text = ClientFrame::Command(
            7,
            CommandRequest {
                command: "HOLD".into(),
                params: None,
                request_id: Some("bench-1-2-3".into()),
                timeout_ms: Some(8000),
            },
        )
        .to_text();
        match ClientFrame::parse(&text).unwrap() {
            ClientFrame::Command(7, request) => {
                assert_eq!(request.request_id.as_deref(), Some("bench-1-2-3"));
                assert_eq!(request.timeout_ms, Some(8000));
            }
            other => panic!("{other:?}"),
        }
    }
}
