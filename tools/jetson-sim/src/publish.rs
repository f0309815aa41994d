//! [`run`]: publishes a [`Fleet`]'s messages to a broker on schedule and counts what the
//! broker acknowledged.
//!
//! The caller's task owns the schedule and the ledger (which message each packet id stands
//! for). One spawned task per connection owns the rumqttc `EventLoop`, polls it without ever
//! being cancelled mid-poll, and forwards what matters (ConnAck, each outgoing publish's
//! packet id, PubAck, loss) over a channel.
//!
//! A connection that drops after its ConnAck is not resumed: its client and event loop are
//! dropped, its unacknowledged messages are counted as lost, and a new connection (clean
//! session) takes over. That keeps the packet id → message mapping exact: rumqttc would
//! otherwise move queued requests between sessions behind our back.
//!
//! Commands come in on a second connection, [`CommandLink`], with a persistent session. The
//! caller's task also owns the boats, so it hands each command to [`Commands`], which carries
//! it out on the boat, and publishes the answer (after `ack_delay`). A message is made from its
//! boat's state only when it is due, so the next vehicle_log after a command shows it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use chrono::Utc;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, Transport};
use seano_wire::command::AckMessage;
use seano_wire::BrokerAddress;
use seano_wire::{format_time, MessageType};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::bad::BadKind;
use crate::command::{Commands, Reply};
use crate::config::SimConfig;
use crate::fleet::{Fleet, SimMessage};
use crate::link::{CommandLink, LinkEvent};
use crate::summary::{StopReason, Summary};

