//! The engine's front door: what the web layer calls. Each method checks its input against the
//! domain rules, asks the right actor or the store, and tells the other actors what changed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::balance::{self, Bank};
use crate::clock::{day_start_ms, now_ms};
use crate::config::{ConfigHandle, PlatformConfig};
use crate::config_actor::{ConfigActor, GetConfig, PutConfig};
use crate::dispatcher::{
    Claim, ClaimReply, ClaimSpec, Dispatcher, GetGauges, Release, Shutdown, TaskExpired, Watch,
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
use crate::store::sqlite::SqliteStore;
use crate::store::*;
use crate::supervisor::Supervisor;

/// A claim the Dispatcher dropped (it panicked) is asked again after this pause…
const CLAIM_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// …for at least this long, even without a wait: the Supervisor restarts it within a second.
const CLAIM_RETRY_WINDOW: Duration = Duration::from_secs(2);
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
    config_actor: Addr<ConfigActor>,
    comparator: Slot<QaComparator>,
    /// Hands what a command caused to the actors it concerns.
    publisher: Publisher,
    banned: BanList,
    tokens: Arc<RwLock<HashMap<String, Principal>>>,
    ready: Arc<AtomicBool>,
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
}

/// What a buyer asks for in `POST /api/task`.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    pub task_type: String,
    pub input: Value,
    pub timeout_seconds: Option<u32>,
    pub min_output_length: Option<u32>,
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
    /// Opens the embedded store in `data_dir`, seeds and loads the config, starts the actors and
    /// puts every live task back under the Dispatcher. Must run inside an actix system.
    pub async fn start_sqlite(data_dir: &Path, platform_toml: &str) -> Result<Engine, EngineError> {
        let (observer, seed) = balance::registry();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(data_dir, observer)?);
        Self::start(store, seed, platform_toml).await
    }

    async fn start(
        store: Arc<dyn Store>,
        seed: balance::BankSeed,
        platform_toml: &str,
    ) -> Result<Engine, EngineError> {
        let (cfg, docs) = ConfigActor::load(&store, platform_toml).await?;
        let config = ConfigHandle::new(cfg);
        let metrics = Arc::new(Metrics::default());
        let bank = seed.into_bank(store.clone());
        let config_actor = ConfigActor::new(store.clone(), config.clone(), docs).start();
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
        )
        .await?;
        Supervisor::new(
            store.clone(),
            config.clone(),
            nodes.clone(),
            metrics.clone(),
        )
        .start();
        let engine = Engine {
            store,
            config,
            metrics,
            bank,
            dispatcher: nodes.dispatcher,
            feed: nodes.feed,
            config_actor,
            comparator: nodes.comparator,
            publisher: nodes.publisher,
            banned,
            tokens: Arc::default(),
            ready: Arc::new(AtomicBool::new(false)),
        };
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
    ) -> Result<(String, String, BalanceSnapshot), EngineError> {
        let email = domain::Email::parse(email)?;
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

    // ---------- buyers ----------

    pub async fn balance(&self, user_id: &str) -> Result<BalanceSnapshot, EngineError> {
        self.bank
            .snapshot(user_id)
            .await?
            .ok_or_else(|| EngineError::NotFound("no balance for this account".into()))
    }

    pub fn estimate(&self, task_type: &str, input: &Value) -> Result<i64, EngineError> {
        let task_type = TaskType::parse(task_type)?;
        check_input(input)?;
        economics::price_cents(&self.cfg(), &task_type, input)
    }

    pub async fn post_task(
        &self,
        buyer_id: &str,
        req: TaskRequest,
        idem: Option<IdemKey>,
    ) -> Result<TaskPosted, EngineError> {
        let cfg = self.cfg();
        let task_type = TaskType::parse(&req.task_type)?;
        let input_text = check_input(&req.input)?;
        let price_cents = economics::price_cents(&cfg, &task_type, &req.input)?;
        let d = &cfg.dispatch;
        let timeout_seconds = req.timeout_seconds.unwrap_or(d.default_timeout_seconds);
        if !(d.min_timeout_seconds..=d.max_timeout_seconds).contains(&timeout_seconds) {
            return Err(EngineError::validation_field(
                "constraints.timeout_seconds",
                format!(
                    "timeout_seconds must be between {} and {}",
                    d.min_timeout_seconds, d.max_timeout_seconds
                ),
            ));
        }
        let min_output_length = req.min_output_length.unwrap_or(0);
        if min_output_length > MAX_MIN_OUTPUT_CHARS {
            return Err(EngineError::validation_field(
                "constraints.min_output_length",
                "min_output_length is too large",
            ));
        }
        let task = NewTask {
            task_id: domain::new_id("task"),
            buyer_id: buyer_id.to_string(),
            task_type: task_type.as_str().to_string(),
            input: input_text,
            constraints: Constraints {
                timeout_seconds,
                min_output_length,
            },
            price_cents,
            now_ms: now_ms(),
            idempotency: idem,
            shadow: roll_bp() < cfg.qa.shadow_bp(),
        };
        let task_type = task.task_type.clone();
        let mut posted = self.bank.post_task(task).await?;
        if !posted.replayed {
            Metrics::inc(&self.metrics.tasks_posted_total);
            self.publisher
                .publish(effects::posted(buyer_id, &task_type, &posted));
        }
        // The twin is the Dispatcher's business, never part of an answer.
        posted.shadow = None;
        Ok(posted)
    }

    /// A buyer's own task; with `wait`, returns once it is final or the wait ends.
    pub async fn task_for_buyer(
        &self,
        buyer_id: &UserId,
        task_id: &TaskId,
        wait: Duration,
    ) -> Result<TaskRecord, EngineError> {
        let (buyer_id, task_id) = (buyer_id.as_str(), task_id.as_str());
        let read = || async {
            self.store
                .task(task_id.to_string())
                .await?
                .filter(|t| t.buyer_id == buyer_id)
                .ok_or_else(|| EngineError::NotFound("no such task".into()))
        };
        let task = read().await?;
        if task.status.is_final() || wait.is_zero() {
            return Ok(task);
        }
        let (wake, woken) = oneshot::channel();
        self.dispatcher
            .send(Watch {
                task_id: task_id.to_string(),
                wake,
            })
            .await
            .map_err(EngineError::internal)?;
        // Registered: a change committed from now on wakes us; one committed before shows here.
        let task = read().await?;
        if task.status.is_final() {
            return Ok(task);
        }
        let _ = tokio::time::timeout(wait.min(MAX_TASK_WAIT), woken).await;
        read().await
    }

    pub async fn list_tasks(
        &self,
        buyer_id: &str,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<TaskRecord>, bool), EngineError> {
        let limit = limit.clamp(1, 100);
        let mut rows = self
            .store
            .list_tasks(buyer_id.to_string(), before_seq, limit + 1)
            .await?;
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        Ok((rows, has_more))
    }

    pub async fn credit(
        &self,
        buyer_id: &UserId,
        task_id: &TaskId,
        reason: Option<String>,
        idem: Option<IdemKey>,
    ) -> Result<Credited, EngineError> {
        if reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
        {
            return Err(EngineError::validation_field(
                "reason",
                format!("reason is at most {MAX_REASON_CHARS} characters"),
            ));
        }
        let credited = self
            .store
            .credit(
                task_id.clone(),
                buyer_id.clone(),
                reason,
                now_ms(),
                idem,
                self.cfg(),
            )
            .await?;
        Metrics::inc(&self.metrics.tasks_credited_total);
        self.publisher
            .publish(effects::credited(buyer_id.as_str(), &credited));
        Ok(credited)
    }

    // ---------- workers ----------

    pub async fn connect_worker(
        &self,
        worker_type: Option<String>,
        model_info: Value,
        profile: WorkerProfile,
    ) -> Result<(WorkerRecord, String), EngineError> {
        check_profile(&profile)?;
        if worker_type
            .as_ref()
            .is_some_and(|t| t.chars().count() > MAX_WORKER_TYPE_CHARS)
        {
            return Err(EngineError::validation_field(
                "worker_type",
                format!("worker_type is at most {MAX_WORKER_TYPE_CHARS} characters"),
            ));
        }
        let token = domain::new_token(Role::Worker);
        let worker = self
            .store
            .create_worker(NewWorker {
                worker_id: domain::new_id("w"),
                token_hash: domain::token_hash(&token),
                worker_type,
                model_info,
                profile,
                tier: self.cfg().lowest_tier().to_string(),
                now_ms: now_ms(),
            })
            .await?;
        Ok((worker, token))
    }

    pub async fn worker(&self, worker_id: &str) -> Result<WorkerRecord, EngineError> {
        self.store
            .worker(worker_id.to_string())
            .await?
            .ok_or_else(|| EngineError::Unauthorized("unknown worker".into()))
    }

    /// Checks that `worker` may claim now and says what it will take; `None` once it has reached
    /// its own daily cap. The same rules serve long-polls and WebSocket sessions.
    pub fn claim_spec(
        &self,
        worker: &WorkerRecord,
        notify: Option<Recipient<TaskExpired>>,
    ) -> Result<Option<ClaimSpec>, EngineError> {
        use crate::rules::claim::{Claimant, Refusal, refusal};
        let now = now_ms();
        let claimant = Claimant {
            banned: worker.banned_at_ms.is_some(),
            suspended_until_ms: worker.suspended_until_ms,
            held: worker.held,
            claims_today: worker.claims_on(now),
            limits: &worker.profile.limits,
        };
        match refusal(&claimant, now) {
            None => {}
            Some(Refusal::Banned) => return Err(EngineError::Banned),
            Some(Refusal::Suspended { until_ms }) => {
                return Err(EngineError::Suspended {
                    until: crate::clock::rfc3339(until_ms),
                });
            }
            Some(Refusal::Busy { held }) => {
                return Err(EngineError::Conflict(format!(
                    "you hold {held} task(s), the most your limits.concurrent allows: submit first"
                )));
            }
            // The worker's own daily cap: nothing for it today.
            Some(Refusal::DailyCap) => return Ok(None),
        }
        let prefs = &worker.profile.preferences;
        Ok(Some(ClaimSpec {
            worker_id: worker.worker_id.clone(),
            accept: prefs.accept.clone(),
            reject: prefs.reject.clone(),
            min_price_cents: prefs.min_price,
            notify,
            exclude: Vec::new(),
        }))
    }

    /// Asks the Dispatcher for a task. With `park`, the answer comes once one is claimed (or the
    /// node stops); dropping the receiver withdraws the request.
    pub fn request_claim(&self, spec: ClaimSpec, park: bool) -> oneshot::Receiver<ClaimReply> {
        let (reply, answer) = oneshot::channel();
        self.dispatcher.do_send(Claim { spec, park, reply });
        answer
    }

    /// Claims the next task for a worker, waiting up to `wait` for one to arrive.
    pub async fn next_task(
        &self,
        worker: WorkerRecord,
        wait: Duration,
    ) -> Result<Option<ClaimedTask>, EngineError> {
        let wait = wait.min(MAX_WORK_WAIT);
        let Some(spec) = self.claim_spec(&worker, None)? else {
            // The worker's own daily cap: answer "nothing" after the wait, so it does not spin.
            tokio::time::sleep(wait).await;
            return Ok(None);
        };
        // Without a wait a pending task is still claimed (a durable commit): the Dispatcher
        // answers at once when nothing matches.
        let park = !wait.is_zero();
        let deadline = tokio::time::Instant::now() + wait.max(CLAIM_RETRY_WINDOW);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.request_claim(spec.clone(), park)).await {
                Ok(Ok(reply)) => return reply,
                // The Dispatcher died with the claim (a panic): the Supervisor is starting a
                // new one from the store; ask it.
                Ok(Err(_)) if !left.is_zero() => {
                    tokio::time::sleep(CLAIM_RETRY_PAUSE.min(left)).await;
                }
                Ok(Err(_)) => return Err(EngineError::internal("dispatcher dropped a claim")),
                // Dropping the receiver withdraws the claim; a task claimed in that instant is undone.
                Err(_) => return Ok(None),
            }
        }
    }

    /// A worker gives a task back before its deadline; it is offered again at once.
    pub async fn release(&self, worker_id: &WorkerId, task_id: &TaskId) -> Result<(), EngineError> {
        self.check_not_banned(worker_id.as_str())?;
        self.dispatcher
            .send(Release {
                task_id: task_id.to_string(),
                worker_id: worker_id.to_string(),
            })
            .await
            .map_err(EngineError::internal)?
    }

    /// Starts a graceful stop: streams get a final event, parked claims and waits are answered.
    pub fn begin_shutdown(&self) {
        // Readiness goes first, so a load balancer stops sending new work here.
        self.ready.store(false, Ordering::SeqCst);
        self.feed.do_send(CloseAll);
        self.dispatcher.do_send(Shutdown);
    }

    pub async fn submit(
        &self,
        worker_id: &WorkerId,
        task_id: &TaskId,
        output: &Value,
    ) -> Result<Settlement, EngineError> {
        self.check_not_banned(worker_id.as_str())?;
        let text = serde_json::to_string(output).map_err(EngineError::internal)?;
        if text.len() > MAX_OUTPUT_BYTES {
            return Err(EngineError::PayloadTooLarge(format!(
                "output is larger than {} KB",
                MAX_OUTPUT_BYTES / 1024
            )));
        }
        let settled = self
            .store
            .submit(
                task_id.clone(),
                worker_id.clone(),
                text,
                now_ms(),
                self.cfg(),
                roll_bp(),
            )
            .await?;
        if !settled.repeated {
            Metrics::inc(&self.metrics.tasks_completed_total);
            self.publisher
                .publish(effects::settled(worker_id.as_str(), output, &settled));
        }
        Ok(settled)
    }

    pub async fn update_profile(
        &self,
        worker_id: &str,
        patch: ProfilePatch,
    ) -> Result<WorkerRecord, EngineError> {
        let mut profile = self.worker(worker_id).await?.profile;
        if let Some(p) = patch.preferences {
            profile.preferences = p;
        }
        if let Some(s) = patch.schedule {
            profile.schedule = s;
        }
        if let Some(l) = patch.limits {
            profile.limits = l;
        }
        check_profile(&profile)?;
        self.store
            .update_worker_profile(worker_id.to_string(), profile)
            .await
    }

    pub async fn worker_me(&self, worker_id: &str) -> Result<WorkerMe, EngineError> {
        let worker = self.worker(worker_id).await?;
        let today_cents = self
            .store
            .worker_earned_since(worker_id.to_string(), day_start_ms(now_ms()))
            .await?;
        let balance = self.balance(worker_id).await?;
        let tier_progress =
            economics::tier_progress(&self.cfg(), &worker.tier, &worker.stats.tier_stats());
        let notices = self.store.worker_notices(worker_id.to_string()).await?;
        Ok(WorkerMe {
            worker,
            today_cents,
            balance,
            tier_progress,
            notices,
        })
    }

    /// `BANNED` for a worker the QA ladder banned (checked on every worker call).
    pub fn check_not_banned(&self, worker_id: &str) -> Result<(), EngineError> {
        match self.banned.read() {
            Ok(set) if set.contains(worker_id) => Err(EngineError::Banned),
            _ => Ok(()),
        }
    }

    // ---------- admins ----------

    pub async fn config_doc(&self, key: &str) -> Result<StoredConfig, EngineError> {
        self.config_actor
            .send(GetConfig(key.to_string()))
            .await
            .map_err(EngineError::internal)?
    }

    pub async fn put_config(
        &self,
        key: &str,
        doc: Value,
        admin_id: &str,
    ) -> Result<StoredConfig, EngineError> {
        self.config_actor
            .send(PutConfig {
                key: key.to_string(),
                doc,
                admin_id: admin_id.to_string(),
            })
            .await
            .map_err(EngineError::internal)?
    }

    pub async fn admin_credit(
        &self,
        user_id: &UserId,
        amount_cents: i64,
        reason: &str,
        admin_id: &UserId,
        idem: Option<IdemKey>,
    ) -> Result<AdminCredited, EngineError> {
        if !(1..=MAX_PRICE_CENTS).contains(&amount_cents) {
            return Err(EngineError::validation_field(
                "amount_cents",
                format!("amount_cents must be between 1 and {MAX_PRICE_CENTS}"),
            ));
        }
        if reason.trim().is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(EngineError::validation_field(
                "reason",
                format!("a reason of 1 to {MAX_REASON_CHARS} characters is required"),
            ));
        }
        self.store
            .admin_credit(
                user_id.clone(),
                amount_cents,
                reason.to_string(),
                admin_id.clone(),
                now_ms(),
                idem,
            )
            .await
    }

    // ---------- QA (admins) ----------

    /// Decided QA comparisons, newest first; `cursor` is the last page's `cursor`.
    pub async fn qa_results(
        &self,
        worker_id: Option<String>,
        verdict: Option<String>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<QaResult>, bool), EngineError> {
        if let Some(v) = &verdict
            && !matches!(v.as_str(), "pass" | "flag" | "fail")
        {
            return Err(EngineError::validation_field(
                "verdict",
                "verdict is one of pass, flag, fail",
            ));
        }
        let limit = limit.clamp(1, 100);
        let mut rows = self
            .store
            .qa_results(worker_id, verdict, cursor, limit + 1)
            .await?;
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        Ok((rows, has_more))
    }

    pub async fn qa_stats(&self) -> Result<QaStats, EngineError> {
        self.store.qa_stats().await
    }

    /// Puts a benchmark task (known answer, paid by the QA fund) in the queue; returns its id.
    pub async fn inject_benchmark(&self, inject: Inject) -> Result<String, EngineError> {
        self.comparator
            .send(inject)
            .await
            .map_err(EngineError::internal)?
    }

    pub async fn audit(&self) -> Result<AuditReport, EngineError> {
        self.store.audit().await
    }

    pub async fn metrics_text(&self) -> String {
        let gauges = self.dispatcher.send(GetGauges).await.unwrap_or_default();
        self.metrics.render(gauges)
    }

    /// Makes the named actors (`feed_hub`, `dispatcher`, `qa_comparator`) panic, for the tests
    /// of the Supervisor's restarts. Debug builds only.
    #[cfg(debug_assertions)]
    pub fn crash(&self, actors: &[&str]) {
        use crate::slot::Crash;
        for a in actors {
            match *a {
                "feed_hub" => self.feed.do_send(Crash),
                "dispatcher" => self.dispatcher.do_send(Crash),
                "qa_comparator" => self.comparator.do_send(Crash),
                other => tracing::warn!(actor = other, "no such actor to crash"),
            }
        }
    }

    pub fn live_balance_actors(&self) -> usize {
        self.bank.live_actors()
    }
}

