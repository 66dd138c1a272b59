//! Restarts lose nothing: a clean stop and a kill -9 under load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_clean_stop_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let mut app = start(tmp.path()).await;
    app.patch_config("rate_limits", generous_limits()).await;
    let buyer = app.register("quinn@example.com").await;
    let worker = app.worker().await;
    let done = app.chat_task(&buyer).await;
    app.next(&worker, 2).await;
    app.submit(&worker, &done, "ok").await;
    let waiting = app.chat_task(&buyer).await;
    let buyer_balance = app.balance(&buyer.token).await;
    let worker_balance = app.balance(&worker.token).await;
    let audit = app.assert_audit().await;
    app.stop();

    let app = start(tmp.path()).await;
    assert_eq!(
        app.balance(&buyer.token).await,
        buyer_balance,
        "tokens and balances survive"
    );
    assert_eq!(app.balance(&worker.token).await, worker_balance);
    let after = app.assert_audit().await;
    assert_eq!(after["entries"], audit["entries"]);
    let (_, t) = app.get(&format!("/api/task/{done}"), &buyer.token).await;
    assert_eq!(t["status"], "completed");
    // The pending task is offered again.
    let (s, offer) = app.next(&worker, 2).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(offer["task_id"], waiting.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let app = start(tmp.path()).await;
    app.patch_config("dispatch", json!({"min_timeout_seconds": 1}))
        .await;
    let app = Arc::new(app);
    app.patch_config("rate_limits", generous_limits()).await;
    let buyers: Vec<_> = futures_util::future::join_all((0..3).map(|i| {
        let app = app.clone();
        async move {
            app.funded_buyer(&format!("load{i}@example.com"), 100_000)
                .await
        }
    }))
    .await;
    let workers: Vec<_> = futures_util::future::join_all((0..12).map(|_| app.worker())).await;

    let stop = Arc::new(AtomicBool::new(false));
    let posted: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let settled: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let mut load = vec![];
    for (i, b) in buyers.iter().enumerate() {
        let (app, stop, posted, token) =
            (app.clone(), stop.clone(), posted.clone(), b.token.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let body = json!({"type": "chat", "input": {"messages": [{"role": "user", "content": "x"}]}, "constraints": {"timeout_seconds": 2}});
                let Ok(r) = app.client.post(app.url("/api/task")).bearer_auth(&token).json(&body).send().await else { break };
                if r.status() != StatusCode::CREATED {
                    break;
                }
                let Ok(v) = r.json::<serde_json::Value>().await else { break };
                posted.lock().unwrap().push((i, v["task_id"].as_str().unwrap().to_string()));
            }
        }));
    }
    for w in &workers {
        let (app, stop, settled, token) =
            (app.clone(), stop.clone(), settled.clone(), w.token.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let Ok(r) = app
                    .client
                    .get(app.url("/api/work/next?wait=1"))
                    .bearer_auth(&token)
                    .send()
                    .await
                else {
                    break;
                };
                if r.status() != StatusCode::OK {
                    continue;
                }
                let Ok(offer) = r.json::<serde_json::Value>().await else {
                    break;
                };
                let id = offer["task_id"].as_str().unwrap().to_string();
                let body = json!({"task_id": id, "output": {"text": "y"}});
                let Ok(r) = app
                    .client
                    .post(app.url("/api/work/submit"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                else {
                    break;
                };
                if r.status() == StatusCode::OK {
                    let Ok(v) = r.json::<serde_json::Value>().await else {
                        break;
                    };
                    settled
                        .lock()
                        .unwrap()
                        .push((id, v["earned_cents"].as_i64().unwrap()));
                }
            }
        }));
    }
    // The kill lands in the middle of real traffic: once a few hundred posts and settlements are
    // in (fewer on MongoDB, whose test stand-in is far slower under contention).
    let (posts, settlements) = if on_mongodb() { (60, 20) } else { (300, 100) };
    eventually("load to build up", Duration::from_secs(60), || async {
        (posted.lock().unwrap().len() >= posts && settled.lock().unwrap().len() >= settlements)
            .then_some(())
    })
    .await;
    app.kill9();
    stop.store(true, Ordering::SeqCst);
    for h in load {
        let _ = h.await;
    }
    let posted = posted.lock().unwrap().clone();
    let settled = settled.lock().unwrap().clone();
    eprintln!(
        "before the kill: {} posted, {} settled",
        posted.len(),
        settled.len()
    );
    assert!(
        posted.len() > 20 && !settled.is_empty(),
        "the load ran: {} posted, {} settled",
        posted.len(),
        settled.len()
    );

    let app = start(tmp.path()).await;
    app.assert_audit().await;
    for (b, id) in &posted {
        let (s, t) = app.get(&format!("/api/task/{id}"), &buyers[*b].token).await;
        assert_eq!(s, StatusCode::OK, "acknowledged task {id} survived");
        if settled.iter().any(|(sid, _)| sid == id) {
            assert_eq!(
                t["status"], "completed",
                "acknowledged settlement of {id} survived"
            );
        }
    }
    let earned: i64 = futures_util::future::join_all(workers.iter().map(|w| app.balance(&w.token)))
        .await
        .iter()
        .map(|b| cents(b, "total_earned_cents"))
        .sum();
    assert!(
        earned >= settled.iter().map(|(_, e)| e).sum::<i64>(),
        "every acknowledged earning is there"
    );

    // Tasks pending or held at the crash come back and can all be finished. On the MongoDB
    // stand-in (a few contended commands a second) that drain takes minutes, not seconds.
    let new_worker = || {
        app.worker_with(
            json!({"profile": {"limits": {"daily_max_tasks": 1_000_000, "concurrent": 1}}}),
        )
    };
    let mut worker = new_worker().await;
    let drain = Duration::from_secs(if on_mongodb() { 240 } else { 90 });
    let deadline = Instant::now() + drain;
    loop {
        assert!(
            Instant::now() < deadline,
            "tasks never came back after the crash"
        );
        let (s, offer) = app.next(&worker, 3).await;
        if s == StatusCode::SERVICE_UNAVAILABLE {
            continue; // the database was busy: nothing changed, ask again
        }
        if s == StatusCode::FORBIDDEN && offer["error"]["code"] == "SUSPENDED" {
            // Its claims lapsed on a slow node (three expiries suspend): another worker goes on.
            worker = new_worker().await;
            continue;
        }
        if s == StatusCode::OK {
            let (s, v) = app
                .submit(&worker, offer["task_id"].as_str().unwrap(), "after restart")
                .await;
            // With 2 s deadlines a busy node may take a claim back before its submit lands:
            // the task is offered again, and this loop takes it again.
            let lapsed = s == StatusCode::CONFLICT && v["error"]["code"] == "TASK_EXPIRED";
            let busy = s == StatusCode::SERVICE_UNAVAILABLE;
            assert!(s == StatusCode::OK || lapsed || busy, "{s} {v}");
            continue;
        }
        // Nothing offered for a while: every task must now be final.
        let mut open = 0;
        for (b, id) in &posted {
            let (_, t) = app.get(&format!("/api/task/{id}"), &buyers[*b].token).await;
            if t["status"] == "pending" || t["status"] == "assigned" {
                open += 1;
            }
        }
        if open == 0 {
            break;
        }
    }
    app.assert_audit().await;
}

