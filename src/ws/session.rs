//! One WebSocket session: forwards hub frames, answers client frames, pings, and closes with
//! the right code. Runs on the actix worker that accepted the connection.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::protocol::{self, close, ClientFrame};
use crate::hub::{HubHandle, Kick, Registration};
use crate::metrics::Metrics;

#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    pub heartbeat: Duration,
    pub client_timeout: Duration,
}

pub struct SessionContext {
    pub hub: HubHandle,
    pub metrics: Arc<Metrics>,
    pub config: SessionConfig,
    pub shutdown: CancellationToken,
}

/// Runs the session until either side ends it.
pub async fn run(
    mut session: Session,
    mut stream: AggregatedMessageStream,
    mut reg: Registration,
    vehicle_id: Option<i64>,
    ctx: SessionContext,
) {
    let SessionContext {
        hub,
        metrics,
        config,
        shutdown,
    } = ctx;
    let hello = protocol::connection(reg.connection_count, vehicle_id, &reg.filter);
    let mut reason = None;
    if session.text(hello).await.is_ok() {
        metrics.frames_sent.fetch_add(1, Relaxed);
        reason = serve(
            &mut session,
            &mut stream,
            &mut reg,
            vehicle_id,
            &hub,
            &metrics,
            config,
            &shutdown,
        )
        .await;
    }
    hub.unregister(reg.id).await;
    if let Some(r) = &reason {
        log::debug!("ws: closing client {} with {:?}", reg.id, r);
    }
    let _ = session.close(reason).await;
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    session: &mut Session,
    stream: &mut AggregatedMessageStream,
    reg: &mut Registration,
    vehicle_id: Option<i64>,
    hub: &HubHandle,
    metrics: &Metrics,
    config: SessionConfig,
    shutdown: &CancellationToken,
) -> Option<CloseReason> {
    let mut last_heard = Instant::now();
    let mut heartbeat = interval_at(Instant::now() + config.heartbeat, config.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let reply = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Some(reason(close::GOING_AWAY, "server shutting down")),
            _ = reg.kicked.cancelled() => {
                return match reg.kick_reason() {
                    Some(Kick::SlowConsumer) | None => Some(reason(close::SLOW_CONSUMER, "slow consumer: reconnect and resume with since=")),
                };
            }
            frame = reg.frames.recv() => match frame {
                Some(frame) => {
                    if session.text(frame).await.is_err() {
                        return None;
                    }
                    metrics.frames_sent.fetch_add(1, Relaxed);
                    continue;
                }
                None => return Some(reason(close::GOING_AWAY, "stream ended")),
            },
            msg = stream.recv() => {
                last_heard = Instant::now();
                match msg {
                    None => return None,
                    Some(Err(actix_ws::ProtocolError::Overflow)) => {
                        return Some(reason(close::TOO_BIG, "frame too large"));
                    }
                    Some(Err(e)) => return Some(CloseReason { code: CloseCode::Protocol, description: Some(e.to_string()) }),
                    Some(Ok(AggregatedMessage::Text(text))) => handle_text(&text, reg, vehicle_id, hub).await,
                    Some(Ok(AggregatedMessage::Binary(_))) => protocol::error("Binary frames are not supported; send JSON text"),
                    Some(Ok(AggregatedMessage::Ping(bytes))) => {
                        if session.pong(&bytes).await.is_err() {
                            return None;
                        }
                        continue;
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => continue,
                    Some(Ok(AggregatedMessage::Close(r))) => return r,
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > config.client_timeout {
                    return Some(reason(close::HEARTBEAT_TIMEOUT, "no answer to pings"));
                }
                if session.ping(b"").await.is_err() {
                    return None;
                }
                continue;
            }
        };
        if session.text(reply).await.is_err() {
            return None;
        }
        metrics.frames_sent.fetch_add(1, Relaxed);
    }
}

async fn handle_text(
    text: &str,
    reg: &mut Registration,
    vehicle_id: Option<i64>,
    hub: &HubHandle,
) -> String {
    match protocol::parse_client_frame(text) {
        Ok(ClientFrame::Ping(ts)) => protocol::pong(ts, vehicle_id),
        Ok(ClientFrame::Change(change)) => match hub.update(reg.id, change).await {
            Some(filter) => {
                let ack = protocol::subscription_ack(change, &filter);
                reg.filter = filter;
                ack
            }
            None => protocol::error("The server is shutting down"),
        },
        Err(message) => protocol::error(&message),
    }
}

fn reason(code: u16, description: &str) -> CloseReason {
    CloseReason {
        code: CloseCode::from(code),
        description: Some(description.to_owned()),
    }
}
