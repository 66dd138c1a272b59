//! Security headers on every answer, CORS only for the origins in the settings, and no token in
//! the server's log.

use std::io::Read;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

const APP_ORIGIN: &str = "https://app.example.com";
const EVIL_ORIGIN: &str = "https://evil.example.net";

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = app.client.request(method, app.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_no_cors_by_default() {
    let app = spawn_app().await;
    for (path, status) in [
        ("/api/health", StatusCode::OK),
        ("/api/balance", StatusCode::UNAUTHORIZED),
        ("/api/no-such-endpoint", StatusCode::NOT_FOUND),
        ("/metrics", StatusCode::OK),
        ("/", StatusCode::OK),
    ] {
        let res = raw(&app, Method::GET, path, &[("origin", EVIL_ORIGIN)]).await;
        assert_eq!(res.status(), status, "{path}");
        assert_eq!(
            header(&res, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(header(&res, "x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            header(&res, "referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
        let csp = header(&res, "content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        if path.starts_with("/api/") {
            assert_eq!(header(&res, "cache-control"), Some("no-store"), "{path}");
            assert_eq!(csp, "default-src 'none'; frame-ancestors 'none'", "{path}");
        }
        assert!(
            header(&res, "access-control-allow-origin").is_none(),
            "{path}"
        );
        // Served over plain HTTP here: no HSTS.
        assert!(
            header(&res, "strict-transport-security").is_none(),
            "{path}"
        );
    }
    // The pages keep their own policy: scripts from this server only.
    let res = raw(&app, Method::GET, "/", &[]).await;
    assert!(
        header(&res, "content-security-policy")
            .unwrap_or_default()
            .contains("script-src 'self'")
    );
}

#[tokio::test]
async fn cross_origin_calls_are_allowed_for_the_configured_origins_only() {
    let app = spawn_app_with_env(&[("CLAWJOBS_CORS_ORIGINS", APP_ORIGIN)]).await;
    let preflight = |origin: &'static str| {
        let app = &app;
        async move {
            raw(
                app,
                Method::OPTIONS,
                "/api/task",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    (
                        "access-control-request-headers",
                        "authorization, content-type",
                    ),
                ],
            )
            .await
        }
    };
    let res = preflight(APP_ORIGIN).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        Some(APP_ORIGIN)
    );
    assert!(
        header(&res, "access-control-allow-methods")
            .unwrap_or_default()
            .contains("POST")
    );
    let allowed = header(&res, "access-control-allow-headers").unwrap_or_default();
    assert!(
        allowed.contains("Authorization") && allowed.contains("Idempotency-Key"),
        "{allowed}"
    );
    assert!(header(&res, "access-control-allow-credentials").is_none());
    let res = preflight(EVIL_ORIGIN).await;
    assert_ne!(res.status(), StatusCode::NO_CONTENT);
    assert!(header(&res, "access-control-allow-origin").is_none());

    // A real call from the allowed origin is readable there; from another it is not.
    let buyer = app.register("cors@example.com").await;
    let auth = format!("Bearer {}", buyer.token);
    let res = raw(
        &app,
        Method::GET,
        "/api/balance",
        &[("origin", APP_ORIGIN), ("authorization", &auth)],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        Some(APP_ORIGIN)
    );
    assert!(res.headers().get_all("vary").iter().any(|v| v == "Origin"));
    let res = raw(
        &app,
        Method::GET,
        "/api/balance",
        &[("origin", EVIL_ORIGIN), ("authorization", &auth)],
    )
    .await;
    assert!(header(&res, "access-control-allow-origin").is_none());
}

#[test]
fn a_bad_cors_origin_stops_the_server_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clawjobs"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env(
            "CLAWJOBS_CORS_ORIGINS",
            "https://app.example.com/with/a/path",
        )
        .output()
        .expect("run clawjobs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CORS origin"), "{err}");
}

/// Every token the server hands out or is shown, at the most verbose log level, through sign-up,
/// login, work, admin calls and refused ones: none is in the log.
#[tokio::test]
async fn no_token_ever_appears_in_the_log() {
    let log_path = tempfile::NamedTempFile::new().expect("log file");
    let file = log_path.reopen().expect("reopen");
    let env = [(
        "CLAWJOBS_LOG",
        "trace,h2=info,hyper=info,rustls=info,mongodb=info",
    )];
    let mut app = spawn_app_logging(&env, file).await;
    let buyer = app.funded_buyer("logged@example.com", 1_000).await;
    let (s, login) = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": "logged@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{login}");
    let login_token = login["token"].as_str().expect("a token").to_string();
    let worker = app.worker().await;
    let task = app.chat_task(&buyer).await;
    let (_, work) = app.next(&worker, 5).await;
    assert_eq!(work["task_id"], json!(task));
    app.submit(&worker, &task, "an answer").await;
    let (_, me) = app.get("/api/worker/me", &worker.token).await;
    assert!(me.is_object());
    let wrong = "cjb_not-a-real-token-but-token-shaped-0123456789";
    let (s2, _) = app.get("/api/balance", wrong).await;
    assert_eq!(s2, StatusCode::UNAUTHORIZED);
    let (s3, _) = app.get("/api/admin/qa/stats", &app.admin).await;
    assert_eq!(s3, StatusCode::OK);
    app.stop();
    let mut text = String::new();
    std::fs::File::open(log_path.path())
        .expect("log")
        .read_to_string(&mut text)
        .expect("read log");
    assert!(
        text.len() > 1_000,
        "the log was written: {} bytes",
        text.len()
    );
    let tokens = [
        &buyer.token,
        &login_token,
        &worker.token,
        &app.admin,
        &wrong.to_string(),
    ];
    for t in tokens {
        assert!(!text.contains(t.as_str()), "a token is in the log");
    }
}
