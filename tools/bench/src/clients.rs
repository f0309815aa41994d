//! The receiving side: WebSocket clients of the gateway and, for the baseline, plain MQTT
//! subscribers of the broker. One task per client; each records into its [`ClientSlot`].
//!
//! A WebSocket client is a tokio-tungstenite stream on a plain `TcpStream` with a small read
//! buffer (a few KiB per connection, so 10,000 of them fit easily); tungstenite answers the
//! server's pings while the client reads. A slow client reads its connection frame and then
//! nothing until the run ends, when it reads what is left to see whether the gateway closed it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::payload::{parse_frame, parse_payload, Frame};
use crate::track::{Accountant, ClientSlot, Closed};

/// What every WebSocket client shares.
pub struct WsContext {
    pub addr: SocketAddr,
    /// `host:port` for the URL and the Host header.
    pub authority: String,
    pub read_buffer: usize,
    pub slow_rcvbuf: u32,
    pub connect: Arc<Semaphore>,
    pub acc: Accountant,
}

impl WsContext {
    fn path(slot: &ClientSlot) -> String {
        match slot.vehicle {
            Some(v) => format!("/api/ws/vehicle/{v}"),
            None => "/api/ws".into(),
        }
    }
}

fn closed(slot: &ClientSlot, how: Closed) {
    // unwrap: the tracker's lock is never held across a panic.
    let mut t = slot.tracker.lock().unwrap();
    if t.closed.is_none() {
        t.closed = Some(how);
    }
}

/// One WebSocket client, from connect to `stop`.
pub async fn ws_client(
    ctx: Arc<WsContext>,
    slot: Arc<ClientSlot>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ws = match connect_ws(&ctx, &slot).await {
        Ok(ws) => ws,
        Err(e) => {
            closed(&slot, Closed::ConnectFailed(format!("{e:#}")));
            ctx.acc.progress.failed.fetch_add(1, Relaxed);
            ctx.acc.progress.notify.notify_one();
            return;
        }
    };
    ctx.acc.progress.connected.fetch_add(1, Relaxed);
    ctx.acc.progress.notify.notify_one();

    if slot.slow {
        let _ = stop.changed().await;
        drain_slow(&slot, &mut ws).await;
        return;
    }
    let ended = read_until_stop(&mut ws, &mut stop, |text| {
        ctx.acc.record(&slot, parse_frame(text), None);
    })
    .await;
    match ended {
        Some(how) => closed(&slot, how),
        None => {
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        }
    }
}

/// Reads `ws` until `stop` changes, handing each text frame to `on_text`. `None`: the bench
/// stopped it; otherwise how the connection ended first.
pub async fn read_until_stop(
    ws: &mut WebSocketStream<TcpStream>,
    stop: &mut watch::Receiver<bool>,
    mut on_text: impl FnMut(&str),
) -> Option<Closed> {
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return None,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => on_text(text.as_str()),
                Some(Ok(Message::Close(frame))) => {
                    return Some(frame.map_or(Closed::Eof, |f| Closed::Code(f.code.into())));
                }
                Some(Ok(_)) => {} // pings are answered by tungstenite
                Some(Err(e)) => return Some(Closed::Error(e.to_string())),
                None => return Some(Closed::Eof),
            }
        }
    }
}

async fn connect_ws(ctx: &WsContext, slot: &ClientSlot) -> Result<WebSocketStream<TcpStream>> {
    let mut last = None;
    for attempt in 0..4 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
        }
        let permit = ctx.connect.acquire().await;
        match tokio::time::timeout(Duration::from_secs(15), connect_once(ctx, slot)).await {
            Ok(Ok(ws)) => {
                drop(permit);
                return Ok(ws);
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => last = Some(anyhow::anyhow!("no connection frame in 15 s")),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("not connected")))
}

/// TCP connect, upgrade, and the first frame, which must be `{"type":"connection",...}`.
async fn connect_once(ctx: &WsContext, slot: &ClientSlot) -> Result<WebSocketStream<TcpStream>> {
    // A small window makes the gateway's send side back up soon, as with a stalled browser.
    let rcvbuf = slot.slow.then_some(ctx.slow_rcvbuf);
    open(
        ctx.addr,
        &ctx.authority,
        &WsContext::path(slot),
        ctx.read_buffer,
        rcvbuf,
    )
    .await
}

