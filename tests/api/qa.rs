//! Invisible QA: shadows, spot-checks, benchmarks, the comparator's tie-breaker, the penalty
//! ladder, the automatic buyer credit, the admin QA API, and what a worker can (not) see.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::realtime::{Sse, Ws, frame, ready_ws, send, ws};

const RIGHT: &str = "The Eiffel Tower is in Paris and was finished in 1889.";
const RIGHT_TOO: &str = "Finished in 1889, the Eiffel Tower stands in Paris, France.";
const WRONG: &str = "Bananas are yellow and rich in potassium.";
const OTHER_WRONG: &str = "Quantum computers use qubits to factor 2048 bit keys.";

fn id(v: &Value) -> String {
    v["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no task_id in {v}"))
        .to_string()
}

/// Claims a task at once (the queue must have one for this worker).
async fn take(app: &TestApp, w: &Worker) -> Value {
    let (s, v) = app.next(w, 0).await;
    assert_eq!(s, StatusCode::OK, "expected a task: {v}");
    v
}

/// The tie-breaker copy, made by the comparator after the pair disagreed (within 5 s).
async fn tiebreaker(app: &TestApp, w: &Worker) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (s, v) = app.next(w, 1).await;
        if s == StatusCode::OK {
            return v;
        }
        assert!(Instant::now() < deadline, "no tie-breaker copy");
    }
}

async fn nothing_for(app: &TestApp, w: &Worker) {
    let (s, v) = app.next(w, 0).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "expected nothing, got {v}");
}

