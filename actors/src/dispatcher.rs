//! Dispatcher: the node's index of live tasks and of the workers waiting for one.
//!
//! It holds pending tasks in arrival order (indexed by type and price, see [`crate::queue`]), parked long-poll
//! claimers, and a deadline timer for every assigned task. A new task goes straight to the first
//! waiting worker it matches; nothing polls. Claims are committed in the store (a guarded
//! `pending → assigned` write) before the worker hears of them, and undone if the worker left in
//! the meantime. Buyers waiting on a task register here and are woken when it becomes final.
//! Talks to: the store (claim, expire, unclaim), the engine (new tasks, finished tasks), the
//! Supervisor (overdue and stale sweeps).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::clock::now_ms;
use crate::config::ConfigHandle;
use crate::effects::{Effect, Publisher};
use crate::error::EngineError;
use crate::metrics::{Gauges, Metrics};
use crate::queue::{Barred, Pending, PendingIndex, Want};
use crate::store::{
    Assignment, ClaimOutcome, ClaimedTask, ExpireOutcome, FailedTask, LiveTask, QaCopy, Store,
};

/// What a worker will take.
#[derive(Clone)]
pub struct ClaimSpec {
    pub worker_id: String,
    pub accept: Vec<String>,
    pub reject: Vec<String>,
    pub min_price_cents: i64,
    /// Told when a task claimed through this spec expires (a WebSocket session); long-polls have
    /// no one to tell.
    pub notify: Option<crate::meter::MeteredRecipient<TaskExpired>>,
    /// Tasks this worker just gave back, not to be offered to it again at once.
    pub exclude: Vec<String>,
    /// Its tier's place among the tiers (0 for the lowest): higher ranks come first for tasks at
    /// or above `config:tiers.priority_min_price_cents`.
    pub rank: u32,
}

/// A task the worker held went back to the queue (or failed) because its deadline passed.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct TaskExpired {
    pub task_id: String,
}

impl ClaimSpec {
    fn want<'a>(&'a self, barred: &'a Barred) -> Want<'a> {
        Want {
            worker_id: &self.worker_id,
            accept: &self.accept,
            reject: &self.reject,
            min_price_cents: self.min_price_cents,
            exclude: &self.exclude,
            barred,
        }
    }
}

pub type ClaimReply = Result<Option<ClaimedTask>, EngineError>;

struct Claimer {
    spec: ClaimSpec,
    /// Names the ask for [`Withdraw`] (0: not withdrawable; dropping `reply` withdraws it).
    ticket: u64,
    reply: oneshot::Sender<ClaimReply>,
    /// Whether to wait for a task when none matches now.
    park: bool,
}

/// The fairness roll: with `fairness_bp` in 10 000, a hand-off ignores tier priority.
fn ignores_tiers(fairness_bp: crate::config::RateBp) -> bool {
    fairness_bp > 0 && rand::random_range(0..10_000) < fairness_bp
}

impl From<&LiveTask> for Pending {
    fn from(t: &LiveTask) -> Self {
        Pending {
            seq: t.seq,
            task_id: t.task_id.clone(),
            task_type: t.task_type.clone(),
            price_cents: t.price_cents,
            buyer_id: t.buyer_id.clone(),
            qa_key: t.qa_key.clone(),
        }
    }
}

