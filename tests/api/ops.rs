//! Operations endpoints and the OpenAPI document.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn health_ready_metrics() {
    let app = spawn_app().await;
    let (s, v) = app.json(Method::GET, "/api/health", None, None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, _) = app.json(Method::GET, "/api/ready", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let buyer = app.register("ops@example.com").await;
    app.chat_task(&buyer).await;
    let text = app.metrics().await;
    assert!(text.contains("clawjobs_tasks_posted_total 1"), "{text}");
    assert!(text.contains("clawjobs_pending_tasks 1"), "{text}");
}

#[tokio::test]
async fn openapi_documents_every_route_the_server_answers() {
    let app = spawn_app().await;
    let (s, doc) = app.json(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    for route in [
        "/api/auth/register",
        "/api/auth/login",
        "/api/balance",
        "/api/task/estimate",
        "/api/task",
        "/api/task/{id}",
        "/api/task/{id}/credit",
        "/api/tasks",
        "/api/worker/connect",
        "/api/work/next",
        "/api/work/submit",
        "/api/worker/profile",
        "/api/worker/me",
        "/api/admin/config/{key}",
        "/api/admin/credit",
        "/api/admin/ledger/audit",
        "/api/admin/qa/results",
        "/api/admin/qa/inject",
        "/api/admin/qa/stats",
        "/api/feed",
        "/api/tasks/events",
        "/api/work/ws",
        "/api/health",
        "/api/ready",
        "/metrics",
    ] {
        assert!(paths.contains_key(route), "{route} is not documented");
    }
    // And nothing documented is missing from the server: each answers something other than
    // "no such endpoint" for its documented method.
    for (path, ops) in paths {
        let concrete = path.replace("{id}", "task_x").replace("{key}", "pricing");
        for method in ops.as_object().unwrap().keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = app
                .call(m, &concrete, None, Some(&Value::Object(Default::default())))
                .await;
            if res
                .headers()
                .get("content-type")
                .is_some_and(|c| c == "text/event-stream")
            {
                continue; // a live stream: it exists
            }
            let v: Value = res.json().await.unwrap_or(Value::Null);
            assert_ne!(v["error"]["message"], "no such endpoint", "{method} {path}");
        }
    }
}
