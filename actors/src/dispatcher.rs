//! Dispatcher: the node's index of live tasks and of the workers waiting for one.
//!
//! It holds pending tasks in arrival order (per type, for quick matching), parked long-poll
//! claimers, and a deadline timer for every assigned task. A new task goes straight to the first
//! waiting worker it matches; nothing polls. Claims are committed in the store (a guarded
//! `pending → assigned` write) before the worker hears of them, and undone if the worker left in
//! the meantime. Buyers waiting on a task register here and are woken when it becomes final.
//! Talks to: the store (claim, expire, unclaim), the engine (new tasks, finished tasks), the
//! Supervisor (overdue and stale sweeps).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::clock::now_ms;
use crate::config::ConfigHandle;
use crate::error::EngineError;
use crate::metrics::{Gauges, Metrics};
use crate::store::{Assignment, ClaimOutcome, ClaimedTask, ExpireOutcome, LiveTask, Store};

/// What a worker will take.
#[derive(Debug, Clone)]
pub struct ClaimSpec {
    pub worker_id: String,
    pub accept: Vec<String>,
    pub reject: Vec<String>,
    pub min_price_cents: i64,
}

impl ClaimSpec {
    fn accepts(&self, task_type: &str, price_cents: i64) -> bool {
        price_cents >= self.min_price_cents
            && (self.accept.is_empty() || self.accept.iter().any(|t| t == task_type))
            && !self.reject.iter().any(|t| t == task_type)
    }
}

pub type ClaimReply = Result<Option<ClaimedTask>, EngineError>;

struct Claimer {
    spec: ClaimSpec,
    reply: oneshot::Sender<ClaimReply>,
    /// Whether to wait for a task when none matches now.
    park: bool,
}

#[derive(Debug, Clone)]
struct Pending {
    seq: i64,
    task_id: String,
    task_type: String,
    price_cents: i64,
}

impl From<&LiveTask> for Pending {
    fn from(t: &LiveTask) -> Self {
        Pending {
            seq: t.seq,
            task_id: t.task_id.clone(),
            task_type: t.task_type.clone(),
            price_cents: t.price_cents,
        }
    }
}

struct Held {
    pending: Pending,
    assignment: Assignment,
    timer: SpawnHandle,
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    config: ConfigHandle,
    metrics: Arc<Metrics>,
    /// Pending tasks by type, each in arrival order.
    pending: HashMap<String, BTreeMap<i64, Pending>>,
    pending_count: usize,
    /// Tasks whose claim is being committed.
    offered: usize,
    held: HashMap<String, Held>,
    parked: VecDeque<Claimer>,
    watchers: HashMap<String, Vec<oneshot::Sender<()>>>,
}

impl Dispatcher {
    pub fn new(store: Arc<dyn Store>, config: ConfigHandle, metrics: Arc<Metrics>) -> Self {
        Dispatcher {
            store,
            config,
            metrics,
            pending: HashMap::new(),
            pending_count: 0,
            offered: 0,
            held: HashMap::new(),
            parked: VecDeque::new(),
            watchers: HashMap::new(),
        }
    }

    /// The oldest pending task `spec` accepts, taken out of the index.
    fn take_match(&mut self, spec: &ClaimSpec) -> Option<Pending> {
        let mut best: Option<(&String, i64)> = None;
        for (task_type, queue) in &self.pending {
            if (!spec.accept.is_empty() && !spec.accept.contains(task_type))
                || spec.reject.contains(task_type)
            {
                continue;
            }
            if let Some((seq, _)) = queue
                .iter()
                .find(|(_, p)| p.price_cents >= spec.min_price_cents)
                && best.is_none_or(|(_, b)| *seq < b)
            {
                best = Some((task_type, *seq));
            }
        }
        let (task_type, seq) = best.map(|(t, s)| (t.clone(), s))?;
        let queue = self.pending.get_mut(&task_type)?;
        let found = queue.remove(&seq);
        if queue.is_empty() {
            self.pending.remove(&task_type);
        }
        if found.is_some() {
            self.pending_count -= 1;
        }
        found
    }

    fn insert_pending(&mut self, p: Pending) {
        if self
            .pending
            .entry(p.task_type.clone())
            .or_default()
            .insert(p.seq, p)
            .is_none()
        {
            self.pending_count += 1;
        }
    }

    fn remove_pending(&mut self, task_id: &str) {
        let mut emptied = None;
        for (task_type, queue) in self.pending.iter_mut() {
            if let Some(seq) = queue
                .iter()
                .find(|(_, p)| p.task_id == task_id)
                .map(|(s, _)| *s)
            {
                queue.remove(&seq);
                self.pending_count -= 1;
                if queue.is_empty() {
                    emptied = Some(task_type.clone());
                }
                break;
            }
        }
        if let Some(t) = emptied {
            self.pending.remove(&t);
        }
    }

    /// A task is free: hand it to the first waiting worker that takes it, or index it.
    fn offer(&mut self, task: Pending, ctx: &mut Context<Self>) {
        // Claimers that gave up are skipped here and swept out by the periodic clean-up.
        let taker = self.parked.iter().position(|c| {
            !c.reply.is_closed() && c.spec.accepts(&task.task_type, task.price_cents)
        });
        if let Some(i) = taker
            && let Some(claimer) = self.parked.remove(i)
        {
            self.claim(task, claimer, ctx);
            return;
        }
        self.insert_pending(task);
    }

    /// A worker asks: give it the best match, or park it, or say there is nothing.
    fn serve(&mut self, claimer: Claimer, ctx: &mut Context<Self>) {
        if claimer.reply.is_closed() {
            return;
        }
        match self.take_match(&claimer.spec) {
            Some(task) => self.claim(task, claimer, ctx),
            None if claimer.park => self.parked.push_back(claimer),
            None => {
                let _ = claimer.reply.send(Ok(None));
            }
        }
    }