struct Held {
    pending: Pending,
    assignment: Assignment,
    timer: SpawnHandle,
    notify: Option<crate::meter::MeteredRecipient<TaskExpired>>,
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    config: ConfigHandle,
    metrics: Arc<Metrics>,
    /// Pending tasks by type, price and arrival order.
    pending: PendingIndex,
    /// Tasks whose claim is being committed.
    offered: usize,
    held: HashMap<String, Held>,
    parked: VecDeque<Claimer>,
    /// Who already had which QA input (a cache of the store's own check in the claim).
    barred: Barred,
    watchers: HashMap<String, Vec<oneshot::Sender<()>>>,
    /// Tells the buyers' streams what happened to their tasks.
    publisher: Publisher,
    /// Shutting down: nobody is parked any more.
    closing: bool,
    /// Its mailbox meter, where the console's gauges are kept.
    meter: Option<Arc<crate::meter::Meter>>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        config: ConfigHandle,
        metrics: Arc<Metrics>,
        publisher: Publisher,
    ) -> Self {
        Dispatcher {
            store,
            config,
            metrics,
            publisher,
            closing: false,
            meter: None,
            pending: PendingIndex::default(),
            offered: 0,
            held: HashMap::new(),
            parked: VecDeque::new(),
            barred: Barred::new(),
            watchers: HashMap::new(),
        }
    }

    /// A task is free: hand it to a waiting worker that takes it — for a high-value task the
    /// highest-tier one (unless the fairness roll says otherwise), else the one waiting longest —
    /// or index it.
    fn offer(&mut self, task: Pending, ctx: &mut Context<Self>) {
        let cfg = self.config.get();
        let by_tier = task.price_cents >= cfg.tiers.priority_min_price_cents
            && !ignores_tiers(cfg.qa.fairness_bp());
        // Claimers that gave up are skipped here and swept out by the periodic clean-up.
        let mut takers = self
            .parked
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.reply.is_closed() && c.spec.want(&self.barred).takes(&task));
        let taker = if by_tier {
            takers
                .max_by_key(|(i, c)| (c.spec.rank, std::cmp::Reverse(*i)))
                .map(|(i, _)| i)
        } else {
            takers.next().map(|(i, _)| i)
        };
        if let Some(i) = taker
            && let Some(claimer) = self.parked.remove(i)
        {
            self.claim(task, claimer, ctx);
            return;
        }
        self.pending.insert(task);
    }

    /// A worker asks: give it the best match, or park it, or say there is nothing.
    fn serve(&mut self, claimer: Claimer, ctx: &mut Context<Self>) {
        if claimer.reply.is_closed() {
            return;
        }
        let cfg = self.config.get();
        let want = claimer.spec.want(&self.barred);
        // A worker above the lowest tier gets the oldest high-value task it takes, before older,
        // cheaper ones.
        let valued = claimer.spec.rank > 0 && !ignores_tiers(cfg.qa.fairness_bp());
        let found = match valued {
            true => self
                .pending
                .take_valued(&want, cfg.tiers.priority_min_price_cents)
                .or_else(|| self.pending.take_match(&want)),
            false => self.pending.take_match(&want),
        };
        match found {
            Some(task) => self.claim(task, claimer, ctx),
            None if claimer.park && !self.closing => self.parked.push_back(claimer),
            None => {
                let _ = claimer.reply.send(Ok(None));
            }
        }
    }

    fn claim(&mut self, task: Pending, claimer: Claimer, ctx: &mut Context<Self>) {
        self.offered += 1;
        let fut = self.store.claim(
            task.task_id.as_str().into(),
            claimer.spec.worker_id.as_str().into(),
            now_ms(),
        );
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.offered -= 1;
            act.claimed(task, claimer, res, ctx);
        }));
    }

    fn claimed(
        &mut self,
        task: Pending,
        claimer: Claimer,
        res: Result<ClaimOutcome, EngineError>,
        ctx: &mut Context<Self>,
    ) {
        let refuse = |act: &mut Self,
                      task: Pending,
                      claimer: Claimer,
                      err: EngineError,
                      ctx: &mut Context<Self>| {
            act.offer(task, ctx);
            let _ = claimer.reply.send(Err(err));
        };
        match res {
            Ok(ClaimOutcome::Claimed(ct)) => {
                let assignment = Assignment {
                    worker_id: claimer.spec.worker_id.clone(),
                    attempt: ct.attempt,
                    deadline_ms: ct.deadline_ms,
                };
                // Published before the worker hears of it, so the buyer's stream stays in order.
                self.publisher.publish([Effect::status(
                    &task.buyer_id,
                    &task.task_id,
                    "assigned",
                    serde_json::json!({}),
                )]);
                if let Some(key) = &task.qa_key {
                    self.bar(key, &claimer.spec.worker_id);
                }
                let notify = claimer.spec.notify.clone();
                match claimer.reply.send(Ok(Some(ct))) {
                    Ok(()) => {
                        Metrics::inc(&self.metrics.tasks_claimed_total);
                        self.hold(task, assignment, notify, ctx);
                    }
                    // The worker went away while the claim was committed: undo it, no expiry counted.
                    Err(_) => self.unclaim(task, assignment, ctx),
                }
            }
            Ok(ClaimOutcome::TaskGone) => self.serve(claimer, ctx),
            // The worker had this input before (learnt from the store, e.g. after a restart).
            Ok(ClaimOutcome::NotForWorker { qa_key }) => {
                self.bar(&qa_key, &claimer.spec.worker_id);
                self.offer(task, ctx);
                self.serve(claimer, ctx);
            }
            // Two asks raced past the engine's check of the same rule.
            Ok(ClaimOutcome::Refused(r)) => match r.into_error() {
                Some(e) => refuse(self, task, claimer, e, ctx),
                // The worker's own daily cap: nothing today.
                None => {
                    self.offer(task, ctx);
                    let _ = claimer.reply.send(Ok(None));
                }
            },
            Ok(ClaimOutcome::UnknownWorker) => refuse(
                self,
                task,
                claimer,
                EngineError::Unauthorized("unknown worker".into()),
                ctx,
            ),
            Err(e) => refuse(self, task, claimer, e, ctx),
        }
    }

    fn bar(&mut self, qa_key: &str, worker_id: &str) {
        self.barred
            .entry(qa_key.to_string())
            .or_default()
            .insert(worker_id.to_string());
    }

    fn unclaim(&mut self, task: Pending, a: Assignment, ctx: &mut Context<Self>) {
        let fut = self.store.unclaim(
            task.task_id.as_str().into(),
            a.worker_id.as_str().into(),
            a.attempt,
        );
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Some(_)) => act.requeue(task, ctx),
            Ok(None) => {}
            // The claim stands; its deadline will return the task.
            Err(e) => {
                tracing::warn!(task = %task.task_id, error = %e, "unclaim failed");
                act.hold(task, a, None, ctx);
            }
        }));
    }

    /// A task that was assigned is pending again: tell its buyer, then offer it.
    fn requeue(&mut self, task: Pending, ctx: &mut Context<Self>) {
        self.publisher.publish([Effect::status(
            &task.buyer_id,
            &task.task_id,
            "pending",
            serde_json::json!({}),
        )]);
        self.offer(task, ctx);
    }

    fn hold(
        &mut self,
        task: Pending,
        assignment: Assignment,
        notify: Option<crate::meter::MeteredRecipient<TaskExpired>>,
        ctx: &mut Context<Self>,
    ) {
        let wait = Duration::from_millis((assignment.deadline_ms - now_ms()).max(0) as u64);
        let task_id = task.task_id.clone();
        let timer = ctx.run_later(wait, move |act, ctx| act.expire(&task_id, ctx));
        let held = Held {
            pending: task,
            assignment,
            timer,
            notify,
        };
        if let Some(old) = self.held.insert(held.pending.task_id.clone(), held) {
            ctx.cancel_future(old.timer);
        }
    }

    /// The deadline timer of a held task fired.
    fn expire(&mut self, task_id: &str, ctx: &mut Context<Self>) {
        let Some(held) = self.held.remove(task_id) else {
            return;
        };
        ctx.cancel_future(held.timer);
        self.expire_assignment(held.pending, held.assignment, held.notify, ctx);
    }

    /// Takes a task back from the worker of `a` (guarded in the store by worker and attempt).
    fn expire_assignment(
        &mut self,
        task: Pending,
        a: Assignment,
        notify: Option<crate::meter::MeteredRecipient<TaskExpired>>,
        ctx: &mut Context<Self>,
    ) {
        let fut = self.store.expire(
            task.task_id.as_str().into(),
            a.worker_id.as_str().into(),
            a.attempt,
            now_ms(),
            self.config.get(),
        );
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let tell = |notify: &Option<crate::meter::MeteredRecipient<TaskExpired>>,
                        task_id: &str| {
                if let Some(n) = notify {
                    n.do_send(TaskExpired {
                        task_id: task_id.to_string(),
                    });
                }
            };
            let suspended = match res {
                Ok(ExpireOutcome::Requeued {
                    suspended_until_ms, ..
                }) => {
                    Metrics::inc(&act.metrics.tasks_expired_total);
                    tell(&notify, &task.task_id);
                    act.requeue(task, ctx);
                    suspended_until_ms
                }
                Ok(ExpireOutcome::Failed {
                    suspended_until_ms, ..
                }) => {
                    Metrics::inc(&act.metrics.tasks_expired_total);
                    Metrics::inc(&act.metrics.tasks_failed_total);
                    tell(&notify, &task.task_id);
                    act.failed(&task.buyer_id, &task.task_id);
                    suspended_until_ms
                }
                Ok(ExpireOutcome::Stale) => None,
                Err(e) => {
                    // Try again shortly: the deadline has passed and the task must come back.
                    tracing::warn!(task = %task.task_id, error = %e, "expiry failed; retrying");
                    let task_id = task.task_id.clone();
                    let timer = ctx.run_later(Duration::from_secs(1), move |act, ctx| {
                        act.expire(&task_id, ctx)
                    });
                    act.held.insert(
                        task.task_id.clone(),
                        Held {
                            pending: task,
                            assignment: a,
                            timer,
                            notify,
                        },
                    );
                    None
                }
            };
            if suspended.is_some() {
                Metrics::inc(&act.metrics.workers_suspended_total);
            }
        }));
    }

    /// A task failed and was refunded: tell its buyer and wake whoever waits on it.
    fn failed(&mut self, buyer_id: &str, task_id: &str) {
        self.publisher.publish([Effect::status(
            buyer_id,
            task_id,
            "failed",
            serde_json::json!({}),
        )]);
        self.wake(task_id);
    }

    fn wake(&mut self, task_id: &str) {
        if let Some(ws) = self.watchers.remove(task_id) {
            for w in ws {
                let _ = w.send(());
            }
        }
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1 << 20);
        // Forget watchers whose buyers stopped waiting.
        ctx.run_interval(Duration::from_secs(10), |act, _| {
            act.watchers.retain(|_, ws| {
                ws.retain(|w| !w.is_closed());
                !ws.is_empty()
            });
            act.parked.retain(|c| !c.reply.is_closed());
            // Keys with no live task left are not needed (the store still has the final word).
            let live: HashSet<&str> = act
                .pending
                .qa_keys()
                .chain(
                    act.held
                        .values()
                        .filter_map(|h| h.pending.qa_key.as_deref()),
                )
                .collect();
            act.barred.retain(|k, _| live.contains(k.as_str()));
        });
        ctx.run_interval(Duration::from_secs(1), |act, _| {
            if let Some(m) = &act.meter {
                m.set_gauge(0, (act.pending.len() + act.offered) as i64);
                m.set_gauge(1, act.held.len() as i64);
                m.set_gauge(
                    2,
                    act.parked.iter().filter(|c| !c.reply.is_closed()).count() as i64,
                );
            }
        });
    }
}

