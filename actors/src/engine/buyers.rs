//! What buyers do: balances, estimates, posts, waits on a task, lists, credits.

use super::*;
use crate::sealed::{Field, open_with};

impl Engine {
    pub async fn balance(&self, user_id: &str) -> Result<BalanceSnapshot, EngineError> {
        let found = if self.shared_store {
            self.store.balance(user_id.to_string()).await?
        } else {
            self.bank.snapshot(user_id).await?
        };
        found.ok_or_else(|| EngineError::NotFound("no balance for this account".into()))
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
        // A sensitive task's input is sealed before it leaves the engine; the store and every
        // list see the preview only.
        let (input_text, input_preview) = if req.sensitive {
            let keys = self
                .data_keys
                .as_deref()
                .ok_or(EngineError::SensitiveDisabled)?;
            (
                keys.seal(Field::Input, &input_text)?,
                Some(crate::sealed::input_preview(task_type.as_str(), &req.input)),
            )
        } else {
            (input_text, None)
        };
        let task = NewTask {
            task_id: domain::new_id("task"),
            buyer_id: buyer_id.to_string(),
            task_type: task_type.as_str().to_string(),
            input: input_text,
            input_preview,
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

    /// A buyer's own task, a sensitive one's input and output opened; with `wait`, returns once
    /// it is final or the wait ends.
    pub async fn task_for_buyer(
        &self,
        buyer_id: &UserId,
        task_id: &TaskId,
        wait: Duration,
    ) -> Result<TaskRecord, EngineError> {
        let (buyer_id, task_id) = (buyer_id.as_str(), task_id.as_str());
        let read = || async {
            let task = self
                .store
                .task(task_id.to_string())
                .await?
                .filter(|t| t.buyer_id == buyer_id)
                .ok_or_else(|| EngineError::NotFound("no such task".into()))?;
            self.opened(task)
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
        let limit = limit.clamp(1, MAX_PAGE_ITEMS);
        let mut rows = self
            .store
            .list_tasks(buyer_id.to_string(), before_seq, limit + 1)
            .await?;
        // A list shows a sensitive task's preview, never its content.
        for t in rows.iter_mut().filter(|t| t.input_preview.is_some()) {
            t.input.clear();
            t.output = None;
        }
        Ok(page(rows, limit))
    }

    /// A sensitive task with its input and output opened (others as they are).
    fn opened(&self, mut task: TaskRecord) -> Result<TaskRecord, EngineError> {
        let keys = self.data_keys.as_deref();
        task.input = open_with(keys, Field::Input, &task.input)?;
        if let Some(output) = &task.output {
            task.output = Some(open_with(keys, Field::Output, output)?);
        }
        Ok(task)
    }

    /// A buyer's credit request (`buyer.id` is the buyer).
    pub async fn credit(
        &self,
        buyer: &Who,
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
                buyer.clone(),
                reason,
                now_ms(),
                idem,
                self.cfg(),
            )
            .await?;
        Metrics::inc(&self.metrics.tasks_credited_total);
        self.publisher
            .publish(effects::credited(&buyer.id, &credited));
        Ok(credited)
    }
}
