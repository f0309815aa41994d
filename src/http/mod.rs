//! HTTP routes, one file per resource, and the state they share: the route table (who may call
//! what) and beside it the OpenAPI document's list of routes, which `openapi` completes with the
//! wire's frame schemas.

pub mod access;
mod cluster;
mod commands;
mod dashboard;
pub mod error;
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
use openapi::Security;

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
    /// Who this instance is (stats, metrics, `/api/cluster`).
    pub instance: crate::cluster::Instance,
    pub commands: crate::commands::Commands,
    /// Bucketed history of whole minutes asks the writer for its pending rollups first.
    pub rollup_sync: crate::store::rollup::RollupSync,
}

/// Who may call a route. `Protected` handlers take an [`access`] extractor; the route test
/// (`tests/api/access.rs`) calls every protected route without a credential and expects 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// Liveness, readiness and the API documents: anyone may read them.
    Public,
    /// Needs a credential (when access control is on) and an allowed Origin (always).
    Protected,
}

/// One route of the API.
pub struct RouteSpec {
    pub path: &'static str,
    pub visibility: Visibility,
    pub route: fn() -> actix_web::Route,
    /// A second method on the same path (POST of commands).
    pub post: Option<fn() -> actix_web::Route>,
}

/// Every API route, with who may call it. The dashboard's files and the docs page (public,
/// and no data) are served besides these.
pub fn route_table() -> Vec<RouteSpec> {
    use Visibility::{Protected, Public};
    let spec = |path, visibility, route| RouteSpec {
        path,
        visibility,
        route,
        post: None,
    };
    vec![
        spec("/health", Public, || web::get().to(health::health)),
        spec("/ready", Public, || web::get().to(health::ready)),
        spec("/api/openapi.json", Public, || {
            web::get().to(openapi::openapi_json)
        }),
        spec("/api/asyncapi.json", Public, || {
            web::get().to(openapi::asyncapi_json)
        }),
        spec("/api/docs", Public, || {
            web::get().to(openapi::docs_redirect)
        }),
        spec("/api/ws/stats", Protected, || {
            web::get().to(stats::ws_stats)
        }),
        spec("/api/cluster", Protected, || {
            web::get().to(cluster::cluster)
        }),
        spec("/api/mqtt/status", Protected, || {
            web::get().to(stats::mqtt_status)
        }),
        spec("/api/ws", Protected, || {
            web::get().to(streams::all_vehicles)
        }),
        spec("/api/ws/vehicle/{vehicle_id}", Protected, || {
            web::get().to(streams::vehicle)
        }),
        spec("/api/vehicles", Protected, || web::get().to(vehicles::list)),
        spec("/api/vehicles/{vehicle_id}", Protected, || {
            web::get().to(vehicles::get)
        }),
        // Before `{type}`, which would otherwise take "track" and "commands".
        spec("/api/vehicles/{vehicle_id}/track", Protected, || {
            web::get().to(vehicles::track)
        }),
        RouteSpec {
            post: Some(|| web::post().to(commands::send_command)),
            ..spec("/api/vehicles/{vehicle_id}/commands", Protected, || {
                web::get().to(commands::list_commands)
            })
        },
        spec("/api/commands/{request_id}", Protected, || {
            web::get().to(commands::get_command)
        }),
        spec("/api/me", Protected, || web::get().to(commands::me)),
        spec("/api/vehicles/{vehicle_id}/{type}", Protected, || {
            web::get().to(vehicles::history)
        }),
        spec("/metrics", Protected, || {
            web::get().to(metrics_endpoint::metrics)
        }),
    ]
}

/// The OpenAPI document's routes and the REST schemas; [`openapi::openapi`] adds the frames'
/// schemas from `seano_wire` and the long descriptions. Every route in [`route_table`] but the
/// docs page's redirect is here (`tests/api/openapi.rs` checks both ways).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "SEANO telemetry gateway",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        vehicles::list,
        vehicles::get,
        vehicles::history,
        vehicles::track,
        commands::send_command,
        commands::list_commands,
        commands::get_command,
        commands::me,
        stats::ws_stats,
        stats::mqtt_status,
        cluster::cluster,
        health::health,
        health::ready,
        metrics_endpoint::metrics,
        openapi::openapi_json,
        openapi::asyncapi_json,
        streams::ws_all_vehicles_doc,
        streams::ws_vehicle_doc,
    ),
    components(schemas(
        error::ErrorBody,
        crate::hub::ConnectionInfo,
        crate::metrics::PipelineStats,
        crate::metrics::TypeCounts,
        commands::CommandPage,
        commands::Me,
        commands::CommandRights,
        seano_wire::CommandRequest,
    )),
    modifiers(&Security),
    tags(
        (name = "vehicles", description = "Registered vehicles, stored history paged by seq, tracks"),
        (name = "streams", description = "WebSocket streams of committed telemetry"),
        (name = "commands", description = "Commands to vehicles, their states, and what a credential may do"),
        (name = "operations", description = "Health, readiness, statistics and Prometheus metrics"),
        (name = "docs", description = "This document, the AsyncAPI document, and Swagger UI at /api/docs"),
    )
)]
pub struct ApiDoc;

async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed("GET"))
}

async fn method_not_allowed_but_post() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed("GET, POST"))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::bad_parameter("query", err.to_string()).into()),
    )
    .app_data(
        web::JsonConfig::default()
            .limit(64 * 1024)
            .error_handler(|err, _| ApiError::bad_parameter("body", err.to_string()).into()),
    );
    for route in route_table() {
        // Every route answers GET (and some POST); another method is a 405 that says so.
        let resource = web::resource(route.path).route((route.route)());
        cfg.service(match route.post {
            Some(post) => resource
                .route(post())
                .default_service(web::to(method_not_allowed_but_post)),
            None => resource.default_service(web::to(method_not_allowed)),
        });
    }
    cfg.service(openapi::swagger_ui())
        .configure(dashboard::routes);
}
