//! Bounties: post (the reward into escrow), browse, read, cancel. Submissions, reviews and
//! disputes are in `submissions`.

use actix_web::{HttpRequest, HttpResponse, web};
use clawjobs_actors::clock::rfc3339;
use clawjobs_actors::domain::{Principal, Role};
use clawjobs_actors::engine::BountyAsk;
use clawjobs_actors::rules::bounty::{BountyStatus, Review};
use clawjobs_actors::store::BountyRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{idempotency, page_limit, parse_cursor, resource};
use crate::auth::{Anyone, Buyer};
use crate::error::{ApiError, ErrorEnvelope};
use crate::views::Page;
use crate::{AppState, body};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/bounties", "GET, POST")
            .app_data(body::BOUNTY_BYTES)
            .route(web::get().to(list))
            .route(web::post().to(post)),
    )
    .service(resource("/api/bounties/{id}", "GET").route(web::get().to(get)))
    .service(resource("/api/bounties/{id}/events", "GET").route(web::get().to(events)))
    .service(
        resource("/api/bounties/{id}/cancel", "POST")
            .app_data(body::SMALL_BYTES)
            .route(web::post().to(cancel)),
    );
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostBountyBody {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    title: String,
    /// What is to be done: 1 to 20,000 characters.
    #[schema(min_length = 1, max_length = 20000)]
    description: String,
    /// How a submission is judged (validators see it too).
    #[serde(default)]
    #[schema(max_length = 20000)]
    criteria: Option<String>,
    /// Within `config:bounty.min_reward_cents` and `max_reward_cents`; moved into escrow.
    #[schema(minimum = 1, maximum = 10000000)]
    reward_cents: i64,
    /// RFC 3339, in the future, at most `config:bounty.max_deadline_seconds` ahead.
    #[schema(format = DateTime)]
    deadline: String,
    /// At most `config:bounty.max_submissions` (and that when left out).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    max_submissions: Option<u32>,
    #[serde(default = "manual")]
    review: Review,
}

fn manual() -> Review {
    Review::Manual
}

/// A bounty as anyone sees it; its buyer and admins also see `buyer_id`.
#[derive(Serialize, ToSchema)]
pub struct BountyView {
    bounty_id: String,
    title: String,
    description: String,
    criteria: Option<String>,
    reward_cents: i64,
    /// What is held in escrow for it now (the reward while open, else 0).
    escrow_cents: i64,
    deadline: String,
    max_submissions: u32,
    submissions: u32,
    review: Review,
    status: BountyStatus,
    /// Whether it takes submissions now (open, before its deadline, not full).
    accepting: bool,
    /// The platform's fee on what it pays, as a fraction (the terms it was posted under).
    fee_pct: f64,
    dispute_window_seconds: i64,
    auto_release_seconds: i64,
    created_at: String,
    settled_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    buyer_id: Option<String>,
    /// Whether the caller posted it.
    mine: bool,
}

impl BountyView {
    pub(crate) fn of(b: &BountyRecord, viewer: &Principal, now_ms: i64) -> BountyView {
        let mine = viewer.id == b.buyer_id;
        BountyView {
            bounty_id: b.bounty_id.clone(),
            title: b.title.clone(),
            description: b.description.clone(),
            criteria: b.criteria.clone(),
            reward_cents: b.reward_cents,
            escrow_cents: b.escrow_cents(),
            deadline: rfc3339(b.deadline_ms),
            max_submissions: b.max_submissions,
            submissions: b.submissions,
            review: b.review,
            status: b.status,
            accepting: b.status == BountyStatus::Open
                && now_ms < b.deadline_ms
                && b.submissions < b.max_submissions,
            fee_pct: f64::from(b.terms.fee_bp) / 10_000.0,
            dispute_window_seconds: b.terms.dispute_window_ms / 1000,
            auto_release_seconds: b.terms.auto_release_ms / 1000,
            created_at: rfc3339(b.created_at_ms),
            settled_at: b.settled_at_ms.map(rfc3339),
            buyer_id: (mine || viewer.role == Role::Admin).then(|| b.buyer_id.clone()),
            mine,
        }
    }
}

