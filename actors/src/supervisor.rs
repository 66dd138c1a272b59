//! Supervisor: keeps the node's actors running and runs its schedules. A FeedHub, Dispatcher or
//! QaComparator that panicked is restarted within a quarter of a second and rebuilt from the
//! store (see [`crate::nodes`]). It releases frozen earnings as their windows end (checked every
//! second), returns overdue assigned tasks to the Dispatcher (the safety net behind the
//! Dispatcher's own timers, for tasks whose timer was lost in a restart or lives on another node),
//! and fails pending tasks nobody took within `dispatch.pending_ttl_seconds`, refunding them. It
//! forgets `Idempotency-Key` answers after [`IDEMPOTENCY_KEEP_MS`] (Stripe's 24 hours).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::clock::now_ms;
use crate::config::ConfigHandle;
use crate::dispatcher::{Overdue, TasksFailed};
use crate::metrics::Metrics;
use crate::nodes::Nodes;
use crate::store::Store;

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
const PURGE_EVERY: Duration = Duration::from_secs(600);

pub struct Supervisor {
    store: Arc<dyn Store>,
    config: ConfigHandle,
    nodes: Nodes,
    metrics: Arc<Metrics>,
    unfreezing: bool,
    reviving: bool,
}

impl Supervisor {
    pub fn new(
        store: Arc<dyn Store>,
        config: ConfigHandle,
        nodes: Nodes,
        metrics: Arc<Metrics>,
    ) -> Self {
        Supervisor {
            store,
            config,
            nodes,
            metrics,
            unfreezing: false,
            reviving: false,
        }
    }

    /// Restarts the actors that panicked.
    fn watch(&mut self, ctx: &mut Context<Self>) {
        if self.reviving || self.nodes.all_alive() {
            return;
        }
        self.reviving = true;
        let nodes = self.nodes.clone();
        let fut = async move { nodes.revive().await };
        ctx.spawn(fut.into_actor(self).map(|res, act, _| {
            act.reviving = false;
            match res {
                Ok(revived) => {
                    for actor in revived {
                        tracing::error!(
                            actor,
                            "an actor panicked and was restarted from the store"
                        );
                        Metrics::inc(&act.metrics.actor_restarts_total);
                    }
                }
                // The next look tries again.
                Err(e) => tracing::error!(error = %e, "restarting an actor failed"),
            }
        }));
    }

    fn unfreeze(&mut self, ctx: &mut Context<Self>) {
        if self.unfreezing {
            return;
        }
        self.unfreezing = true;
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
        ctx.spawn(fut.into_actor(self).map(|res, act, _| {
            act.unfreezing = false;
            match res {
                Ok(n) => {
                    act.metrics
                        .lots_released_total
                        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(error = %e, "unfreeze sweep failed"),
            }
        }));
    }

    fn overdue(&mut self, ctx: &mut Context<Self>) {
        let fut = self.store.overdue(now_ms() - OVERDUE_GRACE_MS, BATCH);
        ctx.spawn(fut.into_actor(self).map(|res, act, _| match res {
            Ok(tasks) => {
                for t in tasks {
                    act.nodes.dispatcher.do_send(Overdue(t));
                }
            }
            Err(e) => tracing::warn!(error = %e, "overdue sweep failed"),
        }));
    }

    fn stale(&mut self, ctx: &mut Context<Self>) {
        let ttl_ms = (self.config.get().dispatch.pending_ttl_seconds as i64).saturating_mul(1000);
        let fut = self
            .store
            .fail_stale(now_ms().saturating_sub(ttl_ms), BATCH);
        ctx.spawn(fut.into_actor(self).map(|res, act, _| match res {
            Ok(failed) if !failed.is_empty() => {
                tracing::info!(
                    count = failed.len(),
                    "failed and refunded stale pending tasks"
                );
                act.nodes.dispatcher.do_send(TasksFailed(failed));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "stale sweep failed"),
        }));
    }
}

impl Supervisor {
    fn purge(&mut self, ctx: &mut Context<Self>) {
        let fut = self
            .store
            .purge_idempotency(now_ms().saturating_sub(IDEMPOTENCY_KEEP_MS));
        ctx.spawn(fut.into_actor(self).map(|res, _, _| match res {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "forgot idempotency keys older than 24 h"),
            Err(e) => tracing::warn!(error = %e, "idempotency purge failed"),
        }));
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.unfreeze(ctx);
        self.stale(ctx);
        ctx.run_interval(WATCH_EVERY, |act, ctx| act.watch(ctx));
        ctx.run_interval(UNFREEZE_EVERY, |act, ctx| act.unfreeze(ctx));
        ctx.run_interval(OVERDUE_EVERY, |act, ctx| act.overdue(ctx));
        ctx.run_interval(STALE_EVERY, |act, ctx| act.stale(ctx));
        ctx.run_interval(PURGE_EVERY, |act, ctx| act.purge(ctx));
    }
}
