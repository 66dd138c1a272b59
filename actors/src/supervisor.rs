//! Supervisor: keeps the node's actors running and runs its schedules. A FeedHub, Dispatcher or
//! QaComparator that panicked is restarted within a quarter of a second and rebuilt from the
//! store (see [`crate::nodes`]). It releases frozen earnings as their windows end (checked every
//! second), returns overdue assigned tasks to the Dispatcher (the safety net behind the
//! Dispatcher's own timers, for tasks whose timer was lost in a restart or lives on another node),
//! and fails pending tasks nobody took within `dispatch.pending_ttl_seconds`, refunding them. It
//! forgets `Idempotency-Key` answers after [`IDEMPOTENCY_KEEP_MS`] (Stripe's 24 hours). It runs
//! the bounty timers over their stored due times (warnings, automatic approvals, expiries; see
//! [`Store::bounty_sweep`]), sends buyer webhooks that are due ([`crate::webhooks`]), and purges
//! the input and output of tasks whose refund window and `retention.grace_seconds` have passed
//! ([`crate::rules::retention`]).
//!
//! Each schedule is a [`Job`] with its last run, result and next run, shown in the admin console;
//! an admin may run one now ([`RunJob`]).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::clock::now_ms;
use crate::config::ConfigHandle;
use crate::dispatcher::{Overdue, TasksFailed};
use crate::metrics::Metrics;
use crate::nodes::Nodes;
use crate::store::{Store, audit_log};

/// How often the actors are checked for a panic.
const WATCH_EVERY: Duration = Duration::from_millis(250);
const UNFREEZE_EVERY: Duration = Duration::from_secs(1);
const OVERDUE_EVERY: Duration = Duration::from_secs(5);
/// An assigned task this far past its deadline is handed back by the sweep.
const OVERDUE_GRACE_MS: i64 = 2_000;
const STALE_EVERY: Duration = Duration::from_secs(30);
const BATCH: u32 = 1_000;
/// How long an `Idempotency-Key` is remembered: a repeat within it replays, after it runs anew.
pub const IDEMPOTENCY_KEEP_MS: i64 = 24 * 3600 * 1000;
/// How long a settled webhook delivery (delivered, dead or cancelled) stays readable: Stripe keeps
/// events 30 days.
pub const DELIVERIES_KEEP_MS: i64 = 30 * 24 * 3600 * 1000;
const PURGE_EVERY: Duration = Duration::from_secs(600);
const BOUNTIES_EVERY: Duration = Duration::from_secs(2);
/// At most this many of each kind of bounty timer per pass (the rest on the next).
const BOUNTY_BATCH: u32 = 100;
const WEBHOOKS_EVERY: Duration = Duration::from_secs(1);
const PURGE_TASKS_EVERY: Duration = Duration::from_secs(60);
/// Batches of task purges per run at most (the rest on the next run).
const PURGE_TASK_BATCHES: u32 = 20;

/// The Supervisor's schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    Watch,
    Unfreeze,
    Overdue,
    Stale,
    PurgeIdempotency,
    Bounties,
    Webhooks,
    PurgeTasks,
}

impl Job {
    pub const ALL: [Job; 8] = [
        Job::Watch,
        Job::Unfreeze,
        Job::Overdue,
        Job::Stale,
        Job::PurgeIdempotency,
        Job::Bounties,
        Job::Webhooks,
        Job::PurgeTasks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::Watch => "watch",
            Job::Unfreeze => "unfreeze",
            Job::Overdue => "overdue",
            Job::Stale => "stale",
            Job::PurgeIdempotency => "purge_idempotency",
            Job::Bounties => "bounties",
            Job::Webhooks => "webhooks",
            Job::PurgeTasks => "purge_tasks",
        }
    }

    pub fn parse(name: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|j| j.name() == name)
    }

    fn every(self) -> Duration {
        match self {
            Job::Watch => WATCH_EVERY,
            Job::Unfreeze => UNFREEZE_EVERY,
            Job::Overdue => OVERDUE_EVERY,
            Job::Stale => STALE_EVERY,
            Job::PurgeIdempotency => PURGE_EVERY,
            Job::Bounties => BOUNTIES_EVERY,
            Job::Webhooks => WEBHOOKS_EVERY,
            Job::PurgeTasks => PURGE_TASKS_EVERY,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Job::Watch => "restarts a FeedHub, Dispatcher or QaComparator that panicked",
            Job::Unfreeze => "releases frozen earnings whose refund window ended",
            Job::Overdue => "hands assigned tasks past their deadline back to the Dispatcher",
            Job::Stale => {
                "fails and refunds pending tasks nobody took in dispatch.pending_ttl_seconds"
            }
            Job::PurgeIdempotency => {
                "forgets Idempotency-Key answers older than 24 hours, settled webhook \
                 deliveries older than 30 days and audit-log entries older than 90 days (the \
                 last one kept as the chain's anchor; never while the chain is broken)"
            }
            Job::Bounties => {
                "warns buyers of automatic approvals, approves submissions left unreviewed and \
                 expires bounties past their deadline (refunded)"
            }
            Job::Webhooks => {
                "sends the buyer webhooks that are due (retries with backoff, then dead-letters)"
            }
            Job::PurgeTasks => {
                "purges the input and output of ended tasks once their refund window and \
                 retention.grace_seconds have passed (status, price and entries stay)"
            }
        }
    }
}

