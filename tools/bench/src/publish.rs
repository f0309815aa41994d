//! The publishers: one MQTT client per vehicle, paced so that message `k` of publisher `p` is
//! due at `start + (k + p/N) / per_publisher_rate` (evenly spread over the publishers, late
//! messages sent at once to catch up), and an event-loop task per client that records which
//! sequence numbers the broker confirmed (PUBACK for QoS 1, written for QoS 0).
//!
//! With a [`Timeline`] (the history mode), each publisher sends a fixed number of messages,
//! message `k` being the boat's state at the timeline's `k`-th time, instead of marked
//! messages for a duration.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::payload::{history_log, now_us, vehicle_log, Mark};
use crate::track::BitSet;

/// What every publisher of a step shares.
#[derive(Clone)]
pub struct PubConfig {
    pub host: String,
    pub port: u16,
    pub prefix: String,
    pub qos: QoS,
    pub inflight: u16,
    pub payload_bytes: usize,
    pub start_id: i64,
    /// The step's id, written into every payload.
    pub run: u64,
    /// Makes client ids unique across concurrent bench processes.
    pub tag: String,
    /// History mode: what each publisher sends instead of marked messages.
    pub timeline: Option<Timeline>,
}

/// A fixed series of one boat's states: message `k` is its state at `first_ms + k * step_ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timeline {
    /// Unix milliseconds of the first message's timestamp.
    pub first_ms: i64,
    pub step_ms: f64,
    /// Messages each publisher sends (the duration is then not a limit).
    pub count: u64,
}

impl Timeline {
    /// Unix milliseconds of message `k`.
    pub fn at_ms(&self, k: u64) -> i64 {
        self.first_ms + (k as f64 * self.step_ms).round() as i64
    }

    /// Unix milliseconds just past the last message: `first_ms + count * step_ms`.
    pub fn end_ms(&self) -> i64 {
        self.at_ms(self.count)
    }
}

/// A connected publisher.
pub struct Publisher {
    index: u32,
    topic: String,
    client: AsyncClient,
    /// Sequence numbers handed to the client, in order, until the event loop sees them go out.
    queue: Arc<Mutex<VecDeque<u64>>>,
    confirmed: Arc<AtomicU64>,
    events: JoinHandle<EventsOutcome>,
}

struct EventsOutcome {
    confirmed: BitSet,
    error: Option<String>,
}

/// What all publishers of a step did.
#[derive(Debug, Default)]
pub struct PublishOutcome {
    /// Publish calls made.
    pub attempted: u64,
    /// Confirmed sequence numbers, per publisher index.
    pub confirmed: Vec<BitSet>,
    pub confirmed_total: u64,
    /// Seconds from the start until the last publish call returned (at least the duration).
    pub publish_secs: f64,
    pub errors: Vec<String>,
}

/// Connects `n` publishers and waits for every CONNACK.
pub async fn connect_all(cfg: &PubConfig, n: u32) -> Result<Vec<Publisher>> {
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for index in 0..n {
        let cfg = cfg.clone();
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            // unwrap: the semaphore is never closed.
            let _permit = sem.acquire().await.unwrap();
            connect(&cfg, index).await
        }));
    }
    let mut pubs = Vec::new();
    for t in tasks {
        pubs.push(t.await.context("publisher task")??);
    }
    Ok(pubs)
}

async fn connect(cfg: &PubConfig, index: u32) -> Result<Publisher> {
    let id = format!("bench-{}-r{}-p{index}", cfg.tag, cfg.run);
    let mut opts = MqttOptions::new(id, cfg.host.clone(), cfg.port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_inflight(cfg.inflight)
        .set_max_packet_size(1 << 20, (cfg.payload_bytes + 1024).max(10 * 1024));
    let (client, eventloop) = AsyncClient::new(opts, 1000);
    let queue = Arc::new(Mutex::new(VecDeque::new()));
    let confirmed = Arc::new(AtomicU64::new(0));
    let (tx, rx) = oneshot::channel();
    let events = tokio::spawn(run_events(
        eventloop,
        cfg.qos,
        queue.clone(),
        confirmed.clone(),
        tx,
    ));
    match tokio::time::timeout(Duration::from_secs(20), rx).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => {
            anyhow::bail!(
                "publisher {index}: cannot connect to mqtt://{}:{}: {e}",
                cfg.host,
                cfg.port
            )
        }
        _ => anyhow::bail!(
            "publisher {index}: no CONNACK from mqtt://{}:{} in 20 s",
            cfg.host,
            cfg.port
        ),
    }
    Ok(Publisher {
        index,
        topic: format!("{}/{}/vehicle_log", cfg.prefix, cfg.start_id + index as i64),
        client,
        queue,
        confirmed,
        events,
    })
}

