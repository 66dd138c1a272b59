//! Bad input gets a clear error in the envelope and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

fn assert_envelope(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    assert!(v["error"]["details"].is_object(), "{v}");
}

#[tokio::test]
async fn bad_requests_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let buyer = app.register("olga@example.com").await;
    let other = app.register("pete@example.com").await;
    let worker = app.worker().await;
    let task_id = app.chat_task(&buyer).await;
    let before = app.balance(&buyer.token).await;

    // Unknown type, bad shapes, missing fields.
    for body in [
        json!({"type": "astrology", "input": {}}),
        json!({"type": "Chat!", "input": {}}),
        json!({"type": "chat", "input": "not an object"}),
        json!({"type": "chat"}),
        json!({"input": {}}),
        json!({"type": "chat", "input": {}, "constraints": {"timeout_seconds": 0}}),
        json!({"type": "chat", "input": {}, "constraints": {"timeout_sec": 30}}),
        json!({"type": "translate", "input": {"segments": []}}),
    ] {
        let (s, v) = app.post_task(&buyer, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} → {v}");
        assert_envelope(&v, "VALIDATION_ERROR");
    }
    // Malformed JSON.
    let r = app
        .client
        .post(app.url("/api/task"))
        .bearer_auth(&buyer.token)
        .header("content-type", "application/json")
        .body("{\"type\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_envelope(&r.json().await.unwrap(), "VALIDATION_ERROR");

    // Oversized bodies.
    let big = |n: usize| "x".repeat(n);
    let (s, v) = app
        .post(
            "/api/auth/register",
            None,
            json!({"email": "q@example.com", "password": big(17 * 1024)}),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_envelope(&v, "PAYLOAD_TOO_LARGE");
    let (s, v) = app
        .post_task(
            &buyer,
            json!({"type": "chat", "input": {"text": big(129 * 1024)}}),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_envelope(&v, "PAYLOAD_TOO_LARGE");
    let (s, _) = app
        .post_task(
            &buyer,
            json!({"type": "chat", "input": {"text": big(100 * 1024)}}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "100 KB of input is within the limit"
    );
    let (s, offer) = app.next(&worker, 2).await;
    assert_eq!(s, StatusCode::OK);
    let claimed = offer["task_id"].as_str().unwrap().to_string();
    let (s, v) = app.submit(&worker, &claimed, &big(257 * 1024)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_envelope(&v, "PAYLOAD_TOO_LARGE");
    let (s, v) = app
        .post(
            "/api/work/submit",
            Some(&worker.token),
            json!({"task_id": claimed, "output": "plain"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = app
        .post(
            "/api/work/submit",
            Some(&worker.token),
            json!({"output": {"text": "x"}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // Tokens: missing, unknown, wrong role.
    let (s, v) = app.json(Method::GET, "/api/balance", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_envelope(&v, "UNAUTHORIZED");
    let (s, _) = app.get("/api/balance", "cjb_nonsense").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = app.get("/api/work/next", &buyer.token).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_envelope(&v, "FORBIDDEN");
    let (s, _) = app
        .post_task(
            &Buyer {
                user_id: worker.worker_id.clone(),
                token: worker.token.clone(),
            },
            json!({"type": "chat", "input": {}}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.get("/api/admin/ledger/audit", &buyer.token).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Another buyer's task is not found, not forbidden: its existence is not revealed.
    let (s, v) = app.get(&format!("/api/task/{task_id}"), &other.token).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_envelope(&v, "NOT_FOUND");
    let (s, _) = app
        .post(
            &format!("/api/task/{task_id}/credit"),
            Some(&other.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .get("/api/task/task_doesnotexist?wait=abc", &buyer.token)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Not enough money: 402 and nothing changes.
    let (s, v) = app
        .post_task(&other, json!({"type": "research", "input": {"q": "x"}}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app
        .post_task(&other, json!({"type": "research", "input": {"q": "y"}}))
        .await;
    assert_eq!(s, StatusCode::PAYMENT_REQUIRED, "{v}");
    assert_envelope(&v, "INSUFFICIENT_BALANCE");
    assert_eq!(v["error"]["details"]["needed_cents"], 50);
    assert_eq!(
        cents(&app.balance(&other.token).await, "available_cents"),
        0
    );
    let (_, list) = app.get("/api/tasks", &other.token).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    // Registration: bad email, weak password, duplicate.
    for body in [
        json!({"email": "nope", "password": "long enough pw"}),
        json!({"email": "r@example.com", "password": "short"}),
        json!({"email": "r@example.com"}),
    ] {
        let (s, v) = app.post("/api/auth/register", None, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    }
    let (s, v) = app
        .post(
            "/api/auth/register",
            None,
            json!({"email": "OLGA@example.com", "password": "another password"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, _) = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": "olga@example.com", "password": "wrong password"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": "olga@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The login token sees the same account: only the 100 KB chat task (2 cents) was charged since.
    let now = app.balance(v["token"].as_str().unwrap()).await;
    assert_eq!(
        cents(&now, "available_cents"),
        cents(&before, "available_cents") - 2
    );

    let (s, v) = app.get("/api/no/such/thing", &buyer.token).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_envelope(&v, "NOT_FOUND");
    app.assert_audit().await;
}
