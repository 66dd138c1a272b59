//! Real time: worker WebSocket sessions, buyer SSE streams, resumable feeds, graceful stop.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

pub(crate) use crate::streams::{Sse, Ws, frame, ready_ws, send, ws};

#[tokio::test]
async fn a_websocket_worker_gets_tasks_pushed_and_is_paid_for_submits() {
    let app = spawn_app().await;
    let buyer = app.register("ws1@example.com").await;
    let worker = app.worker().await;
    let mut socket = ready_ws(&app, &worker.token, 1).await;
    until_parked(&app, 1).await;

    let posted_at = Instant::now();
    let task_id = app.chat_task(&buyer).await;
    let f = frame(&mut socket, Duration::from_secs(3)).await;
    assert!(
        posted_at.elapsed() < Duration::from_secs(2),
        "pushed, not polled"
    );
    assert_eq!(f["type"], "task", "{f}");
    assert_worker_view(&f["task"]);
    assert_eq!(f["task"]["task_id"], task_id.as_str());

    send(
        &mut socket,
        json!({"type": "submit", "task_id": task_id, "output": {"text": "hi"}}),
    )
    .await;
    let r = frame(&mut socket, Duration::from_secs(3)).await;
    assert_eq!(r["type"], "result", "{r}");
    assert_eq!(r["status"], "accepted");
    assert_eq!(r["earned_cents"], 1);
    assert_eq!(r["stats"]["tasks_completed"], 1);
    assert_eq!(r["tier"], "new");
    assert_eq!(
        cents(&app.balance(&worker.token).await, "frozen_cents"),
        1,
        "paid as over HTTP"
    );
    let metrics = app.metrics().await;
    assert!(metrics.contains("clawjobs_ws_sessions 1"), "{metrics}");
    let (_, t) = app.get(&format!("/api/task/{task_id}"), &buyer.token).await;
    assert_eq!(t["status"], "completed");

    // Release gives a held task back at once; another worker can take it.
    let second = app.chat_task(&buyer).await;
    let f = frame(&mut socket, Duration::from_secs(3)).await;
    assert_eq!(f["task"]["task_id"], second.as_str());
    send(&mut socket, json!({"type": "release", "task_id": second})).await;
    let f = frame(&mut socket, Duration::from_secs(3)).await;
    assert_eq!(f, json!({"type": "released", "task_id": second}));
    let other = app.worker().await;
    let (s, offer) = app.next(&other, 2).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(offer["task_id"], second.as_str());
    app.assert_audit().await;
}

#[tokio::test]
async fn a_deadline_expiry_reaches_the_socket() {
    let app = spawn_app().await;
    app.patch_config("dispatch", json!({"min_timeout_seconds": 1}))
        .await;
    let buyer = app.register("ws2@example.com").await;
    let worker = app.worker().await;
    let mut socket = ready_ws(&app, &worker.token, 1).await;
    until_parked(&app, 1).await;
    let (_, posted) = app
        .post_task(
            &buyer,
            json!({"type": "code", "input": {}, "constraints": {"timeout_seconds": 1}}),
        )
        .await;
    let f = frame(&mut socket, Duration::from_secs(3)).await;
    assert_eq!(f["type"], "task");
    let f = frame(&mut socket, Duration::from_secs(4)).await;
    assert_eq!(f, json!({"type": "expired", "task_id": posted["task_id"]}));
    send(
        &mut socket,
        json!({"type": "submit", "task_id": posted["task_id"], "output": {"text": "late"}}),
    )
    .await;
    let f = frame(&mut socket, Duration::from_secs(3)).await;
    assert_eq!(
        (f["type"].as_str(), f["code"].as_str()),
        (Some("error"), Some("TASK_EXPIRED")),
        "{f}"
    );
}

