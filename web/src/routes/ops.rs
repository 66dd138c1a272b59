//! Operations: health, readiness, metrics, the OpenAPI document.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use clawjobs_actors::feed::FeedStats;

use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, handler) in [
        ("/api/health", web::get().to(health)),
        ("/api/ready", web::get().to(ready)),
        ("/metrics", web::get().to(metrics)),
        ("/api/openapi.json", web::get().to(openapi)),
    ] {
        cfg.service(super::resource(path, "GET").route(handler));
    }
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(pattern = "^ok$")]
    status: &'static str,
    version: &'static str,
    uptime_seconds: u64,
    store: &'static str,
}

#[utoipa::path(get, path = "/api/health", tag = "operations",
    responses((status = 200, description = "The process is alive", body = Health)))]
pub(crate) async fn health(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs(),
        store: "sqlite",
    })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    #[schema(pattern = "^(ready|starting|stopping)$")]
    status: &'static str,
}

#[utoipa::path(get, path = "/api/ready", tag = "operations",
    responses(
        (status = 200, description = "The store is open and the actors run", body = Readiness),
        (status = 503, description = "Starting, or stopping", body = Readiness),
    ))]
pub(crate) async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.engine.is_ready() {
        HttpResponse::Ok().json(Readiness { status: "ready" })
    } else {
        HttpResponse::ServiceUnavailable().json(Readiness { status: "starting" })
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut text = state.engine.metrics_text().await;
    let clawjobs_actors::feed::FeedCounts {
        subscribers,
        dropped,
    } = state.engine.feed.send(FeedStats).await.unwrap_or_default();
    let sessions = state.ws_sessions.load(std::sync::atomic::Ordering::Relaxed);
    for (name, kind, help, value) in [
        (
            "balance_actors",
            "gauge",
            "Live balance actors.",
            state.engine.live_balance_actors() as u64,
        ),
        (
            "ws_sessions",
            "gauge",
            "Open worker WebSocket sessions.",
            sessions as u64,
        ),
        (
            "sse_subscribers",
            "gauge",
            "Open SSE streams.",
            subscribers as u64,
        ),
        (
            "sse_dropped_total",
            "counter",
            "SSE subscribers dropped for falling behind.",
            dropped,
        ),
    ] {
        text.push_str(&format!("# HELP clawjobs_{name} {help}\n# TYPE clawjobs_{name} {kind}\nclawjobs_{name} {value}\n"));
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text)
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "This document, with the task types and bounds of the live config", body = Object)))]
pub(crate) async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document(&state.engine.cfg()))
}
