//! Money out: email verification, payout binding, withdrawals and an admin's payouts.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn withdraw(app: &TestApp, w: &Worker, cents: i64, key: Option<&str>) -> (StatusCode, Value) {
    app.post_keyed(
        "/api/withdraw",
        &w.token,
        json!({ "amount_cents": cents }),
        key,
    )
    .await
}

/// The newest code the outbox holds for `email`.
async fn code_for(app: &TestApp, email: &str) -> String {
    let (s, v) = app.get("/api/admin/outbox", &app.admin).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let message = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["to"] == email)
        .unwrap_or_else(|| panic!("no mail to {email}: {v}"));
    let body = message["body"].as_str().unwrap();
    body.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {body}"))
        .to_string()
}

/// A worker with `cents` available (an admin credit) and a verified email.
async fn verified_worker(app: &TestApp, email: &str, cents: i64) -> Worker {
    let w = app.worker().await;
    let (s, v) = app
        .post(
            "/api/admin/credit",
            Some(&app.admin),
            json!({"user_id": w.worker_id, "amount_cents": cents, "reason": "earnings"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app
        .post(
            "/api/worker/bind-email",
            Some(&w.token),
            json!({"email": email}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let code = code_for(app, email).await;
    let (s, v) = app
        .post(
            "/api/worker/verify-email",
            Some(&w.token),
            json!({"email": email, "code": code}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    w
}

const SOLANA: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";

#[tokio::test]
async fn a_worker_verifies_binds_and_withdraws_and_an_admin_pays_out_once() {
    let app = spawn_app().await;
    let w = app.worker().await;
    app.post(
        "/api/admin/credit",
        Some(&app.admin),
        json!({"user_id": w.worker_id, "amount_cents": 30_000, "reason": "earnings"}),
    )
    .await;
    // Nothing works before the binding, in order.
    let (s, v) = withdraw(&app, &w, 999, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "below the 1000 minimum: {v}");
    let (s, v) = withdraw(&app, &w, 1000, None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("PAYOUT_NOT_BOUND")),
        "{v}"
    );
    let (s, v) = app
        .post(
            "/api/worker/bind-payout",
            Some(&w.token),
            json!({"method": "solana", "address": SOLANA}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("EMAIL_NOT_VERIFIED")),
        "{v}"
    );

    // The code: sent once a minute, wrong tries counted, the right one verifies.
    let (s, v) = app
        .post(
            "/api/worker/bind-email",
            Some(&w.token),
            json!({"email": "Pay.Me@Example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["email"], "pay.me@example.com");
    let res = app
        .client
        .post(app.url("/api/worker/bind-email"))
        .bearer_auth(&w.token)
        .json(&json!({"email": "pay.me@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get("retry-after").is_some());
    let code = code_for(&app, "pay.me@example.com").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (s, v) = app
        .post(
            "/api/worker/verify-email",
            Some(&w.token),
            json!({"email": "pay.me@example.com", "code": wrong}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["details"]["tries_left"], 4);
    let (s, v) = app
        .post(
            "/api/worker/verify-email",
            Some(&w.token),
            json!({"email": "pay.me@example.com", "code": code}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["email"], "pay.me@example.com");

    // Addresses are checked by method.
    for (method, address) in [
        ("solana", "2g"),
        ("solana", "0OIl0OIl"),
        ("paypal", "not-an-email"),
        ("venmo", "x"),
    ] {
        let (s, v) = app
            .post(
                "/api/worker/bind-payout",
                Some(&w.token),
                json!({"method": method, "address": address}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {address}: {v}");
    }
    let (s, v) = app
        .post(
            "/api/worker/bind-payout",
            Some(&w.token),
            json!({"method": "solana", "address": SOLANA}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["method"].as_str(), v["address"].as_str()),
        (Some("solana"), Some(SOLANA))
    );

    // A withdrawal leaves available at once; a repeated key replays it.
    let (s, first) = withdraw(&app, &w, 1000, Some("wd-1")).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(first["status"], "pending");
    assert_eq!(first["available_after_cents"], 29_000);
    let (s, again) = withdraw(&app, &w, 1000, Some("wd-1")).await;
    assert_eq!(s, StatusCode::CREATED, "{again}");
    assert_eq!(again["withdrawal_id"], first["withdrawal_id"]);
    assert_eq!(app.balance(&w.token).await["available_cents"], 29_000);
    // The daily maximum (10,000) counts what is pending.
    let (s, second) = withdraw(&app, &w, 9_000, None).await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    let (s, v) = withdraw(&app, &w, 1_000, None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("WITHDRAWAL_LIMIT")),
        "{v}"
    );
    assert_eq!(v["error"]["details"]["today_cents"], 10_000);
    // Only available money: with a higher limit, more than is there is 402.
    app.patch_config(
        "rate_limits",
        json!({"withdrawal": {"daily_max_cents": 1_000_000}}),
    )
    .await;
    let (s, v) = withdraw(&app, &w, 20_001, None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::PAYMENT_REQUIRED, Some("INSUFFICIENT_BALANCE")),
        "{v}"
    );

    // The admin pays the first out and rejects the second, each once.
    let (s, pending) = app
        .get("/api/admin/withdrawals?status=pending", &app.admin)
        .await;
    assert_eq!(s, StatusCode::OK, "{pending}");
    assert_eq!(pending["data"].as_array().unwrap().len(), 2, "{pending}");
    assert_eq!(pending["data"][0]["worker_id"], w.worker_id.as_str());
    assert_eq!(pending["data"][0]["address"], SOLANA);
    let first_id = first["withdrawal_id"].as_str().unwrap();
    let second_id = second["withdrawal_id"].as_str().unwrap();
    let complete = format!("/api/admin/withdrawals/{first_id}/complete");
    let (s, v) = app
        .post(
            &complete,
            Some(&app.admin),
            json!({"external_ref": "5xSig…"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "completed");
    let (s, v) = app
        .post(
            &complete,
            Some(&app.admin),
            json!({"external_ref": "again"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let reject_first = format!("/api/admin/withdrawals/{first_id}/reject");
    let (s, _) = app
        .post(&reject_first, Some(&app.admin), json!({"reason": "late"}))
        .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "a completed withdrawal cannot be rejected"
    );
    let reject = format!("/api/admin/withdrawals/{second_id}/reject");
    let (s, v) = app
        .post(
            &reject,
            Some(&app.admin),
            json!({"reason": "address on a sanctions list"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "rejected");
    let (s, _) = app
        .post(
            "/api/admin/withdrawals/wd_nope/complete",
            Some(&app.admin),
            json!({"external_ref": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let bal = app.balance(&w.token).await;
    assert_eq!(
        bal["available_cents"], 29_000,
        "the rejected 9,000 came back: {bal}"
    );
    assert_eq!(bal["total_withdrawn_cents"], 1_000, "{bal}");
    let (_, mine) = app.get("/api/withdrawals", &w.token).await;
    let statuses: Vec<&str> = mine["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["rejected", "completed"]);
    // Only workers withdraw, only admins pay out.
    let buyer = app.register("b@example.com").await;
    let (s, _) = app
        .post(
            "/api/withdraw",
            Some(&buyer.token),
            json!({"amount_cents": 1000}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.get("/api/admin/withdrawals", &w.token).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    app.assert_audit().await;
}

#[tokio::test]
async fn frozen_earnings_cannot_be_withdrawn_and_a_code_is_void_after_five_wrong_tries() {
    let app = spawn_app().await;
    let w = verified_worker(&app, "frozen@example.com", 2_000).await;
    app.post(
        "/api/worker/bind-payout",
        Some(&w.token),
        json!({"method": "paypal", "address": "frozen@example.com"}),
    )
    .await;
    // An earning, frozen for the refund window.
    let buyer = app.funded_buyer("buyer@example.com", 1_000).await;
    let task = app.chat_task(&buyer).await;
    let (s, _) = app.next(&w, 5).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = app.submit(&w, &task, "an answer long enough").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let bal = app.balance(&w.token).await;
    assert!(bal["frozen_cents"].as_i64().unwrap() > 0, "{bal}");
    let (s, v) = withdraw(&app, &w, 2_001, None).await;
    assert_eq!(
        s,
        StatusCode::PAYMENT_REQUIRED,
        "frozen money is not available: {v}"
    );
    let (s, v) = withdraw(&app, &w, 2_000, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // Another worker spends a code's five tries: the sixth is refused, even with the right code.
    let other = app.worker().await;
    app.post(
        "/api/worker/bind-email",
        Some(&other.token),
        json!({"email": "o@example.com"}),
    )
    .await;
    let code = code_for(&app, "o@example.com").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for left in (0..5).rev() {
        let (s, v) = app
            .post(
                "/api/worker/verify-email",
                Some(&other.token),
                json!({"email": "o@example.com", "code": wrong}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["details"]["tries_left"], left);
    }
    let (s, v) = app
        .post(
            "/api/worker/verify-email",
            Some(&other.token),
            json!({"email": "o@example.com", "code": code}),
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    // A code for another address proves nothing about this one.
    let (s, _) = app
        .post(
            "/api/worker/verify-email",
            Some(&other.token),
            json!({"email": "x@example.com", "code": code}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = app.get("/api/worker/payout", &other.token).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.assert_audit().await;
}

#[tokio::test]
async fn with_an_smtp_server_codes_are_mailed_and_a_failed_send_keeps_nothing() {
    let smtp = crate::fake_smtp::FakeSmtp::start().await;
    let app = spawn_app_with_env(&[
        ("CLAWJOBS_SMTP_URL", &smtp.url),
        ("CLAWJOBS_SMTP_FROM", "Payouts <payouts@clawjobs.test>"),
    ])
    .await;
    let w = app.worker().await;
    let (s, v) = app
        .post(
            "/api/worker/bind-email",
            Some(&w.token),
            json!({"email": "mailed@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["sent_by"], "smtp");
    let got = smtp.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].to, ["mailed@example.com"]);
    assert!(
        got[0].data.contains("payouts@clawjobs.test"),
        "{}",
        got[0].data
    );
    let code = got[0]
        .data
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {}", got[0].data))
        .to_string();
    let (_, outbox) = app.get("/api/admin/outbox", &app.admin).await;
    assert_eq!(
        outbox["data"],
        json!([]),
        "a mailed code is not kept in the outbox"
    );
    let (s, v) = app
        .post(
            "/api/worker/verify-email",
            Some(&w.token),
            json!({"email": "mailed@example.com", "code": code}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // The server refuses: 502, and nothing is kept, so the worker may ask again at once.
    smtp.refuse(true);
    let other = app.worker().await;
    let (s, v) = app
        .post(
            "/api/worker/bind-email",
            Some(&other.token),
            json!({"email": "o@example.com"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("MAIL_UNAVAILABLE")),
        "{v}"
    );
    smtp.refuse(false);
    let (s, v) = app
        .post(
            "/api/worker/bind-email",
            Some(&other.token),
            json!({"email": "o@example.com"}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::ACCEPTED,
        "not held back by the failed try: {v}"
    );
}