/// What the console shows of a job.
#[derive(Debug, Default, Clone)]
struct JobState {
    runs: u64,
    failures: u64,
    running: bool,
    last_started_ms: Option<i64>,
    last_duration_ms: Option<i64>,
    last_result: Option<Result<String, String>>,
}

pub struct Supervisor {
    store: Arc<dyn Store>,
    config: ConfigHandle,
    nodes: Nodes,
    metrics: Arc<Metrics>,
    webhooks: crate::webhooks::Sender,
    /// When the schedules started ticking (their next runs follow from it).
    started_ms: i64,
    jobs: std::collections::HashMap<Job, JobState>,
}

impl Supervisor {
    pub fn new(
        store: Arc<dyn Store>,
        config: ConfigHandle,
        nodes: Nodes,
        metrics: Arc<Metrics>,
        webhooks: crate::webhooks::Sender,
    ) -> Self {
        Supervisor {
            store,
            config,
            nodes,
            metrics,
            webhooks,
            started_ms: now_ms(),
            jobs: Job::ALL
                .into_iter()
                .map(|j| (j, JobState::default()))
                .collect(),
        }
    }

    /// Marks `job` running; false if it already is (a run is never started twice at once).
    fn begin(&mut self, job: Job) -> bool {
        let state = self.jobs.entry(job).or_default();
        if state.running {
            return false;
        }
        state.running = true;
        state.last_started_ms = Some(now_ms());
        true
    }

    fn finish(&mut self, job: Job, result: Result<String, String>) {
        let state = self.jobs.entry(job).or_default();
        state.running = false;
        state.runs += 1;
        if result.is_err() {
            state.failures += 1;
        }
        state.last_duration_ms = state.last_started_ms.map(|t| now_ms() - t);
        state.last_result = Some(result);
    }

    fn run(&mut self, job: Job, ctx: &mut Context<Self>) {
        match job {
            Job::Watch => self.watch(ctx),
            Job::Unfreeze => self.unfreeze(ctx),
            Job::Overdue => self.overdue(ctx),
            Job::Stale => self.stale(ctx),
            Job::PurgeIdempotency => self.purge(ctx),
            Job::Bounties => self.bounties(ctx),
            Job::Webhooks => self.send_webhooks(ctx),
            Job::PurgeTasks => self.purge_tasks(ctx),
        }
    }

    /// Restarts the actors that panicked.
    fn watch(&mut self, ctx: &mut Context<Self>) {
        if self.nodes.all_alive() {
            // The common case, four times a second: counted without a spawn.
            if self.begin(Job::Watch) {
                self.finish(Job::Watch, Ok("all actors alive".into()));
            }
            return;
        }
        if !self.begin(Job::Watch) {
            return;
        }
        let nodes = self.nodes.clone();
        let fut = async move { nodes.revive().await };
        ctx.spawn(fut.into_actor(self).map(|res, act, _| match res {
            Ok(revived) => {
                for actor in &revived {
                    tracing::error!(actor, "an actor panicked and was restarted from the store");
                    Metrics::inc(&act.metrics.actor_restarts_total);
                }
                act.finish(Job::Watch, Ok(format!("restarted {}", revived.join(", "))));
            }
            // The next look tries again.
            Err(e) => {
                tracing::error!(error = %e, "restarting an actor failed");
                act.finish(Job::Watch, Err(e.to_string()));
            }
        }));
    }

