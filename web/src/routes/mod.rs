//! Routes, one module per audience; each exports `configure`.

pub mod admin;
pub mod buyer;
pub mod feed;
pub mod ops;
pub mod worker;
pub mod ws;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, Resource, ResponseError, web};
use clawjobs_actors::store::IdemKey;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// A resource that answers a method it does not serve with 405, the error envelope and an `Allow`
/// header naming the methods it does serve (`allow`, e.g. `"GET, PUT"`).
pub fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
        method_not_allowed(&req, allow)
    }))
}

fn method_not_allowed(req: &HttpRequest, allow: &'static str) -> HttpResponse {
    let mut res = ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{} is not served here; use {allow}", req.method()),
    )
    .error_response();
    res.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    res
}

/// The `Idempotency-Key` of a money-moving POST, scoped to the caller and the endpoint, with a
/// hash of the request body so that a reused key with another body is caught.
pub fn idempotency(
    req: &HttpRequest,
    caller: &str,
    endpoint: &str,
    body: &impl serde::Serialize,
) -> Result<Option<IdemKey>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::validation("Idempotency-Key must be 1 to 255 visible ASCII characters")
        })?;
    let body = serde_json::to_vec(body)
        .map_err(|e| ApiError::from(clawjobs_actors::EngineError::internal(e)))?;
    Ok(Some(IdemKey {
        scope: format!("{caller}:{endpoint}"),
        key: key.to_string(),
        body_hash: clawjobs_actors::domain::hex(&Sha256::digest(&body)),
    }))
}

/// Reads a `?wait=N` value in seconds, capped at `max`.
pub fn wait_seconds(
    wait: Option<f64>,
    max: std::time::Duration,
) -> Result<std::time::Duration, ApiError> {
    match wait {
        None => Ok(std::time::Duration::ZERO),
        Some(w) if w.is_finite() && w >= 0.0 => Ok(std::time::Duration::from_secs_f64(w).min(max)),
        Some(_) => Err(ApiError::validation(
            "wait must be a number of seconds, 0 or more",
        )),
    }
}
