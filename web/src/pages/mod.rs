//! The browser pages the binary serves itself: `/` (buyers), `/worker` (workers) and `/admin`
//! (the actor console). The HTML is rendered from askama templates (`web/templates/`, checked at
//! compile time); scripts and styles are files under `web/assets/`, embedded in the binary and
//! served from `/assets/`. No build step, no CDN.
//!
//! Every page and asset is sent with a Content-Security-Policy that lets the browser run only
//! this origin's scripts (no inline script, no `eval`) and connect only to this origin. The pages
//! keep tokens in the browser's storage and send them only in `Authorization` headers — never in
//! a URL, so they stay out of access logs, histories and referrers.

mod assets;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};
use askama::Template;
use clawjobs_actors::config::PlatformConfig;

use crate::AppState;
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(buyer))
        .route("/deposit/success", web::get().to(deposit_success))
        .route("/deposit/cancel", web::get().to(deposit_cancel))
        .route("/worker", web::get().to(worker))
        .route("/admin", web::get().to(admin))
        .route("/assets/{name}", web::get().to(assets::serve));
}

/// What every page and asset is sent with.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; \
                   frame-ancestors 'none'";

/// A page's own policy; `nosniff`, `DENY` and `no-referrer` come with every answer
/// ([`crate::headers`]).
pub(crate) fn secure(res: &mut HttpResponse) {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

fn html(page: &impl Template) -> Result<HttpResponse, ApiError> {
    let body = page
        .render()
        .map_err(|e| ApiError::from(clawjobs_actors::EngineError::internal(e)))?;
    let mut res = HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body);
    secure(&mut res);
    Ok(res)
}

/// One line of the landing page's price table.
pub struct PriceRow {
    task_type: String,
    price: String,
    note: String,
}

#[derive(Template)]
#[template(path = "buyer.html")]
struct BuyerPage {
    v: &'static str,
    notice: &'static str,
    prices: Vec<PriceRow>,
    signup_credit: String,
    refund_window: String,
    chat_price: String,
    chats_for_20: i64,
    two_chats: String,
}

impl BuyerPage {
    fn new(cfg: &PlatformConfig, notice: &'static str) -> Self {
        let chat_cents = cfg.pricing.get("chat").map_or(0, |r| r.base_cents).max(1);
        BuyerPage {
            v: assets::version(),
            notice,
            prices: price_rows(cfg),
            signup_credit: cents(cfg.signup.buyer_free_credit_cents),
            refund_window: duration(cfg.commissions.freeze_seconds),
            chat_price: cents(chat_cents),
            chats_for_20: 2_000 / chat_cents,
            two_chats: cents(2 * chat_cents),
        }
    }
}

/// The price table, from the live pricing document (so an admin's change shows on the next load).
fn price_rows(cfg: &PlatformConfig) -> Vec<PriceRow> {
    cfg.pricing
        .iter()
        .map(|(name, rule)| {
            let (price, note) =
                if let Some(steps) = rule.multi_turn.as_ref().filter(|s| !s.is_empty()) {
                    let mut notes = Vec::new();
                    let mut from = 1;
                    for s in steps {
                        let to = s.up_to_message;
                        notes.push(if to >= 999 {
                            format!("{} from message {from}", cents(s.price_cents))
                        } else {
                            format!("{} for messages {from}–{to}", cents(s.price_cents))
                        });
                        from = to + 1;
                    }
                    (
                        format!("from {}", cents(steps[0].price_cents)),
                        format!("a conversation: {}", notes.join(", ")),
                    )
                } else if rule.per_segment {
                    (cents(rule.base_cents), "per text segment".to_string())
                } else {
                    (cents(rule.base_cents), String::new())
                };
            let task_type = if name == "skill" {
                "custom skills (skill:NAME)".to_string()
            } else {
                name.clone()
            };
            PriceRow {
                task_type,
                price,
                note,
            }
        })
        .collect()
}

/// 250 → "$2.50", 5 → "5¢" (the same as the pages' script).
pub(crate) fn cents(n: i64) -> String {
    if n.abs() < 100 {
        format!("{n}¢")
    } else {
        let sign = if n < 0 { "-" } else { "" };
        let abs = n.unsigned_abs();
        format!("{sign}${}.{:02}", abs / 100, abs % 100)
    }
}

/// 86400 → "24 hours".
fn duration(seconds: u64) -> String {
    match seconds {
        s if s % 86_400 == 0 && s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s % 3_600 == 0 && s >= 3_600 => format!("{} hours", s / 3_600),
        s if s % 60 == 0 && s >= 60 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

async fn buyer(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    html(&BuyerPage::new(&state.engine.cfg(), ""))
}

async fn deposit_success(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    html(&BuyerPage::new(
        &state.engine.cfg(),
        "Thank you — your payment went through. The money shows in your balance as soon as Stripe \
         confirms it, usually within seconds.",
    ))
}

async fn deposit_cancel(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    html(&BuyerPage::new(
        &state.engine.cfg(),
        "The payment was cancelled; nothing was charged.",
    ))
}

#[derive(Template)]
#[template(path = "worker.html")]
struct WorkerPage {
    v: &'static str,
}

async fn worker() -> Result<HttpResponse, ApiError> {
    html(&WorkerPage {
        v: assets::version(),
    })
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    v: &'static str,
}

async fn admin() -> Result<HttpResponse, ApiError> {
    html(&AdminPage {
        v: assets::version(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_durations_read_like_the_scripts() {
        assert_eq!(cents(5), "5¢");
        assert_eq!(cents(250), "$2.50");
        assert_eq!(cents(-1234), "-$12.34");
        assert_eq!(duration(86_400), "24 hours");
        assert_eq!(duration(3 * 86_400), "3 days");
        assert_eq!(duration(90), "90 seconds");
    }

    #[test]
    fn the_price_table_follows_the_pricing_document() {
        let cfg = PlatformConfig::builtin();
        let rows = price_rows(&cfg);
        let chat = rows.iter().find(|r| r.task_type == "chat").unwrap();
        assert_eq!(chat.price, "from 2¢");
        assert!(chat.note.contains("5¢ for messages 4–7"), "{}", chat.note);
        let translate = rows.iter().find(|r| r.task_type == "translate").unwrap();
        assert_eq!(translate.note, "per text segment");
        assert!(
            rows.iter()
                .any(|r| r.task_type.starts_with("custom skills"))
        );
    }
}
