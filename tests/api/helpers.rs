//! `spawn_app()` and the clients tests talk to it with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::web::Bytes;
use awc::ws;
use futures_util::{SinkExt, StreamExt};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, EntityTrait, PaginatorTrait, Statement,
};
use seano_gateway::config::Settings;
use seano_gateway::startup::Application;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something that should happen before it fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A unique name for this test's prefix, database and client ids.
pub fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000_000;
    format!(
        "{tag}{}x{nanos}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// INSTANCE_ID of the gateways tests start in process: the `instance` label of every sample.
pub const TEST_INSTANCE: &str = "test-gw";

/// Where a test's data lives; kept so a restart can reuse it.
#[derive(Clone, Debug)]
pub struct Resources {
    pub database_url: String,
    /// `None`: start an embedded broker.
    pub mqtt_url: Option<String>,
    pub prefix: String,
    pub client_id: String,
}

impl Resources {
    /// A fresh database (PostgreSQL database of its own, or SQLite file) and prefix.
    pub async fn fresh() -> Resources {
        let name = unique("seano_test_");
        let database_url = match std::env::var("TEST_DATABASE_URL") {
            Ok(admin) if !admin.is_empty() => {
                let db = Database::connect(&admin)
                    .await
                    .expect("TEST_DATABASE_URL is not reachable");
                db.execute_raw(Statement::from_string(
                    db.get_database_backend(),
                    format!("CREATE DATABASE \"{name}\""),
                ))
                .await
                .expect("creating the test database");
                db.close().await.ok();
                let mut url = url::Url::parse(&admin).unwrap();
                url.set_path(&name);
                url.to_string()
            }
            _ => {
                let path = std::env::temp_dir().join(format!("seano-{name}.db"));
                format!("sqlite://{}?mode=rwc", path.display())
            }
        };
        Resources {
            database_url,
            mqtt_url: std::env::var("TEST_MQTT_URL")
                .ok()
                .filter(|u| !u.is_empty()),
            prefix: name.clone(),
            client_id: format!("gw-{name}"),
        }
    }

    pub fn settings(&self) -> Settings {
        Settings {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            database_url: self.database_url.clone(),
            mqtt_url: self.mqtt_url.clone(),
            mqtt_embedded_addr: "127.0.0.1:0".parse().unwrap(),
            mqtt_topic_prefix: self.prefix.clone(),
            mqtt_client_id: self.client_id.clone(),
            instance_id: Some(TEST_INSTANCE.into()),
            // An app in the test process shares its CPU with the test's own clients and with
            // every other test's app: niced workers would be throttled against the load the
            // test generates, not against ingest. The process tests keep the default.
            http_worker_nice: 0,
            ..Settings::default()
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub prefix: String,
    /// The broker the gateway uses (the embedded one's address when there is no TEST_MQTT_URL).
    pub mqtt_url: String,
    pub resources: Resources,
    /// A connection of the test's own, not the application's pool.
    pub db: DatabaseConnection,
    /// The application's shared pool (what requests and streams read with), for tests that
    /// take its connections.
    pub app_db: DatabaseConnection,
    pub http: awc::Client,
    pub shutdown: CancellationToken,
    pub server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    publisher: Option<Publisher>,
}

pub async fn spawn_app() -> TestApp {
    spawn_with(Resources::fresh().await, |_| {}).await
}

/// Starts the application on `resources` with `tweak` applied to its settings, and waits until
/// it is ready (database reachable, subscribed to the broker).
pub async fn spawn_with(resources: Resources, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let app = spawn_unready(resources, tweak).await;
    app.wait_ready().await;
    app
}

/// Starts the application like [`spawn_with`] without waiting until it is ready.
pub async fn spawn_unready(resources: Resources, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut settings = resources.settings();
    tweak(&mut settings);
    let app = Application::build(settings)
        .await
        .expect("the application builds");
    let port = app.port();
    let mqtt_url = app.broker().to_string();
    let shutdown = app.shutdown_token();
    let app_db = app.db().clone();
    // The test's own connection: what it sees, any other reader sees.
    let db = Database::connect(&resources.database_url)
        .await
        .expect("the test connects to the database");
    let server = tokio::spawn(app.run_until_stopped());
    let mut resources = resources;
    // A restart must find the same broker, embedded or not.
    resources.mqtt_url = Some(mqtt_url.clone());
    let test_app = TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        prefix: resources.prefix.clone(),
        mqtt_url,
        resources,
        db,
        app_db,
        // Pooled connections are let go before the server's 5 s keep-alive closes them: a
        // request on one it has just closed fails (`Connect(Disconnected)`).
        http: awc::Client::builder()
            .connector(awc::Connector::new().conn_keep_alive(Duration::from_secs(2)))
            .finish(),
        shutdown,
        server: Some(server),
        publisher: None,
    };
    test_app
}

impl TestApp {
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let mut resp = self
            .http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("HTTP request");
        let status = resp.status().as_u16();
        let body = resp.body().await.expect("HTTP body");
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// `GET /metrics`: the exposition text (status 200 checked).
    pub async fn metrics(&self) -> String {
        let mut resp = self
            .http
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .expect("HTTP request");
        assert_eq!(resp.status(), 200);
        let body = resp.body().limit(1 << 20).await.expect("a body");
        String::from_utf8(body.to_vec()).expect("UTF-8")
    }

    /// The value of `name`'s sample whose labels include `label` (`table="vehicle_logs"`).
    pub async fn metric(&self, name: &str, label: &str) -> u64 {
        self.sample(name, label).await
    }

    /// [`TestApp::metric`] for a sample that is not a whole number (seconds).
    pub async fn metric_f64(&self, name: &str, label: &str) -> f64 {
        self.sample(name, label).await
    }

    async fn sample<T: std::str::FromStr>(&self, name: &str, label: &str) -> T {
        let body = self.metrics().await;
        let prefix = format!("{name}{{");
        body.lines()
            .find(|l| l.starts_with(&prefix) && l.contains(label))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix}{label}}} sample in:\n{body}"))
    }

    async fn wait_ready(&self) {
        wait_for("the gateway to be ready", || async {
            self.get("/ready").await.0 == 200
        })
        .await;
    }

    /// Publishes `payload` on `{prefix}/{suffix}` at QoS 1 and waits for the broker's ack.
    pub async fn publish(&mut self, suffix: &str, payload: impl Into<Vec<u8>>) {
        let topic = format!("{}/{suffix}", self.prefix);
        self.publish_raw(&topic, payload).await;
    }

    /// Publishes on an exact topic (for topics outside the prefix or malformed ones).
    pub async fn publish_raw(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        if self.publisher.is_none() {
            self.publisher = Some(Publisher::connect(&self.mqtt_url).await);
        }
        self.publisher
            .as_mut()
            .unwrap()
            .publish(topic, payload.into())
            .await;
    }

    pub async fn publisher(&self) -> Publisher {
        Publisher::connect(&self.mqtt_url).await
    }

    pub async fn connect_ws(&self, path: &str) -> WsClient {
        WsClient::connect(&format!("ws://127.0.0.1:{}{path}", self.port)).await
    }

    /// Rows in a table.
    pub async fn count(&self, table: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                format!("SELECT COUNT(*) FROM {table}"),
            ))
            .await
            .expect("count query")
            .expect("a row");
        row.try_get_by_index::<i64>(0).expect("a count")
    }

    /// Waits until `table` holds `n` rows.
    pub async fn wait_rows(&self, table: &str, n: i64) {
        wait_for(&format!("{n} rows in {table}"), || async {
            self.count(table).await >= n
        })
        .await;
        assert_eq!(self.count(table).await, n, "rows in {table}");
    }

    /// Graceful shutdown, as on SIGTERM; waits until the server has stopped.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(30), server)
                .await
                .expect("the server stops in time")
                .expect("the server task")
                .expect("the server exits cleanly");
        }
    }

    /// Vehicles registered.
    pub async fn vehicles(&self) -> u64 {
        entity::vehicle::Entity::find()
            .count(&self.db)
            .await
            .unwrap()
    }
}

