//! Commands over REST: send one to a vehicle, read one by request_id, list a vehicle's, and
//! `/api/me`, which tells a dashboard what its credential may do.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::{AnyAccess, VehicleAccess};
use super::{ApiError, AppState};
use crate::domain::{CommandRecord, CommandRequest};

/// Most commands per page.
const MAX_LIMIT: u64 = 1000;
const DEFAULT_LIMIT: u64 = 100;

/// Sends a command to a vehicle.
///
/// The gateway stores it (`accepted`), publishes `{"request_id","command","params"?,
/// "expires_at"}` on `{prefix}/{vehicle}/command` at QoS 1, and follows it to a final state;
/// each state change streams as a `command_status` frame. Needs a credential with command
/// rights; from a browser, only from an allowed origin. The same `request_id` again is the same
/// command: 200 with its record, nothing resent.
#[utoipa::path(
    post,
    path = "/api/vehicles/{vehicle_id}/commands",
    tag = "commands",
    params(
        ("vehicle_id" = inline(crate::domain::VehicleKey), Path, description = "Vehicle id (a positive integer) or registration code (`USV-003`)"),
    ),
    request_body = CommandRequest,
    responses(
        (status = 202, description = "Accepted: the record, `status: accepted`; follow it on a stream or with GET /api/commands/{request_id}", body = CommandRecord),
        (status = 200, description = "This request_id was already this command: its record as it stands", body = CommandRecord),
        (status = 400, description = "Unknown command, malformed request_id, timeout_ms out of range, or a malformed body", body = super::error::ErrorBody),
        (status = 401, description = "Authentication is on and no valid token was given", body = super::error::ErrorBody),
        (status = 403, description = "No command rights, the vehicle is not allowed, the Origin may not send commands, or commands are off (access control off on a non-loopback address)", body = super::error::ErrorBody),
        (status = 404, description = "The vehicle has never sent anything", body = super::error::ErrorBody),
        (status = 409, description = "This request_id is another command", body = super::error::ErrorBody),
        (status = 429, description = "Too many commands to this vehicle (COMMAND_RATE, COMMAND_BURST)", body = super::error::ErrorBody),
    )
)]
pub async fn send_command(
    access: VehicleAccess,
    state: web::Data<AppState>,
    body: web::Json<CommandRequest>,
) -> Result<HttpResponse, ApiError> {
    let (record, repeat) = state
        .commands
        .send(&access.caller, &access.vehicle, body.into_inner())
        .await?;
    Ok(if repeat {
        HttpResponse::Ok().json(record)
    } else {
        HttpResponse::Accepted().json(record)
    })
}

/// Query parameters of a vehicle's command list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// At most this many commands (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
    /// Only commands older than this one: `next_before_id` of the previous page.
    #[param(minimum = 1)]
    before_id: Option<i64>,
    /// The access token, when authentication is on.
    #[allow(dead_code)]
    token: Option<String>,
}

/// A page of a vehicle's commands, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandPage {
    pub vehicle_id: i64,
    pub items: Vec<CommandRecord>,
    /// More, older commands exist.
    pub has_more: bool,
    /// Pass as `before_id` for the next (older) page; null on the last page.
    #[schema(required = true)]
    pub next_before_id: Option<i64>,
}

/// A vehicle's commands, newest first, paged with `before_id`. Each state change is also in
/// `GET /api/vehicles/{vehicle_id}/command_status`, paged by seq like telemetry.
#[utoipa::path(
    get,
    path = "/api/vehicles/{vehicle_id}/commands",
    tag = "commands",
    params(
        ("vehicle_id" = inline(crate::domain::VehicleKey), Path, description = "Vehicle id (a positive integer) or registration code (`USV-003`)"),
        ListQuery,
    ),
    responses(
        (status = 200, description = "A page of commands", body = CommandPage),
        (status = 400, description = "A parameter is malformed or out of range", body = super::error::ErrorBody),
        (status = 401, description = "Authentication is on and no valid token was given", body = super::error::ErrorBody),
        (status = 403, description = "The token does not allow this vehicle", body = super::error::ErrorBody),
        (status = 404, description = "No vehicle has registered this code", body = super::error::ErrorBody),
    )
)]
pub async fn list_commands(
    access: VehicleAccess,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    if query.before_id.is_some_and(|b| b < 1) {
        return Err(ApiError::bad_parameter("before_id", "must be at least 1"));
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_parameter(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}, got {limit}"),
        ));
    }
    let id = access.vehicle.id;
    let mut rows = crate::commands::list(&state.db, id, query.before_id, limit + 1)
        .await
        .map_err(internal)?;
    let has_more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_before_id = rows.last().filter(|_| has_more).map(|r| r.id);
    let items = rows
        .iter()
        .map(|r| crate::commands::to_record(r, access.vehicle.code.clone()))
        .collect();
    Ok(HttpResponse::Ok().json(CommandPage {
        vehicle_id: id,
        items,
        has_more,
        next_before_id,
    }))
}