#[tokio::test]
async fn malformed_frames_get_error_frames_and_the_socket_stays_up() {
    let app = spawn_app().await;
    let worker = app.worker().await;
    let mut socket = ws(&app, &worker.token).await;
    for bad in [
        "not json",
        "{\"type\": \"dance\"}",
        "{\"type\": \"submit\"}",
        "{\"type\": \"ready\", \"max\": -1}",
        "[1,2]",
    ] {
        socket.send(Message::Text(bad.into())).await.unwrap();
        let f = frame(&mut socket, Duration::from_secs(2)).await;
        assert_eq!(
            (f["type"].as_str(), f["code"].as_str()),
            (Some("error"), Some("VALIDATION_ERROR")),
            "{bad} → {f}"
        );
        // The same frame shape as every other error: details is always an object.
        assert!(f["details"].is_object(), "{bad} → {f}");
    }
    socket
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    let f = frame(&mut socket, Duration::from_secs(2)).await;
    assert_eq!(f["code"], "VALIDATION_ERROR");
    assert!(f["details"].is_object(), "{f}");
    send(
        &mut socket,
        json!({"type": "submit", "task_id": "task_nope", "output": {"text": "x"}}),
    )
    .await;
    assert_eq!(
        frame(&mut socket, Duration::from_secs(2)).await["code"],
        "NOT_FOUND"
    );
    send(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(
        frame(&mut socket, Duration::from_secs(2)).await,
        json!({"type": "pong"})
    );
}

#[tokio::test]
async fn websocket_auth_is_the_same_as_http() {
    let app = spawn_app().await;
    let buyer = app.register("ws3@example.com").await;
    let url = app.url("/api/work/ws").replace("http://", "ws://");
    let err = tokio_tungstenite::connect_async(url.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let err = tokio_tungstenite::connect_async(format!("{url}?token={}", buyer.token))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let worker = app.worker().await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{url}?token={}", worker.token))
        .await
        .expect("token in the query");
    send(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(
        frame(&mut socket, Duration::from_secs(2)).await["type"],
        "pong"
    );
}

#[tokio::test]
async fn a_buyer_stream_shows_each_status_change_in_order_and_resumes() {
    let app = spawn_app().await;
    let buyer = app.register("sse1@example.com").await;
    let other = app.register("sse2@example.com").await;
    let worker = app.worker().await;
    let mut stream = Sse::open(&app, "/api/tasks/events", Some(&buyer.token), None).await;
    let task_id = app.chat_task(&buyer).await;
    app.chat_task(&other).await;
    let pending = stream.next(Duration::from_secs(3)).await.expect("pending");
    assert_eq!(
        (pending.event.as_str(), pending.data["status"].as_str()),
        ("task_status", Some("pending"))
    );
    assert_eq!(pending.data["task_id"], task_id.as_str());
    let first_id = pending.id.expect("events have ids");
    drop(stream);

    // While disconnected the task is claimed and completed.
    let (_, offer) = app.next(&worker, 2).await;
    let claimed = offer["task_id"].as_str().unwrap().to_string();
    app.submit(&worker, &claimed, "answer").await;
    let (_, offer) = app.next(&worker, 2).await;
    let claimed2 = offer["task_id"].as_str().unwrap().to_string();
    app.submit(&worker, &claimed2, "answer").await;

    let mut resumed = Sse::open(
        &app,
        "/api/tasks/events",
        Some(&buyer.token),
        Some(first_id),
    )
    .await;
    let assigned = resumed
        .next(Duration::from_secs(3))
        .await
        .expect("assigned");
    let completed = resumed
        .next(Duration::from_secs(3))
        .await
        .expect("completed");
    assert_eq!(assigned.data["status"], "assigned");
    assert_eq!(completed.data["status"], "completed");
    assert_eq!(completed.data["output"], json!({"text": "answer"}));
    assert!(first_id < assigned.id.unwrap() && assigned.id < completed.id);
    assert!(
        resumed.next(Duration::from_millis(300)).await.is_none(),
        "another buyer's events are not shown"
    );

    // Live, in order, with a credit at the end.
    let task2 = app.chat_task(&buyer).await;
    let (_, offer) = app.next(&worker, 2).await;
    app.submit(&worker, offer["task_id"].as_str().unwrap(), "again")
        .await;
    app.post(
        &format!("/api/task/{task2}/credit"),
        Some(&buyer.token),
        json!({}),
    )
    .await;
    let mut seen = vec![];
    while let Some(e) = resumed.next(Duration::from_secs(2)).await {
        seen.push(e.data["status"].as_str().unwrap().to_string());
        if seen.len() == 4 {
            break;
        }
    }
    assert_eq!(seen, ["pending", "assigned", "completed", "credited"]);
}

#[tokio::test]
async fn the_public_feed_shows_completions_and_a_stalled_reader_delays_nobody() {
    let app = spawn_app().await;
    let buyer = app.funded_buyer("feed@example.com", 1000).await;
    let worker = app.worker().await;
    // A subscriber that never reads.
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stalled,
        format!("GET /api/feed HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut feed = Sse::open(&app, "/api/feed", None, None).await;
    let started = Instant::now();
    for i in 0..30 {
        let (_, p) = app
            .post_task(
                &buyer,
                json!({"type": "code", "input": {"secret": format!("input {i}")}}),
            )
            .await;
        let (_, offer) = app.next(&worker, 2).await;
        assert_eq!(offer["task_id"], p["task_id"]);
        app.submit(&worker, p["task_id"].as_str().unwrap(), "secret output")
            .await;
        let e = feed
            .next(Duration::from_secs(2))
            .await
            .expect("completion event arrives promptly");
        assert_eq!(e.event, "task_completed");
        assert_eq!(e.data["task_type"], "code");
        assert_eq!(e.data["earned_cents"], 3);
        assert!(e.data["worker"].as_str().unwrap().starts_with("lobster-"));
        let text = e.data.to_string();
        assert!(
            !text.contains("secret")
                && !text.contains(&worker.worker_id)
                && !text.contains(&buyer.user_id),
            "{text}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(stalled);
}

#[tokio::test]
async fn a_graceful_stop_answers_streams_sockets_and_parked_requests() {
    let mut app = spawn_app().await;
    let buyer = app.register("stop@example.com").await;
    let worker = app.worker().await;
    let parked_worker = app.worker().await;
    let mut stream = Sse::open(&app, "/api/tasks/events", Some(&buyer.token), None).await;
    let mut socket = ws(&app, &worker.token).await;
    send(&mut socket, json!({"type": "ready", "max": 1})).await;
    let parked = {
        let (client, url, token) = (
            app.client.clone(),
            app.url("/api/work/next?wait=15"),
            parked_worker.token.clone(),
        );
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status())
        })
    };
    // The socket's ask and the long-poll.
    until_parked(&app, 2).await;
    let started = Instant::now();
    app.stop();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped promptly: {:?}",
        started.elapsed()
    );
    let last = stream
        .next(Duration::from_secs(2))
        .await
        .expect("a final event");
    assert_eq!(last.event, "shutdown");
    let f = frame(&mut socket, Duration::from_secs(2)).await;
    assert_eq!(f["type"], "close", "{f}");
    assert_eq!(
        parked.await.unwrap().unwrap(),
        StatusCode::NO_CONTENT,
        "the parked long-poll was answered"
    );
}

#[tokio::test]
async fn a_silent_socket_is_closed_and_its_task_follows_the_deadline_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let app = start_with_env(tmp.path(), &[("CLAWJOBS_WS_IDLE_SECONDS", "2")]).await;
    app.patch_config("rate_limits", generous_limits()).await;
    app.patch_config("dispatch", json!({"min_timeout_seconds": 1}))
        .await;
    let buyer = app.register("idle@example.com").await;
    let worker = app.worker().await;
    let mut socket = ready_ws(&app, &worker.token, 1).await;
    until_parked(&app, 1).await;
    let (_, posted) = app
        .post_task(
            &buyer,
            json!({"type": "code", "input": {}, "constraints": {"timeout_seconds": 3}}),
        )
        .await;
    // Not reading means not answering pings: after 2 s of silence the server closes the socket
    // (seen in its session count while this client still reads nothing).
    eventually(
        "the silent socket's close",
        Duration::from_secs(10),
        || async {
            app.metrics()
                .await
                .contains("clawjobs_ws_sessions 0\n")
                .then_some(())
        },
    )
    .await;
    let mut closed = false;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(2), socket.next()).await {
        if matches!(msg, Ok(Message::Close(_)) | Err(_)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the silent socket was closed");
    // The task it held comes back at its deadline.
    let other = app.worker().await;
    let (s, offer) = app.next(&other, 5).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(offer["task_id"], posted["task_id"]);
}

#[tokio::test]
async fn ready_max_sets_how_many_tasks_come_at_once() {
    let app = spawn_app().await;
    let buyer = app.funded_buyer("ready@example.com", 100).await;
    let worker = app
        .worker_with(json!({"profile": {"limits": {"concurrent": 2, "daily_max_tasks": 100}}}))
        .await;
    let mut socket = ready_ws(&app, &worker.token, 5).await;
    until_parked(&app, 2).await;
    let (a, b) = (app.chat_task(&buyer).await, app.chat_task(&buyer).await);
    let mut got = vec![];
    for _ in 0..2 {
        let f = frame(&mut socket, Duration::from_secs(3)).await;
        got.push(f["task"]["task_id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        got,
        [a.clone(), b],
        "two at once: ready 5 is capped by limits.concurrent = 2"
    );
    // Pause: nothing more comes; a third task goes to someone else.
    send(&mut socket, json!({"type": "ready", "max": 0})).await;
    until_parked(&app, 0).await;
    send(
        &mut socket,
        json!({"type": "submit", "task_id": a, "output": {"text": "done"}}),
    )
    .await;
    assert_eq!(
        frame(&mut socket, Duration::from_secs(3)).await["type"],
        "result"
    );
    let c = app.chat_task(&buyer).await;
    let other = app.worker().await;
    let (s, offer) = app.next(&other, 2).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        offer["task_id"],
        c.as_str(),
        "the paused socket did not take it"
    );
}

#[tokio::test]
async fn a_new_feed_reader_may_start_with_the_newest_completions() {
    let app = spawn_app().await;
    app.patch_config("qa", qa_rates(0.0, 0.0)).await;
    let buyer = app.funded_buyer("recent@example.com", 1000).await;
    let worker = app.worker().await;
    // A reader from the start, to know when the hub has all three (on MongoDB events reach it
    // through the change stream, a moment after the commit).
    let mut first = Sse::open(&app, "/api/feed", None, None).await;
    for t in ["code", "analyze", "research"] {
        let (_, p) = app
            .post_task(&buyer, json!({"type": t, "input": {"q": "x"}}))
            .await;
        app.next(&worker, 2).await;
        app.submit(&worker, p["task_id"].as_str().unwrap(), "done")
            .await;
    }
    for _ in 0..3 {
        first
            .next(Duration::from_secs(5))
            .await
            .expect("a completion");
    }
    let mut feed = Sse::open(&app, "/api/feed?recent=2", None, None).await;
    let mut seen = Vec::new();
    while let Some(e) = feed.next(Duration::from_millis(500)).await {
        seen.push(e.data["task_type"].as_str().unwrap().to_string());
    }
    assert_eq!(
        seen,
        ["analyze", "research"],
        "the newest two, oldest first"
    );
    // Without `recent`, only what happens from now on; too many is refused.
    let mut live = Sse::open(&app, "/api/feed", None, None).await;
    assert!(live.next(Duration::from_millis(300)).await.is_none());
    let (s, v) = app
        .json(Method::GET, "/api/feed?recent=51", None, None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR"))
    );
}
