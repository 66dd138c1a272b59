//! Store conformance tests: written once against `dyn Store`, run for every backend.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::config::PlatformConfig;
use crate::domain::{Role, TaskStatus};

async fn open_sqlite() -> Option<(Arc<dyn Store>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = super::sqlite::SqliteStore::open(dir.path(), Box::new(NoObserver)).expect("open");
    Some((Arc::new(store), dir))
}

/// A fresh database on the MongoDB that `CLAWJOBS_TEST_MONGODB_URI` names (CI starts the stand-in
/// and sets it). Without it the MongoDB cases are skipped, loudly, unless
/// `CLAWJOBS_REQUIRE_MONGODB` is set, which CI does: there they fail instead.
#[cfg(feature = "mongodb")]
async fn open_mongo() -> Option<(Arc<dyn Store>, ())> {
    let uri = test_mongodb_uri()?;
    let store = super::mongo::MongoStore::open(&uri, Box::new(NoObserver))
        .await
        .expect("open the MongoDB store");
    Some((Arc::new(store), ()))
}

/// `CLAWJOBS_TEST_MONGODB_URI` with a database of its own for one test.
#[cfg(feature = "mongodb")]
pub(crate) fn test_mongodb_uri() -> Option<String> {
    let Some(base) = std::env::var("CLAWJOBS_TEST_MONGODB_URI")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var_os("CLAWJOBS_REQUIRE_MONGODB").is_none(),
            "CLAWJOBS_REQUIRE_MONGODB is set but CLAWJOBS_TEST_MONGODB_URI is not"
        );
        eprintln!("skipped: CLAWJOBS_TEST_MONGODB_URI is not set");
        return None;
    };
    let database = crate::domain::new_id("test");
    Some(with_database(&base, &database))
}

/// `mongodb://host:port/?opts` or `mongodb://host:port/db?opts` with its database replaced.
#[cfg(feature = "mongodb")]
fn with_database(uri: &str, database: &str) -> String {
    let (head, query) = match uri.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (uri, None),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let hosts_end = head[scheme_end..]
        .find('/')
        .map_or(head.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &head[..hosts_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn buyer(store: &Arc<dyn Store>, id: &str, credit: i64) {
    store
        .create_buyer(NewBuyer {
            referral: None,
            user_id: id.into(),
            email: format!("{id}@example.com"),
            password_hash: "x".into(),
            token_hash: format!("hash-{id}"),
            signup_credit_cents: credit,
            now_ms: 1,
        })
        .await
        .expect("buyer");
}

async fn worker(store: &Arc<dyn Store>, id: &str) {
    worker_of_tier(store, id, "new").await;
}

async fn worker_of_tier(store: &Arc<dyn Store>, id: &str, tier: &str) {
    store
        .create_worker(NewWorker {
            referral: None,
            worker_id: id.into(),
            token_hash: format!("hash-{id}"),
            worker_type: None,
            model_info: json!({}),
            profile: WorkerProfile::default(),
            tier: tier.into(),
            now_ms: 1,
        })
        .await
        .expect("worker");
}

fn task(id: &str, buyer: &str, price: i64) -> NewTask {
    NewTask {
        task_id: id.into(),
        buyer_id: buyer.into(),
        task_type: "code".into(),
        input: "{}".into(),
        input_preview: None,
        constraints: Constraints {
            timeout_seconds: 60,
            min_output_length: 0,
        },
        price_cents: price,
        now_ms: 2,
        idempotency: None,
        shadow: false,
    }
}

/// A spot-check roll that never falls under a rate (no copy).
const NO_SPOT: u32 = 10_000;

/// The ledger's invariants hold, and the audit log's chain is intact.
async fn audit_ok(store: &Arc<dyn Store>) {
    let report = store.audit().await.expect("audit");
    assert!(report.ok, "{report:?}");
    let chain = store
        .verify_audit_log()
        .await
        .expect("verify the audit log");
    assert!(chain.ok, "{chain:?}");
}

/// A decision that passes every one of `workers` with a perfect score.
fn all_pass(workers: &[&str]) -> QaDecision {
    use crate::qa::similarity::{Dimensions, Score, Verdict};
    QaDecision::Decide {
        score: Score {
            similarity: 1.0,
            dimensions: Dimensions {
                factual: 1.0,
                depth: 1.0,
                accuracy: 1.0,
            },
        },
        verdict: Verdict::Pass,
        outcomes: workers
            .iter()
            .map(|w| (w.to_string(), Verdict::Pass))
            .collect(),
        blamed: None,
        tiebreak: None,
    }
}

/// What `user` may spend.
async fn available(store: &Arc<dyn Store>, user: &str) -> i64 {
    store
        .balance(user.into())
        .await
        .unwrap()
        .expect("a balance")
        .available_cents
}

/// The audit entries of `action`, newest first.
async fn logged(store: &Arc<dyn Store>, action: &str) -> Vec<AuditEntry> {
    store
        .audit_log(AuditFilter {
            action: Some(action.into()),
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .expect("audit log")
}

/// Many debits against one balance land in the same group commits: exactly as many as the money
/// covers succeed, the rest are rolled back alone.
async fn concurrent_debits_never_overdraw(store: Arc<dyn Store>) {
    buyer(&store, "b1", 10).await;
    let posts = (0..20).map(|i| store.post_task(task(&format!("t{i}"), "b1", 3)));
    let results = futures_join_all(posts).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 3);
    let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, EngineError::InsufficientBalance { .. })),
        "{errors:?}"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, EngineError::InsufficientBalance { .. }))
    );
    let b = store.balance("b1".into()).await.unwrap().unwrap();
    assert_eq!(b.available_cents, 1);
    assert_eq!(store.live_tasks().await.unwrap().len(), 3);
    audit_ok(&store).await;
}

/// Two claims of one task: one wins, the other finds it gone.
async fn a_claim_is_exclusive(store: Arc<dyn Store>) {
    buyer(&store, "b1", 100).await;
    worker(&store, "w1").await;
    worker(&store, "w2").await;
    store.post_task(task("t1", "b1", 5)).await.unwrap();
    let (a, b) = tokio::join!(
        store.claim("t1".into(), "w1".into(), 10),
        store.claim("t1".into(), "w2".into(), 10)
    );
    let claimed = [a.unwrap(), b.unwrap()]
        .iter()
        .filter(|o| matches!(o, ClaimOutcome::Claimed(_)))
        .count();
    assert_eq!(claimed, 1);
}

/// The claim transaction itself keeps the worker's daily cap, whatever raced past the engine.
async fn the_daily_cap_holds_in_the_claim(store: Arc<dyn Store>) {
    let cfg = Arc::new(PlatformConfig::builtin());
    buyer(&store, "b1", 100).await;
    worker(&store, "w1").await;
    let mut profile = WorkerProfile::default();
    profile.limits.daily_max_tasks = 1;
    store
        .update_worker_profile("w1".into(), profile)
        .await
        .unwrap();
    store.post_task(task("t1", "b1", 5)).await.unwrap();
    store.post_task(task("t2", "b1", 5)).await.unwrap();
    let now = 1_000_000;
    assert!(matches!(
        store.claim("t1".into(), "w1".into(), now).await.unwrap(),
        ClaimOutcome::Claimed(_)
    ));
    store
        .submit("t1".into(), "w1".into(), "{}".into(), now + 1, cfg, NO_SPOT)
        .await
        .unwrap();
    assert!(matches!(
        store
            .claim("t2".into(), "w1".into(), now + 2)
            .await
            .unwrap(),
        ClaimOutcome::Refused(crate::rules::claim::Refusal::DailyCap)
    ));
    // A new UTC day starts a new count.
    assert!(matches!(
        store
            .claim("t2".into(), "w1".into(), now + 86_400_000)
            .await
            .unwrap(),
        ClaimOutcome::Claimed(_)
    ));
}

/// Submit settles once; a repeat pays nothing; a late expiry of the same claim is stale.
/// A worker that submitted holds nothing: its next claim goes through at once (the count the
/// claim checks `limits.concurrent` against is the store's own, read after the commit).
async fn a_submitted_task_is_no_longer_held(store: Arc<dyn Store>) {
    let cfg = Arc::new(PlatformConfig::builtin());
    buyer(&store, "b1", 100).await;
    worker(&store, "w1").await;
    for i in 0..20 {
        let id = format!("t{i}");
        store.post_task(task(&id, "b1", 2)).await.unwrap();
        let claimed = store
            .claim(id.as_str().into(), "w1".into(), 10 + i)
            .await
            .unwrap();
        assert!(
            matches!(claimed, ClaimOutcome::Claimed(_)),
            "claim {i}: {claimed:?}"
        );
        assert_eq!(store.worker("w1".into()).await.unwrap().unwrap().held, 1);
        store
            .submit(
                id.as_str().into(),
                "w1".into(),
                "{}".into(),
                20 + i,
                cfg.clone(),
                NO_SPOT,
            )
            .await
            .unwrap();
        assert_eq!(
            store.worker("w1".into()).await.unwrap().unwrap().held,
            0,
            "after submit {i}"
        );
    }
    audit_ok(&store).await;
}

