//! Routes, one module per audience; each exports `configure`.

pub mod admin;
pub mod bounty;
pub mod buyer;
pub mod console;
pub mod feed;
pub mod money;
pub mod notifications;
pub mod ops;
pub mod submissions;
pub mod webhooks;
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
        crate::error::ErrorCode::MethodNotAllowed,
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
        .filter(|k| {
            (1..=clawjobs_actors::limits::MAX_IDEMPOTENCY_KEY_BYTES).contains(&k.len())
                && k.bytes().all(|b| (0x21..=0x7e).contains(&b))
        })
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

/// The `Idempotency-Key` header of the money-moving POSTs, for the API document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// A repeat with the same key and body gets the first answer and moves no money; the same
    /// key with another body is 409.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = "^[\\x21-\\x7e]+$"
    )]
    _key: Option<String>,
}

/// A page cursor as this server gives them out: the digits of a sequence number (empty = the
/// first page). Anything else is refused, so the document's pattern and the server agree.
pub fn parse_cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    match cursor.filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(c) if c.len() <= 18 && c.bytes().all(|b| b.is_ascii_digit()) => c
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::validation("cursor is not one this server gave out")),
        Some(_) => Err(ApiError::validation(
            "cursor is not one this server gave out",
        )),
    }
}

/// A page size: 1 to `MAX_PAGE_ITEMS`, 20 when left out.
pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    use clawjobs_actors::limits::MAX_PAGE_ITEMS;
    match limit {
        None => Ok(20),
        Some(n) if (1..=MAX_PAGE_ITEMS).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::validation(format!(
            "limit must be between 1 and {MAX_PAGE_ITEMS}"
        ))),
    }
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
