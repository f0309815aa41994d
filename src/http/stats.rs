//! `/api/ws/stats` and `/api/mqtt/status`.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::access::FleetAccess;
use super::{ApiError, AppState};
use crate::hub::ConnectionInfo;
use crate::metrics::PipelineStats;

/// `GET /api/ws/stats`: SEANO's fields plus the gateway's own figures.
#[derive(Serialize, utoipa::ToSchema)]
struct WsStats {
    /// INSTANCE_ID of the instance that answered.
    instance_id: String,
    /// SEANO's fields.
    active_connections: usize,
    connections_info: Vec<ConnectionInfo>,
    connections_by_stream: std::collections::BTreeMap<&'static str, usize>,
    /// Connections whose filter names each vehicle, keyed by vehicle id (JSON object keys are
    /// strings).
    #[schema(value_type = std::collections::BTreeMap<String, u64>)]
    connections_by_vehicle: std::collections::BTreeMap<i64, usize>,
    messages: PipelineStats,
    /// Committed messages per second of each vehicle, averaged over the last
    /// `rate_window_seconds` (vehicles silent that long are left out), keyed by vehicle id.
    #[schema(value_type = std::collections::BTreeMap<String, f64>)]
    messages_per_second_by_vehicle: std::collections::BTreeMap<i64, f64>,
    rate_window_seconds: usize,
    mqtt: MqttStatus,
    database: DatabaseStatus,
    /// When the gateway started (UTC, RFC 3339).
    started_at: String,
    uptime_seconds: u64,
}

/// The MQTT ingest's state.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(examples(json!({"status": "running", "connected": true, "broker": "mqtt://127.0.0.1:1883", "last_error": null,
    "backlog": 0, "connections_lost": 0, "client_id": "seano-gateway", "shared_group": null})))]
struct MqttStatus {
    /// `running` while the ingest task runs, `stopped` after.
    status: &'static str,
    connected: bool,
    broker: String,
    /// Why the last attempt to reach the broker failed (refused credentials, connection
    /// refused, TLS); null once a session is established.
    last_error: Option<String>,
    /// Messages taken from the broker and held while the store's queue is full (the database
    /// is slow or away); the session stays connected meanwhile.
    backlog: u64,
    /// Times the broker connection was lost since start (each loss voids the acks owed on it).
    connections_lost: u64,
    /// The client id of this instance's persistent session.
    client_id: String,
    /// MQTT_SHARED_GROUP, or null for a lone instance.
    shared_group: Option<String>,
}

/// The database's state as the store sees it.
#[derive(Serialize, utoipa::ToSchema)]
struct DatabaseStatus {
    /// False after a failed commit, until the next one succeeds.
    connected: bool,
    /// `sqlite` or `postgresql`.
    backend: &'static str,
    /// True while commits fail because the database is out of space: nothing is acknowledged
    /// or broadcast, the broker keeps what the boats send, and ingest resumes by itself once
    /// there is room.
    full: bool,
    /// Why the last commit failed; null once one succeeds.
    last_error: Option<String>,
    /// Per table retention has purged: everything received before this time is gone (RFC 3339).
    history_begins_at: std::collections::BTreeMap<String, String>,
}

fn mqtt(state: &AppState) -> MqttStatus {
    MqttStatus {
        status: if state.metrics.mqtt_running.get() {
            "running"
        } else {
            "stopped"
        },
        connected: state.metrics.mqtt_connected.get(),
        broker: state.broker.clone(),
        // unwrap: the lock is never held across a panic.
        last_error: state.metrics.mqtt_last_error.lock().unwrap().clone(),
        backlog: state.metrics.ingest_backlog.get().max(0) as u64,
        connections_lost: state.metrics.mqtt_connections_lost.get(),
        client_id: state.instance.client_id.clone(),
        shared_group: state.instance.shared_group.clone(),
    }
}

