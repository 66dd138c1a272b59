//! Money in: deposits through Stripe Checkout, against a fake Stripe (the real `async-stripe`
//! client pointed at it) and webhooks the tests sign themselves.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_stripe::{self, FakeStripe, Mode, WEBHOOK_SECRET};
use crate::helpers::*;

async fn payments_app() -> (TestApp, FakeStripe) {
    let stripe = FakeStripe::start().await;
    let env = stripe.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (spawn_app_with_env(&env).await, stripe)
}

/// Posts a webhook body with this `Stripe-Signature` (none when None).
async fn webhook(app: &TestApp, body: &str, signature: Option<&str>) -> (StatusCode, Value) {
    let mut req = app
        .client
        .post(app.url("/api/deposit/webhook"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(s) = signature {
        req = req.header("stripe-signature", s);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn signed(app: &TestApp, body: &str) -> (StatusCode, Value) {
    let sig = fake_stripe::signature(WEBHOOK_SECRET, body, fake_stripe::now_s());
    webhook(app, body, Some(&sig)).await
}

async fn deposit(
    app: &TestApp,
    buyer: &Buyer,
    cents: i64,
    key: Option<&str>,
) -> (StatusCode, Value) {
    app.post_keyed(
        "/api/deposit",
        &buyer.token,
        json!({ "amount_cents": cents }),
        key,
    )
    .await
}

fn completed(event_id: &str, d: &Value, amount: i64) -> String {
    fake_stripe::session_event(
        event_id,
        "checkout.session.completed",
        d["session_id"].as_str().unwrap(),
        d["deposit_id"].as_str().unwrap(),
        amount,
        "paid",
    )
}

/// A small deterministic shuffle (no randomness crate in the tests).
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        items.swap(i, (seed >> 33) as usize % (i + 1));
    }
}

#[tokio::test]
async fn a_deposit_is_credited_once_by_its_signed_webhook_however_often_it_comes() {
    let (app, stripe) = payments_app().await;
    let buyer = app.register("payer@example.com").await;
    let (s, options) = app.get("/api/deposit/options", &buyer.token).await;
    assert_eq!(s, StatusCode::OK, "{options}");
    assert_eq!(options["amounts_cents"], json!([500, 1000, 2000]));
    assert_eq!(options["currency"], "usd");
    assert_eq!(options["enabled"], true);

    // Only a configured amount.
    let (s, v) = deposit(&app, &buyer, 700, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        stripe.seen().len(),
        0,
        "a refused amount never reaches Stripe"
    );

    let (s, first) = deposit(&app, &buyer, 500, None).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(first["status"], "pending");
    assert_eq!(first["amount_cents"], 500);
    assert_eq!(first["bonus_cents"], 100, "20 % on the first deposit");
    assert!(
        first["checkout_url"]
            .as_str()
            .unwrap()
            .starts_with("https://checkout.stripe.test/")
    );
    let deposit_id = first["deposit_id"].as_str().unwrap();
    // What Stripe was asked for.
    let seen = stripe.seen();
    let req = &seen.last().unwrap();
    assert_eq!(req.path, "/v1/checkout/sessions");
    assert!(
        req.idempotency_key.is_some(),
        "sessions are made with an idempotency key"
    );
    assert_eq!(req.form["mode"], "payment");
    assert_eq!(req.form["line_items[0][price_data][unit_amount]"], "500");
    assert_eq!(req.form["line_items[0][price_data][currency]"], "usd");
    assert_eq!(req.form["line_items[0][quantity]"], "1");
    assert_eq!(req.form["client_reference_id"], deposit_id);
    assert_eq!(req.form["metadata[deposit_id]"], deposit_id);
    assert!(req.form["success_url"].starts_with("https://clawjobs.example/"));
    assert!(req.form["cancel_url"].starts_with("https://clawjobs.example/"));

    let before = app.balance(&buyer.token).await;
    assert_eq!(
        before["available_cents"], 50,
        "only the signup credit so far"
    );

    // Bad signatures: 400, nothing moves.
    let body = completed("evt_paid_1", &first, 500);
    let now = fake_stripe::now_s();
    let forged = fake_stripe::signature("whsec_someone_else", &body, now);
    let stale = fake_stripe::signature(WEBHOOK_SECRET, &body, now - 301);
    let changed = body.replace("\"amount_total\":500", "\"amount_total\":5000");
    let good = fake_stripe::signature(WEBHOOK_SECRET, &body, now);
    for (what, b, sig) in [
        ("forged", body.as_str(), Some(forged.as_str())),
        ("stale", body.as_str(), Some(stale.as_str())),
        ("missing", body.as_str(), None),
        (
            "changed after signing",
            changed.as_str(),
            Some(good.as_str()),
        ),
        ("not a signature", body.as_str(), Some("t=abc")),
    ] {
        let (s, v) = webhook(&app, b, sig).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {v}");
        assert_eq!(v["error"]["code"], "VALIDATION_ERROR", "{what}");
    }
    assert_eq!(app.balance(&buyer.token).await, before);

    // A second deposit, its events mixed with the first's and an unrelated one, each delivered
    // 1 to 10 times, in a shuffled order.
    let (s, second) = deposit(&app, &buyer, 1000, None).await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    let unrelated = json!({"id": "evt_other", "object": "event", "type": "customer.created",
        "data": {"object": {"id": "cus_1", "object": "customer"}}})
    .to_string();
    let mut deliveries = Vec::new();
    for (i, b) in [
        body.clone(),
        completed("evt_paid_2", &second, 1000),
        unrelated,
    ]
    .into_iter()
    .enumerate()
    {
        for _ in 0..(1 + (i * 7 + 3) % 10) {
            deliveries.push(b.clone());
        }
    }
    shuffle(&mut deliveries, 42);
    let mut outcomes = Vec::new();
    for b in &deliveries {
        let (s, v) = signed(&app, b).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        outcomes.push(v["outcome"].as_str().unwrap().to_string());
    }
    assert_eq!(
        outcomes.iter().filter(|o| *o == "credited").count(),
        2,
        "{outcomes:?}"
    );

    let after = app.balance(&buyer.token).await;
    assert_eq!(after["available_cents"], 50 + 500 + 100 + 1000, "{after}");
    assert_eq!(after["total_deposited_cents"], 1500, "{after}");
    let (s, list) = app.get("/api/deposits", &buyer.token).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let rows = list["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["deposit_id"], second["deposit_id"], "newest first");
    assert!(rows.iter().all(|d| d["status"] == "completed"), "{list}");
    assert_eq!(
        rows[0]["bonus_cents"], 0,
        "only the first deposit earns the bonus"
    );
    assert_eq!(rows[1]["bonus_cents"], 100);
    // Another buyer sees none of them.
    let other = app.register("other@example.com").await;
    let (_, theirs) = app.get("/api/deposits", &other.token).await;
    assert_eq!(theirs["data"], json!([]));
    app.assert_audit().await;
}

#[tokio::test]
async fn a_wrong_amount_is_held_and_an_expired_session_credits_nothing() {
    let (app, _stripe) = payments_app().await;
    let buyer = app.register("mismatch@example.com").await;
    let (_, d) = deposit(&app, &buyer, 2000, None).await;
    let (s, v) = signed(&app, &completed("evt_short", &d, 1999)).await;
    assert_eq!(
        (s, v["outcome"].as_str()),
        (StatusCode::OK, Some("mismatch")),
        "{v}"
    );
    // Held: a later correct event does not credit it behind the admin's back.
    let (_, v) = signed(&app, &completed("evt_late", &d, 2000)).await;
    assert_eq!(v["outcome"], "nothing", "{v}");
    assert_eq!(app.balance(&buyer.token).await["available_cents"], 50);
    let (s, held) = app
        .get("/api/admin/deposits?status=mismatch", &app.admin)
        .await;
    assert_eq!(s, StatusCode::OK, "{held}");
    assert_eq!(held["data"][0]["deposit_id"], d["deposit_id"]);
    assert_eq!(held["data"][0]["buyer_id"], buyer.user_id.as_str());
    assert_eq!(held["data"][0]["paid_cents"], 1999);
    // The admin checks Stripe and credits what was paid, once.
    let resolve = format!(
        "/api/admin/deposits/{}/resolve",
        d["deposit_id"].as_str().unwrap()
    );
    let (s, v) = app
        .post(
            &resolve,
            Some(&app.admin),
            json!({"note": "the buyer confirmed 19.99"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "completed");
    let (s, _) = app
        .post(&resolve, Some(&app.admin), json!({"note": "again"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let bal = app.balance(&buyer.token).await;
    assert_eq!(
        (
            bal["available_cents"].as_i64(),
            bal["total_deposited_cents"].as_i64()
        ),
        (Some(50 + 1999), Some(1999))
    );

    let (_, e) = deposit(&app, &buyer, 500, None).await;
    let expired = fake_stripe::session_event(
        "evt_expired",
        "checkout.session.expired",
        e["session_id"].as_str().unwrap(),
        e["deposit_id"].as_str().unwrap(),
        500,
        "unpaid",
    );
    let (_, v) = signed(&app, &expired).await;
    assert_eq!(v["outcome"], "expired", "{v}");
    let (_, v) = signed(&app, &expired).await;
    assert_eq!(v["outcome"], "duplicate", "{v}");
    // A session completed but not yet paid (a delayed method) credits nothing.
    let (_, u) = deposit(&app, &buyer, 1000, None).await;
    let unpaid = fake_stripe::session_event(
        "evt_unpaid",
        "checkout.session.completed",
        u["session_id"].as_str().unwrap(),
        u["deposit_id"].as_str().unwrap(),
        1000,
        "unpaid",
    );
    let (_, v) = signed(&app, &unpaid).await;
    assert_eq!(v["outcome"], "nothing", "{v}");
    let (_, list) = app.get("/api/deposits", &buyer.token).await;
    let statuses: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["pending", "expired", "completed"]);
    // Only a mismatch is resolved.
    let pending = format!(
        "/api/admin/deposits/{}/resolve",
        u["deposit_id"].as_str().unwrap()
    );
    let (s, _) = app
        .post(&pending, Some(&app.admin), json!({"note": "no"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let bal = app.balance(&buyer.token).await;
    assert_eq!(bal["available_cents"].as_i64(), Some(50 + 1999));
    app.assert_audit().await;
}

#[tokio::test]
async fn a_stripe_outage_leaves_nothing_half_made_and_keys_replay() {
    let (app, stripe) = payments_app().await;
    let buyer = app.register("outage@example.com").await;
    for mode in [Mode::Down, Mode::Failing] {
        stripe.set_mode(mode);
        let (s, v) = deposit(&app, &buyer, 500, Some("try-1")).await;
        assert_eq!(s, StatusCode::BAD_GATEWAY, "{mode:?}: {v}");
        assert_eq!(v["error"]["code"], "PAYMENT_PROVIDER_ERROR");
    }
    let (_, list) = app.get("/api/deposits", &buyer.token).await;
    assert_eq!(list["data"], json!([]), "nothing half-made");

    // Back up: the same key now makes the deposit, and a repeat replays it.
    stripe.set_mode(Mode::Up);
    let (s, first) = deposit(&app, &buyer, 500, Some("try-1")).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, again) = deposit(&app, &buyer, 500, Some("try-1")).await;
    assert_eq!(s, StatusCode::CREATED, "{again}");
    assert_eq!(again["deposit_id"], first["deposit_id"]);
    assert_eq!(again["session_id"], first["session_id"]);
    assert_eq!(stripe.sessions_made(), 1, "one session for one key");
    let keys: Vec<_> = stripe
        .seen()
        .iter()
        .map(|r| r.idempotency_key.clone())
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] == w[1]),
        "every attempt carried the same key: {keys:?}"
    );
    // The same key with another body is refused.
    let (s, v) = deposit(&app, &buyer, 1000, Some("try-1")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (_, list) = app.get("/api/deposits", &buyer.token).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    app.assert_audit().await;
}

#[tokio::test]
async fn without_a_stripe_key_deposits_are_off_and_the_rest_works() {
    let app = spawn_app().await;
    let buyer = app.register("nokey@example.com").await;
    let (s, v) = deposit(&app, &buyer, 500, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "PAYMENTS_DISABLED");
    let (_, options) = app.get("/api/deposit/options", &buyer.token).await;
    assert_eq!(options["enabled"], false);
    // The webhook: what is wrong whatever the secret is answers 400 first.
    let (s, _) = webhook(&app, "{}", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = webhook(&app, "{}", Some("t=1,v1=00")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    // A worker or an admin cannot deposit.
    let w = app.worker().await;
    let (s, _) = app
        .post("/api/deposit", Some(&w.token), json!({"amount_cents": 500}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Everything else works.
    let (s, v) = app
        .post_task(&buyer, json!({"type": "chat", "input": {"messages": []}}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    app.assert_audit().await;
}
