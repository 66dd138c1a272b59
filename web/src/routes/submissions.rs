//! A bounty's submissions, their review by its buyer, and disputes an admin resolves.

use actix_web::{HttpRequest, HttpResponse, web};
use clawjobs_actors::clock::{now_ms, rfc3339};
use clawjobs_actors::domain::Principal;
use clawjobs_actors::engine::DisputeCase;
use clawjobs_actors::rules::bounty::{DisputeStatus, Outcome, SubmissionStatus};
use clawjobs_actors::store::{DisputeRecord, SubmissionRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::bounty::BountyView;
use super::{idempotency, page_limit, parse_cursor, resource};
use crate::auth::{Admin, Anyone, Buyer, Origin, Worker};
use crate::error::{ApiError, ErrorEnvelope};
use crate::views::Page;
use crate::{AppState, body};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/bounties/{id}/submissions", "GET, POST")
            .app_data(body::OUTPUT_BYTES)
            .route(web::get().to(list))
            .route(web::post().to(submit)),
    )
    .service(
        resource("/api/bounties/{id}/submissions/{sid}/approve", "POST")
            .app_data(body::SMALL_BYTES)
            .route(web::post().to(approve)),
    )
    .service(
        resource("/api/bounties/{id}/submissions/{sid}/reject", "POST")
            .app_data(body::SMALL_BYTES)
            .route(web::post().to(reject)),
    )
    .service(
        resource("/api/bounties/{id}/submissions/{sid}/vote", "POST")
            .app_data(body::SMALL_BYTES)
            .route(web::post().to(vote)),
    )
    .service(resource("/api/worker/votes", "GET").route(web::get().to(vote_requests)))
    .service(
        resource("/api/bounties/{id}/submissions/{sid}/dispute", "POST")
            .app_data(body::SMALL_BYTES)
            .route(web::post().to(dispute)),
    )
    .service(resource("/api/admin/disputes", "GET").route(web::get().to(disputes)))
    .service(
        resource("/api/admin/disputes/{id}/resolve", "POST")
            .app_data(body::SMALL_BYTES)
            .route(web::post().to(resolve)),
    );
}

/// A submission as its worker, the bounty's buyer and admins see it.
#[derive(Serialize, ToSchema)]
pub struct SubmissionView {
    submission_id: String,
    bounty_id: String,
    worker_id: String,
    /// 1 for the first submission to the bounty, 2 for the next…
    position: u32,
    #[schema(value_type = Object)]
    content: serde_json::Value,
    status: SubmissionStatus,
    /// The buyer's reason, once rejected.
    reason: Option<String>,
    submitted_at: String,
    reviewed_at: Option<String>,
    /// Approved automatically because the buyer did not review it in time.
    auto_approved: bool,
    /// While pending: when it is approved automatically unless reviewed first.
    auto_release_at: Option<String>,
    /// While rejected: until when its worker may dispute the rejection.
    dispute_until: Option<String>,
    /// What its worker was paid (a frozen lot), once approved or resolved in its favour.
    paid_cents: i64,
    /// Consensus review: the validators' votes so far, for and against (0 under manual review).
    approvals: u32,
    rejections: u32,
}

impl SubmissionView {
    fn of(s: &SubmissionRecord) -> SubmissionView {
        SubmissionView {
            submission_id: s.submission_id.clone(),
            bounty_id: s.bounty_id.clone(),
            worker_id: s.worker_id.clone(),
            position: s.position,
            content: s.content.clone(),
            status: s.status,
            reason: s.reason.clone(),
            submitted_at: rfc3339(s.submitted_at_ms),
            reviewed_at: s.reviewed_at_ms.map(rfc3339),
            auto_approved: s.auto_approved,
            auto_release_at: s.review_due_ms.map(rfc3339),
            dispute_until: s.dispute_due_ms.map(rfc3339),
            paid_cents: s.paid_cents,
            approvals: s.approvals,
            rejections: s.rejections,
        }
    }
}