/// Every node's Supervisor sweeps: two sweeps at once release each lot once, and two expiries
/// of one claim requeue it once.
async fn concurrent_sweeps_do_each_thing_once(store: Arc<dyn Store>) {
    let cfg = Arc::new(PlatformConfig::builtin());
    buyer(&store, "b1", 1_000).await;
    worker(&store, "w1").await;
    let mut profile = WorkerProfile::default();
    profile.limits.concurrent = 100;
    store
        .update_worker_profile("w1".into(), profile)
        .await
        .unwrap();
    for i in 0..8 {
        let id = format!("t{i}");
        store.post_task(task(&id, "b1", 10)).await.unwrap();
        store
            .claim(id.as_str().into(), "w1".into(), 10)
            .await
            .unwrap();
        store
            .submit(
                id.as_str().into(),
                "w1".into(),
                "{}".into(),
                20,
                cfg.clone(),
                NO_SPOT,
            )
            .await
            .unwrap();
    }
    let later = 20 + 30 * 86_400_000;
    let sweeps = (0..2).map(|_| store.unfreeze_due(later, 100));
    let released: u64 = futures_join_all(sweeps)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    assert_eq!(released, 8);
    let w = store.balance("w1".into()).await.unwrap().unwrap();
    assert_eq!(
        (w.available_cents, w.frozen_cents),
        (w.total_earned_cents, 0)
    );

    store.post_task(task("lapse", "b1", 10)).await.unwrap();
    let ClaimOutcome::Claimed(c) = store.claim("lapse".into(), "w1".into(), 30).await.unwrap()
    else {
        panic!("claim")
    };
    let expiries = (0..2).map(|_| {
        store.expire(
            "lapse".into(),
            "w1".into(),
            c.attempt,
            30 + 61_000,
            cfg.clone(),
        )
    });
    let outcomes = futures_join_all(expiries).await;
    let requeued = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(ExpireOutcome::Requeued { .. })))
        .count();
    let stale = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(ExpireOutcome::Stale)))
        .count();
    assert_eq!((requeued, stale), (1, 1), "{outcomes:?}");
    let w = store.worker("w1".into()).await.unwrap().unwrap();
    assert_eq!(w.stats.tasks_expired, 1);
    audit_ok(&store).await;
}

async fn settlement_is_idempotent(store: Arc<dyn Store>) {
    let cfg = Arc::new(PlatformConfig::builtin());
    buyer(&store, "b1", 100).await;
    worker(&store, "w1").await;
    store.post_task(task("t1", "b1", 5)).await.unwrap();
    let ClaimOutcome::Claimed(c) = store.claim("t1".into(), "w1".into(), 10).await.unwrap() else {
        panic!("claim")
    };
    let first = store
        .submit(
            "t1".into(),
            "w1".into(),
            "{\"text\":\"x\"}".into(),
            20,
            cfg.clone(),
            NO_SPOT,
        )
        .await
        .unwrap();
    let again = store
        .submit(
            "t1".into(),
            "w1".into(),
            "{\"text\":\"x\"}".into(),
            30,
            cfg.clone(),
            NO_SPOT,
        )
        .await
        .unwrap();
    assert_eq!((first.earned_cents, first.repeated), (3, false));
    assert_eq!((again.earned_cents, again.repeated), (3, true));
    assert!(matches!(
        store
            .expire("t1".into(), "w1".into(), c.attempt, 99_999, cfg.clone())
            .await
            .unwrap(),
        ExpireOutcome::Stale
    ));
    let t = store.task("t1".into()).await.unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::Completed);
    let w = store.balance("w1".into()).await.unwrap().unwrap();
    assert_eq!((w.frozen_cents, w.total_earned_cents), (3, 3));
    // The lot releases once its window ends.
    assert_eq!(store.unfreeze_due(20 + 86_400_000, 10).await.unwrap(), 1);
    let w = store.balance("w1".into()).await.unwrap().unwrap();
    assert_eq!((w.available_cents, w.frozen_cents), (3, 0));
    audit_ok(&store).await;
}

/// Tokens resolve to their principal; config documents are versioned.
async fn tokens_and_config(store: Arc<dyn Store>) {
    buyer(&store, "b1", 0).await;
    let p = store
        .resolve_token("hash-b1".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((p.id.as_str(), p.role), ("b1", Role::Buyer));
    assert!(store.resolve_token("nope".into()).await.unwrap().is_none());
    let docs = PlatformConfig::docs_from_toml(PlatformConfig::defaults_toml()).unwrap();
    assert_eq!(
        store.seed_config(docs.clone(), 1).await.unwrap(),
        crate::config::KEYS.len() as u32
    );
    assert_eq!(
        store.seed_config(docs, 1).await.unwrap(),
        0,
        "seeding twice adds nothing"
    );
    let put = store
        .put_config(
            "signup".into(),
            json!({"x": 1}),
            Some(1),
            Who::system("admin"),
            5,
        )
        .await
        .unwrap();
    assert_eq!(put.version, 2);
    assert!(matches!(
        store
            .put_config("signup".into(), json!({}), Some(1), Who::system("admin"), 6)
            .await,
        Err(EngineError::Conflict(_))
    ));
}

/// The environment's admin token replaces the one it set before and no other; a token is revoked
/// by a unique start of its id.
async fn admin_tokens_rotate_and_revoke(store: Arc<dyn Store>) {
    let hash = |c: char| c.to_string().repeat(64);
    let admin = |p: Option<Principal>| p.is_some_and(|p| p.role == Role::Admin);
    store
        .add_admin_token(hash('a'), ENV_TOKEN_LABEL.into(), 1)
        .await
        .unwrap();
    store
        .add_admin_token(hash('b'), "ops".into(), 2)
        .await
        .unwrap();
    store
        .add_admin_token(hash('c'), ENV_TOKEN_LABEL.into(), 3)
        .await
        .unwrap();
    assert!(
        !admin(store.resolve_token(hash('a')).await.unwrap()),
        "the old env token is gone"
    );
    assert!(admin(store.resolve_token(hash('b')).await.unwrap()));
    assert!(admin(store.resolve_token(hash('c')).await.unwrap()));
    // The same env token again changes nothing.
    store
        .add_admin_token(hash('c'), ENV_TOKEN_LABEL.into(), 4)
        .await
        .unwrap();
    let listed: Vec<_> = store
        .admin_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.label)
        .collect();
    assert_eq!(
        listed,
        [Some("ops".to_string()), Some(ENV_TOKEN_LABEL.to_string())]
    );

    let revoked = store.revoke_admin_token("bbbbbb".into()).await.unwrap();
    assert_eq!(revoked.label.as_deref(), Some("ops"));
    assert!(store.resolve_token(hash('b')).await.unwrap().is_none());
    assert!(matches!(
        store.revoke_admin_token("bbbbbb".into()).await,
        Err(EngineError::NotFound(_))
    ));
    assert!(matches!(
        store.revoke_admin_token("cc".into()).await,
        Err(EngineError::Validation { .. })
    ));
}

async fn claimed(store: &Arc<dyn Store>, task: &str, worker: &str, now: i64) -> ClaimOutcome {
    store.claim(task.into(), worker.into(), now).await.unwrap()
}

