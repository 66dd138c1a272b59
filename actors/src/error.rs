//! The engine's error type. Every variant maps to exactly one API error code in the web layer.

use serde_json::Value;

#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("{message}")]
    Validation { message: String, details: Value },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the task's deadline passed and it went back to the queue")]
    TaskExpired,
    #[error("insufficient balance: {needed_cents} cents needed, {available_cents} available")]
    InsufficientBalance {
        needed_cents: i64,
        available_cents: i64,
    },
    #[error("worker suspended until {until}")]
    Suspended { until: String },
    /// The worker was banned by the QA penalty ladder.
    #[error("worker banned")]
    Banned,
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A payout binding needs a verified email first.
    #[error("verify an email address first")]
    EmailNotVerified,
    /// A withdrawal needs a payout binding.
    #[error("bind a payout address first")]
    PayoutNotBound,
    /// Over `rate_limits.withdrawal.daily_max_cents` for this UTC day.
    #[error("over the daily withdrawal limit")]
    WithdrawalLimit {
        daily_max_cents: i64,
        today_cents: i64,
    },
    /// Too many tries (email codes); try again after `retry_after_s`.
    #[error("{message}")]
    TooMany { message: String, retry_after_s: u64 },
    /// The mail server could not be reached or refused the message; nothing was kept.
    #[error("the mail server failed")]
    Mail(String),
    /// No payment provider is configured (no `STRIPE_SECRET_KEY`).
    #[error("payments are not configured on this server")]
    PaymentsDisabled,
    /// No data key is configured (a MongoDB node without `CLAWJOBS_DATA_KEY`): sensitive tasks
    /// cannot be sealed or opened here.
    #[error("sensitive tasks are not configured on this server")]
    SensitiveDisabled,
    /// The payment provider could not be reached or refused; nothing was made.
    #[error("the payment provider failed")]
    PaymentProvider(String),
    /// The store cannot be reached (or keeps conflicting): nothing was changed, try again soon.
    #[error("the store is unavailable")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl EngineError {
    pub fn validation(message: impl Into<String>) -> Self {
        EngineError::Validation {
            message: message.into(),
            details: Value::Null,
        }
    }

    pub fn validation_field(field: &str, message: impl Into<String>) -> Self {
        EngineError::Validation {
            message: message.into(),
            details: serde_json::json!({ "field": field }),
        }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        EngineError::Internal(cause.to_string())
    }

    /// The whole story for an operator (logs, start-up failures): an internal error's cause
    /// included, which clients are never shown.
    pub fn for_operator(&self) -> String {
        match self {
            EngineError::Internal(cause)
            | EngineError::Unavailable(cause)
            | EngineError::PaymentProvider(cause)
            | EngineError::Mail(cause) => cause.clone(),
            other => other.to_string(),
        }
    }
}