    fn unfreeze(&mut self, ctx: &mut Context<Self>) {
        if !self.begin(Job::Unfreeze) {
            return;
        }
        let store = self.store.clone();
        let fut = async move {
            let now = now_ms();
            let mut released = 0;
            // Read first, so that a quiet second costs no write transaction.
            while store
                .next_unfreeze_ms()
                .await?
                .is_some_and(|due| due <= now)
            {
                let n = store.unfreeze_due(now, BATCH).await?;
                released += n;
                if n < u64::from(BATCH) {
                    break;
                }
            }
            Ok::<u64, crate::EngineError>(released)
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, _| match res {
            Ok(n) => {
                act.metrics
                    .lots_released_total
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                act.finish(Job::Unfreeze, Ok(format!("released {n} earnings")));
            }
            Err(e) => {
                tracing::warn!(error = %e, "unfreeze sweep failed");
                act.finish(Job::Unfreeze, Err(e.to_string()));
            }
        }));
    }

    fn overdue(&mut self, ctx: &mut Context<Self>) {
        if !self.begin(Job::Overdue) {
            return;
        }
        let fut = self.store.overdue(now_ms() - OVERDUE_GRACE_MS, BATCH);
        ctx.spawn(fut.into_actor(self).map(|res, act, _| match res {
            Ok(tasks) => {
                let n = tasks.len();
                for t in tasks {
                    act.nodes.dispatcher.do_send(Overdue(t));
                }
                act.finish(Job::Overdue, Ok(format!("handed back {n} overdue tasks")));
            }
            Err(e) => {
                tracing::warn!(error = %e, "overdue sweep failed");
                act.finish(Job::Overdue, Err(e.to_string()));
            }
        }));
    }

    fn stale(&mut self, ctx: &mut Context<Self>) {
        if !self.begin(Job::Stale) {
            return;
        }
        let ttl_ms = (self.config.get().dispatch.pending_ttl_seconds as i64).saturating_mul(1000);
        let fut = self
            .store
            .fail_stale(now_ms().saturating_sub(ttl_ms), BATCH);
        ctx.spawn(fut.into_actor(self).map(|res, act, _| match res {
            Ok(failed) => {
                let n = failed.len();
                if n > 0 {
                    tracing::info!(count = n, "failed and refunded stale pending tasks");
                    act.nodes.dispatcher.do_send(TasksFailed(failed));
                }
                act.finish(
                    Job::Stale,
                    Ok(format!("failed and refunded {n} stale tasks")),
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "stale sweep failed");
                act.finish(Job::Stale, Err(e.to_string()));
            }
        }));
    }

    fn bounties(&mut self, ctx: &mut Context<Self>) {
        if !self.begin(Job::Bounties) {
            return;
        }
        let cfg = self.config.get();
        let tiers = crate::rules::bounty::validator_tiers(&cfg, &cfg.bounty.validator_min_tier);
        let fut = self.store.bounty_sweep(now_ms(), BOUNTY_BATCH, tiers);
        ctx.spawn(fut.into_actor(self).map(|res, act, _| {
            let result = match res {
                Ok(done) => {
                    let (w, a, e) = (done.warned.len(), done.approved.len(), done.expired.len());
                    let i = done.invited;
                    if !done.is_empty() {
                        tracing::info!(
                            warned = w,
                            approved = a,
                            expired = e,
                            invited = i,
                            "bounty timers"
                        );
                    }
                    Ok(format!(
                        "warned {w}, approved {a}, expired {e}, validators asked {i}"
                    ))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "bounty sweep failed");
                    Err(e.to_string())
                }
            };
            act.finish(Job::Bounties, result);
        }));
    }

    /// Starts the due webhook deliveries; their attempts finish (and are recorded) on their own.
    fn send_webhooks(&mut self, ctx: &mut Context<Self>) {
        if !self.begin(Job::Webhooks) {
            return;
        }
        let sender = self.webhooks.clone();
        let fut = async move { sender.pass().await };
        ctx.spawn(fut.into_actor(self).map(|res, act, _| {
            let result = match res {
                Ok(p) => Ok(format!("started {}, {} under way", p.started, p.in_flight)),
                Err(e) => {
                    tracing::warn!(error = %e, "webhook pass failed");
                    Err(e.to_string())
                }
            };
            act.finish(Job::Webhooks, result);
        }));
    }

    fn purge(&mut self, ctx: &mut Context<Self>) {
        if !self.begin(Job::PurgeIdempotency) {
            return;
        }
        let store = self.store.clone();
        let fut = async move {
            let now = now_ms();
            let keys = store
                .purge_idempotency(now.saturating_sub(IDEMPOTENCY_KEEP_MS))
                .await?;
            let deliveries = store
                .purge_deliveries(now.saturating_sub(DELIVERIES_KEEP_MS))
                .await?;
            // A broken chain is kept as evidence; the other purges still count.
            let audit = match store
                .prune_audit_log(now.saturating_sub(audit_log::RETENTION_MS))
                .await
            {
                Ok(pruned) => pruned.removed,
                Err(e) => {
                    tracing::error!(error = %e, "audit log not pruned");
                    0
                }
            };
            Ok::<_, crate::EngineError>((keys, deliveries, audit))
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, _| {
            let result = match res {
                Ok((keys, deliveries, audit)) => {
                    if keys + deliveries + audit > 0 {
                        tracing::info!(
                            keys,
                            deliveries,
                            audit,
                            "forgot idempotency keys older than 24 h, webhook deliveries older \
                             than 30 days and audit entries older than 90 days"
                        );
                    }
                    Ok(format!(
                        "forgot {keys} keys, {deliveries} deliveries, {audit} audit entries"
                    ))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "purge failed");
                    Err(e.to_string())
                }
            };
            act.finish(Job::PurgeIdempotency, result);
        }));
    }

    fn purge_tasks(&mut self, ctx: &mut Context<Self>) {
        if !self.begin(Job::PurgeTasks) {
            return;
        }
        let store = self.store.clone();
        let grace_ms = self.config.get().retention.grace_ms();
        let fut = async move {
            let now = now_ms();
            let mut purged = 0;
            for _ in 0..PURGE_TASK_BATCHES {
                let pass = store.purge_task_data(now, grace_ms, BATCH).await?;
                purged += pass.purged;
                if !pass.more || pass.purged == 0 {
                    break;
                }
            }
            Ok::<u64, crate::EngineError>(purged)
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, _| {
            let result = match res {
                Ok(n) => {
                    act.metrics
                        .tasks_purged_total
                        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    if n > 0 {
                        tracing::info!(tasks = n, "purged the content of ended tasks");
                    }
                    Ok(format!("purged {n} tasks' input and output"))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "task purge failed");
                    Err(e.to_string())
                }
            };
            act.finish(Job::PurgeTasks, result);
        }));
    }

    /// The next scheduled run of `job`: its intervals tick from the actor's start.
    fn next_run_ms(&self, job: Job, now: i64) -> i64 {
        let every = job.every().as_millis().max(1) as i64;
        let since = (now - self.started_ms).max(0);
        self.started_ms + (since / every + 1) * every
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.unfreeze(ctx);
        self.stale(ctx);
        for job in Job::ALL {
            ctx.run_interval(job.every(), move |act, ctx| act.run(job, ctx));
        }
        // The console's per-second figures (messages/s, the slowest wait) are cut here.
        ctx.run_interval(Duration::from_secs(1), |_, _| {
            crate::meter::registry().sample()
        });
    }
}

