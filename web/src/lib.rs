//! clawjobs HTTP layer: routes for buyers, workers and admins, bearer auth, the error envelope.

pub mod auth;
pub mod body;
pub mod error;
pub mod headers;
pub mod openapi;
pub mod pages;
pub mod password;
pub mod ratelimit;
pub mod routes;
pub mod session;
pub mod views;

use std::time::Instant;

use actix_web::{App, HttpResponse, HttpServer, dev::Server, middleware, web};
use clawjobs_actors::Engine;
use clawjobs_actors::metrics::Metrics;

pub struct AppState {
    pub engine: Engine,
    pub limits: ratelimit::RateLimits,
    pub started: Instant,
    /// Becomes true when a graceful stop begins; sessions close with a reason.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// A WebSocket silent for this long is closed.
    pub ws_idle: std::time::Duration,
    /// Open worker WebSocket sessions.
    pub ws_sessions: std::sync::atomic::AtomicUsize,
}

/// What the binary tells the web layer.
pub struct WebSettings {
    pub workers: usize,
    pub ws_idle: std::time::Duration,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Security headers and CORS ([`headers`]).
    pub headers: headers::HeaderSettings,
}

/// Everything under `/api` and `/metrics`, and the browser pages.
pub fn configure(cfg: &mut web::ServiceConfig) {
    pages::configure(cfg);
    routes::buyer::configure(cfg);
    routes::worker::configure(cfg);
    routes::admin::configure(cfg);
    routes::console::configure(cfg);
    routes::money::configure(cfg);
    routes::bounty::configure(cfg);
    routes::submissions::configure(cfg);
    routes::notifications::configure(cfg);
    routes::webhooks::configure(cfg);
    routes::ops::configure(cfg);
    routes::feed::configure(cfg);
    routes::ws::configure(cfg);
}

async fn not_found() -> Result<HttpResponse, error::ApiError> {
    Err(error::ApiError::not_found("no such endpoint"))
}

/// Binds the HTTP server on `listener` with `workers` threads.
pub fn server(
    engine: Engine,
    listener: std::net::TcpListener,
    settings: WebSettings,
) -> std::io::Result<Server> {
    let limits = ratelimit::RateLimits::new(&engine.cfg());
    let workers = settings.workers;
    let state = web::Data::new(AppState {
        engine,
        limits,
        started: Instant::now(),
        shutdown: settings.shutdown,
        ws_idle: settings.ws_idle,
        ws_sessions: Default::default(),
    });
    let header_settings = std::sync::Arc::new(settings.headers);
    let sweeper = state.clone();
    actix_web::rt::spawn(async move {
        loop {
            actix_web::rt::time::sleep(ratelimit::RateLimits::SWEEP_EVERY).await;
            sweeper.limits.sweep();
        }
    });
    let server = HttpServer::new(move || {
        let metrics = state.engine.metrics.clone();
        let header_settings = header_settings.clone();
        App::new()
            .app_data(state.clone())
            .app_data(body::SMALL_BYTES)
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .wrap(middleware::from_fn(
                move |req: actix_web::dev::ServiceRequest, next: middleware::Next<_>| {
                    let metrics = metrics.clone();
                    async move {
                        let started = Instant::now();
                        // Long-polls wait on purpose: their time is not the server's latency.
                        let waits = req.query_string().contains("wait=");
                        let res = next.call(req).await?;
                        let streams = res.status()
                            == actix_web::http::StatusCode::SWITCHING_PROTOCOLS
                            || res
                                .headers()
                                .get(actix_web::http::header::CONTENT_TYPE)
                                .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
                        if !waits && !streams {
                            metrics.http_latency.observe(started.elapsed());
                        }
                        Metrics::inc(&metrics.http_requests_total);
                        if res.status().is_client_error() || res.status().is_server_error() {
                            Metrics::inc(&metrics.http_errors_total);
                        }
                        Ok(res)
                    }
                },
            ))
            .wrap(middleware::from_fn(
                move |req: actix_web::dev::ServiceRequest, next: middleware::Next<_>| {
                    headers::apply(header_settings.clone(), req, next)
                },
            ))
            .configure(configure)
            .default_service(web::to(not_found))
    })
    .workers(workers.max(1))
    .backlog(4096)
    .max_connection_rate(4096)
    .shutdown_timeout(20)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}