/// One command by its request_id.
#[utoipa::path(
    get,
    path = "/api/commands/{request_id}",
    tag = "commands",
    params(("request_id" = String, Path, description = "The command's request_id")),
    responses(
        (status = 200, description = "The command's record", body = CommandRecord),
        (status = 401, description = "Authentication is on and no valid token was given", body = super::error::ErrorBody),
        (status = 404, description = "No such command, or one of a vehicle the token does not allow", body = super::error::ErrorBody),
    )
)]
pub async fn get_command(
    access: AnyAccess,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let request_id = path.into_inner();
    let not_found = || ApiError::NotFound(format!("no command with request_id {request_id}"));
    let row = crate::commands::find(&state.db, &request_id)
        .await
        .map_err(internal)?
        // A limited token learns nothing about other vehicles' commands.
        .filter(|r| access.caller.grant.scope.allows(r.vehicle_id))
        .ok_or_else(not_found)?;
    let record = crate::commands::record(&state.db, &row)
        .await
        .map_err(internal)?;
    Ok(HttpResponse::Ok().json(record))
}

/// What the presented credential may do.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "subject": "token 1", "vehicles": "all",
    "commands": {"allowed": true, "reason": null, "timeout_ms": 8000,
                 "names": ["ARM", "FORCE_ARM", "DISARM", "FORCE_DISARM", "AUTO", "MANUAL", "HOLD", "LOITER", "RTL"]}
}))]
pub struct Me {
    /// `local` (access control off), `token N`, or `jwt:<sub>`.
    pub subject: String,
    /// `"all"`, or the vehicle ids the credential covers.
    #[schema(schema_with = vehicles_schema)]
    pub vehicles: serde_json::Value,
    pub commands: CommandRights,
}

/// Whether this credential, from this page, may send commands, and which.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandRights {
    pub allowed: bool,
    /// Why not, when not allowed.
    #[schema(required = true)]
    pub reason: Option<String>,
    /// The commands this gateway accepts (COMMANDS).
    pub names: Vec<String>,
    /// The default answer timeout (COMMAND_TIMEOUT_MS).
    pub timeout_ms: u64,
}

/// Who the credential is and what it may do: the vehicles it covers and whether it may send
/// commands (a dashboard disables its buttons with `reason` when not).
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "commands",
    responses(
        (status = 200, description = "The credential's rights", body = Me),
        (status = 401, description = "Authentication is on and no valid token was given", body = super::error::ErrorBody),
    )
)]
pub async fn me(access: AnyAccess, state: web::Data<AppState>) -> HttpResponse {
    let caller = &access.caller;
    let settings = state.commands.settings();
    let rights = state.commands.may_command(caller);
    HttpResponse::Ok().json(Me {
        subject: caller.grant.subject.clone(),
        vehicles: match &caller.grant.scope {
            crate::auth::Scope::AllVehicles => "all".into(),
            crate::auth::Scope::Vehicles(ids) => ids.iter().copied().collect(),
        },
        commands: CommandRights {
            allowed: rights.is_ok(),
            reason: rights.err(),
            names: settings.names.clone(),
            timeout_ms: settings.timeout.as_millis() as u64,
        },
    })
}

/// `"all"` or an array of vehicle ids.
fn vehicles_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["all"])),
        )
        .item(
            ArrayBuilder::new().items(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Int64,
                    )))
                    .minimum(Some(1)),
            ),
        )
        .description(Some("`\"all\"`, or the vehicle ids the credential covers."))
        .build()
        .into()
}

fn internal(e: sea_orm::DbErr) -> ApiError {
    ApiError::Internal(anyhow::Error::new(e).context("reading commands"))
}
