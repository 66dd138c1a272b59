//! Money in: deposit options, Checkout Sessions, Stripe's webhook, deposit lists.

use actix_web::{HttpRequest, HttpResponse, web};
use clawjobs_actors::clock::rfc3339;
use clawjobs_actors::rules::deposit::DepositStatus;
use clawjobs_actors::store::DepositRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{idempotency, page_limit, parse_cursor, resource};
use crate::auth::{Admin, Buyer};
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
        .service(resource("/api/admin/deposits", "GET").route(web::get().to(admin_deposits)));
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
