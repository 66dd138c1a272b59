//! Store conformance tests: written once against `dyn Store`, run for every backend.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::config::PlatformConfig;
use crate::domain::{Role, TaskStatus};

struct NoObserver;

impl BalanceObserver for NoObserver {
    fn watches(&self, _: &str) -> bool {
        false
    }
    fn observe(&self, _: &[BalanceSnapshot]) {}
}

fn open_sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = super::sqlite::SqliteStore::open(dir.path(), Box::new(NoObserver)).expect("open");
    (Arc::new(store), dir)
}

async fn buyer(store: &Arc<dyn Store>, id: &str, credit: i64) {
    store
        .create_buyer(NewBuyer {
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
    store
        .create_worker(NewWorker {
            worker_id: id.into(),
            token_hash: format!("hash-{id}"),
            worker_type: None,
            model_info: json!({}),
            profile: WorkerProfile::default(),
            tier: "new".into(),
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
        constraints: Constraints {
            timeout_seconds: 60,
            min_output_length: 0,
        },
        price_cents: price,
        now_ms: 2,
        idempotency: None,
    }
}

async fn audit_ok(store: &Arc<dyn Store>) {
    let report = store.audit().await.expect("audit");
    assert!(report.ok, "{report:?}");
}

/// Many debits against one balance land in the same group commits: exactly as many as the money
/// covers succeed, the rest are rolled back alone.
async fn concurrent_debits_never_overdraw(store: Arc<dyn Store>) {
    buyer(&store, "b1", 10).await;
    let posts = (0..20).map(|i| store.post_task(task(&format!("t{i}"), "b1", 3)));
    let results = futures_join_all(posts).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 3);
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
        .submit("t1".into(), "w1".into(), "{}".into(), now + 1, cfg)
        .await
        .unwrap();
    assert!(matches!(
        store
            .claim("t2".into(), "w1".into(), now + 2)
            .await
            .unwrap(),
        ClaimOutcome::DailyCapReached
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
    assert_eq!(store.seed_config(docs.clone(), 1).await.unwrap(), 7);
    assert_eq!(
        store.seed_config(docs, 1).await.unwrap(),
        0,
        "seeding twice adds nothing"
    );
    let put = store
        .put_config("signup".into(), json!({"x": 1}), Some(1), "admin".into(), 5)
        .await
        .unwrap();
    assert_eq!(put.version, 2);
    assert!(matches!(
        store
            .put_config("signup".into(), json!({}), Some(1), "admin".into(), 6)
            .await,
        Err(EngineError::Conflict(_))
    ));
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

macro_rules! conformance {
    ($backend:ident, $open:ident: $($test:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let (store, _dir) = super::$open();
                    super::$test(store).await;
                }
            )*
        }
    };
}

conformance!(sqlite, open_sqlite: the_daily_cap_holds_in_the_claim, concurrent_debits_never_overdraw, a_claim_is_exclusive, settlement_is_idempotent, tokens_and_config);
