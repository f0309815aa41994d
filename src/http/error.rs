//! The API's one error type: a status code and a JSON body `{"error": code, "message": ...}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A path or query parameter is malformed or out of range.
    #[error("invalid parameter '{parameter}': {reason}")]
    BadParameter {
        parameter: &'static str,
        reason: String,
    },
    /// No credential, or one that is not valid (HTTP 401).
    #[error("{0}")]
    Unauthorized(String),
    /// A valid credential that does not allow this (HTTP 403), or an Origin not allowed.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts what is stored (a request_id reused for another command).
    #[error("{0}")]
    Conflict(String),
    /// A rate limit refused it; retry later (HTTP 429).
    #[error("{0}")]
    TooManyRequests(String),
    /// A method other than GET on an API route (HTTP 405, with `Allow: GET`).
    /// Another method than the route's (HTTP 405, with `Allow:` them).
    #[error("only {0} allowed here")]
    MethodNotAllowed(&'static str),
    /// The server cannot take this request now (connection cap, shutting down, not ready).
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(examples(json!({"error": "bad_parameter", "parameter": "limit",
    "message": "invalid parameter 'limit': must be between 1 and 1000, got 5000"})))]
pub struct ErrorBody {
    /// `bad_parameter`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `too_many_requests`, `method_not_allowed`, `unavailable` or `internal`.
    pub error: &'static str,
    pub message: String,
    /// The offending parameter, for `bad_parameter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<&'static str>,
}

impl ApiError {
    pub fn bad_parameter(parameter: &'static str, reason: impl Into<String>) -> Self {
        ApiError::BadParameter {
            parameter,
            reason: reason.into(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadParameter { .. } => "bad_parameter",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooManyRequests(_) => "too_many_requests",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(e) = self {
            log::error!("http: internal error: {e:#}");
        }
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::MethodNotAllowed(allowed) = self {
            response.insert_header((actix_web::http::header::ALLOW, *allowed));
        }
        response.json(ErrorBody {
            error: self.code(),
            message: self.to_string(),
            parameter: match self {
                ApiError::BadParameter { parameter, .. } => Some(parameter),
                _ => None,
            },
        })
    }
}

impl From<crate::commands::Refused> for ApiError {
    fn from(e: crate::commands::Refused) -> Self {
        use crate::commands::Refused;
        match e {
            Refused::Invalid(m) => ApiError::bad_parameter("command", m),
            Refused::Forbidden(m) => ApiError::Forbidden(m),
            Refused::UnknownVehicle(m) => ApiError::NotFound(m),
            Refused::Conflict(m) => ApiError::Conflict(m),
            e @ Refused::RateLimited { .. } => ApiError::TooManyRequests(e.to_string()),
            Refused::Database(e) => {
                ApiError::Internal(anyhow::Error::new(e).context("storing a command"))
            }
        }
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        match e {
            crate::auth::AuthError::Unauthenticated(m) => ApiError::Unauthorized(m),
            crate::auth::AuthError::Forbidden(m) => ApiError::Forbidden(m),
        }
    }
}
