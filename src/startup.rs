//! Builds the application: database, broker connection, tasks and HTTP server, all bindable on
//! port 0 for tests, and runs it until a graceful shutdown.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use anyhow::{anyhow, Context};
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::{self, Instance, Sequencer};
use crate::commands::{CommandSettings, Commands};
use crate::config::Settings;
use crate::http::{self, AppState};
use crate::hub::{Hub, HubSettings};
use crate::metrics::Metrics;
use crate::mqtt::{self, embedded, BrokerAddress, Ingest};
use crate::store::{self, Writer, WriterConfig};
use crate::ws::SessionConfig;

/// Messages decoded but not yet taken by the store. Bounded: past it the MQTT task waits.
const STORE_QUEUE: usize = 10_000;

/// Room in rumqttc's request channel. Its event loop sends one request per poll and may read ten
/// packets in the next, so under a flood acks pile up faster than they leave; what does not fit
/// here waits, in order, in the store's owed-ack queue (Mosquitto was seen to exceed its own
/// `max_inflight_messages`, so no broker limit bounds this). The channel allocates as it fills.
const ACK_CAPACITY: usize = 2 * 65_536 + 1024;

pub struct Application {
    port: u16,
    broker: BrokerAddress,
    server: actix_web::dev::Server,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    shutdown_timeout: Duration,
    db: DatabaseConnection,
    metrics: Arc<Metrics>,
}

impl Application {
    /// Connects, migrates, starts the broker (embedded or not), the tasks and the HTTP server.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        settings.validate()?;
        let db = store::connect(&settings.database_url).await?;
        let last_seq = store::replay::last_seq(&db)
            .await
            .context("reading the seq cursor")?;

        let max_payload = settings.max_payload_bytes as usize;
        let mut broker = match &settings.mqtt_url {
            Some(url) => BrokerAddress::parse(url).map_err(|e| anyhow!("invalid MQTT_URL: {e}"))?,
            None => {
                let addr = embedded::start(settings.mqtt_embedded_addr, max_payload)?;
                BrokerAddress::plain(addr.ip().to_string(), addr.port())
            }
        };
        if let Some(user) = &settings.mqtt_username {
            broker.credentials = Some((
                user.clone(),
                settings.mqtt_password.clone().unwrap_or_default(),
            ));
        }

        let listener = TcpListener::bind(settings.http_addr).map_err(|e| {
            anyhow!(
                "cannot listen for HTTP on {}: {e}. Set HTTP_ADDR to a free address (e.g. 127.0.0.1:8080, or 127.0.0.1:0 for any free port)",
                settings.http_addr
            )
        })?;
        let port = listener
            .local_addr()
            .context("reading the HTTP address")?
            .port();

        let auth = settings.auth()?;
        if auth.enabled() {
            log::info!("access control on: a token is required on /api and the streams");
        }
        if let Some(url) = &settings.auth_jwks_url {
            log::info!(
                "JWTs from the identity provider: RS256, ES256, EdDSA with the keys of {url} (refreshed every {} s){}{}",
                settings.auth_jwks_refresh_secs,
                settings.auth_jwt_issuer.as_ref().map_or(String::new(), |i| format!(", issuer {i}")),
                settings.auth_jwt_audience.as_ref().map_or(String::new(), |a| format!(", audience {a}")),
            );
        }
        match auth.origins() {
            crate::auth::OriginPolicy::Any => log::warn!(
                "ALLOWED_ORIGINS=*: any web page a user of this gateway visits may read its API and streams"
            ),
            crate::auth::OriginPolicy::Loopback => log::info!(
                "browser origins allowed: the gateway's own and loopback (set ALLOWED_ORIGINS to allow others)"
            ),
            crate::auth::OriginPolicy::Listed(list) => {
                log::info!("browser origins allowed: the gateway's own and {}", list.join(", "))
            }
        }
        let instance = Instance {
            id: settings.instance_id(),
            client_id: settings.client_id(),
            shared_group: settings.mqtt_shared_group.clone(),
            started_at: chrono::Utc::now(),
        };
        let metrics = Arc::new(Metrics::new(&instance.id));
        metrics
            .last_seq
            .store(last_seq, std::sync::atomic::Ordering::Relaxed);
        let shutdown = CancellationToken::new();
        let store_done = CancellationToken::new();
        let tasks = TaskTracker::new();

