//! `GET /api/cluster`: the live instances, from their heartbeat rows.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::access::FleetAccess;
use super::{ApiError, AppState};
use crate::domain::format_time;

/// The instances whose heartbeat is recent, and which one answered.
#[derive(Serialize, utoipa::ToSchema)]
struct Cluster {
    /// INSTANCE_ID of the instance that answered.
    instance_id: String,
    /// Seconds a heartbeat stays valid: an instance silent longer is left out.
    live_seconds: u64,
    instances: Vec<InstanceStatus>,
}

/// One live instance, as its last heartbeat said.
#[derive(Serialize, utoipa::ToSchema)]
struct InstanceStatus {
    instance_id: String,
    /// The client id of its persistent MQTT session.
    client_id: String,
    /// MQTT_SHARED_GROUP, or null for a lone instance.
    shared_group: Option<String>,
    started_at: String,
    heartbeat_at: String,
    /// Open WebSocket connections.
    connections: i64,
    /// Messages it committed since it started.
    messages_stored: i64,
    /// Frames it sent since it started.
    frames_sent: i64,
    /// Messages it committed per second, over its last heartbeat interval.
    stored_per_second: f64,
    /// Frames it sent per second, over its last heartbeat interval.
    frames_per_second: f64,
    /// The last seq its clients were sent.
    last_seq: i64,
}

/// The live gateway instances (one for a lone instance).
#[utoipa::path(
    get,
    path = "/api/cluster",
    tag = "operations",
    responses(
        (status = 200, description = "Every instance whose heartbeat (rewritten every 2 s) is under `live_seconds` old, by id, with its connections and rates", body = Cluster,
         example = json!({"instance_id": "gw-1", "live_seconds": 10, "instances": [
            {"instance_id": "gw-1", "client_id": "seano-gateway-gw-1", "shared_group": "seano",
             "started_at": "2026-12-01T08:00:00.000Z", "heartbeat_at": "2026-12-01T09:00:00.000Z",
             "connections": 12, "messages_stored": 51234, "frames_sent": 602113,
             "stored_per_second": 51.0, "frames_per_second": 612.5, "last_seq": 102467},
            {"instance_id": "gw-2", "client_id": "seano-gateway-gw-2", "shared_group": "seano",
             "started_at": "2026-12-01T08:00:01.000Z", "heartbeat_at": "2026-12-01T09:00:01.000Z",
             "connections": 9, "messages_stored": 51233, "frames_sent": 451600,
             "stored_per_second": 49.0, "frames_per_second": 450.0, "last_seq": 102467}]})),
        (status = 401, description = "Authentication is on and no valid token was given", body = super::error::ErrorBody),
        (status = 500, description = "The database cannot be read", body = super::error::ErrorBody),
    )
)]
pub async fn cluster(_: FleetAccess, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rows = crate::cluster::live_instances(&state.db)
        .await
        .map_err(|e| {
            ApiError::Internal(anyhow::Error::new(e).context("reading the instances' heartbeats"))
        })?;
    Ok(HttpResponse::Ok().json(Cluster {
        instance_id: state.instance.id.clone(),
        live_seconds: crate::cluster::LIVE.as_secs(),
        instances: rows
            .into_iter()
            .map(|r| InstanceStatus {
                instance_id: r.instance_id,
                client_id: r.client_id,
                shared_group: r.shared_group,
                started_at: format_time(r.started_at),
                heartbeat_at: format_time(r.heartbeat_at),
                connections: r.connections,
                messages_stored: r.messages_stored,
                frames_sent: r.frames_sent,
                stored_per_second: r.stored_per_second,
                frames_per_second: r.frames_per_second,
                last_seq: r.last_seq,
            })
            .collect(),
    }))
}
