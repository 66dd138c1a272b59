//! Buyer webhooks through the API, against a receiver of our own: signed like Stripe's, retried
//! with backoff until the endpoint answers, dead-lettered after the last attempt and retried on
//! request, never held back by someone else's dead endpoint, and kept across a restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::*;

const PRIVATE: (&str, &str) = ("CLAWJOBS_WEBHOOKS_ALLOW_PRIVATE", "1");

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    /// 500 to the next `n` requests, then 200.
    FailFirst(u32),
    /// Reads the request and never answers.
    Hang,
}

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Got {
    signature: String,
    event_id: String,
    body: String,
    answered: u16,
}

#[derive(Default)]
struct Seen {
    got: Vec<Got>,
    /// Requests under way now, and the most there ever were at once.
    open: u32,
    most_open: u32,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    state: Arc<Mutex<(Answer, Seen)>>,
}

impl Receiver {
    async fn start(answer: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hooks/clawjobs", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new((answer, Seen::default())));
        let serving = state.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let state = serving.clone();
                tokio::spawn(async move {
                    // One request per connection is all a test needs (the answer closes it).
                    let Some((head, body)) = read_request(&mut conn).await else {
                        return;
                    };
                    let header = |name: &str| {
                        head.lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.trim()
                                    .eq_ignore_ascii_case(name)
                                    .then(|| v.trim().to_string())
                            })
                            .unwrap_or_default()
                    };
                    let status = {
                        let mut s = state.lock().unwrap();
                        let status = match s.0 {
                            Answer::Hang => 0,
                            Answer::FailFirst(0) => 200,
                            Answer::FailFirst(n) => {
                                s.0 = Answer::FailFirst(n - 1);
                                500
                            }
                        };
                        s.1.got.push(Got {
                            signature: header("clawjobs-signature"),
                            event_id: header("clawjobs-event-id"),
                            body: body.clone(),
                            answered: status,
                        });
                        s.1.open += 1;
                        s.1.most_open = s.1.most_open.max(s.1.open);
                        status
                    };
                    if status == 0 {
                        // Until the sender gives up and closes the connection.
                        let _ = conn.read(&mut [0u8; 1]).await;
                        state.lock().unwrap().1.open -= 1;
                        return;
                    }
                    state.lock().unwrap().1.open -= 1;
                    let text = if status == 200 {
                        "ok"
                    } else {
                        "down for maintenance"
                    };
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                });
            }
        });
        Receiver { url, state }
    }

    fn set(&self, answer: Answer) {
        self.state.lock().unwrap().0 = answer;
    }

    fn got(&self) -> Vec<Got> {
        self.state.lock().unwrap().1.got.clone()
    }

    fn most_at_once(&self) -> u32 {
        self.state.lock().unwrap().1.most_open
    }
}

async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = conn.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
            return Some((head, body));
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// What a receiver checks: `t=…,v1=…` with v1 = HMAC-SHA256(secret, "{t}.{body}"), t recent.
fn signed_by(secret: &str, header: &str, body: &str) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1.push(v.to_string()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (chrono::Utc::now().timestamp() - t).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    v1.contains(&want)
}

/// Quick retries for a test: 200 ms doubling, at most `attempts`, an endpoint has 500 ms.
async fn quick_retries(app: &TestApp, attempts: u32) {
    app.patch_config(
        "webhooks",
        json!({"max_attempts": attempts, "initial_backoff_ms": 200, "max_backoff_ms": 1000, "timeout_ms": 500}),
    )
    .await;
}

async fn register(app: &TestApp, token: &str, url: &str, events: Value) -> (StatusCode, Value) {
    app.post(
        "/api/webhooks",
        Some(token),
        json!({"url": url, "events": events}),
    )
    .await
}

async fn deliveries(app: &TestApp, token: &str, webhook: &str, query: &str) -> Vec<Value> {
    let (s, v) = app
        .get(&format!("/api/webhooks/{webhook}/deliveries{query}"), token)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["data"].as_array().unwrap().clone()
}

/// The newest delivery of `webhook`, once it is delivered.
async fn newest_delivered(app: &TestApp, token: &str, webhook: &str, within: Duration) -> Value {
    eventually("the newest delivery delivered", within, || async move {
        let d = deliveries(app, token, webhook, "").await;
        (d.first()?["status"] == "delivered").then(|| d[0].clone())
    })
    .await
}