    fn claim(&mut self, task: Pending, claimer: Claimer, ctx: &mut Context<Self>) {
        self.offered += 1;
        let fut = self.store.claim(
            task.task_id.clone(),
            claimer.spec.worker_id.clone(),
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
                match claimer.reply.send(Ok(Some(ct))) {
                    Ok(()) => {
                        Metrics::inc(&self.metrics.tasks_claimed_total);
                        self.hold(task, assignment, ctx);
                    }
                    // The worker went away while the claim was committed: undo it, no expiry counted.
                    Err(_) => self.unclaim(task, assignment, ctx),
                }
            }
            Ok(ClaimOutcome::TaskGone) => self.serve(claimer, ctx),
            Ok(ClaimOutcome::WorkerBusy) => refuse(
                self,
                task,
                claimer,
                EngineError::Conflict(
                    "you already hold as many tasks as your limits.concurrent allows".into(),
                ),
                ctx,
            ),
            Ok(ClaimOutcome::WorkerSuspended { until_ms }) => refuse(
                self,
                task,
                claimer,
                EngineError::Suspended {
                    until: crate::clock::rfc3339(until_ms),
                },
                ctx,
            ),
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

    fn unclaim(&mut self, task: Pending, a: Assignment, ctx: &mut Context<Self>) {
        let fut = self
            .store
            .unclaim(task.task_id.clone(), a.worker_id.clone(), a.attempt);
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Some(_)) => act.offer(task, ctx),
            Ok(None) => {}
            // The claim stands; its deadline will return the task.
            Err(e) => {
                tracing::warn!(task = %task.task_id, error = %e, "unclaim failed");
                act.hold(task, a, ctx);
            }
        }));
    }

    fn hold(&mut self, task: Pending, assignment: Assignment, ctx: &mut Context<Self>) {
        let wait = Duration::from_millis((assignment.deadline_ms - now_ms()).max(0) as u64);
        let task_id = task.task_id.clone();
        let timer = ctx.run_later(wait, move |act, ctx| act.expire(&task_id, ctx));
        if let Some(old) = self.held.insert(
            task.task_id.clone(),
            Held {
                pending: task,
                assignment,
                timer,
            },
        ) {
            ctx.cancel_future(old.timer);
        }
    }

    /// The deadline timer of a held task fired.
    fn expire(&mut self, task_id: &str, ctx: &mut Context<Self>) {
        let Some(held) = self.held.remove(task_id) else {
            return;
        };
        ctx.cancel_future(held.timer);
        self.expire_assignment(held.pending, held.assignment, ctx);
    }

    /// Takes a task back from the worker of `a` (guarded in the store by worker and attempt).
    fn expire_assignment(&mut self, task: Pending, a: Assignment, ctx: &mut Context<Self>) {
        let fut = self.store.expire(
            task.task_id.clone(),
            a.worker_id.clone(),
            a.attempt,
            now_ms(),
            self.config.get(),
        );
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let suspended = match res {
                Ok(ExpireOutcome::Requeued {
                    suspended_until_ms, ..
                }) => {
                    Metrics::inc(&act.metrics.tasks_expired_total);
                    act.offer(task, ctx);
                    suspended_until_ms
                }
                Ok(ExpireOutcome::Failed {
                    suspended_until_ms, ..
                }) => {
                    Metrics::inc(&act.metrics.tasks_expired_total);
                    Metrics::inc(&act.metrics.tasks_failed_total);
                    act.wake(&task.task_id);
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
        });
    }
}

/// A worker asks for a task. The answer comes on `reply`; with `park`, only once one is claimed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Claim {
    pub spec: ClaimSpec,
    pub park: bool,
    pub reply: oneshot::Sender<ClaimReply>,
}

impl Handler<Claim> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: Claim, ctx: &mut Context<Self>) {
        self.serve(
            Claimer {
                spec: msg.spec,
                reply: msg.reply,
                park: msg.park,
            },
            ctx,
        );
    }
}

/// A task was committed as pending (posted, or recovered after a restart).
#[derive(Message)]
#[rtype(result = "()")]
pub struct TaskPending(pub LiveTask);

impl Handler<TaskPending> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: TaskPending, ctx: &mut Context<Self>) {
        self.offer(Pending::from(&msg.0), ctx);
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
                Some(a) => self.hold(Pending::from(&t), a, ctx),
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
        self.remove_pending(&msg.task_id);
        self.wake(&msg.task_id);
    }
}

/// Tasks failed by a sweep: they leave the index and their watchers are woken.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TasksFailed(pub Vec<String>);

impl Handler<TasksFailed> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: TasksFailed, ctx: &mut Context<Self>) {
        for task_id in msg.0 {
            Metrics::inc(&self.metrics.tasks_failed_total);
            <Self as Handler<TaskFinal>>::handle(self, TaskFinal { task_id }, ctx);
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
        if self
            .held
            .get(&task.task_id)
            .is_none_or(|h| h.assignment != a)
        {
            self.hold(Pending::from(&task), a, ctx);
        }
        self.expire(&task.task_id, ctx);
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
    type Result = MessageResult<GetGauges>;
    fn handle(&mut self, _: GetGauges, _: &mut Context<Self>) -> Self::Result {
        MessageResult(Gauges {
            pending_tasks: (self.pending_count + self.offered) as u64,
            assigned_tasks: self.held.len() as u64,
            parked_claimers: self.parked.iter().filter(|c| !c.reply.is_closed()).count() as u64,
        })
    }
}