/// Polls `check` every 20 ms until it holds; panics with `what` after [`DEADLINE`].
pub async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How far a test's publisher may run ahead of what the gateway has stored. The machine's stock
/// Mosquitto queues at most 1,000 messages for a subscriber that has not acknowledged them and
/// drops the rest (`max_queued_messages`), and the gateway acknowledges only after commit: a
/// test that must lose nothing, and whose gateway can fall behind on a busy machine, keeps its
/// publisher within this of the store.
pub const BROKER_QUEUE_LEAD: i64 = 500;

/// Waits until the gateway has stored all but [`BROKER_QUEUE_LEAD`] of the `sent` messages of a
/// fresh database.
pub async fn keep_within_broker_queue(db: &DatabaseConnection, sent: i64) {
    let needed = sent - BROKER_QUEUE_LEAD;
    wait_for(
        &format!("the gateway to store {needed} of {sent} messages"),
        || async {
            seano_gateway::store::replay::last_seq(db)
                .await
                .unwrap_or(0)
                >= needed
        },
    )
    .await;
}

/// An MQTT client that publishes at QoS 1 and knows when the broker has acked.
pub struct Publisher {
    pub client: AsyncClient,
    acks: mpsc::UnboundedReceiver<()>,
}

impl Publisher {
    pub async fn connect(url: &str) -> Publisher {
        let broker = seano_gateway::mqtt::BrokerAddress::parse(url).expect("a broker URL");
        let mut opts = MqttOptions::new(unique("pub"), broker.host, broker.port);
        opts.set_max_packet_size(64 * 1024 * 1024, 64 * 1024 * 1024);
        opts.set_inflight(200);
        let (client, mut eventloop) = AsyncClient::new(opts, 1000);
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let (conn_tx, mut connected) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = conn_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        if ack_tx.send(()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(DEADLINE, connected.recv())
            .await
            .expect("the publisher connects to the broker");
        Publisher { client, acks }
    }

    /// Publishes and waits for the broker's PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>) {
        self.send(topic, payload).await;
        self.wait_acks(1).await;
    }