        // Set by the writer while its batches are full (and for a second after); replays slow
        // down meanwhile.
        let backlog = store::Backlog::default();
        let (hub, hub_handle) = Hub::new(
            HubSettings {
                queue: settings.ws_client_queue as usize,
                max_connections: settings.ws_max_connections as usize,
                ring_bytes: (settings.ws_replay_ring_mb as usize) << 20,
                replay_rate: settings.ws_replay_rate,
                replay_rate_behind: settings.ws_replay_rate_behind,
                gather: Duration::from_millis(settings.ws_gather_ms),
            },
            last_seq,
            backlog.clone(),
            metrics.clone(),
        );
        let batch_max = settings.batch_max_messages as usize;
        let options = mqtt::options(
            &broker,
            &instance.client_id,
            Duration::from_secs(settings.mqtt_keep_alive_secs),
            ACK_CAPACITY,
            match &settings.mqtt_ca_file {
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    anyhow!("invalid MQTT_CA_FILE: cannot read {}: {e}", path.display())
                })?),
                None => None,
            },
        );
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, ACK_CAPACITY);
        // A command is one small packet that must leave at once, not wait (Nagle) behind the
        // broker's TCP acknowledgement of the last acks written; rumqttc still writes what it
        // has in one go per poll, so this adds no packets under load.
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (receipts, receipts_back) = tokio::sync::mpsc::unbounded_channel();
        // The sequencer feeds the hub every seq in order: the writer's commits, the commands
        // service's, and in a shared group every other instance's.
        let (feed, local) = tokio::sync::mpsc::channel(64);
        let (command_feed, command_changes) = tokio::sync::mpsc::channel(64);
        let (announce, announced) = tokio::sync::watch::channel(last_seq);
        let shared = settings.mqtt_shared_group.is_some();
        if shared {
            tasks.spawn(cluster::listen(
                settings.database_url.clone(),
                db.clone(),
                instance.id.clone(),
                announce,
                shutdown.clone(),
            ));
        } else {
            // Nothing to announce: a closed channel only disables the sequencer's wait on it.
            drop(announce);
        }
        let sequencer = Sequencer::new(
            db.clone(),
            (local, command_changes),
            announced,
            hub_handle.feed(),
            last_seq,
            metrics.clone(),
        );
        let announce_as = shared.then(|| instance.id.clone());
        let (outbox, outbox_rx) = tokio::sync::mpsc::unbounded_channel();
        let (sent_tx, sent_rx) = tokio::sync::mpsc::unbounded_channel();
        let commands = Commands::new(
            db.clone(),
            CommandSettings {
                names: settings
                    .command_names()
                    .map_err(|e| anyhow!("invalid COMMANDS: {e}"))?,
                timeout: Duration::from_millis(settings.command_timeout_ms),
                rate: settings.command_rate as f64,
                burst: settings.command_burst as f64,
                prefix: settings.mqtt_topic_prefix.clone(),
                open: settings.commands_open(),
            },
            outbox,
            command_feed,
            announce_as.clone(),
            metrics.clone(),
        );
        match &commands.settings().open {
            Ok(()) if auth.enabled() => log::info!(
                "commands ({}) accepted from credentials with command rights",
                commands.settings().names.join(", ")
            ),
            Ok(()) if settings.http_addr.ip().is_loopback() => log::info!(
                "commands ({}) accepted from anyone who reaches {} (loopback, access control off)",
                commands.settings().names.join(", "),
                settings.http_addr
            ),
            Ok(()) => log::warn!(
                "COMMANDS_WITHOUT_AUTH=true: anyone who reaches {} can command the fleet",
                settings.http_addr
            ),
            Err(why) => log::warn!("{why}"),
        }
        tasks.spawn(commands.clone().run(sent_rx, shutdown.clone()));
        // Before anything is stored or served: what a crashed run had not rolled up.
        match crate::store::rollup::recover(&db).await {
            Ok(0) => {}
            Ok(n) => log::info!("store: rolled up {n} messages a previous run had not"),
            Err(e) => log::error!("store: could not roll up what a previous run left: {e}"),
        }
        let (writer, store_handle, rollup_sync) = Writer::new(
            store::connect_writer(&settings.database_url).await?,
            feed,
            receipts,
            metrics.clone(),
            WriterConfig {
                batch_max,
                batch_window: settings.batch_window(),
                dedup_window: settings.dedup_window as i64,
                shutdown_timeout: Duration::from_secs(settings.shutdown_timeout_secs),
                queue: STORE_QUEUE,
                announce: announce_as,
                backlog,
            },
            last_seq,
            shutdown.clone(),
        );
        tasks.spawn(hub.run(store_done.clone()));
        let done = store_done.clone();
        // The hub stops once everything committed here has reached it: after the sequencer,
        // which ends when the writer has.
        tasks.spawn(writer.run());
        tasks.spawn(async move {
            sequencer.run().await;
            done.cancel();
        });
        if let Some(warning) = settings.retention_warning() {
            log::warn!("{warning}");
        }
        tasks.spawn(crate::retention::run(
            db.clone(),
            settings.retention(),
            metrics.clone(),
            shutdown.clone(),
        ));
        let connections = hub_handle.clone();
        tasks.spawn(cluster::heartbeat(
            db.clone(),
            instance.clone(),
            metrics.clone(),
            move || connections.connection_count(),
            shutdown.clone(),
        ));
        tasks.spawn(
            Ingest {
                client,
                store: store_handle,
                receipts: receipts_back,
                prefix: settings.mqtt_topic_prefix.clone(),
                shared_group: settings.mqtt_shared_group.clone(),
                max_payload,
                metrics: metrics.clone(),
                shutdown: shutdown.clone(),
                outbox: outbox_rx,
                sent: sent_tx,
            }
            .run(eventloop),
        );
        if let Some(jwks) = auth.jwks_task() {
            // Local: its HTTP client is not `Send`. Start-up waits for the first fetch (a few
            // seconds at most), not for its success: without keys JWTs are refused, the rest
            // works, and the task keeps trying.
            tasks.spawn_local(jwks.run(shutdown.clone()));
            if let Some(keys) = auth.jwks() {
                keys.first_fetch(crate::auth::jwks::FETCH_TIMEOUT + Duration::from_secs(1))
                    .await;
            }
        }
        tasks.close();

        let state = web::Data::new(AppState {
            hub: hub_handle,
            metrics: metrics.clone(),
            db: db.clone(),
            session: SessionConfig {
                heartbeat: Duration::from_secs(settings.ws_heartbeat_secs),
                client_timeout: Duration::from_secs(settings.ws_client_timeout_secs),
                replay_window: settings.ws_replay_window as i64,
                client_rate: settings.ws_client_rate as f64,
                client_burst: settings.ws_client_burst as f64,
                stall_timeout: Duration::from_secs(settings.ws_stall_timeout_secs),
            },
            max_frame_bytes: settings.ws_max_frame_bytes as usize,
            shutdown: shutdown.clone(),
            broker: broker.to_string(),
            auth: auth.clone(),
            ingest_stall: Duration::from_secs(settings.ingest_stall_secs),
            instance: instance.clone(),
            commands,
            rollup_sync,
        });
        let nice = settings.http_worker_nice as libc::c_int;
        let server = HttpServer::new(move || {
            // Called once in each worker thread as it starts.
            lower_this_worker(nice);
            App::new()
                .app_data(state.clone())
                .wrap(cors(&auth))
                .configure(http::routes)
        })
        // A frame goes out when written, not held (Nagle) until the client's TCP acknowledges the
        // last one, which a client's delayed ACK holds up to 40 ms: frames that are ready together
        // already share one write (`WS_GATHER_MS`, the body's chunks).
        .tcp_nodelay(true)
        .listen(listener)
        .context("starting the HTTP server")?
        .disable_signals()
        .shutdown_timeout(5)
        .run();
        log::info!(
            "listening on http://127.0.0.1:{port} (HTTP_ADDR {}); MQTT {broker}, topics {}/#; database {}",
            settings.http_addr,
            settings.mqtt_topic_prefix,
            store::redact(&settings.database_url),
        );
        match &instance.shared_group {
            Some(group) => log::info!(
                "instance {} in shared group {group} (MQTT client id {}): ingest shared through $share/{group}/{}/#, every instance's commits streamed",
                instance.id,
                instance.client_id,
                settings.mqtt_topic_prefix,
            ),
            None => log::info!(
                "instance {} (MQTT client id {})",
                instance.id,
                instance.client_id
            ),
        }
        Ok(Application {
            port,
            broker,
            server,
            shutdown,
            tasks,
            shutdown_timeout: Duration::from_secs(settings.shutdown_timeout_secs),
            db,
            metrics,
        })
    }

    /// The HTTP port (useful with `HTTP_ADDR=...:0`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker in use: the external one, or the embedded one's address.
    pub fn broker(&self) -> &BrokerAddress {
        &self.broker
    }

    /// Cancelling it starts the graceful shutdown (what SIGINT/SIGTERM do).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Serves until the shutdown token is cancelled (or the server fails), then stops taking
    /// messages, commits and acknowledges what is in flight, closes sockets with 1001 and returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        tokio::select! {
            result = &mut server => {
                self.shutdown.cancel();
                result.context("HTTP server task")?.context("HTTP server")?;
            }
            _ = self.shutdown.cancelled() => {}
        }
        log::info!("shutting down: committing in-flight messages, closing sockets");
        if tokio::time::timeout(
            self.shutdown_timeout + Duration::from_secs(5),
            self.tasks.wait(),
        )
        .await
        .is_err()
        {
            log::error!("shutdown: tasks did not finish in time");
        }
        handle.stop(true).await;
        let _ = server.await;
        self.db.clone().close().await.ok();
        log::info!("stopped");
        Ok(())
    }
}