#[utoipa::path(post, path = "/api/bounties", tag = "bounties", security(("bearer" = [])),
    params(super::IdempotencyKey),
    request_body = PostBountyBody,
    responses(
        (status = 201, description = "Posted: the reward is in escrow", body = BountyView),
        (status = 400, description = "A bad title, description, reward, deadline, max_submissions or review", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 402, description = "INSUFFICIENT_BALANCE: the reward is more than the available balance", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer's token", body = ErrorEnvelope),
        (status = 409, description = "This Idempotency-Key came with another body", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn post(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Buyer,
    body: body::Json<PostBountyBody>,
) -> Result<HttpResponse, ApiError> {
    let idem = idempotency(&req, who.id(), "bounties", &*body)?;
    let body = body.into_inner();
    let ask = BountyAsk {
        title: body.title,
        description: body.description,
        criteria: body.criteria,
        reward_cents: body.reward_cents,
        deadline: body.deadline,
        max_submissions: body.max_submissions,
        review: body.review,
    };
    let b = state.engine.post_bounty(&who.user_id(), ask, idem).await?;
    let now = clawjobs_actors::clock::now_ms();
    Ok(HttpResponse::Created().json(BountyView::of(&b, &who.0, now)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BountyQuery {
    #[param(pattern = "^(open|completed|resolved|expired|cancelled)$")]
    status: Option<String>,
    /// Only the caller's own: the bounties a buyer posted, or a worker submitted to.
    mine: Option<bool>,
    /// The `cursor` of the page before.
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/bounties", tag = "bounties", security(("bearer" = [])),
    params(BountyQuery),
    responses(
        (status = 200, description = "Bounties, newest first", body = Page<BountyView>),
        (status = 400, description = "A bad status, cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
    ))]
pub(crate) async fn list(
    state: web::Data<AppState>,
    who: Anyone,
    q: web::Query<BountyQuery>,
) -> Result<HttpResponse, ApiError> {
    let mine = q.mine.unwrap_or(false).then_some(&who.0);
    let (rows, has_more) = state
        .engine
        .bounties(
            q.status.as_deref(),
            mine,
            parse_cursor(q.cursor.as_deref())?,
            page_limit(q.limit)?,
        )
        .await?;
    let now = clawjobs_actors::clock::now_ms();
    Ok(HttpResponse::Ok().json(Page::of(
        &rows,
        has_more,
        |b| b.seq,
        |b| BountyView::of(b, &who.0, now),
    )))
}

#[utoipa::path(get, path = "/api/bounties/{id}", tag = "bounties", security(("bearer" = [])),
    params(("id" = String, Path, description = "The bounty's id")),
    responses(
        (status = 200, description = "The bounty", body = BountyView),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 404, description = "No such bounty", body = ErrorEnvelope),
    ))]
pub(crate) async fn get(
    state: web::Data<AppState>,
    who: Anyone,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let b = state.engine.bounty(&id).await?;
    let now = clawjobs_actors::clock::now_ms();
    Ok(HttpResponse::Ok().json(BountyView::of(&b, &who.0, now)))
}

#[utoipa::path(post, path = "/api/bounties/{id}/cancel", tag = "bounties", security(("bearer" = [])),
    params(("id" = String, Path, description = "The bounty's id")),
    responses(
        (status = 200, description = "Cancelled: the reward is back in the buyer's available balance", body = BountyView),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer's token", body = ErrorEnvelope),
        (status = 404, description = "No such bounty of this buyer's", body = ErrorEnvelope),
        (status = 409, description = "Not open, or someone has submitted to it", body = ErrorEnvelope),
    ))]
pub(crate) async fn cancel(
    state: web::Data<AppState>,
    who: Buyer,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let b = state.engine.cancel_bounty(&who.user_id(), &id).await?;
    let now = clawjobs_actors::clock::now_ms();
    Ok(HttpResponse::Ok().json(BountyView::of(&b, &who.0, now)))
}

#[utoipa::path(get, path = "/api/bounties/{id}/events", tag = "realtime", security(("bearer" = [])),
    params(("id" = String, Path, description = "The bounty's id"),
           ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"),
           ("last_event_id" = Option<String>, Query, description = "The same, for clients that cannot set headers")),
    responses(
        (status = 200, description = "Server-sent `bounty` events as the bounty changes: `{bounty_id, kind \
            (submission, approved, rejected, disputed, resolved, expired, cancelled), status, submissions, \
            submission_id?, position?, submission_status?}` — submissions by id and position, never by worker",
            content_type = "text/event-stream", body = super::feed::SseEvent),
        (status = 400, description = "A bad Last-Event-ID", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Neither its buyer, an admin, nor a worker who submitted to it", body = ErrorEnvelope),
        (status = 404, description = "No such bounty", body = ErrorEnvelope),
    ))]
pub(crate) async fn events(
    state: web::Data<AppState>,
    who: Anyone,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let last = super::feed::last_event_id(&req)?;
    state.engine.may_watch_bounty(&who.0, &id).await?;
    let audience = clawjobs_actors::feed::Audience::Bounty(id.into_inner());
    super::feed::open_stream(&state, audience, last, 0).await
}
