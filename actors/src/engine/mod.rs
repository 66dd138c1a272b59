//! The engine's front door: what the web layer calls. Each method checks its input against the
//! domain rules, asks the right actor or the store, and tells the other actors what changed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use crate::balance::{self, Bank};
use crate::clock::{day_start_ms, now_ms};
use crate::config::{ConfigHandle, PlatformConfig};
use crate::config_actor::{ConfigActor, GetConfig, PutConfig};
use crate::dispatcher::{
    Claim, ClaimReply, ClaimSpec, Dispatcher, GetGauges, Release, Shutdown, TaskExpired, Watch,
    Withdraw,
};
use crate::domain::{self, Principal, Role, TaskId, TaskType, UserId, WorkerId};
use crate::economics;
use crate::effects::{self, Publisher};
use crate::error::EngineError;
use crate::feed::{CloseAll, FeedHub};
use crate::ledger::AuditReport;
use crate::limits::*;
use crate::metrics::Metrics;
use crate::nodes::Nodes;
use crate::qa::comparator::{BanList, Inject, QaComparator};
use crate::slot::Slot;
use crate::store::*;
use crate::supervisor::Supervisor;

mod admin;
mod bounties;
mod buyers;
mod checks;
mod console;
pub use bounties::{BountyAsk, DisputeCase};
pub use console::{ActorQuery, ActorSort, ActorsPage, Figures, Invariants, Warning};
mod money;
mod notifications;
mod payouts;
mod referrals;
mod webhooks;
mod workers;

use checks::{check_input, check_profile};

/// A claim the Dispatcher dropped (it panicked) is asked again after this pause…
const CLAIM_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// …for at least this long, even without a wait: the Supervisor restarts it within a second.
const CLAIM_RETRY_WINDOW: Duration = Duration::from_secs(2);
/// How long a withdrawn long-poll waits for a claim that was being committed as its wait ended:
/// longer than a store command may take (`store::COMMAND_BUDGET`, its retries of write conflicts
/// included), or a claim committed just after the grace would be held by a worker that was told
/// "nothing" (and refused its next ask as at its limit until the claim is undone).
const WITHDRAW_GRACE: Duration = Duration::from_secs(crate::store::COMMAND_BUDGET.as_secs() + 5);
/// Tokens remembered in memory after their first lookup.
const TOKEN_CACHE: usize = 100_000;

#[derive(Clone)]
pub struct Engine {
    pub store: Arc<dyn Store>,
    pub config: ConfigHandle,
    pub metrics: Arc<Metrics>,
    bank: Bank,
    dispatcher: Slot<Dispatcher>,
    pub feed: Slot<FeedHub>,
    config_actor: crate::meter::Metered<ConfigActor>,
    supervisor: crate::meter::Metered<Supervisor>,
    comparator: Slot<QaComparator>,
    /// Hands what a command caused to the actors it concerns.
    publisher: Publisher,
    banned: BanList,
    tokens: Arc<RwLock<HashMap<String, Principal>>>,
    ready: Arc<AtomicBool>,
    /// Names each long-poll's ask, so that it can be withdrawn.
    tickets: Arc<AtomicU64>,
    /// Whether other nodes (and actors that commit beside the BalanceActors) share this store:
    /// then balances are read from it, not from the BalanceActors' caches, which hear of
    /// another's commit a moment after it is visible.
    shared_store: bool,
    /// Where email codes go (None: the admin outbox and the log).
    mailer: Option<Arc<dyn crate::mail::Mailer>>,
    /// This server's public address, for links (referrals); empty: links are paths.
    public_url: String,
    /// The payment provider, when one is configured (else deposits answer PAYMENTS_DISABLED).
    payments: Option<crate::payments::Payments>,
    /// Whether webhooks may point at this machine or private networks (development only).
    webhooks_private: Arc<AtomicBool>,
    /// Seal and open sensitive tasks' content; None: sensitive tasks are refused here.
    data_keys: Option<Arc<crate::sealed::DataKeys>>,
}

/// Where a worker's money stands, for `GET /api/worker/me`.
#[derive(Debug, Clone)]
pub struct WorkerMe {
    pub worker: WorkerRecord,
    pub today_cents: i64,
    pub balance: BalanceSnapshot,
    pub tier_progress: Value,
    /// QA warnings, deductions and bans, newest first.
    pub notices: Vec<WorkerNotice>,
    /// When the earliest frozen earnings free up, and how much frees then.
    pub next_release: Option<(i64, i64)>,
}

