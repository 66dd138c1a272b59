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

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $code:literal, $status:ident;)*) => {
        /// Every error code of the API with its HTTP status: the one table HTTP answers and
        /// WebSocket error frames both use.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }
        }
    };
}

error_codes! {
    ValidationError => "VALIDATION_ERROR", BAD_REQUEST;
    Unauthorized => "UNAUTHORIZED", UNAUTHORIZED;
    InsufficientBalance => "INSUFFICIENT_BALANCE", PAYMENT_REQUIRED;
    Forbidden => "FORBIDDEN", FORBIDDEN;
    /// A worker suspended for letting tasks expire.
    Suspended => "SUSPENDED", FORBIDDEN;
    /// A worker banned by the QA penalty ladder.
    Banned => "BANNED", FORBIDDEN;
    NotFound => "NOT_FOUND", NOT_FOUND;
    MethodNotAllowed => "METHOD_NOT_ALLOWED", METHOD_NOT_ALLOWED;
    Conflict => "CONFLICT", CONFLICT;
    /// A submit after the task's deadline: it went back to the queue.
    TaskExpired => "TASK_EXPIRED", CONFLICT;
    PayloadTooLarge => "PAYLOAD_TOO_LARGE", PAYLOAD_TOO_LARGE;
    RateLimited => "RATE_LIMITED", TOO_MANY_REQUESTS;
    Internal => "INTERNAL", INTERNAL_SERVER_ERROR;
    /// The database cannot be reached right now: nothing changed; retry after `Retry-After`.
    Unavailable => "UNAVAILABLE", SERVICE_UNAVAILABLE;
    /// A payout binding needs a verified email first.
    EmailNotVerified => "EMAIL_NOT_VERIFIED", CONFLICT;
    /// A withdrawal needs a bound payout address.
    PayoutNotBound => "PAYOUT_NOT_BOUND", CONFLICT;
    /// Over the daily withdrawal maximum.
    WithdrawalLimit => "WITHDRAWAL_LIMIT", TOO_MANY_REQUESTS;
    /// The mail server failed: the code was not sent (and not kept); try again.
    MailUnavailable => "MAIL_UNAVAILABLE", BAD_GATEWAY;
    /// No Stripe key is configured on this server: deposits are off, everything else works.
    PaymentsDisabled => "PAYMENTS_DISABLED", SERVICE_UNAVAILABLE;
    /// No data key on this server: sensitive tasks are off here, everything else works.
    SensitiveDisabled => "SENSITIVE_DISABLED", SERVICE_UNAVAILABLE;
    /// Stripe could not be reached or refused: nothing was made; try again.
    PaymentProviderError => "PAYMENT_PROVIDER_ERROR", BAD_GATEWAY;
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Value,
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: json!({}),
            retry_after_seconds: None,
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationError, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PayloadTooLarge, message)
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status().as_u16(),
            self.code.as_str(),
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status());
        if let Some(s) = self.retry_after_seconds {
            res.insert_header((header::RETRY_AFTER, HeaderValue::from(s)));
        }
        res.json(
            json!({ "error": { "code": self.code.as_str(), "message": self.message, "details": self.details } }),
        )
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        use ErrorCode as C;
        let mut retry_after_seconds = None;
        let (code, message, details) = match e {
            EngineError::Validation { message, details } => (C::ValidationError, message, details),
            EngineError::Unauthorized(m) => (C::Unauthorized, m, Value::Null),
            EngineError::Forbidden(m) => (C::Forbidden, m, Value::Null),
            EngineError::NotFound(m) => (C::NotFound, m, Value::Null),
            EngineError::Conflict(m) => (C::Conflict, m, Value::Null),
            EngineError::TaskExpired => (
                C::TaskExpired,
                "the task's deadline passed and it went back to the queue".to_string(),
                Value::Null,
            ),
            EngineError::InsufficientBalance {
                needed_cents,
                available_cents,
            } => (
                C::InsufficientBalance,
                format!("this needs {needed_cents} cents and the balance has {available_cents}"),
                json!({ "needed_cents": needed_cents, "available_cents": available_cents }),
            ),
            EngineError::Suspended { until } => (
                C::Suspended,
                format!("this worker is suspended until {until} for letting tasks expire"),
                json!({ "suspended_until": until }),
            ),
            EngineError::Banned => (
                C::Banned,
                "this worker is banned for repeated low-quality results; its balance is frozen"
                    .to_string(),
                Value::Null,
            ),
            EngineError::PayloadTooLarge(m) => (C::PayloadTooLarge, m, Value::Null),
            EngineError::EmailNotVerified => (
                C::EmailNotVerified,
                "verify an email address (bind-email, verify-email) before binding a payout"
                    .to_string(),
                Value::Null,
            ),
            EngineError::PayoutNotBound => (
                C::PayoutNotBound,
                "bind a payout address (bind-payout) before withdrawing".to_string(),
                Value::Null,
            ),
            EngineError::WithdrawalLimit {
                daily_max_cents,
                today_cents,
            } => (
                C::WithdrawalLimit,
                format!(
                    "at most {daily_max_cents} cents a day may be withdrawn; {today_cents} already are today"
                ),
                json!({ "daily_max_cents": daily_max_cents, "today_cents": today_cents }),
            ),
            EngineError::TooMany {
                message,
                retry_after_s,
            } => {
                retry_after_seconds = Some(retry_after_s);
                (C::RateLimited, message, Value::Null)
            }
            EngineError::Mail(cause) => {
                tracing::warn!(%cause, "mail server failed");
                (
                    C::MailUnavailable,
                    "the code could not be sent (the mail server failed); try again shortly"
                        .to_string(),
                    Value::Null,
                )
            }
            EngineError::PaymentsDisabled => (
                C::PaymentsDisabled,
                "deposits are not available on this server (no payment provider is configured)"
                    .to_string(),
                Value::Null,
            ),
            EngineError::SensitiveDisabled => (
                C::SensitiveDisabled,
                "sensitive tasks are not available on this server (it has no data key: \
                 CLAWJOBS_DATA_KEY)"
                    .to_string(),
                Value::Null,
            ),
            EngineError::PaymentProvider(cause) => {
                tracing::warn!(%cause, "payment provider failed");
                (
                    C::PaymentProviderError,
                    "the payment provider could not be reached; nothing was charged or created, \
                     try again shortly"
                        .to_string(),
                    Value::Null,
                )
            }
            EngineError::Unavailable(cause) => {
                tracing::warn!(%cause, "store unavailable");
                retry_after_seconds = Some(UNAVAILABLE_RETRY_AFTER_SECONDS);
                (
                    C::Unavailable,
                    "the marketplace's database cannot be reached right now; nothing was changed, \
                     try again shortly"
                        .to_string(),
                    Value::Null,
                )
            }
            EngineError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                (
                    C::Internal,
                    "something went wrong on our side".to_string(),
                    Value::Null,
                )
            }
        };
        ApiError {
            code,
            message,
            details: if details.is_null() {
                json!({})
            } else {
                details
            },
            retry_after_seconds,
        }
    }
}

/// What `Retry-After` says while the database is away.
pub const UNAVAILABLE_RETRY_AFTER_SECONDS: u64 = 2;

pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::validation(format!("bad query string: {err}")).into()
}

pub fn path_error(err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::validation(format!("bad path: {err}")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_status_per_code_and_unique_names() {
        let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        assert_eq!(ErrorCode::TaskExpired.status(), StatusCode::CONFLICT);
        assert_eq!(
            ErrorCode::RateLimited.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        // Every engine error lands on a code of the table, with details as an object.
        for e in [
            EngineError::TaskExpired,
            EngineError::Banned,
            EngineError::validation("x"),
            EngineError::internal("cause"),
        ] {
            let api = ApiError::from(e);
            assert!(ErrorCode::ALL.contains(&api.code));
            assert!(api.details.is_object());
        }
    }
}