crate::crash_on_request!(Dispatcher);

impl crate::slot::Slotted for Dispatcher {
    const KIND: &'static str = "Dispatcher";
    const GAUGES: crate::meter::Gauges = &["pending", "assigned", "parked"];
    fn set_meter(&mut self, meter: Arc<crate::meter::Meter>) {
        self.meter = Some(meter);
    }
}

crate::metered!(Dispatcher: Claim, Withdraw, TaskPending, Recover, TaskFinal, TaskTaken,
    TasksFailed, Release, Shutdown, Overdue, Watch, GetGauges, GetLiveIds);

/// The tasks the Dispatcher holds, for the console's comparison with the store.
#[derive(Message)]
#[rtype(result = "LiveIds")]
pub struct GetLiveIds;

#[derive(Debug, Default, Clone, MessageResponse)]
pub struct LiveIds {
    /// Pending, and being claimed right now.
    pub pending: HashSet<String>,
    /// Assigned, with the worker holding it.
    pub assigned: HashMap<String, String>,
}

impl Handler<GetLiveIds> for Dispatcher {
    type Result = LiveIds;
    fn handle(&mut self, _: GetLiveIds, _: &mut Context<Self>) -> LiveIds {
        LiveIds {
            pending: self.pending.ids().map(str::to_string).collect(),
            assigned: self
                .held
                .iter()
                .map(|(id, h)| (id.clone(), h.assignment.worker_id.clone()))
                .collect(),
        }
    }
}

