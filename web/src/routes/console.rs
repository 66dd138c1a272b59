//! The admin console's API: the live actors and their state, a task's timeline, the Supervisor's
//! jobs, the invariant warnings, and the stream of live figures its charts are drawn from.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use bytes::Bytes;
use clawjobs_actors::engine::{ActorQuery, ActorSort, Figures, Invariants};
use clawjobs_actors::meter::ActorRow;
use clawjobs_actors::metrics::quantile_us;
use clawjobs_actors::store::timeline::TimelineEvent;
use futures_util::stream;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::{parse_cursor, resource};
use crate::AppState;
use crate::auth::{Admin, Origin};
use crate::error::{ApiError, ErrorEnvelope};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/admin/actors", "GET").route(web::get().to(actors)))
        .service(resource("/api/admin/actors/{kind}/{id}", "GET").route(web::get().to(actor)))
        .service(resource("/api/admin/tasks/{id}/timeline", "GET").route(web::get().to(timeline)))
        .service(resource("/api/admin/supervisor/jobs", "GET").route(web::get().to(jobs)))
        .service(
            resource("/api/admin/supervisor/jobs/{name}/run", "POST")
                .route(web::post().to(run_job)),
        )
        .service(resource("/api/admin/invariants", "GET").route(web::get().to(invariants)))
        .service(resource("/api/admin/stream", "GET").route(web::get().to(live)));
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActorsQuery {
    /// Only actors of this kind (Dispatcher, FeedHub, Supervisor, ConfigActor, QaComparator,
    /// BalanceActor, WorkerSession).
    #[param(max_length = 64)]
    kind: Option<String>,
    /// Part of the actor's id.
    #[param(max_length = 200)]
    q: Option<String>,
    #[param(inline)]
    sort: Option<ActorSort>,
    /// `desc` (the default) or `asc`.
    #[param(pattern = "^(asc|desc)$")]
    order: Option<String>,
    /// The `cursor` of the page before.
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct ActorView {
    kind: &'static str,
    id: String,
    mailbox_len: u64,
    messages_handled: u64,
    messages_per_s: u64,
    /// The longest a message waited in the mailbox over the last second, µs.
    slowest_wait_us: u64,
    started_at: String,
    /// The kind's gauges (held tasks, a balance, subscribers…).
    #[schema(value_type = Object)]
    summary: serde_json::Map<String, Value>,
}

impl From<ActorRow> for ActorView {
    fn from(r: ActorRow) -> Self {
        ActorView {
            summary: r.summary(),
            kind: r.kind,
            id: r.id,
            mailbox_len: r.mailbox_len,
            messages_handled: r.messages_handled,
            messages_per_s: r.messages_per_s,
            slowest_wait_us: r.slowest_wait_us,
            started_at: clawjobs_actors::clock::rfc3339(r.started_ms),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ActorsView {
    data: Vec<ActorView>,
    cursor: Option<String>,
    has_more: bool,
    /// Actors that matched, on every page.
    total: usize,
    /// Live actors of each kind.
    #[schema(value_type = Object)]
    kinds: std::collections::BTreeMap<&'static str, usize>,
}

#[utoipa::path(get, path = "/api/admin/actors", tag = "console", security(("bearer" = [])),
    params(ActorsQuery),
    responses(
        (status = 200, description = "Every live actor with its mailbox figures, filtered, sorted and paged", body = ActorsView),
        (status = 400, description = "A bad sort, order, cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn actors(
    state: web::Data<AppState>,
    _admin: Admin,
    q: web::Query<ActorsQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    if q.kind.as_ref().is_some_and(|k| k.chars().count() > 64)
        || q.q.as_ref().is_some_and(|s| s.chars().count() > 200)
    {
        return Err(ApiError::validation(
            "kind is at most 64 characters and q at most 200",
        ));
    }
    let offset = parse_cursor(q.cursor.as_deref())?.unwrap_or(0).max(0) as usize;
    let limit = match q.limit {
        None => 100,
        Some(n @ 1..=500) => n as usize,
        Some(_) => return Err(ApiError::validation("limit must be between 1 and 500")),
    };
    let ascending = match q.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => return Err(ApiError::validation("order is asc or desc")),
    };
    let page = state.engine.actors(&ActorQuery {
        kind: q.kind.filter(|k| !k.is_empty()),
        search: q.q.filter(|s| !s.is_empty()),
        sort: q.sort.unwrap_or_default(),
        ascending,
        offset,
        limit,
    });
    let next = offset + page.rows.len();
    let has_more = next < page.total;
    Ok(HttpResponse::Ok().json(ActorsView {
        data: page.rows.into_iter().map(ActorView::from).collect(),
        cursor: has_more.then(|| next.to_string()),
        has_more,
        total: page.total,
        kinds: page.kinds,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ActorStateView {
    actor: ActorView,
    /// What the actor holds, as it describes itself (secrets are never part of it).
    #[schema(value_type = Object)]
    state: Value,
}

#[utoipa::path(get, path = "/api/admin/actors/{kind}/{id}", tag = "console", security(("bearer" = [])),
    params(("kind" = String, Path, description = "The actor's kind", max_length = 64),
           ("id" = String, Path, description = "The actor's id", max_length = 200)),
    responses(
        (status = 200, description = "The actor's figures and state", body = ActorStateView),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
        (status = 404, description = "No such live actor", body = ErrorEnvelope),
    ))]
pub(crate) async fn actor(
    state: web::Data<AppState>,
    _admin: Admin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (kind, id) = path.into_inner();
    let (row, st) = state.engine.inspect_actor(&kind, &id).await?;
    Ok(HttpResponse::Ok().json(ActorStateView {
        actor: row.into(),
        state: st,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TimelineView {
    task_id: String,
    events: Vec<TimelineEvent>,
}

#[utoipa::path(get, path = "/api/admin/tasks/{id}/timeline", tag = "console", security(("bearer" = [])),
    params(("id" = String, Path, description = "The task", max_length = 64)),
    responses(
        (status = 200, description = "Every event of the task, oldest first", body = TimelineView),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
        (status = 404, description = "No such task", body = ErrorEnvelope),
    ))]
pub(crate) async fn timeline(
    state: web::Data<AppState>,
    _admin: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let task_id = id.into_inner();
    let events = state.engine.task_timeline(&task_id).await?;
    Ok(HttpResponse::Ok().json(TimelineView { task_id, events }))
}

#[utoipa::path(get, path = "/api/admin/supervisor/jobs", tag = "console", security(("bearer" = [])),
    responses(
        (status = 200, description = "The Supervisor's jobs: what each does, how often, its last run and result, its next run", body = Object),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn jobs(
    state: web::Data<AppState>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.engine.supervisor_jobs().await?))
}

#[utoipa::path(post, path = "/api/admin/supervisor/jobs/{name}/run", tag = "console", security(("bearer" = [])),
    params(("name" = String, Path, description = "The job",
        pattern = "^(watch|unfreeze|overdue|stale|purge_idempotency|bounties|webhooks|purge_tasks)$")),
    responses(
        (status = 202, description = "The job was started (audit-logged); its result shows in the job list", body = Object),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 409, description = "The job is running now", body = ErrorEnvelope),
    ))]
pub(crate) async fn run_job(
    state: web::Data<AppState>,
    admin: Admin,
    origin: Origin,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state
        .engine
        .run_job(&name, &origin.actor(admin.id()))
        .await?;
    Ok(HttpResponse::Accepted().json(json!({ "job": name.as_str(), "started": true })))
}

#[utoipa::path(get, path = "/api/admin/invariants", tag = "console", security(("bearer" = [])),
    responses(
        (status = 200, description = "The ledger audit, tasks stuck past their deadline, and where the Dispatcher and the store disagree", body = Invariants),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn invariants(
    state: web::Data<AppState>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.engine.invariants().await?))
}

/// One figure of the stream, drawn from two readings a second apart.
fn point(before: &Figures, now: &Figures, ws_sessions: usize) -> Value {
    let secs = ((now.at_ms - before.at_ms) as f64 / 1000.0).max(1e-3);
    let rate = |a: u64, b: u64| ((b.saturating_sub(a)) as f64 / secs * 10.0).round() / 10.0;
    let p99 = quantile_us(&before.latency_buckets, &now.latency_buckets, 0.99);
    json!({
        "at": clawjobs_actors::clock::rfc3339(now.at_ms),
        "tasks_completed_per_s": rate(before.tasks_completed_total, now.tasks_completed_total),
        "tasks_posted_per_s": rate(before.tasks_posted_total, now.tasks_posted_total),
        "requests_per_s": rate(before.http_requests_total, now.http_requests_total),
        "p99_latency_ms": p99.map(|us| us as f64 / 1000.0),
        "queue_depth": now.pending_tasks,
        "assigned": now.assigned_tasks,
        "parked_claimers": now.parked_claimers,
        "ws_sessions": ws_sessions,
        "actors": now.actors,
    })
}

/// The stream sends a figure this often.
const EVERY: Duration = Duration::from_secs(1);

#[utoipa::path(get, path = "/api/admin/stream", tag = "console", security(("bearer" = [])),
    responses(
        (status = 200, description = "Server-sent events: `figures` once a second — tasks completed and posted \
            per second, requests per second, the p99 request latency (long-polls and streams left out, \
            bucket bounds), queue depth, assigned tasks, parked claimers, WebSocket sessions, live actors by kind",
            content_type = "text/event-stream", body = super::feed::SseEvent),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn live(
    state: web::Data<AppState>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let first = state.engine.figures().await;
    let shutdown = state.shutdown.clone();
    let hello = Bytes::from_static(b"retry: 2000\n: figures every second\n\n");
    let figures = stream::unfold(
        (state, first, shutdown),
        |(state, before, mut shutdown)| async move {
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = shutdown.wait_for(|s| *s) => return None,
            }
            let now = state.engine.figures().await;
            let sessions = state.ws_sessions.load(std::sync::atomic::Ordering::Relaxed);
            let data = point(&before, &now, sessions);
            let frame = Bytes::from(format!("event: figures\ndata: {data}\n\n"));
            Some((Ok::<_, actix_web::Error>(frame), (state, now, shutdown)))
        },
    );
    let body = futures_util::StreamExt::chain(
        stream::once(async move { Ok::<_, actix_web::Error>(hello) }),
        figures,
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}
