//! Buyers: accounts, balance, tasks.

use actix_web::{HttpRequest, HttpResponse, web};
use clawjobs_actors::engine::{MAX_TASK_WAIT, TaskRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{idempotency, resource, wait_seconds};
use crate::auth::{Account, Buyer};
use crate::error::ApiError;
use crate::views::TaskView;
use crate::{AppState, limits, password};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/auth/register", "POST")
            .app_data(limits::json(limits::REGISTER))
            .route(web::post().to(register)),
    )
    .service(
        resource("/api/auth/login", "POST")
            .app_data(limits::json(limits::REGISTER))
            .route(web::post().to(login)),
    )
    .service(resource("/api/balance", "GET").route(web::get().to(balance)))
    .service(
        resource("/api/task/estimate", "POST")
            .app_data(limits::json(limits::TASK))
            .route(web::post().to(estimate)),
    )
    .service(
        resource("/api/task", "POST")
            .app_data(limits::json(limits::TASK))
            .route(web::post().to(post_task)),
    )
    .service(resource("/api/task/{id}", "GET").route(web::get().to(get_task)))
    .service(
        resource("/api/task/{id}/credit", "POST")
            .app_data(limits::json(limits::SMALL))
            .route(web::post().to(credit)),
    )
    .service(resource("/api/tasks", "GET").route(web::get().to(list_tasks)));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let ip = req.peer_addr().map(|a| a.ip());
    state.limits.registration(&state.engine.cfg(), ip)?;
    clawjobs_actors::domain::Email::parse(&body.email)?;
    clawjobs_actors::domain::check_password(&body.password)?;
    let hash = password::hash(body.password.clone()).await?;
    let (user_id, token, balance) = state.engine.register_buyer(&body.email, hash).await?;
    Ok(HttpResponse::Created().json(json!({
        "user_id": user_id, "token": token, "balance_cents": balance.available_cents,
    })))
}

async fn login(
    state: web::Data<AppState>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let found = state.engine.login_lookup(&body.email).await?;
    // Verify against a dummy hash for unknown emails so both answers take as long.
    let (user_id, stored) = found.clone().unwrap_or_default();
    let stored = if found.is_some() {
        stored
    } else {
        password::DUMMY_HASH.to_string()
    };
    let ok = password::verify(body.password.clone(), stored).await?;
    if !ok || found.is_none() {
        return Err(ApiError::unauthorized("wrong email or password"));
    }
    let token = state
        .engine
        .issue_token(&user_id, clawjobs_actors::domain::Role::Buyer)
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "user_id": user_id, "token": token })))
}

async fn balance(state: web::Data<AppState>, who: Account) -> Result<HttpResponse, ApiError> {
    let b = state.engine.balance(who.id()).await?;
    Ok(HttpResponse::Ok().json(json!({
        "available_cents": b.available_cents,
        "frozen_cents": b.frozen_cents,
        "total_deposited_cents": b.total_deposited_cents,
        "total_earned_cents": b.total_earned_cents,
        "total_withdrawn_cents": b.total_withdrawn_cents,
    })))
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct EstimateBody {
    #[serde(rename = "type")]
    task_type: String,
    input: Value,
}

async fn estimate(
    state: web::Data<AppState>,
    _who: Buyer,
    body: web::Json<EstimateBody>,
) -> Result<HttpResponse, ApiError> {
    let price_cents = state.engine.estimate(&body.task_type, &body.input)?;
    Ok(HttpResponse::Ok().json(json!({ "type": body.task_type, "price_cents": price_cents })))
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct ConstraintsBody {
    timeout_seconds: Option<u32>,
    min_output_length: Option<u32>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct PostTaskBody {
    #[serde(rename = "type")]
    task_type: String,
    input: Value,
    #[serde(default)]
    constraints: Option<ConstraintsBody>,
}

async fn post_task(
    state: web::Data<AppState>,
    who: Buyer,
    req: HttpRequest,
    body: web::Json<PostTaskBody>,
) -> Result<HttpResponse, ApiError> {
    let idem = idempotency(&req, who.id(), "post_task", &*body)?;
    state.limits.task_submit(&state.engine.cfg(), who.id())?;
    let body = body.into_inner();
    let c = body.constraints.unwrap_or_default();
    let request = TaskRequest {
        task_type: body.task_type,
        input: body.input,
        timeout_seconds: c.timeout_seconds,
        min_output_length: c.min_output_length,
    };
    let posted = state.engine.post_task(who.id(), request, idem).await?;
    Ok(HttpResponse::Created().json(json!({
        "task_id": posted.task_id,
        "status": "pending",
        "price_cents": posted.price_cents,
        "balance_after_cents": posted.balance_after_cents,
    })))
}

#[derive(Deserialize)]
struct WaitQuery {
    wait: Option<f64>,
}

async fn get_task(
    state: web::Data<AppState>,
    who: Buyer,
    id: web::Path<String>,
    q: web::Query<WaitQuery>,
) -> Result<HttpResponse, ApiError> {
    let wait = wait_seconds(q.wait, MAX_TASK_WAIT)?;
    let task = state.engine.task_for_buyer(who.id(), &id, wait).await?;
    Ok(HttpResponse::Ok().json(TaskView::from(&task)))
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct CreditBody {
    reason: Option<String>,
}

async fn credit(
    state: web::Data<AppState>,
    who: Buyer,
    req: HttpRequest,
    id: web::Path<String>,
    limits::JsonOrDefault(body): limits::JsonOrDefault<CreditBody>,
) -> Result<HttpResponse, ApiError> {
    let idem = idempotency(&req, who.id(), &format!("credit:{id}"), &body)?;
    let c = state
        .engine
        .credit(who.id(), &id, body.reason, idem)
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "task_id": c.task_id, "credited_cents": c.credited_cents, "balance_after_cents": c.balance_after_cents,
    })))
}

#[derive(Deserialize)]
struct PageQuery {
    cursor: Option<String>,
    limit: Option<u32>,
}

async fn list_tasks(
    state: web::Data<AppState>,
    who: Buyer,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let before = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| ApiError::validation("cursor is not one this server gave out"))?,
        ),
    };
    let (rows, has_more) = state
        .engine
        .list_tasks(who.id(), before, q.limit.unwrap_or(20))
        .await?;
    let cursor = if has_more {
        rows.last().map(|t| t.seq.to_string())
    } else {
        None
    };
    let data: Vec<TaskView> = rows.iter().map(TaskView::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data, "cursor": cursor, "has_more": has_more })))
}
