//! Every user's notifications: listed newest first and marked read. They arrive live as
//! `notification` events on `GET /api/notifications/events` (and a buyer's `GET /api/tasks/events`)
//! and, for a worker, as `{"type": "notification", …}` WebSocket frames.

use actix_web::{HttpResponse, web};
use clawjobs_actors::store::NotificationRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{page_limit, parse_cursor, resource};
use crate::auth::Anyone;
use crate::error::{ApiError, ErrorEnvelope};
use crate::views::Page;
use crate::{AppState, body};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/notifications", "GET").route(web::get().to(list)))
        .service(
            resource("/api/notifications/read", "POST")
                .app_data(body::SMALL_BYTES)
                .route(web::post().to(read)),
        );
}

/// One notification (the same object a live `notification` event carries).
#[derive(Serialize, ToSchema)]
pub struct NotificationView {
    notification_id: String,
    /// What happened: `bounty.submission`, `submission.approved`, `submission.rejected`,
    /// `submission.closed`, `dispute.opened`, `dispute.resolved`, `auto_release_warning`,
    /// `bounty.completed` (approved automatically), `bounty.expired`.
    kind: String,
    /// The objects it is about, with their ids.
    #[schema(value_type = Object)]
    data: serde_json::Value,
    created_at: String,
    read: bool,
    read_at: Option<String>,
}

impl NotificationView {
    fn of(n: &NotificationRecord) -> NotificationView {
        NotificationView {
            notification_id: n.notification_id.clone(),
            kind: n.kind.clone(),
            data: n.data.clone(),
            created_at: clawjobs_actors::clock::rfc3339(n.created_at_ms),
            read: n.read_at_ms.is_some(),
            read_at: n.read_at_ms.map(clawjobs_actors::clock::rfc3339),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// Only those not yet marked read.
    unread: Option<bool>,
    /// The `cursor` of the page before.
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/notifications", tag = "realtime", security(("bearer" = [])),
    params(NotificationQuery),
    responses(
        (status = 200, description = "The caller's notifications, newest first", body = Page<NotificationView>),
        (status = 400, description = "A bad unread, cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
    ))]
pub(crate) async fn list(
    state: web::Data<AppState>,
    who: Anyone,
    q: web::Query<NotificationQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, has_more) = state
        .engine
        .notifications(
            &who.user_id(),
            q.unread.unwrap_or(false),
            parse_cursor(q.cursor.as_deref())?,
            page_limit(q.limit)?,
        )
        .await?;
    Ok(HttpResponse::Ok().json(Page::of(&rows, has_more, |n| n.seq, NotificationView::of)))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadBody {
    /// 1 to 100 of the caller's notification ids; others' and unknown ids change nothing.
    #[schema(min_items = 1, max_items = 100)]
    ids: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ReadView {
    /// How many of them were unread until now.
    marked: u64,
}

#[utoipa::path(post, path = "/api/notifications/read", tag = "realtime", security(("bearer" = [])),
    request_body = ReadBody,
    responses(
        (status = 200, description = "Marked read", body = ReadView),
        (status = 400, description = "No ids, or more than 100", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn read(
    state: web::Data<AppState>,
    who: Anyone,
    body: body::Json<ReadBody>,
) -> Result<HttpResponse, ApiError> {
    let marked = state.engine.mark_read(&who.user_id(), &body.ids).await?;
    Ok(HttpResponse::Ok().json(ReadView { marked }))
}
