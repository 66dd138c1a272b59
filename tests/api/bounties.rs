//! Bounties through the API: the reward in escrow, browsing, idempotent posting, cancelling.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

fn in_hours(h: i64) -> String {
    let t = chrono::Utc::now() + chrono::Duration::hours(h);
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn bounty(reward: i64) -> Value {
    json!({
        "title": "Port the parser to Rust",
        "description": "The tokenizer and the parser, with tests.",
        "criteria": "cargo test passes",
        "reward_cents": reward,
        "deadline": in_hours(48),
    })
}

#[tokio::test]
async fn a_bounty_holds_its_reward_in_escrow_until_cancelled() {
    let app = spawn_app().await;
    let buyer = app.funded_buyer("bounty@example.com", 5_000).await;
    let start = cents(&app.balance(&buyer.token).await, "available_cents");

    let (s, v) = app
        .post_keyed("/api/bounties", &buyer.token, bounty(2_000), Some("b-1"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "open");
    assert_eq!(v["escrow_cents"], 2_000);
    assert_eq!(v["accepting"], true);
    assert_eq!(v["mine"], true);
    assert_eq!(v["review"], "manual");
    assert_eq!(v["fee_pct"], 0.1);
    let id = v["bounty_id"].as_str().unwrap().to_string();
    // The repeat with the same key and body is the first answer; nothing moves twice.
    let (s, again) = app
        .post_keyed("/api/bounties", &buyer.token, bounty(2_000), Some("b-1"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{again}");
    assert_eq!(again["bounty_id"], id.as_str());
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        start - 2_000
    );

    // More than the balance: 402, and nothing changes.
    let (s, v) = app
        .post("/api/bounties", Some(&buyer.token), bounty(4_000))
        .await;
    assert_eq!(s, StatusCode::PAYMENT_REQUIRED, "{v}");
    assert_eq!(v["error"]["code"], "INSUFFICIENT_BALANCE");

    // Anyone with a token browses; a worker does not see who posted it.
    let worker = app.worker().await;
    let (s, page) = app.get("/api/bounties?status=open", &worker.token).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let listed = &page["data"][0];
    assert_eq!(listed["bounty_id"], id.as_str());
    assert_eq!(listed["mine"], false);
    assert!(listed.get("buyer_id").is_none(), "{listed}");
    let (s, one) = app.get(&format!("/api/bounties/{id}"), &worker.token).await;
    assert_eq!(s, StatusCode::OK, "{one}");
    assert_eq!(one["criteria"], "cargo test passes");
    let (s, _) = app.get("/api/bounties/bty_nope", &worker.token).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Only its buyer cancels, once; the reward comes back whole.
    let other = app.register("other@example.com").await;
    let (s, v) = app
        .post(
            &format!("/api/bounties/{id}/cancel"),
            Some(&other.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = app
        .post(
            &format!("/api/bounties/{id}/cancel"),
            Some(&worker.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = app
        .post(
            &format!("/api/bounties/{id}/cancel"),
            Some(&buyer.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "cancelled");
    assert_eq!(v["escrow_cents"], 0);
    let (s, v) = app
        .post(
            &format!("/api/bounties/{id}/cancel"),
            Some(&buyer.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        start
    );
    let (_, open) = app.get("/api/bounties?status=open", &buyer.token).await;
    assert_eq!(open["data"], json!([]));
    app.assert_audit().await;
}

#[tokio::test]
async fn a_bad_bounty_is_refused_and_costs_nothing() {
    let app = spawn_app().await;
    let buyer = app.funded_buyer("bad-bounty@example.com", 5_000).await;
    let start = cents(&app.balance(&buyer.token).await, "available_cents");
    let cases = [
        ("reward_cents", json!({"reward_cents": 0})),
        ("reward_cents", json!({"reward_cents": 99})),
        ("deadline", json!({"deadline": in_hours(-1)})),
        ("deadline", json!({"deadline": "next tuesday"})),
        ("deadline", json!({"deadline": in_hours(24 * 365)})),
        ("title", json!({"title": "   "})),
        ("title", json!({"title": "x".repeat(201)})),
        ("max_submissions", json!({"max_submissions": 0})),
        (
            "review",
            json!({"review": "consensus", "reward_cents": 500}),
        ),
    ];
    for (field, change) in cases {
        let mut body = bounty(1_000);
        merge(&mut body, change.clone());
        let (s, v) = app.post("/api/bounties", Some(&buyer.token), body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{change}: {v}");
        assert_eq!(v["error"]["code"], "VALIDATION_ERROR", "{change}: {v}");
        assert_eq!(v["error"]["details"]["field"], field, "{change}: {v}");
    }
    // Unknown fields and the wrong kind of review are refused by the body reader.
    let mut body = bounty(1_000);
    merge(&mut body, json!({"review": "vibes"}));
    let (s, v) = app.post("/api/bounties", Some(&buyer.token), body).await;
    assert!(s.is_client_error(), "{v}");
    let mut body = bounty(1_000);
    merge(&mut body, json!({"escrow_cents": 1}));
    let (s, v) = app.post("/api/bounties", Some(&buyer.token), body).await;
    assert!(s.is_client_error(), "{v}");
    // A worker cannot post one.
    let worker = app.worker().await;
    let (s, _) = app
        .post("/api/bounties", Some(&worker.token), bounty(1_000))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = app.get("/api/bounties?status=lost", &buyer.token).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        start
    );
    let (_, all) = app.get("/api/bounties", &buyer.token).await;
    assert_eq!(all["data"], json!([]));
    app.assert_audit().await;
}