/// A reviewed submission and its bounty afterwards.
#[derive(Serialize, ToSchema)]
pub struct ReviewedView {
    #[serde(flatten)]
    submission: SubmissionView,
    bounty: BountyView,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BountySubmitBody {
    /// The work, a JSON object of at most 256 KB.
    #[schema(value_type = Object)]
    content: serde_json::Value,
}

#[utoipa::path(post, path = "/api/bounties/{id}/submissions", tag = "bounties", security(("bearer" = [])),
    params(("id" = String, Path, description = "The bounty's id")),
    request_body = BountySubmitBody,
    responses(
        (status = 201, description = "Submitted, with its position", body = SubmissionView),
        (status = 400, description = "content is not a JSON object", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a worker's token, or a banned worker", body = ErrorEnvelope),
        (status = 404, description = "No such bounty", body = ErrorEnvelope),
        (status = 409, description = "Not open, past its deadline, full, or already submitted to by this worker", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn submit(
    state: web::Data<AppState>,
    who: Worker,
    id: web::Path<String>,
    body: body::Json<BountySubmitBody>,
) -> Result<HttpResponse, ApiError> {
    let s = state
        .engine
        .submit_bounty(&who.worker_id(), &id, body.into_inner().content)
        .await?;
    Ok(HttpResponse::Created().json(SubmissionView::of(&s)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubmissionQuery {
    /// The `cursor` of the page before.
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/bounties/{id}/submissions", tag = "bounties", security(("bearer" = [])),
    params(("id" = String, Path, description = "The bounty's id"), SubmissionQuery),
    responses(
        (status = 200, description = "By position: all of them for the bounty's buyer and admins, only the caller's own for a worker", body = Page<SubmissionView>),
        (status = 400, description = "A bad cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "A buyer's token, not the bounty's buyer's", body = ErrorEnvelope),
        (status = 404, description = "No such bounty", body = ErrorEnvelope),
    ))]
pub(crate) async fn list(
    state: web::Data<AppState>,
    who: Anyone,
    id: web::Path<String>,
    q: web::Query<SubmissionQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, has_more) = state
        .engine
        .submissions(
            &who.0,
            &id,
            parse_cursor(q.cursor.as_deref())?,
            page_limit(q.limit)?,
        )
        .await?;
    Ok(HttpResponse::Ok().json(Page::of(
        &rows,
        has_more,
        |s| i64::from(s.position),
        SubmissionView::of,
    )))
}

fn reviewed(r: &clawjobs_actors::store::Reviewed, viewer: &Principal) -> ReviewedView {
    ReviewedView {
        submission: SubmissionView::of(&r.submission),
        bounty: BountyView::of(&r.bounty, viewer, now_ms()),
    }
}

#[derive(Deserialize)]
pub struct SubmissionPath {
    id: String,
    sid: String,
}

#[utoipa::path(post, path = "/api/bounties/{id}/submissions/{sid}/approve", tag = "bounties", security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The bounty's id"),
        ("sid" = String, Path, description = "The submission's id"),
        super::IdempotencyKey,
    ),
    responses(
        (status = 200, description = "Approved: the reward less the bounty fee is the worker's frozen lot, released after the dispute window; the bounty is completed", body = ReviewedView),
        (status = 400, description = "A bad Idempotency-Key", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer's token", body = ErrorEnvelope),
        (status = 404, description = "No such submission to a bounty of this buyer's", body = ErrorEnvelope),
        (status = 409, description = "Already reviewed, the bounty already settled or reviewed by consensus, a dispute open on it, or this Idempotency-Key came with another request", body = ErrorEnvelope),
    ))]
pub(crate) async fn approve(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Buyer,
    path: web::Path<SubmissionPath>,
) -> Result<HttpResponse, ApiError> {
    let what = serde_json::json!({ "bounty_id": path.id, "submission_id": path.sid });
    let idem = idempotency(&req, who.id(), "bounty-approve", &what)?;
    let r = state
        .engine
        .review_submission(&who.user_id(), &path.id, &path.sid, None, idem)
        .await?;
    Ok(HttpResponse::Ok().json(reviewed(&r, &who.0)))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// 1 to 2,000 characters, not only spaces.
    #[schema(min_length = 1, max_length = 2000, pattern = "\\S")]
    reason: String,
}

#[utoipa::path(post, path = "/api/bounties/{id}/submissions/{sid}/reject", tag = "bounties", security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The bounty's id"),
        ("sid" = String, Path, description = "The submission's id"),
    ),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "Rejected: its worker may dispute until dispute_until", body = ReviewedView),
        (status = 400, description = "A missing or too long reason", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer's token", body = ErrorEnvelope),
        (status = 404, description = "No such submission to a bounty of this buyer's", body = ErrorEnvelope),
        (status = 409, description = "Already reviewed, or the bounty already settled or reviewed by consensus", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn reject(
    state: web::Data<AppState>,
    who: Buyer,
    path: web::Path<SubmissionPath>,
    body: body::Json<ReasonBody>,
) -> Result<HttpResponse, ApiError> {
    let r = state
        .engine
        .review_submission(
            &who.user_id(),
            &path.id,
            &path.sid,
            Some(&body.reason),
            None,
        )
        .await?;
    Ok(HttpResponse::Ok().json(reviewed(&r, &who.0)))
}

/// A dispute: the worker's words and the buyer's.
#[derive(Serialize, ToSchema)]
pub struct DisputeView {
    dispute_id: String,
    bounty_id: String,
    submission_id: String,
    worker_id: String,
    buyer_id: String,
    /// The worker's reason for disputing.
    reason: String,
    /// The buyer's reason for rejecting.
    rejection_reason: String,
    status: DisputeStatus,
    opened_at: String,
    outcome: Option<Outcome>,
    worker_pct: Option<u32>,
    /// What the resolution paid the worker (a frozen lot, after the fee) and refunded the buyer.
    worker_cents: i64,
    refund_cents: i64,
    resolved_at: Option<String>,
    resolved_by: Option<String>,
}

impl DisputeView {
    fn of(d: &DisputeRecord) -> DisputeView {
        DisputeView {
            dispute_id: d.dispute_id.clone(),
            bounty_id: d.bounty_id.clone(),
            submission_id: d.submission_id.clone(),
            worker_id: d.worker_id.clone(),
            buyer_id: d.buyer_id.clone(),
            reason: d.reason.clone(),
            rejection_reason: d.rejection_reason.clone(),
            status: d.status,
            opened_at: rfc3339(d.opened_at_ms),
            outcome: d.outcome,
            worker_pct: d.worker_pct,
            worker_cents: d.worker_cents,
            refund_cents: d.refund_cents,
            resolved_at: d.resolved_at_ms.map(rfc3339),
            resolved_by: d.resolved_by.clone(),
        }
    }
}

#[utoipa::path(post, path = "/api/bounties/{id}/submissions/{sid}/dispute", tag = "bounties", security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The bounty's id"),
        ("sid" = String, Path, description = "The submission's id"),
    ),
    request_body = ReasonBody,
    responses(
        (status = 201, description = "Disputed: the bounty's escrow waits for an admin", body = DisputeView),
        (status = 400, description = "A missing or too long reason", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a worker's token", body = ErrorEnvelope),
        (status = 404, description = "No such submission of this worker's", body = ErrorEnvelope),
        (status = 409, description = "Not rejected, already disputed, the dispute window closed, or the bounty already settled", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn dispute(
    state: web::Data<AppState>,
    who: Worker,
    path: web::Path<SubmissionPath>,
    body: body::Json<ReasonBody>,
) -> Result<HttpResponse, ApiError> {
    let d = state
        .engine
        .dispute_submission(&who.worker_id(), &path.id, &path.sid, &body.reason)
        .await?;
    Ok(HttpResponse::Created().json(DisputeView::of(&d)))
}

/// A dispute with what there is to judge: the bounty and the disputed submission.
#[derive(Serialize, ToSchema)]
pub struct DisputeCaseView {
    #[serde(flatten)]
    dispute: DisputeView,
    bounty: Option<BountyView>,
    submission: Option<SubmissionView>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DisputeQuery {
    #[param(pattern = "^(open|resolved|closed)$")]
    status: Option<String>,
    /// The `cursor` of the page before.
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/admin/disputes", tag = "bounties", security(("bearer" = [])),
    params(DisputeQuery),
    responses(
        (status = 200, description = "Disputes, newest first, with both sides' words, the bounty and the submission", body = Page<DisputeCaseView>),
        (status = 400, description = "A bad status, cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn disputes(
    state: web::Data<AppState>,
    who: Admin,
    q: web::Query<DisputeQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, has_more) = state
        .engine
        .disputes(
            q.status.as_deref(),
            parse_cursor(q.cursor.as_deref())?,
            page_limit(q.limit)?,
        )
        .await?;
    let now = now_ms();
    Ok(HttpResponse::Ok().json(Page::of(
        &rows,
        has_more,
        |c: &DisputeCase| c.dispute.seq,
        |c| DisputeCaseView {
            dispute: DisputeView::of(&c.dispute),
            bounty: c.bounty.as_ref().map(|b| BountyView::of(b, &who.0, now)),
            submission: c.submission.as_ref().map(SubmissionView::of),
        },
    )))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisputeResolveBody {
    outcome: Outcome,
    /// The worker's share of the escrow in percent: required for a split (1 to 99).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    worker_pct: Option<u32>,
}

/// A resolved dispute and its bounty afterwards.
#[derive(Serialize, ToSchema)]
pub struct ResolvedView {
    #[serde(flatten)]
    dispute: DisputeView,
    bounty: BountyView,
}

#[utoipa::path(post, path = "/api/admin/disputes/{id}/resolve", tag = "bounties", security(("bearer" = [])),
    params(("id" = String, Path, description = "The dispute's id"), super::IdempotencyKey),
    request_body = DisputeResolveBody,
    responses(
        (status = 200, description = "Resolved: the worker's part paid as on approval (less the fee), the rest refunded, the bounty resolved; audit-logged", body = ResolvedView),
        (status = 400, description = "A split without worker_pct 1 to 99, worker_pct with another outcome, or a bad Idempotency-Key", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
        (status = 404, description = "No such dispute", body = ErrorEnvelope),
        (status = 409, description = "Already resolved or closed, or this Idempotency-Key came with another body", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn resolve(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Admin,
    origin: Origin,
    id: web::Path<String>,
    body: body::Json<DisputeResolveBody>,
) -> Result<HttpResponse, ApiError> {
    let idem = idempotency(&req, who.id(), "dispute-resolve", &(&*id, &*body))?;
    let r = state
        .engine
        .resolve_dispute(
            &origin.actor(who.id()),
            &id,
            body.outcome,
            body.worker_pct,
            idem,
        )
        .await?;
    Ok(HttpResponse::Ok().json(ResolvedView {
        dispute: DisputeView::of(&r.dispute),
        bounty: BountyView::of(&r.bounty, &who.0, now_ms()),
    }))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteBody {
    /// Whether the submission meets the bounty's description and criteria.
    approve: bool,
}

/// A validator's vote as it answers it: its own vote, and whether that decided the submission.
/// It never shows the other votes or who cast them.
#[derive(Serialize, ToSchema)]
pub struct VoteView {
    bounty_id: String,
    submission_id: String,
    approve: bool,
    /// This vote made the majority certain.
    decided: bool,
    /// The submission's status now: `pending` until the majority decides, then `approved` or
    /// `rejected`.
    submission_status: SubmissionStatus,
}

#[utoipa::path(post, path = "/api/bounties/{id}/submissions/{sid}/vote", tag = "bounties", security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The bounty's id"),
        ("sid" = String, Path, description = "The submission's id"),
    ),
    request_body = VoteBody,
    responses(
        (status = 200, description = "Counted. The vote that makes the majority of `config:bounty.validators` certain decides: \
            an approval pays the worker as the buyer's would and each validator who voted for it `validator_fee_cents` out of the fee; \
            a rejection opens the dispute window and the QA fund pays the validators who voted for it", body = VoteView),
        (status = 400, description = "A missing or bad approve", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a worker's token, a banned worker, a tier below `config:bounty.validator_min_tier`, or a worker who submitted to this bounty", body = ErrorEnvelope),
        (status = 404, description = "No such submission to this bounty", body = ErrorEnvelope),
        (status = 409, description = "Not a consensus bounty, already voted, the vote already decided, the bounty settled, or a dispute open on it", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn vote(
    state: web::Data<AppState>,
    who: Worker,
    path: web::Path<SubmissionPath>,
    body: body::Json<VoteBody>,
) -> Result<HttpResponse, ApiError> {
    let approve = body.approve;
    let v = state
        .engine
        .vote(&who.worker_id(), &path.id, &path.sid, approve)
        .await?;
    Ok(HttpResponse::Ok().json(VoteView {
        bounty_id: v.bounty.bounty_id,
        submission_id: v.submission.submission_id,
        approve,
        decided: v.decided,
        submission_status: v.submission.status,
    }))
}

/// A vote a validator is asked for: what the bounty asks and what was submitted, never who
/// submitted it or how others voted.
#[derive(Serialize, ToSchema)]
pub struct VoteRequestView {
    bounty_id: String,
    submission_id: String,
    title: String,
    description: String,
    criteria: Option<String>,
    /// The submission's place among the bounty's submissions.
    position: u32,
    #[schema(value_type = Object)]
    content: serde_json::Value,
    /// What a validator who votes with the majority is paid.
    fee_cents: i64,
    asked_at: String,
    /// After this the submission is approved automatically, votes or not.
    vote_by: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct VoteRequestsView {
    data: Vec<VoteRequestView>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VoteRequestQuery {
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/worker/votes", tag = "workers", security(("bearer" = [])),
    params(VoteRequestQuery),
    responses(
        (status = 200, description = "The votes this worker is asked for and has not cast, oldest first (each also came as a `vote.requested` notification)", body = VoteRequestsView),
        (status = 400, description = "A bad limit", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a worker's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn vote_requests(
    state: web::Data<AppState>,
    who: Worker,
    q: web::Query<VoteRequestQuery>,
) -> Result<HttpResponse, ApiError> {
    let asked = state
        .engine
        .vote_requests(&who.worker_id(), page_limit(q.limit)?)
        .await?;
    let data = asked
        .into_iter()
        .map(|r| VoteRequestView {
            bounty_id: r.bounty.bounty_id,
            submission_id: r.submission.submission_id,
            title: r.bounty.title,
            description: r.bounty.description,
            criteria: r.bounty.criteria,
            position: r.submission.position,
            content: r.submission.content,
            fee_cents: r.bounty.terms.validator_fee_cents,
            asked_at: rfc3339(r.asked_at_ms),
            vote_by: r.submission.review_due_ms.map(rfc3339),
        })
        .collect();
    Ok(HttpResponse::Ok().json(VoteRequestsView { data }))
}
