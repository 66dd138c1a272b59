//! Server-sent event streams: the public activity feed and a buyer's own task events. Both resume
//! from `Last-Event-ID` and send a keep-alive comment when idle, so proxies keep them open.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use clawjobs_actors::feed::{Audience, SUBSCRIBER_QUEUE, Subscribe};
use futures_util::stream;
use tokio::sync::mpsc;

use crate::AppState;
use crate::auth::{Anyone, Buyer};
use crate::error::ApiError;

/// One server-sent event as a stream carries it, for the API document: `data` is JSON text.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // described, never built: the streams write their events as text
pub struct SseEvent {
    /// The event's name (`task_completed`, `task_status`, `figures`, `reset`, `shutdown`).
    event: String,
    /// The event's JSON, as text.
    data: String,
    /// Resume after it with `Last-Event-ID` (streams that can resume).
    id: Option<String>,
}

/// An idle stream gets a comment line this often.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/api/feed", "GET").route(web::get().to(public_feed)))
        .service(super::resource("/api/tasks/events", "GET").route(web::get().to(buyer_events)))
        .service(
            super::resource("/api/notifications/events", "GET").route(web::get().to(user_events)),
        );
}

pub(crate) fn last_event_id(req: &HttpRequest) -> Result<Option<u64>, ApiError> {
    let header = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok());
    let query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("last_event_id").cloned());
    match header
        .map(str::to_string)
        .or(query)
        .filter(|s| !s.trim().is_empty())
    {
        None => Ok(None),
        Some(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ApiError::validation("Last-Event-ID must be an event id")),
    }
}

pub(crate) async fn open_stream(
    state: &AppState,
    audience: Audience,
    last: Option<u64>,
    recent: usize,
) -> Result<HttpResponse, ApiError> {
    // Room for a full replay on top of the live queue.
    let capacity = SUBSCRIBER_QUEUE
        + if last.is_some() {
            clawjobs_actors::feed::RING
        } else {
            0
        };
    let (tx, rx) = mpsc::channel::<Bytes>(capacity);
    state
        .engine
        .feed
        .send(Subscribe {
            audience,
            last_event_id: last,
            recent,
            tx,
        })
        .await
        .map_err(|e| ApiError::from(clawjobs_actors::EngineError::internal(e)))?;
    let mut tick = tokio::time::interval(KEEP_ALIVE);
    tick.reset();
    let hello = Bytes::from_static(b"retry: 2000\n: connected\n\n");
    let events = stream::unfold((rx, tick), |(mut rx, mut tick)| async move {
        tokio::select! {
            msg = rx.recv() => msg.map(|b| (Ok::<_, actix_web::Error>(b), (rx, tick))),
            _ = tick.tick() => Some((Ok(Bytes::from_static(b": keep-alive\n\n")), (rx, tick))),
        }
    });
    let body = futures_util::StreamExt::chain(
        stream::once(async move { Ok::<_, actix_web::Error>(hello) }),
        events,
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// `?recent=N`: how many of the newest public events to replay first (0 to `MAX_RECENT`).
fn recent(req: &HttpRequest) -> Result<usize, ApiError> {
    let q = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .map_err(|_| ApiError::validation("a malformed query string"))?;
    match q.get("recent").map(|v| v.trim()) {
        None | Some("") => Ok(0),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= clawjobs_actors::feed::MAX_RECENT)
            .ok_or_else(|| {
                ApiError::validation(format!(
                    "recent is a number from 0 to {}",
                    clawjobs_actors::feed::MAX_RECENT
                ))
            }),
    }
}

#[utoipa::path(get, path = "/api/feed", tag = "realtime",
    params(("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"),
           ("last_event_id" = Option<String>, Query, description = "The same, for clients that cannot set headers"),
           ("recent" = Option<u32>, Query, minimum = 0, maximum = 50,
            description = "Without a Last-Event-ID: replay this many of the newest events first")),
    responses(
        (status = 200, description = "Server-sent events: `task_completed` with type, price, earning and an \
            anonymous worker label; `reset` when the gap since Last-Event-ID is older than the ring; \
            `shutdown` when the server stops", content_type = "text/event-stream", body = SseEvent),
        (status = 400, description = "A bad Last-Event-ID or recent", body = crate::error::ErrorEnvelope),
    ))]
pub(crate) async fn public_feed(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let last = last_event_id(&req)?;
    let recent = recent(&req)?;
    open_stream(&state, Audience::Public, last, recent).await
}

#[utoipa::path(get, path = "/api/tasks/events", tag = "realtime", security(("bearer" = [])),
    params(("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"),
           ("last_event_id" = Option<String>, Query, description = "The same, for clients that cannot set headers")),
    responses(
        (status = 200, description = "Server-sent events: `task_status` (pending, assigned, completed with the \
            output, failed, credited) for the buyer's own tasks, and `notification` for the buyer's \
            notifications", content_type = "text/event-stream", body = SseEvent),
        (status = 400, description = "A bad Last-Event-ID", body = crate::error::ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = crate::error::ErrorEnvelope),
        (status = 403, description = "Not a buyer's token", body = crate::error::ErrorEnvelope),
    ))]
pub(crate) async fn buyer_events(
    state: web::Data<AppState>,
    who: Buyer,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let last = last_event_id(&req)?;
    open_stream(&state, Audience::User(who.0.id), last, 0).await
}

#[utoipa::path(get, path = "/api/notifications/events", tag = "realtime", security(("bearer" = [])),
    params(("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"),
           ("last_event_id" = Option<String>, Query, description = "The same, for clients that cannot set headers")),
    responses(
        (status = 200, description = "Server-sent events: the caller's own stream — `notification` (as \
            `GET /api/notifications` lists them) for every role, and for a buyer its `task_status` events too",
            content_type = "text/event-stream", body = SseEvent),
        (status = 400, description = "A bad Last-Event-ID", body = crate::error::ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = crate::error::ErrorEnvelope),
    ))]
pub(crate) async fn user_events(
    state: web::Data<AppState>,
    who: Anyone,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let last = last_event_id(&req)?;
    open_stream(&state, Audience::User(who.0.id), last, 0).await
}
