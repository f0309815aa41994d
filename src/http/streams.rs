//! The WebSocket endpoints: `/api/ws` (every vehicle) and `/api/ws/vehicle/{vehicle_id}`.
//! Everything that can be refused is refused with an HTTP error before the upgrade.

use actix_web::body::MessageBody;
use actix_web::{web, HttpRequest, HttpResponse};

use super::access::{FleetAccess, VehicleAccess};
use super::{ApiError, AppState};
use crate::commands::Caller;
use crate::hub::{parse_types, Filter, Stream};
use crate::ws::body::FrameBody;
use crate::ws::protocol::{StreamQuery, UpgradeHeaders};
use crate::ws::{session, Opening, SessionContext};

/// `/api/ws`: every vehicle, for a credential that covers the fleet.
pub async fn all_vehicles(
    access: FleetAccess,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    open(req, body, state, query, Stream::AllVehicles, access.caller).await
}

/// `/api/ws/vehicle/{vehicle_id}`: one vehicle, by id or registration code.
pub async fn vehicle(
    access: VehicleAccess,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let stream = Stream::Vehicle(access.vehicle.id);
    open(req, body, state, query.into_inner(), stream, access.caller).await
}

async fn open(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    query: StreamQuery,
    stream: Stream,
    caller: Caller,
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
    if state.shutdown.is_cancelled() {
        return Err(ApiError::Unavailable("the server is shutting down".into()));
    }
    let slot = state.hub.try_reserve().ok_or_else(|| {
        ApiError::Unavailable("connection limit reached (WS_MAX_CONNECTIONS); retry later".into())
    })?;
    // actix-ws checks the handshake and reads the client's frames; the response body is ours
    // (`ws::body`), which takes live frames from the hub queue itself. actix-ws's body is kept,
    // unpolled, inside it: when the connection goes, dropping it ends the message stream.
    let (handshake, _session, messages) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::bad_parameter("upgrade", e.to_string()))?;
    let mut outbox = None;
    let response = handshake.map_body(|_, reader_signal| {
        let (body, handle) = FrameBody::new(state.metrics.clone(), reader_signal);
        outbox = Some(handle);
        body.boxed()
    });
    let outbox = outbox.expect("map_body calls its closure once");
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
        caller,
        conflate,
    };
    let ctx = SessionContext {
        hub: state.hub.clone(),
        db: state.db.clone(),
        metrics: state.metrics.clone(),
        config: state.session,
        commands: state.commands.clone(),
    };
    // The opening is boxed: it is used up before the session settles, and its box goes with it.
    actix_web::rt::spawn(session::run(outbox, messages, Box::new(opening), ctx));
    Ok(response)
}

/// Every vehicle's telemetry as it is committed.
#[allow(dead_code)]
#[utoipa::path(
    get,
    path = "/api/ws",
    tag = "streams",
    description = "WebSocket stream of every vehicle's telemetry, sent only after it is committed. See the operation description for parameters and frames.",
    params(UpgradeHeaders, StreamQuery),
    responses(
        (status = 101, description = "Switching Protocols. The body shows the frames the server then sends.", body = seano_wire::frame::AnyServerFrame),
        (status = 400, description = "Not a WebSocket upgrade, or a bad parameter (e.g. an unknown type)", body = super::error::ErrorBody),
        (status = 401, description = "Authentication is on and no valid token was given", body = super::error::ErrorBody),
        (status = 503, description = "Connection limit reached or shutting down", body = super::error::ErrorBody),
    )
)]
fn ws_all_vehicles_doc() {}

/// One vehicle's telemetry as it is committed.
#[allow(dead_code)]
#[utoipa::path(
    get,
    path = "/api/ws/vehicle/{vehicle_id}",
    tag = "streams",
    description = "WebSocket stream of one vehicle's telemetry (`subscribe` may add more). A non-integer id is an HTTP 400 before the upgrade.",
    params(
        ("vehicle_id" = inline(crate::domain::VehicleKey), Path, description = "Vehicle id (a positive integer) or registration code (`USV-003`)"),
        UpgradeHeaders,
        StreamQuery,
    ),
    responses(
        (status = 101, description = "Switching Protocols. The body shows the frames the server then sends.", body = seano_wire::frame::AnyServerFrame),
        (status = 400, description = "Not a WebSocket upgrade, `vehicle_id` is neither an id nor a code, or another bad parameter", body = super::error::ErrorBody),
        (status = 401, description = "Authentication is on and no valid token was given", body = super::error::ErrorBody),
        (status = 403, description = "The token does not allow this vehicle", body = super::error::ErrorBody),
        (status = 404, description = "No vehicle has registered this code", body = super::error::ErrorBody),
        (status = 503, description = "Connection limit reached or shutting down", body = super::error::ErrorBody),
    )
)]
fn ws_vehicle_doc() {}
