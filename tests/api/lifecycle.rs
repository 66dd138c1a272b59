//! The core loop: post → claim → submit → settled, with the money checked at each step.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn whole_loop_pays_worker_and_platform() {
    let app = spawn_app().await;
    let buyer = app.register("alice@example.com").await;
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        50,
        "signup credit"
    );

    let (s, est) = app
        .post(
            "/api/task/estimate",
            Some(&buyer.token),
            json!({"type": "code", "input": {"prompt": "fizzbuzz"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{est}");
    assert_eq!(cents(&est, "price_cents"), 5);

    // A worker is already waiting when the task is posted: it gets the task without polling.
    let worker = app.worker().await;
    let parked = {
        let (client, url, token) = (
            app.client.clone(),
            app.url("/api/work/next?wait=10"),
            worker.token.clone(),
        );
        tokio::spawn(async move { client.get(url).bearer_auth(token).send().await.unwrap() })
    };
    until_parked(&app, 1).await;
    let (s, posted) = app
        .post_task(
            &buyer,
            json!({"type": "code", "input": {"prompt": "fizzbuzz"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{posted}");
    assert_eq!(posted["status"], "pending");
    assert_eq!(cents(&posted, "price_cents"), 5);
    assert_eq!(cents(&posted, "balance_after_cents"), 45);
    let task_id = posted["task_id"].as_str().unwrap().to_string();

    let res = parked.await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let offer: serde_json::Value = res.json().await.unwrap();
    assert_worker_view(&offer);
    assert_eq!(offer["task_id"], task_id.as_str());
    assert_eq!(offer["input"], json!({"prompt": "fizzbuzz"}));

    let (s, v) = app.get(&format!("/api/task/{task_id}"), &buyer.token).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("assigned"))
    );

    // The buyer long-polls; the submit wakes it.
    let waiting = {
        let (client, url, token) = (
            app.client.clone(),
            app.url(&format!("/api/task/{task_id}?wait=20")),
            buyer.token.clone(),
        );
        tokio::spawn(async move {
            let started = Instant::now();
            let v: serde_json::Value = client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (v, started.elapsed())
        })
    };
    eventually("the buyer's long-poll", Duration::from_secs(10), || async {
        app.metrics()
            .await
            .contains("clawjobs_task_watchers 1\n")
            .then_some(())
    })
    .await;
    let (s, sub) = app.submit(&worker, &task_id, "def fizzbuzz(): ...").await;
    assert_eq!(s, StatusCode::OK, "{sub}");
    assert_eq!(sub["status"], "accepted");
    // New tier commission 25 %: floor(5 × 0.75) = 3 for the worker, 2 for the platform.
    assert_eq!(cents(&sub, "earned_cents"), 3);
    assert_eq!(sub["tier"], "new");
    assert_eq!(sub["stats"]["tasks_completed"], 1);

    let (done, waited) = waiting.await.unwrap();
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"], json!({"text": "def fizzbuzz(): ..."}));
    assert!(
        waited < Duration::from_secs(10),
        "long-poll returned on completion, not at the end of the wait"
    );

    let wb = app.balance(&worker.token).await;
    assert_eq!(
        (
            cents(&wb, "available_cents"),
            cents(&wb, "frozen_cents"),
            cents(&wb, "total_earned_cents")
        ),
        (0, 3, 3)
    );
    let (_, me) = app.get("/api/worker/me", &worker.token).await;
    assert_eq!(me["earnings"]["frozen_cents"], 3);
    assert_eq!(me["earnings"]["today_cents"], 3);
    assert_eq!(me["earnings"]["withdrawable_cents"], 0);

    // A repeated submit answers the same and pays nothing more.
    let (s, again) = app.submit(&worker, &task_id, "def fizzbuzz(): ...").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(cents(&again, "earned_cents"), 3);
    assert_eq!(cents(&app.balance(&worker.token).await, "frozen_cents"), 3);
    app.assert_audit().await;
}

#[tokio::test]
async fn earnings_unfreeze_when_the_window_ends_and_credit_is_refused_after() {
    let app = spawn_app().await;
    app.patch_config("commissions", json!({"freeze_seconds": 2}))
        .await;
    let buyer = app.register("bob@example.com").await;
    let worker = app.worker().await;
    let task_id = app.chat_task(&buyer).await;
    let (s, _) = app.next(&worker, 5).await;
    assert_eq!(s, StatusCode::OK);
    let (_, sub) = app.submit(&worker, &task_id, "hi").await;
    assert_eq!(cents(&sub, "earned_cents"), 1);
    assert_eq!(cents(&app.balance(&worker.token).await, "frozen_cents"), 1);

    let b = eventually(
        "the lot's release within a second of its window",
        Duration::from_secs(6),
        || async {
            let b = app.balance(&worker.token).await;
            (cents(&b, "available_cents") == 1).then_some(b)
        },
    )
    .await;
    assert_eq!(cents(&b, "frozen_cents"), 0);
    let (s, v) = app
        .post(
            &format!("/api/task/{task_id}/credit"),
            Some(&buyer.token),
            json!({"reason": "late"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "CONFLICT");
    app.assert_audit().await;
}

#[tokio::test]
async fn credit_inside_the_window_reverses_lot_and_commission() {
    let app = spawn_app().await;
    let buyer = app.register("carol@example.com").await;
    let worker = app.worker().await;
    let (_, posted) = app
        .post_task(&buyer, json!({"type": "research", "input": {"q": "why"}}))
        .await;
    let task_id = posted["task_id"].as_str().unwrap().to_string();
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        0
    );
    app.next(&worker, 5).await;
    let (_, sub) = app.submit(&worker, &task_id, "because").await;
    assert_eq!(cents(&sub, "earned_cents"), 37);

    let (s, c) = app
        .post(
            &format!("/api/task/{task_id}/credit"),
            Some(&buyer.token),
            json!({"reason": "wrong"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(
        (
            cents(&c, "credited_cents"),
            cents(&c, "balance_after_cents")
        ),
        (50, 50)
    );
    let wb = app.balance(&worker.token).await;
    assert_eq!(
        (
            cents(&wb, "frozen_cents"),
            cents(&wb, "available_cents"),
            cents(&wb, "total_earned_cents")
        ),
        (0, 0, 0)
    );
    let (_, t) = app.get(&format!("/api/task/{task_id}"), &buyer.token).await;
    assert_eq!(t["status"], "credited");
    let (_, me) = app.get("/api/worker/me", &worker.token).await;
    assert_eq!(me["stats"]["credit_requests"], 1);

    let (s, _) = app
        .post(
            &format!("/api/task/{task_id}/credit"),
            Some(&buyer.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "a task is credited once");
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        50
    );
    app.assert_audit().await;
}

#[tokio::test]
async fn tiers_move_up_with_completed_work_and_lower_the_commission() {
    let app = spawn_app().await;
    app.patch_config(
        "tiers",
        json!({"levels": {"proven": {"min_tasks": 2, "min_completion": 0.5}}}),
    )
    .await;
    let buyer = app.funded_buyer("dave@example.com", 100).await;
    let worker = app.worker().await;
    let mut earned = vec![];
    let mut tiers = vec![];
    for _ in 0..3 {
        let (_, p) = app
            .post_task(&buyer, json!({"type": "code", "input": {"p": 1}}))
            .await;
        let id = p["task_id"].as_str().unwrap().to_string();
        app.next(&worker, 5).await;
        let (_, s) = app.submit(&worker, &id, "ok").await;
        earned.push(cents(&s, "earned_cents"));
        tiers.push(s["tier"].as_str().unwrap().to_string());
    }
    // 25 % while new (3 of 5), then 20 % once proven (4 of 5).
    assert_eq!(tiers, ["new", "proven", "proven"]);
    assert_eq!(earned, [3, 3, 4]);
    let (_, me) = app.get("/api/worker/me", &worker.token).await;
    assert_eq!(me["tier"], "proven");
    assert_eq!(me["tier_progress"]["next"]["tier"], "trusted");
    app.assert_audit().await;
}

#[tokio::test]
async fn own_tasks_are_listed_newest_first_with_a_cursor() {
    let app = spawn_app().await;
    let buyer = app.register("erin@example.com").await;
    let other = app.register("frank@example.com").await;
    let mut ids = vec![];
    for _ in 0..5 {
        ids.push(app.chat_task(&buyer).await);
    }
    app.chat_task(&other).await;
    let mut seen = vec![];
    let mut cursor = String::new();
    loop {
        let (s, page) = app
            .get(&format!("/api/tasks?limit=2&cursor={cursor}"), &buyer.token)
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        for t in page["data"].as_array().unwrap() {
            seen.push(t["task_id"].as_str().unwrap().to_string());
        }
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        cursor = page["cursor"].as_str().unwrap().to_string();
    }
    ids.reverse();
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn config_changes_are_validated_versioned_and_in_force_at_once() {
    let app = spawn_app().await;
    let buyer = app.register("gina@example.com").await;
    let (_, before) = app.get("/api/admin/config/pricing", ADMIN_TOKEN).await;
    let v1 = before["version"].as_i64().unwrap();

    let mut bad = before.clone();
    bad["code"]["base_cents"] = json!(-3);
    let (s, err) = app
        .json(
            Method::PUT,
            "/api/admin/config/pricing",
            Some(ADMIN_TOKEN),
            Some(&bad),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["code"], "VALIDATION_ERROR");
    let (_, same) = app.get("/api/admin/config/pricing", ADMIN_TOKEN).await;
    assert_eq!(same, before, "a refused change changes nothing");

    app.patch_config(
        "pricing",
        json!({"code": {"base_cents": 7}, "poetry": {"base_cents": 3}}),
    )
    .await;
    let (_, est) = app
        .post(
            "/api/task/estimate",
            Some(&buyer.token),
            json!({"type": "code", "input": {}}),
        )
        .await;
    assert_eq!(cents(&est, "price_cents"), 7);
    let (s, _) = app
        .post_task(&buyer, json!({"type": "poetry", "input": {"topic": "sea"}}))
        .await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "a type added to pricing is accepted at once"
    );
    let (_, after) = app.get("/api/admin/config/pricing", ADMIN_TOKEN).await;
    assert_eq!(after["version"].as_i64().unwrap(), v1 + 1);
    assert_eq!(after["updated_by"], "admin");

    // A stale version is refused rather than silently overwriting another admin's change.
    let mut stale = after.clone();
    stale["version"] = json!(v1);
    let (s, _) = app
        .json(
            Method::PUT,
            "/api/admin/config/pricing",
            Some(ADMIN_TOKEN),
            Some(&stale),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = app.get("/api/admin/config/nonsense", ADMIN_TOKEN).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn preferences_decide_which_tasks_a_worker_gets() {
    let app = spawn_app().await;
    let buyer = app.funded_buyer("hana@example.com", 100).await;
    let coder = app
        .worker_with(json!({"profile": {"preferences": {"accept": ["code"], "min_price": 5}}}))
        .await;
    app.chat_task(&buyer).await;
    let (s, _) = app.next(&coder, 1).await;
    assert_eq!(
        s,
        StatusCode::NO_CONTENT,
        "a chat task is not offered to a code-only worker"
    );
    let (_, p) = app
        .post_task(&buyer, json!({"type": "code", "input": {"p": 1}}))
        .await;
    let (s, offer) = app.next(&coder, 1).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(offer["task_id"], p["task_id"]);

    let (s, prof) = app
        .json(Method::PATCH, "/api/worker/profile", Some(&coder.token), Some(&json!({"preferences": {"accept": ["chat"]}, "limits": {"daily_max_tasks": 50, "concurrent": 2}})))
        .await;
    assert_eq!(s, StatusCode::OK, "{prof}");
    assert_eq!(prof["preferences"]["accept"], json!(["chat"]));
    assert_eq!(prof["limits"]["concurrent"], 2);
    let (s, offer) = app.next(&coder, 1).await;
    assert_eq!(s, StatusCode::OK, "the chat task is now accepted: {offer}");
    assert_eq!(offer["type"], "chat");
}

/// The rounding rule: the worker's share is rounded down but never to nothing. A 1-cent
/// translate at the new tier's 25 % would pay floor(0.75) = 0; it pays the worker the cent.
#[tokio::test]
async fn a_one_cent_task_pays_its_worker_a_cent() {
    let app = spawn_app().await;
    let buyer = app.register("cent@example.com").await;
    let worker = app.worker().await;
    let (s, posted) = app
        .post_task(
            &buyer,
            json!({"type": "translate", "input": {"text": "hola", "to": "en"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{posted}");
    assert_eq!(cents(&posted, "price_cents"), 1);
    let task_id = posted["task_id"].as_str().unwrap();
    let (s, _) = app.next(&worker, 2).await;
    assert_eq!(s, StatusCode::OK);
    let (s, sub) = app.submit(&worker, task_id, "hello").await;
    assert_eq!(s, StatusCode::OK, "{sub}");
    assert_eq!(cents(&sub, "earned_cents"), 1);
    let b = app.balance(&worker.token).await;
    assert_eq!(cents(&b, "frozen_cents"), 1);
    // And a credit gives the buyer the whole cent back.
    let (s, c) = app
        .post(
            &format!("/api/task/{task_id}/credit"),
            Some(&buyer.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(cents(&c, "credited_cents"), 1);
    app.assert_audit().await;
}

#[tokio::test]
async fn a_worker_lists_its_earnings_and_sees_when_frozen_money_frees_up() {
    let app = spawn_app().await;
    app.patch_config("commissions", json!({"freeze_seconds": 3}))
        .await;
    let buyer = app.funded_buyer("erin@example.com", 500).await;
    let worker = app.worker().await;
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (_, posted) = app
            .post_task(&buyer, json!({"type": "code", "input": {"prompt": "x"}}))
            .await;
        let task_id = posted["task_id"].as_str().unwrap().to_string();
        app.next(&worker, 5).await;
        let (s, _) = app.submit(&worker, &task_id, "fn main() {}").await;
        assert_eq!(s, StatusCode::OK);
        tasks.push(task_id);
    }
    let (s, _) = app
        .post(
            &format!("/api/task/{}/credit", tasks[0]),
            Some(&buyer.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // Newest first, one page at a time.
    let (s, page) = app.get("/api/worker/earnings?limit=1", &worker.token).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(page["has_more"], true);
    let newest = &page["data"][0];
    assert_eq!(newest["task_id"], tasks[1].as_str());
    assert_eq!(newest["type"], "code");
    assert_eq!(newest["status"], "frozen");
    assert_eq!(
        cents(newest, "earned_cents") + cents(newest, "commission_cents"),
        5
    );
    let cursor = page["cursor"].as_str().unwrap();
    let (_, older) = app
        .get(
            &format!("/api/worker/earnings?limit=1&cursor={cursor}"),
            &worker.token,
        )
        .await;
    assert_eq!(older["data"][0]["task_id"], tasks[0].as_str());
    assert_eq!(
        older["data"][0]["status"], "reversed",
        "the buyer was credited"
    );
    assert_eq!(older["has_more"], false);

    // `me` says when the frozen earning frees up, and how much.
    let (_, me) = app.get("/api/worker/me", &worker.token).await;
    assert_eq!(me["earnings"]["next_release_at"], newest["frees_at"]);
    assert_eq!(
        cents(&me["earnings"], "next_release_cents"),
        cents(newest, "earned_cents")
    );
    eventually("the earning's release", Duration::from_secs(8), || async {
        let (_, page) = app.get("/api/worker/earnings", &worker.token).await;
        (page["data"][0]["status"] == "released").then_some(())
    })
    .await;
    let (_, me) = app.get("/api/worker/me", &worker.token).await;
    assert!(
        me["earnings"]
            .get("next_release_at")
            .is_none_or(Value::is_null),
        "{me}"
    );

    // Someone else's token or a bad cursor changes nothing and says why.
    let (s, _) = app.get("/api/worker/earnings", &buyer.token).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = app
        .get("/api/worker/earnings?cursor=abc", &worker.token)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR"))
    );
    app.assert_audit().await;
}
