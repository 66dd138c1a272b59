//! Dozens of workers long-polling, hundreds of tasks: each assigned once, all completed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::*;

const WORKERS: usize = 32;
const BUYERS: usize = 4;
const TASKS_PER_BUYER: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_workers_many_tasks_each_assigned_once() {
    let app = Arc::new(spawn_app().await);
    let total = BUYERS * TASKS_PER_BUYER;
    let claimed: Arc<Mutex<Vec<String>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    let mut workers = vec![];
    for _ in 0..WORKERS {
        let w = app.worker().await;
        let (app, claimed, done) = (app.clone(), claimed.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(90);
            while done.load(std::sync::atomic::Ordering::SeqCst) < total
                && Instant::now() < deadline
            {
                let (s, offer) = app.next(&w, 2).await;
                if s == StatusCode::NO_CONTENT {
                    continue;
                }
                assert_eq!(s, StatusCode::OK, "{offer}");
                let id = offer["task_id"].as_str().unwrap().to_string();
                claimed.lock().unwrap().push(id.clone());
                let (s, v) = app.submit(&w, &id, "result").await;
                assert_eq!(s, StatusCode::OK, "{v}");
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
    }

    let mut posted = vec![];
    let mut buyers = vec![];
    for b in 0..BUYERS {
        let buyer = app
            .funded_buyer(&format!("buyer{b}@example.com"), 10_000)
            .await;
        let app = app.clone();
        buyers.push(tokio::spawn(async move {
            let mut ids = vec![];
            for _ in 0..TASKS_PER_BUYER {
                ids.push(app.chat_task(&buyer).await);
            }
            (buyer, ids)
        }));
    }
    for b in buyers {
        posted.push(b.await.unwrap());
    }
    for w in workers {
        w.await.unwrap();
    }

    let claimed = claimed.lock().unwrap().clone();
    let unique: HashSet<_> = claimed.iter().cloned().collect();
    assert_eq!(claimed.len(), total, "every task claimed exactly once");
    assert_eq!(unique.len(), total);
    for (buyer, ids) in &posted {
        for id in ids {
            assert!(unique.contains(id));
            let (_, t) = app.get(&format!("/api/task/{id}"), &buyer.token).await;
            assert_eq!(t["status"], "completed");
        }
        // 50 signup + 10,000 credit − 100 chats at 2 cents.
        assert_eq!(
            cents(&app.balance(&buyer.token).await, "available_cents"),
            50 + 10_000 - 2 * TASKS_PER_BUYER as i64
        );
    }
    app.assert_audit().await;
}
