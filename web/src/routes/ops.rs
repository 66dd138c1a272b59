//! Operations: health, readiness, metrics, the OpenAPI document.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/health", web::get().to(health))
        .route("/api/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics))
        .route("/api/openapi.json", web::get().to(openapi));
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
    text.push_str(&format!(
        "# HELP clawjobs_balance_actors Live balance actors.\n# TYPE clawjobs_balance_actors gauge\nclawjobs_balance_actors {}\n",
        state.engine.live_balance_actors()
    ));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text)
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(include_str!("../../static/openapi.json"))
}