    /// Publishes without waiting for the ack.
    pub async fn send(&mut self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("queueing a publish");
    }

    pub async fn wait_acks(&mut self, n: usize) {
        for _ in 0..n {
            tokio::time::timeout(DEADLINE, self.acks.recv())
                .await
                .expect("the broker acks the publish");
        }
    }
}

/// Message `n` of a test's traffic: the type `kind % 3` picks (raw_log, sensor_log, vehicle_log)
/// and a payload of that type that no other `n` shares. Returns the topic's type and the payload.
pub fn numbered_message(kind: usize, n: usize) -> (&'static str, String) {
    match kind % 3 {
        0 => ("raw_log", format!("msg-{n:05}")),
        1 => (
            "sensor_log",
            format!(r#"{{"sensor_id":1,"data":{{"n":{n}}}}}"#),
        ),
        _ => (
            "vehicle_log",
            format!(r#"{{"mode":"AUTO","latitude":{}}}"#, n as f64 / 1e4),
        ),
    }
}

/// A WebSocket client that reads JSON frames with a deadline and answers pings.
pub struct WsClient {
    framed: actix_codec::Framed<awc::BoxedSocket, ws::Codec>,
}

/// What a read from the socket gave.
#[derive(Debug)]
pub enum WsEvent {
    Json(Value),
    Closed(Option<ws::CloseReason>),
}

impl WsClient {
    pub async fn connect(url: &str) -> WsClient {
        let (_resp, framed) = awc::Client::builder()
            .max_http_version(awc::http::Version::HTTP_11)
            .finish()
            .ws(url)
            .max_frame_size(16 * 1024 * 1024)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("WebSocket connect to {url}: {e}"));
        WsClient { framed }
    }

    pub fn from_framed(framed: actix_codec::Framed<awc::BoxedSocket, ws::Codec>) -> WsClient {
        WsClient { framed }
    }

    /// The next JSON text frame or the close, within [`DEADLINE`].
    pub async fn next_event(&mut self) -> WsEvent {
        // One deadline for the whole wait: the server's pings must not extend it.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.framed.next())
                .await
                .expect("a frame within the deadline");
            match frame {
                Some(Ok(ws::Frame::Text(bytes))) => {
                    return WsEvent::Json(serde_json::from_slice(&bytes).expect("a JSON frame"))
                }
                Some(Ok(ws::Frame::Ping(p))) => {
                    let _ = self.framed.send(ws::Message::Pong(p)).await;
                }
                Some(Ok(ws::Frame::Close(reason))) => return WsEvent::Closed(reason),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("WebSocket protocol error: {e}"),
                None => return WsEvent::Closed(None),
            }
        }
    }

    /// The next JSON frame; panics on close.
    pub async fn next_json(&mut self) -> Value {
        match self.next_event().await {
            WsEvent::Json(v) => v,
            WsEvent::Closed(r) => panic!("socket closed while waiting for a frame: {r:?}"),
        }
    }

    /// The next frame whose `type` is a telemetry type (skipping control frames).
    pub async fn next_data(&mut self) -> Value {
        loop {
            let v = self.next_json().await;
            if matches!(
                v["type"].as_str(),
                Some("raw_log" | "sensor_log" | "vehicle_log")
            ) {
                return v;
            }
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.framed
            .send(ws::Message::Text(text.to_owned().into()))
            .await
            .expect("sending a frame");
    }

    pub async fn send_json(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.framed
            .send(ws::Message::Binary(Bytes::from(bytes)))
            .await
            .expect("sending a frame");
    }

    /// Sends a ping frame and returns the pong: everything the server sent before it is in
    /// `before`, so a test can assert "nothing else arrived" without sleeping.
    pub async fn round_trip(&mut self) -> Vec<Value> {
        let marker = unique("rt");
        self.send_json(serde_json::json!({"type": "ping", "timestamp": marker}))
            .await;
        let mut before = Vec::new();
        loop {
            let v = self.next_json().await;
            if v["type"] == "pong" && v["timestamp"] == marker.as_str() {
                return before;
            }
            before.push(v);
        }
    }
}

/// The gateway binary running as a child process (for crash and signal tests).
pub struct GatewayProcess {
    pub child: std::process::Child,
    pub port: u16,
}

impl GatewayProcess {
    /// Starts `seano-gateway` on `resources` (which must name a broker) and waits until ready.
    pub async fn start(resources: &Resources) -> GatewayProcess {
        GatewayProcess::start_with(resources, &[]).await
    }

    /// Like [`GatewayProcess::start`], with more environment variables.
    pub async fn start_with(resources: &Resources, env: &[(&str, &str)]) -> GatewayProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_seano-gateway"))
            .env("HTTP_ADDR", "127.0.0.1:0")
            .env("DATABASE_URL", &resources.database_url)
            .env(
                "MQTT_URL",
                resources
                    .mqtt_url
                    .as_deref()
                    .expect("a broker for the process"),
            )
            .env("MQTT_TOPIC_PREFIX", &resources.prefix)
            .env("MQTT_CLIENT_ID", &resources.client_id)
            .env("RUST_LOG", "info")
            // Last: they override the defaults above.
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("starting the gateway binary");
        let stderr = child.stderr.take().unwrap();
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        // Reads the log for the port, then keeps draining it so the child never blocks on it.
        std::thread::spawn(move || {
            let mut port_tx = Some(port_tx);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
                    let port: u16 = rest
                        .split(|c: char| !c.is_ascii_digit())
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap();
                    if let Some(tx) = port_tx.take() {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        let port = tokio::time::timeout(DEADLINE, port_rx)
            .await
            .expect("the gateway logs its port")
            .expect("the gateway starts");
        let process = GatewayProcess { child, port };
        let http = awc::Client::default();
        wait_for("the gateway process to be ready", || async {
            match http
                .get(format!("http://127.0.0.1:{port}/ready"))
                .send()
                .await
            {
                Ok(resp) => resp.status().as_u16() == 200,
                Err(_) => false,
            }
        })
        .await;
        process
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaping the child");
    }

    /// SIGTERM, then waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the child") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gateway exits after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker for tests that must outlive a gateway process: TEST_MQTT_URL, or an embedded
/// broker of the test's own.
pub fn standalone_broker(resources: &Resources) -> String {
    resources.mqtt_url.clone().unwrap_or_else(|| {
        let addr = seano_gateway::mqtt::embedded::start("127.0.0.1:0".parse().unwrap(), 1 << 20)
            .expect("starting an embedded broker");
        format!("mqtt://{addr}")
    })
}

/// A TCP proxy on port 0 in front of a real service, that a test can cut and restore to
/// simulate an outage (connections reset, new ones refused) without touching the service.
pub struct TcpProxy {
    pub port: u16,
    state: std::sync::Arc<std::sync::Mutex<CancellationToken>>,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl TcpProxy {
    pub async fn start(upstream: String) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (st, u) = (state.clone(), up.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !u.load(Ordering::SeqCst) {
                    continue; // dropped: the service is "down"
                }
                let cut = st.lock().unwrap().clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.cancelled() => {}
                    }
                });
            }
        });
        TcpProxy { port, state, up }
    }

    /// Resets every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut token = self.state.lock().unwrap();
        token.cancel();
        *token = CancellationToken::new();
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// For a gateway run as a process: a broker that outlives it. Without TEST_MQTT_URL the
/// embedded broker would die with the gateway, so `resources` gets a Mosquitto of the test's
/// own, which is returned (keep it alive as long as the gateway).
pub async fn broker_for_process(resources: &mut Resources) -> Option<PrivateMosquitto> {
    if resources.mqtt_url.is_some() {
        return None;
    }
    let broker = PrivateMosquitto::start().await;
    resources.mqtt_url = Some(broker.url.clone());
    Some(broker)
}

