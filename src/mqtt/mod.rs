//! MQTT ingest. The ingest task owns the rumqttc `EventLoop` and the MQTT session's rules: it
//! polls, decodes each publish and hands it to the store with a [`Receipt`] (its packet id and
//! the connection it came on). It never touches the database. The store hands each receipt
//! back after the commit, and only then does this task acknowledge the message (manual acks),
//! so a crash before commit loses nothing. An ack is sent only on the connection its message
//! came on: after a reconnect the same packet id may name another message, and the broker
//! redelivers what was not acknowledged.
//!
//! The event loop is polled at all times, also while the store is behind (database slow or
//! away): keep-alive pings keep flowing, so the broker keeps the connection and the status
//! pages tell the truth. What arrives meanwhile waits in the task's backlog, in order, and goes
//! to the store as room appears. The backlog is bounded by the protocol: a broker can have at
//! most 65,535 QoS 1 messages unacknowledged towards one client (packet ids), and nothing is
//! acknowledged before it is committed. QoS 0 messages have no such bound: past
//! [`QOS0_BACKLOG`] held messages they are dropped (logged), as QoS 0 allows.

pub mod embedded;

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS,
    SubscribeFilter,
};
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

pub use seano_wire::BrokerAddress;

use crate::commands::Downlink;
use crate::domain::{decode, RejectReason, Rejection, Topic};
use crate::metrics::Metrics;
use crate::store::{Incoming, StoreHandle};

/// The largest packet the client accepts. Far above MAX_PAYLOAD_BYTES on purpose: a packet
/// rumqttc refuses drops the connection and comes back on every reconnect, while a payload
/// the gateway refuses is stored in `rejected_messages` and acknowledged.
const MAX_INCOMING_PACKET: usize = 256 * 1024 * 1024;

/// Held messages past which a QoS 0 message is dropped while the store is behind.
pub const QOS0_BACKLOG: usize = 65_536;

/// Packet ids remembered per connection to recognise redeliveries after a reconnect; more than
/// any broker keeps in flight to one client.
const RECENT_PKIDS: usize = 4096;

/// How often owed acks are offered to rumqttc again while its request queue is full.
const ACK_RETRY: Duration = Duration::from_millis(5);

/// How long a shutdown waits for rumqttc to take the last acks.
const LAST_ACKS: Duration = Duration::from_secs(2);

/// What the store hands back for a committed message: which packet to acknowledge, on which
/// connection. Opaque outside this module.
#[derive(Debug)]
pub struct Receipt {
    pkid: u16,
    qos: QoS,
    connection: u64,
}

/// The MQTT session as this task sees it: which connection is current, which packet ids may
/// come again, and which acks are owed.
#[derive(Default)]
struct Session {
    /// Whether a session with the broker is established (between CONNACK and a loss).
    connected: bool,
    /// Connections lost so far: a receipt's connection must equal it for its ack to be sent.
    connection: u64,
    /// Packet ids recently received on this connection. If the link drops, the broker resends
    /// what it has no PUBACK for with the same ids (a PUBACK we wrote may have died with the
    /// link), and some brokers (rumqttd) do so without the DUP flag: after a reconnect, these
    /// ids mark possible redeliveries for the store's dedup.
    recent: VecDeque<u16>,
    suspects: HashSet<u16>,
    /// Acks not yet taken by rumqttc, oldest first. rumqttc's event loop writes one request per
    /// poll and may read ten packets in the next, so while the broker floods the gateway, acks
    /// queue up faster than they leave; they wait here, in order, never dropped.
    owed: VecDeque<Receipt>,
}

impl Session {
    /// Notes a publish; true when the broker may have sent it before.
    fn received(&mut self, publish: &rumqttc::Publish) -> bool {
        let redelivery = publish.dup || self.suspects.remove(&publish.pkid);
        if publish.qos != QoS::AtMostOnce {
            if self.recent.len() == RECENT_PKIDS {
                self.recent.pop_front();
            }
            self.recent.push_back(publish.pkid);
        }
        redelivery
    }