/// A shadow twin is paid by the QA fund (the buyer pays once), is never given to the worker of
/// its original, pays its worker as any task, and the group is decided once.
async fn shadow_copies_are_platform_paid_and_kept_apart(store: Arc<dyn Store>) {
    let cfg = Arc::new(PlatformConfig::builtin());
    buyer(&store, "b1", 100).await;
    worker(&store, "w1").await;
    worker(&store, "w2").await;
    let posted = store
        .post_task(NewTask {
            shadow: true,
            ..task("t1", "b1", 10)
        })
        .await
        .unwrap();
    assert_eq!(posted.balance_after_cents, 90, "the buyer pays once");
    let copy = posted.shadow.expect("a shadow twin").task;
    assert_eq!((copy.price_cents, copy.buyer_id.as_str()), (10, QA_BUYER));
    assert_eq!(copy.qa_key.as_deref(), Some("t1"));
    assert!(matches!(
        claimed(&store, "t1", "w1", 10).await,
        ClaimOutcome::Claimed(_)
    ));
    // w1 had the original: never the copy, even after submitting it.
    let original = store
        .submit(
            "t1".into(),
            "w1".into(),
            r#"{"text":"same answer"}"#.into(),
            11,
            cfg.clone(),
            0,
        )
        .await
        .unwrap();
    assert!(matches!(
        claimed(&store, &copy.task_id, "w1", 12).await,
        ClaimOutcome::NotForWorker { ref qa_key } if qa_key == "t1"
    ));
    let ClaimOutcome::Claimed(c) = claimed(&store, &copy.task_id, "w2", 13).await else {
        panic!("w2 gets the copy")
    };
    assert_eq!((c.price_cents, c.input.as_str()), (10, "{}"));
    let settled = store
        .submit(
            copy.task_id.as_str().into(),
            "w2".into(),
            r#"{"text":"same answer"}"#.into(),
            14,
            cfg.clone(),
            0,
        )
        .await
        .unwrap();
    assert_eq!(
        settled.earned_cents, original.earned_cents,
        "a copy pays as any task"
    );
    assert!(settled.spot_check.is_none(), "a copy is never spot-checked");
    assert_eq!(settled.qa_group.as_deref(), Some("t1"));
    let group = store.qa_group("t1".into()).await.unwrap().unwrap();
    assert_eq!(
        (group.qa_type, group.state, group.members.len()),
        (QaType::Shadow, QaState::Open, 2)
    );
    let decide = all_pass(&["w1", "w2"]);
    let applied = store
        .qa_apply("t1".into(), QaState::Open, decide.clone(), 20, cfg.clone())
        .await
        .unwrap();
    assert!(applied.applied && applied.decided && !applied.failed);
    let again = store
        .qa_apply("t1".into(), QaState::Open, decide, 21, cfg.clone())
        .await
        .unwrap();
    assert!(!again.applied, "a group is decided once");
    let results = store
        .qa_results(Some("w2".into()), None, None, 10)
        .await
        .unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(
        (results[0].task_id.as_str(), results[0].qa_task_id.as_str()),
        ("t1", copy.task_id.as_str())
    );
    let stats = store.qa_stats().await.unwrap();
    assert_eq!((stats.overall.pass, stats.waiting), (2, 0));
    // Neither the buyer's list nor the buyer's balance shows the copy.
    let listed = store.list_tasks("b1".into(), None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    audit_ok(&store).await;
}

/// Fails walk the ladder: a warning, a deduction into the QA fund with a downgrade, a ban that
/// holds the worker's lots; a spot-check copy bars the worker it checks; a failed original is
/// credited to its buyer.
async fn the_penalty_ladder_and_auto_credit(store: Arc<dyn Store>) {
    use crate::qa::similarity::{Dimensions, Score, Verdict};
    let cfg = Arc::new(PlatformConfig::builtin());
    buyer(&store, "b1", 1000).await;
    worker(&store, "w1").await;
    worker(&store, "w2").await;
    let score = Score {
        similarity: 0.1,
        dimensions: Dimensions {
            factual: 0.0,
            depth: 0.5,
            accuracy: 0.0,
        },
    };
    let fail_w1 = || QaDecision::Decide {
        score,
        verdict: Verdict::Fail,
        outcomes: vec![("w1".into(), Verdict::Fail)],
        blamed: Some("w1".into()),
        tiebreak: None,
    };
    let mut now = 100;
    let mut spot_copies = vec![];
    for i in 0..3 {
        let id = format!("t{i}");
        store.post_task(task(&id, "b1", 100)).await.unwrap();
        assert!(matches!(
            claimed(&store, &id, "w1", now).await,
            ClaimOutcome::Claimed(_)
        ));
        // Roll 0: always under the rate: a spot-check copy that w1 must never get.
        let s = store
            .submit(
                id.as_str().into(),
                "w1".into(),
                "{}".into(),
                now + 1,
                cfg.clone(),
                0,
            )
            .await
            .unwrap();
        let copy = s.spot_check.expect("a spot-check copy");
        assert_eq!(copy.barred, vec!["w1".to_string()]);
        spot_copies.push(copy.task.task_id);
        now += 10;
    }
    let frozen = |store: Arc<dyn Store>| async move {
        store
            .balance("w1".into())
            .await
            .unwrap()
            .unwrap()
            .frozen_cents
    };
    assert_eq!(frozen(store.clone()).await, 225);
    let b_before = store
        .balance("b1".into())
        .await
        .unwrap()
        .unwrap()
        .available_cents;
    // First fail: a warning, and the buyer of the failed original gets its price back.
    let a = store
        .qa_apply("t0".into(), QaState::Open, fail_w1(), now, cfg.clone())
        .await
        .unwrap();
    assert_eq!(
        a.auto_credit,
        Some(("b1".to_string(), "t0".to_string(), 100))
    );
    assert_eq!(available(&store, "b1").await, b_before + 100);
    assert_eq!(
        store.task("t0".into()).await.unwrap().unwrap().status,
        TaskStatus::Credited
    );
    let notices = store.worker_notices("w1".into()).await.unwrap();
    assert_eq!(notices[0].kind, "warning");
    assert_eq!(frozen(store.clone()).await, 150);
    // Second: 20% of what is frozen goes to the QA fund, one tier down.
    store
        .qa_apply("t1".into(), QaState::Open, fail_w1(), now + 1, cfg.clone())
        .await
        .unwrap();
    assert_eq!(
        store.worker_notices("w1".into()).await.unwrap()[0].kind,
        "deduction"
    );
    // Each lot lost 15 of 75; then the automatic credit reversed t1's: t2's 60 is left.
    assert_eq!(frozen(store.clone()).await, 60);
    // Third: banned, the remaining lot held past its window.
    let a = store
        .qa_apply("t2".into(), QaState::Open, fail_w1(), now + 2, cfg.clone())
        .await
        .unwrap();
    assert_eq!(a.banned, vec!["w1".to_string()]);
    assert_eq!(
        store.banned_workers().await.unwrap(),
        vec!["w1".to_string()]
    );
    assert!(
        store
            .worker("w1".into())
            .await
            .unwrap()
            .unwrap()
            .banned_at_ms
            .is_some()
    );
    assert_eq!(store.unfreeze_due(i64::MAX / 2, 100).await.unwrap(), 0);
    assert!(matches!(
        claimed(&store, &spot_copies[0], "w2", now + 3).await,
        ClaimOutcome::Claimed(_)
    ));
    store.post_task(task("t9", "b1", 100)).await.unwrap();
    assert!(matches!(
        claimed(&store, "t9", "w1", now + 4).await,
        ClaimOutcome::Refused(crate::rules::claim::Refusal::Banned)
    ));
    let stats = store.qa_stats().await.unwrap();
    assert_eq!((stats.overall.fail, stats.banned_workers.len()), (3, 1));
    let bans = logged(&store, "worker.ban").await;
    assert_eq!(bans.len(), 1, "one ban, one entry: {bans:?}");
    assert_eq!(
        (bans[0].actor_id.as_str(), &bans[0].details["worker_id"]),
        ("qa", &json!("w1"))
    );
    audit_ok(&store).await;
}

/// A deposit is credited once however its events come (concurrently, repeated, for a deposit
/// already final); the bonus goes to the first completed deposit only; old keys are purged.
async fn deposits_are_credited_once(store: Arc<dyn Store>) {
    use crate::rules::deposit::{DepositStatus, SessionEvent};
    buyer(&store, "b1", 0).await;
    let new = |id: &str, cents: i64| NewDeposit {
        deposit_id: id.into(),
        buyer_id: "b1".into(),
        amount_cents: cents,
        bonus_cents: 0,
        session_id: format!("cs_{id}"),
        checkout_url: format!("https://pay.test/{id}"),
        now_ms: 10,
        idem: Some(IdemKey {
            scope: "b1:deposit".into(),
            key: format!("k-{id}"),
            body_hash: format!("h{cents}"),
        }),
    };
    let d1 = store.create_deposit(new("d1", 500)).await.unwrap();
    assert_eq!(d1.status, DepositStatus::Pending);
    // The same key and body replays; the same session again is refused.
    assert_eq!(store.create_deposit(new("d1", 500)).await.unwrap(), d1);
    let mut dup = new("d1", 500);
    dup.idem = None;
    assert!(matches!(
        store.create_deposit(dup).await,
        Err(EngineError::Conflict(_))
    ));
    store.create_deposit(new("d2", 1000)).await.unwrap();
    let paid = |event: &str, session: &str, cents: i64| ProviderEvent {
        event_id: event.into(),
        event_type: "checkout.session.completed".into(),
        session: Some((
            session.into(),
            None,
            SessionEvent::Paid {
                amount_cents: cents,
                currency: "usd".into(),
            },
        )),
        now_ms: 20,
        bonus_pct: 0.2,
    };
    // Four deliveries of one event at once, and another event for the same session.
    let events = (0..4)
        .map(|_| store.deposit_event(paid("evt_1", "cs_d1", 500)))
        .chain([store.deposit_event(paid("evt_1b", "cs_d1", 500))]);
    let outcomes = futures_join_all(events).await;
    let credited = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(EventOutcome::Credited(_))))
        .count();
    assert_eq!(credited, 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    let b = store.balance("b1".into()).await.unwrap().unwrap();
    assert_eq!((b.available_cents, b.total_deposited_cents), (600, 500));
    // The second deposit has no bonus; an unknown session moves nothing.
    match store
        .deposit_event(paid("evt_2", "cs_d2", 1000))
        .await
        .unwrap()
    {
        EventOutcome::Credited(d) => assert_eq!((d.amount_cents, d.bonus_cents), (1000, 0)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store
            .deposit_event(paid("evt_3", "cs_nobody", 1000))
            .await
            .unwrap(),
        EventOutcome::Unmatched
    );
    assert_eq!(
        store
            .deposit_event(paid("evt_2", "cs_d2", 1000))
            .await
            .unwrap(),
        EventOutcome::Duplicate
    );
    let b = store.balance("b1".into()).await.unwrap().unwrap();
    assert_eq!((b.available_cents, b.total_deposited_cents), (1600, 1500));
    let listed = store
        .deposits(DepositFilter {
            buyer_id: Some("b1".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = listed.iter().map(|d| d.deposit_id.as_str()).collect();
    assert_eq!(ids, ["d2", "d1"]);
    assert_eq!(listed[1].bonus_cents, 100);
    let page = store
        .deposits(DepositFilter {
            before_seq: Some(listed[0].seq),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    // Keys stored at 10 are forgotten by a purge of everything before 11.
    assert!(store.purge_idempotency(11).await.unwrap() >= 2);
    // Each credit is audited once, as the provider's doing.
    let mut credited: Vec<String> = logged(&store, "deposit.credited")
        .await
        .iter()
        .map(|e| format!("{} {}", e.actor_id, e.details["deposit_id"]))
        .collect();
    credited.sort();
    assert_eq!(credited, [r#"stripe "d1""#, r#"stripe "d2""#]);
    audit_ok(&store).await;
}

/// Payout binding needs a verified email; withdrawals hold their limits even when several run at
/// once, and are settled once each.
async fn withdrawals_hold_their_limits_and_settle_once(store: Arc<dyn Store>) {
    use crate::config::WithdrawalLimits;
    use crate::rules::payout::PayoutMethod;
    worker(&store, "w1").await;
    store
        .admin_credit(
            "w1".into(),
            5_000,
            "earned".into(),
            Who::system("a"),
            1,
            None,
        )
        .await
        .unwrap();
    let bind = || {
        store.bind_payout(
            "w1".into(),
            PayoutMethod::Paypal,
            "w1@example.com".into(),
            2,
        )
    };
    assert!(matches!(bind().await, Err(EngineError::EmailNotVerified)));
    store
        .email_code(NewEmailCode {
            worker_id: "w1".into(),
            email: "w1@example.com".into(),
            code_hash: "good".into(),
            now_ms: 2,
            outbox: Some(("subject".into(), "body 123456".into())),
        })
        .await
        .unwrap();
    let again = store.email_code(NewEmailCode {
        worker_id: "w1".into(),
        email: "w1@example.com".into(),
        code_hash: "other".into(),
        now_ms: 3,
        outbox: None,
    });
    assert!(matches!(again.await, Err(EngineError::TooMany { .. })));
    let verify =
        |hash: &str| store.verify_email("w1".into(), "w1@example.com".into(), hash.into(), 4);
    assert_eq!(
        verify("bad").await.unwrap(),
        VerifyOutcome::Wrong { left: 4 }
    );
    assert_eq!(
        verify("bad").await.unwrap(),
        VerifyOutcome::Wrong { left: 3 },
        "a wrong try is kept"
    );
    assert_eq!(verify("good").await.unwrap(), VerifyOutcome::Verified);
    assert_eq!(
        verify("good").await.unwrap(),
        VerifyOutcome::NoCode,
        "a code is used once"
    );
    assert_eq!(
        bind().await.unwrap().address.as_deref(),
        Some("w1@example.com")
    );
    assert_eq!(store.outbox(None, 10).await.unwrap().len(), 1);

    let limits = WithdrawalLimits {
        daily_max_cents: 3_000,
        min_cents: 1_000,
    };
    let now = 86_400_000 * 3 + 5;
    let new = |id: &str| NewWithdrawal {
        withdrawal_id: id.into(),
        worker_id: "w1".into(),
        amount_cents: 1_000,
        by: Who::new("w1", "203.0.113.9", "agent/1"),
        now_ms: now,
        limits: limits.clone(),
        idem: None,
    };
    // Five at once against a daily maximum of three.
    let results = futures_join_all((0..5).map(|i| store.withdraw(new(&format!("wd{i}"))))).await;
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 3, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, EngineError::WithdrawalLimit { .. })),
        "{results:?}"
    );
    let b = store.balance("w1".into()).await.unwrap().unwrap();
    assert_eq!(b.available_cents, 2_000);
    // The next UTC day has its own maximum.
    let mut tomorrow = new("wd-next");
    tomorrow.now_ms = now + 86_400_000;
    store.withdraw(tomorrow).await.unwrap();

    let (a, b2) = (ok[0].withdrawal_id.clone(), ok[1].withdrawal_id.clone());
    let complete = |id: String| {
        store.settle_withdrawal(
            id,
            Settle::Complete {
                external_ref: "ref".into(),
            },
            Who::system("admin"),
            now,
            None,
        )
    };
    let settles = futures_join_all([complete(a.clone()), complete(a.clone())].into_iter()).await;
    assert_eq!(
        settles.iter().filter(|r| r.is_ok()).count(),
        1,
        "{settles:?}"
    );
    assert!(
        settles
            .iter()
            .any(|r| matches!(r, Err(EngineError::Conflict(_))))
    );
    let rejected = store
        .settle_withdrawal(
            b2.clone(),
            Settle::Reject {
                reason: "no".into(),
            },
            Who::system("admin"),
            now,
            None,
        )
        .await
        .unwrap();
    assert_eq!(rejected.status, WithdrawalStatus::Rejected);
    let b = store.balance("w1".into()).await.unwrap().unwrap();
    assert_eq!((b.available_cents, b.total_withdrawn_cents), (2_000, 1_000));
    let pending = store
        .withdrawals(WithdrawalFilter {
            status: Some(WithdrawalStatus::Pending),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.len(), 2);
    // Every withdrawal asked for and every settlement is audited, with where it came from.
    let requests = logged(&store, "withdrawal.request").await;
    assert_eq!(requests.len(), 4, "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|e| e.ip == "203.0.113.9" && e.actor_id == "w1")
    );
    audit_ok(&store).await;
}

/// A referral code is made once; a referred buyer is credited; a referred worker's released task
/// pays its referrer from revenue, once; an unknown code makes nothing.
async fn referrals_credit_and_share_once(store: Arc<dyn Store>) {
    let cfg = Arc::new(PlatformConfig::builtin());
    buyer(&store, "r1", 1_000).await;
    let first = store
        .referral("r1".into(), "AAAA2222".into(), 1)
        .await
        .unwrap();
    assert_eq!(first.code, "AAAA2222");
    let again = store
        .referral("r1".into(), "BBBB3333".into(), 1)
        .await
        .unwrap();
    assert_eq!(again.code, "AAAA2222", "one code per user");
    let referred = |code: &str, credit: i64| NewReferral {
        code: code.into(),
        buyer_credit_cents: credit,
        share_bp: 1_000,
    };
    let mut b = NewBuyer {
        referral: Some(referred("NOPE2222", 100)),
        user_id: "b2".into(),
        email: "b2@example.com".into(),
        password_hash: "x".into(),
        token_hash: "hash-b2".into(),
        signup_credit_cents: 50,
        now_ms: 2,
    };
    assert!(matches!(
        store.create_buyer(b.clone()).await,
        Err(EngineError::Validation { .. })
    ));
    assert!(
        store.balance("b2".into()).await.unwrap().is_none(),
        "nothing was made"
    );
    b.referral = Some(referred("AAAA2222", 100));
    assert_eq!(store.create_buyer(b).await.unwrap().available_cents, 150);
    store
        .create_worker(NewWorker {
            referral: Some(referred("AAAA2222", 0)),
            worker_id: "w1".into(),
            token_hash: "hash-w1".into(),
            worker_type: None,
            model_info: json!({}),
            profile: WorkerProfile::default(),
            tier: "new".into(),
            now_ms: 2,
        })
        .await
        .unwrap();
    store.post_task(task("t1", "r1", 40)).await.unwrap();
    let ClaimOutcome::Claimed(_) = store.claim("t1".into(), "w1".into(), 10).await.unwrap() else {
        panic!("claim")
    };
    let settled = store
        .submit(
            "t1".into(),
            "w1".into(),
            "{\"text\":\"x\"}".into(),
            20,
            cfg,
            NO_SPOT,
        )
        .await
        .unwrap();
    let before = store
        .balance("r1".into())
        .await
        .unwrap()
        .unwrap()
        .available_cents;
    // Two sweeps at once release the lot once and pay the share once.
    let far = 10 * 86_400_000;
    let sweeps = futures_join_all((0..2).map(|_| store.unfreeze_due(far, 100))).await;
    assert_eq!(
        sweeps.iter().map(|r| *r.as_ref().unwrap()).sum::<u64>(),
        1,
        "{sweeps:?}"
    );
    let share = (40 * 1_000 / 10_000).min(settled.commission_cents);
    let after = store
        .balance("r1".into())
        .await
        .unwrap()
        .unwrap()
        .available_cents;
    assert_eq!(after - before, share);
    let stats = store
        .referral("r1".into(), "CCCC4444".into(), 30)
        .await
        .unwrap();
    assert_eq!(
        (
            stats.referred_buyers,
            stats.referred_workers,
            stats.earned_cents
        ),
        (1, 1, share)
    );
    let w = store.balance("w1".into()).await.unwrap().unwrap();
    assert_eq!(
        w.available_cents, settled.earned_cents,
        "the worker's earning is untouched"
    );
    audit_ok(&store).await;
}

fn new_bounty(id: &str, buyer: &str, reward: i64) -> NewBounty {
    NewBounty {
        bounty_id: id.into(),
        buyer_id: buyer.into(),
        title: format!("bounty {id}"),
        description: "do the thing".into(),
        criteria: Some("it works".into()),
        reward_cents: reward,
        deadline_ms: 10_000_000,
        max_submissions: 5,
        review: crate::rules::bounty::Review::Manual,
        terms: crate::rules::bounty::Terms::from_config(&PlatformConfig::builtin().bounty),
        now_ms: 5,
        idem: None,
    }
}

/// A bounty's reward is in escrow from the moment it is posted (never more than the buyer has,
/// even when posts race); an idempotent repeat posts nothing twice; a cancel refunds once.
async fn bounty_escrow_holds_and_refunds_once(store: Arc<dyn Store>) {
    buyer(&store, "b1", 1000).await;
    let posts = (0..6).map(|i| store.post_bounty(new_bounty(&format!("bty{i}"), "b1", 300)));
    let results = futures_join_all(posts).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(
                e,
                EngineError::InsufficientBalance {
                    needed_cents: 300,
                    ..
                }
            ))
    );
    let b = store.balance("b1".into()).await.unwrap().unwrap();
    assert_eq!(b.available_cents, 100);
    audit_ok(&store).await;

    // The same key and body: the first answer again, nothing charged.
    buyer(&store, "b2", 500).await;
    let keyed = |id: &str| NewBounty {
        idem: Some(IdemKey {
            scope: "b2/bounties".into(),
            key: "k1".into(),
            body_hash: "h".into(),
        }),
        ..new_bounty(id, "b2", 200)
    };
    let first = store.post_bounty(keyed("bk1")).await.unwrap();
    let again = store.post_bounty(keyed("bk2")).await.unwrap();
    assert_eq!(again.bounty_id, first.bounty_id);
    let b2 = store.balance("b2".into()).await.unwrap().unwrap();
    assert_eq!(b2.available_cents, 300);

    // Listing: newest first, by status and buyer, paged by seq.
    let all = store
        .bounties(BountyFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq));
    let mine = store
        .bounties(BountyFilter {
            buyer_id: Some("b2".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].escrow_cents(), 200);
    assert_eq!(mine[0].terms.fee_bp, 1000);
    let page = store
        .bounties(BountyFilter {
            before_seq: Some(all[1].seq),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 2);

    // Only its buyer cancels, once; the refund is the whole reward.
    let err = store
        .cancel_bounty(first.bounty_id.clone(), "b1".into(), 6)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::NotFound(_)), "{err:?}");
    let cancelled = store
        .cancel_bounty(first.bounty_id.clone(), "b2".into(), 6)
        .await
        .unwrap();
    assert_eq!(
        cancelled.status,
        crate::rules::bounty::BountyStatus::Cancelled
    );
    assert_eq!(cancelled.settled_at_ms, Some(6));
    let err = store
        .cancel_bounty(first.bounty_id.clone(), "b2".into(), 7)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Conflict(_)), "{err:?}");
    let b2 = store.balance("b2".into()).await.unwrap().unwrap();
    assert_eq!(b2.available_cents, 500);
    let open = store
        .bounties(BountyFilter {
            status: Some(crate::rules::bounty::BountyStatus::Open),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(open.len(), 3);
    audit_ok(&store).await;
}

fn submission(id: &str, bounty: &str, worker: &str, now_ms: i64) -> NewSubmission {
    NewSubmission {
        submission_id: id.into(),
        bounty_id: bounty.into(),
        worker_id: worker.into(),
        content: json!({ "answer": id }),
        validator_tiers: Vec::new(),
        now_ms,
    }
}

fn review(
    bounty: &str,
    sub: &str,
    buyer: Option<&str>,
    verdict: Verdict,
    now_ms: i64,
) -> ReviewAsk {
    ReviewAsk {
        bounty_id: bounty.into(),
        submission_id: sub.into(),
        buyer_id: buyer.map(String::from),
        verdict,
        now_ms,
        idem: None,
    }
}

/// Submissions race for positions and room; approvals race for one escrow; a dispute locks the
/// escrow until its one resolution, which is audit-logged; a winner's lot is released after the
/// dispute window.
async fn bounty_reviews_settle_once(store: Arc<dyn Store>) {
    use crate::rules::bounty::{BountyStatus, DisputeStatus, Outcome, SubmissionStatus};
    buyer(&store, "b1", 10_000).await;
    for w in ["w1", "w2", "w3", "w4", "w5"] {
        worker(&store, w).await;
    }
    store
        .post_bounty(NewBounty {
            max_submissions: 3,
            ..new_bounty("bty1", "b1", 1_000)
        })
        .await
        .unwrap();
    let subs = (1..=5)
        .map(|i| store.submit_bounty(submission(&format!("s{i}"), "bty1", &format!("w{i}"), 10)));
    let results = futures_join_all(subs).await;
    let mut positions: Vec<u32> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|s| s.position))
        .collect();
    positions.sort();
    assert_eq!(positions, vec![1, 2, 3]);
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, EngineError::Conflict(_)))
    );
    let all = store
        .submissions(SubmissionFilter {
            bounty_id: "bty1".into(),
            worker_id: None,
            after_position: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(
        all.iter()
            .all(|s| s.status == SubmissionStatus::Pending && s.review_due_ms.is_some())
    );
    let (a, b, c) = (&all[0], &all[1], &all[2]);
    let again = store
        .submit_bounty(submission("s9", "bty1", &a.worker_id, 11))
        .await
        .unwrap_err();
    assert!(matches!(again, EngineError::Conflict(_)), "{again:?}");

    // Reject one; its worker disputes; the escrow is locked: no approval until it is resolved.
    let rejected = store
        .review_submission(review(
            "bty1",
            &a.submission_id,
            Some("b1"),
            Verdict::Reject {
                reason: "off topic".into(),
            },
            20,
        ))
        .await
        .unwrap();
    assert_eq!(rejected.submission.status, SubmissionStatus::Rejected);
    assert!(rejected.submission.dispute_due_ms.is_some());
    let not_yours = store
        .open_dispute(NewDispute {
            dispute_id: "d0".into(),
            bounty_id: "bty1".into(),
            submission_id: a.submission_id.clone(),
            worker_id: b.worker_id.clone(),
            reason: "mine".into(),
            now_ms: 21,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(not_yours, EngineError::NotFound(_)),
        "{not_yours:?}"
    );
    let dispute = |id: &str| NewDispute {
        dispute_id: id.into(),
        bounty_id: "bty1".into(),
        submission_id: a.submission_id.clone(),
        worker_id: a.worker_id.clone(),
        reason: "it is on topic".into(),
        now_ms: 21,
    };
    let opened = store.open_dispute(dispute("d1")).await.unwrap();
    assert_eq!(opened.rejection_reason, "off topic");
    assert_eq!(opened.buyer_id, "b1");
    let twice = store.open_dispute(dispute("d2")).await.unwrap_err();
    assert!(matches!(twice, EngineError::Conflict(_)), "{twice:?}");
    let locked = store
        .review_submission(review(
            "bty1",
            &b.submission_id,
            Some("b1"),
            Verdict::Approve,
            22,
        ))
        .await
        .unwrap_err();
    assert!(matches!(locked, EngineError::Conflict(_)), "{locked:?}");
    let listed = store
        .disputes(DisputeFilter {
            status: Some(DisputeStatus::Open),
            before_seq: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);

    // Two resolutions race: one settles (60% to the worker, less the 10% fee on it).
    let resolve = |outcome, pct| Resolution {
        dispute_id: "d1".into(),
        by: Who::system("admin"),
        outcome,
        worker_pct: pct,
        now_ms: 30,
        idem: None,
    };
    let raced = futures_join_all(
        [
            store.resolve_dispute(resolve(Outcome::Split, 60)),
            store.resolve_dispute(resolve(Outcome::Buyer, 0)),
        ]
        .into_iter(),
    )
    .await;
    let won: Vec<&Resolved> = raced.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{raced:?}");
    let r = won[0];
    assert_eq!(r.bounty.status, BountyStatus::Resolved);
    assert_eq!(r.dispute.status, DisputeStatus::Resolved);
    assert_eq!(r.dispute.resolved_by.as_deref(), Some("admin"));
    let (worker_cents, refund_cents) = match r.dispute.outcome {
        Some(Outcome::Split) => (540, 400),
        _ => (0, 1_000),
    };
    assert_eq!(
        (r.dispute.worker_cents, r.dispute.refund_cents),
        (worker_cents, refund_cents)
    );
    let buyer_b = store.balance("b1".into()).await.unwrap().unwrap();
    assert_eq!(buyer_b.available_cents, 9_000 + refund_cents);
    let w = store.balance(a.worker_id.clone()).await.unwrap().unwrap();
    assert_eq!(w.frozen_cents, worker_cents);
    // The rest of the bounty's submissions are closed; nothing more can be approved.
    for s in [b, c] {
        let now = store
            .submission(s.submission_id.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(now.status, SubmissionStatus::Closed);
    }
    let late = store
        .review_submission(review("bty1", &c.submission_id, None, Verdict::Approve, 31))
        .await
        .unwrap_err();
    assert!(matches!(late, EngineError::Conflict(_)), "{late:?}");
    audit_ok(&store).await;

    // A second bounty: two approvals race, one wins the whole reward less the fee.
    worker(&store, "x1").await;
    worker(&store, "x2").await;
    store
        .post_bounty(new_bounty("bty2", "b1", 2_000))
        .await
        .unwrap();
    let s1 = store
        .submit_bounty(submission("t1", "bty2", "x1", 40))
        .await
        .unwrap();
    let s2 = store
        .submit_bounty(submission("t2", "bty2", "x2", 40))
        .await
        .unwrap();
    let raced = futures_join_all(
        [
            store.review_submission(review(
                "bty2",
                &s1.submission_id,
                Some("b1"),
                Verdict::Approve,
                50,
            )),
            store.review_submission(review(
                "bty2",
                &s2.submission_id,
                Some("b1"),
                Verdict::Approve,
                50,
            )),
        ]
        .into_iter(),
    )
    .await;
    let won: Vec<&Reviewed> = raced.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{raced:?}");
    assert_eq!(won[0].bounty.status, BountyStatus::Completed);
    assert_eq!(won[0].submission.paid_cents, 1_800);
    let winner = won[0].submission.worker_id.clone();
    let before = store.balance(winner.clone()).await.unwrap().unwrap();
    // Released once the dispute window has passed (a day after the approval).
    let window = PlatformConfig::builtin().bounty.dispute_window_seconds as i64 * 1000;
    store.unfreeze_due(50 + window - 1, 100).await.unwrap();
    let still = store.balance(winner.clone()).await.unwrap().unwrap();
    assert_eq!(still.frozen_cents, before.frozen_cents);
    store.unfreeze_due(50 + window, 100).await.unwrap();
    let after = store.balance(winner).await.unwrap().unwrap();
    assert_eq!(after.frozen_cents, before.frozen_cents - 1_800);
    assert_eq!(after.available_cents, before.available_cents + 1_800);
    audit_ok(&store).await;
}

/// The bounty timers run from stored due times, each thing once even when two sweeps race (a
/// restart, or two nodes): one warning, one automatic approval, one expiry refund.
async fn bounty_timers_fire_once(store: Arc<dyn Store>) {
    use crate::rules::bounty::{BountyStatus, SubmissionStatus};
    buyer(&store, "b1", 10_000).await;
    worker(&store, "w1").await;
    // Deadlines after the warning and the automatic approval (three days on).
    let later = |id: &str, reward| NewBounty {
        deadline_ms: 400_000_000,
        ..new_bounty(id, "b1", reward)
    };
    let left = store.post_bounty(later("left", 1_000)).await.unwrap();
    let unwon = store.post_bounty(later("unwon", 2_000)).await.unwrap();
    let s = store
        .submit_bounty(submission("s1", "left", "w1", 10))
        .await
        .unwrap();
    let review_due = s.review_due_ms.unwrap();
    let warn_at = review_due - left.terms.warning_ms;

    // Nothing is due yet.
    let early = store
        .bounty_sweep(warn_at - 1, 100, Vec::new())
        .await
        .unwrap();
    assert!(early.is_empty(), "{early:?}");
    let sweeps =
        futures_join_all((0..3).map(|_| store.bounty_sweep(warn_at, 100, Vec::new()))).await;
    let warned: usize = sweeps
        .iter()
        .map(|r| r.as_ref().unwrap().warned.len())
        .sum();
    assert_eq!(warned, 1, "{sweeps:?}");
    let w = &sweeps
        .iter()
        .find_map(|r| r.as_ref().unwrap().warned.first().cloned())
        .unwrap();
    assert_eq!(
        (w.buyer_id.as_str(), w.auto_release_at_ms),
        ("b1", review_due)
    );

    // Past the review time and the deadline: one approval, one expiry, whoever runs it.
    let late = unwon.deadline_ms.max(review_due);
    let sweeps = futures_join_all((0..3).map(|_| store.bounty_sweep(late, 100, Vec::new()))).await;
    let approved: usize = sweeps
        .iter()
        .map(|r| r.as_ref().unwrap().approved.len())
        .sum();
    let expired: usize = sweeps
        .iter()
        .map(|r| r.as_ref().unwrap().expired.len())
        .sum();
    assert_eq!((approved, expired), (1, 1), "{sweeps:?}");
    let sub = store.submission("s1".into()).await.unwrap().unwrap();
    assert_eq!(sub.status, SubmissionStatus::Approved);
    assert!(sub.auto_approved);
    let left = store.bounty("left".into()).await.unwrap().unwrap();
    assert_eq!(left.status, BountyStatus::Completed);
    let unwon = store.bounty("unwon".into()).await.unwrap().unwrap();
    assert_eq!(unwon.status, BountyStatus::Expired);
    let b = store.balance("b1".into()).await.unwrap().unwrap();
    assert_eq!(b.available_cents, 9_000);
    assert!(
        store
            .bounty_sweep(late + 1, 100, Vec::new())
            .await
            .unwrap()
            .is_empty()
    );
    audit_ok(&store).await;
}

fn consensus(id: &str) -> NewBounty {
    NewBounty {
        review: crate::rules::bounty::Review::Consensus,
        ..new_bounty(id, "b1", 1_000)
    }
}

fn ballot(bounty: &str, sub: &str, validator: &str, approve: bool, now_ms: i64) -> VoteAsk {
    VoteAsk {
        bounty_id: bounty.into(),
        submission_id: sub.into(),
        validator_id: validator.into(),
        approve,
        cfg: Arc::new(PlatformConfig::builtin()),
        now_ms,
    }
}

/// Consensus review: validators of the allowed tiers are asked (never the buyer or a
/// submitter), racing votes decide once, the majority's validators are paid (out of the fee for
/// an approval, by the QA fund for a rejection), late and repeated votes are refused, undecided
/// submissions get new validators asked at their round's due time, once, and a validator who
/// keeps voting against the majority is flagged to QA.
async fn consensus_votes_decide_once(store: Arc<dyn Store>) {
    use crate::rules::bounty::{BountyStatus, SubmissionStatus};
    let trusted = vec!["trusted".to_string(), "elite".to_string()];
    buyer(&store, "b1", 10_000).await;
    worker(&store, "w1").await;
    worker(&store, "n1").await;
    for v in ["v1", "v2", "v3", "v4", "v5"] {
        worker_of_tier(&store, v, "trusted").await;
    }
    let available = async |id: &str| {
        store
            .balance(id.into())
            .await
            .unwrap()
            .unwrap()
            .available_cents
    };

    // Racing votes on one submission: one decision, an approval by the majority.
    store.post_bounty(consensus("c1")).await.unwrap();
    let s1 = store
        .submit_bounty(NewSubmission {
            validator_tiers: trusted.clone(),
            ..submission("s1", "c1", "w1", 10)
        })
        .await
        .unwrap();
    let mut asked = 0;
    for v in ["v1", "v2", "v3", "v4", "v5", "n1", "w1"] {
        let r = store.vote_requests(v.into(), 10).await.unwrap();
        assert!(r.iter().all(|r| r.submission.submission_id == "s1"));
        assert!(
            r.len() <= 1 && (r.is_empty() || v.starts_with('v')),
            "{v}: {r:?}"
        );
        asked += r.len();
    }
    assert_eq!(asked, 3);
    let refused = store
        .vote_submission(ballot("c1", "s1", "n1", true, 11))
        .await
        .unwrap_err();
    assert!(matches!(refused, EngineError::Forbidden(_)), "{refused:?}");
    let own = store
        .vote_submission(ballot("c1", "s1", "w1", true, 11))
        .await
        .unwrap_err();
    assert!(matches!(own, EngineError::Forbidden(_)), "{own:?}");
    let votes = futures_join_all(
        [("v1", true), ("v2", true), ("v3", false), ("v5", true)]
            .into_iter()
            .map(|(v, a)| store.vote_submission(ballot("c1", "s1", v, a, 12))),
    )
    .await;
    let decided: Vec<&Voted> = votes
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|v| v.decided)
        .collect();
    assert_eq!(decided.len(), 1, "{votes:?}");
    assert!(
        votes
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, EngineError::Conflict(_))),
        "{votes:?}"
    );
    let s1 = store.submission(s1.submission_id).await.unwrap().unwrap();
    assert_eq!(s1.status, SubmissionStatus::Approved);
    assert_eq!((s1.approvals, s1.paid_cents), (2, 900));
    let c1 = store.bounty("c1".into()).await.unwrap().unwrap();
    assert_eq!(c1.status, BountyStatus::Completed);
    // The two approving validators counted were paid 25 cents each out of the 100 cent fee.
    let mut paid = 0;
    for v in ["v1", "v2", "v3", "v5"] {
        paid += available(v).await;
    }
    assert_eq!(paid, 50);
    assert!(
        store
            .vote_requests("v4".into(), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A rejection by the majority: the dispute window opens, the QA fund pays its validators.
    store.post_bounty(consensus("c2")).await.unwrap();
    store
        .submit_bounty(submission("s2", "c2", "w1", 20))
        .await
        .unwrap();
    let before = available("v5").await;
    let first = store
        .vote_submission(ballot("c2", "s2", "v5", false, 21))
        .await
        .unwrap();
    assert!(!first.decided);
    assert_eq!(first.submission.rejections, 1);
    let twice = store
        .vote_submission(ballot("c2", "s2", "v5", true, 21))
        .await
        .unwrap_err();
    assert!(matches!(twice, EngineError::Conflict(_)), "{twice:?}");
    let before_v1 = available("v1").await;
    let second = store
        .vote_submission(ballot("c2", "s2", "v1", false, 22))
        .await
        .unwrap();
    assert!(second.decided);
    assert_eq!(second.submission.status, SubmissionStatus::Rejected);
    assert!(
        second
            .submission
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("consensus")
    );
    assert!(second.submission.dispute_due_ms.is_some());
    assert_eq!(second.bounty.status, BountyStatus::Open);
    assert_eq!(available("v5").await - before, 25);
    assert_eq!(available("v1").await - before_v1, 25);
    let late = store
        .vote_submission(ballot("c2", "s2", "v2", true, 23))
        .await
        .unwrap_err();
    assert!(matches!(late, EngineError::Conflict(_)), "{late:?}");
    let manual = store
        .post_bounty(new_bounty("m1", "b1", 500))
        .await
        .unwrap();
    store
        .submit_bounty(submission("sm", &manual.bounty_id, "w1", 24))
        .await
        .unwrap();
    let not_consensus = store
        .vote_submission(ballot("m1", "sm", "v1", true, 25))
        .await
        .unwrap_err();
    assert!(
        matches!(not_consensus, EngineError::Conflict(_)),
        "{not_consensus:?}"
    );

    // Nobody could be asked at first (no tiers given): the round's due time asks them, once.
    let c3 = store.post_bounty(consensus("c3")).await.unwrap();
    store
        .submit_bounty(submission("s3", "c3", "w1", 30))
        .await
        .unwrap();
    let due = crate::rules::bounty::invite_due_ms(30, &c3.terms);
    let early = store
        .bounty_sweep(due - 1, 100, trusted.clone())
        .await
        .unwrap();
    assert_eq!(early.invited, 0);
    let sweeps =
        futures_join_all((0..3).map(|_| store.bounty_sweep(due, 100, trusted.clone()))).await;
    let invited: u32 = sweeps.iter().map(|r| r.as_ref().unwrap().invited).sum();
    assert_eq!(invited, 3, "{sweeps:?}");

    // v4 keeps voting against the majority: flagged to QA on its third decided dissent.
    for i in 0..3 {
        let (b, sid) = (format!("f{i}"), format!("sf{i}"));
        store.post_bounty(consensus(&b)).await.unwrap();
        store
            .submit_bounty(submission(&sid, &b, "w1", 40 + i))
            .await
            .unwrap();
        store
            .vote_submission(ballot(&b, &sid, "v4", false, 41 + i))
            .await
            .unwrap();
        store
            .vote_submission(ballot(&b, &sid, "v2", true, 42 + i))
            .await
            .unwrap();
        let last = store
            .vote_submission(ballot(&b, &sid, "v3", true, 43 + i))
            .await
            .unwrap();
        assert!(last.decided);
        let expect: Vec<String> = if i == 2 {
            vec!["v4".into()]
        } else {
            Vec::new()
        };
        assert_eq!(last.flagged, expect, "round {i}");
    }
    audit_ok(&store).await;
}

/// Bounties past their deadline that still wait on a review do not hold back a later one that
/// can expire, however few a pass may take.
async fn expiry_is_not_starved_by_waiting_bounties(store: Arc<dyn Store>) {
    buyer(&store, "b1", 10_000).await;
    for i in 0..3 {
        worker(&store, &format!("w{i}")).await;
        let id = format!("waiting{i}");
        store
            .post_bounty(NewBounty {
                deadline_ms: 100_000_000,
                ..new_bounty(&id, "b1", 1_000)
            })
            .await
            .unwrap();
        store
            .submit_bounty(submission(&format!("s{i}"), &id, &format!("w{i}"), 10))
            .await
            .unwrap();
    }
    store
        .post_bounty(NewBounty {
            deadline_ms: 150_000_000,
            ..new_bounty("unwon", "b1", 1_000)
        })
        .await
        .unwrap();
    // Past every deadline, before any automatic approval; two of each kind a pass.
    let done = store
        .bounty_sweep(200_000_000, 2, Vec::new())
        .await
        .unwrap();
    let expired: Vec<&str> = done.expired.iter().map(|b| b.bounty_id.as_str()).collect();
    assert_eq!(expired, ["unwon"], "{done:?}");
    assert!(done.approved.is_empty());
    audit_ok(&store).await;
}

/// Webhook deliveries are written with their events, leased to one sender at a time (at most
/// `per_webhook` of an endpoint, none while its leases run), recorded only under their lease,
/// dead-lettered, retried, and cancelled with their endpoint.
async fn webhook_deliveries_are_leased_once(store: Arc<dyn Store>) {
    let cfg = Arc::new(PlatformConfig::builtin());
    buyer(&store, "b1", 1_000).await;
    worker(&store, "w1").await;
    let hook = |id: &str, events: &[&str]| NewWebhook {
        webhook_id: id.into(),
        buyer_id: "b1".into(),
        url: format!("https://hooks.example.com/{id}"),
        events: events.iter().map(|e| e.to_string()).collect(),
        secret: "whsec_x".into(),
        now_ms: 1,
        max_per_buyer: 2,
    };
    store
        .create_webhook(hook("whk_a", &["task.completed"]))
        .await
        .unwrap();
    store
        .create_webhook(hook("whk_b", &["task.failed"]))
        .await
        .unwrap();
    let err = store
        .create_webhook(hook("whk_c", &["task.failed"]))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Conflict(_)), "{err:?}");
    for i in 0..6 {
        let id = format!("t{i}");
        store.post_task(task(&id, "b1", 2)).await.unwrap();
        store
            .claim(id.as_str().into(), "w1".into(), 10)
            .await
            .unwrap();
        store
            .submit(
                id.as_str().into(),
                "w1".into(),
                "{}".into(),
                20,
                cfg.clone(),
                NO_SPOT,
            )
            .await
            .unwrap();
    }
    let list = |status: Option<DeliveryStatus>, webhook: &str| DeliveryFilter {
        buyer_id: "b1".into(),
        webhook_id: webhook.into(),
        status,
        before_seq: None,
        limit: 100,
    };
    let all = store.deliveries(list(None, "whk_a")).await.unwrap();
    assert_eq!(all.len(), 6);
    assert!(
        all.iter()
            .all(|d| d.event_type == "task.completed" && d.status == DeliveryStatus::Pending)
    );
    let body: serde_json::Value = serde_json::from_str(&all[0].body).unwrap();
    assert_eq!(body["data"]["task_id"], "t5");
    assert!(
        store
            .deliveries(list(None, "whk_b"))
            .await
            .unwrap()
            .is_empty(),
        "not subscribed"
    );

    // Two senders at once: four leased in all, none twice.
    let now = 1_000;
    let both = futures_join_all(
        [
            store.claim_deliveries(now, 10_000, 4, 100),
            store.claim_deliveries(now, 10_000, 4, 100),
        ]
        .into_iter(),
    )
    .await;
    let mut leased: Vec<Claimed> = both.into_iter().flat_map(|r| r.unwrap()).collect();
    let mut ids: Vec<&str> = leased
        .iter()
        .map(|c| c.delivery.delivery_id.as_str())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!((leased.len(), ids.len()), (4, 4), "{ids:?}");
    assert_eq!(leased[0].secret, "whsec_x");
    // While its leases run the endpoint gets nothing more.
    assert!(
        store
            .claim_deliveries(now + 1, 10_000, 4, 100)
            .await
            .unwrap()
            .is_empty()
    );

    let first = leased.remove(0);
    let attempt = |c: &Claimed, lease: &str, delivered: bool, retry_at_ms: Option<i64>| Attempt {
        delivery_id: c.delivery.delivery_id.clone(),
        lease: lease.into(),
        now_ms: now + 5,
        delivered,
        status: Some(if delivered { 200 } else { 500 }),
        error: (!delivered).then(|| "answered 500".to_string()),
        retry_at_ms,
    };
    assert!(
        !store
            .delivery_attempted(attempt(&first, "lse_other", true, None))
            .await
            .unwrap()
    );
    assert!(
        store
            .delivery_attempted(attempt(&first, &first.lease, false, Some(now + 6)))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delivery_attempted(attempt(&first, &first.lease, true, None))
            .await
            .unwrap(),
        "once"
    );
    let second = leased.remove(0);
    assert!(
        store
            .delivery_attempted(attempt(&second, &second.lease, true, None))
            .await
            .unwrap()
    );
    let third = leased.remove(0);
    assert!(
        store
            .delivery_attempted(attempt(&third, &third.lease, false, None))
            .await
            .unwrap()
    );

    // The last lease runs out unrecorded (its sender died): the delivery is due again, and the
    // old lease records nothing.
    let later = now + 10_001;
    let again = store.claim_deliveries(later, 10_000, 4, 100).await.unwrap();
    let again_ids: Vec<&str> = again
        .iter()
        .map(|c| c.delivery.delivery_id.as_str())
        .collect();
    assert_eq!(again.len(), 4, "{again_ids:?}");
    assert!(
        again_ids.contains(&first.delivery.delivery_id.as_str()),
        "the retry is due"
    );
    assert!(
        again_ids.contains(&leased[0].delivery.delivery_id.as_str()),
        "the lapsed lease"
    );
    assert!(
        !store
            .delivery_attempted(attempt(&leased[0], &leased[0].lease, true, None))
            .await
            .unwrap()
    );
    let retried = again
        .iter()
        .find(|c| c.delivery.delivery_id == first.delivery.delivery_id)
        .unwrap();
    assert_eq!(retried.delivery.attempts, 1);

    let by = |status| store.deliveries(list(Some(status), "whk_a"));
    assert_eq!(by(DeliveryStatus::Delivered).await.unwrap().len(), 1);
    let dead = by(DeliveryStatus::Dead).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("answered 500"));
    let back = store
        .retry_delivery(
            "b1".into(),
            "whk_a".into(),
            dead[0].delivery_id.clone(),
            later,
        )
        .await
        .unwrap();
    assert_eq!(
        (back.status, back.attempts, back.next_at_ms),
        (DeliveryStatus::Pending, 0, Some(later))
    );
    let err = store
        .retry_delivery(
            "b2".into(),
            "whk_a".into(),
            dead[0].delivery_id.clone(),
            later,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::NotFound(_)), "{err:?}");

    // Deleting the endpoint cancels what it has not delivered.
    assert!(
        !store
            .delete_webhook("b2".into(), "whk_a".into())
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_webhook("b1".into(), "whk_a".into())
            .await
            .unwrap()
    );
    assert_eq!(by(DeliveryStatus::Pending).await.unwrap().len(), 0);
    assert_eq!(by(DeliveryStatus::Cancelled).await.unwrap().len(), 5);
    assert!(
        store
            .claim_deliveries(later + 100_000, 10_000, 4, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.webhooks("b1".into()).await.unwrap().len(), 1);
    // Settled deliveries are forgotten after their keeping time, pending ones never.
    assert_eq!(store.purge_deliveries(0).await.unwrap(), 0, "none so old");
    assert_eq!(store.purge_deliveries(i64::MAX).await.unwrap(), 6);
    assert!(
        store
            .deliveries(list(None, "whk_a"))
            .await
            .unwrap()
            .is_empty()
    );
    audit_ok(&store).await;
}

