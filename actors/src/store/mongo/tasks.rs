//! The task lifecycle: post, claim, release, submit (settlement), expiry, credit.

use super::accounts::held;
use super::*;

pub(super) async fn post_task(tx: &mut Tx<'_>, t: &NewTask) -> R<TaskPosted> {
    let idem = t.idempotency.as_ref();
    if let Some(first) = tx.replay::<TaskPosted>(idem).await? {
        return Ok(TaskPosted {
            replayed: true,
            ..first
        });
    }
    let available = tx
        .available(&t.buyer_id)
        .await?
        .ok_or_else(|| EngineError::NotFound("no such buyer".into()))?;
    if available < t.price_cents {
        return Err(Fail::Engine(EngineError::InsufficientBalance {
            needed_cents: t.price_cents,
            available_cents: available,
        }));
    }
    let db = tx.db;
    let seq = db.next_seq("tasks").await?;
    let mut doc = TaskDoc::pending(
        &t.task_id,
        seq,
        &t.buyer_id,
        &t.task_type,
        &t.input,
        t.constraints,
        t.price_cents,
        FUNDED_BY_BUYER,
        t.now_ms,
    );
    doc.input_preview = t.input_preview.clone();
    tx.insert(&db.tasks, &doc).await?;
    // Guarded on the write: a concurrent debit that got there first makes this conflict.
    tx.apply(
        &rules::money::task_pay(&t.buyer_id, &t.task_id, t.price_cents),
        t.now_ms,
    )
    .await?;
    let shadow = if t.shadow {
        let task = tx.open_group(&t.task_id, QaType::Shadow, t.now_ms).await?;
        Some(QaCopy {
            task,
            barred: Vec::new(),
        })
    } else {
        None
    };
    let answer = TaskPosted {
        task_id: t.task_id.clone(),
        price_cents: t.price_cents,
        balance_after_cents: available - t.price_cents,
        created_at_ms: t.now_ms,
        seq,
        replayed: false,
        shadow,
    };
    tx.remember(idem, &answer, t.now_ms).await?;
    Ok(answer)
}

pub(super) async fn list_tasks(
    tx: &mut Tx<'_>,
    buyer_id: &str,
    before_seq: Option<i64>,
    limit: u32,
) -> R<Vec<TaskRecord>> {
    let db = tx.db;
    let found = tx
        .many(
            &db.tasks,
            doc! { "buyer_id": buyer_id, "seq": { "$lt": before_seq.unwrap_or(i64::MAX) } },
            doc! { "seq": -1 },
            Some(i64::from(limit)),
        )
        .await?;
    Ok(found.iter().map(TaskDoc::record).collect())
}

pub(super) async fn claim(
    tx: &mut Tx<'_>,
    task_id: &str,
    worker_id: &str,
    now_ms: i64,
) -> R<ClaimOutcome> {
    let db = tx.db;
    let Some(worker) = tx.one(&db.workers, doc! { "_id": worker_id }).await? else {
        return Ok(ClaimOutcome::UnknownWorker);
    };
    let profile = worker.profile()?;
    let day = crate::clock::day_start_ms(now_ms);
    let claims_today = if worker.claims_day == day {
        u32::try_from(worker.claims_today).unwrap_or(u32::MAX)
    } else {
        0
    };
    let claimant = rules::claim::Claimant {
        banned: worker.banned_at.is_some(),
        suspended_until_ms: worker.suspended_until,
        held: held(tx, worker_id).await?,
        claims_today,
        limits: &profile.limits,
    };
    if let Some(refusal) = rules::claim::refusal(&claimant, now_ms) {
        return Ok(ClaimOutcome::Refused(refusal));
    }
    let Some(task) = tx
        .one(&db.tasks, doc! { "_id": task_id, "status": "pending" })
        .await?
    else {
        return Ok(ClaimOutcome::TaskGone);
    };
    // A worker never gets a second task with the same input.
    if let Some(qa_key) = &task.qa_key
        && tx
            .exists(
                &db.claims,
                doc! { "qa_key": qa_key, "worker_id": worker_id },
            )
            .await?
    {
        return Ok(ClaimOutcome::NotForWorker {
            qa_key: qa_key.clone(),
        });
    }
    let attempt = task.attempts + 1;
    let deadline_ms = now_ms + task.timeout_seconds * 1000;
    // The guard: only a pending task is assigned, once (a concurrent claim of the same task
    // conflicts with this write and runs again to find it gone).
    let taken = tx
        .update(
            &db.tasks,
            doc! { "_id": task_id, "status": "pending", "attempts": task.attempts },
            doc! { "$set": {
                "status": "assigned", "worker_id": worker_id, "attempts": attempt,
                "assigned_at": now_ms, "deadline": deadline_ms,
            } },
        )
        .await?;
    if !taken {
        return Ok(ClaimOutcome::TaskGone);
    }
    let claim = ClaimDoc {
        id: format!("{task_id}/{attempt}"),
        task_id: task_id.to_string(),
        worker_id: worker_id.to_string(),
        attempt,
        claimed_at: now_ms,
        qa_key: task.qa_key.clone(),
    };
    tx.insert(&db.claims, &claim).await?;
    // The worker's document is written by each of its claims, so two claims of one worker at
    // once conflict and the second sees the first's count (`limits.concurrent`, the daily cap).
    tx.update(
        &db.workers,
        doc! { "_id": worker_id },
        doc! {
            "$inc": { "tasks_claimed": 1_i64 },
            "$set": { "last_seen": now_ms, "claims_day": day, "claims_today": i64::from(claims_today) + 1 },
        },
    )
    .await?;
    Ok(ClaimOutcome::Claimed(ClaimedTask {
        task_id: task_id.to_string(),
        task_type: task.task_type.clone(),
        input: task.input.clone(),
        constraints: task.constraints(),
        price_cents: task.price_cents,
        deadline_ms,
        attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
    }))
}