    fn receipt(&self, publish: &rumqttc::Publish) -> Receipt {
        Receipt {
            pkid: publish.pkid,
            qos: publish.qos,
            connection: self.connection,
        }
    }

    /// The link to the broker is gone: what it delivered without our ack may come again (added
    /// to the suspects still owed from earlier drops), and acks of this connection are void.
    fn lost(&mut self) {
        self.connected = false;
        self.suspects.extend(self.recent.drain(..));
        self.connection += 1;
    }

    /// Committed messages: their acks are owed (QoS 0 needs none).
    fn committed(&mut self, receipts: Vec<Receipt>) {
        self.owed
            .extend(receipts.into_iter().filter(|r| r.qos != QoS::AtMostOnce));
    }

    /// Hands rumqttc the owed acks, oldest first, until its queue is full. Acks of messages
    /// from a connection that has dropped are left out: the broker redelivers those messages.
    fn send_acks(&mut self, client: &AsyncClient, metrics: &Metrics) {
        while let Some(owed) = self.owed.front() {
            if owed.connection != self.connection {
                metrics.acks_stale.inc();
                self.owed.pop_front();
                continue;
            }
            let mut ack = rumqttc::Publish::new("", owed.qos, Vec::new());
            ack.pkid = owed.pkid;
            if client.try_ack(&ack).is_err() {
                break;
            }
            self.owed.pop_front();
        }
        metrics.acks_owed.set(self.owed.len() as i64);
    }
}

/// Builds the client options: persistent session, manual acks, credentials, TLS for mqtts.
pub fn options(
    broker: &BrokerAddress,
    client_id: &str,
    keep_alive: Duration,
    request_capacity: usize,
    ca: Option<Vec<u8>>,
) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    o.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(keep_alive)
        .set_max_packet_size(MAX_INCOMING_PACKET, 1024 * 1024)
        .set_request_channel_capacity(request_capacity);
    if let Some((user, pass)) = &broker.credentials {
        o.set_credentials(user.clone(), pass.clone());
    }
    if broker.tls {
        // Several rustls crypto providers are compiled in (sqlx, rumqttc); rustls refuses to
        // guess, so choose one for the process before the first handshake.
        let _ = rustls::crypto::ring::default_provider().install_default();
        o.set_transport(match ca {
            Some(ca) => rumqttc::Transport::tls(ca, None, None),
            None => rumqttc::Transport::tls_with_default_config(),
        });
    }
    o
}

pub struct Ingest {
    pub client: AsyncClient,
    pub store: StoreHandle<Receipt>,
    /// The receipts of committed messages, from the store. Closed when the store has drained:
    /// then the last acks go out and the task disconnects.
    pub receipts: mpsc::UnboundedReceiver<Vec<Receipt>>,
    pub prefix: String,
    /// MQTT_SHARED_GROUP: subscribe through `$share/{group}/`.
    pub shared_group: Option<String>,
    pub max_payload: usize,
    pub metrics: Arc<Metrics>,
    /// Stop taking new messages (they stay with the broker, unacknowledged).
    pub shutdown: CancellationToken,
    /// Commands to publish (QoS 1), from [`crate::commands`].
    pub outbox: mpsc::UnboundedReceiver<Downlink>,
    /// The request ids of published commands the broker acknowledged, back to the commands
    /// service (`sent`).
    pub sent: mpsc::UnboundedSender<String>,
}

impl Ingest {
    /// Runs the ingest loop on `eventloop` (the other half of [`Ingest::client`]) until the
    /// store has stopped and the last acks are out.
    pub async fn run(self, eventloop: EventLoop) {
        let (events_tx, events) = mpsc::channel(EVENTS);
        let task = Task {
            io: self,
            events,
            session: Session::default(),
            backlog: VecDeque::new(),
            draining: false,
            barrier_sent: false,
            downlink: Downlinks::default(),
        };
        // One task: the pump and the ingest loop run side by side, neither ever waits on the
        // other for long.
        tokio::join!(pump(eventloop, events_tx), task.run());
    }
}

