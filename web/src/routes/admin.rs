//! Admins: the platform config, manual credits, the ledger audit, invisible QA.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use clawjobs_actors::clock::rfc3339;
use clawjobs_actors::domain::UserId;
use clawjobs_actors::ledger::AuditReport;
use clawjobs_actors::qa::comparator::Inject;
use clawjobs_actors::store::{AuditEntry, ChainReport, QaResult, StoredConfig, VerdictCounts};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::{idempotency, page_limit, parse_cursor, resource};
use crate::auth::{Admin, Origin};
use crate::error::{ApiError, ErrorEnvelope};
use crate::views::Page;
use crate::{AppState, body};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/admin/config/{key}", "GET, PUT")
            .app_data(body::TASK_BYTES)
            .route(web::get().to(get_config))
            .route(web::put().to(put_config)),
    )
    .service(
        resource("/api/admin/config/{key}/history", "GET").route(web::get().to(config_history)),
    )
    .service(
        resource("/api/admin/config/{key}/rollback", "POST")
            .app_data(body::SMALL_BYTES)
            .route(web::post().to(rollback_config)),
    )
    .service(
        resource("/api/admin/credit", "POST")
            .app_data(body::SMALL_BYTES)
            .route(web::post().to(credit)),
    )
    .service(resource("/api/admin/ledger/audit", "GET").route(web::get().to(audit)))
    .service(resource("/api/admin/audit-log", "GET").route(web::get().to(audit_log)))
    .service(resource("/api/admin/audit-log/verify", "GET").route(web::get().to(verify_audit_log)))
    .service(resource("/api/admin/qa/results", "GET").route(web::get().to(qa_results)))
    .service(resource("/api/admin/qa/stats", "GET").route(web::get().to(qa_stats)))
    .service(
        resource("/api/admin/qa/inject", "POST")
            .app_data(body::OUTPUT_BYTES)
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

#[utoipa::path(get, path = "/api/admin/config/{key}", tag = "admins", security(("bearer" = [])),
    params(("key" = String, Path, description = "The document",
        pattern = "^(pricing|tiers|commissions|signup|qa|rate_limits|dispatch|bounty|webhooks|retention)$")),
    responses(
        (status = 200, description = "The document with its key, version, updated_at and updated_by", body = Object),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
        (status = 404, description = "No such document (the answer lists the real ones)", body = ErrorEnvelope),
    ))]
pub(crate) async fn get_config(
    state: web::Data<AppState>,
    _admin: Admin,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let c = state.engine.config_doc(&key).await?;
    Ok(HttpResponse::Ok().json(config_view(&key, &c)))
}

