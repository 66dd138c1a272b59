//! The OpenAPI document served at `/api/openapi.json`, generated from the handlers and the very
//! types they read and write (utoipa), so it cannot drift from the server. What depends on the
//! live platform config — which task types are priced, what each type's price rule reads from
//! its input, the task timeout bounds — is filled in from that config when the document is
//! served, so a client (or a fuzzer) is told exactly what this server accepts now.

use clawjobs_actors::config::{MAX_PRICE_CENTS, PlatformConfig, PriceRule};
use clawjobs_actors::domain::TaskType;
use serde_json::{Map, Value, json};
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use crate::error::ErrorCode;
use crate::routes::{
    admin, bounty, buyer, console, feed, money, notifications, ops, submissions, webhooks, worker,
    ws,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "clawjobs",
        description = "Real-time marketplace for AI task work. Every error is \
            {\"error\": {\"code\", \"message\", \"details\"}}; a method a path does not serve is 405 \
            with Allow; request bodies refuse fields they do not know. See docs/API.md."
    ),
    paths(
        buyer::register, buyer::login, buyer::balance, buyer::estimate, buyer::post_task,
        buyer::get_task, buyer::credit, buyer::list_tasks,
        worker::connect, worker::next, worker::submit, worker::profile, worker::me, worker::earnings,
        admin::get_config, admin::put_config, admin::config_history, admin::rollback_config, admin::credit, admin::audit, admin::audit_log, admin::verify_audit_log, admin::qa_results,
        admin::qa_stats, admin::qa_inject,
        money::deposit_options, money::deposit, money::webhook, money::deposits,
        money::admin_deposits, money::resolve_deposit, money::bind_email, money::verify_email, money::bind_payout,
        money::payout, money::withdraw, money::withdrawals, money::admin_withdrawals,
        money::complete_withdrawal, money::reject_withdrawal, money::admin_outbox, money::referral,
        bounty::post, bounty::list, bounty::get, bounty::cancel, bounty::events,
        submissions::submit, submissions::list, submissions::approve, submissions::reject,
        submissions::dispute, submissions::disputes, submissions::resolve, submissions::vote,
        submissions::vote_requests,
        console::actors, console::actor, console::timeline, console::jobs, console::run_job,
        console::invariants, console::live,
        feed::public_feed, feed::buyer_events, feed::user_events, ws::connect,
        notifications::list, notifications::read,
        webhooks::create, webhooks::list, webhooks::get, webhooks::delete, webhooks::deliveries,
        webhooks::retry,
        ops::health, ops::ready, ops::metrics, ops::openapi,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "buyers"), (name = "workers"), (name = "admins"), (name = "money"), (name = "realtime"),
        (name = "operations"), (name = "console"), (name = "bounties"), (name = "webhooks"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Bodies that carry a task type and its input.
const TASK_BODIES: [&str; 3] = ["EstimateBody", "PostTaskBody", "InjectBody"];

/// The document for the config in force.
pub fn document(cfg: &PlatformConfig) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    let schemas = &mut doc["components"]["schemas"];
    for name in TASK_BODIES {
        if let Some(body) = schemas.get_mut(name) {
            *body = by_task_type(body, cfg);
        }
    }
    let code = &mut schemas["ErrorBody"]["properties"]["code"];
    if code.is_object() {
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        code["enum"] = json!(codes);
    }
    for body in ["RegisterBody", "BindEmailBody", "VerifyEmailBody"] {
        let email = &mut schemas[body]["properties"]["email"];
        if email.is_object() {
            email["pattern"] = json!(clawjobs_actors::domain::EMAIL_PATTERN);
        }
    }
    let withdraw = &mut schemas["WithdrawBody"]["properties"]["amount_cents"];
    if withdraw.is_object() {
        withdraw["minimum"] = json!(cfg.rate_limits.withdrawal.min_cents.max(1));
    }
    let amount = &mut schemas["DepositBody"]["properties"]["amount_cents"];
    if amount.is_object() {
        amount["enum"] = json!(cfg.deposit_tiers_cents);
    }
    let bounty = &mut schemas["PostBountyBody"]["properties"];
    if bounty["reward_cents"].is_object() {
        bounty["reward_cents"]["minimum"] = json!(cfg.bounty.min_reward_cents);
        bounty["reward_cents"]["maximum"] = json!(cfg.bounty.max_reward_cents);
    }
    if bounty["max_submissions"].is_object() {
        bounty["max_submissions"]["maximum"] = json!(cfg.bounty.max_submissions);
    }
    let timeout = &mut schemas["ConstraintsBody"]["properties"]["timeout_seconds"];
    if timeout.is_object() {
        timeout["minimum"] = json!(cfg.dispatch.min_timeout_seconds);
        timeout["maximum"] = json!(cfg.dispatch.max_timeout_seconds);
    }
    // Any call that reads or writes the store may meet a shared database that is away.
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut().filter(|(p, _)| p.starts_with("/api/")) {
            let Some(ops) = item.as_object_mut() else {
                continue;
            };
            for op in ops.values_mut() {
                if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut)
                    && !responses.contains_key("503")
                    && path != "/api/health"
                {
                    responses.insert(
                        "503".into(),
                        json!({
                            "description": "UNAVAILABLE: the database cannot be reached right now; \
                                nothing changed, retry after Retry-After",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
                        }),
                    );
                }
            }
        }
    }
    doc
}

