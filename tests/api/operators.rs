//! What an operator runs into: admin tokens that rotate and revoke, one process per data
//! directory.

use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn admin_tokens_rotate_with_the_environment_and_revoke_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let flags = store_flags(tmp.path());
    let on = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(flags.iter().cloned());
        all
    };
    let run = |args: &[&str]| {
        let all = on(args);
        clawjobs(&all.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let old = "cja_first_admin_token";
    let new = "cja_second_admin_token";

    let mut app = start_with_env(tmp.path(), &[("CLAWJOBS_ADMIN_TOKEN", old)]).await;
    let (s, _) = app.get("/api/admin/qa/stats", old).await;
    assert_eq!(s, StatusCode::OK);
    app.stop();

    // A new value replaces the old one: the old token no longer opens /api/admin.
    let mut app = start_with_env(tmp.path(), &[("CLAWJOBS_ADMIN_TOKEN", new)]).await;
    let (s, v) = app.get("/api/admin/qa/stats", old).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, _) = app.get("/api/admin/qa/stats", new).await;
    assert_eq!(s, StatusCode::OK);

    if !on_mongodb() {
        // While the server runs, the command refuses to touch its data directory (a MongoDB
        // database is shared by design).
        let (ok, _, err) = run(&["admin", "tokens", "list"]);
        assert!(
            !ok && err.contains("in use by another clawjobs process"),
            "{err}"
        );
    }
    app.stop();

    // A named token, made offline, works; the list shows both with their labels.
    let (ok, token, err) = run(&["admin", "tokens", "create", "--label", "ops"]);
    assert!(ok, "{err}");
    let token = token.trim().to_string();
    assert!(token.starts_with("cja_"), "{token}");
    let (ok, list, err) = run(&["admin", "tokens", "list"]);
    assert!(ok, "{err}");
    let labels: Vec<&str> = list
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(labels, ["env", "ops"], "{list}");
    assert!(
        !list.contains(&token) && !list.contains(new),
        "tokens are never printed again: {list}"
    );

    let mut app = start_with_env(tmp.path(), &[("CLAWJOBS_ADMIN_TOKEN", new)]).await;
    let (s, _) = app.get("/api/admin/ledger/audit", &token).await;
    assert_eq!(s, StatusCode::OK);
    app.stop();

    // Revoked by its id, it stops working.
    let ops_id = list
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("ops"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let (ok, out, err) = run(&["admin", "tokens", "revoke", &ops_id[..8]]);
    assert!(ok && out.contains("revoked"), "{out} {err}");
    let (ok, _, err) = run(&["admin", "tokens", "revoke", &ops_id]);
    assert!(!ok && err.contains("no admin token"), "{err}");
    let app = start_with_env(tmp.path(), &[("CLAWJOBS_ADMIN_TOKEN", new)]).await;
    let (s, _) = app.get("/api/admin/ledger/audit", &token).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    app.assert_audit().await;
}

#[tokio::test]
async fn a_second_server_cannot_open_a_data_directory_in_use() {
    if on_mongodb() {
        eprintln!("skipped: the data directory's lock is the embedded store's");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let app = start(tmp.path()).await;
    app.patch_config("rate_limits", generous_limits()).await;
    let buyer = app.register("lock@example.com").await;
    let task = app.chat_task(&buyer).await;

    let mut second = Command::new(env!("CARGO_BIN_EXE_clawjobs"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path())
        .env("CLAWJOBS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = eventually("the second server to exit", Duration::from_secs(20), || {
        std::future::ready(second.try_wait().ok().flatten())
    })
    .await;
    assert!(!status.success(), "the second server must refuse to start");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("is in use by another clawjobs process"),
        "{err}"
    );

    // The first one carries on, its pending task untouched.
    let (_, t) = app.get(&format!("/api/task/{task}"), &buyer.token).await;
    assert_eq!(t["status"], "pending");
    app.assert_audit().await;
}