/// A task posted by `buyer` and done by a fresh worker.
async fn completed_task(app: &TestApp, buyer: &Buyer) -> String {
    let worker = app.worker().await;
    let task = app.chat_task(buyer).await;
    let (s, v) = app.next(&worker, 5).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app.submit(&worker, &task, "the answer").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    task
}

#[tokio::test]
async fn a_webhook_is_signed_retried_with_backoff_and_delivered_once_it_answers() {
    // With a data key (the embedded store always has one; a MongoDB node when given one), the
    // signing secret is sealed at rest.
    let key = (
        "CLAWJOBS_DATA_KEY",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    );
    let app = spawn_app_with_env(&[PRIVATE, key]).await;
    app.patch_config("qa", qa_rates(0.0, 0.0)).await;
    quick_retries(&app, 5).await;
    let rx = Receiver::start(Answer::FailFirst(2)).await;
    let buyer = app.funded_buyer("hooks@example.com", 5_000).await;

    let (s, hook) = register(
        &app,
        &buyer.token,
        &rx.url,
        json!(["task.completed", "bounty.submission"]),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_") && secret.len() > 30, "{hook}");
    let id = hook["webhook_id"].as_str().unwrap().to_string();
    // The secret is shown once.
    let (_, list) = app.get("/api/webhooks", &buyer.token).await;
    assert_eq!(list["data"][0]["webhook_id"], id.as_str());
    assert!(list["data"][0].get("secret").is_none(), "{list}");
    assert_eq!(list["events"].as_array().unwrap().len(), 9);
    let found = found_in(&app, &secret).await;
    assert!(
        found.is_empty(),
        "the signing secret is stored in plain in {found:?}"
    );

    let task = completed_task(&app, &buyer).await;
    // Two 500s, then the 200: three POSTs of the same signed event.
    let got = eventually("three attempts", Duration::from_secs(20), || {
        let got = rx.got();
        async move { (got.len() >= 3).then_some(got) }
    })
    .await;
    assert_eq!(
        got.iter().map(|g| g.answered).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["type"], "task.completed");
    assert_eq!(body["data"]["task_id"], task.as_str());
    assert_eq!(body["data"]["status"], "completed");
    assert!(
        body["data"].get("output").is_none(),
        "no task content in a webhook: {body}"
    );
    assert!(body["id"].as_str().unwrap().starts_with("evt_"));
    assert!(body["created_at"].is_string());
    for g in &got {
        assert_eq!(g.body, got[0].body, "every attempt sends the same event");
        assert_eq!(g.event_id, body["id"].as_str().unwrap());
        assert!(
            signed_by(&secret, &g.signature, &g.body),
            "bad signature {}",
            g.signature
        );
        assert!(!signed_by("whsec_wrong", &g.signature, &g.body));
    }

    let d = newest_delivered(&app, &buyer.token, &id, Duration::from_secs(10)).await;
    assert_eq!(d["attempts"], 3, "{d}");
    assert_eq!(d["last_status"], 200);
    assert_eq!(d["type"], "task.completed");
    assert!(d["delivered_at"].is_string());
    assert!(d["next_attempt_at"].is_null());
    let metrics = app.metrics().await;
    for line in [
        "clawjobs_webhook_attempts_total 3\n",
        "clawjobs_webhook_delivered_total 1\n",
        "clawjobs_webhook_dead_total 0\n",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // Events it did not subscribe to are not sent; those it did, are.
    let (s, v) = app
        .json(
            Method::POST,
            &format!("/api/task/{task}/credit"),
            Some(&buyer.token),
            Some(&json!({"reason": "wrong"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let deadline = chrono::Utc::now() + chrono::Duration::hours(48);
    let (s, b) = app
        .post_keyed(
            "/api/bounties",
            &buyer.token,
            json!({"title": "A logo", "description": "SVG", "reward_cents": 1_000,
                   "deadline": deadline.to_rfc3339()}),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let worker = app.worker().await;
    let (s, v) = app
        .post(
            &format!(
                "/api/bounties/{}/submissions",
                b["bounty_id"].as_str().unwrap()
            ),
            Some(&worker.token),
            json!({"content": {"svg": "<svg/>"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let got = eventually("the submission event", Duration::from_secs(10), || {
        let got = rx.got();
        async move { (got.len() >= 4).then_some(got) }
    })
    .await;
    let body: Value = serde_json::from_str(&got[3].body).unwrap();
    assert_eq!(body["type"], "bounty.submission");
    assert_eq!(body["data"]["submission_id"], v["submission_id"]);
    assert_eq!(body["data"]["position"], 1);
    let all = deliveries(&app, &buyer.token, &id, "").await;
    let types: Vec<_> = all.iter().map(|d| d["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["bounty.submission", "task.completed"],
        "no task.credited: not subscribed"
    );
    app.assert_audit().await;
}

#[tokio::test]
async fn a_dead_endpoint_is_dead_lettered_retried_on_request_and_holds_no_one_back() {
    let app = spawn_app_with_env(&[PRIVATE]).await;
    app.patch_config("qa", qa_rates(0.0, 0.0)).await;
    quick_retries(&app, 2).await;
    let dead = Receiver::start(Answer::Hang).await;
    let live = Receiver::start(Answer::FailFirst(0)).await;
    let slow_buyer = app.funded_buyer("slow@example.com", 5_000).await;
    let buyer = app.funded_buyer("quick@example.com", 5_000).await;
    let (_, slow_hook) = register(
        &app,
        &slow_buyer.token,
        &dead.url,
        json!(["task.completed"]),
    )
    .await;
    let (_, hook) = register(&app, &buyer.token, &live.url, json!(["task.completed"])).await;
    let slow_id = slow_hook["webhook_id"].as_str().unwrap().to_string();

    for _ in 0..6 {
        completed_task(&app, &slow_buyer).await;
    }
    completed_task(&app, &buyer).await;
    // The other buyer's event arrives while the dead endpoint swallows its own.
    eventually("the live endpoint's event", Duration::from_secs(10), || {
        let n = live.got().len();
        async move { (n == 1).then_some(()) }
    })
    .await;

    // Each of the dead endpoint's deliveries: two timeouts, then the dead-letter list.
    let dead_letters = eventually("six dead letters", Duration::from_secs(40), || {
        let app = &app;
        let (token, id) = (slow_buyer.token.clone(), slow_id.clone());
        async move {
            let d = deliveries(app, &token, &id, "?status=dead").await;
            (d.len() == 6).then_some(d)
        }
    })
    .await;
    for d in &dead_letters {
        assert_eq!(d["attempts"], 2, "{d}");
        assert!(
            d["last_error"]
                .as_str()
                .unwrap()
                .contains("no answer within 500 ms"),
            "{d}"
        );
        assert!(d["last_status"].is_null());
    }
    assert_eq!(
        deliveries(&app, &slow_buyer.token, &slow_id, "?status=pending")
            .await
            .len(),
        0
    );
    assert_eq!(dead.got().len(), 12, "two attempts each");
    // At most 4 sends to one endpoint at once.
    assert!(dead.most_at_once() <= 4, "{} at once", dead.most_at_once());

    // The buyer fixes the endpoint and sends one again.
    dead.set(Answer::FailFirst(0));
    let first = dead_letters[0]["delivery_id"].as_str().unwrap();
    let (s, v) = app
        .post(
            &format!("/api/webhooks/{slow_id}/deliveries/{first}/retry"),
            Some(&slow_buyer.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "pending");
    assert_eq!(v["attempts"], 0);
    eventually("the retried delivery", Duration::from_secs(10), || {
        let app = &app;
        let (token, id) = (slow_buyer.token.clone(), slow_id.clone());
        async move {
            let d = deliveries(app, &token, &id, "?status=delivered").await;
            (d.len() == 1 && d[0]["delivery_id"] == first).then_some(())
        }
    })
    .await;
    assert_eq!(
        deliveries(&app, &slow_buyer.token, &slow_id, "?status=dead")
            .await
            .len(),
        5
    );
    let _ = hook;
    app.assert_audit().await;
}

#[tokio::test]
async fn pending_deliveries_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let app = start_with_env(tmp.path(), &[PRIVATE]).await;
    app.patch_config("rate_limits", generous_limits()).await;
    app.patch_config("qa", qa_rates(0.0, 0.0)).await;
    // 2 to 4 s before the second attempt: the server is killed before it.
    app.patch_config(
        "webhooks",
        json!({"max_attempts": 5, "initial_backoff_ms": 4_000, "max_backoff_ms": 4_000, "timeout_ms": 500}),
    )
    .await;
    let rx = Receiver::start(Answer::FailFirst(1)).await;
    let buyer = app.funded_buyer("restart-hooks@example.com", 5_000).await;
    let (_, hook) = register(&app, &buyer.token, &rx.url, json!(["task.completed"])).await;
    let id = hook["webhook_id"].as_str().unwrap().to_string();
    completed_task(&app, &buyer).await;
    let d = eventually("the first attempt", Duration::from_secs(10), || {
        let app = &app;
        let (token, id) = (buyer.token.clone(), id.clone());
        async move {
            let d = deliveries(app, &token, &id, "").await;
            (d.first()?["attempts"] == 1).then(|| d[0].clone())
        }
    })
    .await;
    assert_eq!(d["status"], "pending");
    assert_eq!(d["last_status"], 500);
    assert!(d["next_attempt_at"].is_string());
    app.kill9();
    drop(app);

    // The next process finds it pending and sends it when it is due.
    let app = start_with_env(tmp.path(), &[PRIVATE]).await;
    let d = newest_delivered(&app, &buyer.token, &id, Duration::from_secs(20)).await;
    assert_eq!(d["attempts"], 2, "{d}");
    let got = rx.got();
    assert_eq!(
        got.iter().map(|g| g.answered).collect::<Vec<_>>(),
        [500, 200]
    );
    assert_eq!(got[0].body, got[1].body);

    // A delivered one may be sent again on request.
    let did = d["delivery_id"].as_str().unwrap().to_string();
    let (s, v) = app
        .post(
            &format!("/api/webhooks/{id}/deliveries/{did}/retry"),
            Some(&buyer.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "pending");
    eventually("sent again", Duration::from_secs(10), || {
        let n = rx.got().len();
        async move { (n == 3).then_some(()) }
    })
    .await;
    app.assert_audit().await;
}

#[tokio::test]
async fn registrations_are_checked_and_each_buyer_sees_only_its_own() {
    // No private addresses on this server, as in production.
    let app = spawn_app().await;
    let buyer = app.funded_buyer("own-hooks@example.com", 1_000).await;
    let other = app.funded_buyer("other-hooks@example.com", 1_000).await;
    let worker = app.worker().await;
    for (url, events) in [
        ("http://hooks.example.com/x", json!(["task.completed"])),
        ("https://127.0.0.1/x", json!(["task.completed"])),
        ("https://localhost:8080/x", json!(["task.completed"])),
        ("https://169.254.169.254/latest", json!(["task.completed"])),
        ("https://[::1]/x", json!(["task.completed"])),
        (
            "https://user:pw@hooks.example.com/x",
            json!(["task.completed"]),
        ),
        ("not a url", json!(["task.completed"])),
        ("https://hooks.example.com/x", json!([])),
        ("https://hooks.example.com/x", json!(["task.exploded"])),
    ] {
        let (s, v) = register(&app, &buyer.token, url, events).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{url}: {v}");
        assert_eq!(v["error"]["code"], "VALIDATION_ERROR", "{v}");
    }
    let (s, v) = app
        .post(
            "/api/webhooks",
            Some(&buyer.token),
            json!({"url": "https://hooks.example.com/x", "events": ["task.completed"], "extra": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = register(
        &app,
        &worker.token,
        "https://hooks.example.com/x",
        json!(["task.completed"]),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, list) = app.get("/api/webhooks", &buyer.token).await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        0,
        "nothing was stored"
    );

    let (s, hook) = register(
        &app,
        &buyer.token,
        "https://hooks.example.com/clawjobs",
        json!(["deposit.completed", "task.failed"]),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    assert_eq!(hook["events"], json!(["task.failed", "deposit.completed"]));
    let id = hook["webhook_id"].as_str().unwrap();
    // Another buyer's id is not found, whatever is asked of it.
    for (method, path) in [
        (Method::GET, format!("/api/webhooks/{id}")),
        (Method::DELETE, format!("/api/webhooks/{id}")),
        (Method::GET, format!("/api/webhooks/{id}/deliveries")),
        (
            Method::POST,
            format!("/api/webhooks/{id}/deliveries/dlv_x/retry"),
        ),
    ] {
        let (s, v) = app
            .json(method.clone(), &path, Some(&other.token), None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {v}");
    }
    let (s, _) = app
        .get(
            &format!("/api/webhooks/{id}/deliveries?status=lost"),
            &buyer.token,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Ten per buyer (config:webhooks.max_per_buyer).
    for n in 1..10 {
        let (s, v) = register(
            &app,
            &buyer.token,
            &format!("https://hooks.example.com/{n}"),
            json!(["task.completed"]),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (s, v) = register(
        &app,
        &buyer.token,
        "https://hooks.example.com/11",
        json!(["task.completed"]),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    let (s, _) = app
        .json(
            Method::DELETE,
            &format!("/api/webhooks/{id}"),
            Some(&buyer.token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.get(&format!("/api/webhooks/{id}"), &buyer.token).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, list) = app.get("/api/webhooks", &buyer.token).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 9);
}