async fn run_events(
    mut eventloop: EventLoop,
    qos: QoS,
    queue: Arc<Mutex<VecDeque<u64>>>,
    confirmed_count: Arc<AtomicU64>,
    connack: oneshot::Sender<std::result::Result<(), String>>,
) -> EventsOutcome {
    let mut connack = Some(connack);
    let mut by_pkid = vec![u64::MAX; usize::from(u16::MAX) + 1];
    let mut confirmed = BitSet::default();
    let confirm = |seq: u64, confirmed: &mut BitSet| {
        if confirmed.insert(seq) {
            confirmed_count.fetch_add(1, Relaxed);
        }
    };
    let error = loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if let Some(tx) = connack.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                // unwrap: the queue's lock is never held across a panic.
                let Some(seq) = queue.lock().unwrap().pop_front() else {
                    continue;
                };
                if qos == QoS::AtMostOnce {
                    confirm(seq, &mut confirmed);
                } else {
                    by_pkid[usize::from(pkid)] = seq;
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let slot = &mut by_pkid[usize::from(ack.pkid)];
                if *slot != u64::MAX {
                    confirm(*slot, &mut confirmed);
                    *slot = u64::MAX;
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break None,
            Ok(_) => {}
            Err(e) => {
                if let Some(tx) = connack.take() {
                    let _ = tx.send(Err(e.to_string()));
                }
                break Some(e.to_string());
            }
        }
    };
    EventsOutcome { confirmed, error }
}

/// Publishes for `duration` at `rate` messages/s in total (0: as fast as the clients go), waits
/// up to `ack_wait` for the confirmations, and disconnects.
pub async fn run(
    pubs: Vec<Publisher>,
    cfg: &PubConfig,
    start: Instant,
    rate: f64,
    duration: Duration,
    ack_wait: Duration,
) -> PublishOutcome {
    let n = pubs.len();
    let per_pub = rate / n.max(1) as f64;
    let mut tasks = Vec::new();
    for p in pubs {
        let cfg = cfg.clone();
        tasks.push(tokio::spawn(async move {
            let phase = p.index as f64 / n as f64;
            let (attempted, last, error) =
                publish_loop(&p, &cfg, start, per_pub, phase, duration).await;
            // Wait for the broker to confirm what was sent, then leave.
            let deadline = Instant::now() + ack_wait;
            while p.confirmed.load(Relaxed) < attempted && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = p.client.disconnect().await;
            let events = match tokio::time::timeout(Duration::from_secs(5), p.events).await {
                Ok(Ok(o)) => o,
                _ => EventsOutcome {
                    confirmed: BitSet::default(),
                    error: Some("the MQTT event loop did not stop".into()),
                },
            };
            (
                p.index,
                attempted,
                last,
                error.or(events.error),
                events.confirmed,
            )
        }));
    }
    let mut out = PublishOutcome {
        confirmed: vec![BitSet::default(); n],
        publish_secs: duration.as_secs_f64(),
        ..Default::default()
    };
    for t in tasks {
        let Ok((index, attempted, last, error, confirmed)) = t.await else {
            out.errors.push("a publisher task panicked".into());
            continue;
        };
        out.attempted += attempted;
        out.publish_secs = out.publish_secs.max(last);
        out.confirmed_total += confirmed.len();
        out.confirmed[index as usize] = confirmed;
        if let Some(e) = error {
            out.errors.push(format!("publisher {index}: {e}"));
        }
    }
    out
}

/// Returns (publish calls, seconds from start to the last one, error).
async fn publish_loop(
    p: &Publisher,
    cfg: &PubConfig,
    start: Instant,
    per_pub: f64,
    phase: f64,
    duration: Duration,
) -> (u64, f64, Option<String>) {
    let total = match cfg.timeline {
        Some(t) => t.count,
        None if per_pub > 0.0 => (per_pub * duration.as_secs_f64()).round() as u64,
        None => u64::MAX,
    };
    let mut seq = 0;
    while seq < total {
        if per_pub > 0.0 {
            let due = start + Duration::from_secs_f64((seq as f64 + phase) / per_pub);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        } else if cfg.timeline.is_none() && start.elapsed() >= duration {
            break;
        }
        let payload = match &cfg.timeline {
            Some(t) => history_log(t.at_ms(seq), t.at_ms(seq) - t.first_ms),
            None => vehicle_log(
                Mark {
                    run: cfg.run,
                    publisher: p.index,
                    seq,
                    sent_us: now_us(),
                },
                cfg.payload_bytes,
            ),
        };
        // unwrap: the queue's lock is never held across a panic.
        p.queue.lock().unwrap().push_back(seq);
        if let Err(e) = p
            .client
            .publish(p.topic.as_str(), cfg.qos, false, payload)
            .await
        {
            return (seq, start.elapsed().as_secs_f64(), Some(e.to_string()));
        }
        seq += 1;
    }
    (seq, start.elapsed().as_secs_f64(), None)
}
