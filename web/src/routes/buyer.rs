//! Buyers: accounts, balance, tasks.

use actix_web::{HttpRequest, HttpResponse, web};
use clawjobs_actors::domain::TaskId;
use clawjobs_actors::engine::TaskRequest;
use clawjobs_actors::limits::MAX_TASK_WAIT;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{idempotency, parse_cursor, resource, wait_seconds};
use crate::auth::{Account, Buyer, Origin};
use crate::error::{ApiError, ErrorEnvelope};
use crate::views::{BalanceView, Page, TaskView};
use crate::{AppState, body, password};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/auth/register", "POST")
            .app_data(body::REGISTER_BYTES)
            .route(web::post().to(register)),
    )
    .service(
        resource("/api/auth/login", "POST")
            .app_data(body::REGISTER_BYTES)
            .route(web::post().to(login)),
    )
    .service(resource("/api/balance", "GET").route(web::get().to(balance)))
    .service(
        resource("/api/task/estimate", "POST")
            .app_data(body::TASK_BYTES)
            .route(web::post().to(estimate)),
    )
    .service(
        resource("/api/task", "POST")
            .app_data(body::TASK_BYTES)
            .route(web::post().to(post_task)),
    )
    .service(resource("/api/task/{id}", "GET").route(web::get().to(get_task)))
    .service(
        resource("/api/task/{id}/credit", "POST")
            .app_data(body::SMALL_BYTES)
            .route(web::post().to(credit)),
    )
    .service(resource("/api/tasks", "GET").route(web::get().to(list_tasks)));
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// The served document adds the server's own pattern (`domain::EMAIL_PATTERN`).
    #[schema(max_length = 254)]
    email: String,
    #[schema(min_length = 8, max_length = 256)]
    password: String,
    /// Another user's referral code (`GET /api/referral`): this buyer gets
    /// `signup.referral_buyer_credit_cents` on top of the signup credit. Unknown → 400.
    #[schema(pattern = "^[2-9A-HJKMNP-Za-hjkmnp-z]{8}$")]
    referral_code: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Registered {
    user_id: String,
    /// Shown once: only its SHA-256 is stored.
    token: String,
    balance_cents: i64,
}

