//! A worker the QA ladder banned on one node is refused on every node.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::handoff::{mongodb_or_skip, two_nodes};
use crate::helpers::*;

const RIGHT: &str = "The Eiffel Tower is in Paris and was finished in 1889.";
const WRONG: &str = "Bananas are yellow and rich in potassium.";

#[tokio::test]
async fn a_ban_decided_on_one_node_holds_on_the_other_within_a_second() {
    if !mongodb_or_skip() {
        return;
    }
    let db = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(db.path()).await;
    let worker = b.worker().await;
    // Three benchmarks injected on A, answered wrongly on B: warning, deduction, ban.
    for (i, q) in ["Name a colour.", "Name a prime.", "Name an ocean."]
        .iter()
        .enumerate()
    {
        let (s, v) = a
            .post(
                "/api/admin/qa/inject",
                Some(ADMIN_TOKEN),
                json!({"type": "chat", "input": {"messages": [{"role": "user", "content": q}]},
                       "expected_output": {"text": RIGHT}, "price_cents": 40 + i}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    for _ in 0..3 {
        let (s, v) = b.next(&worker, 5).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = b
            .submit(&worker, v["task_id"].as_str().unwrap(), WRONG)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    eventually("B bans the worker", Duration::from_secs(10), || async {
        let (s, _) = b.get("/api/worker/me", &worker.token).await;
        (s == StatusCode::FORBIDDEN).then_some(())
    })
    .await;
    let banned_on_b = Instant::now();
    let v = eventually(
        "A refuses the worker too",
        Duration::from_secs(1),
        || async {
            let (s, v) = a.get("/api/worker/me", &worker.token).await;
            (s == StatusCode::FORBIDDEN).then_some(v)
        },
    )
    .await;
    eprintln!("refused on A {:?} after B", banned_on_b.elapsed());
    assert_eq!(v["error"]["code"], "BANNED", "{v}");
    let (s, v) = a.next(&worker, 0).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("BANNED")),
        "{v}"
    );
    a.assert_audit().await;
}