/// A uniform draw in [0, 10000), compared with a rate in basis points.
fn roll_bp() -> u32 {
    rand::random_range(0..10_000)
}

/// A task input must be a JSON object of at most 128 KB; returns its JSON text.
fn check_input(input: &Value) -> Result<String, EngineError> {
    if !input.is_object() {
        return Err(EngineError::validation_field(
            "input",
            "input must be a JSON object",
        ));
    }
    let text = serde_json::to_string(input).map_err(EngineError::internal)?;
    if text.len() > MAX_INPUT_BYTES {
        return Err(EngineError::PayloadTooLarge(format!(
            "input is larger than {} KB",
            MAX_INPUT_BYTES / 1024
        )));
    }
    Ok(text)
}

fn check_profile(p: &WorkerProfile) -> Result<(), EngineError> {
    let prefs = &p.preferences;
    for (field, list) in [
        ("accept", &prefs.accept),
        ("reject", &prefs.reject),
        ("languages", &prefs.languages),
    ] {
        let too_long = |s: &String| s.is_empty() || s.chars().count() > MAX_PROFILE_NAME_CHARS;
        if list.len() > MAX_PROFILE_NAMES || list.iter().any(too_long) {
            return Err(EngineError::validation_field(
                &format!("preferences.{field}"),
                format!(
                    "preferences.{field} takes at most {MAX_PROFILE_NAMES} names of 1 to \
                     {MAX_PROFILE_NAME_CHARS} characters"
                ),
            ));
        }
    }
    if prefs.min_price < 0 {
        return Err(EngineError::validation_field(
            "preferences.min_price",
            "min_price must not be negative",
        ));
    }
    if !(1..=MAX_CONCURRENT_TASKS).contains(&p.limits.concurrent) {
        return Err(EngineError::validation_field(
            "limits.concurrent",
            format!("limits.concurrent must be between 1 and {MAX_CONCURRENT_TASKS}"),
        ));
    }
    if p.limits.daily_max_tasks == 0 {
        return Err(EngineError::validation_field(
            "limits.daily_max_tasks",
            "limits.daily_max_tasks must be at least 1",
        ));
    }
    if p.schedule.to_string().len() > MAX_SCHEDULE_BYTES {
        return Err(EngineError::validation_field(
            "schedule",
            format!("schedule is larger than {} KB", MAX_SCHEDULE_BYTES / 1024),
        ));
    }
    Ok(())
}
