//! The WebSocket endpoints: `/api/ws` (every vehicle) and `/api/ws/vehicle/{vehicle_id}`.
//! Everything that can be refused is refused with an HTTP error before the upgrade.

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};

use super::{ApiError, AppState};
use crate::auth::Scope;
use crate::hub::{parse_types, Filter, Stream};
use crate::ws::protocol::StreamQuery;
use crate::ws::{session, Opening, SessionContext};

pub async fn all_vehicles(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    open(req, body, state, query.into_inner(), Stream::AllVehicles).await
}

pub async fn vehicle(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_vehicle_id(&path)?;
    open(req, body, state, query.into_inner(), Stream::Vehicle(id)).await
}

pub fn parse_vehicle_id(raw: &str) -> Result<i64, ApiError> {
    match raw.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ApiError::bad_parameter(
            "vehicle_id",
            format!("'{raw}' is not a positive integer"),
        )),
    }
}

async fn open(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    query: StreamQuery,
    stream: Stream,
) -> Result<HttpResponse, ApiError> {
    let types =
        parse_types(query.types.as_deref()).map_err(|e| ApiError::bad_parameter("types", e))?;
    let since = match query.since.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
            ApiError::bad_parameter(
                "since",
                format!("'{s}' is not a seq (a non-negative integer)"),
            )
        })?),
    };
    let snapshot = match query.snapshot.as_deref() {
        None => false,
        Some("latest") => true,
        Some(other) => {
            return Err(ApiError::bad_parameter(
                "snapshot",
                format!("'{other}' is not supported (use snapshot=latest)"),
            ))
        }
    };
    let conflate = match query.conflate.as_deref() {
        None => false,
        Some("latest") => true,
        Some(other) => {
            return Err(ApiError::bad_parameter(
                "conflate",
                format!("'{other}' is not supported (use conflate=latest)"),
            ))
        }
    };
    // Set by the access-control middleware; every vehicle when access control is off.
    let scope = req
        .extensions()
        .get::<Scope>()
        .cloned()
        .unwrap_or(Scope::AllVehicles);
    match stream {
        Stream::AllVehicles if !scope.is_all() => {
            return Err(ApiError::Forbidden(
                "this token is limited to some vehicles: open /api/ws/vehicle/{id}".into(),
            ))
        }
        Stream::Vehicle(id) if !scope.allows(id) => {
            return Err(ApiError::Forbidden(format!(
                "this token does not allow vehicle {id}"
            )))
        }
        _ => {}
    }
    if state.shutdown.is_cancelled() {
        return Err(ApiError::Unavailable("the server is shutting down".into()));
    }
    let slot = state.hub.try_reserve().ok_or_else(|| {
        ApiError::Unavailable("connection limit reached (WS_MAX_CONNECTIONS); retry later".into())
    })?;
    let (response, session, messages) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::bad_parameter("upgrade", e.to_string()))?;
    let messages = messages
        .max_frame_size(state.max_frame_bytes)
        .aggregate_continuations()
        .max_continuation_size(state.max_frame_bytes);
    let filter = match stream {
        Stream::AllVehicles => Filter::all_vehicles(types),
        Stream::Vehicle(id) => Filter::vehicle(id, types),
    };
    let opening = Opening {
        slot,
        stream,
        filter,
        since,
        snapshot,
        scope,
        conflate,
    };
    let ctx = SessionContext {
        hub: state.hub.clone(),
        db: state.db.clone(),
        metrics: state.metrics.clone(),
        config: state.session,
        shutdown: state.shutdown.clone(),
    };
    actix_web::rt::spawn(session::run(session, messages, opening, ctx));
    Ok(response)
}
