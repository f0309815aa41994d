//! [`CommandLink`]: the boats' downlink. A second MQTT connection, apart from the telemetry
//! one, with a persistent session (clean_session=false) whose client id is the same on every
//! run of the same fleet, subscribed at QoS 1 to every boat's command topic; the answers go
//! out on it too, at QoS 1.
//!
//! A spawned task owns its rumqttc `EventLoop` for the whole run and keeps polling it: rumqttc
//! acknowledges each incoming command (PubAck) as it reads it, so however fast the telemetry
//! connection publishes, commands are acknowledged promptly. When the connection drops,
//! rumqttc reconnects on the next poll and, the session being persistent, resends answers the
//! broker had not acknowledged; the broker, for its part, redelivers unacknowledged commands
//! and those sent while the fleet was away. Every ConnAck is followed by the subscriptions
//! again (they are idempotent), in SUBSCRIBEs of at most [`TOPICS_PER_SUBSCRIBE`] topics.

use std::collections::HashMap;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing, Packet, QoS,
    SubscribeFilter, SubscribeReasonCode,
};
use seano_wire::command::AckMessage;
use seano_wire::{MessageType, Topic};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::SimConfig;

const TOPICS_PER_SUBSCRIBE: usize = 100;
/// Answers the client may queue before it refuses more (each refused one is counted unsent).
const ANSWER_QUEUE: usize = 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the link's poll task reports.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    Connected {
        session_present: bool,
    },
    /// The broker granted every command subscription of this connection.
    Subscribed,
    /// A message on a command topic.
    Command {
        topic: String,
        payload: Vec<u8>,
    },
    /// The connection failed or dropped; the task keeps trying.
    Down(String),
}

/// The persistent client id of a fleet's command session: `{client-id}-{prefix}-{start-id}-cmd`,
/// with anything but letters, digits, `-` and `_` in the prefix replaced by `_`.
pub(crate) fn client_id(config: &SimConfig) -> String {
    let prefix: String = config
        .prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}-{prefix}-{}-cmd", config.client_id, config.start_id)
}

/// The command connection; see the module docs.
pub(crate) struct CommandLink {
    /// Between a [`LinkEvent::Connected`] and a [`LinkEvent::Down`] (the run task keeps it).
    pub(crate) connected: bool,
    client: AsyncClient,
    task: JoinHandle<()>,
    prefix: String,
    /// Command topic → vehicle id.
    vehicles: HashMap<String, i64>,
}

impl CommandLink {
    /// Starts connecting with `options` (address, credentials and TLS as for telemetry; the
    /// client id, session and queue sizes are set here).
    pub(crate) fn open(
        config: &SimConfig,
        mut options: MqttOptions,
        events: mpsc::UnboundedSender<LinkEvent>,
    ) -> CommandLink {
        let vehicles: HashMap<String, i64> = config
            .vehicle_ids()
            .map(|id| (Topic::command(&config.prefix, &id.to_string()), id))
            .collect();
        let mut topics: Vec<String> = vehicles.keys().cloned().collect();
        topics.sort_by_key(|t| vehicles[t]);
        let batches: Vec<Vec<SubscribeFilter>> = topics
            .chunks(TOPICS_PER_SUBSCRIBE)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|t| SubscribeFilter::new(t.clone(), QoS::AtLeastOnce))
                    .collect()
            })
            .collect();
        options
            .set_client_id(client_id(config))
            .set_clean_session(false)
            .set_max_packet_size(64 * 1024, 64 * 1024)
            // Room for every SUBSCRIBE of a connection and a queue of answers.
            .set_request_channel_capacity(batches.len() + ANSWER_QUEUE);
        let capacity = options.request_channel_capacity();
        let (client, mut eventloop) = AsyncClient::new(options, capacity);
        // An answer is one small packet that should leave at once, not wait (Nagle) for the
        // broker's TCP acknowledgement of the previous one: about 40 ms per answer without this.
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let task = tokio::spawn(poll(eventloop, client.clone(), batches, events));
        CommandLink {
            connected: false,
            client,
            task,
            prefix: config.prefix.clone(),
            vehicles,
        }
    }

    /// The vehicle a command topic belongs to.
    pub(crate) fn vehicle(&self, topic: &str) -> Option<i64> {
        self.vehicles.get(topic).copied()
    }

    /// Hands `ack` to the client for `{prefix}/{vehicle_id}/ack` at QoS 1. `Err` when its queue
    /// is full or closed.
    pub(crate) fn answer(&self, vehicle_id: i64, ack: &AckMessage) -> Result<(), String> {
        let topic = Topic::format(&self.prefix, vehicle_id, MessageType::CommandStatus);
        // unwrap: a struct of strings always serializes.
        let payload = serde_json::to_vec(ack).expect("an ack serializes");
        self.client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
            .map_err(|e| e.to_string())
    }

    /// Sends DISCONNECT (if connected) after the answers already queued and waits briefly for
    /// it to leave. The broker keeps the session: commands sent meanwhile wait for the next run.
    pub(crate) async fn close(mut self) {
        if self.connected
            && self.client.try_disconnect().is_ok()
            && tokio::time::timeout(DISCONNECT_TIMEOUT, &mut self.task)
                .await
                .is_err()
        {
            log::debug!("command link: disconnect did not complete in {DISCONNECT_TIMEOUT:?}");
        }
        self.task.abort();
    }

    pub(crate) fn abort(&self) {
        self.task.abort();
    }
}

/// Owns the link's event loop for the whole run: subscribes after every ConnAck, forwards
/// commands, retries with backoff while the broker is away.
async fn poll(
    mut eventloop: EventLoop,
    client: AsyncClient,
    batches: Vec<Vec<SubscribeFilter>>,
    events: mpsc::UnboundedSender<LinkEvent>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut granted = 0;
    loop {
        let event = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(100);
                granted = 0;
                for batch in &batches {
                    if let Err(e) = client.try_subscribe_many(batch.clone()) {
                        log::warn!("command link: cannot subscribe: {e}");
                    }
                }
                LinkEvent::Connected {
                    session_present: ack.session_present,
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .filter(|c| matches!(c, SubscribeReasonCode::Failure))
                    .count();
                if refused > 0 {
                    log::warn!(
                        "command link: the broker refused {refused} command subscriptions; those boats get no commands"
                    );
                }
                granted += 1;
                if granted != batches.len() {
                    continue;
                }
                LinkEvent::Subscribed
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => LinkEvent::Command {
                topic: publish.topic,
                payload: publish.payload.to_vec(),
            },
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => continue,
            Err(e) => {
                if events.send(LinkEvent::Down(e.to_string())).is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if events.send(event).is_err() {
            return; // the run is over
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_is_named_after_the_fleet_not_the_run() {
        let config = SimConfig {
            client_id: "sim".into(),
            prefix: "sea no/x".into(),
            start_id: 40,
            ..SimConfig::default()
        };
        assert_eq!(client_id(&config), "sim-sea_no_x-40-cmd");
        assert_eq!(client_id(&config), client_id(&config.clone()));
    }
}