/// CORS from the same rule as the Origin check: a browser page from an origin that is not
/// allowed gets no `Access-Control-Allow-Origin`, so it cannot read any answer.
fn cors(auth: &crate::auth::Auth) -> actix_cors::Cors {
    let policy = auth.origins().clone();
    actix_cors::Cors::default()
        .allow_any_method()
        .allow_any_header()
        .max_age(3600)
        .allowed_origin_fn(move |origin, head| {
            let host = head
                .headers()
                .get(actix_web::http::header::HOST)
                .and_then(|h| h.to_str().ok());
            origin
                .to_str()
                .is_ok_and(|origin| policy.allows(origin, host))
        })
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn shutdown_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        log::error!("cannot listen for SIGTERM: {e}");
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        log::info!("signal received");
        token.cancel();
    });
}

/// Lowers the calling HTTP worker thread's priority by `nice` (`HTTP_WORKER_NICE`), never the
/// main thread's, which ingests and stores. Linux keeps a nice value per thread, and `nice(2)`
/// adds to the calling thread's own (clamped at 19).
fn lower_this_worker(nice: libc::c_int) {
    // SAFETY: gettid and getpid take no arguments and cannot fail.
    if nice == 0 || unsafe { libc::gettid() == libc::getpid() } {
        return;
    }
    // SAFETY: nice() changes only the calling thread's priority. It may return -1 as a value,
    // so errno, cleared first, tells a refusal apart; the error is read before anything else
    // can set errno again.
    let refused = unsafe {
        *libc::__errno_location() = 0;
        libc::nice(nice) == -1 && *libc::__errno_location() != 0
    }
    .then(std::io::Error::last_os_error);
    if let Some(e) = refused {
        log::warn!("could not lower an HTTP worker's priority (HTTP_WORKER_NICE={nice}): {e}");
    }
}
