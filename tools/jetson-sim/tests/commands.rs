//! The boats against a real broker (rumqttd on a free port): a command published on a boat's
//! command topic is answered on its ack topic and shows in its telemetry; a silent boat says
//! nothing; a repeated request_id is answered again; commands sent while the fleet is away wait
//! in its persistent session, and the expired ones are refused.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use jetson_sim::{run_with, CancellationToken, RunHooks, SimConfig, Summary};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use seano_wire::command::{AckMessage, CommandMessage};
use seano_wire::{MessageType, Topic, VehicleState};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// A failure guard only: every wait below ends on an event long before.
const DEADLINE: Duration = Duration::from_secs(20);

/// Starts a broker on a free port in its own thread; returns once it accepts connections.
fn start_broker() -> SocketAddr {
    use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = ServerSettings {
        name: "v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 1024 * 1024,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 500,
            max_segment_size: 10 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("v4".to_owned(), server)])),
        ..Default::default()
    };
    std::thread::spawn(move || {
        if let Err(e) = Broker::new(config).start() {
            panic!("the test broker stopped: {e}");
        }
    });
    // Readiness poll of a listener in another thread: there is no event to wait on.
    let deadline = std::time::Instant::now() + DEADLINE;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the broker did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    addr
}

/// A client of the test (the gateway's part): publishes commands, reads answers and telemetry.
struct Operator {
    client: AsyncClient,
    eventloop: EventLoop,
    prefix: String,
}

impl Operator {
    /// Connected and subscribed to every boat's answers and `vehicle`'s vehicle_log.
    async fn connect(broker: SocketAddr, prefix: &str, vehicle: i64) -> Operator {
        let id = format!("operator-{prefix}");
        let options = MqttOptions::new(id, broker.ip().to_string(), broker.port());
        let (client, eventloop) = AsyncClient::new(options, 100);
        let mut operator = Operator {
            client,
            eventloop,
            prefix: prefix.to_owned(),
        };
        for topic in [
            format!("{prefix}/+/ack"),
            Topic::format(prefix, vehicle, MessageType::VehicleLog),
        ] {
            operator
                .client
                .subscribe(topic, QoS::AtLeastOnce)
                .await
                .unwrap();
            operator
                .next(|p| matches!(p, Packet::SubAck(_)).then_some(()))
                .await;
        }
        operator
    }

    async fn send(&self, vehicle: i64, command: &CommandMessage) {
        self.client
            .publish(
                Topic::command(&self.prefix, &vehicle.to_string()),
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(command).unwrap(),
            )
            .await
            .unwrap();
    }

    /// Polls until `pick` takes an incoming packet.
    async fn next<T>(&mut self, mut pick: impl FnMut(&Packet) -> Option<T>) -> T {
        timeout(DEADLINE, async {
            loop {
                if let Event::Incoming(p) = self.eventloop.poll().await.unwrap() {
                    if let Some(t) = pick(&p) {
                        return t;
                    }
                }
            }
        })
        .await
        .expect("the awaited packet came in time")
    }

    /// The next answer, with the vehicle id from its topic.
    async fn next_ack(&mut self) -> (i64, AckMessage) {
        let prefix = self.prefix.clone();
        self.next(|p| match p {
            Packet::Publish(m) if m.topic.ends_with("/ack") => {
                let id = m.topic[prefix.len() + 1..m.topic.len() - 4]
                    .parse()
                    .unwrap();
                Some((id, serde_json::from_slice(&m.payload).unwrap()))
            }
            _ => None,
        })
        .await
    }

    async fn next_vehicle_log(&mut self) -> VehicleState {
        self.next(|p| match p {
            Packet::Publish(m) if m.topic.ends_with("/vehicle_log") => {
                Some(serde_json::from_slice(&m.payload).unwrap())
            }
            _ => None,
        })
        .await
    }
}

fn fleet(broker: SocketAddr, prefix: &str) -> SimConfig {
    SimConfig {
        broker: format!("mqtt://{broker}"),
        client_id: format!("sim-{prefix}"),
        prefix: prefix.to_owned(),
        vehicles: 3,
        start_id: 20,
        rate: 20.0,
        sensor_rate: 0.0,
        seed: Some(5),
        silent_boats: 1,
        ..SimConfig::default()
    }
}