/// How many of a list the console is shown.
const INSPECT_ROWS: usize = 50;

impl Handler<crate::meter::Inspect> for Dispatcher {
    type Result = crate::meter::State;
    fn handle(&mut self, _: crate::meter::Inspect, _: &mut Context<Self>) -> crate::meter::State {
        use crate::clock::rfc3339;
        let mut held: Vec<_> = self.held.iter().collect();
        held.sort_by_key(|(_, h)| h.assignment.deadline_ms);
        let parked: Vec<_> = self
            .parked
            .iter()
            .filter(|c| !c.reply.is_closed())
            .collect();
        crate::meter::State(serde_json::json!({
            "pending_by_type": self.pending.counts_by_type(),
            "pending": self.pending.len(),
            "being_claimed": self.offered,
            "assigned": self.held.len(),
            "assigned_first_due": held.iter().take(INSPECT_ROWS).map(|(id, h)| serde_json::json!({
                "task_id": id, "type": h.pending.task_type, "price_cents": h.pending.price_cents,
                "worker_id": h.assignment.worker_id, "attempt": h.assignment.attempt,
                "deadline": rfc3339(h.assignment.deadline_ms), "websocket": h.notify.is_some(),
            })).collect::<Vec<_>>(),
            "parked_claimers": parked.len(),
            "parked": parked.iter().take(INSPECT_ROWS).map(|c| serde_json::json!({
                "worker_id": c.spec.worker_id, "accept": c.spec.accept, "reject": c.spec.reject,
                "min_price_cents": c.spec.min_price_cents, "websocket": c.spec.notify.is_some(),
            })).collect::<Vec<_>>(),
            "task_watchers": self.watchers.values().flatten().filter(|w| !w.is_closed()).count(),
            "qa_inputs_tracked": self.barred.len(),
            "closing": self.closing,
        }))
    }
}