/// What a buyer asks for in `POST /api/task`.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    pub task_type: String,
    pub input: Value,
    pub timeout_seconds: Option<u32>,
    pub min_output_length: Option<u32>,
    /// Input and output sealed at rest, shown only to the buyer and the worker holding it.
    pub sensitive: bool,
}

/// A partial profile from `PATCH /api/worker/profile`: only the parts given are replaced.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    pub preferences: Option<Preferences>,
    pub schedule: Option<Value>,
    pub limits: Option<Limits>,
}

impl Engine {
    /// Opens the store, seeds and loads the config, starts the actors and puts every live task
    /// back under the Dispatcher. Must run inside an actix system.
    ///
    /// The data keys of sensitive tasks come from `CLAWJOBS_DATA_KEY` (and
    /// `CLAWJOBS_DATA_KEYS_PREVIOUS`), read here so that no settings value ever holds them, or
    /// from the key file in the embedded store's data directory (see [`crate::sealed`]).
    pub async fn start_at(location: &Location, platform_toml: &str) -> Result<Engine, EngineError> {
        let data_dir = match location {
            Location::Embedded(dir) => Some(dir.as_path()),
            Location::MongoDb(_) => None,
        };
        let current = std::env::var("CLAWJOBS_DATA_KEY").ok();
        let previous = std::env::var("CLAWJOBS_DATA_KEYS_PREVIOUS").ok();
        let (balances, seed) = balance::registry();
        let (told, telling) = tokio::sync::mpsc::unbounded_channel();
        let observer = Box::new(effects::CommitObserver { balances, told });
        let store = location.open(observer).await?;
        // After the store: it makes the data directory and holds its lock.
        let keys =
            crate::sealed::DataKeys::load(current.as_deref(), previous.as_deref(), data_dir)?;
        match &keys {
            Some(k) => tracing::info!(key = k.current_id(), "sensitive tasks: sealed at rest"),
            None => tracing::info!("sensitive tasks: off (no CLAWJOBS_DATA_KEY)"),
        }
        Self::start(store, seed, telling, platform_toml, keys.map(Arc::new)).await
    }

    /// [`Engine::start_at`] on the embedded store in `data_dir`.
    pub async fn start_sqlite(data_dir: &Path, platform_toml: &str) -> Result<Engine, EngineError> {
        Self::start_at(&Location::Embedded(data_dir.to_path_buf()), platform_toml).await
    }

    async fn start(
        store: Arc<dyn Store>,
        seed: balance::BankSeed,
        telling: tokio::sync::mpsc::UnboundedReceiver<effects::Effect>,
        platform_toml: &str,
        data_keys: Option<Arc<crate::sealed::DataKeys>>,
    ) -> Result<Engine, EngineError> {
        // Before anything reads the store's state: what other nodes commit from here on.
        let changes = store.changes().await?;
        let (cfg, docs) = ConfigActor::load(&store, platform_toml).await?;
        let config = ConfigHandle::new(cfg);
        let metrics = Arc::new(Metrics::default());
        let bank = seed.into_bank(store.clone());
        let config_actor = crate::meter::Metered::start(
            ConfigActor::new(store.clone(), config.clone(), docs),
            "ConfigActor",
            "config",
            &[],
        );
        let banned: BanList = Arc::new(RwLock::new(
            store.banned_workers().await?.into_iter().collect(),
        ));
        let benchmarks = crate::qa::benchmarks::load(crate::qa::benchmarks::shipped())?;
        // The FeedHub, the Dispatcher and the QaComparator get a thread each (every event goes
        // through the first, every claim through the second), and the Supervisor restarts any
        // of them that panics.
        let nodes = Nodes::start(
            store.clone(),
            config.clone(),
            metrics.clone(),
            banned.clone(),
            benchmarks,
            data_keys.clone(),
        )
        .await?;
        let webhooks_private = Arc::new(AtomicBool::new(false));
        let sender = crate::webhooks::Sender::new(
            store.clone(),
            config.clone(),
            metrics.clone(),
            webhooks_private.clone(),
        )?
        .with_keys(data_keys.clone());
        let supervisor = crate::meter::Metered::start(
            Supervisor::new(
                store.clone(),
                config.clone(),
                nodes.clone(),
                metrics.clone(),
                sender,
            ),
            "Supervisor",
            "supervisor",
            &[],
        );
        effects::deliver_told(telling, nodes.publisher.clone());
        let shared_store = store.event_log().is_some();
        let engine = Engine {
            shared_store,
            store,
            config,
            metrics,
            bank,
            dispatcher: nodes.dispatcher,
            feed: nodes.feed,
            config_actor,
            supervisor,
            comparator: nodes.comparator,
            publisher: nodes.publisher,
            banned,
            tokens: Arc::default(),
            ready: Arc::new(AtomicBool::new(false)),
            tickets: Arc::default(),
            payments: None,
            public_url: String::new(),
            mailer: None,
            webhooks_private,
            data_keys,
        };
        if let Some(changes) = changes {
            crate::cluster::follow(
                changes,
                crate::cluster::Listeners {
                    dispatcher: engine.dispatcher.clone(),
                    feed: engine.feed.clone(),
                    config: engine.config_actor.clone(),
                    banned: engine.banned.clone(),
                    tokens: engine.tokens.clone(),
                },
            );
        }
        engine.ready.store(true, Ordering::SeqCst);
        Ok(engine)
    }