/// Runs a job now (an admin's "run now"; the engine writes the audit entry first). Refused when
/// the job is running already.
#[derive(Message)]
#[rtype(result = "Result<(), crate::EngineError>")]
pub struct RunJob(pub Job);

impl Handler<RunJob> for Supervisor {
    type Result = Result<(), crate::EngineError>;
    fn handle(&mut self, msg: RunJob, ctx: &mut Context<Self>) -> Self::Result {
        if self.jobs.get(&msg.0).is_some_and(|s| s.running) {
            return Err(crate::EngineError::Conflict(format!(
                "{} is running now; try again when it finishes",
                msg.0.name()
            )));
        }
        self.run(msg.0, ctx);
        Ok(())
    }
}

crate::metered!(Supervisor: RunJob);

impl Handler<crate::meter::Inspect> for Supervisor {
    type Result = crate::meter::State;
    fn handle(&mut self, _: crate::meter::Inspect, _: &mut Context<Self>) -> crate::meter::State {
        use crate::clock::rfc3339;
        let now = now_ms();
        let jobs: Vec<_> = Job::ALL
            .into_iter()
            .map(|job| {
                let s = self.jobs.get(&job).cloned().unwrap_or_default();
                let (ok, result) = match &s.last_result {
                    None => (None, None),
                    Some(Ok(r)) => (Some(true), Some(r.clone())),
                    Some(Err(e)) => (Some(false), Some(e.clone())),
                };
                serde_json::json!({
                    "name": job.name(),
                    "what": job.what(),
                    "every_ms": job.every().as_millis() as u64,
                    "running": s.running,
                    "runs": s.runs,
                    "failures": s.failures,
                    "last_run": s.last_started_ms.map(rfc3339),
                    "last_duration_ms": s.last_duration_ms,
                    "last_ok": ok,
                    "last_result": result,
                    "next_run": rfc3339(self.next_run_ms(job, now)),
                })
            })
            .collect();
        let alive = serde_json::json!({
            "dispatcher": self.nodes.dispatcher.alive(),
            "feed_hub": self.nodes.feed.alive(),
            "qa_comparator": self.nodes.comparator.alive(),
        });
        crate::meter::State(serde_json::json!({ "jobs": jobs, "supervised": alive }))
    }
}