/// A Mosquitto of the test's own on a free port, with the limits a gateway that acknowledges
/// after commit needs (the stock configuration queues only 1,000 messages per session and then
/// drops): for tests that hold back a large backlog on purpose. Killed when dropped.
pub struct PrivateMosquitto {
    child: std::process::Child,
    pub url: String,
    dir: std::path::PathBuf,
}

impl PrivateMosquitto {
    pub async fn start() -> PrivateMosquitto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(unique("mosquitto-"));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_inflight_messages 20000\nmax_queued_messages 1000000\nmax_queued_bytes 0\n\
                 log_dest none\n"
            ),
        )
        .unwrap();
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting mosquitto (apt-get install mosquitto)");
        let url = format!("mqtt://127.0.0.1:{port}");
        wait_for("the private Mosquitto to listen", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        PrivateMosquitto { child, url, dir }
    }
}

impl Drop for PrivateMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Holds the seq cursor's row in a transaction of the test's own, so every commit of the
/// gateway waits behind it (PostgreSQL) or fails and is retried (SQLite): a database that
/// takes nothing, without touching the server. Released by `rollback`.
pub async fn hold_seq_cursor(db: &DatabaseConnection) -> sea_orm::DatabaseTransaction {
    use sea_orm::TransactionTrait;
    let blocker = db.begin().await.unwrap();
    blocker
        .execute_raw(Statement::from_string(
            db.get_database_backend(),
            "UPDATE seq_cursor SET value = value WHERE id = 1".to_owned(),
        ))
        .await
        .unwrap();
    blocker
}
