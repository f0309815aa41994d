//! The access-control middleware: every protected request shows a valid credential before any
//! handler runs (HTTP 401/403, never an open socket), and carries its [`Scope`] on.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};

use super::{ApiError, AppState};
use crate::auth::Scope;

/// Paths anyone may read: liveness, the docs, the dashboard's files.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/health" | "/ready" | "/api/openapi.json" | "/api/asyncapi.json"
    ) || path.starts_with("/api/docs")
        || !(path.starts_with("/api/") || path == "/metrics")
}

/// The vehicle a REST path is about (`/api/vehicles/{id}...`).
fn vehicle_of(path: &str) -> Option<Result<i64, ()>> {
    let rest = path.strip_prefix("/api/vehicles/")?;
    let id = rest.split('/').next().unwrap_or("");
    Some(id.parse().map_err(|_| ()))
}

/// The credential: `Authorization: Bearer <token>`, or `?token=` (browsers cannot set headers
/// on a WebSocket).
fn credential(req: &ServiceRequest) -> Option<String> {
    if let Some(h) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        return h
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_owned());
    }
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

pub async fn require_auth(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if is_public(req.path()) {
        return next.call(req).await;
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(req).await;
    };
    let origin = req
        .headers()
        .get(actix_web::http::header::ORIGIN)
        .and_then(|o| o.to_str().ok());
    state.auth.check_origin(origin).map_err(ApiError::from)?;
    let scope = state
        .auth
        .authenticate(credential(&req).as_deref(), chrono::Utc::now().timestamp())
        .map_err(ApiError::from)?;
    if let Scope::Vehicles(allowed) = &scope {
        let path = req.path();
        if !path.starts_with("/api/ws/vehicle/") && path != "/api/ws" {
            match vehicle_of(path) {
                Some(Ok(id)) if scope.allows(id) => {}
                Some(Err(())) => {} // the handler answers 400 for a malformed id
                _ => {
                    return Err(ApiError::Forbidden(format!(
                        "this token is limited to vehicles {allowed:?}"
                    ))
                    .into())
                }
            }
        }
    }
    req.extensions_mut().insert(scope);
    next.call(req).await
}