/// `body` once per priced task type, each with the input its price rule accepts: the server
/// refuses an unpriced type, and an input its type's rule cannot read, with 400.
fn by_task_type(body: &Value, cfg: &PlatformConfig) -> Value {
    let mut variants: Vec<Value> = cfg
        .pricing
        .iter()
        .filter(|(name, _)| TaskType::parse(name).is_ok())
        .map(|(name, rule)| variant(body, json!({ "type": "string", "enum": [name] }), rule))
        .collect();
    // `skill:NAME` falls back to the `skill` rule.
    if let Some(rule) = cfg.pricing.get("skill") {
        let skill_name = json!({
            "type": "string",
            "pattern": format!("^skill:[a-z0-9_-]{{1,{}}}$", TaskType::MAX_LEN - "skill:".len()),
        });
        variants.push(variant(body, skill_name, rule));
    }
    let mut out = Map::new();
    if let Some(d) = body.get("description") {
        out.insert("description".into(), d.clone());
    }
    out.insert("anyOf".into(), Value::Array(variants));
    Value::Object(out)
}

fn variant(body: &Value, task_type: Value, rule: &PriceRule) -> Value {
    let mut v = body.clone();
    v["properties"]["type"] = task_type;
    let input = &mut v["properties"]["input"];
    *input = json!({ "type": "object" });
    if rule.multi_turn.is_some() {
        // The number of user messages picks the price; a missing list counts as one turn.
        input["properties"] = json!({ "messages": { "type": ["array", "null"] } });
    } else if rule.per_segment {
        // The price is base × segments, and no price is above MAX_PRICE_CENTS.
        let most = (MAX_PRICE_CENTS / rule.base_cents.max(1)).max(1);
        input["properties"] = json!({
            "segments": { "type": ["array", "null"], "minItems": 1, "maxItems": most }
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_but_liveness_documents_unavailable() {
        let doc = document(&PlatformConfig::builtin());
        let paths = doc["paths"].as_object().unwrap();
        for (path, item) in paths.iter().filter(|(p, _)| p.starts_with("/api/")) {
            for (method, op) in item.as_object().unwrap() {
                let has = op["responses"].get("503").is_some();
                assert_eq!(has, path != "/api/health", "{method} {path}");
            }
        }
    }

    #[test]
    fn task_bodies_follow_the_pricing_config() {
        let cfg = PlatformConfig::builtin();
        let doc = document(&cfg);
        let post = &doc["components"]["schemas"]["PostTaskBody"]["anyOf"];
        let types: Vec<&Value> = post
            .as_array()
            .unwrap()
            .iter()
            .map(|v| &v["properties"]["type"])
            .collect();
        for name in cfg.pricing.keys() {
            assert!(types.iter().any(|t| t["enum"][0] == json!(name)), "{name}");
        }
        assert!(types.iter().any(|t| t["pattern"].is_string()), "skill:NAME");
        let chat = post
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["properties"]["type"]["enum"][0] == "chat")
            .unwrap();
        assert_eq!(chat["additionalProperties"], json!(false));
        assert!(chat["properties"]["input"]["properties"]["messages"].is_object());
        let timeout =
            &doc["components"]["schemas"]["ConstraintsBody"]["properties"]["timeout_seconds"];
        assert_eq!(timeout["maximum"], json!(cfg.dispatch.max_timeout_seconds));
    }

    /// Money bodies are told the live amounts: the deposit tiers and the withdrawal minimum.
    #[test]
    fn money_bodies_follow_the_live_config() {
        let mut cfg = PlatformConfig::builtin();
        cfg.deposit_tiers_cents = vec![700, 9_900];
        cfg.rate_limits.withdrawal.min_cents = 2_500;
        let doc = document(&cfg);
        let s = &doc["components"]["schemas"];
        assert_eq!(
            s["DepositBody"]["properties"]["amount_cents"]["enum"],
            json!([700, 9_900])
        );
        assert_eq!(
            s["WithdrawBody"]["properties"]["amount_cents"]["minimum"],
            json!(2_500)
        );
        for body in ["BindEmailBody", "VerifyEmailBody"] {
            assert!(
                s[body]["properties"]["email"]["pattern"].is_string(),
                "{body}"
            );
        }
        assert!(doc["paths"]["/api/deposit/webhook"]["post"].is_object());
    }

    /// The config paths name every document there is (utoipa takes the pattern as a literal).
    #[test]
    fn config_paths_name_every_document() {
        let doc = document(&PlatformConfig::builtin());
        let want = format!("^({})$", clawjobs_actors::config::KEYS.join("|"));
        let paths = doc["paths"].as_object().unwrap();
        let mut seen = 0;
        for (path, item) in paths.iter().filter(|(p, _)| p.contains("/config/{key}")) {
            for (method, op) in item.as_object().unwrap() {
                let key = op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == "key")
                    .unwrap();
                assert_eq!(key["schema"]["pattern"], json!(want), "{method} {path}");
                seen += 1;
            }
        }
        assert_eq!(seen, 4);
    }

    /// The job a console may run is any of the Supervisor's.
    #[test]
    fn the_run_path_names_every_job() {
        use clawjobs_actors::supervisor::Job;
        let doc = document(&PlatformConfig::builtin());
        let names: Vec<&str> = Job::ALL.iter().map(|j| j.name()).collect();
        let op = &doc["paths"]["/api/admin/supervisor/jobs/{name}/run"]["post"];
        assert_eq!(
            op["parameters"][0]["schema"]["pattern"],
            json!(format!("^({})$", names.join("|")))
        );
    }

    /// utoipa takes bounds as literals; they must be the engine's own (`limits`).
    #[test]
    fn declared_bounds_are_the_engine_s() {
        use clawjobs_actors::limits::*;
        let doc = document(&PlatformConfig::builtin());
        let s = &doc["components"]["schemas"];
        let prop = |schema: &str, field: &str| s[schema]["properties"][field].clone();
        assert_eq!(
            prop("TaskCreditBody", "reason")["maxLength"],
            json!(MAX_REASON_CHARS)
        );
        assert_eq!(
            prop("AdminCreditBody", "reason")["maxLength"],
            json!(MAX_REASON_CHARS)
        );
        assert_eq!(
            prop("AdminCreditBody", "amount_cents")["maximum"],
            json!(MAX_PRICE_CENTS)
        );
        assert_eq!(
            prop("ConnectBody", "worker_type")["maxLength"],
            json!(MAX_WORKER_TYPE_CHARS)
        );
        assert_eq!(
            prop("ConstraintsBody", "min_output_length")["maximum"],
            json!(MAX_MIN_OUTPUT_CHARS)
        );
        assert_eq!(
            prop("Limits", "concurrent")["maximum"],
            json!(MAX_CONCURRENT_TASKS)
        );
        assert_eq!(
            prop("Preferences", "accept")["maxItems"],
            json!(MAX_PROFILE_NAMES)
        );
        assert_eq!(
            prop("Preferences", "accept")["items"]["maxLength"],
            json!(MAX_PROFILE_NAME_CHARS)
        );
        assert_eq!(
            prop("RegisterBody", "email")["maxLength"],
            json!(MAX_EMAIL_CHARS)
        );
        assert_eq!(
            prop("RegisterBody", "password")["minLength"],
            json!(PASSWORD_CHARS.start())
        );
        assert_eq!(
            prop("RegisterBody", "password")["maxLength"],
            json!(PASSWORD_CHARS.end())
        );
        for (path, method) in [("/api/tasks", "get"), ("/api/admin/qa/results", "get")] {
            let params = doc["paths"][path][method]["parameters"].as_array().unwrap();
            let limit = params.iter().find(|p| p["name"] == "limit").unwrap();
            assert_eq!(limit["schema"]["maximum"], json!(MAX_PAGE_ITEMS), "{path}");
        }
        let inject = &s["InjectBody"]["anyOf"][0]["properties"]["price_cents"];
        assert_eq!(inject["maximum"], json!(MAX_PRICE_CENTS));
    }
}