/// A worker asks for a task. The answer comes on `reply`; with `park`, only once one is claimed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Claim {
    pub spec: ClaimSpec,
    pub park: bool,
    /// For a later [`Withdraw`]; 0 for none.
    pub ticket: u64,
    pub reply: oneshot::Sender<ClaimReply>,
}

impl Handler<Claim> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: Claim, ctx: &mut Context<Self>) {
        self.serve(
            Claimer {
                spec: msg.spec,
                ticket: msg.ticket,
                reply: msg.reply,
                park: msg.park,
            },
            ctx,
        );
    }
}

/// A long-poll's wait is over: a parked ask is answered "nothing"; an ask whose claim is being
/// committed is left to finish, so the worker gets that task rather than a 204 followed by an
/// undo (which its next ask could trip over).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Withdraw {
    pub ticket: u64,
}

impl Handler<Withdraw> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: Withdraw, _: &mut Context<Self>) {
        if let Some(i) = self.parked.iter().position(|c| c.ticket == msg.ticket)
            && let Some(c) = self.parked.remove(i)
        {
            let _ = c.reply.send(Ok(None));
        }
    }
}

/// A task was committed as pending (posted, or a QA copy); `barred` workers must not get it.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct TaskPending {
    pub task: LiveTask,
    pub barred: Vec<String>,
}

impl From<LiveTask> for TaskPending {
    fn from(task: LiveTask) -> Self {
        TaskPending {
            task,
            barred: Vec::new(),
        }
    }
}

impl From<QaCopy> for TaskPending {
    fn from(c: QaCopy) -> Self {
        TaskPending {
            task: c.task,
            barred: c.barred,
        }
    }
}

impl Handler<TaskPending> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: TaskPending, ctx: &mut Context<Self>) {
        if let Some(key) = &msg.task.qa_key {
            for w in &msg.barred {
                self.bar(key, w);
            }
        }
        self.offer(Pending::from(&msg.task), ctx);
    }
}

/// The live tasks found in the store at start: pending ones are offered, assigned ones get their
/// deadline timers back (already past: they expire at once).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Recover(pub Vec<LiveTask>);

impl Handler<Recover> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: Recover, ctx: &mut Context<Self>) {
        for t in msg.0 {
            match t.assigned.clone() {
                Some(a) => self.hold(Pending::from(&t), a, None, ctx),
                None => self.offer(Pending::from(&t), ctx),
            }
        }
    }
}

/// A task reached a final state (completed, credited, failed): drop its timer, wake its watchers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TaskFinal {
    pub task_id: String,
}

impl Handler<TaskFinal> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: TaskFinal, ctx: &mut Context<Self>) {
        if let Some(h) = self.held.remove(&msg.task_id) {
            ctx.cancel_future(h.timer);
        }
        self.pending.remove(&msg.task_id);
        self.wake(&msg.task_id);
    }
}

