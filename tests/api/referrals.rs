//! Referrals: a referred buyer's credit, and the referrer's share of a referred worker's tasks,
//! paid by the platform once each task's refund window is over.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn referrals_credit_the_buyer_and_share_the_platform_s_cut_of_released_tasks() {
    let app = spawn_app().await;
    app.patch_config("qa", qa_rates(0.0, 0.0)).await;
    app.patch_config("signup", json!({"referral_seller_pct": 0.1}))
        .await;
    app.patch_config("commissions", json!({"freeze_seconds": 3}))
        .await;
    let referrer = app.funded_buyer("referrer@example.com", 1_000).await;
    let (s, r) = app.get("/api/referral", &referrer.token).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let code = r["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 8);
    assert!(r["link"].as_str().unwrap().ends_with(&code));
    assert_eq!(
        (r["referred_buyers"].as_u64(), r["earned_cents"].as_i64()),
        (Some(0), Some(0))
    );
    let (_, again) = app.get("/api/referral", &referrer.token).await;
    assert_eq!(again["code"], code.as_str(), "one code per account");

    // An unknown code is refused and nothing is made; a known one (any case) credits the buyer.
    let body = |code: &str| json!({"email": "new@example.com", "password": "correct horse battery", "referral_code": code});
    let (s, v) = app.post("/api/auth/register", None, body("ZZZZZZZZ")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = app
        .post("/api/auth/register", None, body(&code.to_lowercase()))
        .await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "the email was not taken by the refused attempt: {v}"
    );
    assert_eq!(
        v["balance_cents"],
        50 + 100,
        "signup credit plus the referral credit"
    );

    // A referred worker: its referrer gets 10 % of each released task's price, from revenue.
    let (s, v) = app
        .post(
            "/api/worker/connect",
            None,
            json!({"referral_code": "ZZZZZZZZ"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let worker = app.worker_with(json!({"referral_code": code})).await;
    let mut earned = 0;
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (s, posted) = app
            .post_task(
                &referrer,
                json!({"type": "research", "input": {"q": "why"}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{posted}");
        let id = posted["task_id"].as_str().unwrap().to_string();
        let (s, _) = app.next(&worker, 5).await;
        assert_eq!(s, StatusCode::OK);
        let (s, sub) = app.submit(&worker, &id, "a careful answer").await;
        assert_eq!(s, StatusCode::OK, "{sub}");
        earned += sub["earned_cents"].as_i64().unwrap();
        tasks.push(id);
    }
    // The first is credited inside its window: it pays no share.
    let (s, v) = app
        .post(
            &format!("/api/task/{}/credit", tasks[0]),
            Some(&referrer.token),
            json!({"reason": "no"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let worker_earned = earned / 2;
    let r = eventually(
        "the second task's release pays the share",
        Duration::from_secs(10),
        || async {
            let (_, r) = app.get("/api/referral", &referrer.token).await;
            (r["earned_cents"].as_i64() == Some(5)).then_some(r)
        },
    )
    .await;
    assert_eq!(
        (
            r["referred_buyers"].as_u64(),
            r["referred_workers"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let w = app.balance(&worker.token).await;
    assert_eq!(
        w["available_cents"].as_i64(),
        Some(worker_earned),
        "the worker's earning is its own: {w}"
    );
    // The worker too has a code of its own; the referrer's is not it.
    let (s, wr) = app.get("/api/referral", &worker.token).await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(wr["code"], code.as_str());
    app.assert_audit().await;
}