/// Events waiting between the pump and the ingest loop.
const EVENTS: usize = 64;

/// Polls rumqttc's event loop and hands each event to the ingest loop, never abandoning a poll
/// half-way: a poll may have taken an ack off rumqttc's queue and not yet written it, and a
/// lost ack stalls every later one on a broker that takes acks in order only (rumqttd). After a
/// connection error it waits (100 ms, doubling to 5 s) before the next attempt. Ends when the
/// ingest loop has stopped listening.
async fn pump(mut eventloop: EventLoop, events: mpsc::Sender<Result<Event, ConnectionError>>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            _ = events.closed() => return,
        };
        let failed = event.is_err();
        if matches!(event, Ok(Event::Incoming(Packet::ConnAck(_)))) {
            backoff = Duration::from_millis(100);
        }
        if !wanted(&event) {
            continue;
        }
        if events.send(event).await.is_err() {
            return;
        }
        if failed {
            tokio::select! {
                _ = sleep(backoff) => {}
                _ = events.closed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// Whether the ingest loop acts on `event`. The rest (our own acks going out, pings) is
/// rumqttc's business, and is most of the traffic under load: one PUBACK per message.
fn wanted(event: &Result<Event, ConnectionError>) -> bool {
    match event {
        Err(_) => true,
        Ok(Event::Incoming(packet)) => matches!(
            packet,
            Packet::Publish(_)
                | Packet::ConnAck(_)
                | Packet::SubAck(_)
                | Packet::Disconnect
                | Packet::PubAck(_)
        ),
        // The gateway publishes only commands, so every outgoing publish is one.
        Ok(Event::Outgoing(outgoing)) => {
            matches!(outgoing, Outgoing::Disconnect | Outgoing::Publish(_))
        }
    }
}

/// What happened while the ingest loop waited for the broker.
enum Polled {
    Event(Result<Event, ConnectionError>),
    /// The store has drained and stopped, and its last acks are in rumqttc's hands.
    StoreDone,
}

/// The ingest loop's state.
struct Task {
    /// What it was given: the client, the store, where receipts come back, its settings.
    io: Ingest,
    /// What the pump read from the broker.
    events: mpsc::Receiver<Result<Event, ConnectionError>>,
    session: Session,
    /// Decoded messages the store's queue had no room for yet, oldest first.
    backlog: VecDeque<Incoming<Receipt>>,
    /// Shutting down: new messages are left with the broker.
    draining: bool,
    /// The drain barrier is queued behind the last ack (see [`Task::send_last_acks`]).
    barrier_sent: bool,
    downlink: Downlinks,
}

/// Published commands until the broker acknowledges them. rumqttc reports no packet id when
/// a publish is requested, only when it goes out (`Outgoing::Publish`), in request order: the
/// n-th new packet id is the n-th command requested. A resend after a reconnect keeps its
/// packet id and is not new.
#[derive(Default)]
struct Downlinks {
    /// Requested, packet id not known yet, oldest first.
    requested: VecDeque<String>,
    /// Out, not yet acknowledged, by packet id.
    in_flight: std::collections::HashMap<u16, String>,
}

impl Task {
    /// Runs until the store has stopped and the last acks are out; dropping the task then
    /// closes the events channel, which stops the pump.
    async fn run(mut self) {
        self.io.metrics.mqtt_running.set(true);
        loop {
            let event = match self.next().await {
                Polled::Event(event) => event,
                Polled::StoreDone => break,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    self.set_last_error(None);
                    self.session.connected = true;
                    self.io.metrics.mqtt_connected.set(true);
                    log::info!("mqtt: connected (session present: {})", ack.session_present);
                    let filters = self
                        .filters()
                        .into_iter()
                        .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce));
                    if let Err(e) = self.io.client.try_subscribe_many(filters) {
                        log::error!("mqtt: could not subscribe: {e}");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        log::error!(
                            "mqtt: the broker refused the subscription to {}",
                            self.filters().join(", ")
                        );
                    } else {
                        self.io.metrics.mqtt_subscribed.set(true);
                        log::info!("mqtt: subscribed to {}", self.filters().join(", "));
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => self.received(publish),
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    let d = &mut self.downlink;
                    if !d.in_flight.contains_key(&pkid) {
                        if let Some(id) = d.requested.pop_front() {
                            d.in_flight.insert(pkid, id);
                        }
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(id) = self.downlink.in_flight.remove(&ack.pkid) {
                        let _ = self.io.sent.send(id);
                    }
                }
                Ok(Event::Incoming(Packet::Disconnect)) => {
                    self.connection_lost();
                    log::warn!("mqtt: the broker closed the session");
                }
                Ok(_) => {}
                Err(e) => {
                    let was_connected = self.session.connected;
                    self.connection_lost();
                    self.set_last_error(Some(describe(&e)));
                    if was_connected {
                        log::warn!("mqtt: connection lost: {e}; reconnecting");
                    } else {
                        log::warn!("mqtt: cannot connect: {}; retrying", describe(&e));
                    }
                }
            }
        }
        if self.session.connected {
            self.last_acks().await;
            self.disconnect().await;
        }
        self.io.metrics.mqtt_connected.set(false);
        self.io.metrics.mqtt_subscribed.set(false);
        self.io.metrics.mqtt_running.set(false);
    }

    /// Waits for the broker's next event while serving the store (receipts, room in its queue)
    /// and shutdown.
    async fn next(&mut self) -> Polled {
        loop {
            tokio::select! {
                biased;
                receipts = self.io.receipts.recv() => match receipts {
                    Some(receipts) => self.committed(receipts),
                    // The store has drained: its last acks go out next (`last_acks`).
                    None => return Polled::StoreDone,
                },
                _ = sleep(ACK_RETRY), if !self.session.owed.is_empty() => {
                    self.session.send_acks(&self.io.client, &self.io.metrics);
                }
                _ = self.io.shutdown.cancelled(), if !self.draining => {
                    self.draining = true;
                    self.leave_group();
                    self.abandon();
                }
                Some(command) = self.io.outbox.recv(), if !self.draining => self.publish(command),
                // Room in the store's queue again: hand it what waits, oldest first.
                _ = self.io.store.ready(), if !self.backlog.is_empty() => self.hand_over(),
                event = self.events.recv() => match event {
                    Some(event) => return Polled::Event(event),
                    // The pump only stops when this loop has.
                    None => return Polled::StoreDone,
                },
            }
        }
    }

    /// The ingest subscription: `{prefix}/#`, or `$share/{group}/{prefix}/#` in a shared group
    /// (the broker hands each message to one member).
    fn filters(&self) -> Vec<String> {
        let filters = Topic::filters(&self.io.prefix);
        match &self.io.shared_group {
            Some(group) => filters
                .into_iter()
                .map(|f| format!("$share/{group}/{f}"))
                .collect(),
            None => filters,
        }
    }

    /// At shutdown in a shared group: unsubscribes from the shared subscription, so the broker
    /// hands new messages to the other members instead of queueing them for this session while
    /// it is away (Mosquitto and EMQX queue for an offline member's persistent session). What
    /// it already sent this session and we have not stored stays with the session, for its
    /// next start under the same INSTANCE_ID.
    fn leave_group(&mut self) {
        if self.io.shared_group.is_some() {
            for filter in self.filters() {
                if let Err(e) = self.io.client.try_unsubscribe(filter) {
                    log::warn!("mqtt: could not leave the shared subscription: {e}");
                }
            }
        }
    }

    /// Hands rumqttc a command to publish at QoS 1 (not retained). While the broker is away it
    /// waits in rumqttc's queue and goes out on reconnection; the commands service expires it
    /// at its deadline meanwhile, and the boat refuses it if it arrives later (`expires_at`).
    fn publish(&mut self, command: Downlink) {
        match self.io.client.try_publish(
            command.topic.as_str(),
            QoS::AtLeastOnce,
            false,
            command.payload,
        ) {
            Ok(()) => self.downlink.requested.push_back(command.request_id),
            Err(e) => log::error!(
                "mqtt: could not publish command {} on {}: {e}; it will expire",
                command.request_id,
                command.topic
            ),
        }
    }

    /// Committed messages: their acks are owed, and offered to rumqttc now.
    fn committed(&mut self, receipts: Vec<Receipt>) {
        self.session.committed(receipts);
        self.session.send_acks(&self.io.client, &self.io.metrics);
    }

    /// A publish from the broker: decoded and handed to the store with its receipt.
    fn received(&mut self, publish: rumqttc::Publish) {
        if self.draining {
            // Not acknowledged: the broker redelivers it to our next session.
            return;
        }
        let redelivery = self.session.received(&publish);
        if redelivery {
            log::debug!(
                "mqtt: possible redelivery on {} (pkid {}, dup {})",
                publish.topic,
                publish.pkid,
                publish.dup
            );
        }
        if publish.qos == QoS::AtMostOnce && self.backlog.len() >= QOS0_BACKLOG {
            log::warn!(
                "mqtt: store behind by {} messages; dropped a QoS 0 message on {}",
                self.backlog.len(),
                publish.topic
            );
            return;
        }
        let receipt = self.session.receipt(&publish);
        let incoming = self.decode(publish, redelivery, receipt);
        self.backlog.push_back(incoming);
        self.io.metrics.ingest_started();
        self.hand_over();
    }

    /// Hands the store what its queue has room for, oldest first; the rest stays in the backlog.
    /// When the store has stopped, the backlog stays unacknowledged (the broker redelivers it),
    /// and the task keeps polling only so the store's last acks go out.
    fn hand_over(&mut self) {
        while let Some(msg) = self.backlog.pop_front() {
            match self.io.store.try_send(msg) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(msg)) => {
                    self.backlog.push_front(msg);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(msg)) => {
                    self.backlog.push_front(msg);
                    self.abandon();
                    self.draining = true;
                    break;
                }
            }
        }
        self.io
            .metrics
            .ingest_backlog
            .set(self.backlog.len() as i64);
    }

    /// Shutdown: what the store has not taken stays unacknowledged, and the broker redelivers it
    /// to the next session.
    fn abandon(&mut self) {
        self.io
            .metrics
            .ingest_in_flight
            .fetch_sub(self.backlog.len() as i64, Relaxed);
        self.backlog.clear();
        self.io.metrics.ingest_backlog.set(0);
    }

    fn connection_lost(&mut self) {
        self.session.lost();
        self.io.metrics.mqtt_connected.set(false);
        self.io.metrics.mqtt_connections_lost.inc();
        self.io.metrics.mqtt_subscribed.set(false);
    }

    /// The store has stopped: hands rumqttc the acks still owed as its request queue empties
    /// (the pump keeps polling), then the barrier behind them, for up to [`LAST_ACKS`].
    async fn last_acks(&mut self) {
        let deadline = Instant::now() + LAST_ACKS;
        loop {
            self.send_last_acks();
            if self.barrier_sent || Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                _ = sleep(ACK_RETRY) => {}
                // Publishes read meanwhile are ignored (draining): the broker redelivers them.
                event = self.events.recv() => match event {
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                },
            }
        }
    }

    fn set_last_error(&self, error: Option<String>) {
        // unwrap: the lock is never held across a panic.
        *self.io.metrics.mqtt_last_error.lock().unwrap() = error;
    }

    fn decode(
        &self,
        publish: rumqttc::Publish,
        redelivery: bool,
        receipt: Receipt,
    ) -> Incoming<Receipt> {
        if Topic::is_own(&self.io.prefix, &publish.topic) {
            // The gateway's own downlink, seen through `{prefix}/#`: acknowledged, not stored.
            return Incoming {
                topic: publish.topic,
                payload: publish.payload,
                redelivery,
                received_at: Utc::now(),
                outcome: None,
                receipt,
            };
        }
        let mut outcome = decode(
            &self.io.prefix,
            &publish.topic,
            &publish.payload,
            self.io.max_payload,
        );
        match &mut outcome {
            Ok(d) => {
                self.io.metrics.received.add(d.body.kind(), 1);
                log::trace!("mqtt: {} from vehicle {}", d.body.kind(), d.vehicle);
            }
            Err(Rejection { reason, detail }) => {
                self.io.metrics.reject(*reason);
                log::warn!(
                    "mqtt: rejected {} ({}): {detail}",
                    publish.topic,
                    reason.as_str()
                );
                if *reason == RejectReason::PayloadTooLarge {
                    detail.push_str(&format!(
                        "; the first {} bytes are kept",
                        self.io.max_payload
                    ));
                }
            }
        }
        let mut publish = publish;
        if matches!(&outcome, Err(r) if r.reason == RejectReason::PayloadTooLarge) {
            publish.payload.truncate(self.io.max_payload);
        }
        Incoming {
            topic: publish.topic,
            payload: publish.payload,
            redelivery,
            received_at: Utc::now(),
            outcome: Some(outcome),
            receipt,
        }
    }

    /// After the store has stopped: offers rumqttc the owed acks and, once all are queued, the
    /// barrier: a SUBSCRIBE to a topic nobody publishes on, which the broker answers (SUBACK,
    /// granted or refused) after processing the acks sent before it. Without it, rumqttd was
    /// seen to drop acks that arrived just before the DISCONNECT and to redeliver those
    /// messages, without DUP, to the next session. (An UNSUBSCRIBE would do for Mosquitto, but
    /// rumqttd does not answer one for a topic it has no subscription to.)
    fn send_last_acks(&mut self) {
        self.session.send_acks(&self.io.client, &self.io.metrics);
        if self.session.owed.is_empty() && !self.barrier_sent {
            self.barrier_sent = self
                .io
                .client
                .try_subscribe(self.barrier(), QoS::AtMostOnce)
                .is_ok();
        }
    }

    fn barrier(&self) -> String {
        format!("{}/$drain-barrier", self.io.prefix)
    }

    /// Waits until the broker has answered the barrier (so every ack before it is processed),
    /// then DISCONNECTs, so the broker keeps the session for next time and redelivers only what
    /// was not stored.
    async fn disconnect(&mut self) {
        let mut waiting = self.barrier_sent;
        let barrier = self.barrier();
        let events = &mut self.events;
        let client = &self.io.client;
        let drain = async {
            while waiting {
                match events.recv().await {
                    Some(Ok(Event::Incoming(Packet::SubAck(_)))) => waiting = false,
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                }
            }
            // The session is kept for next time: it need not keep the barrier's subscription.
            let _ = client.try_unsubscribe(barrier);
            if client.try_disconnect().is_err() {
                return;
            }
            loop {
                match events.recv().await {
                    Some(Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)) | None => break,
                    Some(Ok(_)) => {}
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(3), drain)
            .await
            .is_err()
        {
            log::warn!("mqtt: the broker did not confirm the last acks in time");
        }
        log::info!("mqtt: disconnected");
    }
}

fn describe(e: &ConnectionError) -> String {
    use rumqttc::ConnectReturnCode::{BadUserNamePassword, NotAuthorized};
    match e {
        ConnectionError::Io(io) => io.to_string(),
        ConnectionError::ConnectionRefused(code @ (BadUserNamePassword | NotAuthorized)) => format!(
            "the broker refused the credentials ({code:?}); check MQTT_USERNAME and MQTT_PASSWORD (or the user:password in MQTT_URL)"
        ),
        other => other.to_string(),
    }
}