/// Opens `path` (with its query) on the gateway: TCP connect, upgrade, and the first frame,
/// which must be `{"type":"connection",...}`. `rcvbuf`: the socket's receive buffer, if set.
pub async fn open(
    addr: SocketAddr,
    authority: &str,
    path: &str,
    read_buffer: usize,
    rcvbuf: Option<u32>,
) -> Result<WebSocketStream<TcpStream>> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{authority}{path}");
    let config = WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0);
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config))
            .await
            .with_context(|| format!("upgrading {url}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                if parse_frame(t.as_str()) == Frame::Connection {
                    return Ok(ws);
                }
                bail!("first frame on {url} is not a connection frame: {t}");
            }
            Some(Ok(Message::Close(f))) => bail!("{url} closed at once: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("{url}: {e}"),
            None => bail!("{url}: closed before the connection frame"),
        }
    }
}

/// Reads what a slow client's socket holds, to learn whether the gateway closed it.
async fn drain_slow(slot: &ClientSlot, ws: &mut WebSocketStream<TcpStream>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut frames = 0;
    let how = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => break None, // still open: the gateway did not drop it
            Ok(Some(Ok(Message::Text(_)))) => frames += 1,
            Ok(Some(Ok(Message::Close(f)))) => {
                break Some(f.map_or(Closed::Eof, |f| Closed::Code(f.code.into())))
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => break Some(Closed::Error(e.to_string())),
            Ok(None) => break Some(Closed::Eof),
        }
    };
    {
        // unwrap: the tracker's lock is never held across a panic.
        let mut t = slot.tracker.lock().unwrap();
        t.backlog_frames = frames;
    }
    if let Some(how) = how {
        closed(slot, how);
    }
}

/// What every MQTT subscriber shares.
pub struct MqttContext {
    pub host: String,
    pub port: u16,
    pub prefix: String,
    pub tag: String,
    pub connect: Arc<Semaphore>,
    pub acc: Accountant,
}

/// One plain MQTT subscriber (QoS 0) of the bench's topics, the broker-fan-out baseline.
pub async fn mqtt_subscriber(
    ctx: Arc<MqttContext>,
    slot: Arc<ClientSlot>,
    mut stop: watch::Receiver<bool>,
) {
    let mut opts = MqttOptions::new(
        format!("bench-{}-s{}", ctx.tag, slot.index),
        ctx.host.clone(),
        ctx.port,
    );
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(1 << 20, 10 * 1024);
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let topic = match slot.vehicle {
        Some(v) => format!("{}/{v}/vehicle_log", ctx.prefix),
        None => format!("{}/+/vehicle_log", ctx.prefix),
    };
    let mut permit = Some(ctx.connect.clone().acquire_owned().await);
    let fail = |how: Closed| {
        closed(&slot, how);
        ctx.acc.progress.failed.fetch_add(1, Relaxed);
        ctx.acc.progress.notify.notify_one();
    };
    if let Err(e) = client.subscribe(topic.as_str(), QoS::AtMostOnce).await {
        fail(Closed::ConnectFailed(e.to_string()));
        return;
    }
    let connect_deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = tokio::time::sleep_until(connect_deadline), if permit.is_some() => {
                fail(Closed::ConnectFailed("no SUBACK in 30 s".into()));
                return;
            }
            ev = eventloop.poll() => match ev {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let vehicle = p.topic.split('/').nth(1).and_then(|v| v.parse().ok());
                    ctx.acc.record(&slot, parse_payload(&p.payload), vehicle);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if permit.take().is_some() {
                        ctx.acc.progress.connected.fetch_add(1, Relaxed);
                        ctx.acc.progress.notify.notify_one();
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if permit.is_some() {
                        fail(Closed::ConnectFailed(e.to_string()));
                    } else {
                        closed(&slot, Closed::Error(e.to_string()));
                    }
                    return;
                }
            }
        }
    }
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
}
