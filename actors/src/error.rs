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
            EngineError::Internal(cause) | EngineError::Unavailable(cause) => cause.clone(),
            other => other.to_string(),
        }
    }
}