/// Behind schedule by more than this, the schedule slips instead of bursting to catch up.
const MAX_LAG: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Signals from a run in progress, for a caller that drives the simulator (a test must not
/// command the boats before they listen).
#[derive(Debug, Default)]
pub struct RunHooks {
    /// Fired when the broker has granted every boat's command subscription (the first time).
    pub commands_ready: Option<oneshot::Sender<()>>,
}

/// Publishes `config`'s fleet until `config.count` messages, `config.duration`, or `stop`;
/// then waits (up to `config.drain_timeout`) for the outstanding acknowledgements, disconnects
/// and returns what was sent. Meanwhile the boats obey and answer the commands sent to them.
///
/// Keeps reconnecting while the broker is unreachable; fails only if the first connection
/// does not succeed within `config.connect_timeout`, or on a configuration error.
pub async fn run(config: SimConfig, stop: CancellationToken) -> anyhow::Result<Summary> {
    run_with(config, stop, RunHooks::default()).await
}

/// [`run`], with `hooks` told how it goes.
pub async fn run_with(
    config: SimConfig,
    stop: CancellationToken,
    mut hooks: RunHooks,
) -> anyhow::Result<Summary> {
    let mut fleet = Fleet::new(&config)?;
    let options = mqtt_options(&config)?;
    let qos = if config.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    let mut summary = Summary::new(fleet.seed(), &config.broker, &config.prefix, config.qos);
    // Room for a full in-flight window plus a full request channel; never more, so that
    // `try_publish` never meets a full channel.
    let max_outstanding = 2 * usize::from(config.inflight);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut conn = Connection::open(0, options.clone(), events_tx.clone());
    let mut commands = Commands::new(&config, fleet.seed());
    let (link_tx, mut link_events) = mpsc::unbounded_channel();
    let mut link = CommandLink::open(&config, options.clone(), link_tx);
    // Answers waiting out `ack_delay`, in the order they are due (the delay is constant).
    let mut answers: VecDeque<(Instant, i64, AckMessage)> = VecDeque::new();
    let mut link_failures = 0u32;

    let started = Instant::now();
    let connect_deadline = config.connect_timeout.map(|t| started + t);
    let mut last_connect_error = String::new();
    let mut connect_failures = 0u32;
    // Simulation second 0, set at the first ConnAck; `slip` is how far the schedule slipped.
    let mut clock: Option<Instant> = None;
    let mut slip = Duration::ZERO;
    let mut stopping: Option<StopReason> = None;
    let mut drain_deadline = None;
    let mut progress = tokio::time::interval(Duration::from_secs(1));
    progress.set_missed_tick_behavior(MissedTickBehavior::Delay);
    progress.tick().await;
    let mut last_sent = 0;
    let far = || Instant::now() + Duration::from_secs(86_400);

    loop {
        // Answer every command whose delay is over.
        while answers
            .front()
            .is_some_and(|(at, ..)| *at <= Instant::now())
        {
            // unwrap: front() was Some.
            let (_, vehicle_id, mut ack) = answers.pop_front().expect("an answer is due");
            if !config.ack_delay.is_zero() {
                ack.timestamp = Some(format_time(Utc::now()));
            }
            match link.answer(vehicle_id, &ack) {
                Ok(()) if ack.status == "ok" => summary.commands.answered_ok += 1,
                Ok(()) => summary.commands.answered_error += 1,
                Err(e) => {
                    summary.commands.unsent += 1;
                    log::warn!(
                        "vehicle {vehicle_id}: answer to {} not sent: {e}",
                        ack.request_id
                    );
                }
            }
        }
        let now = Instant::now();
        if stopping.is_none() {
            if let (Some(c), Some(d)) = (clock, config.duration) {
                if now >= c + d {
                    stopping = Some(StopReason::Duration);
                }
            }
        }
        // Publish everything that is due.
        while stopping.is_none() && conn.connected && conn.outstanding() < max_outstanding {
            let Some(c) = clock else { break };
            let Some(at) = fleet.next_due() else {
                stopping = Some(StopReason::Count);
                break;
            };
            if c + slip + at > Instant::now() {
                break;
            }
            let Some(msg) = fleet.next_message() else {
                stopping = Some(StopReason::Count);
                break;
            };
            let lag = Instant::now().saturating_duration_since(c + slip + msg.at);
            if lag > MAX_LAG {
                log::debug!("{lag:?} behind schedule; the schedule slips");
                slip += lag;
            }
            summary.published += 1;
            conn.publish(msg, qos, &mut summary);
        }
        if stopping.is_some() {
            let deadline =
                *drain_deadline.get_or_insert_with(|| Instant::now() + config.drain_timeout);
            if conn.outstanding() == 0 || Instant::now() >= deadline {
                break;
            }
        }

        let due = fleet.next_due();
        let can_publish = stopping.is_none()
            && conn.connected
            && conn.outstanding() < max_outstanding
            && due.is_some();
        let next_due = match (clock, due) {
            (Some(c), Some(at)) if can_publish => c + slip + at,
            _ => far(),
        };
        let answer_due = answers.front().map_or_else(far, |(at, ..)| *at);
        let duration_end = match (clock, config.duration) {
            (Some(c), Some(d)) if stopping.is_none() => c + d,
            _ => far(),
        };
        tokio::select! {
            biased;
            _ = stop.cancelled(), if stopping.is_none() => {
                stopping = Some(StopReason::Cancelled);
            }
            // Before the telemetry events, which never run dry under a flood: commands are few.
            Some(event) = link_events.recv() => match event {
                LinkEvent::Connected { session_present } => {
                    link.connected = true;
                    link_failures = 0;
                    log::info!(
                        "command link connected to {} as {} (session {})",
                        config.broker,
                        crate::link::client_id(&config),
                        if session_present { "resumed" } else { "new" }
                    );
                }
                LinkEvent::Subscribed => {
                    log::info!("listening for commands to {} boats", config.vehicles);
                    if let Some(ready) = hooks.commands_ready.take() {
                        let _ = ready.send(());
                    }
                }
                LinkEvent::Command { topic, payload } => {
                    summary.commands.received += 1;
                    let Some((vehicle_id, boat)) =
                        link.vehicle(&topic).and_then(|id| Some((id, fleet.boat_mut(id)?)))
                    else {
                        log::warn!("command on {topic}, which is no boat's; ignored");
                        summary.commands.ignored += 1;
                        continue;
                    };
                    let ack = match commands.handle(boat, &payload, Utc::now()) {
                        Reply::Ignore => {
                            summary.commands.ignored += 1;
                            continue;
                        }
                        Reply::Answer(ack) => ack,
                        Reply::Repeat(ack) => {
                            summary.commands.repeated += 1;
                            ack
                        }
                    };
                    answers.push_back((Instant::now() + config.ack_delay, vehicle_id, ack));
                }
                LinkEvent::Down(e) => {
                    link.connected = false;
                    link_failures += 1;
                    if link_failures % 10 == 1 {
                        log::warn!(
                            "command link to {} down (attempt {link_failures}): {e}; retrying",
                            config.broker
                        );
                    }
                }
            },
            Some((generation, event)) = events.recv() => {
                if generation != conn.generation {
                    continue; // a dropped connection's leftovers; its messages are counted
                }
                match event {
                    LoopEvent::Connected => {
                        conn.connected = true;
                        connect_failures = 0;
                        log::info!("connected to {} as {}", config.broker, options.client_id());
                        if clock.is_none() {
                            clock = Some(Instant::now());
                            if config.start_time.is_none() {
                                fleet.set_origin(Utc::now());
                            }
                        }
                    }
                    LoopEvent::Outgoing(pkid) => conn.on_outgoing(pkid, qos, &mut summary),
                    LoopEvent::Acked(pkid) => conn.on_ack(pkid, &mut summary),
                    LoopEvent::ConnectFailed(e) => {
                        connect_failures += 1;
                        // The first failure of an outage, then every tenth (the backoff tops out at 5 s).
                        if connect_failures % 10 == 1 {
                            log::warn!(
                                "cannot connect to {} (attempt {connect_failures}): {e}; retrying",
                                config.broker
                            );
                        }
                        last_connect_error = e;
                    }
                    LoopEvent::Lost(e) => {
                        let lost = conn.outstanding() as u64;
                        log::warn!(
                            "connection to {} lost ({e}); {lost} unacknowledged messages lost; reconnecting",
                            config.broker
                        );
                        summary.failure_causes.lost_on_disconnect += lost;
                        summary.reconnects += 1;
                        let generation = conn.generation + 1;
                        conn.abort();
                        conn = Connection::open(generation, options.clone(), events_tx.clone());
                    }
                    LoopEvent::Closed => {}
                }
            }
            _ = sleep_until(answer_due), if !answers.is_empty() => {}
            _ = sleep_until(next_due), if can_publish => {}
            _ = sleep_until(duration_end), if stopping.is_none() && clock.is_some() => {}
            _ = sleep_until(drain_deadline.unwrap_or_else(far)), if drain_deadline.is_some() => {}
            _ = sleep_until(connect_deadline.unwrap_or_else(far)), if clock.is_none() && connect_deadline.is_some() => {
                conn.abort();
                link.abort();
                bail!(
                    "could not connect to {} within {:?}: {last_connect_error}",
                    config.broker,
                    config.connect_timeout.unwrap_or_default()
                );
            }
            _ = progress.tick(), if config.progress => {
                let secs = started.elapsed().as_secs();
                if conn.connected {
                    let avg = clock.map_or(0.0, |c| summary.total_sent as f64 / c.elapsed().as_secs_f64().max(1e-3));
                    eprintln!(
                        "[{secs:>5}s] sent {:>9}  {:>7}/s (avg {avg:.0}/s, target {:.0}/s)  in flight {:>4}  bad {}  failures {}",
                        summary.total_sent,
                        summary.total_sent - last_sent,
                        fleet.nominal_rate(),
                        conn.outstanding(),
                        summary.bad_total,
                        summary.failure_causes.total(),
                    );
                } else {
                    eprintln!("[{secs:>5}s] connecting to {} {last_connect_error}", config.broker);
                }
                last_sent = summary.total_sent;
            }
        }
    }

    summary.failure_causes.unacked_at_exit += conn.outstanding() as u64;
    conn.close().await;
    if !answers.is_empty() {
        log::warn!(
            "{} answers still waiting out --ack-delay-ms at exit; not sent",
            answers.len()
        );
        summary.commands.unsent += answers.len() as u64;
    }
    link.close().await;
    summary.stopped_by = stopping.unwrap_or(StopReason::Cancelled);
    summary.failures = summary.failure_causes.total();
    summary.elapsed_secs = clock.map_or(0.0, |c| c.elapsed().as_secs_f64());
    summary.rate = if summary.elapsed_secs > 0.0 {
        summary.total_sent as f64 / summary.elapsed_secs
    } else {
        0.0
    };
    Ok(summary)
}

/// What the poll task reports.
#[derive(Debug)]
enum LoopEvent {
    Connected,
    /// A publish left with this packet id (0 for QoS 0).
    Outgoing(u16),
    Acked(u16),
    ConnectFailed(String),
    /// An established connection dropped; the poll task has ended.
    Lost(String),
    /// Our disconnect went out; the poll task has ended.
    Closed,
}

/// A message the ledger tracks until the broker has it.
#[derive(Clone, Copy, Debug)]
struct Meta {
    vehicle_id: i64,
    kind: Option<MessageType>,
    bad: Option<BadKind>,
}

/// One MQTT connection and the messages handed to it.
struct Connection {
    generation: u64,
    client: AsyncClient,
    task: JoinHandle<()>,
    connected: bool,
    /// Handed to the client, not yet seen leaving (in request order).
    queued: VecDeque<Meta>,
    /// Sent with QoS 1, awaiting PubAck.
    inflight: HashMap<u16, Meta>,
}

impl Connection {
    fn open(
        generation: u64,
        options: MqttOptions,
        events: mpsc::UnboundedSender<(u64, LoopEvent)>,
    ) -> Connection {
        let capacity = options.request_channel_capacity();
        let (client, eventloop) = AsyncClient::new(options, capacity);
        let task = tokio::spawn(poll(generation, eventloop, events));
        Connection {
            generation,
            client,
            task,
            connected: false,
            queued: VecDeque::new(),
            inflight: HashMap::new(),
        }
    }

    fn outstanding(&self) -> usize {
        self.queued.len() + self.inflight.len()
    }

    fn publish(&mut self, msg: SimMessage, qos: QoS, summary: &mut Summary) {
        self.queued.push_back(Meta {
            vehicle_id: msg.vehicle_id,
            kind: msg.kind,
            bad: msg.bad,
        });
        if let Err(e) = self
            .client
            .try_publish(msg.topic.clone(), qos, false, msg.payload)
        {
            self.queued.pop_back();
            summary.failure_causes.rejected_by_client += 1;
            log::warn!("publish to {} refused by the client: {e}", msg.topic);
        }
    }

    fn on_outgoing(&mut self, pkid: u16, qos: QoS, summary: &mut Summary) {
        let Some(meta) = self.queued.pop_front() else {
            log::warn!("outgoing publish {pkid} that was not queued");
            return;
        };
        if qos == QoS::AtMostOnce {
            summary.record_sent(meta.vehicle_id, meta.kind, meta.bad);
        } else if self.inflight.insert(pkid, meta).is_some() {
            log::warn!("packet id {pkid} reused before its PubAck");
        }
    }

    fn on_ack(&mut self, pkid: u16, summary: &mut Summary) {
        match self.inflight.remove(&pkid) {
            Some(meta) => summary.record_sent(meta.vehicle_id, meta.kind, meta.bad),
            None => log::warn!("PubAck for unknown packet id {pkid}"),
        }
    }

    fn abort(&self) {
        self.task.abort();
    }

    /// Sends DISCONNECT (if connected) and waits briefly for it to leave.
    async fn close(mut self) {
        let sent = self.connected && self.client.try_disconnect().is_ok();
        if sent
            && tokio::time::timeout(DISCONNECT_TIMEOUT, &mut self.task)
                .await
                .is_err()
        {
            log::warn!("disconnect did not complete in {DISCONNECT_TIMEOUT:?}");
        }
        self.task.abort();
    }
}

/// Owns one connection's event loop. Retries the first connection with backoff; once
/// connected, any error ends it (see the module docs).
async fn poll(
    generation: u64,
    mut eventloop: EventLoop,
    events: mpsc::UnboundedSender<(u64, LoopEvent)>,
) {
    let mut connected = false;
    let mut backoff = Duration::from_millis(100);
    loop {
        let event = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected = true;
                LoopEvent::Connected
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => LoopEvent::Acked(ack.pkid),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => LoopEvent::Outgoing(pkid),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                let _ = events.send((generation, LoopEvent::Closed));
                return;
            }
            Ok(_) => continue,
            Err(e) if connected => {
                let _ = events.send((generation, LoopEvent::Lost(e.to_string())));
                return;
            }
            Err(e) => {
                if events
                    .send((generation, LoopEvent::ConnectFailed(e.to_string())))
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if events.send((generation, event)).is_err() {
            return; // the run is over
        }
    }
}

/// Client options from the config: address, credentials, TLS, flow control. The command link
/// starts from the same ones.
fn mqtt_options(config: &SimConfig) -> anyhow::Result<MqttOptions> {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let addr = BrokerAddress::parse(&config.broker).map_err(|e| anyhow!("--broker: {e}"))?;
    // Unique per run, so parallel runs (tests) never take over each other's session.
    let client_id = format!(
        "{}-{}-{}",
        config.client_id,
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    );
    let mut options = MqttOptions::new(client_id, addr.host, addr.port);
    let outgoing_max = (config.bad_oversize_bytes + 64 * 1024).max(1024 * 1024);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_inflight(config.inflight)
        .set_request_channel_capacity(usize::from(config.inflight))
        .set_max_packet_size(64 * 1024, outgoing_max);
    let (url_user, url_pass) = addr.credentials.unzip();
    if let Some(user) = config.username.clone().or(url_user) {
        let pass = config.password.clone().or(url_pass).unwrap_or_default();
        options.set_credentials(user, pass);
    }
    if addr.tls {
        // Several crypto providers are compiled in (workspace feature unification), so rustls
        // cannot pick one by itself; an Err means one is installed already, which is fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let transport = match &config.ca_file {
            Some(path) => {
                let ca = std::fs::read(path)
                    .with_context(|| format!("reading --ca-file {}", path.display()))?;
                if !String::from_utf8_lossy(&ca).contains("-----BEGIN CERTIFICATE-----") {
                    bail!("--ca-file {} holds no PEM certificate", path.display());
                }
                Transport::tls(ca, None, None)
            }
            // rumqttc panics if the platform's certificate store cannot be read.
            None => std::panic::catch_unwind(Transport::tls_with_default_config).map_err(|_| {
                anyhow!("cannot load the platform's CA certificates; pass --ca-file")
            })?,
        };
        options.set_transport(transport);
    } else if config.ca_file.is_some() {
        log::warn!("--ca-file is ignored for {} (not mqtts://)", config.broker);
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_take_credentials_from_flags_over_the_url() {
        let config = SimConfig {
            broker: "mqtt://u:p@broker.local:1884".into(),
            username: Some("flag-user".into()),
            ..SimConfig::default()
        };
        let o = mqtt_options(&config).unwrap();
        assert_eq!(o.broker_address(), ("broker.local".to_owned(), 1884));
        let login = o.credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("flag-user", "p")
        );
        assert!(o.client_id().starts_with("jetson-sim-"));
        assert_eq!(o.inflight(), 100);
    }

    #[test]
    fn options_reject_a_bad_url_and_a_missing_ca_file() {
        let bad = SimConfig {
            broker: "http://x".into(),
            ..SimConfig::default()
        };
        assert!(mqtt_options(&bad).is_err());
        let missing = SimConfig {
            broker: "mqtts://x".into(),
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..SimConfig::default()
        };
        assert!(mqtt_options(&missing)
            .unwrap_err()
            .to_string()
            .contains("--ca-file"));
    }

    #[tokio::test]
    async fn run_gives_up_when_the_broker_never_answers() {
        // A port nothing listens on: connection refused, retried until the deadline.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = SimConfig {
            broker: format!("mqtt://127.0.0.1:{port}"),
            connect_timeout: Some(Duration::from_millis(300)),
            seed: Some(1),
            ..SimConfig::default()
        };
        let err = run(config, CancellationToken::new()).await.unwrap_err();
        assert!(err.to_string().contains("could not connect"), "{err}");
    }

    #[tokio::test]
    async fn run_stops_when_cancelled_before_connecting() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let stop = CancellationToken::new();
        stop.cancel();
        let config = SimConfig {
            broker: format!("mqtt://127.0.0.1:{port}"),
            seed: Some(1),
            ..SimConfig::default()
        };
        let summary = run(config, stop).await.unwrap();
        assert_eq!(summary.stopped_by, StopReason::Cancelled);
        assert_eq!(summary.published, 0);
    }
}