async fn done(app: &TestApp, w: &Worker, task_id: &str, text: &str) -> Value {
    let (s, v) = app.submit(w, task_id, text).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

/// Waits (the comparator works after the submit answers) until `path` satisfies `ok`.
async fn get_until(app: &TestApp, path: &str, token: &str, ok: impl Fn(&Value) -> bool) -> Value {
    eventually(path, Duration::from_secs(10), || async {
        let (s, v) = app.get(path, token).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        ok(&v).then_some(v)
    })
    .await
}

async fn results(app: &TestApp, query: &str, n: usize) -> Vec<Value> {
    let v = get_until(
        app,
        &format!("/api/admin/qa/results?{query}"),
        ADMIN_TOKEN,
        |v| v["data"].as_array().is_some_and(|d| d.len() >= n),
    )
    .await;
    v["data"].as_array().unwrap().clone()
}

async fn stats(app: &TestApp) -> Value {
    app.get("/api/admin/qa/stats", ADMIN_TOKEN).await.1
}

async fn notices(app: &TestApp, w: &Worker, n: usize) -> Vec<Value> {
    let v = get_until(app, "/api/worker/me", &w.token, |v| {
        v["notices"].as_array().is_some_and(|a| a.len() >= n)
    })
    .await;
    v["notices"].as_array().unwrap().clone()
}

async fn post(app: &TestApp, buyer: &Buyer, content: &str) -> Value {
    let (s, v) = app
        .post_task(
            buyer,
            json!({"type": "chat", "input": {"messages": [{"role": "user", "content": content}]}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

fn worker_ids(r: &Value) -> Vec<String> {
    let mut ids: Vec<String> = r["worker_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn shadows_and_spot_checks_are_paid_by_the_qa_fund_and_compared() {
    let app = spawn_app().await;
    app.patch_config("qa", qa_rates(0.0, 1.0)).await;
    let buyer = app.funded_buyer("qa-shadow@example.com", 10_000).await;
    let start = cents(&app.balance(&buyer.token).await, "available_cents");
    let (a, b, c) = (app.worker().await, app.worker().await, app.worker().await);

    // Shadow: the twin enters the queue beside the original; the buyer pays once.
    let posted = post(&app, &buyer, "Where is the Eiffel Tower?").await;
    let price = cents(&posted, "price_cents");
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        start - price
    );
    let original = take(&app, &a).await;
    assert_eq!(id(&original), id(&posted));
    let paid_a = done(&app, &a, &id(&original), RIGHT).await;
    nothing_for(&app, &a).await; // never the twin of its own task
    let twin = take(&app, &b).await;
    assert_ne!(id(&twin), id(&posted));
    for field in ["type", "input", "constraints", "price_cents"] {
        assert_eq!(twin[field], original[field], "{field}");
    }
    let paid_b = done(&app, &b, &id(&twin), RIGHT_TOO).await;
    assert_eq!(paid_b["earned_cents"], paid_a["earned_cents"]);
    let r = &results(&app, "", 1).await[0];
    assert_eq!(
        (&r["qa_type"], &r["verdict"]),
        (&json!("shadow"), &json!("pass"))
    );
    assert_eq!(
        (r["task_id"].as_str(), r["qa_task_id"].as_str()),
        (Some(id(&posted).as_str()), Some(id(&twin).as_str()))
    );
    assert_eq!(worker_ids(r), sorted(&[&a.worker_id, &b.worker_id]));
    assert!(r["similarity"].as_f64().unwrap() >= 0.7, "{r}");
    for d in ["factual", "depth", "accuracy"] {
        assert!(r["dimensions"][d].is_number(), "{r}");
    }
    // The buyer was charged once, sees one task and got the original's output.
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        start - price
    );
    let (_, list) = app.get("/api/tasks", &buyer.token).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    let (_, mine) = app
        .get(&format!("/api/task/{}", id(&posted)), &buyer.token)
        .await;
    assert_eq!(mine["output"]["text"], json!(RIGHT));
    // The twin's worker was paid from the QA fund (its commission went back there).
    let s = stats(&app).await;
    assert_eq!(
        s["qa_fund_cents"],
        json!(-cents(&paid_b, "earned_cents")),
        "{s}"
    );
    assert_eq!(
        (&s["overall"]["pass"], &s["waiting"]),
        (&json!(2), &json!(0))
    );

    // Spot-check: a copy of an accepted task; the pair disagrees, a third worker breaks the tie
    // and the copy's worker is the odd one out. The buyer's good original is not credited.
    app.patch_config("qa", qa_rates(1.0, 0.0)).await;
    let posted = post(&app, &buyer, "When was the Eiffel Tower finished?").await;
    let original = take(&app, &a).await;
    assert_eq!(id(&original), id(&posted));
    done(&app, &a, &id(&original), RIGHT).await;
    nothing_for(&app, &a).await;
    let copy = take(&app, &b).await;
    assert_eq!(copy["price_cents"], original["price_cents"]);
    done(&app, &b, &id(&copy), WRONG).await;
    // Neither of the two gets the tie-breaker.
    let tiebreak = tiebreaker(&app, &c).await;
    nothing_for(&app, &a).await;
    nothing_for(&app, &b).await;
    assert_eq!(tiebreak["input"], original["input"]);
    done(&app, &c, &id(&tiebreak), RIGHT_TOO).await;
    let r = &results(&app, "verdict=fail", 1).await[0];
    assert_eq!(r["qa_type"], json!("spot_check"));
    assert_eq!(r["blamed_worker_id"], json!(b.worker_id));
    assert_eq!(r["tiebreak_task_id"], json!(id(&tiebreak)));
    assert_eq!(
        worker_ids(r),
        sorted(&[&a.worker_id, &b.worker_id, &c.worker_id])
    );
    assert_eq!(notices(&app, &b, 1).await[0]["kind"], json!("warning"));
    let (_, me_a) = app.get("/api/worker/me", &a.token).await;
    assert_eq!(me_a["notices"], json!([]));
    let (_, t) = app
        .get(&format!("/api/task/{}", id(&posted)), &buyer.token)
        .await;
    assert_eq!(t["status"], json!("completed"));
    // Spot-checks of the copies' own workers are not made: only buyer tasks are checked.
    let s = stats(&app).await;
    assert_eq!(s["waiting"], json!(0), "{s}");
    assert_eq!(s["by_type"]["spot_check"]["fail"], json!(1), "{s}");
    app.assert_audit().await;
}

#[tokio::test]
async fn a_failed_original_is_credited_and_a_three_way_split_blames_nobody() {
    let app = spawn_app().await;
    app.patch_config("qa", qa_rates(0.0, 1.0)).await;
    let buyer = app.funded_buyer("qa-credit@example.com", 10_000).await;
    let start = cents(&app.balance(&buyer.token).await, "available_cents");
    let (a, b, c) = (app.worker().await, app.worker().await, app.worker().await);
    let mut stream = Sse::open(&app, "/api/tasks/events", Some(&buyer.token), None).await;

    let posted = post(&app, &buyer, "Tell me about the Eiffel Tower.").await;
    let original = take(&app, &a).await;
    done(&app, &a, &id(&original), WRONG).await;
    let twin = take(&app, &b).await;
    done(&app, &b, &id(&twin), RIGHT).await;
    let tiebreak = tiebreaker(&app, &c).await;
    done(&app, &c, &id(&tiebreak), RIGHT_TOO).await;
    let r = &results(&app, "verdict=fail", 1).await[0];
    assert_eq!(r["blamed_worker_id"], json!(a.worker_id));
    // The buyer gets the price back without asking; the worker's lot is reversed.
    let t = get_until(
        &app,
        &format!("/api/task/{}", id(&posted)),
        &buyer.token,
        |t| t["status"] == json!("credited"),
    )
    .await;
    assert_eq!(t["status"], json!("credited"));
    assert_eq!(
        cents(&app.balance(&buyer.token).await, "available_cents"),
        start
    );
    let (_, me_a) = app.get("/api/worker/me", &a.token).await;
    assert_eq!(me_a["earnings"]["frozen_cents"], json!(0), "{me_a}");
    assert_eq!(me_a["notices"][0]["kind"], json!("warning"));
    // The buyer's stream told the story of its own task only, ending with the credit.
    let mut seen = vec![];
    while let Some(ev) = stream.next(Duration::from_secs(2)).await {
        if ev.event == "task_status" {
            assert_eq!(ev.data["task_id"], json!(id(&posted)), "{:?}", ev.data);
            seen.push(ev.data["status"].as_str().unwrap().to_string());
            if seen.last().map(String::as_str) == Some("credited") {
                break;
            }
        }
    }
    assert_eq!(seen, ["pending", "assigned", "completed", "credited"]);

    // Three answers that agree with nobody: everyone flagged, nobody penalised.
    let (d, e, f) = (app.worker().await, app.worker().await, app.worker().await);
    let posted = post(&app, &buyer, "Describe something.").await;
    let original = take(&app, &d).await;
    assert_eq!(id(&original), id(&posted));
    done(&app, &d, &id(&original), WRONG).await;
    let twin = take(&app, &e).await;
    done(&app, &e, &id(&twin), RIGHT).await;
    let tiebreak = tiebreaker(&app, &f).await;
    done(&app, &f, &id(&tiebreak), OTHER_WRONG).await;
    let r = &results(&app, "verdict=flag", 1).await[0];
    assert_eq!(r["blamed_worker_id"], json!(null));
    assert_eq!(
        worker_ids(r),
        sorted(&[&d.worker_id, &e.worker_id, &f.worker_id])
    );
    for w in [&d, &e, &f] {
        let (_, me) = app.get("/api/worker/me", &w.token).await;
        assert_eq!(me["notices"], json!([]), "{me}");
    }
    let s = stats(&app).await;
    let flagged: Vec<&str> = s["flagged_workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["worker_id"].as_str().unwrap())
        .collect();
    for w in [&d, &e, &f] {
        assert!(flagged.contains(&w.worker_id.as_str()), "{s}");
    }
    let (_, t) = app
        .get(&format!("/api/task/{}", id(&posted)), &buyer.token)
        .await;
    assert_eq!(t["status"], json!("completed"));
    app.assert_audit().await;
}

#[tokio::test]
async fn benchmarks_walk_the_ladder_from_warning_to_deduction_to_ban() {
    let app = spawn_app().await;
    // One completed task makes a worker "proven", so the downgrade can be seen.
    app.patch_config(
        "tiers",
        json!({"levels": {"proven": {"min_tasks": 1, "min_completion": 0.0, "max_credit_rate": 1.0}}}),
    )
    .await;
    let buyer = app.funded_buyer("qa-ladder@example.com", 10_000).await;
    let w = app.worker().await;
    let t = app.chat_task(&buyer).await;
    assert_eq!(id(&take(&app, &w).await), t);
    let mut lots = vec![cents(&done(&app, &w, &t, RIGHT).await, "earned_cents")];
    let (_, me) = app.get("/api/worker/me", &w.token).await;
    assert_eq!(me["tier"], json!("proven"));

    let mut benches = vec![];
    for (i, q) in [
        "Name a primary colour.",
        "Name a prime number.",
        "Name an ocean.",
    ]
    .iter()
    .enumerate()
    {
        let (s, v) = app
            .post(
                "/api/admin/qa/inject",
                Some(ADMIN_TOKEN),
                json!({"type": "chat", "input": {"messages": [{"role": "user", "content": q}]},
                       "expected_output": {"text": RIGHT}, "price_cents": 40 + i}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        benches.push(id(&v));
    }
    // First fail: a warning the worker can read.
    let got = take(&app, &w).await;
    assert_eq!(id(&got), benches[0]);
    assert_eq!(got["price_cents"], json!(40));
    lots.push(cents(
        &done(&app, &w, &benches[0], WRONG).await,
        "earned_cents",
    ));
    let n = notices(&app, &w, 1).await;
    assert_eq!(n[0]["kind"], json!("warning"));
    assert!(n[0]["message"].as_str().unwrap().len() > 20);

    // Second: 20% of each frozen lot goes to the QA fund, and one tier down.
    assert_eq!(id(&take(&app, &w).await), benches[1]);
    lots.push(cents(
        &done(&app, &w, &benches[1], WRONG).await,
        "earned_cents",
    ));
    let frozen_before: i64 = lots.iter().sum();
    let cut: i64 = lots.iter().map(|l| l * 20 / 100).sum();
    assert_eq!(notices(&app, &w, 2).await[0]["kind"], json!("deduction"));
    let (_, me) = app.get("/api/worker/me", &w.token).await;
    assert_eq!(
        me["earnings"]["frozen_cents"],
        json!(frozen_before - cut),
        "{me}"
    );
    assert_eq!(me["tier"], json!("new"), "{me}");

    // Third: banned, everywhere a worker can call, an open socket included.
    let mut socket = ws(&app, &w.token).await;
    assert_eq!(id(&take(&app, &w).await), benches[2]);
    done(&app, &w, &benches[2], WRONG).await;
    let s = get_until(&app, "/api/admin/qa/stats", ADMIN_TOKEN, |s| {
        s["banned_workers"]
            .as_array()
            .is_some_and(|b| !b.is_empty())
    })
    .await;
    assert_eq!(s["banned_workers"][0]["worker_id"], json!(w.worker_id));
    assert_eq!(s["banned_workers"][0]["balance_frozen"], json!(true));
    assert_eq!(s["overall"]["fail"], json!(3), "{s}");
    assert_eq!(s["by_tier"]["proven"]["fail"], json!(2), "{s}");
    assert_eq!(s["by_tier"]["new"]["fail"], json!(1), "{s}");
    assert_eq!(s["by_type"]["benchmark"]["fail_rate"], json!(1.0), "{s}");
    for (method, path, body) in [
        (Method::GET, "/api/worker/me", None),
        (Method::GET, "/api/work/next", None),
        (Method::GET, "/api/balance", None),
        // Its frozen money stays where it is: no withdrawal.
        (
            Method::POST,
            "/api/withdraw",
            Some(json!({"amount_cents": 1000})),
        ),
        (
            Method::POST,
            "/api/work/submit",
            Some(json!({"task_id": t, "output": {"text": "x"}})),
        ),
        (
            Method::PATCH,
            "/api/worker/profile",
            Some(json!({"limits": {"daily_max_tasks": 5, "concurrent": 1}})),
        ),
    ] {
        let (s, v) = app.json(method, path, Some(&w.token), body.as_ref()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {v}");
        assert_eq!(v["error"]["code"], json!("BANNED"), "{path}: {v}");
    }
    send(
        &mut socket,
        json!({"type": "submit", "task_id": t, "output": {"text": "x"}}),
    )
    .await;
    let refused = frame_of(&mut socket, "error").await;
    assert_eq!(refused["code"], json!("BANNED"), "{refused}");
    send(&mut socket, json!({"type": "ready", "max": 1})).await;
    let refused = frame_of(&mut socket, "error").await;
    assert_eq!(refused["code"], json!("BANNED"), "{refused}");
    let url = app.url("/api/work/ws").replace("http://", "ws://") + "?token=" + &w.token;
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 403)
        }
        other => panic!(
            "a banned worker's socket was not refused: {:?}",
            other.map(|_| ())
        ),
    }
    // Paging through the worker's results.
    let (_, page) = app
        .get(
            &format!("/api/admin/qa/results?worker_id={}&limit=2", w.worker_id),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(
        (page["data"].as_array().unwrap().len(), &page["has_more"]),
        (2, &json!(true))
    );
    assert!(
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["qa_type"] == json!("benchmark"))
    );
    let (_, rest) = app
        .get(
            &format!(
                "/api/admin/qa/results?worker_id={}&limit=2&cursor={}",
                w.worker_id,
                page["cursor"].as_str().unwrap()
            ),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(
        (rest["data"].as_array().unwrap().len(), &rest["has_more"]),
        (1, &json!(false))
    );
    assert!(
        app.metrics()
            .await
            .contains("clawjobs_workers_banned_total 1")
    );
    app.assert_audit().await;
}

#[tokio::test]
async fn benchmarks_are_injected_on_the_configured_schedule() {
    let app = spawn_app().await;
    let shipped: toml::Value =
        toml::from_str(include_str!("../../config/benchmarks.toml")).unwrap();
    let first = &shipped["benchmark"][0];
    app.patch_config("qa", json!({"benchmark_interval_seconds": 1}))
        .await;
    let w = app.worker().await;
    let (s, got) = app.next(&w, 5).await;
    assert_eq!(s, StatusCode::OK, "no benchmark within 5 s");
    app.patch_config("qa", json!({"benchmark_interval_seconds": 0}))
        .await;
    assert_eq!(got["type"].as_str(), first["type"].as_str());
    let expected = first["expected_output"]["text"].as_str().unwrap();
    done(&app, &w, &id(&got), expected).await;
    let r = &results(&app, "", 1).await[0];
    assert_eq!(
        (&r["qa_type"], &r["verdict"]),
        (&json!("benchmark"), &json!("pass"))
    );
    assert_eq!(r["similarity"], json!(1.0));
    app.assert_audit().await;
}

#[tokio::test]
async fn the_admin_qa_api_refuses_bad_input() {
    let app = spawn_app().await;
    let buyer = app.funded_buyer("qa-bad@example.com", 100).await;
    let good = json!({"type": "chat", "input": {"messages": []}, "expected_output": {"text": "x"}});
    let mut cases = vec![];
    for (field, value) in [
        ("type", json!("Not A Type")),
        ("input", json!("text")),
        ("expected_output", json!(3)),
        ("price_cents", json!(0)),
        ("price_cents", json!(-5)),
        ("surprise", json!(true)),
    ] {
        let mut body = good.clone();
        body[field] = value;
        cases.push(body);
    }
    for body in cases {
        let (s, v) = app
            .post("/api/admin/qa/inject", Some(ADMIN_TOKEN), body.clone())
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["code"], json!("VALIDATION_ERROR"), "{v}");
    }
    let (s, _) = app
        .post("/api/admin/qa/inject", Some(&buyer.token), good)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for q in ["verdict=maybe", "cursor=abc", "limit=-1"] {
        let (s, v) = app
            .get(&format!("/api/admin/qa/results?{q}"), ADMIN_TOKEN)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {v}");
    }
    let (s, _) = app.get("/api/admin/qa/stats", &buyer.token).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Nothing was injected.
    let s = stats(&app).await;
    assert_eq!((&s["waiting"], &s["qa_fund_cents"]), (&json!(0), &json!(0)));
    app.assert_audit().await;
}

/// The next frame of `kind` on a worker socket, skipping others.
async fn frame_of(socket: &mut Ws, kind: &str) -> Value {
    loop {
        let f = frame(socket, Duration::from_secs(5)).await;
        if f["type"] == json!(kind) {
            return f;
        }
    }
}

/// Every key path of a JSON value, with the JSON type at each leaf.
fn shape(v: &Value) -> Vec<String> {
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    walk(x, format!("{at}.{k}"), out);
                }
            }
            Value::Array(a) => {
                for x in a {
                    walk(x, format!("{at}[]"), out);
                }
            }
            Value::Null => out.push(format!("{at}:null")),
            Value::Bool(_) => out.push(format!("{at}:bool")),
            Value::Number(_) => out.push(format!("{at}:number")),
            Value::String(_) => out.push(format!("{at}:string")),
        }
    }
    let mut out = vec![];
    walk(v, String::new(), &mut out);
    out.sort();
    out.dedup();
    out
}

/// Nothing a worker receives may name the QA machinery.
fn assert_nothing_hidden(what: &str, v: &Value) {
    let text = v.to_string().to_lowercase();
    for word in [
        "qa_",
        "\"qa",
        "shadow",
        "spot",
        "benchmark",
        "expected",
        "original",
        "tiebreak",
        "funded",
        "platform",
        "group",
    ] {
        assert!(!text.contains(word), "{what} leaks {word:?}: {v}");
    }
}

#[tokio::test]
async fn qa_copies_look_like_any_task_everywhere_a_worker_looks() {
    let app = spawn_app().await;
    app.patch_config("qa", qa_rates(1.0, 1.0)).await;
    let buyer = app.funded_buyer("qa-invisible@example.com", 10_000).await;
    let (a, b, c) = (app.worker().await, app.worker().await, app.worker().await);
    let (_, me_before) = app.get("/api/worker/me", &b.token).await;

    // A takes the buyer's task over HTTP; B's socket is pushed the shadow twin.
    let posted = post(&app, &buyer, "Where is the Eiffel Tower?").await;
    let real = take(&app, &a).await;
    assert_eq!(id(&real), id(&posted));
    let mut socket = ready_ws(&app, &b.token, 1).await;
    let pushed = frame(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(pushed["type"], json!("task"), "{pushed}");
    let twin = pushed["task"].clone();
    assert_eq!(shape(&twin), shape(&real));
    for field in ["type", "input", "constraints", "price_cents"] {
        assert_eq!(twin[field], real[field], "{field}");
    }
    assert!(id(&twin).starts_with("task_") && id(&real).starts_with("task_"));
    assert_eq!(id(&twin).len(), id(&real).len());

    // Errors about a copy read as errors about any task: a stranger, then a late repeat.
    let (s1, e_real) = app.submit(&c, &id(&real), RIGHT).await;
    let (s2, e_twin) = app.submit(&c, &id(&twin), RIGHT).await;
    assert_eq!((s1, s2), (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN));
    assert_eq!(e_real, e_twin);

    // While A and B hold theirs, C does a second buyer task, which gets a spot-check copy.
    app.patch_config("qa", qa_rates(1.0, 0.0)).await;
    let posted2 = post(&app, &buyer, "When was the Eiffel Tower finished?").await;
    let real2 = take(&app, &c).await;
    assert_eq!(id(&real2), id(&posted2));
    done(&app, &c, &id(&real2), RIGHT).await;

    // Submits pay the same and answer in the same shape, over HTTP and over the socket.
    let paid_real = done(&app, &a, &id(&real), RIGHT).await;
    send(
        &mut socket,
        json!({"type": "submit", "task_id": id(&twin), "output": {"text": RIGHT_TOO}}),
    )
    .await;
    let result = frame_of(&mut socket, "result").await;
    let mut paid_twin = result.clone();
    paid_twin.as_object_mut().unwrap().remove("type");
    assert_eq!(shape(&paid_twin), shape(&paid_real));
    assert_eq!(paid_twin["earned_cents"], paid_real["earned_cents"]);

    // B's socket is pushed the spot-check copy and gives it back; A takes it over HTTP; a
    // benchmark injected meanwhile goes to B.
    let pushed_copy = frame_of(&mut socket, "task").await;
    let copy = pushed_copy["task"].clone();
    assert_eq!(shape(&copy), shape(&real));
    assert_eq!(copy["input"], real2["input"]);
    assert_eq!(copy["price_cents"], real2["price_cents"]);
    let (s, v) = app
        .post(
            "/api/admin/qa/inject",
            Some(ADMIN_TOKEN),
            json!({"type": "chat", "input": {"messages": [{"role": "user", "content": "Name a colour."}]},
                   "expected_output": {"text": "Blue."}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    send(
        &mut socket,
        json!({"type": "release", "task_id": id(&copy)}),
    )
    .await;
    let pushed_bench = frame_of(&mut socket, "task").await;
    let bench = pushed_bench["task"].clone();
    assert_ne!(id(&bench), id(&copy));
    assert_eq!(shape(&bench), shape(&real));
    nothing_for(&app, &c).await; // C did the original of this copy
    let again = take(&app, &a).await;
    assert_eq!(id(&again), id(&copy));
    assert_eq!(shape(&again), shape(&real));
    done(&app, &a, &id(&again), RIGHT_TOO).await;
    send(
        &mut socket,
        json!({"type": "submit", "task_id": id(&bench), "output": {"text": "Blue."}}),
    )
    .await;
    let bench_result = frame_of(&mut socket, "result").await;
    assert_eq!(shape(&bench_result), shape(&result));
    for (what, v) in [
        ("work/next", &real),
        ("ws task", &pushed),
        ("submit", &paid_real),
        ("ws result", &result),
        ("stranger error", &e_twin),
        ("ws spot-check copy", &pushed_copy),
        ("http spot-check copy", &again),
        ("ws benchmark", &pushed_bench),
        ("ws benchmark result", &bench_result),
    ] {
        assert_nothing_hidden(what, v);
    }
    let (_, me_after) = app.get("/api/worker/me", &b.token).await;
    // B earned meanwhile, so when its frozen money frees up is now known (null before): the
    // only change of shape, and one every worker's first earning makes.
    let known = |v: &Value| {
        shape(v)
            .into_iter()
            .map(|s| s.replace("next_release_at:null", "next_release_at:string"))
            .map(|s| s.replace("next_release_cents:null", "next_release_cents:number"))
            .collect::<Vec<_>>()
    };
    assert_eq!(known(&me_after), known(&me_before));
    assert_nothing_hidden("worker/me", &me_after);
    let (_, balance) = app.get("/api/balance", &b.token).await;
    assert_nothing_hidden("balance", &balance);
    // Three comparisons were decided: the shadow pair, the spot-check pair, the benchmark.
    let feed = get_until(&app, "/api/admin/qa/results", ADMIN_TOKEN, |v| {
        v["data"].as_array().is_some_and(|d| d.len() >= 3)
    })
    .await;
    assert_eq!(feed["data"].as_array().unwrap().len(), 3);
    app.assert_audit().await;
}
