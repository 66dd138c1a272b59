//! What the admin console reads: every live actor with its mailbox figures, one actor's state, a
//! task's timeline, the Supervisor's jobs (and running one now), the invariant warnings, and the
//! figures its live charts are drawn from.

use std::collections::{BTreeMap, HashSet};

use super::*;
use crate::dispatcher::GetLiveIds;
use crate::meter::{ActorRow, Inspect, registry};
use crate::store::timeline::{self, TimelineEvent};
use crate::supervisor::{Job, RunJob};

/// How the console's actor list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorSort {
    #[default]
    MailboxLen,
    MessagesHandled,
    MessagesPerS,
    SlowestWaitUs,
    StartedAt,
    Kind,
    Id,
}

/// Which actors, in what order, which page.
#[derive(Debug, Clone, Default)]
pub struct ActorQuery {
    pub kind: Option<String>,
    /// Part of the id (case-insensitive).
    pub search: Option<String>,
    pub sort: ActorSort,
    pub ascending: bool,
    pub offset: usize,
    pub limit: usize,
}

pub struct ActorsPage {
    pub rows: Vec<ActorRow>,
    /// Rows that matched the filter (all pages).
    pub total: usize,
    /// Live actors of every kind, before the filter.
    pub kinds: BTreeMap<&'static str, usize>,
}

/// A warning for the on-call operator.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Warning {
    /// ledger, stuck_task, dispatcher_store_mismatch
    pub kind: &'static str,
    pub message: String,
    #[schema(value_type = Object)]
    pub details: Value,
}

/// What the invariant checks found.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Invariants {
    pub ok: bool,
    pub checked_at: String,
    pub warnings: Vec<Warning>,
    /// The ledger audit's own report.
    #[schema(value_type = Object)]
    pub ledger: Value,
}

