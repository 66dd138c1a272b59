//! Money in (deposit options, Checkout Sessions, Stripe's webhook, deposit lists) and money out
//! (email verification, payout binding, withdrawals, an admin's payouts and the outbox).

use actix_web::{HttpRequest, HttpResponse, web};
use clawjobs_actors::clock::rfc3339;
use clawjobs_actors::rules::deposit::DepositStatus;
use clawjobs_actors::rules::payout::PayoutMethod;
use clawjobs_actors::store::{
    DepositRecord, OutboxMessage, PayoutBinding, Settle, WithdrawalRecord, WithdrawalStatus,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{idempotency, page_limit, parse_cursor, resource};
use crate::auth::{Account, Admin, Buyer, Origin, Worker};
use crate::error::{ApiError, ErrorEnvelope};
use crate::views::Page;
use crate::{AppState, body};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/deposit/options", "GET").route(web::get().to(deposit_options)))
        .service(
            resource("/api/deposit", "POST")
                .app_data(body::SMALL_BYTES)
                .route(web::post().to(deposit)),
        )
        .service(
            resource("/api/deposit/webhook", "POST")
                .app_data(body::WEBHOOK_BYTES)
                .route(web::post().to(webhook)),
        )
        .service(resource("/api/deposits", "GET").route(web::get().to(deposits)))
        .service(resource("/api/admin/deposits", "GET").route(web::get().to(admin_deposits)))
        .service(
            resource("/api/admin/deposits/{id}/resolve", "POST")
                .app_data(body::SMALL_BYTES)
                .route(web::post().to(resolve_deposit)),
        )
        .service(
            resource("/api/worker/bind-email", "POST")
                .app_data(body::SMALL_BYTES)
                .route(web::post().to(bind_email)),
        )
        .service(
            resource("/api/worker/verify-email", "POST")
                .app_data(body::SMALL_BYTES)
                .route(web::post().to(verify_email)),
        )
        .service(
            resource("/api/worker/bind-payout", "POST")
                .app_data(body::SMALL_BYTES)
                .route(web::post().to(bind_payout)),
        )
        .service(resource("/api/worker/payout", "GET").route(web::get().to(payout)))
        .service(
            resource("/api/withdraw", "POST")
                .app_data(body::SMALL_BYTES)
                .route(web::post().to(withdraw)),
        )
        .service(resource("/api/withdrawals", "GET").route(web::get().to(withdrawals)))
        .service(resource("/api/admin/withdrawals", "GET").route(web::get().to(admin_withdrawals)))
        .service(
            resource("/api/admin/withdrawals/{id}/complete", "POST")
                .app_data(body::SMALL_BYTES)
                .route(web::post().to(complete_withdrawal)),
        )
        .service(
            resource("/api/admin/withdrawals/{id}/reject", "POST")
                .app_data(body::SMALL_BYTES)
                .route(web::post().to(reject_withdrawal)),
        )
        .service(resource("/api/admin/outbox", "GET").route(web::get().to(admin_outbox)))
        .service(resource("/api/referral", "GET").route(web::get().to(referral)));
}

#[derive(Serialize, ToSchema)]
pub struct DepositOptions {
    /// The amounts a deposit may be (`config:pricing.deposit_tiers_cents`).
    amounts_cents: Vec<i64>,
    /// The bonus on a buyer's first completed deposit, as a fraction (0.2 = 20 %).
    first_deposit_bonus_pct: f64,
    currency: &'static str,
    /// Whether this server takes deposits now (false: `POST /api/deposit` is 503).
    enabled: bool,
}

