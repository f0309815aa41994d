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
    mqtt: bool,
    shutting_down: bool,
}

/// 200 when the database answers and the broker session is up and subscribed, 503 otherwise.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Database reachable, MQTT connected and subscribed", body = Readiness,
         example = json!({"status": "ready", "database": true, "mqtt": true, "shutting_down": false})),
        (status = 503, description = "Not ready; the fields say what is missing", body = Readiness,
         example = json!({"status": "not_ready", "database": true, "mqtt": false, "shutting_down": false})),
    )
)]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let database = state.db.ping().await.is_ok();
    let mqtt =
        state.metrics.mqtt_connected.load(Relaxed) && state.metrics.mqtt_subscribed.load(Relaxed);
    let shutting_down = state.shutdown.is_cancelled();
    let ok = database && mqtt && !shutting_down;
    let body = Readiness {
        status: if ok { "ready" } else { "not_ready" },
        database,
        mqtt,
        shutting_down,
    };
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