/// The fields a task returns to the queue with: unclaimed, released or lapsed.
fn back_to_pending() -> Document {
    doc! { "status": "pending", "worker_id": Bson::Null, "deadline": Bson::Null, "assigned_at": Bson::Null }
}

pub(super) async fn unclaim(
    tx: &mut Tx<'_>,
    task_id: &str,
    worker_id: &str,
    attempt: u32,
) -> R<Option<LiveTask>> {
    let db = tx.db;
    let undone = tx
        .update(
            &db.tasks,
            doc! {
                "_id": task_id, "status": "assigned", "worker_id": worker_id,
                "attempts": i64::from(attempt),
            },
            doc! {
                "$set": back_to_pending(),
                "$inc": { "attempts": -1_i64 },
            },
        )
        .await?;
    if !undone {
        return Ok(None);
    }
    tx.delete(&db.claims, doc! { "_id": format!("{task_id}/{attempt}") })
        .await?;
    tx.task_event(
        task_id,
        "unclaimed",
        "Dispatcher",
        serde_json::json!({ "worker_id": worker_id, "attempt": attempt,
            "why": "the worker went away before it was told of the claim" }),
        crate::clock::now_ms(),
    )
    .await?;
    for counter in ["tasks_claimed", "claims_today"] {
        tx.update(
            &db.workers,
            doc! { "_id": worker_id, counter: { "$gt": 0_i64 } },
            doc! { "$inc": { counter: -1_i64 } },
        )
        .await?;
    }
    tx.task_live(task_id).await
}

pub(super) async fn release(
    tx: &mut Tx<'_>,
    task_id: &str,
    worker_id: &str,
) -> R<Option<LiveTask>> {
    let db = tx.db;
    let released = tx
        .update(
            &db.tasks,
            doc! { "_id": task_id, "status": "assigned", "worker_id": worker_id },
            doc! { "$set": back_to_pending() },
        )
        .await?;
    if !released {
        return Ok(None);
    }
    tx.task_event(
        task_id,
        "released",
        worker_id,
        serde_json::json!({ "why": "the worker gave it back before its deadline" }),
        crate::clock::now_ms(),
    )
    .await?;
    tx.task_live(task_id).await
}

pub(super) struct Submit<'a> {
    pub task_id: &'a str,
    pub worker_id: &'a str,
    pub output: &'a Output,
    pub now_ms: i64,
    pub cfg: &'a PlatformConfig,
    /// A uniform draw in [0, 10000): a spot-check copy is made when it falls under the rate.
    pub spot_roll_bp: u32,
}

