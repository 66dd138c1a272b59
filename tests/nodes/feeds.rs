//! The feeds of every node show what happened on every node, under the same ids.

use std::time::Duration;

use crate::handoff::{mongodb_or_skip, two_nodes};
use crate::streams::Sse;

#[tokio::test]
async fn a_buyer_stream_and_the_public_feed_on_one_node_show_work_done_on_the_other() {
    if !mongodb_or_skip() {
        return;
    }
    let db = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(db.path()).await;
    let buyer = a.funded_buyer("feeds@example.com", 1_000).await;
    let mut stream = Sse::open(&b, "/api/tasks/events", Some(&buyer.token), None).await;
    let mut public = Sse::open(&b, "/api/feed", None, None).await;

    // Posted, claimed and done on A; watched on B.
    let task_id = a.chat_task(&buyer).await;
    let worker = a.worker().await;
    let (_, v) = a.next(&worker, 5).await;
    assert_eq!(v["task_id"], task_id, "{v}");
    let (s, v) = a.submit(&worker, &task_id, "done on A").await;
    assert!(s.is_success(), "{v}");

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let e = stream
            .next(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("B's stream stopped after {seen:?}"));
        if e.event == "task_status" && e.data["task_id"] == task_id {
            seen.push((
                e.id.expect("an id"),
                e.data["status"].as_str().unwrap().to_string(),
            ));
        }
    }
    let statuses: Vec<&str> = seen.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(statuses, ["pending", "assigned", "completed"]);
    let done = public
        .next(Duration::from_secs(5))
        .await
        .expect("B's public feed");
    assert_eq!(done.event, "task_completed", "{done:?}");
    assert_eq!(done.data["task_type"], "chat");

    // The same events under the same ids on A: a client that read the first on B resumes on A.
    let mut resumed = Sse::open(&a, "/api/tasks/events", Some(&buyer.token), Some(seen[0].0)).await;
    let mut rest = Vec::new();
    while rest.len() < 2 {
        let e = resumed
            .next(Duration::from_secs(5))
            .await
            .expect("A replays");
        assert_ne!(e.event, "reset", "{e:?}");
        if e.event == "task_status" {
            rest.push((
                e.id.unwrap(),
                e.data["status"].as_str().unwrap().to_string(),
            ));
        }
    }
    assert_eq!(rest, seen[1..].to_vec());
}