#[utoipa::path(put, path = "/api/admin/config/{key}", tag = "admins", security(("bearer" = [])),
    params(("key" = String, Path, description = "The document",
        pattern = "^(pricing|tiers|commissions|signup|qa|rate_limits|dispatch|bounty|webhooks|retention)$")),
    request_body(content = Object, description = "The whole document, as GET shows it. A `version` \
        in it must be the stored one (else 409); `key`, `updated_at` and `updated_by` are ignored. \
        The whole config must still hold together with it (checked across documents), else 400 \
        and nothing changes."),
    responses(
        (status = 200, description = "Stored, audit-logged and in force for the next request", body = Object),
        (status = 400, description = "Not a valid document, or the config would not hold together", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
        (status = 404, description = "No such document (the answer lists the real ones)", body = ErrorEnvelope),
        (status = 409, description = "The body's version is not the stored one", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn put_config(
    state: web::Data<AppState>,
    admin: Admin,
    origin: Origin,
    key: web::Path<String>,
    body: body::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut doc = body.into_inner();
    if let Some(obj) = doc.as_object_mut() {
        obj.remove("key");
    }
    let c = state
        .engine
        .put_config(&key, doc, &origin.actor(admin.id()))
        .await?;
    Ok(HttpResponse::Ok().json(config_view(&key, &c)))
}

#[utoipa::path(get, path = "/api/admin/config/{key}/history", tag = "admins", security(("bearer" = [])),
    params(("key" = String, Path, description = "The document",
        pattern = "^(pricing|tiers|commissions|signup|qa|rate_limits|dispatch|bounty|webhooks|retention)$")),
    responses(
        (status = 200, description = "`{\"key\", \"versions\": [...]}`: the versions, newest first, each as GET shows a document", body = Object),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
        (status = 404, description = "No such document", body = ErrorEnvelope),
    ))]
pub(crate) async fn config_history(
    state: web::Data<AppState>,
    _admin: Admin,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let versions = state.engine.config_history(&key).await?;
    let versions: Vec<Value> = versions.iter().map(|v| config_view(&key, v)).collect();
    Ok(HttpResponse::Ok().json(json!({ "key": key.as_str(), "versions": versions })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The version to put back (it becomes a new version).
    #[schema(minimum = 1)]
    version: i64,
}

#[utoipa::path(post, path = "/api/admin/config/{key}/rollback", tag = "admins", security(("bearer" = [])),
    params(("key" = String, Path, description = "The document",
        pattern = "^(pricing|tiers|commissions|signup|qa|rate_limits|dispatch|bounty|webhooks|retention)$")),
    request_body = RollbackBody,
    responses(
        (status = 200, description = "The old version is in force again, stored as a new version and audit-logged", body = Object),
        (status = 400, description = "The old version no longer fits the rest of the config", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
        (status = 404, description = "No such document or version", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn rollback_config(
    state: web::Data<AppState>,
    admin: Admin,
    origin: Origin,
    key: web::Path<String>,
    body: body::Json<RollbackBody>,
) -> Result<HttpResponse, ApiError> {
    let c = state
        .engine
        .rollback_config(&key, body.version, &origin.actor(admin.id()))
        .await?;
    Ok(HttpResponse::Ok().json(config_view(&key, &c)))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminCreditBody {
    user_id: String,
    #[schema(minimum = 1, maximum = 10_000_000)]
    amount_cents: i64,
    /// Why (kept in the audit log).
    #[schema(min_length = 1, max_length = 2000, pattern = "\\S")]
    reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct AdminCredited {
    user_id: String,
    amount_cents: i64,
    balance_after_cents: i64,
}

#[utoipa::path(post, path = "/api/admin/credit", tag = "admins", operation_id = "admin_credit", security(("bearer" = [])),
    params(super::IdempotencyKey),
    request_body = AdminCreditBody,
    responses(
        (status = 200, description = "Credited from platform:promotions, audit-logged", body = AdminCredited),
        (status = 400, description = "A bad amount or reason", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
        (status = 404, description = "No such user", body = ErrorEnvelope),
        (status = 409, description = "This Idempotency-Key came with another body", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn credit(
    state: web::Data<AppState>,
    admin: Admin,
    origin: Origin,
    req: HttpRequest,
    body: body::Json<AdminCreditBody>,
) -> Result<HttpResponse, ApiError> {
    let idem = idempotency(&req, admin.id(), "admin_credit", &*body)?;
    let c = state
        .engine
        .admin_credit(
            &UserId::from(body.user_id.as_str()),
            body.amount_cents,
            &body.reason,
            &origin.actor(admin.id()),
            idem,
        )
        .await?;
    Ok(HttpResponse::Ok().json(AdminCredited {
        user_id: c.user_id,
        amount_cents: c.amount_cents,
        balance_after_cents: c.balance_after_cents,
    }))
}

#[utoipa::path(get, path = "/api/admin/ledger/audit", tag = "admins", security(("bearer" = [])),
    responses(
        (status = 200, description = "The ledger's check of the money invariants", body = AuditReport),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn audit(
    state: web::Data<AppState>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.engine.audit().await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditLogQuery {
    /// Only entries of this action (`admin.credit`, `config.put`, `withdrawal.request`, …).
    #[param(pattern = "^[a-z_.]{0,64}$")]
    action: Option<String>,
    /// Only entries of this actor (a user id, or `qa`, `stripe`).
    #[param(max_length = 64)]
    actor_id: Option<String>,
    /// The `cursor` of the page before.
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/admin/audit-log", tag = "admins", security(("bearer" = [])),
    params(AuditLogQuery),
    responses(
        (status = 200, description = "Audit-log entries, newest first: admin actions, config changes, money moved outside the task loop, bans; each with its actor, ip, user agent, details and place in the hash chain", body = Page<AuditEntry>),
        (status = 400, description = "A bad action, actor, cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn audit_log(
    state: web::Data<AppState>,
    _admin: Admin,
    q: web::Query<AuditLogQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let before = parse_cursor(q.cursor.as_deref())?;
    let limit = page_limit(q.limit)?;
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let (rows, has_more) = state
        .engine
        .audit_log(nonempty(q.action), nonempty(q.actor_id), before, limit)
        .await?;
    let cursor = has_more
        .then(|| rows.last().map(|r| r.seq.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(Page {
        data: rows,
        cursor,
        has_more,
    }))
}

#[utoipa::path(get, path = "/api/admin/audit-log/verify", tag = "admins", security(("bearer" = [])),
    responses(
        (status = 200, description = "Whether every kept entry links to the one before it, from the anchor of pruned entries to the recorded head; if not, the first bad entry and why", body = ChainReport),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn verify_audit_log(
    state: web::Data<AppState>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.engine.verify_audit_log().await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QaResultsQuery {
    /// Only comparisons this worker took part in.
    worker_id: Option<String>,
    #[param(pattern = "^(pass|flag|fail)?$")]
    verdict: Option<String>,
    /// The `cursor` of the page before.
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/admin/qa/results", tag = "admins", security(("bearer" = [])),
    params(QaResultsQuery),
    responses(
        (status = 200, description = "Decided QA comparisons, newest first", body = Page<QaResult>),
        (status = 400, description = "A bad verdict, cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn qa_results(
    state: web::Data<AppState>,
    _admin: Admin,
    q: web::Query<QaResultsQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let before = parse_cursor(q.cursor.as_deref())?;
    let limit = page_limit(q.limit)?;
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let (rows, has_more) = state
        .engine
        .qa_results(nonempty(q.worker_id), nonempty(q.verdict), before, limit)
        .await?;
    let cursor = has_more
        .then(|| rows.last().map(|r| r.seq.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(Page {
        data: rows,
        cursor,
        has_more,
    }))
}

/// Verdict counts with their shares of the total (rounded to 4 decimals).
#[derive(Serialize, ToSchema)]
pub struct RatedCounts {
    total: u64,
    pass: u64,
    flag: u64,
    fail: u64,
    pass_rate: f64,
    flag_rate: f64,
    fail_rate: f64,
}

impl From<&VerdictCounts> for RatedCounts {
    fn from(c: &VerdictCounts) -> Self {
        let total = c.pass + c.flag + c.fail;
        let rate = |n: u64| {
            if total == 0 {
                0.0
            } else {
                (n as f64 / total as f64 * 10_000.0).round() / 10_000.0
            }
        };
        RatedCounts {
            total,
            pass: c.pass,
            flag: c.flag,
            fail: c.fail,
            pass_rate: rate(c.pass),
            flag_rate: rate(c.flag),
            fail_rate: rate(c.fail),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct QaStatsView {
    overall: RatedCounts,
    by_tier: BTreeMap<String, RatedCounts>,
    by_type: BTreeMap<String, RatedCounts>,
    /// Workers with flagged results waiting for review, most flags first.
    #[schema(value_type = Vec<Object>)]
    flagged_workers: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    banned_workers: Vec<Value>,
    /// Groups waiting for a side or the tie-breaker.
    waiting: u64,
    void: u64,
    /// Negative: what QA has cost so far, net of deductions.
    qa_fund_cents: i64,
}

#[utoipa::path(get, path = "/api/admin/qa/stats", tag = "admins", security(("bearer" = [])),
    responses(
        (status = 200, description = "QA verdicts overall, by tier and by type; flagged and banned workers; the QA fund", body = QaStatsView),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
    ))]
pub(crate) async fn qa_stats(
    state: web::Data<AppState>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let s = state.engine.qa_stats().await?;
    let by = |m: &BTreeMap<String, VerdictCounts>| {
        m.iter()
            .map(|(k, c)| (k.clone(), RatedCounts::from(c)))
            .collect()
    };
    Ok(HttpResponse::Ok().json(QaStatsView {
        overall: RatedCounts::from(&s.overall),
        by_tier: by(&s.by_tier),
        by_type: by(&s.by_type),
        flagged_workers: s.flagged_workers,
        banned_workers: s.banned_workers,
        waiting: s.waiting,
        void: s.void,
        qa_fund_cents: s.qa_fund_cents,
    }))
}

/// A benchmark: a task of a priced type with a known answer. The served document narrows `type`
/// and `input` as for `POST /api/task`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InjectBody {
    #[serde(rename = "type")]
    task_type: String,
    #[schema(value_type = Object)]
    input: serde_json::Map<String, Value>,
    #[schema(value_type = Object)]
    expected_output: serde_json::Map<String, Value>,
    /// Defaults to the type's price.
    #[schema(minimum = 1, maximum = 10_000_000)]
    price_cents: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Injected {
    task_id: String,
}

#[utoipa::path(post, path = "/api/admin/qa/inject", tag = "admins", security(("bearer" = [])),
    request_body = InjectBody,
    responses(
        (status = 201, description = "In the queue, paid by the QA fund", body = Injected),
        (status = 400, description = "Unknown type, bad input or price", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin's token", body = ErrorEnvelope),
        (status = 413, description = "Input or expected output too large", body = ErrorEnvelope),
    ))]
pub(crate) async fn qa_inject(
    state: web::Data<AppState>,
    _admin: Admin,
    body: body::Json<InjectBody>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let task_id = state
        .engine
        .inject_benchmark(Inject {
            task_type: b.task_type,
            input: Value::Object(b.input),
            expected_output: Value::Object(b.expected_output),
            price_cents: b.price_cents,
        })
        .await?;
    Ok(HttpResponse::Created().json(Injected { task_id }))
}
