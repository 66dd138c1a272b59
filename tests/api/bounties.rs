//! Bounties through the API: the reward in escrow, browsing, idempotent posting, cancelling.

use std::time::Duration;

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

    // One body for both sends: its deadline is "now + 48 h" to the second.
    let body = bounty(2_000);
    let (s, v) = app
        .post_keyed("/api/bounties", &buyer.token, body.clone(), Some("b-1"))
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
        .post_keyed("/api/bounties", &buyer.token, body, Some("b-1"))
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

async fn post_bounty(app: &TestApp, buyer: &Buyer, body: Value) -> String {
    let (s, v) = app.post("/api/bounties", Some(&buyer.token), body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["bounty_id"].as_str().unwrap().to_string()
}

async fn submit(app: &TestApp, w: &Worker, bounty: &str, answer: &str) -> (StatusCode, Value) {
    app.post(
        &format!("/api/bounties/{bounty}/submissions"),
        Some(&w.token),
        json!({"content": {"answer": answer}}),
    )
    .await
}

/// `POST /api/bounties/{id}/submissions/{sid}/{action}` with `token`.
async fn act(
    app: &TestApp,
    token: &str,
    bounty: &str,
    sid: &str,
    action: &str,
    body: Value,
) -> (StatusCode, Value) {
    app.post(
        &format!("/api/bounties/{bounty}/submissions/{sid}/{action}"),
        Some(token),
        body,
    )
    .await
}

#[tokio::test]
async fn submissions_come_first_served_and_an_approval_pays_a_frozen_lot() {
    let app = spawn_app().await;
    let buyer = app.funded_buyer("approve@example.com", 5_000).await;
    let start = cents(&app.balance(&buyer.token).await, "available_cents");
    let mut body = bounty(2_000);
    merge(&mut body, json!({"max_submissions": 2}));
    let id = post_bounty(&app, &buyer, body).await;
    let (w1, w2, w3) = (app.worker().await, app.worker().await, app.worker().await);

    let (s, first) = submit(&app, &w1, &id, "one").await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(first["position"], 1);
    assert_eq!(first["status"], "pending");
    assert!(first["auto_release_at"].is_string(), "{first}");
    let sid1 = first["submission_id"].as_str().unwrap().to_string();
    // One per worker; content must be an object; a buyer cannot submit.
    let (s, v) = submit(&app, &w1, &id, "again").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = app
        .post(
            &format!("/api/bounties/{id}/submissions"),
            Some(&w2.token),
            json!({"content": "just text"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = app
        .post(
            &format!("/api/bounties/{id}/submissions"),
            Some(&buyer.token),
            json!({"content": {}}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, second) = submit(&app, &w2, &id, "two").await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    assert_eq!(second["position"], 2);
    let sid2 = second["submission_id"].as_str().unwrap().to_string();
    // Full: the third is refused, and cancelling is too late.
    let (s, v) = submit(&app, &w3, &id, "three").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (_, b) = app.get(&format!("/api/bounties/{id}"), &w3.token).await;
    assert_eq!(b["accepting"], false);
    assert_eq!(b["submissions"], 2);
    let (s, _) = app
        .post(
            &format!("/api/bounties/{id}/cancel"),
            Some(&buyer.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // `mine`: the bounties a worker submitted to (w3's was refused).
    let mine = |token: String| {
        let app = &app;
        async move {
            let (s, v) = app.get("/api/bounties?mine=true", &token).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["bounty_id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(mine(w2.token.clone()).await, std::slice::from_ref(&id));
    assert!(mine(w3.token.clone()).await.is_empty());

    // The buyer sees both, a worker only its own, another buyer none.
    let path = format!("/api/bounties/{id}/submissions");
    let (_, all) = app.get(&path, &buyer.token).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2, "{all}");
    assert_eq!(all["data"][1]["content"]["answer"], "two");
    let (_, own) = app.get(&path, &w2.token).await;
    assert_eq!(own["data"].as_array().unwrap().len(), 1, "{own}");
    assert_eq!(own["data"][0]["submission_id"], sid2.as_str());
    let (_, none) = app.get(&path, &w3.token).await;
    assert_eq!(none["data"], json!([]));
    let other = app.register("nosy@example.com").await;
    let (s, _) = app.get(&path, &other.token).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Only the owner approves; the worker's lot is the reward less the 10% fee, frozen.
    let (s, _) = act(&app, &other.token, &id, &sid1, "approve", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = act(&app, &buyer.token, &id, &sid1, "approve", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "approved");
    assert_eq!(v["paid_cents"], 1_800);
    assert_eq!(v["bounty"]["status"], "completed");
    assert_eq!(v["bounty"]["escrow_cents"], 0);
    let wb = app.balance(&w1.token).await;
    assert_eq!(cents(&wb, "frozen_cents"), 1_800, "{wb}");
    assert_eq!(cents(&wb, "available_cents"), 0, "{wb}");
    let (_, earnings) = app.get("/api/worker/earnings", &w1.token).await;
    assert_eq!(earnings["data"][0]["task_id"], sid1.as_str(), "{earnings}");
    assert_eq!(earnings["data"][0]["type"], "bounty", "{earnings}");
    // Each review happens once; the other submission is closed.
    let (s, v) = act(&app, &buyer.token, &id, &sid1, "approve", json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = act(
        &app,
        &buyer.token,
        &id,
        &sid2,
        "reject",
        json!({"reason": "late"}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (_, own) = app.get(&path, &w2.token).await;
    assert_eq!(own["data"][0]["status"], "closed", "{own}");
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        start - 2_000
    );
    app.assert_audit().await;
}

#[tokio::test]
async fn a_disputed_rejection_locks_the_escrow_until_an_admin_resolves_it() {
    let app = spawn_app().await;
    let buyer = app.funded_buyer("dispute@example.com", 5_000).await;
    let start = cents(&app.balance(&buyer.token).await, "available_cents");
    let id = post_bounty(&app, &buyer, bounty(1_000)).await;
    let (w1, w2) = (app.worker().await, app.worker().await);
    let (_, v) = submit(&app, &w1, &id, "careful work").await;
    let sid1 = v["submission_id"].as_str().unwrap().to_string();

    // A rejection needs a reason, and opens the dispute window.
    let (s, v) = act(
        &app,
        &buyer.token,
        &id,
        &sid1,
        "reject",
        json!({"reason": " "}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = act(
        &app,
        &buyer.token,
        &id,
        &sid1,
        "reject",
        json!({"reason": "the tests do not pass"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "rejected");
    assert_eq!(v["reason"], "the tests do not pass");
    assert!(v["dispute_until"].is_string(), "{v}");
    assert_eq!(v["bounty"]["status"], "open");

    // Only its worker disputes, once.
    let reason = json!({"reason": "they pass on a clean checkout"});
    let (s, _) = act(&app, &w2.token, &id, &sid1, "dispute", reason.clone()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, d) = act(&app, &w1.token, &id, &sid1, "dispute", reason.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    assert_eq!(d["status"], "open");
    let dispute_id = d["dispute_id"].as_str().unwrap().to_string();
    let (s, _) = act(&app, &w1.token, &id, &sid1, "dispute", reason).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // While it is open, nothing else can be approved.
    let (_, v) = submit(&app, &w2, &id, "quick work").await;
    let sid2 = v["submission_id"].as_str().unwrap().to_string();
    let (s, v) = act(&app, &buyer.token, &id, &sid2, "approve", json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    // Admins see both sides' words and the work itself.
    let (s, _) = app.get("/api/admin/disputes", &buyer.token).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, page) = app.get("/api/admin/disputes?status=open", &app.admin).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let case = &page["data"][0];
    assert_eq!(case["dispute_id"], dispute_id.as_str());
    assert_eq!(case["reason"], "they pass on a clean checkout");
    assert_eq!(case["rejection_reason"], "the tests do not pass");
    assert_eq!(case["submission"]["content"]["answer"], "careful work");
    assert_eq!(case["bounty"]["criteria"], "cargo test passes");

    // A split needs its percentage; the worker's part is paid less the fee, the rest refunded.
    let resolve = format!("/api/admin/disputes/{dispute_id}/resolve");
    let (s, v) = app
        .post(&resolve, Some(&app.admin), json!({"outcome": "split"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = app
        .post(&resolve, Some(&buyer.token), json!({"outcome": "buyer"}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = app
        .post(
            &resolve,
            Some(&app.admin),
            json!({"outcome": "split", "worker_pct": 60}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "resolved");
    assert_eq!(v["worker_cents"], 540);
    assert_eq!(v["refund_cents"], 400);
    assert_eq!(v["bounty"]["status"], "resolved");
    let (s, _) = app
        .post(&resolve, Some(&app.admin), json!({"outcome": "worker"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        start - 1_000 + 400
    );
    assert_eq!(cents(&app.balance(&w1.token).await, "frozen_cents"), 540);
    let (_, own) = app
        .get(&format!("/api/bounties/{id}/submissions"), &w2.token)
        .await;
    assert_eq!(own["data"][0]["status"], "closed", "{own}");
    let (_, open) = app.get("/api/admin/disputes?status=open", &app.admin).await;
    assert_eq!(open["data"], json!([]));
    app.assert_audit().await;
}

fn in_seconds(s: i64) -> String {
    let t = chrono::Utc::now() + chrono::Duration::seconds(s);
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The Supervisor's bounty timers, from stored due times: a submission the buyer leaves is
/// approved automatically; a bounty nobody won expires once nothing is left to review or
/// dispute, and its escrow goes back.
#[tokio::test]
async fn the_supervisor_approves_what_the_buyer_leaves_and_expires_what_nobody_won() {
    let app = spawn_app().await;
    app.patch_config(
        "bounty",
        json!({"auto_release_seconds": 2, "auto_release_warning_seconds": 1, "dispute_window_seconds": 2}),
    )
    .await;
    let buyer = app.funded_buyer("timers@example.com", 9_000).await;
    let start = cents(&app.balance(&buyer.token).await, "available_cents");
    let (w1, w2) = (app.worker().await, app.worker().await);

    let left = post_bounty(&app, &buyer, bounty(1_000)).await;
    let (_, v) = submit(&app, &w1, &left, "left alone").await;
    assert_eq!(v["status"], "pending", "{v}");
    let mut body = bounty(2_000);
    merge(&mut body, json!({"deadline": in_seconds(3)}));
    let unwon = post_bounty(&app, &buyer, body).await;
    let mut body = bounty(3_000);
    merge(&mut body, json!({"deadline": in_seconds(3)}));
    let rejected = post_bounty(&app, &buyer, body).await;
    let (_, v) = submit(&app, &w2, &rejected, "not it").await;
    let sid = v["submission_id"].as_str().unwrap().to_string();
    let (s, v) = act(
        &app,
        &buyer.token,
        &rejected,
        &sid,
        "reject",
        json!({"reason": "no"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let status = |id: String| {
        let app = &app;
        let buyer = &buyer;
        async move {
            let (_, b) = app.get(&format!("/api/bounties/{id}"), &buyer.token).await;
            b["status"].as_str().unwrap_or_default().to_string()
        }
    };
    eventually(
        "the unreviewed submission is approved",
        Duration::from_secs(20),
        || async { (status(left.clone()).await == "completed").then_some(()) },
    )
    .await;
    let (_, own) = app
        .get(&format!("/api/bounties/{left}/submissions"), &w1.token)
        .await;
    assert_eq!(own["data"][0]["status"], "approved", "{own}");
    assert_eq!(own["data"][0]["auto_approved"], true, "{own}");
    assert_eq!(cents(&app.balance(&w1.token).await, "frozen_cents"), 900);

    eventually("both bounties expire", Duration::from_secs(20), || async {
        (status(unwon.clone()).await == "expired" && status(rejected.clone()).await == "expired")
            .then_some(())
    })
    .await;
    let (_, own) = app
        .get(&format!("/api/bounties/{rejected}/submissions"), &w2.token)
        .await;
    assert_eq!(own["data"][0]["status"], "closed", "{own}");
    // Only the approved reward left the buyer; the rest came back, once.
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        start - 1_000
    );
    app.assert_audit().await;
}

/// The next `notification` frame on a worker's socket, skipping any other.
async fn ws_notification(ws: &mut crate::streams::Ws) -> Value {
    loop {
        let f = crate::streams::frame(ws, Duration::from_secs(10)).await;
        if f["type"] == "notification" {
            return f;
        }
    }
}

/// The next `notification` event on an SSE stream, skipping any other.
async fn sse_notification(sse: &mut crate::streams::Sse) -> Value {
    loop {
        let e = sse
            .next(Duration::from_secs(10))
            .await
            .expect("a notification within 10 s");
        if e.event == "notification" {
            return e.data;
        }
    }
}

/// Each side hears what happens to its bounty as it happens (the buyer on its SSE stream, the
/// worker on its WebSocket), and finds it again in its list until marked read.
#[tokio::test]
async fn both_sides_are_notified_live_and_keep_their_notifications() {
    let app = spawn_app().await;
    let buyer = app.funded_buyer("told@example.com", 5_000).await;
    let worker = app.worker().await;
    let mut buyer_stream =
        crate::streams::Sse::open(&app, "/api/notifications/events", Some(&buyer.token), None)
            .await;
    let mut socket = crate::streams::ws(&app, &worker.token).await;
    let id = post_bounty(&app, &buyer, bounty(1_000)).await;

    let (_, v) = submit(&app, &worker, &id, "my answer").await;
    let sid = v["submission_id"].as_str().unwrap().to_string();
    let n = sse_notification(&mut buyer_stream).await;
    assert_eq!(n["kind"], "bounty.submission", "{n}");
    assert_eq!(n["data"]["bounty_id"], id.as_str());
    assert_eq!(n["data"]["submission_id"], sid.as_str());
    assert_eq!(n["read"], false);

    act(
        &app,
        &buyer.token,
        &id,
        &sid,
        "reject",
        json!({"reason": "too short"}),
    )
    .await;
    let n = ws_notification(&mut socket).await;
    assert_eq!(n["kind"], "submission.rejected", "{n}");
    assert_eq!(n["data"]["reason"], "too short");
    assert!(n["data"]["dispute_until"].is_string(), "{n}");

    let (_, d) = act(
        &app,
        &worker.token,
        &id,
        &sid,
        "dispute",
        json!({"reason": "read it"}),
    )
    .await;
    let n = sse_notification(&mut buyer_stream).await;
    assert_eq!(n["kind"], "dispute.opened", "{n}");
    assert_eq!(n["data"]["reason"], "read it");
    let (s, v) = app
        .post(
            &format!(
                "/api/admin/disputes/{}/resolve",
                d["dispute_id"].as_str().unwrap()
            ),
            Some(&app.admin),
            json!({"outcome": "worker"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for n in [
        ws_notification(&mut socket).await,
        sse_notification(&mut buyer_stream).await,
    ] {
        assert_eq!(n["kind"], "dispute.resolved", "{n}");
        assert_eq!(n["data"]["outcome"], "worker");
        assert_eq!(n["data"]["worker_cents"], 900);
    }

    // The same notifications, newest first, until read.
    let (s, page) = app
        .get("/api/notifications?unread=true", &worker.token)
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let kinds: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["dispute.resolved", "submission.rejected"]);
    let first = page["data"][0]["notification_id"]
        .as_str()
        .unwrap()
        .to_string();
    let read = |ids: Value, token: &str| {
        let (app, token) = (&app, token.to_string());
        async move {
            app.post("/api/notifications/read", Some(&token), json!({"ids": ids}))
                .await
        }
    };
    // Another user's id changes nothing; then once, and not twice.
    let (s, v) = read(json!([first]), &buyer.token).await;
    assert_eq!((s, v["marked"].clone()), (StatusCode::OK, json!(0)), "{v}");
    let (s, v) = read(json!([first]), &worker.token).await;
    assert_eq!((s, v["marked"].clone()), (StatusCode::OK, json!(1)), "{v}");
    let (_, v) = read(json!([first]), &worker.token).await;
    assert_eq!(v["marked"], 0);
    let (s, v) = read(json!([]), &worker.token).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (_, page) = app
        .get("/api/notifications?unread=true", &worker.token)
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
    let (_, all) = app.get("/api/notifications", &worker.token).await;
    assert_eq!(all["data"][0]["read"], true, "{all}");
    let (_, mine) = app.get("/api/notifications", &buyer.token).await;
    assert_eq!(mine["data"].as_array().unwrap().len(), 3, "{mine}");
    app.assert_audit().await;
}

async fn bounty_event(sse: &mut crate::streams::Sse) -> Value {
    let e = sse.next(Duration::from_secs(10)).await.expect("an event");
    assert_eq!(e.event, "bounty", "{e:?}");
    e.data
}

/// A bounty's own stream is for its buyer and the workers who submitted: it shows each step by
/// submission id and position, never who or what.
#[tokio::test]
async fn a_bounty_s_stream_shows_its_steps_to_those_in_it() {
    let app = spawn_app().await;
    let buyer = app.funded_buyer("watch@example.com", 5_000).await;
    let (w1, w2, outsider) = (app.worker().await, app.worker().await, app.worker().await);
    let id = post_bounty(&app, &buyer, bounty(1_000)).await;
    let path = format!("/api/bounties/{id}/events");
    let (s, v) = app.get(&path, &outsider.token).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let other = app.register("other-watch@example.com").await;
    let (s, _) = app.get(&path, &other.token).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.get("/api/bounties/bty_nope/events", &buyer.token).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let mut owner = crate::streams::Sse::open(&app, &path, Some(&buyer.token), None).await;
    let (_, v) = submit(&app, &w1, &id, "first").await;
    let sid1 = v["submission_id"].as_str().unwrap().to_string();
    // Events reach the streams just after the commit: once the owner has this one, a stream
    // opened now starts after it.
    let mut seen = vec![bounty_event(&mut owner).await];
    let mut watcher = crate::streams::Sse::open(&app, &path, Some(&w1.token), None).await;
    let (_, v) = submit(&app, &w2, &id, "second").await;
    let sid2 = v["submission_id"].as_str().unwrap().to_string();
    act(
        &app,
        &buyer.token,
        &id,
        &sid1,
        "reject",
        json!({"reason": "secret reason"}),
    )
    .await;
    act(&app, &buyer.token, &id, &sid2, "approve", json!({})).await;

    let kinds = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    };
    for _ in 0..3 {
        seen.push(bounty_event(&mut owner).await);
    }
    assert_eq!(
        kinds(&seen),
        ["submission", "submission", "rejected", "approved"]
    );
    assert_eq!(seen[1]["position"], 2);
    assert_eq!(seen[3]["status"], "completed");
    let mut theirs = Vec::new();
    for _ in 0..3 {
        theirs.push(bounty_event(&mut watcher).await);
    }
    assert_eq!(kinds(&theirs), ["submission", "rejected", "approved"]);
    for e in seen.iter().chain(&theirs) {
        let text = e.to_string();
        assert!(
            !text.contains("secret reason") && !text.contains(&w1.worker_id),
            "{e}"
        );
        assert!(!text.contains("first") && !text.contains("second"), "{e}");
    }
}

/// A worker made `proven` by one completed task (the test lowers the tier's bar to one).
async fn proven_worker(app: &TestApp, buyer: &Buyer) -> Worker {
    let w = app.worker().await;
    app.chat_task(buyer).await;
    let (s, task) = app.next(&w, 5).await;
    assert_eq!(s, StatusCode::OK, "{task}");
    let (s, done) = app
        .submit(&w, task["task_id"].as_str().unwrap(), "hello back")
        .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(done["tier"], "proven", "{done}");
    w
}

/// Consensus review: validators of the allowed tiers are asked live and read what they judge
/// (never who submitted it); the buyer cannot decide; outsiders, the submitter and repeat votes
/// are refused; the majority decides the moment it is certain, pays the winner as an approval
/// would and the validators who voted with it out of the fee, and later votes are refused.
#[tokio::test]
async fn validators_decide_a_consensus_bounty_and_the_majority_is_paid() {
    let app = spawn_app().await;
    app.patch_config(
        "tiers",
        json!({"levels": {"proven": {"min_tasks": 1, "min_completion": 0.5}}}),
    )
    .await;
    app.patch_config("bounty", json!({"validator_min_tier": "proven"}))
        .await;
    let buyer = app.funded_buyer("consensus@example.com", 5_000).await;
    let mut validators = Vec::new();
    for _ in 0..3 {
        validators.push(proven_worker(&app, &buyer).await);
    }
    let start = cents(&app.balance(&buyer.token).await, "available_cents");
    let (submitter, newcomer) = (app.worker().await, app.worker().await);
    let before: Vec<i64> = {
        let mut v = Vec::new();
        for w in &validators {
            v.push(cents(&app.balance(&w.token).await, "available_cents"));
        }
        v
    };
    let mut socket = crate::streams::ws(&app, &validators[0].token).await;

    let mut body = bounty(2_000);
    merge(&mut body, json!({"review": "consensus"}));
    let id = post_bounty(&app, &buyer, body).await;
    let (s, sub) = submit(&app, &submitter, &id, "the port").await;
    assert_eq!(s, StatusCode::CREATED, "{sub}");
    let sid = sub["submission_id"].as_str().unwrap().to_string();

    // Every validator is asked (three of them, three asked); the first hears it live.
    let asked = ws_notification(&mut socket).await;
    assert_eq!(asked["kind"], "vote.requested", "{asked}");
    assert_eq!(asked["data"]["submission_id"], sid.as_str(), "{asked}");
    for w in &validators {
        let (s, v) = app.get("/api/worker/votes", &w.token).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let req = &v["data"][0];
        assert_eq!(req["submission_id"], sid.as_str(), "{v}");
        assert_eq!(req["content"]["answer"], "the port", "{v}");
        assert_eq!(req["criteria"], "cargo test passes", "{v}");
        assert_eq!(req["fee_cents"], 25, "{v}");
        assert!(req.get("worker_id").is_none(), "{v}");
    }
    let (_, none) = app.get("/api/worker/votes", &newcomer.token).await;
    assert_eq!(none["data"], json!([]), "{none}");

    // The buyer does not decide a consensus bounty; outsiders and the submitter do not vote.
    let (s, v) = act(&app, &buyer.token, &id, &sid, "approve", json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    for token in [&newcomer.token, &submitter.token] {
        let (s, v) = act(&app, token, &id, &sid, "vote", json!({"approve": true})).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    }
    let (s, v) = act(
        &app,
        &buyer.token,
        &id,
        &sid,
        "vote",
        json!({"approve": true}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = act(
        &app,
        &validators[0].token,
        &id,
        &sid,
        "vote",
        json!({"approve": "yes"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // For, against (undecided), for: decided, approved, with a vote left over.
    let vote = |i: usize, approve: bool| {
        let (app, id, sid, token) = (&app, &id, &sid, validators[i].token.clone());
        async move { act(app, &token, id, sid, "vote", json!({"approve": approve})).await }
    };
    let (s, v) = vote(0, true).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["decided"].clone(), v["submission_status"].clone()),
        (json!(false), json!("pending"))
    );
    let (s, v) = vote(0, false).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = vote(1, false).await;
    assert_eq!(
        (s, v["decided"].clone()),
        (StatusCode::OK, json!(false)),
        "{v}"
    );
    let (_, seen) = app
        .get(&format!("/api/bounties/{id}/submissions"), &buyer.token)
        .await;
    assert_eq!(
        (
            seen["data"][0]["approvals"].clone(),
            seen["data"][0]["rejections"].clone()
        ),
        (json!(1), json!(1)),
        "{seen}"
    );
    let (s, v) = vote(2, true).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["decided"].clone(), v["submission_status"].clone()),
        (json!(true), json!("approved")),
        "{v}"
    );

    let (_, b) = app.get(&format!("/api/bounties/{id}"), &buyer.token).await;
    assert_eq!(
        (b["status"].clone(), b["escrow_cents"].clone()),
        (json!("completed"), json!(0)),
        "{b}"
    );
    assert_eq!(
        cents(&app.balance(&submitter.token).await, "frozen_cents"),
        1_800
    );
    let mut gained = Vec::new();
    for (w, was) in validators.iter().zip(&before) {
        gained.push(cents(&app.balance(&w.token).await, "available_cents") - was);
    }
    assert_eq!(gained, [25, 0, 25]);
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        start - 2_000,
        "the buyer paid the reward, nothing for the votes"
    );
    let (_, told) = app.get("/api/notifications", &buyer.token).await;
    assert!(
        told["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "bounty.completed"),
        "{told}"
    );
    let (_, told) = app.get("/api/notifications", &validators[1].token).await;
    let decided = told["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "vote.decided")
        .cloned();
    assert_eq!(
        decided.map(|n| n["data"]["with_majority"].clone()),
        Some(json!(false)),
        "{told}"
    );
    app.assert_audit().await;
}
