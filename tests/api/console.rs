//! The admin console's API: the live actors and their state, a task's timeline (stored, so it
//! survives a restart), the Supervisor's jobs and "run now", the invariant checks, the live stream.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

fn kinds(v: &Value) -> Vec<String> {
    v["kinds"]
        .as_object()
        .map(|k| k.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_console_lists_every_actor_and_drills_into_each() {
    let app = spawn_app().await;
    app.patch_config("qa", qa_rates(0.0, 0.0)).await;
    let buyer = app.funded_buyer("ada@example.com", 200).await;
    for _ in 0..2 {
        app.post_task(&buyer, json!({"type": "code", "input": {"prompt": "x"}}))
            .await;
    }
    let admin = &app.admin;

    let (s, all) = app.get("/api/admin/actors", admin).await;
    assert_eq!(s, StatusCode::OK, "{all}");
    for kind in [
        "Dispatcher",
        "FeedHub",
        "Supervisor",
        "ConfigActor",
        "QaComparator",
        "BalanceActor",
    ] {
        assert!(
            kinds(&all).contains(&kind.to_string()),
            "{kind} missing: {all}"
        );
    }
    let dispatcher = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "Dispatcher")
        .expect("the Dispatcher is listed");
    assert!(
        dispatcher["messages_handled"].as_u64().unwrap() >= 2,
        "{dispatcher}"
    );
    assert!(dispatcher["mailbox_len"].is_u64());

    // Drill into the Dispatcher: two code tasks wait, nobody is parked.
    let (s, d) = app
        .get("/api/admin/actors/Dispatcher/dispatcher", admin)
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["state"]["pending_by_type"]["code"], 2, "{d}");
    assert_eq!(d["state"]["parked_claimers"], 0);

    // The buyer's balance actor, found by its id, shows the balance after the two escrows.
    let (_, found) = app
        .get(
            &format!("/api/admin/actors?kind=BalanceActor&q={}", buyer.user_id),
            admin,
        )
        .await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(
        found["data"][0]["summary"]["available_cents"], 240,
        "{found}"
    );
    let (_, b) = app
        .get(
            &format!("/api/admin/actors/BalanceActor/{}", buyer.user_id),
            admin,
        )
        .await;
    assert_eq!(b["state"]["balance"]["available_cents"], 240, "{b}");

    // Sorted and paged.
    let (_, page) = app
        .get(
            "/api/admin/actors?sort=messages_handled&order=desc&limit=2",
            admin,
        )
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], true);
    let first = page["data"][0]["messages_handled"].as_u64().unwrap();
    let second = page["data"][1]["messages_handled"].as_u64().unwrap();
    assert!(first >= second);
    let (_, next) = app
        .get(
            &format!(
                "/api/admin/actors?sort=messages_handled&order=desc&limit=2&cursor={}",
                page["cursor"].as_str().unwrap()
            ),
            admin,
        )
        .await;
    assert!(next["data"][0]["messages_handled"].as_u64().unwrap() <= second);

    // Wrong input and wrong roles change nothing and say why.
    let (s, v) = app.get("/api/admin/actors?sort=nonsense", admin).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR"))
    );
    let (s, _) = app.get("/api/admin/actors/Dispatcher/nobody", admin).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.get("/api/admin/actors", &buyer.token).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.json(Method::GET, "/api/admin/actors", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_tasks_timeline_follows_it_across_workers_and_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut app = start(tmp.path()).await;
    app.patch_config("rate_limits", generous_limits()).await;
    app.patch_config("qa", qa_rates(0.0, 0.0)).await;
    app.patch_config("dispatch", json!({"min_timeout_seconds": 1}))
        .await;
    app.patch_config("commissions", json!({"freeze_seconds": 1}))
        .await;
    let buyer = app.funded_buyer("bea@example.com", 100).await;
    let (_, posted) = app
        .post_task(
            &buyer,
            json!({"type": "code", "input": {"prompt": "x"}, "constraints": {"timeout_seconds": 1}}),
        )
        .await;
    let task_id = posted["task_id"].as_str().unwrap().to_string();
    let slow = app.worker().await;
    let (s, _) = app.next(&slow, 5).await;
    assert_eq!(s, StatusCode::OK);
    // The first worker lets the deadline pass; the second takes it and answers.
    let fast = app.worker().await;
    let (s, _) = app.next(&fast, 10).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.submit(&fast, &task_id, "fn main() {}").await;
    assert_eq!(s, StatusCode::OK);
    let path = format!("/api/admin/tasks/{task_id}/timeline");
    let events = eventually("the earning's release", Duration::from_secs(10), || async {
        let (_, t) = app.get(&path, &app.admin).await;
        let events: Vec<(String, String)> = t["events"]
            .as_array()?
            .iter()
            .map(|e| {
                (
                    e["event"].as_str().unwrap().to_string(),
                    e["actor"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        events
            .iter()
            .any(|(e, _)| e == "unfrozen")
            .then_some(events)
    })
    .await;
    let expected = [
        ("posted", buyer.user_id.as_str()),
        ("claimed", slow.worker_id.as_str()),
        ("expired", slow.worker_id.as_str()),
        ("claimed", fast.worker_id.as_str()),
        ("submitted", fast.worker_id.as_str()),
        ("unfrozen", "Supervisor"),
    ];
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|(e, a)| (e.as_str(), a.as_str()))
        .collect();
    assert_eq!(got, expected);

    let (_, before) = app.get(&path, &app.admin).await;
    app.stop();
    let app = start(tmp.path()).await;
    let (s, after) = app.get(&path, &app.admin).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(after, before, "the timeline is stored, not remembered");
    let (s, v) = app
        .get("/api/admin/tasks/t_nope/timeline", &app.admin)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    app.assert_audit().await;
}

#[tokio::test]
async fn supervisor_jobs_show_their_runs_and_run_now_on_request() {
    let app = spawn_app().await;
    let admin = &app.admin;
    let (s, jobs) = app.get("/api/admin/supervisor/jobs", admin).await;
    assert_eq!(s, StatusCode::OK, "{jobs}");
    let names: Vec<&str> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "watch",
            "unfreeze",
            "overdue",
            "stale",
            "purge_idempotency",
            "bounties",
            "webhooks",
            "purge_tasks"
        ]
    );
    let purge = |jobs: &Value| jobs["jobs"][4].clone();
    assert_eq!(purge(&jobs)["runs"], 0, "it runs every 10 minutes: {jobs}");
    assert!(purge(&jobs)["next_run"].is_string());

    let (s, v) = app
        .post(
            "/api/admin/supervisor/jobs/purge_idempotency/run",
            Some(admin),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let ran = eventually("the purge's run", Duration::from_secs(5), || async {
        let (_, jobs) = app.get("/api/admin/supervisor/jobs", admin).await;
        (purge(&jobs)["runs"] == 1).then(|| purge(&jobs))
    })
    .await;
    assert_eq!(ran["last_ok"], true, "{ran}");
    assert!(
        ran["last_result"].as_str().unwrap().starts_with("forgot"),
        "{ran}"
    );
    assert!(ran["last_run"].is_string());

    let (s, v) = app
        .post(
            "/api/admin/supervisor/jobs/nope/run",
            Some(admin),
            json!(null),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    let worker = app.worker().await;
    let (s, _) = app
        .post(
            "/api/admin/supervisor/jobs/unfreeze/run",
            Some(&worker.token),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_healthy_server_passes_its_invariants_and_streams_its_figures() {
    let app = spawn_app().await;
    let buyer = app.register("cy@example.com").await;
    app.chat_task(&buyer).await;
    let (s, inv) = app.get("/api/admin/invariants", &app.admin).await;
    assert_eq!(s, StatusCode::OK, "{inv}");
    assert_eq!(inv["ok"], true, "{inv}");
    assert_eq!(inv["ledger"]["ok"], true);

    let mut res = app
        .call(Method::GET, "/api/admin/stream", Some(&app.admin), None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut text = String::new();
    let figures = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let chunk = res.chunk().await.expect("chunk").expect("open");
            text.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(at) = text.find("event: figures\ndata: ") {
                let line = &text[at + 21..];
                if let Some(end) = line.find('\n') {
                    return serde_json::from_str::<Value>(&line[..end]).expect("json");
                }
            }
        }
    })
    .await
    .expect("a figure within a second or two");
    assert_eq!(figures["queue_depth"], 1, "{figures}");
    for field in [
        "tasks_completed_per_s",
        "requests_per_s",
        "p99_latency_ms",
        "ws_sessions",
        "actors",
    ] {
        assert!(figures.get(field).is_some(), "{field} missing: {figures}");
    }
    let (s, _) = app.get("/api/admin/stream", &buyer.token).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn config_versions_are_kept_and_an_old_one_can_be_put_back() {
    let app = spawn_app().await;
    let admin = &app.admin;
    let (_, seeded) = app.get("/api/admin/config/commissions", admin).await;
    let seeded_version = seeded["version"].as_i64().unwrap();
    app.patch_config("commissions", json!({"standard": 0.18}))
        .await;
    let (s, h) = app
        .get("/api/admin/config/commissions/history", admin)
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let versions: Vec<i64> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions[..2], [seeded_version + 1, seeded_version], "{h}");
    assert_eq!(h["versions"][0]["standard"], 0.18);
    assert_eq!(h["versions"][1]["standard"], seeded["standard"]);

    let (s, back) = app
        .post(
            "/api/admin/config/commissions/rollback",
            Some(admin),
            json!({"version": seeded_version}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{back}");
    assert_eq!(
        back["version"],
        seeded_version + 2,
        "a rollback is a new version"
    );
    assert_eq!(back["standard"], seeded["standard"]);
    let (_, now) = app.get("/api/admin/config/commissions", admin).await;
    assert_eq!(now["standard"], seeded["standard"], "in force at once");

    let (s, v) = app
        .post(
            "/api/admin/config/commissions/rollback",
            Some(admin),
            json!({"version": 999}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    let (s, _) = app
        .post(
            "/api/admin/config/nope/rollback",
            Some(admin),
            json!({"version": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let buyer = app.register("dee@example.com").await;
    let (s, _) = app
        .post(
            "/api/admin/config/commissions/rollback",
            Some(&buyer.token),
            json!({"version": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, unchanged) = app.get("/api/admin/config/commissions", admin).await;
    assert_eq!(unchanged["version"], seeded_version + 2);
}