#[utoipa::path(get, path = "/api/deposit/options", tag = "money", security(("bearer" = [])),
    responses(
        (status = 200, description = "What a buyer may deposit", body = DepositOptions),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn deposit_options(
    state: web::Data<AppState>,
    _who: Buyer,
) -> Result<HttpResponse, ApiError> {
    let o = state.engine.deposit_options();
    Ok(HttpResponse::Ok().json(DepositOptions {
        amounts_cents: o.amounts_cents,
        first_deposit_bonus_pct: o.first_deposit_bonus_pct,
        currency: o.currency,
        enabled: o.enabled,
    }))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositBody {
    /// One of `GET /api/deposit/options`' amounts (the document lists the live ones).
    amount_cents: i64,
}

/// A deposit as its buyer sees it.
#[derive(Serialize, ToSchema)]
pub struct DepositView {
    deposit_id: String,
    amount_cents: i64,
    /// The first deposit's bonus (credited with the deposit).
    bonus_cents: i64,
    status: DepositStatus,
    /// Where to send the buyer to pay.
    checkout_url: String,
    session_id: String,
    /// What Stripe said was paid (for a `mismatch`, not the deposit's amount).
    #[serde(skip_serializing_if = "Option::is_none")]
    paid_cents: Option<i64>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    settled_at: Option<String>,
}

impl From<&DepositRecord> for DepositView {
    fn from(d: &DepositRecord) -> Self {
        DepositView {
            deposit_id: d.deposit_id.clone(),
            amount_cents: d.amount_cents,
            bonus_cents: d.bonus_cents,
            status: d.status,
            checkout_url: d.checkout_url.clone(),
            session_id: d.session_id.clone(),
            paid_cents: d.paid_cents,
            created_at: rfc3339(d.created_at_ms),
            settled_at: d.settled_at_ms.map(rfc3339),
        }
    }
}

/// A deposit with its buyer, for admins.
#[derive(Serialize, ToSchema)]
pub struct AdminDepositView {
    buyer_id: String,
    #[serde(flatten)]
    deposit: DepositView,
}

#[utoipa::path(post, path = "/api/deposit", tag = "money", security(("bearer" = [])),
    params(super::IdempotencyKey),
    request_body = DepositBody,
    responses(
        (status = 201, description = "A Checkout Session for the amount: send the buyer to checkout_url. \
            The webhook credits it once Stripe says it is paid.", body = DepositView),
        (status = 400, description = "Not one of the deposit amounts", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer's token", body = ErrorEnvelope),
        (status = 409, description = "This Idempotency-Key came with another body", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
        (status = 502, description = "PAYMENT_PROVIDER_ERROR: Stripe failed; nothing was made", body = ErrorEnvelope),
        (status = 503, description = "PAYMENTS_DISABLED: no Stripe key on this server (or UNAVAILABLE)", body = ErrorEnvelope),
    ))]
pub(crate) async fn deposit(
    state: web::Data<AppState>,
    who: Buyer,
    req: HttpRequest,
    body: body::Json<DepositBody>,
) -> Result<HttpResponse, ApiError> {
    let idem = idempotency(&req, who.id(), "deposit", &*body)?;
    let d = state
        .engine
        .deposit(&who.user_id(), body.amount_cents, idem)
        .await?;
    Ok(HttpResponse::Created().json(DepositView::from(&d)))
}

#[derive(Serialize, ToSchema)]
pub struct WebhookAnswer {
    received: bool,
    /// What the event did: credited, mismatch, expired, duplicate, nothing, unmatched.
    outcome: &'static str,
}

#[utoipa::path(post, path = "/api/deposit/webhook", tag = "money",
    params(("Stripe-Signature" = String, Header, description = "t=<unix>,v1=<hex HMAC-SHA256>; checked on the raw body")),
    request_body(content = Object, description = "A Stripe event, exactly as Stripe sent it"),
    responses(
        (status = 200, description = "Received: acted on once (a repeat moves nothing)", body = WebhookAnswer),
        (status = 400, description = "A missing, malformed, stale or wrong signature, or no event: nothing changed", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
        (status = 503, description = "PAYMENTS_DISABLED: no Stripe key on this server (or UNAVAILABLE)", body = ErrorEnvelope),
    ))]
pub(crate) async fn webhook(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: body::Raw,
) -> Result<HttpResponse, ApiError> {
    let signature = match req.headers().get("stripe-signature") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::validation("Stripe-Signature is not text"))?,
        ),
    };
    let outcome = state.engine.deposit_webhook(signature, &body.0).await?;
    Ok(HttpResponse::Ok().json(WebhookAnswer {
        received: true,
        outcome: outcome.label(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DepositQuery {
    /// The `cursor` of the page before.
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Only deposits in this status.
    #[param(pattern = "^(pending|completed|expired|mismatch)$")]
    status: Option<String>,
}

#[utoipa::path(get, path = "/api/deposits", tag = "money", security(("bearer" = [])),
    params(DepositQuery),
    responses(
        (status = 200, description = "The buyer's deposits, newest first", body = Page<DepositView>),
        (status = 400, description = "A bad cursor, limit or status", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn deposits(
    state: web::Data<AppState>,
    who: Buyer,
    q: web::Query<DepositQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, has_more) = state
        .engine
        .deposits(
            Some(&who.user_id()),
            q.status.as_deref(),
            parse_cursor(q.cursor.as_deref())?,
            page_limit(q.limit)?,
        )
        .await?;
    Ok(HttpResponse::Ok().json(Page::of(
        &rows,
        has_more,
        |d| d.seq,
        |d| DepositView::from(d),
    )))
}

#[utoipa::path(get, path = "/api/admin/deposits", tag = "admins", security(("bearer" = [])),
    params(DepositQuery),
    responses(
        (status = 200, description = "Every buyer's deposits, newest first (status=mismatch: those waiting for an admin)", body = Page<AdminDepositView>),
        (status = 400, description = "A bad cursor, limit or status", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn admin_deposits(
    state: web::Data<AppState>,
    _admin: Admin,
    q: web::Query<DepositQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, has_more) = state
        .engine
        .deposits(
            None,
            q.status.as_deref(),
            parse_cursor(q.cursor.as_deref())?,
            page_limit(q.limit)?,
        )
        .await?;
    Ok(HttpResponse::Ok().json(Page::of(
        &rows,
        has_more,
        |d| d.seq,
        |d| AdminDepositView {
            buyer_id: d.buyer_id.clone(),
            deposit: DepositView::from(d),
        },
    )))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// Why the paid amount is credited (kept in the audit log).
    #[schema(min_length = 1, max_length = 2000, pattern = "\\S")]
    note: String,
}

#[utoipa::path(post, path = "/api/admin/deposits/{id}/resolve", tag = "admins", security(("bearer" = [])),
    params(("id" = String, Path, description = "The deposit")),
    request_body = ResolveBody,
    responses(
        (status = 200, description = "The paid amount is credited (external:stripe → buyer, no bonus); the deposit is completed, audit-logged", body = AdminDepositView),
        (status = 400, description = "A bad note", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
        (status = 404, description = "No such deposit", body = ErrorEnvelope),
        (status = 409, description = "Not a mismatch deposit (or already resolved)", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn resolve_deposit(
    state: web::Data<AppState>,
    admin: Admin,
    origin: Origin,
    id: web::Path<String>,
    body: body::Json<ResolveBody>,
) -> Result<HttpResponse, ApiError> {
    let d = state
        .engine
        .resolve_deposit(&id, &origin.actor(admin.id()), &body.note)
        .await?;
    Ok(HttpResponse::Ok().json(AdminDepositView {
        buyer_id: d.buyer_id.clone(),
        deposit: DepositView::from(&d),
    }))
}

// ---------- money out ----------

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindEmailBody {
    #[schema(max_length = 254)]
    email: String,
}

#[derive(Serialize, ToSchema)]
pub struct CodeSent {
    email: String,
    /// Where the code went: `smtp`, or `outbox` (the server log and `GET /api/admin/outbox`).
    sent_by: &'static str,
    expires_in_seconds: u64,
}

#[utoipa::path(post, path = "/api/worker/bind-email", tag = "money", security(("bearer" = [])),
    request_body = BindEmailBody,
    responses(
        (status = 202, description = "A 6-digit code is on its way (good for 15 minutes)", body = CodeSent),
        (status = 400, description = "Not an email address", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a worker's token", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
        (status = 429, description = "A code was sent less than a minute ago (Retry-After)", body = ErrorEnvelope),
        (status = 502, description = "MAIL_UNAVAILABLE: the SMTP server failed; nothing was kept, try again", body = ErrorEnvelope),
    ))]
pub(crate) async fn bind_email(
    state: web::Data<AppState>,
    who: Worker,
    body: body::Json<BindEmailBody>,
) -> Result<HttpResponse, ApiError> {
    let (email, sent_by) = state
        .engine
        .bind_email(&who.worker_id(), &body.email)
        .await?;
    Ok(HttpResponse::Accepted().json(CodeSent {
        email,
        sent_by,
        expires_in_seconds: (clawjobs_actors::rules::payout::CODE_TTL_MS / 1000) as u64,
    }))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailBody {
    #[schema(max_length = 254)]
    email: String,
    #[schema(pattern = "^[0-9]{6}$")]
    code: String,
}

/// A worker's verified email and payout address.
#[derive(Serialize, ToSchema)]
pub struct PayoutView {
    email: String,
    email_verified_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<PayoutMethod>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bound_at: Option<String>,
}

impl From<&PayoutBinding> for PayoutView {
    fn from(b: &PayoutBinding) -> Self {
        PayoutView {
            email: b.email.clone(),
            email_verified_at: rfc3339(b.email_verified_at_ms),
            method: b.method,
            address: b.address.clone(),
            bound_at: b.bound_at_ms.map(rfc3339),
        }
    }
}

#[utoipa::path(post, path = "/api/worker/verify-email", tag = "money", security(("bearer" = [])),
    request_body = VerifyEmailBody,
    responses(
        (status = 200, description = "The email is verified", body = PayoutView),
        (status = 400, description = "A wrong or expired code, or none was sent to this address", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a worker's token", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
        (status = 429, description = "5 wrong codes: this one is void; ask for a new one", body = ErrorEnvelope),
    ))]
pub(crate) async fn verify_email(
    state: web::Data<AppState>,
    who: Worker,
    body: body::Json<VerifyEmailBody>,
) -> Result<HttpResponse, ApiError> {
    let b = state
        .engine
        .verify_email(&who.worker_id(), &body.email, &body.code)
        .await?;
    Ok(HttpResponse::Ok().json(PayoutView::from(&b)))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindPayoutBody {
    method: PayoutMethod,
    /// PayPal: an email address; Solana: the base58 of a 32-byte public key.
    #[schema(min_length = 1, max_length = 254)]
    address: String,
}

#[utoipa::path(post, path = "/api/worker/bind-payout", tag = "money", security(("bearer" = [])),
    request_body = BindPayoutBody,
    responses(
        (status = 200, description = "Withdrawals go to this address from now on", body = PayoutView),
        (status = 400, description = "Not an address of this method", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a worker's token", body = ErrorEnvelope),
        (status = 409, description = "EMAIL_NOT_VERIFIED: verify an email first", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn bind_payout(
    state: web::Data<AppState>,
    who: Worker,
    body: body::Json<BindPayoutBody>,
) -> Result<HttpResponse, ApiError> {
    let b = state
        .engine
        .bind_payout(&who.worker_id(), body.method.as_str(), &body.address)
        .await?;
    Ok(HttpResponse::Ok().json(PayoutView::from(&b)))
}

#[utoipa::path(get, path = "/api/worker/payout", tag = "money", security(("bearer" = [])),
    responses(
        (status = 200, description = "The worker's verified email and payout address", body = PayoutView),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a worker's token", body = ErrorEnvelope),
        (status = 404, description = "No email verified yet", body = ErrorEnvelope),
    ))]
pub(crate) async fn payout(
    state: web::Data<AppState>,
    who: Worker,
) -> Result<HttpResponse, ApiError> {
    match state.engine.payout_binding(&who.worker_id()).await? {
        Some(b) => Ok(HttpResponse::Ok().json(PayoutView::from(&b))),
        None => Err(ApiError::not_found("no email is verified yet")),
    }
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawBody {
    /// At least `rate_limits.withdrawal.min_cents` (the document gives the live minimum).
    #[schema(minimum = 1, maximum = 10_000_000)]
    amount_cents: i64,
}

#[derive(Serialize, ToSchema)]
pub struct WithdrawalView {
    withdrawal_id: String,
    status: WithdrawalStatus,
    amount_cents: i64,
    /// The available balance right after the request.
    available_after_cents: i64,
    method: String,
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    settled_at: Option<String>,
}

impl From<&WithdrawalRecord> for WithdrawalView {
    fn from(w: &WithdrawalRecord) -> Self {
        WithdrawalView {
            withdrawal_id: w.withdrawal_id.clone(),
            status: w.status,
            amount_cents: w.amount_cents,
            available_after_cents: w.available_after_cents,
            method: w.method.clone(),
            address: w.address.clone(),
            external_ref: w.external_ref.clone(),
            reason: w.reason.clone(),
            created_at: rfc3339(w.created_at_ms),
            settled_at: w.settled_at_ms.map(rfc3339),
        }
    }
}

/// A withdrawal with its worker, for admins.
#[derive(Serialize, ToSchema)]
pub struct AdminWithdrawalView {
    worker_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    settled_by: Option<String>,
    #[serde(flatten)]
    withdrawal: WithdrawalView,
}

impl From<&WithdrawalRecord> for AdminWithdrawalView {
    fn from(w: &WithdrawalRecord) -> Self {
        AdminWithdrawalView {
            worker_id: w.worker_id.clone(),
            settled_by: w.settled_by.clone(),
            withdrawal: WithdrawalView::from(w),
        }
    }
}

#[utoipa::path(post, path = "/api/withdraw", tag = "money", security(("bearer" = [])),
    params(super::IdempotencyKey),
    request_body = WithdrawBody,
    responses(
        (status = 201, description = "Out of the available balance, into platform:payouts_pending until an admin pays it", body = WithdrawalView),
        (status = 400, description = "Below the minimum", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 402, description = "Not that much available (frozen money cannot be withdrawn)", body = ErrorEnvelope),
        (status = 403, description = "Not a worker's token, or a banned (BANNED) or balance-frozen worker", body = ErrorEnvelope),
        (status = 409, description = "PAYOUT_NOT_BOUND, or this Idempotency-Key came with another body", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
        (status = 429, description = "WITHDRAWAL_LIMIT: over the daily maximum", body = ErrorEnvelope),
    ))]
pub(crate) async fn withdraw(
    state: web::Data<AppState>,
    who: Worker,
    origin: Origin,
    req: HttpRequest,
    body: body::Json<WithdrawBody>,
) -> Result<HttpResponse, ApiError> {
    let idem = idempotency(&req, who.id(), "withdraw", &*body)?;
    let w = state
        .engine
        .withdraw(&origin.actor(who.id()), body.amount_cents, idem)
        .await?;
    Ok(HttpResponse::Created().json(WithdrawalView::from(&w)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WithdrawalQuery {
    /// The `cursor` of the page before.
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Only withdrawals in this status.
    #[param(pattern = "^(pending|completed|rejected)$")]
    status: Option<String>,
}

#[utoipa::path(get, path = "/api/withdrawals", tag = "money", security(("bearer" = [])),
    params(WithdrawalQuery),
    responses(
        (status = 200, description = "The worker's withdrawals, newest first", body = Page<WithdrawalView>),
        (status = 400, description = "A bad cursor, limit or status", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a worker's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn withdrawals(
    state: web::Data<AppState>,
    who: Worker,
    q: web::Query<WithdrawalQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, has_more) = state
        .engine
        .withdrawals(
            Some(&who.worker_id()),
            q.status.as_deref(),
            parse_cursor(q.cursor.as_deref())?,
            page_limit(q.limit)?,
        )
        .await?;
    Ok(HttpResponse::Ok().json(Page::of(
        &rows,
        has_more,
        |w| w.seq,
        |w| WithdrawalView::from(w),
    )))
}

#[utoipa::path(get, path = "/api/admin/withdrawals", tag = "admins", security(("bearer" = [])),
    params(WithdrawalQuery),
    responses(
        (status = 200, description = "Every worker's withdrawals, newest first (status=pending: those to pay out)", body = Page<AdminWithdrawalView>),
        (status = 400, description = "A bad cursor, limit or status", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn admin_withdrawals(
    state: web::Data<AppState>,
    _admin: Admin,
    q: web::Query<WithdrawalQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, has_more) = state
        .engine
        .withdrawals(
            None,
            q.status.as_deref(),
            parse_cursor(q.cursor.as_deref())?,
            page_limit(q.limit)?,
        )
        .await?;
    Ok(HttpResponse::Ok().json(Page::of(
        &rows,
        has_more,
        |w| w.seq,
        |w| AdminWithdrawalView::from(w),
    )))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    /// The payment's reference (a PayPal transaction id, a Solana signature…).
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    external_ref: String,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    /// Why (kept in the audit log and shown to the worker).
    #[schema(min_length = 1, max_length = 2000, pattern = "\\S")]
    reason: String,
}

#[utoipa::path(post, path = "/api/admin/withdrawals/{id}/complete", tag = "admins", security(("bearer" = [])),
    params(("id" = String, Path, description = "The withdrawal"), super::IdempotencyKey),
    request_body = CompleteBody,
    responses(
        (status = 200, description = "Paid out: payouts pending → external:payouts, audit-logged", body = AdminWithdrawalView),
        (status = 400, description = "A bad reference", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
        (status = 404, description = "No such withdrawal", body = ErrorEnvelope),
        (status = 409, description = "Already completed or rejected, or the Idempotency-Key came with another body", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn complete_withdrawal(
    state: web::Data<AppState>,
    admin: Admin,
    origin: Origin,
    id: web::Path<String>,
    req: HttpRequest,
    body: body::Json<CompleteBody>,
) -> Result<HttpResponse, ApiError> {
    let idem = idempotency(
        &req,
        admin.id(),
        &format!("withdrawal_complete:{id}"),
        &*body,
    )?;
    let settle = Settle::Complete {
        external_ref: body.into_inner().external_ref,
    };
    let w = state
        .engine
        .settle_withdrawal(&id, settle, &origin.actor(admin.id()), idem)
        .await?;
    Ok(HttpResponse::Ok().json(AdminWithdrawalView::from(&w)))
}

#[utoipa::path(post, path = "/api/admin/withdrawals/{id}/reject", tag = "admins", security(("bearer" = [])),
    params(("id" = String, Path, description = "The withdrawal"), super::IdempotencyKey),
    request_body = RejectBody,
    responses(
        (status = 200, description = "Rejected: the money is back in the worker's available balance, audit-logged", body = AdminWithdrawalView),
        (status = 400, description = "A bad reason", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
        (status = 404, description = "No such withdrawal", body = ErrorEnvelope),
        (status = 409, description = "Already completed or rejected, or the Idempotency-Key came with another body", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn reject_withdrawal(
    state: web::Data<AppState>,
    admin: Admin,
    origin: Origin,
    id: web::Path<String>,
    req: HttpRequest,
    body: body::Json<RejectBody>,
) -> Result<HttpResponse, ApiError> {
    let idem = idempotency(&req, admin.id(), &format!("withdrawal_reject:{id}"), &*body)?;
    let settle = Settle::Reject {
        reason: body.into_inner().reason,
    };
    let w = state
        .engine
        .settle_withdrawal(&id, settle, &origin.actor(admin.id()), idem)
        .await?;
    Ok(HttpResponse::Ok().json(AdminWithdrawalView::from(&w)))
}

#[derive(Serialize, ToSchema)]
pub struct OutboxView {
    to: String,
    subject: String,
    body: String,
    created_at: String,
}

#[utoipa::path(get, path = "/api/admin/outbox", tag = "admins", security(("bearer" = [])),
    params(super::buyer::PageQuery),
    responses(
        (status = 200, description = "Mail the server kept instead of sending (no SMTP configured), newest first", body = Page<OutboxView>),
        (status = 400, description = "A bad cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn admin_outbox(
    state: web::Data<AppState>,
    _admin: Admin,
    q: web::Query<super::buyer::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, has_more) = state
        .engine
        .outbox(parse_cursor(q.cursor.as_deref())?, page_limit(q.limit)?)
        .await?;
    Ok(HttpResponse::Ok().json(Page::of(
        &rows,
        has_more,
        |m: &OutboxMessage| m.seq,
        |m| OutboxView {
            to: m.to.clone(),
            subject: m.subject.clone(),
            body: m.body.clone(),
            created_at: rfc3339(m.created_at_ms),
        },
    )))
}

// ---------- referrals ----------

#[derive(Serialize, ToSchema)]
pub struct ReferralView {
    /// Give it to new buyers (`POST /api/auth/register`) and workers (`POST /api/worker/connect`)
    /// as `referral_code`.
    code: String,
    link: String,
    referred_buyers: u64,
    referred_workers: u64,
    /// Shares of referred workers' tasks paid to this account so far.
    earned_cents: i64,
}

#[utoipa::path(get, path = "/api/referral", tag = "money", security(("bearer" = [])),
    responses(
        (status = 200, description = "This account's referral code (made on the first ask) and what it brought", body = ReferralView),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer's or a worker's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn referral(
    state: web::Data<AppState>,
    who: Account,
) -> Result<HttpResponse, ApiError> {
    let r = state.engine.referral(who.id()).await?;
    Ok(HttpResponse::Ok().json(ReferralView {
        code: r.stats.code,
        link: r.link,
        referred_buyers: r.stats.referred_buyers,
        referred_workers: r.stats.referred_workers,
        earned_cents: r.stats.earned_cents,
    }))
}
