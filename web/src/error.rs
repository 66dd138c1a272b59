//! The API's error envelope: `{"error": {"code", "message", "details"}}` with the right status.
//! Every engine error maps to one code by an exhaustive match; internal causes go to the log only.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, error::QueryPayloadError};
use clawjobs_actors::EngineError;
use serde_json::{Value, json};

/// The error envelope every error answer carries, for the API document.
#[derive(utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(utoipa::ToSchema)]
pub struct ErrorBody {
    /// One of the codes of `docs/API.md` (`VALIDATION_ERROR`, `NOT_FOUND`, …).
    pub code: String,
    pub message: String,
    #[schema(value_type = Object)]
    pub details: Value,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: json!({}),
            retry_after_seconds: None,
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if let Some(s) = self.retry_after_seconds {
            res.insert_header((header::RETRY_AFTER, HeaderValue::from(s)));
        }
        let details = if self.details.is_null() {
            json!({})
        } else {
            self.details.clone()
        };
        res.json(
            json!({ "error": { "code": self.code, "message": self.message, "details": details } }),
        )
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let (status, code, message, details) = match e {
            EngineError::Validation { message, details } => (
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                message,
                details,
            ),
            EngineError::Unauthorized(m) => {
                (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", m, Value::Null)
            }
            EngineError::Forbidden(m) => (StatusCode::FORBIDDEN, "FORBIDDEN", m, Value::Null),
            EngineError::NotFound(m) => (StatusCode::NOT_FOUND, "NOT_FOUND", m, Value::Null),
            EngineError::Conflict(m) => (StatusCode::CONFLICT, "CONFLICT", m, Value::Null),
            EngineError::TaskExpired => (
                StatusCode::CONFLICT,
                "TASK_EXPIRED",
                "the task's deadline passed and it went back to the queue".to_string(),
                Value::Null,
            ),
            EngineError::InsufficientBalance {
                needed_cents,
                available_cents,
            } => (
                StatusCode::PAYMENT_REQUIRED,
                "INSUFFICIENT_BALANCE",
                format!("this needs {needed_cents} cents and the balance has {available_cents}"),
                json!({ "needed_cents": needed_cents, "available_cents": available_cents }),
            ),
            EngineError::Suspended { until } => (
                StatusCode::FORBIDDEN,
                "SUSPENDED",
                format!("this worker is suspended until {until} for letting tasks expire"),
                json!({ "suspended_until": until }),
            ),
            EngineError::Banned => (
                StatusCode::FORBIDDEN,
                "BANNED",
                "this worker is banned for repeated low-quality results; its balance is frozen"
                    .to_string(),
                Value::Null,
            ),
            EngineError::PayloadTooLarge(m) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                m,
                Value::Null,
            ),
            EngineError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "something went wrong on our side".to_string(),
                    Value::Null,
                )
            }
        };
        ApiError {
            status,
            code,
            message,
            details,
            retry_after_seconds: None,
        }
    }
}

pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::validation(format!("bad query string: {err}")).into()
}

pub fn path_error(err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::validation(format!("bad path: {err}")).into()
}
