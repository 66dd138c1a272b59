//! Buyer webhooks: register an endpoint (its signing secret is in the answer, once), list and
//! delete them, read an endpoint's deliveries (the dead-letter list is `?status=dead`) and send
//! one again.

use actix_web::{HttpResponse, web};
use clawjobs_actors::EngineError;
use clawjobs_actors::clock::rfc3339;
use clawjobs_actors::rules::webhook::EVENTS;
use clawjobs_actors::store::{DeliveryRecord, DeliveryStatus, WebhookRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{page_limit, parse_cursor, resource};
use crate::auth::Buyer;
use crate::error::{ApiError, ErrorEnvelope};
use crate::views::Page;
use crate::{AppState, body};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/webhooks", "GET, POST")
            .app_data(body::SMALL_BYTES)
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        resource("/api/webhooks/{id}", "GET, DELETE")
            .route(web::get().to(get))
            .route(web::delete().to(delete)),
    )
    .service(resource("/api/webhooks/{id}/deliveries", "GET").route(web::get().to(deliveries)))
    .service(
        resource("/api/webhooks/{id}/deliveries/{did}/retry", "POST")
            .app_data(body::SMALL_BYTES)
            .route(web::post().to(retry)),
    );
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// Where events are POSTed: `https://…` on a public address.
    #[schema(min_length = 1, max_length = 2048)]
    url: String,
    /// The event types it receives (at least one): `task.completed`, `task.failed`,
    /// `task.credited`, `deposit.completed`, `bounty.submission`, `bounty.completed`,
    /// `bounty.expired`, `dispute.opened`, `dispute.resolved`.
    #[schema(min_items = 1, max_items = 9)]
    events: Vec<String>,
}

/// A registered endpoint. `secret` is shown only in the answer to its registration.
#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    webhook_id: String,
    url: String,
    events: Vec<String>,
    created_at: String,
    /// The signing secret: `Clawjobs-Signature: t=…,v1=…` is HMAC-SHA256 with it over
    /// `"{t}.{body}"`. Only in the registration's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl WebhookView {
    fn of(w: &WebhookRecord, with_secret: bool) -> WebhookView {
        WebhookView {
            webhook_id: w.webhook_id.clone(),
            url: w.url.clone(),
            events: w.events.clone(),
            created_at: rfc3339(w.created_at_ms),
            secret: with_secret.then(|| w.secret.clone()),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    data: Vec<WebhookView>,
    /// Every event type there is.
    events: Vec<&'static str>,
}

/// One event bound for one endpoint, and how its attempts went.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    delivery_id: String,
    webhook_id: String,
    /// The event's id (the body's `id`; the same for each of the buyer's endpoints).
    event_id: String,
    #[serde(rename = "type")]
    event_type: String,
    status: DeliveryStatus,
    attempts: u32,
    /// While pending: when it is tried next.
    next_attempt_at: Option<String>,
    last_attempt_at: Option<String>,
    /// The endpoint's HTTP status on the last attempt, if it answered.
    last_status: Option<u16>,
    last_error: Option<String>,
    created_at: String,
    delivered_at: Option<String>,
    /// The exact body sent (what the signature covers).
    body: String,
}

impl DeliveryView {
    fn of(d: &DeliveryRecord) -> DeliveryView {
        DeliveryView {
            delivery_id: d.delivery_id.clone(),
            webhook_id: d.webhook_id.clone(),
            event_id: d.event_id.clone(),
            event_type: d.event_type.clone(),
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: (d.status == DeliveryStatus::Pending)
                .then_some(d.next_at_ms)
                .flatten()
                .map(rfc3339),
            last_attempt_at: d.last_attempt_at_ms.map(rfc3339),
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            created_at: rfc3339(d.created_at_ms),
            delivered_at: d.delivered_at_ms.map(rfc3339),
            body: d.body.clone(),
        }
    }
}