/// A task was assigned (on this node or another): it is no longer offered. A task this node
/// holds is left alone (its own claim is what is heard).
#[derive(Message)]
#[rtype(result = "()")]
pub struct TaskTaken {
    pub task_id: String,
}

impl Handler<TaskTaken> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: TaskTaken, _: &mut Context<Self>) {
        self.pending.remove(&msg.task_id);
    }
}

/// Tasks failed by a sweep: they leave the index and their watchers are woken.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TasksFailed(pub Vec<FailedTask>);

impl Handler<TasksFailed> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: TasksFailed, ctx: &mut Context<Self>) {
        for t in msg.0 {
            Metrics::inc(&self.metrics.tasks_failed_total);
            if let Some(h) = self.held.remove(&t.task_id) {
                ctx.cancel_future(h.timer);
            }
            self.pending.remove(&t.task_id);
            self.failed(&t.buyer_id, &t.task_id);
        }
    }
}

/// A worker gives a task back before its deadline.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct Release {
    pub task_id: String,
    pub worker_id: String,
}

impl Handler<Release> for Dispatcher {
    type Result = ResponseActFuture<Self, Result<(), EngineError>>;

    fn handle(&mut self, msg: Release, ctx: &mut Context<Self>) -> Self::Result {
        let mine = self
            .held
            .get(&msg.task_id)
            .is_some_and(|h| h.assignment.worker_id == msg.worker_id);
        let held = if mine {
            self.held.remove(&msg.task_id)
        } else {
            None
        };
        let Some(held) = held else {
            // Not a claim this node made: the worker may have claimed it through another node
            // of a shared store. The store's guard (task, worker) decides.
            let fut = self.store.release(msg.task_id.into(), msg.worker_id.into());
            return Box::pin(fut.into_actor(self).map(move |res, act, ctx| match res {
                Ok(Some(task)) => {
                    act.requeue(Pending::from(&task), ctx);
                    Ok(())
                }
                Ok(None) => Err(EngineError::Forbidden("you do not hold this task".into())),
                Err(e) => Err(e),
            }));
        };
        ctx.cancel_future(held.timer);
        let fut = self.store.release(msg.task_id.into(), msg.worker_id.into());
        Box::pin(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Some(_)) => {
                act.requeue(held.pending, ctx);
                Ok(())
            }
            // Submitted or expired in the meantime.
            Ok(None) => Err(EngineError::Conflict(
                "the task is no longer held by you".into(),
            )),
            Err(e) => {
                // Keep the claim and its deadline: the task still comes back.
                act.hold(held.pending, held.assignment, held.notify, ctx);
                Err(e)
            }
        }))
    }
}

/// The node is stopping: parked claimers are answered with "nothing" and buyers waiting on a task
/// get its current state, so no request is left hanging.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Dispatcher {
    type Result = ();
    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) {
        self.closing = true;
        for c in self.parked.drain(..) {
            let _ = c.reply.send(Ok(None));
        }
        for (_, ws) in self.watchers.drain() {
            for w in ws {
                let _ = w.send(());
            }
        }
    }
}

/// The Supervisor found an assigned task past its deadline (after a restart, or on another node).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Overdue(pub LiveTask);

impl Handler<Overdue> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: Overdue, ctx: &mut Context<Self>) {
        let task = msg.0;
        let Some(a) = task.assigned.clone() else {
            return;
        };
        match self.held.get(&task.task_id) {
            // Our own timer is late: expire now.
            Some(h) if h.assignment == a => self.expire(&task.task_id, ctx),
            // We know a newer assignment than the sweep saw: the sweep is stale.
            Some(_) => {}
            // A task we do not track (a lost timer, another node): take it back.
            None => self.expire_assignment(Pending::from(&task), a, None, ctx),
        }
    }
}

/// Registers a buyer waiting for a task to become final. Answered once registered.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Watch {
    pub task_id: String,
    pub wake: oneshot::Sender<()>,
}

impl Handler<Watch> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: Watch, _: &mut Context<Self>) {
        self.watchers.entry(msg.task_id).or_default().push(msg.wake);
    }
}

#[derive(Message)]
#[rtype(result = "Gauges")]
pub struct GetGauges;

