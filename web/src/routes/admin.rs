//! Admins: the platform config, manual credits, the ledger audit.

use actix_web::{HttpRequest, HttpResponse, web};
use clawjobs_actors::clock::rfc3339;
use clawjobs_actors::store::StoredConfig;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::idempotency;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::{AppState, limits};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/admin/config/{key}")
            .app_data(limits::json(limits::TASK))
            .route(web::get().to(get_config))
            .route(web::put().to(put_config)),
    )
    .service(
        web::resource("/api/admin/credit")
            .app_data(limits::json(limits::SMALL))
            .route(web::post().to(credit)),
    )
    .service(web::resource("/api/admin/ledger/audit").route(web::get().to(audit)));
}

fn config_view(key: &str, c: &StoredConfig) -> Value {
    let mut doc = c.doc.clone();
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("key".into(), json!(key));
        obj.insert("version".into(), json!(c.version));
        obj.insert("updated_at".into(), json!(rfc3339(c.updated_at_ms)));
        obj.insert("updated_by".into(), json!(c.updated_by));
    }
    doc
}

async fn get_config(
    state: web::Data<AppState>,
    _admin: Admin,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let c = state.engine.config_doc(&key).await?;
    Ok(HttpResponse::Ok().json(config_view(&key, &c)))
}

async fn put_config(
    state: web::Data<AppState>,
    admin: Admin,
    key: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut doc = body.into_inner();
    if let Some(obj) = doc.as_object_mut() {
        obj.remove("key");
    }
    let c = state.engine.put_config(&key, doc, admin.id()).await?;
    Ok(HttpResponse::Ok().json(config_view(&key, &c)))
}

#[derive(Deserialize, Serialize)]
struct CreditBody {
    user_id: String,
    amount_cents: i64,
    reason: String,
}

async fn credit(
    state: web::Data<AppState>,
    admin: Admin,
    req: HttpRequest,
    body: web::Json<CreditBody>,
) -> Result<HttpResponse, ApiError> {
    let idem = idempotency(&req, admin.id(), "admin_credit", &*body)?;
    let c = state
        .engine
        .admin_credit(
            &body.user_id,
            body.amount_cents,
            &body.reason,
            admin.id(),
            idem,
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "user_id": c.user_id, "amount_cents": c.amount_cents, "balance_after_cents": c.balance_after_cents,
    })))
}

async fn audit(state: web::Data<AppState>, _admin: Admin) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.engine.audit().await?))
}