#[utoipa::path(post, path = "/api/auth/register", tag = "buyers",
    params(("Clawjobs-Fingerprint" = Option<String>, Header, description = "An opaque name of the client (at most 256 bytes) that registrations are counted under per hour")),
    request_body = RegisterBody,
    responses(
        (status = 201, description = "Registered, with the signup credit", body = Registered),
        (status = 400, description = "Not a valid email or password, or an unknown referral code", body = ErrorEnvelope),
        (status = 409, description = "The email is taken", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
        (status = 429, description = "Too many registrations from this address (`config:rate_limits.registration.per_ip_per_min`) or this client (`fingerprint_per_hour`, by the `Clawjobs-Fingerprint` header, else address and user agent)", body = ErrorEnvelope,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: body::Json<RegisterBody>,
) -> Result<HttpResponse, ApiError> {
    state.limits.registration(&state.engine.cfg(), &req)?;
    clawjobs_actors::domain::Email::parse(&body.email)?;
    clawjobs_actors::domain::check_password(&body.password)?;
    let hash = password::hash(body.password.clone()).await?;
    let (user_id, token, balance) = state
        .engine
        .register_buyer(&body.email, hash, body.referral_code.as_deref())
        .await?;
    Ok(HttpResponse::Created().json(Registered {
        user_id,
        token,
        balance_cents: balance.available_cents,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    email: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoggedIn {
    user_id: String,
    token: String,
}

#[utoipa::path(post, path = "/api/auth/login", tag = "buyers",
    request_body = LoginBody,
    responses(
        (status = 200, description = "A new token", body = LoggedIn),
        (status = 400, description = "Not a login body", body = ErrorEnvelope),
        (status = 401, description = "Wrong email or password", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn login(
    state: web::Data<AppState>,
    body: body::Json<LoginBody>,
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
    Ok(HttpResponse::Ok().json(LoggedIn { user_id, token }))
}

#[utoipa::path(get, path = "/api/balance", tag = "buyers", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's balance (a buyer's or a worker's)", body = BalanceView),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer's or a worker's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn balance(
    state: web::Data<AppState>,
    who: Account,
) -> Result<HttpResponse, ApiError> {
    let b = state.engine.balance(who.id()).await?;
    Ok(HttpResponse::Ok().json(BalanceView::from(&b)))
}

/// A task type and its input. The served document narrows `type` to the priced types and
/// `input` to what each type's price rule reads, from the live pricing config.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EstimateBody {
    #[serde(rename = "type")]
    task_type: String,
    #[schema(value_type = Object)]
    input: Value,
}

#[derive(Serialize, ToSchema)]
pub struct Estimate {
    #[serde(rename = "type")]
    task_type: String,
    price_cents: i64,
}

#[utoipa::path(post, path = "/api/task/estimate", tag = "buyers", security(("bearer" = [])),
    request_body = EstimateBody,
    responses(
        (status = 200, description = "What the task would cost", body = Estimate),
        (status = 400, description = "Unknown type or an input its price rule cannot read", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer's token", body = ErrorEnvelope),
        (status = 413, description = "Input larger than 128 KB", body = ErrorEnvelope),
    ))]
pub(crate) async fn estimate(
    state: web::Data<AppState>,
    _who: Buyer,
    body: body::Json<EstimateBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let price_cents = state.engine.estimate(&body.task_type, &body.input)?;
    Ok(HttpResponse::Ok().json(Estimate {
        task_type: body.task_type,
        price_cents,
    }))
}

/// The served document sets `timeout_seconds`' bounds from the live `dispatch` config.
#[derive(Deserialize, Serialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConstraintsBody {
    /// Seconds a worker has once it claims the task (`dispatch` bounds; default
    /// `dispatch.default_timeout_seconds`).
    timeout_seconds: Option<u32>,
    /// Fewest characters of output text accepted.
    #[schema(maximum = 131072)]
    min_output_length: Option<u32>,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostTaskBody {
    #[serde(rename = "type")]
    task_type: String,
    #[schema(value_type = Object)]
    input: Value,
    #[serde(default)]
    constraints: Option<ConstraintsBody>,
    /// Seal the input and output at rest (AES-256-GCM): only you and the worker holding the
    /// task see them; lists and feeds show an `input_preview`, and the completion event on your
    /// stream carries no output (read it with `GET /api/task/{id}`).
    #[serde(default)]
    sensitive: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Posted {
    task_id: String,
    #[schema(pattern = "^pending$")]
    status: &'static str,
    price_cents: i64,
    balance_after_cents: i64,
}

#[utoipa::path(post, path = "/api/task", tag = "buyers", security(("bearer" = [])),
    params(super::IdempotencyKey),
    request_body = PostTaskBody,
    responses(
        (status = 201, description = "Posted: the price is in escrow", body = Posted),
        (status = 400, description = "Unknown type, bad input or constraints", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 402, description = "The balance cannot pay for it; nothing changed", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer's token", body = ErrorEnvelope),
        (status = 409, description = "This Idempotency-Key came with another body", body = ErrorEnvelope),
        (status = 413, description = "Input larger than 128 KB", body = ErrorEnvelope),
        (status = 429, description = "Too many posts this minute", body = ErrorEnvelope,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn post_task(
    state: web::Data<AppState>,
    who: Buyer,
    req: HttpRequest,
    body: body::Json<PostTaskBody>,
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
        sensitive: body.sensitive,
    };
    let posted = state.engine.post_task(who.id(), request, idem).await?;
    Ok(HttpResponse::Created().json(Posted {
        task_id: posted.task_id,
        status: "pending",
        price_cents: posted.price_cents,
        balance_after_cents: posted.balance_after_cents,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskWait {
    /// Seconds to wait for the task to become final (at most 30; more is treated as 30).
    #[param(minimum = 0)]
    wait: Option<f64>,
}

#[utoipa::path(get, path = "/api/task/{id}", tag = "buyers", security(("bearer" = [])),
    params(("id" = String, Path, description = "The task's id"), TaskWait),
    responses(
        (status = 200, description = "The task (once final, or when the wait ends)", body = TaskView),
        (status = 400, description = "A bad wait", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer's token", body = ErrorEnvelope),
        (status = 404, description = "No such task of this buyer's", body = ErrorEnvelope),
    ))]
pub(crate) async fn get_task(
    state: web::Data<AppState>,
    who: Buyer,
    id: web::Path<String>,
    q: web::Query<TaskWait>,
) -> Result<HttpResponse, ApiError> {
    let wait = wait_seconds(q.wait, MAX_TASK_WAIT)?;
    let task_id = TaskId::from(id.into_inner());
    let task = state
        .engine
        .task_for_buyer(&who.user_id(), &task_id, wait)
        .await?;
    Ok(HttpResponse::Ok().json(TaskView::from(&task)))
}

#[derive(Deserialize, Serialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskCreditBody {
    #[schema(max_length = 2000)]
    reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Credited {
    task_id: String,
    credited_cents: i64,
    balance_after_cents: i64,
}

#[utoipa::path(post, path = "/api/task/{id}/credit", tag = "buyers", security(("bearer" = [])),
    params(("id" = String, Path, description = "The task's id"), super::IdempotencyKey),
    request_body(content = Option<TaskCreditBody>, description = "May be left out"),
    responses(
        (status = 200, description = "Credited: the worker's lot and the commission are reversed", body = Credited),
        (status = 400, description = "A bad body", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer's token", body = ErrorEnvelope),
        (status = 404, description = "No such task of this buyer's", body = ErrorEnvelope),
        (status = 409, description = "Not completed, or its refund window has closed", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn credit(
    state: web::Data<AppState>,
    who: Buyer,
    origin: Origin,
    req: HttpRequest,
    id: web::Path<String>,
    body::JsonOrDefault(body): body::JsonOrDefault<TaskCreditBody>,
) -> Result<HttpResponse, ApiError> {
    let idem = idempotency(&req, who.id(), &format!("credit:{id}"), &body)?;
    let c = state
        .engine
        .credit(
            &origin.actor(who.id()),
            &TaskId::from(id.as_str()),
            body.reason,
            idem,
        )
        .await?;
    Ok(HttpResponse::Ok().json(Credited {
        task_id: c.task_id,
        credited_cents: c.credited_cents,
        balance_after_cents: c.balance_after_cents,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The `cursor` of the page before.
    #[param(pattern = "^[0-9]{0,18}$")]
    pub(crate) cursor: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/tasks", tag = "buyers", security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "The buyer's tasks, newest first", body = Page<TaskView>),
        (status = 400, description = "A bad cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn list_tasks(
    state: web::Data<AppState>,
    who: Buyer,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let before = parse_cursor(q.cursor.as_deref())?;
    let limit = super::page_limit(q.limit)?;
    let (rows, has_more) = state.engine.list_tasks(who.id(), before, limit).await?;
    Ok(HttpResponse::Ok().json(Page::of(&rows, has_more, |t| t.seq, |t| TaskView::from(t))))
}