/// Masks any value whose key could name a secret. No actor's state holds one today; this keeps a
/// future field from reaching the console by accident.
fn redact(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, val) in map.iter_mut() {
                    let k = k.to_ascii_lowercase();
                    if ["token", "secret", "password", "api_key"]
                        .iter()
                        .any(|s| k.contains(s))
                    {
                        *val = Value::String("[redacted]".into());
                    } else {
                        walk(val);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// A task assigned this long past its deadline is stuck: the Supervisor's sweep hands tasks back
/// within seconds.
const STUCK_AFTER_MS: i64 = 60_000;
/// How many tasks the invariant checks name at most (the counts are complete).
const WARN_ROWS: usize = 20;

/// What the console's charts are drawn from: counters (the stream turns them into rates) and
/// point-in-time values.
#[derive(Debug, Clone)]
pub struct Figures {
    pub at_ms: i64,
    pub tasks_posted_total: u64,
    pub tasks_completed_total: u64,
    pub http_requests_total: u64,
    pub latency_buckets: Vec<u64>,
    pub pending_tasks: u64,
    pub assigned_tasks: u64,
    pub parked_claimers: u64,
    pub actors: BTreeMap<&'static str, usize>,
}

impl Engine {
    pub fn actors(&self, q: &ActorQuery) -> ActorsPage {
        let all = registry().rows();
        let mut kinds = BTreeMap::new();
        for r in &all {
            *kinds.entry(r.kind).or_default() += 1;
        }
        let search = q.search.as_ref().map(|s| s.to_lowercase());
        let mut rows: Vec<ActorRow> = all
            .into_iter()
            .filter(|r| {
                q.kind
                    .as_ref()
                    .is_none_or(|k| r.kind.eq_ignore_ascii_case(k))
            })
            .filter(|r| {
                search
                    .as_ref()
                    .is_none_or(|s| r.id.to_lowercase().contains(s))
            })
            .collect();
        rows.sort_by(|a, b| {
            let by = match q.sort {
                ActorSort::MailboxLen => a.mailbox_len.cmp(&b.mailbox_len),
                ActorSort::MessagesHandled => a.messages_handled.cmp(&b.messages_handled),
                ActorSort::MessagesPerS => a.messages_per_s.cmp(&b.messages_per_s),
                ActorSort::SlowestWaitUs => a.slowest_wait_us.cmp(&b.slowest_wait_us),
                ActorSort::StartedAt => a.started_ms.cmp(&b.started_ms),
                ActorSort::Kind => a.kind.cmp(b.kind),
                ActorSort::Id => a.id.cmp(&b.id),
            };
            // Ties in a stable order, so pages do not shuffle between refreshes.
            let by = by
                .then_with(|| a.kind.cmp(b.kind))
                .then_with(|| a.id.cmp(&b.id));
            if q.ascending { by } else { by.reverse() }
        });
        let total = rows.len();
        let rows = rows
            .into_iter()
            .skip(q.offset)
            .take(q.limit.clamp(1, MAX_ACTOR_ROWS))
            .collect();
        ActorsPage { rows, total, kinds }
    }

    /// One actor's row and state (`NOT_FOUND` when it is not alive).
    pub async fn inspect_actor(
        &self,
        kind: &str,
        id: &str,
    ) -> Result<(ActorRow, Value), EngineError> {
        let not_found = || EngineError::NotFound(format!("no live {kind} actor {id:?}"));
        let (row, inspect) = registry().find(kind, id).ok_or_else(not_found)?;
        let recipient = inspect.upgrade().ok_or_else(not_found)?;
        let state = tokio::time::timeout(INSPECT_TIMEOUT, recipient.send(Inspect))
            .await
            .map_err(|_| {
                EngineError::internal(format!(
                    "{kind} {id} did not answer within {} ms (its mailbox holds {})",
                    INSPECT_TIMEOUT.as_millis(),
                    row.mailbox_len
                ))
            })?
            .map_err(|_| not_found())?;
        Ok((row, redact(state.0)))
    }

    /// Every event of one task, in time order (`NOT_FOUND` for an unknown task).
    pub async fn task_timeline(&self, task_id: &str) -> Result<Vec<TimelineEvent>, EngineError> {
        let parts = self
            .store
            .task_timeline(task_id.to_string())
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("no task {task_id:?}")))?;
        Ok(timeline::assemble(parts))
    }

    /// The Supervisor's jobs with their last and next runs.
    pub async fn supervisor_jobs(&self) -> Result<Value, EngineError> {
        let state = self
            .supervisor
            .addr
            .send(Inspect)
            .await
            .map_err(EngineError::internal)?;
        Ok(state.0)
    }

    /// Runs a Supervisor job now, audit-logged first.
    pub async fn run_job(&self, name: &str, by: &Who) -> Result<(), EngineError> {
        let job = Job::parse(name).ok_or_else(|| {
            let names: Vec<_> = Job::ALL.iter().map(|j| j.name()).collect();
            EngineError::NotFound(format!(
                "no job {name:?}; the jobs are {}",
                names.join(", ")
            ))
        })?;
        self.store
            .record_audit(
                by.clone(),
                "supervisor_job_run".into(),
                serde_json::json!({ "job": job.name() }),
                now_ms(),
            )
            .await?;
        self.supervisor
            .send(RunJob(job))
            .await
            .map_err(EngineError::internal)?
    }

    /// The ledger audit, tasks stuck past their deadline, and the Dispatcher's view of the live
    /// tasks compared with the store's.
    pub async fn invariants(&self) -> Result<Invariants, EngineError> {
        let now = now_ms();
        let mut warnings = Vec::new();
        let audit = self.store.audit().await?;
        let ledger = serde_json::to_value(&audit).map_err(EngineError::internal)?;
        if !audit.ok {
            warnings.push(Warning {
                kind: "ledger",
                message: format!(
                    "the ledger audit found {} violations",
                    audit.violations.len()
                ),
                details: serde_json::json!({ "violations": audit.violations }),
            });
        }
        let stuck = self
            .store
            .overdue(now - STUCK_AFTER_MS, WARN_ROWS as u32)
            .await?;
        if !stuck.is_empty() {
            warnings.push(Warning {
                kind: "stuck_task",
                message: format!(
                    "{} assigned tasks are more than {} s past their deadline",
                    stuck.len(),
                    STUCK_AFTER_MS / 1000
                ),
                details: serde_json::json!({ "tasks": stuck.iter().map(|t| serde_json::json!({
                    "task_id": t.task_id,
                    "worker_id": t.assigned.as_ref().map(|a| a.worker_id.clone()),
                    "deadline": t.assigned.as_ref().map(|a| crate::clock::rfc3339(a.deadline_ms)),
                })).collect::<Vec<_>>() }),
            });
        }
        if let Some(w) = self.dispatcher_mismatch().await? {
            warnings.push(w);
        }
        Ok(Invariants {
            ok: warnings.is_empty(),
            checked_at: crate::clock::rfc3339(now),
            warnings,
            ledger,
        })
    }

    /// Live tasks the Dispatcher and the store disagree on. A task changes hands between the
    /// two reads now and then (a claim being committed), so what differs is read again a moment
    /// later and only what still differs is reported.
    async fn dispatcher_mismatch(&self) -> Result<Option<Warning>, EngineError> {
        let mut suspects: Option<HashSet<String>> = None;
        for _ in 0..2 {
            let store: HashMap<String, Option<String>> = self
                .store
                .live_tasks()
                .await?
                .into_iter()
                .map(|t| (t.task_id, t.assigned.map(|a| a.worker_id)))
                .collect();
            let held = self
                .dispatcher
                .send(GetLiveIds)
                .await
                .map_err(EngineError::internal)?;
            let mut differ = HashSet::new();
            for (id, worker) in &store {
                let agrees = match worker {
                    None => held.pending.contains(id),
                    Some(w) => held.assigned.get(id) == Some(w),
                };
                if !agrees {
                    differ.insert(id.clone());
                }
            }
            for id in held.pending.iter().chain(held.assigned.keys()) {
                if !store.contains_key(id) {
                    differ.insert(id.clone());
                }
            }
            suspects = Some(match suspects {
                None => differ,
                Some(before) => before.intersection(&differ).cloned().collect(),
            });
            if suspects.as_ref().is_some_and(HashSet::is_empty) {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let ids: Vec<String> = suspects.unwrap_or_default().into_iter().collect();
        Ok(Some(Warning {
            kind: "dispatcher_store_mismatch",
            message: format!(
                "the Dispatcher and the store disagree on {} live tasks",
                ids.len()
            ),
            details: serde_json::json!({ "task_ids": ids.iter().take(WARN_ROWS).collect::<Vec<_>>() }),
        }))
    }

    pub async fn figures(&self) -> Figures {
        use std::sync::atomic::Ordering::Relaxed;
        let gauges = self.dispatcher.send(GetGauges).await.unwrap_or_default();
        let m = &self.metrics;
        Figures {
            at_ms: now_ms(),
            tasks_posted_total: m.tasks_posted_total.load(Relaxed),
            tasks_completed_total: m.tasks_completed_total.load(Relaxed),
            http_requests_total: m.http_requests_total.load(Relaxed),
            latency_buckets: m.http_latency.snapshot().to_vec(),
            pending_tasks: gauges.pending_tasks,
            assigned_tasks: gauges.assigned_tasks,
            parked_claimers: gauges.parked_claimers,
            actors: registry().counts().into_iter().collect(),
        }
    }
}