/// Starts a run; returns once its boats listen for commands.
async fn start(config: SimConfig) -> (CancellationToken, JoinHandle<Summary>) {
    let stop = CancellationToken::new();
    let (ready, listening) = oneshot::channel();
    let hooks = RunHooks {
        commands_ready: Some(ready),
    };
    let running = stop.clone();
    let run = tokio::spawn(async move { run_with(config, running, hooks).await.unwrap() });
    timeout(DEADLINE, listening)
        .await
        .expect("the boats subscribed in time")
        .expect("the run is still going");
    (stop, run)
}

fn command(request_id: &str, name: &str) -> CommandMessage {
    CommandMessage {
        request_id: request_id.to_owned(),
        command: name.to_owned(),
        params: None,
        expires_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boat_answers_a_command_and_its_telemetry_shows_it() {
    let broker = start_broker();
    let prefix = "cmd1";
    let mut operator = Operator::connect(broker, prefix, 21).await;
    let (stop, run) = start(fleet(broker, prefix)).await;

    // Boat 20 is silent: the first answer is boat 21's, which the link sent after.
    operator.send(20, &command("to-silent", "RTL")).await;
    operator.send(21, &command("rtl-1", "RTL")).await;
    let (vehicle, ack) = operator.next_ack().await;
    assert_eq!(vehicle, 21);
    assert_eq!(ack.request_id, "rtl-1");
    assert_eq!(
        (ack.command.as_deref(), ack.status.as_str()),
        (Some("RTL"), "ok")
    );
    assert_eq!(ack.message.as_deref(), Some("Returning to launch"));
    assert!(seano_wire::parse_timestamp(ack.timestamp.as_deref().unwrap()).is_some());

    // The boat's telemetry shows the mode (a vehicle_log made before may still be in flight).
    let mut before = 0;
    while operator.next_vehicle_log().await.mode.as_deref() != Some("RTL") {
        before += 1;
        assert!(before < 3, "vehicle_logs made after the command are in RTL");
    }

    // Redelivered: the same answer, not carried out again.
    operator.send(21, &command("rtl-1", "RTL")).await;
    let (_, again) = operator.next_ack().await;
    assert_eq!(
        (again.request_id.as_str(), again.message.as_deref()),
        ("rtl-1", Some("Returning to launch"))
    );

    stop.cancel();
    let summary = timeout(DEADLINE, run).await.unwrap().unwrap();
    let c = &summary.commands;
    assert_eq!(
        (
            c.received,
            c.repeated,
            c.answered_ok,
            c.answered_error,
            c.ignored
        ),
        (3, 1, 2, 0, 1),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_sent_while_the_fleet_is_away_wait_and_expired_ones_are_refused() {
    let broker = start_broker();
    let prefix = "cmd2";
    let mut operator = Operator::connect(broker, prefix, 22).await;
    // A first run creates the fleet's session and its subscriptions, then leaves.
    let (stop, run) = start(fleet(broker, prefix)).await;
    stop.cancel();
    timeout(DEADLINE, run).await.unwrap().unwrap();

    let expired = CommandMessage {
        expires_at: Some("2020-01-01T00:00:00.000Z".into()),
        ..command("late-1", "HOLD")
    };
    operator.send(22, &expired).await;
    operator.send(22, &command("hold-2", "LOITER")).await;

    // The same fleet again: the broker delivers what waited, in order.
    let (stop, run) = start(fleet(broker, prefix)).await;
    let (vehicle, ack) = operator.next_ack().await;
    assert_eq!((vehicle, ack.request_id.as_str()), (22, "late-1"));
    assert_eq!(ack.status, "error");
    assert!(ack.message.unwrap().starts_with("expired"));
    let (_, ack) = operator.next_ack().await;
    assert_eq!(
        (ack.request_id.as_str(), ack.status.as_str()),
        ("hold-2", "ok")
    );
    let mut before = 0;
    while operator.next_vehicle_log().await.mode.as_deref() != Some("LOITER") {
        before += 1;
        assert!(
            before < 3,
            "vehicle_logs made after the command are in LOITER"
        );
    }
    stop.cancel();
    let summary = timeout(DEADLINE, run).await.unwrap().unwrap();
    assert_eq!(
        (
            summary.commands.answered_ok,
            summary.commands.answered_error
        ),
        (1, 1),
        "{summary}"
    );
}
