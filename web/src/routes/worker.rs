//! Workers: connect, claim, submit, profile.

use actix_web::{HttpResponse, web};
use clawjobs_actors::engine::{MAX_WORK_WAIT, ProfilePatch};
use clawjobs_actors::store::WorkerProfile;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{resource, wait_seconds};
use crate::auth::Worker;
use crate::error::ApiError;
use crate::views::{ProfileView, SubmitView, WorkView};
use crate::{AppState, limits};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/worker/connect", "POST")
            .app_data(limits::json(limits::REGISTER))
            .route(web::post().to(connect)),
    )
    .service(resource("/api/work/next", "GET").route(web::get().to(next)))
    .service(
        resource("/api/work/submit", "POST")
            .app_data(limits::json(limits::OUTPUT))
            .route(web::post().to(submit)),
    )
    .service(
        resource("/api/worker/profile", "PATCH")
            .app_data(limits::json(limits::REGISTER))
            .route(web::patch().to(profile)),
    )
    .service(resource("/api/worker/me", "GET").route(web::get().to(me)));
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConnectBody {
    worker_type: Option<String>,
    model_info: Option<Value>,
    profile: Option<WorkerProfile>,
}

async fn connect(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    limits::JsonOrDefault(body): limits::JsonOrDefault<ConnectBody>,
) -> Result<HttpResponse, ApiError> {
    let ip = req.peer_addr().map(|a| a.ip());
    state.limits.registration(&state.engine.cfg(), ip)?;
    let model_info = body.model_info.unwrap_or_else(|| json!({}));
    let (w, token) = state
        .engine
        .connect_worker(
            body.worker_type,
            model_info,
            body.profile.unwrap_or_default(),
        )
        .await?;
    Ok(HttpResponse::Created().json(json!({
        "worker_id": w.worker_id, "token": token, "tier": w.tier, "stats": w.stats,
    })))
}

#[derive(Deserialize)]
struct WaitQuery {
    wait: Option<f64>,
}

async fn next(
    state: web::Data<AppState>,
    who: Worker,
    q: web::Query<WaitQuery>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    task_id: String,
    output: Value,
}

async fn submit(
    state: web::Data<AppState>,
    who: Worker,
    body: web::Json<SubmitBody>,
) -> Result<HttpResponse, ApiError> {
    if !body.output.is_object() {
        return Err(ApiError::validation(
            "output must be a JSON object, e.g. {\"text\": \"...\"}",
        ));
    }
    if body.task_id.is_empty() || body.task_id.len() > 64 {
        return Err(ApiError::not_found("no such task"));
    }
    let settled = state
        .engine
        .submit(who.id(), &body.task_id, &body.output)
        .await?;
    Ok(HttpResponse::Ok().json(SubmitView::from(&settled)))
}

async fn profile(
    state: web::Data<AppState>,
    who: Worker,
    body: web::Json<ProfilePatch>,
) -> Result<HttpResponse, ApiError> {
    let w = state
        .engine
        .update_profile(who.id(), body.into_inner())
        .await?;
    Ok(HttpResponse::Ok().json(ProfileView::from(&w)))
}

async fn me(state: web::Data<AppState>, who: Worker) -> Result<HttpResponse, ApiError> {
    let me = state.engine.worker_me(who.id()).await?;
    let w = &me.worker;
    Ok(HttpResponse::Ok().json(json!({
        "worker_id": w.worker_id,
        "tier": w.tier,
        "stats": w.stats,
        "tier_progress": me.tier_progress,
        "suspended_until": w.suspended_until(clawjobs_actors::clock::now_ms()).map(clawjobs_actors::clock::rfc3339),
        "earnings": {
            "today_cents": me.today_cents,
            "total_cents": me.balance.total_earned_cents,
            "withdrawable_cents": me.balance.available_cents,
            "frozen_cents": me.balance.frozen_cents,
        },
        "profile": ProfileView::from(w),
        "notices": me.notices,
    })))
}