async fn futures_join_all<T: Send + 'static>(
    futs: impl Iterator<Item = StoreFuture<T>>,
) -> Vec<Result<T, EngineError>> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("join"));
    }
    out
}

/// The audit log is one chain however many write at once, keeps who and from where, pages newest
/// first, and prunes its old entries to an anchor that still verifies.
async fn the_audit_log_is_one_chain(store: Arc<dyn Store>) {
    buyer(&store, "b1", 0).await;
    let admin = Who::new("admin-1", "198.51.100.7", "console/2.1");
    store
        .admin_credit(
            "b1".into(),
            700,
            "welcome".into(),
            admin.clone(),
            1_000,
            None,
        )
        .await
        .expect("credit");
    // Eight entries at once: one chain, no fork, no lost entry.
    let racing = (0..8).map(|i| {
        store.record_audit(
            Who::system("supervisor"),
            "supervisor_job_run".into(),
            json!({ "job": "purge_idempotency", "i": i }),
            5_000,
        )
    });
    for r in futures_join_all(racing).await {
        r.expect("record");
    }
    for at in [6_000, 7_000] {
        store
            .record_audit(
                Who::system("supervisor"),
                "supervisor_job_run".into(),
                json!({}),
                at,
            )
            .await
            .expect("record");
    }
    let report = store.verify_audit_log().await.expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!((report.checked, report.head.seq), (11, 11));
    assert_eq!(report.anchor, crate::rules::audit::Link::genesis());

    let page = |action: Option<&str>, before_seq, limit| AuditFilter {
        action: action.map(str::to_string),
        actor_id: None,
        before_seq,
        limit,
    };
    let all = store.audit_log(page(None, None, 100)).await.expect("list");
    let seqs: Vec<i64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=11).rev().collect::<Vec<_>>(),
        "newest first, no gap"
    );
    for pair in all.windows(2) {
        assert_eq!(
            pair[0].prev_hash, pair[1].hash,
            "each links to the one before"
        );
    }
    assert_eq!(all[0].hash, report.head.hash);
    let credit = &all[10];
    assert_eq!(
        (
            credit.action.as_str(),
            credit.actor_id.as_str(),
            credit.ip.as_str()
        ),
        ("admin.credit", "admin-1", "198.51.100.7")
    );
    assert_eq!(credit.user_agent, "console/2.1");
    assert_eq!(credit.details["amount_cents"], 700);
    assert_eq!(credit.prev_hash, crate::rules::audit::GENESIS);
    let credits = store
        .audit_log(page(Some("admin.credit"), None, 100))
        .await
        .expect("by action");
    assert_eq!(credits.len(), 1);
    let older = store
        .audit_log(page(None, Some(3), 100))
        .await
        .expect("before");
    assert_eq!(older.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 1]);

    // Prune what was written before 6 000: the credit and the eight racing entries.
    let pruned = store.prune_audit_log(6_000).await.expect("prune");
    assert_eq!((pruned.removed, pruned.anchor.seq), (9, 9));
    let report = store.verify_audit_log().await.expect("verify after prune");
    assert!(report.ok, "{report:?}");
    assert_eq!((report.checked, report.anchor.seq), (2, 9));
    assert_eq!(report.anchor.hash, all[2].hash);
    // Nothing more is old enough; new entries chain on after the prune.
    assert_eq!(
        store.prune_audit_log(6_000).await.expect("again").removed,
        0
    );
    store
        .admin_credit("b1".into(), 50, "sorry".into(), admin, 9_000, None)
        .await
        .expect("credit after prune");
    let report = store.verify_audit_log().await.expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!((report.checked, report.head.seq), (3, 12));
    audit_ok(&store).await;
}

