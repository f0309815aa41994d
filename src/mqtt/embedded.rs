//! The embedded MQTT broker (rumqttd) used when `MQTT_URL` is unset, so that
//! `cargo run --release` works on a machine with no broker.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Starts the broker on `addr` (port 0 picks a free one) in its own threads and waits until it
/// accepts connections. Returns the address it listens on.
pub fn start(addr: SocketAddr, max_payload: usize) -> anyhow::Result<SocketAddr> {
    // rumqttd only logs a failed bind from its own thread; check first so the user hears why.
    let probe = TcpListener::bind(addr).map_err(|e| {
        anyhow!(
            "cannot start the embedded MQTT broker on {addr}: {e}. Another broker may be running \
             there: set MQTT_URL=mqtt://{addr} to use it, or MQTT_EMBEDDED_ADDR to another address \
             (e.g. 127.0.0.1:1884)"
        )
    })?;
    let addr = probe
        .local_addr()
        .context("reading the embedded broker's address")?;
    drop(probe);

    let server = ServerSettings {
        name: "v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: max_payload.max(1024 * 1024) * 2,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 100_000,
            max_outgoing_packet_count: 500,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("v4".to_owned(), server)])),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                log::error!("embedded MQTT broker stopped: {e}");
            }
        })
        .context("starting the embedded broker thread")?;

    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!("the embedded MQTT broker did not start listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    log::info!("embedded MQTT broker listening on mqtt://{addr}");
    Ok(addr)
}