    /// Waits until every command queued so far is committed: call after the server has drained.
    pub async fn shutdown(&self) -> Result<(), EngineError> {
        self.ready.store(false, Ordering::SeqCst);
        self.store.flush().await
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn cfg(&self) -> Arc<PlatformConfig> {
        self.config.get()
    }

    // ---------- auth ----------

    /// Who holds `token`, if anyone.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, EngineError> {
        let hash = domain::token_hash(token);
        if let Some(p) = self.tokens.read().ok().and_then(|m| m.get(&hash).cloned()) {
            return Ok(Some(p));
        }
        let found = self.store.resolve_token(hash.clone()).await?;
        if let Some(p) = &found
            && let Ok(mut m) = self.tokens.write()
        {
            if m.len() >= TOKEN_CACHE {
                m.clear();
            }
            m.insert(hash, p.clone());
        }
        Ok(found)
    }

    /// Registers the admin token given at start in `CLAWJOBS_ADMIN_TOKEN` (stored hashed, like
    /// every token); the one an earlier start registered that way stops working.
    pub async fn set_env_admin_token(&self, token: &str) -> Result<(), EngineError> {
        self.store
            .add_admin_token(
                domain::token_hash(token),
                ENV_TOKEN_LABEL.to_string(),
                now_ms(),
            )
            .await
            .map(|_| ())
    }

    pub async fn register_buyer(
        &self,
        email: &str,
        password_hash: String,
        referral_code: Option<&str>,
    ) -> Result<(String, String, BalanceSnapshot), EngineError> {
        let email = domain::Email::parse(email)?;
        let referral = self.new_referral(referral_code, Role::Buyer)?;
        let user_id = domain::new_id("u");
        let token = domain::new_token(Role::Buyer);
        let balance = self
            .store
            .create_buyer(NewBuyer {
                user_id: user_id.clone(),
                email: email.as_str().to_string(),
                password_hash,
                token_hash: domain::token_hash(&token),
                signup_credit_cents: self.cfg().signup.buyer_free_credit_cents,
                now_ms: now_ms(),
                referral,
            })
            .await?;
        Ok((user_id, token, balance))
    }

    /// The stored password hash for an email, for the web layer to verify.
    pub async fn login_lookup(&self, email: &str) -> Result<Option<(String, String)>, EngineError> {
        let Ok(email) = domain::Email::parse(email) else {
            return Ok(None);
        };
        self.store.find_login(email.as_str().to_string()).await
    }

    pub async fn issue_token(&self, user_id: &str, role: Role) -> Result<String, EngineError> {
        let token = domain::new_token(role);
        self.store
            .add_token(
                domain::token_hash(&token),
                user_id.to_string(),
                role,
                now_ms(),
            )
            .await?;
        Ok(token)
    }
}

/// One page of a list read with `limit + 1` rows: the first `limit`, and whether there is more.
fn page<T>(mut rows: Vec<T>, limit: u32) -> (Vec<T>, bool) {
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    (rows, has_more)
}

/// A uniform draw in [0, 10000), compared with a rate in basis points.
fn roll_bp() -> u32 {
    rand::random_range(0..10_000)
}
