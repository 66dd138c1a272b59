//! Admins: the platform config, manual credits, the ledger audit, invisible QA.

use actix_web::{HttpRequest, HttpResponse, web};
use clawjobs_actors::clock::rfc3339;
use clawjobs_actors::qa::comparator::Inject;
use clawjobs_actors::store::{StoredConfig, VerdictCounts};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{idempotency, resource};
use crate::auth::Admin;
use crate::error::ApiError;
use crate::{AppState, limits};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/admin/config/{key}", "GET, PUT")
            .app_data(limits::json(limits::TASK))
            .route(web::get().to(get_config))
            .route(web::put().to(put_config)),
    )
    .service(
        resource("/api/admin/credit", "POST")
            .app_data(limits::json(limits::SMALL))
            .route(web::post().to(credit)),
    )
    .service(resource("/api/admin/ledger/audit", "GET").route(web::get().to(audit)))
    .service(resource("/api/admin/qa/results", "GET").route(web::get().to(qa_results)))
    .service(resource("/api/admin/qa/stats", "GET").route(web::get().to(qa_stats)))
    .service(
        resource("/api/admin/qa/inject", "POST")
            .app_data(limits::json(limits::OUTPUT))
            .route(web::post().to(qa_inject)),
    );
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
#[serde(deny_unknown_fields)]
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

#[derive(Deserialize)]
struct QaResultsQuery {
    worker_id: Option<String>,
    verdict: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

async fn qa_results(
    state: web::Data<AppState>,
    _admin: Admin,
    q: web::Query<QaResultsQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let before = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| ApiError::validation("cursor is not one this server gave out"))?,
        ),
    };
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let (rows, has_more) = state
        .engine
        .qa_results(
            nonempty(q.worker_id),
            nonempty(q.verdict),
            before,
            q.limit.unwrap_or(20),
        )
        .await?;
    let cursor = if has_more {
        rows.last().map(|r| r.seq.to_string())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(json!({ "data": rows, "cursor": cursor, "has_more": has_more })))
}

async fn qa_stats(state: web::Data<AppState>, _admin: Admin) -> Result<HttpResponse, ApiError> {
    let s = state.engine.qa_stats().await?;
    let with_rates = |c: &VerdictCounts| {
        let total = c.pass + c.flag + c.fail;
        let rate = |n: u64| {
            if total == 0 {
                0.0
            } else {
                (n as f64 / total as f64 * 10_000.0).round() / 10_000.0
            }
        };
        json!({
            "total": total, "pass": c.pass, "flag": c.flag, "fail": c.fail,
            "pass_rate": rate(c.pass), "flag_rate": rate(c.flag), "fail_rate": rate(c.fail),
        })
    };
    let by = |m: &std::collections::BTreeMap<String, VerdictCounts>| -> Value {
        m.iter().map(|(k, c)| (k.clone(), with_rates(c))).collect()
    };
    Ok(HttpResponse::Ok().json(json!({
        "overall": with_rates(&s.overall),
        "by_tier": by(&s.by_tier),
        "by_type": by(&s.by_type),
        "flagged_workers": s.flagged_workers,
        "banned_workers": s.banned_workers,
        "waiting": s.waiting,
        "void": s.void,
        "qa_fund_cents": s.qa_fund_cents,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectBody {
    #[serde(rename = "type")]
    task_type: String,
    input: Value,
    expected_output: Value,
    price_cents: Option<i64>,
}

async fn qa_inject(
    state: web::Data<AppState>,
    _admin: Admin,
    body: web::Json<InjectBody>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let task_id = state
        .engine
        .inject_benchmark(Inject {
            task_type: b.task_type,
            input: b.input,
            expected_output: b.expected_output,
            price_cents: b.price_cents,
        })
        .await?;
    Ok(HttpResponse::Created().json(json!({ "task_id": task_id })))
}