#[tokio::test]
async fn qa_copies_and_who_may_not_have_them_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut app = start(tmp.path()).await;
    app.patch_config("rate_limits", generous_limits()).await;
    app.patch_config("qa", qa_rates(0.0, 1.0)).await;
    let buyer = app.funded_buyer("restart-qa@example.com", 1000).await;
    let (a, b) = (app.worker().await, app.worker().await);
    let original = app.chat_task(&buyer).await;
    let (s, got) = app.next(&a, 2).await;
    assert_eq!(
        (s, got["task_id"].as_str()),
        (StatusCode::OK, Some(original.as_str()))
    );
    app.submit(&a, &original, "Paris, 1889.").await;
    app.stop();

    // After the restart the Dispatcher no longer remembers who had which input; the store does.
    let app = start(tmp.path()).await;
    let (s, v) = app.next(&a, 0).await;
    assert_eq!(
        s,
        StatusCode::NO_CONTENT,
        "the twin of its own task went to a: {v}"
    );
    let (s, twin) = app.next(&b, 2).await;
    assert_eq!(s, StatusCode::OK);
    let twin_id = twin["task_id"].as_str().unwrap().to_string();
    assert_ne!(twin_id, original);
    app.submit(&b, &twin_id, "Paris, 1889.").await;
    let r = eventually(
        "the comparator's decision",
        Duration::from_secs(10),
        || async {
            let (_, r) = app.get("/api/admin/qa/results", ADMIN_TOKEN).await;
            (r["data"][0]["verdict"] == json!("pass")).then_some(r)
        },
    )
    .await;
    assert_eq!(r["data"][0]["qa_task_id"], json!(twin_id));
    app.assert_audit().await;
}
