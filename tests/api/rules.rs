//! Lifecycle rules: exclusive claims, deadlines, suspension, failure and refund, idempotency.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

/// Deadlines short enough for tests.
async fn fast_deadlines(app: &TestApp, max_attempts: u32) {
    app.patch_config(
        "dispatch",
        json!({"min_timeout_seconds": 1, "max_attempts": max_attempts}),
    )
    .await;
}

async fn quick_task(app: &TestApp, buyer: &Buyer) -> String {
    let (s, v) = app
        .post_task(buyer, json!({"type": "chat", "input": {"messages": [{"role": "user", "content": "hi"}]}, "constraints": {"timeout_seconds": 1}}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["task_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_claim_is_exclusive() {
    let app = spawn_app().await;
    let buyer = app.register("ivy@example.com").await;
    let mut waiting = vec![];
    for _ in 0..8 {
        let w = app.worker().await;
        let (client, url) = (app.client.clone(), app.url("/api/work/next?wait=3"));
        waiting.push(tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(w.token)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    until_parked(&app, 8).await;
    app.chat_task(&buyer).await;
    let mut got = 0;
    for h in waiting {
        match h.await.unwrap() {
            StatusCode::OK => got += 1,
            StatusCode::NO_CONTENT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(got, 1, "exactly one of the waiting workers gets the task");
}

#[tokio::test]
async fn a_missed_deadline_requeues_and_the_late_submit_is_refused() {
    let app = spawn_app().await;
    fast_deadlines(&app, 5).await;
    let buyer = app.register("jack@example.com").await;
    let slow = app.worker().await;
    let fast = app.worker().await;
    let task_id = quick_task(&app, &buyer).await;
    let (s, _) = app.next(&slow, 2).await;
    assert_eq!(s, StatusCode::OK);

    // Within a second of the deadline the task is back and another worker gets it.
    let (s, offer) = app.next(&fast, 5).await;
    assert_eq!(s, StatusCode::OK, "the task came back to the queue");
    assert_eq!(offer["task_id"], task_id.as_str());

    let (s, v) = app.submit(&slow, &task_id, "too late").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "TASK_EXPIRED");
    let (s, _) = app.submit(&fast, &task_id, "on time").await;
    assert_eq!(s, StatusCode::OK);

    let stranger = app.worker().await;
    let (s, v) = app.submit(&stranger, &task_id, "mine?").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (_, me) = app.get("/api/worker/me", &slow.token).await;
    assert_eq!(me["stats"]["tasks_expired"], 1);
    assert_eq!(
        cents(&app.balance(&slow.token).await, "frozen_cents"),
        0,
        "the late worker earns nothing"
    );
    app.assert_audit().await;
}

#[tokio::test]
async fn three_expiries_in_a_row_suspend_the_worker() {
    let app = spawn_app().await;
    fast_deadlines(&app, 10).await;
    let buyer = app.register("kate@example.com").await;
    let peeker = app.worker().await;
    for round in 0..3 {
        quick_task(&app, &buyer).await;
        let (s, v) = app.next(&peeker, 5).await;
        assert_eq!(s, StatusCode::OK, "round {round}: {v}");
        // Wait for the deadline to pass and the task to be taken back.
        let other = app.worker().await;
        let (s, offer) = app.next(&other, 5).await;
        assert_eq!(s, StatusCode::OK);
        app.submit(&other, offer["task_id"].as_str().unwrap(), "done")
            .await;
    }
    let (s, v) = app.next(&peeker, 1).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "SUSPENDED");
    assert!(v["error"]["details"]["suspended_until"].is_string());
    let ws = format!(
        "{}?token={}",
        app.url("/api/work/ws").replace("http://", "ws://"),
        peeker.token
    );
    let err = tokio_tungstenite::connect_async(ws).await.unwrap_err();
    assert!(
        err.to_string().contains("403"),
        "a suspended worker's socket is refused: {err}"
    );
    let (_, me) = app.get("/api/worker/me", &peeker.token).await;
    assert!(me["suspended_until"].is_string(), "{me}");
    assert_eq!(me["stats"]["tasks_expired"], 3);
    app.assert_audit().await;
}

#[tokio::test]
async fn a_task_out_of_attempts_fails_and_refunds_the_buyer() {
    let app = spawn_app().await;
    fast_deadlines(&app, 1).await;
    let buyer = app.register("liam@example.com").await;
    let worker = app.worker().await;
    let task_id = quick_task(&app, &buyer).await;
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        48
    );
    app.next(&worker, 2).await;
    let (s, t) = app
        .get(&format!("/api/task/{task_id}?wait=5"), &buyer.token)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        50,
        "escrow refunded"
    );
    app.assert_audit().await;
}

#[tokio::test]
async fn idempotency_key_replays_a_post_without_charging_twice() {
    let app = spawn_app().await;
    let buyer = app.register("mia@example.com").await;
    let body = json!({"type": "code", "input": {"p": "x"}});
    let send = |key: &'static str, body: serde_json::Value| {
        let (client, url, token) = (
            app.client.clone(),
            app.url("/api/task"),
            buyer.token.clone(),
        );
        async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (s1, a) = send("k-1", body.clone()).await;
    let (s2, b) = send("k-1", body.clone()).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(a, b, "the repeat gets the first answer");
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        45,
        "charged once"
    );
    let (s, v) = send("k-1", json!({"type": "code", "input": {"p": "other"}})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (_, list) = app.get("/api/tasks", &buyer.token).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    app.assert_audit().await;
}

#[tokio::test]
async fn a_worker_holds_no_more_than_its_concurrent_limit() {
    let app = spawn_app().await;
    let buyer = app.register("noah@example.com").await;
    let worker = app.worker().await;
    app.chat_task(&buyer).await;
    app.chat_task(&buyer).await;
    let (s, _) = app.next(&worker, 1).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = app.next(&worker, 1).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
}

#[tokio::test]
async fn rate_limits_come_from_the_config_and_answer_429() {
    let app = spawn_app_with_default_limits().await;
    // Shipped default: 3 registrations a minute from one address.
    let buyer = app.register("rl1@example.com").await;
    app.register("rl2@example.com").await;
    let worker = app.worker().await;
    let r = app
        .client
        .post(app.url("/api/auth/register"))
        .json(&json!({"email": "rl4@example.com", "password": "long enough pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "RATE_LIMITED");

    // New workers may call work/next twice a minute.
    for _ in 0..2 {
        let (s, _) = app.next(&worker, 0).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let (s, v) = app.next(&worker, 0).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");

    // Posting: lower the limit at run time; it is in force for the next request.
    app.patch_config("rate_limits", json!({"task_submit": {"per_min": 2}}))
        .await;
    app.chat_task(&buyer).await;
    app.chat_task(&buyer).await;
    let before = app.balance(&buyer.token).await;
    let (s, v) = app
        .post_task(&buyer, json!({"type": "chat", "input": {}}))
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(
        app.balance(&buyer.token).await,
        before,
        "a refused post charges nothing"
    );
    app.assert_audit().await;
}

#[tokio::test]
async fn the_daily_cap_stops_claims_for_the_day() {
    let app = spawn_app().await;
    let buyer = app.register("olive@example.com").await;
    let worker = app
        .worker_with(json!({"profile": {"limits": {"daily_max_tasks": 1, "concurrent": 1}}}))
        .await;
    let first = app.chat_task(&buyer).await;
    app.chat_task(&buyer).await;
    let (s, _) = app.next(&worker, 1).await;
    assert_eq!(s, StatusCode::OK);
    app.submit(&worker, &first, "done").await;
    let (s, _) = app.next(&worker, 1).await;
    assert_eq!(
        s,
        StatusCode::NO_CONTENT,
        "one task a day, as the worker asked"
    );
    let other = app.worker().await;
    let (s, _) = app.next(&other, 1).await;
    assert_eq!(s, StatusCode::OK, "the task is still there for others");
}

#[tokio::test]
async fn credits_and_admin_credits_are_idempotent_by_key() {
    let app = spawn_app().await;
    let buyer = app.register("pia@example.com").await;
    let worker = app.worker().await;
    let task_id = app.chat_task(&buyer).await;
    app.next(&worker, 2).await;
    app.submit(&worker, &task_id, "x").await;
    let credit = |key: &'static str| {
        let (client, url, token) = (
            app.client.clone(),
            app.url(&format!("/api/task/{task_id}/credit")),
            buyer.token.clone(),
        );
        async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(&json!({"reason": "bad"}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (s1, a) = credit("c-1").await;
    let (s2, b) = credit("c-1").await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(a, b, "the repeat answers the same");
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        50,
        "credited once"
    );
    let (s, _) = credit("c-2").await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "a new key is a new request: the task is already credited"
    );

    let admin_credit = |key: &'static str, cents: i64| {
        let (client, url, user) = (
            app.client.clone(),
            app.url("/api/admin/credit"),
            buyer.user_id.clone(),
        );
        async move {
            let body = json!({"user_id": user, "amount_cents": cents, "reason": "support"});
            let r = client
                .post(url)
                .bearer_auth(ADMIN_TOKEN)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (s, first) = admin_credit("a-1", 25).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let (_, again) = admin_credit("a-1", 25).await;
    assert_eq!(first, again);
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        75
    );
    let (s, _) = admin_credit("a-1", 30).await;
    assert_eq!(s, StatusCode::CONFLICT, "same key, other body");
    for bad in [
        json!({"user_id": buyer.user_id, "amount_cents": 0, "reason": "x"}),
        json!({"user_id": buyer.user_id, "amount_cents": 5, "reason": ""}),
        json!({"user_id": "u_nobody", "amount_cents": 5, "reason": "x"}),
    ] {
        let (s, v) = app.post("/api/admin/credit", Some(ADMIN_TOKEN), bad).await;
        assert!(
            s == StatusCode::BAD_REQUEST || s == StatusCode::NOT_FOUND,
            "{v}"
        );
    }
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        75
    );
    app.assert_audit().await;
}

/// `registration.fingerprint_per_hour`: buyer registrations and worker connects are counted per
/// client — by its `Clawjobs-Fingerprint` header, else by its address and user agent — and a
/// refused one creates nothing.
#[tokio::test]
async fn registrations_are_limited_per_client_fingerprint() {
    let app = spawn_app().await;
    app.patch_config(
        "rate_limits",
        json!({"registration": {"fingerprint_per_hour": 2}}),
    )
    .await;
    let send =
        |path: &'static str, body: serde_json::Value, header: (&'static str, &'static str)| {
            let req = app
                .client
                .post(app.url(path))
                .header(header.0, header.1)
                .json(&body);
            async move { req.send().await.unwrap() }
        };
    let buyer =
        |n: &str| json!({"email": format!("fp-{n}@example.com"), "password": "long enough pw"});
    let fp = |v: &'static str| ("clawjobs-fingerprint", v);

    for n in ["a1", "a2"] {
        let r = send("/api/auth/register", buyer(n), fp("device-a")).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = send("/api/auth/register", buyer("a3"), fp("device-a")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((60..=3600).contains(&retry), "Retry-After {retry}");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "RATE_LIMITED");
    let (s, _) = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": "fp-a3@example.com", "password": "long enough pw"}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a refused registration creates no account"
    );

    // Another client is counted apart; a worker connect counts like a registration.
    let r = send("/api/auth/register", buyer("b1"), fp("device-b")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = send("/api/worker/connect", json!({}), fp("device-b")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = send("/api/worker/connect", json!({}), fp("device-b")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);

    // Without the header, the address and the user agent name the client.
    let by_agent = |ua: &'static str| send("/api/worker/connect", json!({}), ("user-agent", ua));
    for expected in [
        StatusCode::CREATED,
        StatusCode::CREATED,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        assert_eq!(by_agent("agent-one").await.status(), expected);
    }
    assert_eq!(by_agent("agent-two").await.status(), StatusCode::CREATED);
}
