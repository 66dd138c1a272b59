//! The QaComparator actor: told when a task of a QA group is in, it reads the group, scores the
//! outputs off the store's writer thread ([`super::judge`]) and has the store apply the decision:
//! results, penalties, the automatic buyer credit or a tie-breaker copy, in one transaction. It
//! also injects benchmark tasks, on the `qa.benchmark_interval_seconds` schedule or for an admin.
//!
//! Two looks at the same group can race (both sides finishing at once); the store applies a
//! decision only if the group is still where the comparator read it, so one of them wins.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;

use crate::clock::now_ms;
use crate::config::ConfigHandle;
use crate::domain::{self, TaskType};
use crate::economics;
use crate::effects::{self, Effect, Publisher};
use crate::error::EngineError;
use crate::metrics::Metrics;
use crate::store::{Constraints, NewBenchmark, QaApplied, Store};

use super::benchmarks::Benchmark;
use super::judge;

/// Workers banned by the ladder, checked on every worker call.
pub type BanList = Arc<RwLock<HashSet<String>>>;

pub struct QaComparator {
    store: Arc<dyn Store>,
    config: ConfigHandle,
    metrics: Arc<Metrics>,
    /// Tie-breakers to the queue, automatic credits to buyers' streams, bans to the ban list.
    publisher: Publisher,
    benchmarks: Vec<Benchmark>,
    next_benchmark: usize,
    last_benchmark_ms: i64,
    /// Comparisons started and not yet finished, and finished since the start.
    judging: u64,
    judged: u64,
    meter: Option<Arc<crate::meter::Meter>>,
    /// Opens the sealed outputs of sensitive tasks (compared in memory only).
    keys: Option<Arc<crate::sealed::DataKeys>>,
}

impl QaComparator {
    pub fn new(
        store: Arc<dyn Store>,
        config: ConfigHandle,
        metrics: Arc<Metrics>,
        publisher: Publisher,
        benchmarks: Vec<Benchmark>,
    ) -> Self {
        QaComparator {
            store,
            config,
            metrics,
            publisher,
            benchmarks,
            next_benchmark: 0,
            last_benchmark_ms: now_ms(),
            judging: 0,
            judged: 0,
            meter: None,
            keys: None,
        }
    }

    pub fn with_keys(mut self, keys: Option<Arc<crate::sealed::DataKeys>>) -> Self {
        self.keys = keys;
        self
    }

    /// Tells the other actors what a decision changed.
    fn applied(&mut self, a: QaApplied) {
        if a.decided {
            Metrics::inc(&self.metrics.qa_decided_total);
        }
        if a.failed {
            Metrics::inc(&self.metrics.qa_fails_total);
        }
        if a.auto_credit.is_some() {
            Metrics::inc(&self.metrics.tasks_credited_total);
        }
        self.publisher.publish(effects::qa_applied(&a));
    }

    /// The next benchmark of the shipped set, priced by the current config.
    fn scheduled_benchmark(&mut self) -> Option<Inject> {
        if self.benchmarks.is_empty() {
            return None;
        }
        let b = self.benchmarks[self.next_benchmark % self.benchmarks.len()].clone();
        self.next_benchmark += 1;
        Some(Inject {
            task_type: b.task_type,
            input: b.input,
            expected_output: b.expected_output,
            price_cents: None,
        })
    }

    fn inject(
        &self,
        msg: Inject,
    ) -> impl Future<Output = Result<String, EngineError>> + 'static + use<> {
        let cfg = self.config.get();
        let store = self.store.clone();
        let publisher = self.publisher.clone();
        async move {
            let task_type = TaskType::parse(&msg.task_type)?;
            for (field, v) in [
                ("input", &msg.input),
                ("expected_output", &msg.expected_output),
            ] {
                if !v.is_object() {
                    return Err(EngineError::validation_field(
                        field,
                        format!("{field} must be a JSON object"),
                    ));
                }
            }
            let input = serde_json::to_string(&msg.input).map_err(EngineError::internal)?;
            let expected =
                serde_json::to_string(&msg.expected_output).map_err(EngineError::internal)?;
            if input.len() > crate::limits::MAX_INPUT_BYTES
                || expected.len() > crate::limits::MAX_OUTPUT_BYTES
            {
                return Err(EngineError::PayloadTooLarge(
                    "input or expected_output is too large".into(),
                ));
            }
            // A benchmark is a task of a type the platform sells, priced as one unless told.
            let priced = economics::price_cents(&cfg, &task_type, &msg.input)?;
            let price_cents = match msg.price_cents {
                Some(p) if (1..=crate::limits::MAX_PRICE_CENTS).contains(&p) => p,
                Some(_) => {
                    return Err(EngineError::validation_field(
                        "price_cents",
                        format!(
                            "price_cents must be between 1 and {}",
                            crate::limits::MAX_PRICE_CENTS
                        ),
                    ));
                }
                None => priced,
            };
            let copy = store
                .inject_benchmark(NewBenchmark {
                    task_id: domain::new_id("task"),
                    task_type: task_type.as_str().to_string(),
                    input,
                    expected_output: expected,
                    constraints: Constraints {
                        timeout_seconds: cfg.dispatch.default_timeout_seconds,
                        min_output_length: 0,
                    },
                    price_cents,
                    now_ms: now_ms(),
                })
                .await?;
            let task_id = copy.task.task_id.clone();
            publisher.publish([Effect::Pending(copy.into())]);
            Ok(task_id)
        }
    }
}

