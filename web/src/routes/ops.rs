//! Operations: health, readiness, metrics, the OpenAPI document.

use actix_web::{HttpResponse, web};
use serde_json::json;

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

async fn health(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "store": "sqlite",
    }))
}

async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.engine.is_ready() {
        HttpResponse::Ok().json(json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({ "status": "starting" }))
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut text = state.engine.metrics_text().await;
    let (subscribers, dropped) = state.engine.feed.send(FeedStats).await.unwrap_or_default();
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

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(include_str!("../../static/openapi.json"))
}