/// Connections and pipeline statistics.
#[utoipa::path(
    get,
    path = "/api/ws/stats",
    tag = "operations",
    responses(
        (status = 200, description = "Connections (per stream and per vehicle), messages received / stored / broadcast / rejected by type and reason, frames sent, slow clients dropped, MQTT and database status, uptime", body = WsStats,
         example = json!({
            "instance_id": "gw-1",
            "active_connections": 1,
            "connections_info": [{"client_id": 1, "connected_at": "2025-10-18T16:30:00.123Z", "client_info": {"vehicle_filter": 1},
                                  "filter": {"all": false, "vehicles": [1], "types": ["raw_log", "sensor_log", "vehicle_log"]}}],
            "connections_by_stream": {"all_vehicles": 0, "vehicle": 1},
            "connections_by_vehicle": {"1": 1},
            "messages": {
                "received": {"raw_log": 10, "sensor_log": 20, "vehicle_log": 30},
                "stored": {"raw_log": 10, "sensor_log": 20, "vehicle_log": 30},
                "broadcast": {"raw_log": 10, "sensor_log": 20, "vehicle_log": 30},
                "rejected": {"invalid_json": 1}, "rejected_total": 1,
                "frames_sent": 61, "slow_clients_dropped": 0, "batches_committed": 12,
                "commit_failures": 0, "acks_owed": 0, "acks_stale": 0, "last_seq": 60},
            "mqtt": {"status": "running", "connected": true, "broker": "mqtt://127.0.0.1:1883", "last_error": null,
                     "backlog": 0, "connections_lost": 0, "client_id": "seano-gateway", "shared_group": null},
            "database": {"connected": true, "backend": "sqlite", "full": false, "last_error": null,
                         "history_begins_at": {"vehicle_logs": "2025-09-18T16:00:00.000Z"}},
            "started_at": "2025-10-18T16:00:00.000Z", "uptime_seconds": 1800})),
        (status = 401, description = "Authentication is on and no valid token was given", body = super::error::ErrorBody),
        (status = 503, description = "The server is shutting down", body = super::error::ErrorBody),
    )
)]
pub async fn ws_stats(
    _: FleetAccess,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let hub = state
        .hub
        .snapshot()
        .await
        .ok_or_else(|| ApiError::Unavailable("the server is shutting down".into()))?;
    let m = &state.metrics;
    Ok(HttpResponse::Ok().json(WsStats {
        instance_id: state.instance.id.clone(),
        active_connections: hub.active_connections,
        connections_info: hub.connections_info,
        connections_by_stream: hub.connections_by_stream,
        connections_by_vehicle: hub.connections_by_vehicle,
        messages: m.pipeline(),
        messages_per_second_by_vehicle: m.vehicle_rates.rates(chrono::Utc::now().timestamp()),
        rate_window_seconds: crate::metrics::RATE_WINDOW_SECS,
        mqtt: mqtt(&state),
        database: DatabaseStatus {
            connected: m.database_ok.get(),
            backend: match state.db.get_database_backend() {
                sea_orm::DatabaseBackend::Postgres => "postgresql",
                sea_orm::DatabaseBackend::Sqlite => "sqlite",
                _ => "other",
            },
            full: m.database_full.get(),
            last_error: m.database_error(),
            history_begins_at: crate::retention::marks(&state.db)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|(table, mark)| (table, crate::domain::format_time(mark.purged_before)))
                .collect(),
        },
        started_at: crate::domain::format_time(m.started_at),
        uptime_seconds: m.started.elapsed().as_secs(),
    }))
}

/// The MQTT ingest's state (SEANO's shape plus the broker address).
#[utoipa::path(
    get,
    path = "/api/mqtt/status",
    tag = "operations",
    responses(
        (status = 200, description = "`running`/`stopped`, and whether the session is connected", body = MqttStatus),
        (status = 401, description = "Authentication is on and no valid token was given", body = super::error::ErrorBody),
    )
)]
pub async fn mqtt_status(_: FleetAccess, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(mqtt(&state))
}
