//! A node dies: what it held is taken back by another.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::handoff::{mongodb_or_skip, two_nodes};
use crate::helpers::*;

#[tokio::test]
async fn the_deadline_of_a_task_held_on_a_killed_node_is_enforced_by_the_other() {
    if !mongodb_or_skip() {
        return;
    }
    let db = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(db.path()).await;
    a.patch_config("dispatch", json!({"min_timeout_seconds": 1}))
        .await;
    let buyer = b.funded_buyer("failover@example.com", 1_000).await;
    let (s, v) = b
        .post_task(
            &buyer,
            json!({"type": "chat", "input": {"messages": [{"role": "user", "content": "x"}]},
                   "constraints": {"timeout_seconds": 1}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let task_id = v["task_id"].as_str().unwrap().to_string();
    let first = a.worker().await;
    let (s, v) = a.next(&first, 5).await;
    assert_eq!(
        (s, v["task_id"].as_str()),
        (StatusCode::OK, Some(task_id.as_str())),
        "{v}"
    );
    a.kill9();

    // B's Supervisor finds the lapsed claim and puts the task back; a worker on B gets it.
    let second = b.worker().await;
    let (s, v) = b.next(&second, 15).await;
    assert_eq!(
        (s, v["task_id"].as_str()),
        (StatusCode::OK, Some(task_id.as_str())),
        "{v}"
    );
    let (s, v) = b.submit(&second, &task_id, "done after the failover").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The first worker's late submit is told the deadline passed.
    let (s, v) = b.submit(&first, &task_id, "too late").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    // The killed node comes back on the same database and serves.
    let a = start_node(db.path(), &[]).await;
    let (s, v) = a.get(&format!("/api/task/{task_id}"), &buyer.token).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("completed")),
        "{v}"
    );
    let worker = b.worker().await;
    let (s, v) = eventually(
        "the first worker's record counts the expiry",
        Duration::from_secs(5),
        || async {
            let (s, v) = a.get("/api/worker/me", &first.token).await;
            (v["stats"]["tasks_expired"] == 1).then_some((s, v))
        },
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    drop(worker);
    a.assert_audit().await;
}
