//! `/api/ws/stats` and `/api/mqtt/status`.

use std::sync::atomic::Ordering::Relaxed;

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::{ApiError, AppState};
use crate::hub::ConnectionInfo;
use crate::metrics::PipelineStats;

#[derive(Serialize)]
struct WsStats {
    /// SEANO's fields.
    active_connections: usize,
    connections_info: Vec<ConnectionInfo>,
    connections_by_stream: std::collections::BTreeMap<&'static str, usize>,
    connections_by_vehicle: std::collections::BTreeMap<i64, usize>,
    messages: PipelineStats,
    mqtt: MqttStatus,
    database: DatabaseStatus,
    started_at: String,
    uptime_seconds: u64,
}

#[derive(Serialize)]
struct MqttStatus {
    /// `running` while the ingest task runs, `stopped` after.
    status: &'static str,
    connected: bool,
    broker: String,
}

#[derive(Serialize)]
struct DatabaseStatus {
    /// False after a failed commit, until the next one succeeds.
    connected: bool,
    backend: &'static str,
}

fn mqtt(state: &AppState) -> MqttStatus {
    MqttStatus {
        status: if state.metrics.mqtt_running.load(Relaxed) {
            "running"
        } else {
            "stopped"
        },
        connected: state.metrics.mqtt_connected.load(Relaxed),
        broker: state.broker.clone(),
    }
}

pub async fn ws_stats(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let hub = state
        .hub
        .snapshot()
        .await
        .ok_or_else(|| ApiError::Unavailable("the server is shutting down".into()))?;
    let m = &state.metrics;
    Ok(HttpResponse::Ok().json(WsStats {
        active_connections: hub.active_connections,
        connections_info: hub.connections_info,
        connections_by_stream: hub.connections_by_stream,
        connections_by_vehicle: hub.connections_by_vehicle,
        messages: m.pipeline(),
        mqtt: mqtt(&state),
        database: DatabaseStatus {
            connected: m.database_ok.load(Relaxed),
            backend: match state.db.get_database_backend() {
                sea_orm::DatabaseBackend::Postgres => "postgresql",
                sea_orm::DatabaseBackend::Sqlite => "sqlite",
                _ => "other",
            },
        },
        started_at: crate::domain::format_time(m.started_at),
        uptime_seconds: m.started.elapsed().as_secs(),
    }))
}

pub async fn mqtt_status(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(mqtt(&state))
}
