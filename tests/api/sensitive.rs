//! Sensitive tasks: input and output sealed at rest. The buyer and the worker holding the task
//! see the plain text; lists and the buyer's stream see an `input_preview`; the store's files
//! (SQLite: every file of the data directory, WAL included) or documents (MongoDB: every
//! collection) hold no byte of the plain text, QA copies included.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::realtime::Sse;

/// A data key for servers on MongoDB, where several nodes must share one (the embedded store
/// makes its own key file).
const KEY: &str = "5f0e1d2c3b4a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

async fn app() -> TestApp {
    if on_mongodb() {
        spawn_app_with_env(&[("CLAWJOBS_DATA_KEY", KEY)]).await
    } else {
        spawn_app().await
    }
}

fn chat(content: &str) -> Value {
    json!({"type": "chat", "input": {"messages": [{"role": "user", "content": content}]}, "sensitive": true})
}

#[tokio::test]
async fn a_sensitive_task_is_plain_only_to_its_buyer_and_worker_and_sealed_in_the_store() {
    let app = app().await;
    // Every buyer task is spot-checked: the copy and the comparator work on sealed content too.
    app.patch_config("qa", qa_rates(1.0, 0.0)).await;
    let buyer = app.funded_buyer("sensitive@example.com", 1_000).await;
    let (a, b) = (app.worker().await, app.worker().await);
    let mut stream = Sse::open(&app, "/api/tasks/events", Some(&buyer.token), None).await;
    let secret_in = "my-unreleased-quarterly-figures-3e9a71";
    let secret_out = "the-answer-only-the-buyer-may-read-b62f04";

    let (s, posted) = app.post_task(&buyer, chat(secret_in)).await;
    assert_eq!(s, StatusCode::CREATED, "{posted}");
    let task_id = posted["task_id"].as_str().expect("task_id").to_string();
    // The list shows the preview, never the content.
    let (_, list) = app.get("/api/tasks", &buyer.token).await;
    let row = &list["data"][0];
    assert_eq!(
        (row["task_id"].as_str(), row["sensitive"].clone()),
        (Some(task_id.as_str()), json!(true))
    );
    let preview = row["input_preview"]
        .as_str()
        .expect("a preview")
        .to_string();
    assert!(
        preview.starts_with("sensitive chat task: 1 message"),
        "{preview}"
    );
    assert!(!list.to_string().contains(secret_in), "{list}");

    // The worker holding it reads the plain input.
    let (s, work) = app.next(&a, 5).await;
    assert_eq!(s, StatusCode::OK, "{work}");
    assert_eq!(work["task_id"], json!(task_id));
    assert_eq!(work["input"]["messages"][0]["content"], secret_in);
    assert_worker_view(&work);
    let (s, v) = app.submit(&a, &task_id, secret_out).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The spot-check copy goes to another worker, plain to it as well, and is compared.
    let (s, copy) = app.next(&b, 5).await;
    assert_eq!(s, StatusCode::OK, "{copy}");
    assert_ne!(copy["task_id"], json!(task_id));
    assert_eq!(copy["input"], work["input"]);
    let (s, v) = app
        .submit(&b, copy["task_id"].as_str().unwrap(), secret_out)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    eventually(
        "the comparison decided",
        Duration::from_secs(10),
        || async {
            let (_, s) = app.get("/api/admin/qa/stats", &app.admin).await;
            (s["overall"]["pass"] == json!(2)).then_some(())
        },
    )
    .await;

    // The buyer reads the output from the task; its stream said "completed" without it.
    let (s, task) = app.get(&format!("/api/task/{task_id}"), &buyer.token).await;
    assert_eq!(s, StatusCode::OK, "{task}");
    assert_eq!(task["output"]["text"], secret_out);
    assert_eq!(
        (task["sensitive"].clone(), task["input_preview"].clone()),
        (json!(true), json!(preview))
    );
    let completed = loop {
        let ev = stream
            .next(Duration::from_secs(5))
            .await
            .expect("the completion on the buyer's stream");
        if ev.event == "task_status" && ev.data["status"] == "completed" {
            break ev.data;
        }
    };
    assert_eq!(completed["sensitive"], json!(true), "{completed}");
    assert!(completed.get("output").is_none(), "{completed}");
    let (_, list) = app.get("/api/tasks", &buyer.token).await;
    assert!(list["data"][0].get("output").is_none(), "{list}");

    // Not a byte of either in the store; the tasks are there, sealed.
    for secret in [secret_in, secret_out] {
        let found = found_in(&app, secret).await;
        assert!(found.is_empty(), "{secret:?} is in {found:?}");
    }
    assert!(
        !found_in(&app, "enc:v1:").await.is_empty(),
        "the sealed texts are stored"
    );
    app.assert_audit().await;
}

/// A node on MongoDB without a data key cannot seal: it refuses sensitive tasks (and only them).
#[tokio::test]
async fn without_a_data_key_sensitive_tasks_are_refused_and_nothing_changes() {
    if !on_mongodb() {
        return; // the embedded store always has its key file
    }
    let app = spawn_app().await;
    let buyer = app.funded_buyer("no-key@example.com", 1_000).await;
    let before = app.balance(&buyer.token).await;
    let (s, v) = app.post_task(&buyer, chat("kept out")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "SENSITIVE_DISABLED", "{v}");
    assert_eq!(app.balance(&buyer.token).await, before);
    let (s, v) = app
        .post_task(
            &buyer,
            json!({"type": "chat", "input": {"messages": [{"role": "user", "content": "plain"}]}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}
