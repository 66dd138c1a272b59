//! Workers: connect, claim, submit, profile.

use actix_web::{HttpResponse, web};
use clawjobs_actors::domain::TaskId;
use clawjobs_actors::engine::ProfilePatch;
use clawjobs_actors::limits::MAX_WORK_WAIT;
use clawjobs_actors::store::{WorkerNotice, WorkerProfile, WorkerStats};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{resource, wait_seconds};
use crate::auth::Worker;
use crate::error::{ApiError, ErrorEnvelope};
use crate::views::{Page, ProfileView, SubmitView, WorkView};
use crate::{AppState, body};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/worker/connect", "POST")
            .app_data(body::PROFILE_BYTES)
            .route(web::post().to(connect)),
    )
    .service(resource("/api/work/next", "GET").route(web::get().to(next)))
    .service(
        resource("/api/work/submit", "POST")
            .app_data(body::OUTPUT_BYTES)
            .route(web::post().to(submit)),
    )
    .service(
        resource("/api/worker/profile", "PATCH")
            .app_data(body::PROFILE_BYTES)
            .route(web::patch().to(profile)),
    )
    .service(resource("/api/worker/me", "GET").route(web::get().to(me)))
    .service(resource("/api/worker/earnings", "GET").route(web::get().to(earnings)));
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectBody {
    #[schema(max_length = 64)]
    worker_type: Option<String>,
    /// Free-form facts about the model behind the worker.
    #[schema(value_type = Option<Object>)]
    model_info: Option<serde_json::Map<String, Value>>,
    profile: Option<WorkerProfile>,
    /// Another user's referral code: the referrer earns a share of this worker's first 100
    /// tasks, paid by the platform. Unknown → 400.
    #[schema(pattern = "^[2-9A-HJKMNP-Za-hjkmnp-z]{8}$")]
    referral_code: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Connected {
    worker_id: String,
    /// Shown once: only its SHA-256 is stored.
    token: String,
    tier: String,
    stats: WorkerStats,
}

#[utoipa::path(post, path = "/api/worker/connect", tag = "workers",
    params(("Clawjobs-Fingerprint" = Option<String>, Header, description = "An opaque name of the client (at most 256 bytes) that connects are counted under per hour")),
    request_body(content = Option<ConnectBody>, description = "May be left out"),
    responses(
        (status = 201, description = "Connected; the token is shown once", body = Connected),
        (status = 400, description = "A bad profile or body, or an unknown referral code", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
        (status = 429, description = "Too many connects from this address or this client (as for registrations)", body = ErrorEnvelope,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn connect(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body::JsonOrDefault(body): body::JsonOrDefault<ConnectBody>,
) -> Result<HttpResponse, ApiError> {
    state.limits.registration(&state.engine.cfg(), &req)?;
    let model_info = Value::Object(body.model_info.unwrap_or_default());
    let (w, token) = state
        .engine
        .connect_worker(
            body.worker_type,
            model_info,
            body.profile.unwrap_or_default(),
            body.referral_code.as_deref(),
        )
        .await?;
    Ok(HttpResponse::Created().json(Connected {
        worker_id: w.worker_id,
        token,
        tier: w.tier,
        stats: w.stats,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkWait {
    /// Seconds to wait for a task (at most 15; more is treated as 15).
    #[param(minimum = 0)]
    wait: Option<f64>,
}

#[utoipa::path(get, path = "/api/work/next", tag = "workers", security(("bearer" = [])),
    params(WorkWait),
    responses(
        (status = 200, description = "A task, claimed for this worker until its deadline", body = WorkView),
        (status = 204, description = "Nothing matched within the wait"),
        (status = 400, description = "A bad wait", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a worker's token; SUSPENDED after repeated expiries; BANNED", body = ErrorEnvelope),
        (status = 409, description = "Already holding limits.concurrent tasks", body = ErrorEnvelope),
        (status = 429, description = "Too many claims this minute", body = ErrorEnvelope,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn next(
    state: web::Data<AppState>,
    who: Worker,
    q: web::Query<WorkWait>,
) -> Result<HttpResponse, ApiError> {
    let wait = wait_seconds(q.wait, MAX_WORK_WAIT)?;
    let worker = state.engine.worker(who.id()).await?;
    state
        .limits
        .work_next(&state.engine.cfg(), who.id(), &worker.tier)?;
    Ok(match state.engine.next_task(worker, wait).await? {
        Some(task) => HttpResponse::Ok().json(WorkView::from(&task)),
        None => HttpResponse::NoContent().finish(),
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    task_id: String,
    /// The result, e.g. `{"text": "…"}` (at most 256 KB).
    #[schema(value_type = Object)]
    output: serde_json::Map<String, Value>,
}

#[utoipa::path(post, path = "/api/work/submit", tag = "workers", security(("bearer" = [])),
    request_body = SubmitBody,
    responses(
        (status = 200, description = "Accepted and paid (a repeat answers the same and pays nothing)", body = SubmitView),
        (status = 400, description = "Output shorter than the task's min_output_length, or a bad body", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Another worker's task; not a worker's token; BANNED", body = ErrorEnvelope),
        (status = 404, description = "No such task", body = ErrorEnvelope),
        (status = 409, description = "TASK_EXPIRED: the deadline passed and the task went back to the queue", body = ErrorEnvelope),
        (status = 413, description = "Output larger than 256 KB", body = ErrorEnvelope),
    ))]
pub(crate) async fn submit(
    state: web::Data<AppState>,
    who: Worker,
    body: body::Json<SubmitBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if body.task_id.is_empty() || body.task_id.len() > clawjobs_actors::limits::MAX_TASK_ID_BYTES {
        return Err(ApiError::not_found("no such task"));
    }
    let output = Value::Object(body.output);
    let settled = state
        .engine
        .submit(&who.worker_id(), &TaskId::from(body.task_id), &output)
        .await?;
    Ok(HttpResponse::Ok().json(SubmitView::from(&settled)))
}

#[utoipa::path(patch, path = "/api/worker/profile", tag = "workers", security(("bearer" = [])),
    request_body = ProfilePatch,
    responses(
        (status = 200, description = "The whole profile after the change", body = ProfileView),
        (status = 400, description = "A bad profile", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a worker's token; BANNED", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn profile(
    state: web::Data<AppState>,
    who: Worker,
    body: body::Json<ProfilePatch>,
) -> Result<HttpResponse, ApiError> {
    let w = state
        .engine
        .update_profile(who.id(), body.into_inner())
        .await?;
    Ok(HttpResponse::Ok().json(ProfileView::from(&w)))
}

#[derive(Serialize, ToSchema)]
pub struct Earnings {
    today_cents: i64,
    total_cents: i64,
    withdrawable_cents: i64,
    frozen_cents: i64,
    /// When the earliest frozen earnings become withdrawable (none frozen: absent).
    next_release_at: Option<String>,
    /// How much frees up then.
    next_release_cents: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    worker_id: String,
    tier: String,
    stats: WorkerStats,
    /// What the next tier needs.
    #[schema(value_type = Object)]
    tier_progress: Value,
    suspended_until: Option<String>,
    earnings: Earnings,
    profile: ProfileView,
    /// QA warnings, deductions and bans, newest first.
    notices: Vec<WorkerNotice>,
}

#[utoipa::path(get, path = "/api/worker/me", tag = "workers", security(("bearer" = [])),
    responses(
        (status = 200, description = "Tier, stats, progress, earnings, profile and notices", body = Me),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a worker's token; BANNED", body = ErrorEnvelope),
    ))]
pub(crate) async fn me(state: web::Data<AppState>, who: Worker) -> Result<HttpResponse, ApiError> {
    let me = state.engine.worker_me(who.id()).await?;
    let w = &me.worker;
    let now = clawjobs_actors::clock::now_ms();
    Ok(HttpResponse::Ok().json(Me {
        worker_id: w.worker_id.clone(),
        tier: w.tier.clone(),
        stats: w.stats,
        tier_progress: me.tier_progress,
        suspended_until: w.suspended_until(now).map(clawjobs_actors::clock::rfc3339),
        earnings: Earnings {
            today_cents: me.today_cents,
            total_cents: me.balance.total_earned_cents,
            withdrawable_cents: me.balance.available_cents,
            frozen_cents: me.balance.frozen_cents,
            next_release_at: me
                .next_release
                .map(|(at, _)| clawjobs_actors::clock::rfc3339(at)),
            next_release_cents: me.next_release.map(|(_, cents)| cents),
        },
        profile: ProfileView::from(w),
        notices: me.notices,
    }))
}

/// One earning: a task the worker was paid for and where that money stands.
#[derive(Serialize, ToSchema)]
pub struct EarningView {
    task_id: String,
    #[serde(rename = "type")]
    task_type: String,
    earned_cents: i64,
    commission_cents: i64,
    /// Taken back into the QA fund by a penalty.
    deducted_cents: i64,
    /// frozen (inside the refund window), released (withdrawable), reversed (the buyer was
    /// credited), or held (a banned worker's).
    #[schema(pattern = "^(frozen|released|reversed|held)$")]
    status: String,
    earned_at: String,
    /// When the refund window ends and a frozen earning becomes withdrawable.
    frees_at: String,
}

impl From<&clawjobs_actors::store::Earning> for EarningView {
    fn from(e: &clawjobs_actors::store::Earning) -> Self {
        use clawjobs_actors::clock::rfc3339;
        EarningView {
            task_id: e.task_id.clone(),
            task_type: e.task_type.clone(),
            earned_cents: e.earned_cents,
            commission_cents: e.commission_cents,
            deducted_cents: e.deducted_cents,
            status: e.status.clone(),
            earned_at: rfc3339(e.created_ms),
            frees_at: rfc3339(e.release_ms),
        }
    }
}

#[utoipa::path(get, path = "/api/worker/earnings", tag = "workers", security(("bearer" = [])),
    params(super::buyer::PageQuery),
    responses(
        (status = 200, description = "The worker's earnings, newest first", body = Page<EarningView>),
        (status = 400, description = "A bad cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a worker's token; BANNED", body = ErrorEnvelope),
    ))]
pub(crate) async fn earnings(
    state: web::Data<AppState>,
    who: Worker,
    q: web::Query<super::buyer::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, has_more) = state
        .engine
        .earnings(
            who.id(),
            super::parse_cursor(q.cursor.as_deref())?,
            super::page_limit(q.limit)?,
        )
        .await?;
    Ok(HttpResponse::Ok().json(Page::of(
        &rows,
        has_more,
        |e| e.seq,
        |e| EarningView::from(e),
    )))
}
