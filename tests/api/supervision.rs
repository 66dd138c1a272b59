//! The Supervisor supervises: a FeedHub, Dispatcher or QaComparator that panics is restarted and
//! rebuilt from the store, and the marketplace carries on. Debug builds make the actors panic on
//! SIGUSR1 when `CLAWJOBS_DEBUG_CRASH` names them.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;
use crate::realtime::{Sse, frame, ready_ws};

#[tokio::test]
async fn panicking_actors_are_restarted_from_the_store_and_claims_keep_working() {
    let tmp = tempfile::tempdir().unwrap();
    let app = start_with_env(
        tmp.path(),
        &[("CLAWJOBS_DEBUG_CRASH", "dispatcher,feed_hub,qa_comparator")],
    )
    .await;
    app.patch_config("rate_limits", generous_limits()).await;
    let buyer = app.funded_buyer("crash@example.com", 1_000).await;
    let (a, b, c) = (app.worker().await, app.worker().await, app.worker().await);
    let prompt = json!({"type": "code", "input": {"prompt": "the capital of France"}});

    // Before the crash: a task with a shadow twin whose original is already done (its QA group
    // waits for the twin), and a plain task nobody has claimed.
    app.patch_config("qa", qa_rates(0.0, 1.0)).await;
    let (s, original) = app.post_task(&buyer, prompt.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{original}");
    let mut feed = Sse::open(&app, "/api/feed", None, None).await;
    let (s, got) = app.next(&a, 2).await;
    assert_eq!((s, &got["task_id"]), (StatusCode::OK, &original["task_id"]));
    app.submit(
        &a,
        got["task_id"].as_str().unwrap(),
        "Paris is the capital of France.",
    )
    .await;
    let before = feed
        .next(Duration::from_secs(2))
        .await
        .expect("a's completion");
    assert_eq!(before.event, "task_completed");
    app.patch_config("qa", qa_rates(0.0, 0.0)).await;
    let (_, plain) = app.post_task(&buyer, prompt.clone()).await;

    app.signal("USR1");
    eventually("three restarts", Duration::from_secs(10), || async {
        app.metrics()
            .await
            .contains("clawjobs_actor_restarts_total 3\n")
            .then_some(())
    })
    .await;
    // The old feed's stream ended with its hub.
    assert!(
        feed.next(Duration::from_secs(2)).await.is_none(),
        "the old stream ended"
    );

    // Both pending tasks came back from the store and are claimed as before; the twin's worker
    // is not the original's (the store's exclusion still holds).
    let mut claimed = vec![];
    for w in [&b, &c] {
        let (s, t) = app.next(w, 5).await;
        assert_eq!(s, StatusCode::OK, "a recovered task for each worker");
        claimed.push(t["task_id"].as_str().unwrap().to_string());
        app.submit(
            w,
            t["task_id"].as_str().unwrap(),
            "Paris is the capital of France.",
        )
        .await;
    }
    assert!(claimed.contains(&plain["task_id"].as_str().unwrap().to_string()));
    let (s, _) = app.next(&a, 0).await;
    assert_eq!(
        s,
        StatusCode::NO_CONTENT,
        "nothing left, and never the twin for a"
    );

    // The new comparator decides the group that was waiting when the old one died.
    let r = eventually("the QA decision", Duration::from_secs(10), || async {
        let (_, r) = app.get("/api/admin/qa/results", ADMIN_TOKEN).await;
        (r["data"].as_array().map(Vec::len) == Some(1)).then_some(r)
    })
    .await;
    assert_eq!(r["data"][0]["verdict"], "pass", "{r}");

    // The new Dispatcher parks and pushes: a WebSocket worker gets the next post.
    let mut socket = ready_ws(&app, &a.token, 1).await;
    until_parked(&app, 1).await;
    let (_, next) = app.post_task(&buyer, prompt.clone()).await;
    let f = frame(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(f["task"]["task_id"], next["task_id"], "{f}");

    // A client resuming from the old hub's id is told to reset, then gets the new events.
    let mut feed = Sse::open(&app, "/api/feed", None, before.id).await;
    let first = feed.next(Duration::from_secs(2)).await.expect("an event");
    assert_eq!(first.event, "reset", "{first:?}");
    let next = feed
        .next(Duration::from_secs(2))
        .await
        .expect("a completion");
    assert_eq!(next.event, "task_completed");
    app.assert_audit().await;
}