impl Actor for QaComparator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1 << 20);
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            let every = act.config.get().qa.benchmark_interval_seconds;
            let now = now_ms();
            if every == 0 || now - act.last_benchmark_ms < (every as i64).saturating_mul(1000) {
                return;
            }
            act.last_benchmark_ms = now;
            let Some(msg) = act.scheduled_benchmark() else {
                return;
            };
            ctx.spawn(act.inject(msg).into_actor(act).map(|res, _, _| {
                if let Err(e) = res {
                    tracing::warn!(error = %e, "scheduled benchmark not injected");
                }
            }));
        });
    }
}

crate::crash_on_request!(QaComparator);

impl crate::slot::Slotted for QaComparator {
    const KIND: &'static str = "QaComparator";
    const GAUGES: crate::meter::Gauges = &["judging", "judged"];
    fn set_meter(&mut self, meter: Arc<crate::meter::Meter>) {
        self.meter = Some(meter);
    }
}

crate::metered!(QaComparator: Judge, Inject);

impl QaComparator {
    fn count(&mut self, started: bool) {
        if started {
            self.judging += 1;
        } else {
            self.judging = self.judging.saturating_sub(1);
            self.judged += 1;
        }
        if let Some(m) = &self.meter {
            m.set_gauge(0, self.judging as i64);
            m.set_gauge(1, self.judged as i64);
        }
    }
}

impl Handler<crate::meter::Inspect> for QaComparator {
    type Result = crate::meter::State;
    fn handle(&mut self, _: crate::meter::Inspect, _: &mut Context<Self>) -> crate::meter::State {
        let cfg = self.config.get();
        let every = cfg.qa.benchmark_interval_seconds;
        crate::meter::State(serde_json::json!({
            "judging": self.judging,
            "judged_since_start": self.judged,
            "benchmarks_loaded": self.benchmarks.len(),
            "next_benchmark_index": self.next_benchmark,
            "benchmark_interval_seconds": every,
            "next_benchmark": (every > 0).then(|| crate::clock::rfc3339(
                self.last_benchmark_ms.saturating_add((every as i64).saturating_mul(1000)))),
            "thresholds": { "pass": cfg.qa.similarity_thresholds.pass, "flag": cfg.qa.similarity_thresholds.flag },
        }))
    }
}

/// A task of this QA group is in (or the node restarted with the group undecided): look again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Judge(pub String);

impl Handler<Judge> for QaComparator {
    type Result = ();

    fn handle(&mut self, msg: Judge, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let cfg = self.config.get();
        let group_id = msg.0;
        let keys = self.keys.clone();
        self.count(true);
        let look = async move {
            let Some(mut group) = store.qa_group(group_id.clone()).await? else {
                return Ok(None);
            };
            for m in &mut group.members {
                if let Some(output) = &m.output {
                    let field = crate::sealed::Field::Output;
                    m.output = Some(crate::sealed::open_with(keys.as_deref(), field, output)?);
                }
            }
            let t = &cfg.qa.similarity_thresholds;
            let Some(decision) = judge::decide(&group, t.pass, t.flag) else {
                return Ok(None);
            };
            store
                .qa_apply(group_id, group.state, decision, now_ms(), cfg)
                .await
                .map(Some)
        };
        ctx.spawn(look.into_actor(self).map(
            |res: Result<Option<QaApplied>, EngineError>, act, _| {
                act.count(false);
                match res {
                    Ok(Some(a)) if a.applied => act.applied(a),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "QA comparison failed; retried at the next start")
                    }
                }
            },
        ));
    }
}

/// A benchmark task for the queue (an admin's, or the schedule's).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<String, EngineError>")]
pub struct Inject {
    pub task_type: String,
    pub input: serde_json::Value,
    pub expected_output: serde_json::Value,
    pub price_cents: Option<i64>,
}

impl Handler<Inject> for QaComparator {
    type Result = ResponseFuture<Result<String, EngineError>>;

    fn handle(&mut self, msg: Inject, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.inject(msg))
    }
}