pub(super) async fn submit(tx: &mut Tx<'_>, s: Submit<'_>) -> R<Settlement> {
    let db = tx.db;
    let task = tx
        .one(&db.tasks, doc! { "_id": s.task_id })
        .await?
        .ok_or_else(|| EngineError::NotFound("no such task".into()))?;
    let mine = task.worker_id.as_deref() == Some(s.worker_id);
    let (stats, tier, tier_penalty) = tx
        .worker_stats(s.worker_id)
        .await?
        .ok_or_else(|| EngineError::Unauthorized("unknown worker".into()))?;
    use rules::settlement::Standing;
    match rules::settlement::standing(task.status(), mine, task.deadline, s.now_ms) {
        Standing::Open => {}
        Standing::Repeat => {
            let earned = task.earned_cents.unwrap_or(0);
            return Ok(Settlement {
                task_id: s.task_id.to_string(),
                task_type: task.task_type.clone(),
                buyer_id: task.buyer_id.clone(),
                earned_cents: earned,
                commission_cents: task.price_cents - earned,
                stats,
                tier,
                repeated: true,
                qa_group: None,
                spot_check: None,
                sensitive: task.input_preview.is_some(),
            });
        }
        Standing::Expired => return Err(Fail::Engine(EngineError::TaskExpired)),
        Standing::NotHeld => {
            let held_before = tx
                .exists(
                    &db.claims,
                    doc! { "task_id": s.task_id, "worker_id": s.worker_id },
                )
                .await?;
            return Err(Fail::Engine(rules::settlement::not_held(held_before)));
        }
    }
    rules::settlement::check_output(task.constraints().min_output_length, &s.output.text)?;
    let sensitive = task.input_preview.is_some();
    let output = s.output.clone().stored(sensitive)?;
    let task_type = crate::domain::TaskType::parse(&task.task_type)?;
    let settled = rules::settlement::settle(
        s.cfg,
        &rules::settlement::Submitted {
            task_id: s.task_id,
            task_type: &task_type,
            price_cents: task.price_cents,
            platform_paid: task.platform_paid(),
            in_qa_group: task.qa_group.is_some(),
            worker_id: s.worker_id,
            stats,
            tier: &tier,
            tier_penalty,
            now_ms: s.now_ms,
            spot_roll_bp: s.spot_roll_bp,
        },
    );
    let (earned, commission) = (settled.earned_cents, settled.commission_cents);
    // Guarded like the claim: only the holder's assigned task settles, once.
    let settles = tx
        .update(
            &db.tasks,
            doc! { "_id": s.task_id, "status": "assigned", "worker_id": s.worker_id },
            doc! { "$set": {
                "status": "completed", "output": &output, "earned_cents": earned,
                "commission_cents": commission, "completed_at": s.now_ms, "deadline": Bson::Null,
                "purge_after": rules::retention::purge_after_ms(s.now_ms, Some(settled.release_at_ms)),
            } },
        )
        .await?;
    if !settles {
        return Err(Fail::Retry);
    }
    let lot = LotDoc {
        id: task.seq,
        worker_id: s.worker_id.to_string(),
        task_id: s.task_id.to_string(),
        amount_cents: earned,
        commission_cents: commission,
        created_at: s.now_ms,
        release_at: settled.release_at_ms,
        status: "frozen".into(),
        deducted_cents: 0,
    };
    tx.insert(&db.lots, &lot).await?;
    tx.apply(&settled.entry, s.now_ms).await?;
    let spot_check = if settled.spot_check {
        let copy = tx
            .open_group(s.task_id, QaType::SpotCheck, s.now_ms)
            .await?;
        Some(QaCopy {
            task: copy,
            barred: vec![s.worker_id.to_string()],
        })
    } else {
        None
    };
    tx.update(
        &db.balances,
        doc! { "_id": s.worker_id },
        doc! { "$inc": { "total_earned_cents": earned, "version": 1_i64 } },
    )
    .await?;
    tx.touch(s.worker_id);
    let rules::settlement::Settled {
        stats,
        tier: new_tier,
        ..
    } = settled;
    tx.update(
        &db.workers,
        doc! { "_id": s.worker_id },
        doc! {
            "$inc": { "tasks_completed": 1_i64, "total_earned_cents": earned },
            "$set": { "consecutive_expires": 0_i64, "tier": &new_tier, "last_seen": s.now_ms },
        },
    )
    .await?;
    if !task.platform_paid() {
        let ev = crate::store::webhook::events::task_completed(
            &task.buyer_id,
            s.task_id,
            &task.task_type,
            task.price_cents,
        );
        tx.hook(ev, s.now_ms).await?;
    }
    Ok(Settlement {
        task_id: s.task_id.to_string(),
        task_type: task.task_type.clone(),
        buyer_id: task.buyer_id.clone(),
        earned_cents: earned,
        commission_cents: commission,
        stats,
        tier: new_tier,
        repeated: false,
        qa_group: task.qa_group.clone(),
        spot_check,
        sensitive,
    })
}

