//! The pages' scripts, styles and icon, embedded in the binary. Pages link them as
//! `/assets/NAME?v=VERSION`, where the version is a hash of every asset: a new build's pages ask
//! for new URLs, so browsers may keep an asset for a year.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../../assets/", $name)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("common.js", "text/javascript; charset=utf-8"),
    asset!("buyer.js", "text/javascript; charset=utf-8"),
    asset!("worker.js", "text/javascript; charset=utf-8"),
    asset!("admin.js", "text/javascript; charset=utf-8"),
    asset!("bounties.js", "text/javascript; charset=utf-8"),
    asset!("webhooks.js", "text/javascript; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("thumbs-down.svg", "image/svg+xml"),
];

/// A hash of every asset, for cache-busting URLs.
pub(super) fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut h = Sha256::new();
        for a in ASSETS {
            h.update(a.name.as_bytes());
            h.update(a.body);
        }
        clawjobs_actors::domain::hex(&h.finalize()[..6])
    })
}

pub(super) async fn serve(
    req: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name.as_str())
        .ok_or_else(|| ApiError::not_found("no such asset"))?;
    // Only a URL naming this build's version may be kept for long.
    let current = req
        .query_string()
        .strip_prefix("v=")
        .is_some_and(|v| v == version());
    let cache = if current {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut res = HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((header::CACHE_CONTROL, cache))
        .body(asset.body);
    super::secure(&mut res);
    Ok(res)
}
