//! `/health` (the process is up) and `/ready` (database and broker reachable).

use std::sync::atomic::Ordering::Relaxed;

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::AppState;

/// The process is up.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses((status = 200, description = "Always, while the process serves HTTP", body = Object,
               example = json!({"status": "ok"})))
)]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Whether the gateway can do its job.
#[derive(Serialize, utoipa::ToSchema)]
struct Readiness {
    /// `ready` or `not_ready`.
    status: &'static str,
    database: bool,
    /// True while commits fail because the database is out of space (a full disk): nothing is
    /// acknowledged or broadcast until there is room again.
    database_full: bool,
    mqtt: bool,
    /// False when messages have waited longer than INGEST_STALL_SECS without any commit.
    ingest: bool,
    /// Messages handed to the store and not yet committed.
    ingest_in_flight: i64,
    shutting_down: bool,
}

/// 200 when the database answers and has room to write, the broker session is up and
/// subscribed and ingest is not stalled (messages waiting longer than INGEST_STALL_SECS with no
/// commit); 503 otherwise.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Database reachable, MQTT connected and subscribed", body = Readiness,
         example = json!({"status": "ready", "database": true, "database_full": false, "mqtt": true, "shutting_down": false})),
        (status = 503, description = "Not ready; the fields say what is missing", body = Readiness,
         example = json!({"status": "not_ready", "database": true, "database_full": true, "mqtt": true, "shutting_down": false})),
    )
)]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let database = state.db.ping().await.is_ok();
    let mqtt = state.metrics.mqtt_connected.get() && state.metrics.mqtt_subscribed.get();
    let shutting_down = state.shutdown.is_cancelled();
    let ingest = state
        .metrics
        .ingest_stalled_for()
        .is_none_or(|waited| waited < state.ingest_stall);
    let database_full = state.metrics.database_full.get();
    let ok = database && !database_full && mqtt && ingest && !shutting_down;
    let body = Readiness {
        status: if ok { "ready" } else { "not_ready" },
        database,
        database_full,
        mqtt,
        ingest,
        ingest_in_flight: state.metrics.ingest_in_flight.load(Relaxed).max(0),
        shutting_down,
    };
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