pub(super) async fn expire(
    tx: &mut Tx<'_>,
    task_id: &str,
    worker_id: &str,
    attempt: u32,
    now_ms: i64,
    cfg: &PlatformConfig,
) -> R<ExpireOutcome> {
    let db = tx.db;
    let found = tx
        .one(
            &db.tasks,
            doc! {
                "_id": task_id, "status": "assigned", "worker_id": worker_id,
                "attempts": i64::from(attempt),
            },
        )
        .await?;
    let Some(task) = found else {
        return Ok(ExpireOutcome::Stale);
    };
    // The worker who let it lapse: count it, and suspend after too many in a row.
    let (stats, tier, tier_penalty) = tx
        .worker_stats(worker_id)
        .await?
        .ok_or_else(|| EngineError::internal("expired task's worker is missing"))?;
    let lapsed = rules::expiry::lapse(
        cfg,
        &rules::expiry::Lapse {
            stats,
            tier: &tier,
            tier_penalty,
            attempts: task.attempts(),
            now_ms,
        },
    );
    let suspended_until_ms = lapsed.suspended_until_ms;
    let mut set = doc! {
        "tasks_expired": lapsed.stats.tasks_expired as i64,
        "consecutive_expires": lapsed.stats.consecutive_expires as i64,
    };
    if let Some(until) = suspended_until_ms {
        set.insert("suspended_until", until);
    }
    tx.update(&db.workers, doc! { "_id": worker_id }, doc! { "$set": set })
        .await?;
    if lapsed.tier != tier {
        tx.set_tier(worker_id, &lapsed.tier).await?;
    }
    tx.task_event(
        task_id,
        "expired",
        worker_id,
        serde_json::json!({
            "attempt": attempt, "requeued": !lapsed.fails, "refunded": lapsed.fails,
            "suspended_until": suspended_until_ms.map(crate::clock::rfc3339),
        }),
        now_ms,
    )
    .await?;
    if lapsed.fails {
        tx.refund(task_id, now_ms).await?;
        return Ok(ExpireOutcome::Failed {
            buyer_id: task.buyer_id,
            suspended_until_ms,
        });
    }
    // Guarded: exactly one node's Supervisor re-queues a lapsed task (the others conflict, run
    // again, and find it stale).
    let requeued = tx
        .update(
            &db.tasks,
            doc! { "_id": task_id, "status": "assigned", "attempts": i64::from(attempt) },
            doc! { "$set": back_to_pending() },
        )
        .await?;
    if !requeued {
        return Err(Fail::Retry);
    }
    let task = tx
        .task_live(task_id)
        .await?
        .ok_or_else(|| EngineError::internal("requeued task vanished"))?;
    Ok(ExpireOutcome::Requeued {
        task,
        suspended_until_ms,
    })
}

pub(super) struct CreditAsk<'a> {
    pub task_id: &'a str,
    pub buyer_id: &'a str,
    /// The buyer, and from where (for the audit log).
    pub by: &'a Who,
    pub reason: Option<&'a str>,
    pub now_ms: i64,
    pub cfg: &'a PlatformConfig,
}

pub(super) async fn credit(
    tx: &mut Tx<'_>,
    a: CreditAsk<'_>,
    idem: Option<&IdemKey>,
) -> R<Credited> {
    if let Some(first) = tx.replay(idem).await? {
        return Ok(first);
    }
    let db = tx.db;
    let task = tx
        .one(&db.tasks, doc! { "_id": a.task_id, "buyer_id": a.buyer_id })
        .await?
        .ok_or_else(|| EngineError::NotFound("no such task".into()))?;
    let in_window = tx
        .exists(
            &db.lots,
            doc! { "task_id": a.task_id, "release_at": { "$gt": a.now_ms } },
        )
        .await?;
    rules::money::check_credit(task.status(), in_window)?;
    let Some((worker_id, price)) = tx
        .reverse_lot(a.task_id, a.buyer_id, true, a.now_ms)
        .await?
    else {
        return Err(Fail::Engine(EngineError::Conflict(
            "the refund window for this task has closed".into(),
        )));
    };
    tx.replace_tier(&worker_id, a.cfg).await?;
    let ev = crate::store::webhook::events::task_credited(a.buyer_id, a.task_id, price, "buyer");
    tx.hook(ev, a.now_ms).await?;
    tx.audit(
        a.by,
        "task.credit",
        &serde_json::json!({ "task_id": a.task_id, "reason": a.reason, "cents": price }),
        a.now_ms,
    )
    .await?;
    let balance_after = tx.available(a.buyer_id).await?.unwrap_or(0);
    let answer = Credited {
        task_id: a.task_id.to_string(),
        credited_cents: price,
        balance_after_cents: balance_after,
        worker_id,
    };
    tx.remember(idem, &answer, a.now_ms).await?;
    Ok(answer)
}

pub(super) async fn live_tasks(tx: &mut Tx<'_>) -> R<Vec<LiveTask>> {
    let db = tx.db;
    let found = tx
        .many(
            &db.tasks,
            doc! { "status": { "$in": ["pending", "assigned"] } },
            doc! { "seq": 1 },
            None,
        )
        .await?;
    Ok(found.iter().map(TaskDoc::live).collect())
}

impl Tx<'_> {
    pub async fn task_live(&mut self, task_id: &str) -> R<Option<LiveTask>> {
        let db = self.db;
        Ok(self
            .one(&db.tasks, doc! { "_id": task_id })
            .await?
            .map(|t| t.live()))
    }
}
