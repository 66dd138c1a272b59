//! What workers do: connect, claim (long-poll or WebSocket), release, submit, profile, `me`.

use super::*;

impl Engine {
    pub async fn connect_worker(
        &self,
        worker_type: Option<String>,
        model_info: Value,
        profile: WorkerProfile,
        referral_code: Option<&str>,
    ) -> Result<(WorkerRecord, String), EngineError> {
        check_profile(&profile)?;
        let referral = self.new_referral(referral_code, Role::Worker)?;
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
                referral,
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
        notify: Option<crate::meter::MeteredRecipient<TaskExpired>>,
    ) -> Result<Option<ClaimSpec>, EngineError> {
        use crate::rules::claim::{Claimant, refusal};
        let now = now_ms();
        let claimant = Claimant {
            banned: worker.banned_at_ms.is_some(),
            suspended_until_ms: worker.suspended_until_ms,
            held: worker.held,
            claims_today: worker.claims_on(now),
            limits: &worker.profile.limits,
        };
        if let Some(r) = refusal(&claimant, now) {
            // An error, or (the worker's own daily cap) nothing for it today.
            return r.into_error().map_or(Ok(None), Err);
        }
        let prefs = &worker.profile.preferences;
        let rank = self
            .cfg()
            .tier_levels
            .iter()
            .position(|l| l.name == worker.tier)
            .unwrap_or(0);
        Ok(Some(ClaimSpec {
            rank: u32::try_from(rank).unwrap_or(0),
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
        self.ask(spec, park, 0)
    }

    fn ask(&self, spec: ClaimSpec, park: bool, ticket: u64) -> oneshot::Receiver<ClaimReply> {
        let (reply, answer) = oneshot::channel();
        self.dispatcher.do_send(Claim {
            spec,
            park,
            ticket,
            reply,
        });
        answer
    }

    /// Claims the next task for a worker, waiting up to `wait` for one to arrive.
    pub async fn next_task(
        &self,
        worker: WorkerRecord,
        wait: Duration,
    ) -> Result<Option<ClaimedTask>, EngineError> {
        let claimed = self.claim_next(worker, wait).await?;
        claimed.map(|t| self.open_claimed(t)).transpose()
    }

    /// A claimed task as its worker sees it: a sensitive task's input opened (it was sealed in
    /// the store and the Dispatcher never held it).
    pub fn open_claimed(&self, mut task: ClaimedTask) -> Result<ClaimedTask, EngineError> {
        let keys = self.data_keys.as_deref();
        task.input = crate::sealed::open_with(keys, crate::sealed::Field::Input, &task.input)?;
        Ok(task)
    }

    async fn claim_next(
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
            let ticket = self.tickets.fetch_add(1, Ordering::Relaxed) + 1;
            let mut answer = self.ask(spec.clone(), park, ticket);
            match tokio::time::timeout(left, &mut answer).await {
                Ok(Ok(reply)) => return reply,
                // The Dispatcher died with the claim (a panic): the Supervisor is starting a
                // new one from the store; ask it.
                Ok(Err(_)) if !left.is_zero() => {
                    tokio::time::sleep(CLAIM_RETRY_PAUSE.min(left)).await;
                }
                Ok(Err(_)) => return Err(EngineError::internal("dispatcher dropped a claim")),
                // The wait is over. A parked ask is answered "nothing"; a claim being committed
                // right now still comes (dropping the receiver would undo it).
                Err(_) => {
                    self.dispatcher.do_send(Withdraw { ticket });
                    return match tokio::time::timeout(WITHDRAW_GRACE, answer).await {
                        Ok(Ok(reply)) => reply,
                        Ok(Err(_)) | Err(_) => Ok(None),
                    };
                }
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
                Output {
                    text,
                    keys: self.data_keys.clone(),
                },
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
        let next_release = self
            .store
            .earnings(worker_id.to_string(), None, 1)
            .await?
            .next_release;
        Ok(WorkerMe {
            worker,
            today_cents,
            balance,
            tier_progress,
            notices,
            next_release,
        })
    }

    /// A page of a worker's earnings, newest first, and whether there is more.
    pub async fn earnings(
        &self,
        worker_id: &str,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<crate::store::Earning>, bool), EngineError> {
        let limit = limit.clamp(1, MAX_PAGE_ITEMS);
        let rows = self
            .store
            .earnings(worker_id.to_string(), cursor, limit + 1)
            .await?;
        Ok(page(rows.lots, limit))
    }

    /// `BANNED` for a worker the QA ladder banned (checked on every worker call).
    pub fn check_not_banned(&self, worker_id: &str) -> Result<(), EngineError> {
        match self.banned.read() {
            Ok(set) if set.contains(worker_id) => Err(EngineError::Banned),
            _ => Ok(()),
        }
    }
}
