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
        // A struct is read only from an object (serde alone would take an array).
        json!({"type": "chat", "input": {}, "constraints": [null, null]}),
        json!(["chat", {}]),
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

#[tokio::test]
async fn a_method_a_route_does_not_serve_gets_405_with_allow_and_the_envelope() {
    let app = spawn_app().await;
    let buyer = app.register("allow@example.com").await;
    for (method, path, allow) in [
        ("TRACE", "/api/health", "GET"),
        ("DELETE", "/api/task", "POST"),
        ("PUT", "/api/task/task_x", "GET"),
        ("POST", "/api/admin/config/pricing", "GET, PUT"),
        ("GET", "/api/work/submit", "POST"),
        ("DELETE", "/api/worker/profile", "PATCH"),
    ] {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let r = app.call(m, path, Some(&buyer.token), None).await;
        assert_eq!(
            r.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(
            r.headers().get("allow").and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
        assert_envelope(&r.json().await.unwrap(), "METHOD_NOT_ALLOWED");
    }
}

/// One rule for request bodies: a field the endpoint does not know is refused (a typo would
/// otherwise be silently ignored), at the top level and inside nested objects alike.
#[tokio::test]
async fn unknown_fields_are_refused_everywhere_and_change_nothing() {
    let app = spawn_app().await;
    let buyer = app.register("strict@example.com").await;
    let worker = app.worker().await;
    let task = app.chat_task(&buyer).await;
    let before = app.balance(&buyer.token).await;
    let chat = json!({"messages": [{"role": "user", "content": "hi"}]});
    for (path, token, body) in [
        (
            "/api/task",
            Some(&buyer.token),
            json!({"type": "chat", "input": chat, "priority": "high"}),
        ),
        (
            "/api/task",
            Some(&buyer.token),
            json!({"type": "chat", "input": chat, "constraints": {"timeout_sec": 30}}),
        ),
        (
            "/api/task/estimate",
            Some(&buyer.token),
            json!({"type": "chat", "input": chat, "extra": 1}),
        ),
        (
            "/api/auth/register",
            None,
            json!({"email": "new@example.com", "password": "correct horse battery", "name": "x"}),
        ),
        (
            "/api/worker/connect",
            None,
            json!({"worker_type": "x", "region": "eu"}),
        ),
        (
            "/api/worker/connect",
            None,
            json!({"profile": {"limits": {"concurrent": 1, "daily_max_tasks": 5, "burst": 2}}}),
        ),
        (
            "/api/work/submit",
            Some(&worker.token),
            json!({"task_id": task, "output": {"text": "x"}, "note": "y"}),
        ),
        (
            &format!("/api/task/{task}/credit"),
            Some(&buyer.token),
            json!({"reason": "x", "amount": 5}),
        ),
        (
            "/api/admin/credit",
            Some(&app.admin),
            json!({"user_id": buyer.user_id, "amount_cents": 5, "reason": "x", "memo": "y"}),
        ),
    ] {
        let (s, v) = app
            .post(path, token.map(String::as_str), body.clone())
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path} {body} → {v}");
        assert_envelope(&v, "VALIDATION_ERROR");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("unknown field"),
            "{v}"
        );
    }
    // A body that is there but mistyped is refused too (an empty one means the defaults).
    for body in [
        json!({"profile": {"limits": {"concurrent": "two", "daily_max_tasks": 5}}}),
        json!({"worker_type": 7}),
    ] {
        let (s, v) = app.post("/api/worker/connect", None, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} → {v}");
    }
    let (s, v) = app
        .json(
            Method::PATCH,
            "/api/worker/profile",
            Some(&worker.token),
            Some(&json!({"preferences": {"accept": ["chat"], "favourite": "code"}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(app.balance(&buyer.token).await, before, "nothing moved");
    let (_, t) = app.get(&format!("/api/task/{task}"), &buyer.token).await;
    assert_eq!(t["status"], "pending");
    app.assert_audit().await;
}

#[tokio::test]
async fn errors_name_what_would_have_worked() {
    let app = spawn_app().await;
    let buyer = app.register("words@example.com").await;
    // An unknown config document, read or written: the answer lists the real ones.
    for method in [Method::GET, Method::PUT] {
        let (s, v) = app
            .json(
                method.clone(),
                "/api/admin/config/pricnig",
                Some(&app.admin),
                Some(&json!({})),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {v}");
        let message = v["error"]["message"].as_str().unwrap();
        for key in [
            "pricing",
            "tiers",
            "commissions",
            "signup",
            "qa",
            "rate_limits",
            "dispatch",
            "bounty",
            "webhooks",
            "retention",
        ] {
            assert!(message.contains(key), "{method}: {message}");
        }
    }
    // The wrong role: "an admin token", in plain English.
    let (s, v) = app.get("/api/admin/qa/stats", &buyer.token).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        v["error"]["message"],
        "this needs an admin token, not a buyer token"
    );
}

/// JSON Schema calls `60.0` an integer, and so does the server.
#[tokio::test]
async fn integral_floats_are_read_as_integers() {
    let app = spawn_app().await;
    let buyer = app.register("float@example.com").await;
    let (s, v) = app
        .post_task(
            &buyer,
            json!({"type": "code", "input": {}, "constraints": {"timeout_seconds": 60.0}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, t) = app
        .get(
            &format!("/api/task/{}", v["task_id"].as_str().unwrap()),
            &buyer.token,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t["constraints"]["timeout_seconds"], 60);
    let (s, v) = app
        .post_task(
            &buyer,
            json!({"type": "code", "input": {}, "constraints": {"timeout_seconds": 60.5}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    app.assert_audit().await;
}
