//! Object-level authorization as a matrix: every endpoint that takes an id (task, bounty,
//! submission, dispute, webhook, delivery, notification, deposit, withdrawal), called with
//! another user's id by every role (and by nobody), answers 401, 403 or 404, reveals nothing of
//! the object, and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// What only the owner may read; none of it may appear in an answer to anyone else.
const TASK_OUTPUT: &str = "owner-only-task-output-19af";
const SUBMISSION: &str = "owner-only-submission-content-77c3";
const HOOK_PATH: &str = "/owner-only-hook-path-5e02";
const DISPUTE_REASON: &str = "owner-only-dispute-reason-a1b9";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Nobody,
    OtherBuyer,
    OwnerWorker,
    OtherWorker,
    Admin,
    Owner,
}

fn in_hours(h: i64) -> String {
    let t = chrono::Utc::now() + chrono::Duration::hours(h);
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn every_object_is_out_of_reach_of_everyone_but_its_owners() {
    let app = spawn_app_with_env(&[("CLAWJOBS_WEBHOOKS_ALLOW_PRIVATE", "1")]).await;
    let owner = app.funded_buyer("owner@example.com", 5_000).await;
    let other_buyer = app.funded_buyer("other@example.com", 5_000).await;
    let (x, y) = (app.worker().await, app.worker().await);

    // The owner's objects: a completed task, a bounty with X's rejected and disputed
    // submission, a webhook with a delivery, notifications.
    let (s, hook) = app
        .post(
            "/api/webhooks",
            Some(&owner.token),
            json!({"url": format!("http://127.0.0.1:9{HOOK_PATH}"), "events": ["task.completed"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let hook_id = hook["webhook_id"].as_str().unwrap().to_string();
    let hook_secret = hook["secret"].as_str().unwrap().to_string();
    let task_id = app.chat_task(&owner).await;
    let (_, work) = app.next(&x, 5).await;
    assert_eq!(work["task_id"], json!(task_id));
    let (s, v) = app.submit(&x, &task_id, TASK_OUTPUT).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let delivery_id = eventually("a delivery", std::time::Duration::from_secs(10), || async {
        let (_, d) = app
            .get(&format!("/api/webhooks/{hook_id}/deliveries"), &owner.token)
            .await;
        d["data"][0]["delivery_id"].as_str().map(str::to_string)
    })
    .await;
    let (s, b) = app
        .post(
            "/api/bounties",
            Some(&owner.token),
            json!({"title": "Translate the manual", "description": "All of it.",
                   "criteria": "Fluent", "reward_cents": 1_000, "deadline": in_hours(48)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let bounty_id = b["bounty_id"].as_str().unwrap().to_string();
    let (s, sub) = app
        .post(
            &format!("/api/bounties/{bounty_id}/submissions"),
            Some(&x.token),
            json!({"content": {"answer": SUBMISSION}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sub}");
    let sid = sub["submission_id"].as_str().unwrap().to_string();
    let sub_path = format!("/api/bounties/{bounty_id}/submissions/{sid}");
    let (s, v) = app
        .post(
            &format!("{sub_path}/reject"),
            Some(&owner.token),
            json!({"reason": "not fluent"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, d) = app
        .post(
            &format!("{sub_path}/dispute"),
            Some(&x.token),
            json!({"reason": DISPUTE_REASON}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let dispute_id = d["dispute_id"].as_str().unwrap().to_string();
    let (_, notes) = app.get("/api/notifications", &owner.token).await;
    let note_ids: Vec<String> = notes["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["read"] == json!(false))
        .map(|n| n["notification_id"].as_str().unwrap().to_string())
        .collect();
    assert!(!note_ids.is_empty(), "{notes}");

    let (_, bounty_before) = app
        .get(&format!("/api/bounties/{bounty_id}"), &owner.token)
        .await;
    let balance_before = app.balance(&owner.token).await;
    let token = |c: Caller| -> Option<&str> {
        match c {
            Caller::Nobody => None,
            Caller::OtherBuyer => Some(&other_buyer.token),
            Caller::OwnerWorker => Some(&x.token),
            Caller::OtherWorker => Some(&y.token),
            Caller::Admin => Some(&app.admin),
            Caller::Owner => Some(&owner.token),
        }
    };
    use Caller::*;
    let all = [Nobody, OtherBuyer, OwnerWorker, OtherWorker, Admin];
    let not_admin = [Nobody, OtherBuyer, OwnerWorker, OtherWorker, Owner];
    let post = Method::POST;
    let get = Method::GET;
    // (method, path, body, who must be refused). Owners and admins are tested elsewhere; here
    // everyone else.
    let cases: Vec<(Method, String, Value, Vec<Caller>)> = vec![
        (
            get.clone(),
            format!("/api/task/{task_id}"),
            json!(null),
            all.to_vec(),
        ),
        (
            post.clone(),
            format!("/api/task/{task_id}/credit"),
            json!({"reason": "x"}),
            all.to_vec(),
        ),
        (
            post.clone(),
            format!("/api/bounties/{bounty_id}/cancel"),
            json!({}),
            all.to_vec(),
        ),
        (
            post.clone(),
            format!("{sub_path}/approve"),
            json!({}),
            all.to_vec(),
        ),
        (
            post.clone(),
            format!("{sub_path}/reject"),
            json!({"reason": "x"}),
            all.to_vec(),
        ),
        (
            post.clone(),
            format!("{sub_path}/dispute"),
            json!({"reason": "x"}),
            vec![Nobody, OtherBuyer, OtherWorker, Admin, Owner],
        ),
        (
            post.clone(),
            format!("{sub_path}/vote"),
            json!({"approve": true}),
            vec![Nobody, OtherBuyer, OwnerWorker, OtherWorker, Admin, Owner],
        ),
        (
            get.clone(),
            format!("/api/bounties/{bounty_id}/events"),
            json!(null),
            vec![Nobody, OtherBuyer, OtherWorker],
        ),
        (
            get.clone(),
            format!("/api/bounties/{bounty_id}/submissions"),
            json!(null),
            vec![Nobody, OtherBuyer],
        ),
        (
            get.clone(),
            format!("/api/webhooks/{hook_id}"),
            json!(null),
            all.to_vec(),
        ),
        (
            Method::DELETE,
            format!("/api/webhooks/{hook_id}"),
            json!(null),
            all.to_vec(),
        ),
        (
            get.clone(),
            format!("/api/webhooks/{hook_id}/deliveries"),
            json!(null),
            all.to_vec(),
        ),
        (
            post.clone(),
            format!("/api/webhooks/{hook_id}/deliveries/{delivery_id}/retry"),
            json!({}),
            all.to_vec(),
        ),
        (
            post.clone(),
            format!("/api/admin/disputes/{dispute_id}/resolve"),
            json!({"outcome": "worker"}),
            not_admin.to_vec(),
        ),
        (
            get.clone(),
            format!("/api/admin/tasks/{task_id}/timeline"),
            json!(null),
            not_admin.to_vec(),
        ),
        (
            post.clone(),
            "/api/admin/deposits/dep_x/resolve".into(),
            json!({"note": "x"}),
            not_admin.to_vec(),
        ),
        (
            post.clone(),
            "/api/admin/withdrawals/wd_x/complete".into(),
            json!({"external_ref": "x"}),
            not_admin.to_vec(),
        ),
        (
            post.clone(),
            "/api/admin/withdrawals/wd_x/reject".into(),
            json!({"reason": "x"}),
            not_admin.to_vec(),
        ),
    ];
    let secrets = [
        TASK_OUTPUT,
        SUBMISSION,
        HOOK_PATH,
        DISPUTE_REASON,
        hook_secret.as_str(),
    ];
    let mut checked = 0;
    for (method, path, body, refused) in &cases {
        for caller in refused {
            let body = (!body.is_null()).then_some(body);
            let (s, v) = app.json(method.clone(), path, token(*caller), body).await;
            assert!(
                matches!(
                    s,
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
                ),
                "{method} {path} as {caller:?}: {s} {v}"
            );
            assert!(
                v["error"]["code"].is_string(),
                "{method} {path} as {caller:?}: {v}"
            );
            let text = v.to_string();
            for secret in &secrets {
                assert!(
                    !text.contains(secret),
                    "{method} {path} as {caller:?} shows {secret}: {v}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 60, "{checked}");

    // What others may call on the owner's objects shows nothing of them either: the bounty is
    // public, its submissions are not; another's notifications are not marked.
    for caller in [OtherBuyer, OwnerWorker, OtherWorker] {
        let (s, v) = app
            .get(
                &format!("/api/bounties/{bounty_id}"),
                token(caller).unwrap(),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(!v.to_string().contains(SUBMISSION), "{caller:?}: {v}");
        let (s, v) = app
            .post(
                "/api/notifications/read",
                token(caller),
                json!({"ids": note_ids}),
            )
            .await;
        assert_eq!(
            (s, v["marked"].clone()),
            (StatusCode::OK, json!(0)),
            "{caller:?}: {v}"
        );
    }
    let (s, v) = app
        .get(&format!("/api/bounties/{bounty_id}/submissions"), &y.token)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["data"],
        json!([]),
        "another worker sees none of them: {v}"
    );

    // Nothing changed: the task is not credited, the bounty not cancelled, the dispute open,
    // the webhook there, the notifications unread.
    let (_, t) = app.get(&format!("/api/task/{task_id}"), &owner.token).await;
    assert_eq!(
        (t["status"].clone(), t["output"]["text"].clone()),
        (json!("completed"), json!(TASK_OUTPUT))
    );
    let (_, b) = app
        .get(&format!("/api/bounties/{bounty_id}"), &owner.token)
        .await;
    assert_eq!(
        (&b["status"], &b["escrow_cents"]),
        (&bounty_before["status"], &bounty_before["escrow_cents"]),
        "{b}"
    );
    assert_eq!(app.balance(&owner.token).await, balance_before);
    let (s, _) = app
        .get(&format!("/api/webhooks/{hook_id}"), &owner.token)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, notes) = app.get("/api/notifications", &owner.token).await;
    let unread = notes["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["read"] == json!(false))
        .count();
    assert_eq!(unread, note_ids.len(), "{notes}");
    app.assert_audit().await;
}
