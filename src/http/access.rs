//! Authorization as extractors: every handler that serves protected data takes one, and the
//! decision is made on what the handler serves (the decoded, parsed vehicle of its path), never
//! on the raw path string. A route without one of these is public, and says so in
//! [`super::route_table`].
//!
//! Each extractor first refuses a browser Origin that is not allowed (403), then a missing or
//! invalid credential (401), then a credential that does not cover what is asked (403): all
//! before the handler reads anything or upgrades a socket.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};

use super::{ApiError, AppState};
use crate::auth::Grant;
use crate::commands::Caller;
use crate::domain::VehicleKey;
use crate::store::queries::{self, VehicleRef};

/// A request whose credential covers every vehicle: fleet-wide data.
#[derive(Clone, Debug)]
pub struct FleetAccess {
    pub caller: Caller,
}

/// A request about the vehicle its path names (`{vehicle_id}`: an id or a registration code),
/// with a credential that covers that vehicle.
#[derive(Clone, Debug)]
pub struct VehicleAccess {
    pub vehicle: VehicleRef,
    pub caller: Caller,
}

/// A request with a valid credential, whatever it covers (the handler checks the rest).
#[derive(Clone, Debug)]
pub struct AnyAccess {
    pub caller: Caller,
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the application state is missing")))
}

/// The credential: `Authorization: Bearer <token>`, or `?token=` (browsers cannot set headers
/// on a WebSocket).
fn credential(req: &HttpRequest) -> Option<String> {
    if let Some(h) = req.headers().get(header::AUTHORIZATION) {
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

/// Who sent a request from an allowed origin with a valid credential, and what it may do; and
/// the state, for the checks that follow. The origin is checked before the credential (a JWT may
/// wait for the identity provider's keys; a foreign origin never does).
fn authorize(
    req: &HttpRequest,
) -> impl Future<Output = Result<(Caller, web::Data<AppState>), ApiError>> + 'static {
    let req = req.clone();
    async move {
        let state = state(&req)?;
        let text = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
        let (origin, host) = (text(header::ORIGIN), text(header::HOST));
        state.auth.check_origin(origin, host)?;
        let grant: Grant = state.auth.authenticate(credential(&req).as_deref()).await?;
        let caller = Caller {
            grant,
            auth_on: state.auth.enabled(),
            origin: origin.map(|o| (o.to_owned(), state.auth.origins().allows_commands(o, host))),
        };
        Ok((caller, state))
    }
}

impl FromRequest for AnyAccess {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let authorized = authorize(req);
        Box::pin(async move {
            let (caller, _) = authorized.await?;
            Ok(AnyAccess { caller })
        })
    }
}

impl FromRequest for FleetAccess {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let authorized = authorize(req);
        Box::pin(async move {
            let (caller, _) = authorized.await?;
            if caller.grant.scope.is_all() {
                Ok(FleetAccess { caller })
            } else {
                Err(ApiError::Forbidden(
                    "this token is limited to some vehicles; fleet-wide data needs a token for every vehicle (use /api/vehicles/{id} or /api/ws/vehicle/{id})".into(),
                ))
            }
        })
    }
}

impl FromRequest for VehicleAccess {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let authorized = authorize(req);
        // Decoded by the router: `%32` is `2` here, as the handler sees it.
        let raw = req
            .match_info()
            .get("vehicle_id")
            .unwrap_or_default()
            .to_owned();
        Box::pin(async move {
            let (caller, state) = authorized.await?;
            let scope = &caller.grant.scope;
            let refused =
                || ApiError::Forbidden(format!("this token does not allow vehicle {raw}"));
            let key = match VehicleKey::parse(&raw) {
                Ok(key) => key,
                // A limited token learns nothing about paths it may not read.
                Err(_) if !scope.is_all() => return Err(refused()),
                Err(why) => return Err(ApiError::bad_parameter("vehicle_id", why)),
            };
            // Before any database read: an id the token does not cover is refused as it is.
            if let VehicleKey::Id(id) = &key {
                if !scope.allows(*id) {
                    return Err(refused());
                }
            }
            let vehicle = queries::resolve_vehicle(&state.db, &key)
                .await
                .map_err(|e| {
                    ApiError::Internal(anyhow::Error::new(e).context("resolving a vehicle"))
                })?;
            match vehicle {
                Some(v) if scope.allows(v.id) => Ok(VehicleAccess { vehicle: v, caller }),
                Some(_) => Err(refused()),
                None if scope.is_all() => Err(ApiError::NotFound(format!(
                    "no vehicle has registered the code '{raw}'"
                ))),
                None => Err(refused()),
            }
        })
    }
}
