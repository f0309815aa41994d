//! HTTP routes, one file per resource, and the state they share.

mod dashboard;
pub mod error;
pub mod guard;
mod health;
mod metrics_endpoint;
pub mod openapi;
mod stats;
mod streams;
mod vehicles;

use std::sync::Arc;

use actix_web::web;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

use crate::hub::HubHandle;
use crate::metrics::Metrics;
use crate::ws::SessionConfig;

/// What every handler can reach (`web::Data<AppState>`).
pub struct AppState {
    pub hub: HubHandle,
    pub metrics: Arc<Metrics>,
    pub db: DatabaseConnection,
    pub session: SessionConfig,
    pub max_frame_bytes: usize,
    pub shutdown: CancellationToken,
    /// The broker the gateway reads from, for status pages.
    pub broker: String,
    pub auth: crate::auth::Auth,
    /// `/ready` fails when messages wait longer than this without a commit.
    pub ingest_stall: std::time::Duration,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::bad_parameter("query", err.to_string()).into()),
    )
    .route("/health", web::get().to(health::health))
    .route("/ready", web::get().to(health::ready))
    .route("/api/ws/stats", web::get().to(stats::ws_stats))
    .route("/api/mqtt/status", web::get().to(stats::mqtt_status))
    .route("/api/ws", web::get().to(streams::all_vehicles))
    .route(
        "/api/ws/vehicle/{vehicle_id}",
        web::get().to(streams::vehicle),
    )
    .route("/api/vehicles", web::get().to(vehicles::list))
    .route("/api/vehicles/{vehicle_id}", web::get().to(vehicles::get))
    // Before `{type}`, which would otherwise take "track".
    .route(
        "/api/vehicles/{vehicle_id}/track",
        web::get().to(vehicles::track),
    )
    .route(
        "/api/vehicles/{vehicle_id}/{type}",
        web::get().to(vehicles::history),
    )
    .route("/metrics", web::get().to(metrics_endpoint::metrics))
    .route("/api/openapi.json", web::get().to(openapi::openapi_json))
    .route("/api/asyncapi.json", web::get().to(openapi::asyncapi_json))
    .route("/api/docs", web::get().to(openapi::docs_redirect))
    .service(openapi::swagger_ui())
    .configure(dashboard::routes);
}
