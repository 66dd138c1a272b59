//! Task content is purged once its refund window and `retention.grace_seconds` are over: the
//! task keeps its status and price, answers `"purged": true`, and its input and output are
//! nowhere in the store's files (SQLite: the database, its WAL and shared memory, byte by byte)
//! or documents (MongoDB: every collection).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_task_s_content_is_purged_after_its_refund_window_and_is_gone_from_the_store() {
    let app = spawn_app().await;
    // The refund window ends at once; the grace keeps the content for now.
    app.patch_config("commissions", json!({"freeze_seconds": 0}))
        .await;
    let buyer = app.funded_buyer("retention@example.com", 1_000).await;
    let worker = app.worker().await;
    let secret_in = "the-buyer-s-confidential-question-8c41f0";
    let secret_out = "the-worker-s-confidential-answer-57d2e9";
    let (s, posted) = app
        .post_task(
            &buyer,
            json!({"type": "chat", "input": {"messages": [{"role": "user", "content": secret_in}]}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{posted}");
    let task_id = posted["task_id"].as_str().expect("task_id").to_string();
    let (s, work) = app.next(&worker, 5).await;
    assert_eq!(s, StatusCode::OK, "{work}");
    assert_eq!(work["input"]["messages"][0]["content"], secret_in);
    let (s, v) = app.submit(&worker, &task_id, secret_out).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let balance_after = app.balance(&buyer.token).await;

    // Within the grace the buyer reads the output, and the store holds both.
    let (s, task) = app.get(&format!("/api/task/{task_id}"), &buyer.token).await;
    assert_eq!(s, StatusCode::OK, "{task}");
    assert_eq!(
        (task["purged"].clone(), task["output"]["text"].clone()),
        (json!(false), json!(secret_out))
    );
    assert!(
        !found_in(&app, secret_out).await.is_empty(),
        "the store holds the output"
    );
    assert!(
        !found_in(&app, secret_in).await.is_empty(),
        "the store holds the input"
    );

    app.patch_config("retention", json!({"grace_seconds": 0}))
        .await;
    let (s, v) = app
        .post(
            "/api/admin/supervisor/jobs/purge_tasks/run",
            Some(&app.admin),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let task = eventually("the task purged", Duration::from_secs(10), || async {
        let (_, t) = app.get(&format!("/api/task/{task_id}"), &buyer.token).await;
        (t["purged"] == json!(true)).then_some(t)
    })
    .await;
    assert_eq!(task["status"], "completed");
    assert_eq!(task["price_cents"], posted["price_cents"]);
    assert!(task.get("output").is_none(), "{task}");
    assert!(task["completed_at"].is_string());
    // The run has finished once the console says so (the WAL is truncated by then).
    eventually(
        "the purge job finished",
        Duration::from_secs(10),
        || async {
            let (_, jobs) = app.get("/api/admin/supervisor/jobs", &app.admin).await;
            let job = jobs["jobs"]
                .as_array()?
                .iter()
                .find(|j| j["name"] == "purge_tasks")?
                .clone();
            (job["running"] == json!(false) && job["last_ok"] == json!(true)).then_some(())
        },
    )
    .await;
    for secret in [secret_in, secret_out] {
        let found = found_in(&app, secret).await;
        assert!(found.is_empty(), "{secret:?} is still in {found:?}");
    }
    // Money is untouched: the buyer's balance, the worker's released earning, the books.
    assert_eq!(app.balance(&buyer.token).await, balance_after);
    assert!(
        app.metrics()
            .await
            .contains("clawjobs_tasks_purged_total 1\n")
    );
    app.assert_audit().await;
}