impl Handler<GetGauges> for Dispatcher {
    type Result = Gauges;
    fn handle(&mut self, _: GetGauges, _: &mut Context<Self>) -> Gauges {
        Gauges {
            pending_tasks: (self.pending.len() + self.offered) as u64,
            assigned_tasks: self.held.len() as u64,
            parked_claimers: self.parked.iter().filter(|c| !c.reply.is_closed()).count() as u64,
            task_watchers: self
                .watchers
                .values()
                .flatten()
                .filter(|w| !w.is_closed())
                .count() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::PlatformConfig;
    use crate::domain::TaskStatus;
    use crate::slot::Slot;
    use crate::store::sqlite::SqliteStore;
    use crate::store::*;

    /// tokio's clock is paused: the Dispatcher's deadline timers and `now_ms` move only when the
    /// test says (or when everything waits on a timer), so a 60 s deadline passes in no time.
    #[actix_rt::test]
    async fn a_missed_deadline_takes_the_task_back_in_virtual_time() {
        tokio::time::pause();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), Box::new(NoObserver)).unwrap());
        let now = now_ms();
        store
            .create_buyer(NewBuyer {
                referral: None,
                user_id: "b1".into(),
                email: "b1@example.com".into(),
                password_hash: "x".into(),
                token_hash: "hb1".into(),
                signup_credit_cents: 100,
                now_ms: now,
            })
            .await
            .unwrap();
        store
            .create_worker(NewWorker {
                referral: None,
                worker_id: "w1".into(),
                token_hash: "hw1".into(),
                worker_type: None,
                model_info: json!({}),
                profile: WorkerProfile::default(),
                tier: "new".into(),
                now_ms: now,
            })
            .await
            .unwrap();
        store
            .post_task(NewTask {
                task_id: "t1".into(),
                buyer_id: "b1".into(),
                task_type: "code".into(),
                input: "{}".into(),
                input_preview: None,
                constraints: Constraints {
                    timeout_seconds: 60,
                    min_output_length: 0,
                },
                price_cents: 5,
                now_ms: now,
                idempotency: None,
                shadow: false,
            })
            .await
            .unwrap();
        // Nobody listens to what it publishes here.
        let publisher = Publisher::new(
            Slot::empty(),
            Slot::empty(),
            Slot::empty(),
            Arc::default(),
            Arc::default(),
        );
        let config = ConfigHandle::new(PlatformConfig::builtin());
        let dispatcher = Dispatcher::new(store.clone(), config, Arc::default(), publisher).start();
        dispatcher
            .send(Recover(store.live_tasks().await.unwrap()))
            .await
            .unwrap();
        let claim = |dispatcher: &Addr<Dispatcher>| {
            let (reply, answer) = oneshot::channel();
            dispatcher.do_send(Claim {
                spec: ClaimSpec {
                    worker_id: "w1".into(),
                    accept: vec![],
                    reject: vec![],
                    min_price_cents: 0,
                    notify: None,
                    exclude: vec![],
                    rank: 0,
                },
                park: false,
                ticket: 0,
                reply,
            });
            answer
        };
        let first = claim(&dispatcher).await.unwrap().unwrap().unwrap();
        assert_eq!((first.task_id.as_str(), first.attempt), ("t1", 1));
        assert_eq!(first.deadline_ms, now + 60_000);

        tokio::time::sleep(Duration::from_secs(61)).await;
        // The expiry commits on the store's own thread.
        let mut task = store.task("t1".into()).await.unwrap().unwrap();
        while task.status != TaskStatus::Pending {
            tokio::time::sleep(Duration::from_millis(10)).await;
            task = store.task("t1".into()).await.unwrap().unwrap();
        }
        let worker = store.worker("w1".into()).await.unwrap().unwrap();
        assert_eq!(worker.stats.tasks_expired, 1);
        // It is offered again (once the Dispatcher has heard back from the store): the next
        // claim is its second attempt, with a new deadline.
        let second = loop {
            if let Some(t) = claim(&dispatcher).await.unwrap().unwrap() {
                break t;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!((second.task_id.as_str(), second.attempt), ("t1", 2));
        assert!(second.deadline_ms >= now + 61_000 + 60_000);
        assert!(store.audit().await.unwrap().ok);
    }
}
