//! Tier priority: high-value tasks go first to the higher tiers, the rest in arrival order, and
//! `qa.fairness_random` hands some of them out regardless.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

fn analyze() -> Value {
    json!({"type": "analyze", "input": {"text": "Which of these is the odd one out?"}})
}

fn chat() -> Value {
    json!({"type": "chat", "input": {"messages": [{"role": "user", "content": "hello"}]}})
}

/// A worker made `trusted` by two completed tasks (the test lowers the bars to that).
async fn trusted_worker(app: &TestApp, buyer: &Buyer) -> Worker {
    let w = app.worker().await;
    let mut tier = Value::Null;
    for _ in 0..2 {
        let t = app.chat_task(buyer).await;
        let (s, got) = app.next(&w, 5).await;
        assert_eq!(
            (s, got["task_id"].as_str()),
            (StatusCode::OK, Some(t.as_str()))
        );
        let (_, done) = app.submit(&w, &t, "hi").await;
        tier = done["tier"].clone();
    }
    assert_eq!(tier, "trusted");
    w
}

async fn post(app: &TestApp, buyer: &Buyer, body: Value) -> String {
    let (s, v) = app.post_task(buyer, body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["task_id"].as_str().unwrap().to_string()
}

/// A long-poll of `w`, started now, answered with the task id it got, or with what it got
/// instead (the status and body, or the client's error), so that a failure says which.
fn poll(app: &TestApp, w: &Worker) -> tokio::task::JoinHandle<Result<String, String>> {
    let (client, url, token) = (
        app.client.clone(),
        app.url("/api/work/next?wait=25"),
        w.token.clone(),
    );
    let started = std::time::Instant::now();
    tokio::spawn(async move {
        let res = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let status = res.status();
        let body = res
            .text()
            .await
            .map_err(|e| format!("{status}, no body: {e}"))?;
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["task_id"].as_str().map(String::from))
            .ok_or_else(|| format!("{status} after {:?}: {body:?}", started.elapsed()))
    })
}

#[tokio::test]
async fn high_value_tasks_go_to_the_higher_tiers_first_unless_fairness_says_otherwise() {
    let app = spawn_app().await;
    app.patch_config(
        "tiers",
        json!({"priority_min_price_cents": 20, "levels": {
            "proven": {"min_tasks": 1, "min_completion": 0.5},
            "trusted": {"min_tasks": 2, "min_completion": 0.5}}}),
    )
    .await;
    app.patch_config("qa", json!({"fairness_random": 0.0}))
        .await;
    let buyer = app.funded_buyer("priority@example.com", 5_000).await;
    let trusted = trusted_worker(&app, &buyer).await;
    // A newcomer would climb the lowered bars with its first submit: each takes one task and
    // keeps it, so that it is new whenever it asks.
    let mut newcomers = Vec::new();
    for _ in 0..3 {
        newcomers.push(app.worker().await);
    }

    // Both wait, the newcomer longest: the high-value task goes to the trusted worker...
    let by_newcomer = poll(&app, &newcomers[0]);
    until_parked(&app, 1).await;
    let by_trusted = poll(&app, &trusted);
    until_parked(&app, 2).await;
    let high = post(&app, &buyer, analyze()).await;
    assert_eq!(by_trusted.await.unwrap(), Ok(high.clone()));
    let cheap = post(&app, &buyer, chat()).await;
    assert_eq!(by_newcomer.await.unwrap(), Ok(cheap.clone()));
    app.submit(&trusted, &high, "b").await;
    // ...and a cheap one to whoever has waited longest, whatever its tier.
    let by_newcomer = poll(&app, &newcomers[1]);
    until_parked(&app, 1).await;
    let by_trusted = poll(&app, &trusted);
    until_parked(&app, 2).await;
    let cheap = post(&app, &buyer, chat()).await;
    assert_eq!(by_newcomer.await.unwrap(), Ok(cheap.clone()));
    let next = post(&app, &buyer, chat()).await;
    assert_eq!(by_trusted.await.unwrap(), Ok(next.clone()));
    app.submit(&trusted, &next, "hi").await;

    // Waiting tasks, the cheap one older: the trusted worker asking gets the high-value one, a
    // newcomer the oldest.
    let older = post(&app, &buyer, chat()).await;
    let high = post(&app, &buyer, analyze()).await;
    let (_, got) = app.next(&trusted, 0).await;
    assert_eq!(got["task_id"].as_str(), Some(high.as_str()), "{got}");
    app.submit(&trusted, &high, "b").await;
    let (_, got) = app.next(&newcomers[2], 0).await;
    assert_eq!(got["task_id"].as_str(), Some(older.as_str()), "{got}");

    // Fairness 1: tiers are ignored, the trusted worker gets the oldest like anyone.
    app.patch_config("qa", json!({"fairness_random": 1.0}))
        .await;
    let older = post(&app, &buyer, chat()).await;
    let high = post(&app, &buyer, analyze()).await;
    let (_, got) = app.next(&trusted, 0).await;
    assert_eq!(got["task_id"].as_str(), Some(older.as_str()), "{got}");
    // Nothing about the order shows in what a worker sees of a task.
    assert!(
        got.get("priority").is_none() && got.get("rank").is_none(),
        "{got}"
    );
    app.submit(&trusted, &older, "hi").await;
    let (_, got) = app.next(&trusted, 0).await;
    assert_eq!(got["task_id"].as_str(), Some(high.as_str()), "{got}");
    app.submit(&trusted, &high, "b").await;

    // The knobs are validated like every other number.
    for (key, bad) in [
        ("qa", json!({"fairness_random": 1.5})),
        ("tiers", json!({"priority_min_price_cents": -1})),
    ] {
        let path = format!("/api/admin/config/{key}");
        let (_, mut doc) = app.get(&path, ADMIN_TOKEN).await;
        merge(&mut doc, bad);
        if let Some(o) = doc.as_object_mut() {
            o.remove("version");
        }
        let (s, v) = app
            .json(reqwest::Method::PUT, &path, Some(ADMIN_TOKEN), Some(&doc))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    }
    app.assert_audit().await;
}
