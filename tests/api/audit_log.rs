//! The audit log: who did what, from where, chained so that a changed entry shows.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// Changes the stored details of entry `seq` behind the server's back, on whichever store it
/// runs.
async fn alter_entry(app: &TestApp, seq: i64, details: &str) {
    let dir = app.data_dir().expect("a server of spawn_app");
    if on_mongodb() {
        use mongodb::bson::{Document, doc};
        let uri = mongodb_flags(dir).pop().expect("the URI");
        let client = mongodb::Client::with_uri_str(&uri).await.expect("client");
        let db = client.default_database().expect("a database in the URI");
        let changed = db
            .collection::<Document>("audit_log")
            .update_one(doc! { "seq": seq }, doc! { "$set": { "details": details } })
            .await
            .expect("update");
        assert_eq!(changed.modified_count, 1);
    } else {
        let c = rusqlite::Connection::open(dir.join("clawjobs.db")).expect("open");
        c.busy_timeout(std::time::Duration::from_secs(5))
            .expect("busy timeout");
        let n = c
            .execute(
                "UPDATE audit_log SET details = ?1 WHERE id = ?2",
                rusqlite::params![details, seq],
            )
            .expect("update");
        assert_eq!(n, 1);
    }
}

fn entries(page: &Value) -> Vec<Value> {
    page["data"].as_array().expect("data").clone()
}

#[tokio::test]
async fn the_audit_log_records_who_did_what_from_where_and_shows_a_changed_entry() {
    let app = spawn_app().await; // its QA rates and rate limits were put by the admin
    let buyer = app.register("audited@example.com").await;
    let res = app
        .client
        .post(app.url("/api/admin/credit"))
        .bearer_auth(&app.admin)
        .header("user-agent", "audit-console/3.0")
        .json(&json!({"user_id": buyer.user_id, "amount_cents": 1234, "reason": "goodwill"}))
        .send()
        .await
        .expect("credit");
    assert_eq!(res.status(), StatusCode::OK);
    let (s, v) = app
        .post(
            "/api/admin/supervisor/jobs/purge_idempotency/run",
            Some(&app.admin),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");

    let (s, page) = app.get("/api/admin/audit-log?limit=100", &app.admin).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let all = entries(&page);
    let actions: Vec<&str> = all.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "supervisor_job_run",
            "admin.credit",
            "config.put",
            "config.put"
        ],
        "newest first: {page}"
    );
    let credit = &all[1];
    assert_eq!(credit["ip"], "127.0.0.1");
    assert_eq!(credit["user_agent"], "audit-console/3.0");
    assert_eq!(credit["details"]["user_id"], json!(buyer.user_id));
    assert_eq!(credit["details"]["amount_cents"], 1234);
    assert_eq!(credit["details"]["reason"], "goodwill");
    assert_eq!(credit["actor_id"], all[2]["actor_id"], "the same admin");
    for pair in all.windows(2) {
        assert_eq!(
            pair[0]["seq"].as_i64(),
            pair[1]["seq"].as_i64().map(|s| s + 1)
        );
        assert_eq!(pair[0]["prev_hash"], pair[1]["hash"]);
    }

    // Pages, and one action.
    let (_, first) = app.get("/api/admin/audit-log?limit=1", &app.admin).await;
    assert_eq!(first["has_more"], true);
    let cursor = first["cursor"].as_str().expect("cursor").to_string();
    let (_, second) = app
        .get(
            &format!("/api/admin/audit-log?limit=1&cursor={cursor}"),
            &app.admin,
        )
        .await;
    assert_eq!(entries(&second)[0]["action"], "admin.credit");
    let (_, credits) = app
        .get("/api/admin/audit-log?action=admin.credit", &app.admin)
        .await;
    assert_eq!(entries(&credits).len(), 1);
    assert_eq!(credits["has_more"], false);

    // Admins only, and bad input is refused.
    let (s, _) = app.get("/api/admin/audit-log", &buyer.token).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.get("/api/admin/audit-log/verify", &buyer.token).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for bad in ["action=DROP%20TABLE", "cursor=abc", "limit=0"] {
        let (s, v) = app
            .get(&format!("/api/admin/audit-log?{bad}"), &app.admin)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "VALIDATION_ERROR", "{v}");
    }

    let (s, report) = app.get("/api/admin/audit-log/verify", &app.admin).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checked"], 4);
    assert_eq!(report["head"]["hash"], all[0]["hash"]);
    assert_eq!(report["first_bad"], Value::Null);

    // Someone with the database's keys makes the credit bigger.
    let seq = credit["seq"].as_i64().expect("seq");
    let forged = credit["details"].to_string().replace("1234", "999999");
    alter_entry(&app, seq, &forged).await;
    let (_, report) = app.get("/api/admin/audit-log/verify", &app.admin).await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["first_bad"]["seq"], seq, "{report}");
    let reason = report["first_bad"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("changed"), "{reason}");
    app.assert_audit().await;
}
