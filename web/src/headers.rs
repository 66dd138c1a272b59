//! What every answer carries: security headers, and CORS for the origins the settings allow.
//!
//! Every response gets `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
//! `Referrer-Policy: no-referrer` and, unless the page set its own, a Content-Security-Policy
//! that lets a JSON answer load nothing; answers under `/api/` are `Cache-Control: no-store`
//! unless they say otherwise (balances and tokens must not sit in a shared cache), and with
//! `hsts` (a public `https://` address) `Strict-Transport-Security` tells browsers to keep to
//! HTTPS.
//!
//! Cross-origin calls are refused by browsers unless the origin is listed in
//! `CLAWJOBS_CORS_ORIGINS` (or `[server] cors_origins`): a listed origin's preflight is answered
//! 204 with the methods and headers the API takes, and its answers carry
//! `Access-Control-Allow-Origin`. Tokens travel in `Authorization`, never in cookies, so no
//! credentials are allowed. Nothing is listed by default: the pages are same-origin.

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse};

/// What a JSON answer may load: nothing.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const ALLOW_HEADERS: &str =
    "Authorization, Content-Type, Idempotency-Key, Clawjobs-Fingerprint, Last-Event-ID";
const EXPOSE_HEADERS: &str = "Retry-After, Allow";

/// The settings this module answers by.
#[derive(Debug, Clone, Default)]
pub struct HeaderSettings {
    /// Origins allowed to call the API from a browser (`scheme://host[:port]`), or `*` for any.
    pub cors_origins: Vec<String>,
    /// Send `Strict-Transport-Security` (the server is reached over HTTPS).
    pub hsts: bool,
}

impl HeaderSettings {
    /// Checks a configured origin: `*`, or a scheme, a host and maybe a port, nothing else.
    pub fn check_origin(origin: &str) -> Result<String, String> {
        if origin == "*" {
            return Ok(origin.into());
        }
        let url = url::Url::parse(origin).map_err(|e| format!("CORS origin {origin:?}: {e}"))?;
        let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || !bare {
            return Err(format!(
                "CORS origin {origin:?} must be like https://app.example.com (a scheme, a host, \
                 maybe a port; no path)"
            ));
        }
        Ok(url.origin().ascii_serialization())
    }

    fn allows(&self, origin: &str) -> bool {
        self.cors_origins.iter().any(|o| o == "*" || o == origin)
    }
}

fn set_default(h: &mut HeaderMap, name: HeaderName, value: &'static str) {
    if !h.contains_key(&name) {
        h.insert(name, HeaderValue::from_static(value));
    }
}

fn cors_headers(h: &mut HeaderMap, origin: &HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// The middleware: a listed origin's preflight is answered here; every other request goes on
/// and its answer gets the headers.
pub async fn apply(
    settings: Arc<HeaderSettings>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| o.to_str().is_ok_and(|o| settings.allows(o)))
        .cloned();
    let api = req.path().starts_with("/api/");
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if let (Some(origin), true) = (&origin, preflight) {
        let mut res = HttpResponse::new(StatusCode::NO_CONTENT);
        let h = res.headers_mut();
        cors_headers(h, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        secure(h, api, settings.hsts);
        return Ok(req.into_response(res).map_into_right_body());
    }
    let mut res = next.call(req).await?;
    let h = res.headers_mut();
    if let Some(origin) = &origin {
        cors_headers(h, origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
    secure(h, api, settings.hsts);
    Ok(res.map_into_left_body())
}

fn secure(h: &mut HeaderMap, api: bool, hsts: bool) {
    set_default(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set_default(h, header::X_FRAME_OPTIONS, "DENY");
    set_default(h, header::REFERRER_POLICY, "no-referrer");
    set_default(h, header::CONTENT_SECURITY_POLICY, API_CSP);
    if api {
        set_default(h, header::CACHE_CONTROL, "no-store");
    }
    if hsts {
        set_default(
            h,
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_bare_and_normalised() {
        assert_eq!(
            HeaderSettings::check_origin("https://App.Example.com").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            HeaderSettings::check_origin("http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        assert_eq!(HeaderSettings::check_origin("*").unwrap(), "*");
        for bad in [
            "app.example.com",
            "https://a.example/path",
            "ftp://a.example",
            "https://",
        ] {
            assert!(HeaderSettings::check_origin(bad).is_err(), "{bad}");
        }
    }
}
