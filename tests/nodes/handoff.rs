//! Work crosses nodes: a task posted on one reaches a worker parked on another, claims stay
//! exclusive, config changes are in force everywhere.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;
use crate::streams::{frame, ready_ws, send};

/// The MongoDB these tests need, or None (skipped) when there is none and none is required.
pub fn mongodb_or_skip() -> bool {
    if std::env::var("CLAWJOBS_TEST_MONGODB_URI").is_ok_and(|u| !u.is_empty()) {
        return true;
    }
    assert!(
        std::env::var_os("CLAWJOBS_REQUIRE_MONGODB").is_none(),
        "CLAWJOBS_REQUIRE_MONGODB is set but CLAWJOBS_TEST_MONGODB_URI is not"
    );
    eprintln!("skipped: CLAWJOBS_TEST_MONGODB_URI is not set");
    false
}

/// Two nodes on one fresh database, rate limits out of the way.
pub async fn two_nodes(db: &std::path::Path) -> (TestApp, TestApp) {
    let a = start_node(db, &[]).await;
    let b = start_node(db, &[]).await;
    a.patch_config("rate_limits", generous_limits()).await;
    (a, b)
}

#[tokio::test]
async fn a_task_posted_on_one_node_reaches_a_worker_parked_on_the_other_within_a_second() {
    if !mongodb_or_skip() {
        return;
    }
    let db = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(db.path()).await;
    let buyer = a.funded_buyer("handoff@example.com", 1_000).await;
    let worker = b.worker().await;

    let b = Arc::new(b);
    let parked = {
        let (b, token) = (b.clone(), worker.token.clone());
        tokio::spawn(async move {
            let (s, v) = b.get("/api/work/next?wait=20", &token).await;
            (s, v, Instant::now())
        })
    };
    until_parked(&b, 1).await;
    let posted_at = Instant::now();
    let task_id = a.chat_task(&buyer).await;
    let (s, v, got_at) = parked.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["task_id"], task_id, "{v}");
    let took = got_at - posted_at;
    eprintln!("posted on A, claimed by a worker parked on B after {took:?}");
    assert!(took < Duration::from_secs(1), "the hand-off took {took:?}");

    // The worker submits through A (a load balancer may send it anywhere); the buyer reads the
    // result on B.
    let (s, v) = a.submit(&worker, &task_id, "hi from node B's worker").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = b.get(&format!("/api/task/{task_id}"), &buyer.token).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("completed")),
        "{v}"
    );
    // B's cached balance of the buyer follows A's debit.
    let balance = eventually(
        "B sees the buyer's debit",
        Duration::from_secs(2),
        || async {
            let v = b.balance(&buyer.token).await;
            (cents(&v, "available_cents") < 1_000 + 100).then_some(v)
        },
    )
    .await;
    assert_eq!(balance, a.balance(&buyer.token).await);
    a.assert_audit().await;
}

#[tokio::test]
async fn a_task_posted_on_one_node_is_pushed_to_a_websocket_worker_on_the_other() {
    if !mongodb_or_skip() {
        return;
    }
    let db = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(db.path()).await;
    let buyer = a.funded_buyer("ws-handoff@example.com", 1_000).await;
    let worker = b.worker().await;
    let mut socket = ready_ws(&b, &worker.token, 1).await;
    until_parked(&b, 1).await;
    let posted_at = Instant::now();
    let task_id = a.chat_task(&buyer).await;
    let f = frame(&mut socket, Duration::from_secs(3)).await;
    let took = posted_at.elapsed();
    eprintln!("posted on A, pushed to a socket on B after {took:?}");
    assert_eq!(
        (f["type"].as_str(), f["task"]["task_id"].as_str()),
        (Some("task"), Some(task_id.as_str())),
        "{f}"
    );
    assert!(took < Duration::from_secs(1), "the hand-off took {took:?}");
    send(
        &mut socket,
        json!({"type": "submit", "task_id": task_id, "output": {"text": "hi"}}),
    )
    .await;
    let r = frame(&mut socket, Duration::from_secs(3)).await;
    assert_eq!(r["status"], "accepted", "{r}");
    let (_, v) = a.get(&format!("/api/task/{task_id}"), &buyer.token).await;
    assert_eq!(v["status"], "completed", "{v}");
}

#[tokio::test]
async fn claims_stay_exclusive_across_nodes() {
    if !mongodb_or_skip() {
        return;
    }
    let db = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(db.path()).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let buyer = a.funded_buyer("exclusive@example.com", 10_000).await;
    const TASKS: usize = 24;
    let mut posted = HashSet::new();
    for _ in 0..TASKS {
        posted.insert(a.chat_task(&buyer).await);
    }
    // Two workers on each node claim as fast as they can until nothing is left.
    let mut claimers = Vec::new();
    for node in [a.clone(), b.clone(), a.clone(), b.clone()] {
        let worker = node
            .worker_with(
                json!({"profile": {"limits": {"daily_max_tasks": 1000, "concurrent": 100}}}),
            )
            .await;
        claimers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let (s, v) = node.next(&worker, 0).await;
                if s == StatusCode::NO_CONTENT {
                    return (node, worker, got);
                }
                assert_eq!(s, StatusCode::OK, "{v}");
                got.push(v["task_id"].as_str().unwrap().to_string());
            }
        }));
    }
    let mut claimed = Vec::new();
    let mut holders = Vec::new();
    for c in claimers {
        let (node, worker, got) = c.await.unwrap();
        claimed.extend(got.iter().cloned());
        holders.push((node, worker, got));
    }
    let unique: HashSet<&String> = claimed.iter().collect();
    assert_eq!(
        unique.len(),
        claimed.len(),
        "a task was claimed twice: {claimed:?}"
    );
    assert_eq!(unique.len(), TASKS, "every task claimed once");
    assert!(unique.iter().all(|id| posted.contains(*id)));
    for (node, worker, got) in &holders {
        for id in got {
            let (s, v) = node.submit(worker, id, "done").await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
    }
    b.assert_audit().await;
}

#[tokio::test]
async fn a_config_change_on_one_node_is_in_force_on_the_other_within_a_second() {
    if !mongodb_or_skip() {
        return;
    }
    let db = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(db.path()).await;
    let (s, before) = b.get("/api/admin/config/dispatch", ADMIN_TOKEN).await;
    assert_eq!(s, StatusCode::OK, "{before}");
    let changed_at = Instant::now();
    a.patch_config("dispatch", json!({"min_timeout_seconds": 7}))
        .await;
    let after = eventually("B has A's change", Duration::from_secs(1), || async {
        let (_, v) = b.get("/api/admin/config/dispatch", ADMIN_TOKEN).await;
        (v["version"] != before["version"]).then_some(v)
    })
    .await;
    eprintln!("in force on B after {:?}", changed_at.elapsed());
    assert_eq!(after["min_timeout_seconds"], 7, "{after}");
    // In force, not only shown: B refuses a timeout under the new minimum.
    let buyer = b.funded_buyer("config@example.com", 1_000).await;
    let (s, v) = b
        .post_task(
            &buyer,
            json!({"type": "chat", "input": {"messages": [{"role": "user", "content": "x"}]},
                   "constraints": {"timeout_seconds": 5}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}