#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks", security(("bearer" = [])),
    request_body = WebhookBody,
    responses(
        (status = 201, description = "Registered; the answer carries the signing secret, once", body = WebhookView),
        (status = 400, description = "A bad URL (https on a public address) or unknown events", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer", body = ErrorEnvelope),
        (status = 409, description = "config:webhooks.max_per_buyer reached", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn create(
    state: web::Data<AppState>,
    who: Buyer,
    body: body::Json<WebhookBody>,
) -> Result<HttpResponse, ApiError> {
    let w = state
        .engine
        .create_webhook(&who.user_id(), &body.url, &body.events)
        .await?;
    Ok(HttpResponse::Created().json(WebhookView::of(&w, true)))
}

#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's endpoints, oldest first", body = WebhookList),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer", body = ErrorEnvelope),
    ))]
pub(crate) async fn list(state: web::Data<AppState>, who: Buyer) -> Result<HttpResponse, ApiError> {
    let hooks = state.engine.webhooks(&who.user_id()).await?;
    Ok(HttpResponse::Ok().json(WebhookList {
        data: hooks.iter().map(|w| WebhookView::of(w, false)).collect(),
        events: EVENTS.to_vec(),
    }))
}

#[utoipa::path(get, path = "/api/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "The webhook")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookView),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer", body = ErrorEnvelope),
        (status = 404, description = "Not the caller's, or not there", body = ErrorEnvelope),
    ))]
pub(crate) async fn get(
    state: web::Data<AppState>,
    who: Buyer,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let w = state.engine.own_webhook(&who.user_id(), &id).await?;
    Ok(HttpResponse::Ok().json(WebhookView::of(&w, false)))
}

#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "The webhook")),
    responses(
        (status = 204, description = "Deleted; its undelivered deliveries are cancelled"),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer", body = ErrorEnvelope),
        (status = 404, description = "Not the caller's, or not there", body = ErrorEnvelope),
    ))]
pub(crate) async fn delete(
    state: web::Data<AppState>,
    who: Buyer,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.engine.delete_webhook(&who.user_id(), &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// `dead` for the dead-letter list.
    #[param(pattern = "^(pending|delivered|dead|cancelled)$")]
    status: Option<String>,
    /// The `cursor` of the page before.
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "The webhook"), DeliveryQuery),
    responses(
        (status = 200, description = "The endpoint's deliveries, newest first", body = Page<DeliveryView>),
        (status = 400, description = "A bad status, cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer", body = ErrorEnvelope),
        (status = 404, description = "Not the caller's, or not there", body = ErrorEnvelope),
    ))]
pub(crate) async fn deliveries(
    state: web::Data<AppState>,
    who: Buyer,
    id: web::Path<String>,
    q: web::Query<DeliveryQuery>,
) -> Result<HttpResponse, ApiError> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            EngineError::validation_field(
                "status",
                "status must be pending, delivered, dead or cancelled",
            )
        })?),
    };
    let (rows, has_more) = state
        .engine
        .deliveries(
            &who.user_id(),
            &id,
            status,
            parse_cursor(q.cursor.as_deref())?,
            page_limit(q.limit)?,
        )
        .await?;
    Ok(HttpResponse::Ok().json(Page::of(&rows, has_more, |d| d.seq, DeliveryView::of)))
}

#[utoipa::path(post, path = "/api/webhooks/{id}/deliveries/{did}/retry", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "The webhook"), ("did" = String, Path, description = "The delivery")),
    responses(
        (status = 200, description = "Due now, its attempts counted anew (a pending one as it is)", body = DeliveryView),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a buyer", body = ErrorEnvelope),
        (status = 404, description = "Not the caller's, or not there", body = ErrorEnvelope),
    ))]
pub(crate) async fn retry(
    state: web::Data<AppState>,
    who: Buyer,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, did) = path.into_inner();
    let d = state
        .engine
        .retry_delivery(&who.user_id(), &id, &did)
        .await?;
    Ok(HttpResponse::Ok().json(DeliveryView::of(&d)))
}