/// A task's input and output are purged once its refund window and the grace are over, never
/// while a QA comparison still needs them; the task keeps its status, price and entries.
async fn task_content_is_purged_after_its_refund_window(store: Arc<dyn Store>) {
    let cfg = Arc::new(PlatformConfig::builtin());
    let freeze = cfg.commissions.freeze_seconds as i64 * 1000;
    let now = crate::clock::now_ms();
    buyer(&store, "b1", 100).await;
    worker(&store, "w1").await;
    worker(&store, "w2").await;
    let secret = |id: &str| NewTask {
        input: format!(r#"{{"text":"{id} input"}}"#),
        now_ms: now,
        ..task(id, "b1", 10)
    };
    let output = |id: &str| format!(r#"{{"text":"{id} output"}}"#);
    // t1: completed alone. t2: completed with a shadow copy, in an undecided group. t3: failed.
    store.post_task(secret("t1")).await.unwrap();
    let t2 = store
        .post_task(NewTask {
            shadow: true,
            ..secret("t2")
        })
        .await
        .unwrap();
    let copy = t2.shadow.expect("a shadow copy").task.task_id;
    store.post_task(secret("t3")).await.unwrap();
    for (id, by) in [("t1", "w1"), ("t2", "w1"), (copy.as_str(), "w2")] {
        assert!(matches!(
            claimed(&store, id, by, now).await,
            ClaimOutcome::Claimed(_)
        ));
        store
            .submit(
                id.into(),
                by.into(),
                output(id).into(),
                now,
                cfg.clone(),
                NO_SPOT,
            )
            .await
            .unwrap();
    }
    let failed = store.fail_stale(now + 60_000, 10).await.unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let purge = |at: i64, grace: i64, limit: u32| store.purge_task_data(at, grace, limit);

    // Inside the refund window only the failed task (it has none) goes.
    assert_eq!(
        purge(now + freeze - 1, 0, 100).await.unwrap(),
        PurgedTasks {
            purged: 1,
            more: false
        }
    );
    let t3 = store.task("t3".into()).await.unwrap().unwrap();
    assert_eq!((t3.status, t3.input.as_str()), (TaskStatus::Failed, ""));
    assert!(t3.purged_at_ms.is_some());
    let t1 = store.task("t1".into()).await.unwrap().unwrap();
    assert_eq!(t1.output.as_deref(), Some(output("t1").as_str()));
    // The window is over, the grace is not.
    assert_eq!(purge(now + freeze, 1_000, 100).await.unwrap().purged, 0);
    // Both are over: t1 goes; t2 and its copy stay while their group is undecided.
    assert_eq!(
        purge(now + freeze + 1_000, 1_000, 100)
            .await
            .unwrap()
            .purged,
        1
    );
    let t1 = store.task("t1".into()).await.unwrap().unwrap();
    assert_eq!(
        (t1.status, t1.price_cents, t1.earned_cents.is_some()),
        (TaskStatus::Completed, 10, true)
    );
    assert_eq!((t1.input.as_str(), t1.output.as_deref()), ("", None));
    assert_eq!(t1.purged_at_ms, Some(now + freeze + 1_000));
    assert_eq!(
        store.task("t2".into()).await.unwrap().unwrap().output,
        Some(output("t2"))
    );
    let decide = all_pass(&["w1", "w2"]);
    let applied = store
        .qa_apply("t2".into(), QaState::Open, decide, now + 1, cfg.clone())
        .await
        .unwrap();
    assert!(applied.decided);
    // Decided: both go, a batch at a time.
    let later = now + freeze + 2_000;
    assert_eq!(
        purge(later, 1_000, 1).await.unwrap(),
        PurgedTasks {
            purged: 1,
            more: true
        }
    );
    assert_eq!(
        purge(later, 1_000, 1).await.unwrap(),
        PurgedTasks {
            purged: 1,
            more: false
        }
    );
    for id in ["t2", copy.as_str()] {
        let t = store.task(id.into()).await.unwrap().unwrap();
        assert_eq!(
            (t.input.as_str(), t.output, t.status),
            ("", None, TaskStatus::Completed)
        );
    }
    assert_eq!(purge(i64::MAX, 0, 100).await.unwrap().purged, 0, "once");
    let listed = store.list_tasks("b1".into(), None, 10).await.unwrap();
    assert!(
        listed.iter().all(|t| t.purged_at_ms.is_some()),
        "{listed:?}"
    );
    assert_eq!(
        available(&store, "b1").await,
        80,
        "the failed task was refunded, the others stay paid"
    );
    audit_ok(&store).await;
}

/// A sensitive task's output is sealed by the submit that stores it; a node without the keys
/// cannot submit one, and nothing changes.
async fn a_sensitive_task_s_output_is_sealed_by_its_submit(store: Arc<dyn Store>) {
    use crate::sealed::{DataKeys, Field, is_sealed};
    let keys = Arc::new(DataKeys::from_secrets(&[[7; 32]]).unwrap());
    let cfg = Arc::new(PlatformConfig::builtin());
    buyer(&store, "b1", 100).await;
    worker(&store, "w1").await;
    worker(&store, "w2").await;
    for (id, by) in [("t1", "w1"), ("t2", "w2")] {
        let input = keys.seal(Field::Input, r#"{"text":"private"}"#).unwrap();
        store
            .post_task(NewTask {
                input,
                input_preview: Some("sensitive code task: 7 characters".into()),
                ..task(id, "b1", 10)
            })
            .await
            .unwrap();
        let ClaimOutcome::Claimed(c) = claimed(&store, id, by, 10).await else {
            panic!("{by} claims {id}")
        };
        assert!(is_sealed(&c.input), "the claim carries the sealed input");
    }
    let plain = r#"{"text":"the private answer"}"#;
    let sealing = Output {
        text: plain.into(),
        keys: Some(keys.clone()),
    };
    let settled = store
        .submit("t1".into(), "w1".into(), sealing, 11, cfg.clone(), NO_SPOT)
        .await
        .unwrap();
    assert!(settled.sensitive);
    let t1 = store.task("t1".into()).await.unwrap().unwrap();
    let stored = t1.output.expect("an output");
    assert!(
        is_sealed(&stored) && !stored.contains("private answer"),
        "{stored}"
    );
    assert_eq!(keys.open(Field::Output, &stored).unwrap(), plain);
    assert_eq!(
        t1.input_preview.as_deref(),
        Some("sensitive code task: 7 characters")
    );
    let refused = store
        .submit(
            "t2".into(),
            "w2".into(),
            plain.into(),
            12,
            cfg.clone(),
            NO_SPOT,
        )
        .await;
    assert!(
        matches!(refused, Err(EngineError::SensitiveDisabled)),
        "{refused:?}"
    );
    let t2 = store.task("t2".into()).await.unwrap().unwrap();
    assert_eq!((t2.status, t2.output), (TaskStatus::Assigned, None));
    audit_ok(&store).await;
}

macro_rules! conformance {
    ($backend:ident, $open:ident: $($test:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some((store, _dir)) = super::$open().await else { return };
                    super::$test(store).await;
                }
            )*
        }
    };
}

conformance!(sqlite, open_sqlite: a_submitted_task_is_no_longer_held, concurrent_sweeps_do_each_thing_once, the_daily_cap_holds_in_the_claim, concurrent_debits_never_overdraw, a_claim_is_exclusive, settlement_is_idempotent, tokens_and_config, admin_tokens_rotate_and_revoke, shadow_copies_are_platform_paid_and_kept_apart, the_penalty_ladder_and_auto_credit, deposits_are_credited_once, withdrawals_hold_their_limits_and_settle_once, referrals_credit_and_share_once, bounty_escrow_holds_and_refunds_once, bounty_reviews_settle_once, bounty_timers_fire_once, expiry_is_not_starved_by_waiting_bounties, webhook_deliveries_are_leased_once, consensus_votes_decide_once, the_audit_log_is_one_chain, task_content_is_purged_after_its_refund_window, a_sensitive_task_s_output_is_sealed_by_its_submit);
#[cfg(feature = "mongodb")]
conformance!(mongo, open_mongo: a_submitted_task_is_no_longer_held, concurrent_sweeps_do_each_thing_once, the_daily_cap_holds_in_the_claim, concurrent_debits_never_overdraw, a_claim_is_exclusive, settlement_is_idempotent, tokens_and_config, admin_tokens_rotate_and_revoke, shadow_copies_are_platform_paid_and_kept_apart, the_penalty_ladder_and_auto_credit, deposits_are_credited_once, withdrawals_hold_their_limits_and_settle_once, referrals_credit_and_share_once, bounty_escrow_holds_and_refunds_once, bounty_reviews_settle_once, bounty_timers_fire_once, expiry_is_not_starved_by_waiting_bounties, webhook_deliveries_are_leased_once, consensus_votes_decide_once, the_audit_log_is_one_chain, task_content_is_purged_after_its_refund_window, a_sensitive_task_s_output_is_sealed_by_its_submit);
