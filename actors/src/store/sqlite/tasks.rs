//! The task lifecycle: post, claim, release, submit (settlement), expiry, credit.

use super::*;

/// Claims a pending task that is in no QA group (?1 task, ?2 worker, ?3 now).
pub(super) const CLAIM_PLAIN: &str = "UPDATE tasks SET status = 'assigned', worker_id = ?2, attempts = attempts + 1, assigned_at = ?3,
        deadline = ?3 + timeout_seconds * 1000
    WHERE id = ?1 AND status = 'pending' AND qa_key IS NULL
    RETURNING type, input, timeout_seconds, min_output_length, price_cents, deadline, attempts";

/// Claims a pending QA task once the worker was found not to have had its input.
pub(super) const CLAIM_QA: &str = "UPDATE tasks SET status = 'assigned', worker_id = ?2, attempts = attempts + 1, assigned_at = ?3,
        deadline = ?3 + timeout_seconds * 1000
    WHERE id = ?1 AND status = 'pending' AND qa_key IS NOT NULL
    RETURNING type, input, timeout_seconds, min_output_length, price_cents, deadline, attempts";

pub(super) fn post_task(tx: &mut Tx<'_>, t: NewTask) -> Result<TaskPosted, EngineError> {
    let idem = t.idempotency.clone();
    tx.idempotent(idem.as_ref(), t.now_ms, |mut p: TaskPosted| { p.replayed = true; p }, |tx| {
        let available = tx.available(&t.buyer_id)?.ok_or_else(|| EngineError::NotFound("no such buyer".into()))?;
        if available < t.price_cents {
            return Err(EngineError::InsufficientBalance { needed_cents: t.price_cents, available_cents: available });
        }
        tx.conn
            .prepare_cached(
                "INSERT INTO tasks (id, buyer_id, type, input, timeout_seconds, min_output_length, price_cents, status, created_at,
                                    input_preview)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    t.task_id, t.buyer_id, t.task_type, t.input, t.constraints.timeout_seconds,
                    t.constraints.min_output_length, t.price_cents, t.now_ms, t.input_preview
                ])
            })
            .map_err(db_err)?;
        let seq = tx.conn.last_insert_rowid();
        tx.apply(&rules::money::task_pay(&t.buyer_id, &t.task_id, t.price_cents), t.now_ms)?;
        let shadow = if t.shadow {
            let task = tx.open_group(&t.task_id, QaType::Shadow, t.now_ms)?;
            Some(QaCopy { task, barred: Vec::new() })
        } else {
            None
        };
        Ok(TaskPosted {
            task_id: t.task_id.clone(),
            price_cents: t.price_cents,
            balance_after_cents: available - t.price_cents,
            created_at_ms: t.now_ms,
            seq,
            replayed: false,
            shadow,
        })
    })
}

pub(super) fn list_tasks(
    c: &Connection,
    buyer_id: String,
    before_seq: Option<i64>,
    limit: u32,
) -> Result<Vec<TaskRecord>, EngineError> {
    let mut s = c
        .prepare_cached(&format!(
            "SELECT {TASK_COLS} FROM tasks WHERE buyer_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
        ))
        .map_err(db_err)?;
    let rows = s
        .query_map(
            params![buyer_id, before_seq.unwrap_or(i64::MAX), limit],
            task_from_row,
        )
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

pub(super) fn claim(
    tx: &mut Tx<'_>,
    task_id: TaskId,
    worker_id: WorkerId,
    now_ms: i64,
) -> Result<ClaimOutcome, EngineError> {
    let task_id = task_id.into_string();
    let worker_id = worker_id.into_string();
    let c = tx.conn;
    let day = crate::clock::day_start_ms(now_ms);
    let worker: Option<(Option<i64>, String, u32, Option<i64>)> = c
        .prepare_cached(
            "SELECT suspended_until, profile, CASE WHEN claims_day = ?2 THEN claims_today ELSE 0 END, banned_at
             FROM workers WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.query_row(params![worker_id, day], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).optional()
        })
        .map_err(db_err)?;
    let Some((suspended_until, profile, claims_today, banned_at)) = worker else {
        return Ok(ClaimOutcome::UnknownWorker);
    };
    let profile: WorkerProfile = serde_json::from_str(&profile).map_err(json_err)?;
    let held: u32 = c
        .prepare_cached("SELECT count(*) FROM tasks WHERE worker_id = ?1 AND status = 'assigned'")
        .and_then(|mut s| s.query_row(params![worker_id], |r| r.get(0)))
        .map_err(db_err)?;
    let claimant = rules::claim::Claimant {
        banned: banned_at.is_some(),
        suspended_until_ms: suspended_until,
        held,
        claims_today,
        limits: &profile.limits,
    };
    if let Some(refusal) = rules::claim::refusal(&claimant, now_ms) {
        return Ok(ClaimOutcome::Refused(refusal));
    }
    let take = |sql: &str| -> Result<Option<ClaimedTask>, EngineError> {
        c.prepare_cached(sql)
            .and_then(|mut s| {
                s.query_row(params![task_id, worker_id, now_ms], |r| {
                    Ok(ClaimedTask {
                        task_id: task_id.clone(),
                        task_type: r.get(0)?,
                        input: r.get(1)?,
                        constraints: Constraints {
                            timeout_seconds: r.get(2)?,
                            min_output_length: r.get(3)?,
                        },
                        price_cents: r.get(4)?,
                        deadline_ms: r.get(5)?,
                        attempt: r.get(6)?,
                    })
                })
                .optional()
            })
            .map_err(db_err)
    };
    // Tasks outside QA (nearly all) are claimed by one plain statement; a task with a QA
    // key is checked first: a worker never gets a second task with the same input. (A
    // correlated subquery in the claim itself made SQLite re-prepare it on every run.)
    let task = match take(CLAIM_PLAIN)? {
        Some(t) => t,
        None => {
            let still: Option<(String, Option<String>)> = c
                .prepare_cached("SELECT status, qa_key FROM tasks WHERE id = ?1")
                .and_then(|mut s| {
                    s.query_row(params![task_id], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(db_err)?;
            let Some((_, Some(qa_key))) = still.filter(|(status, _)| status == "pending") else {
                return Ok(ClaimOutcome::TaskGone);
            };
            let had_it: bool = c
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM tasks s JOIN claims c ON c.task_id = s.id
                                    WHERE s.qa_key = ?1 AND c.worker_id = ?2)",
                )
                .and_then(|mut s| s.query_row(params![qa_key, worker_id], |r| r.get(0)))
                .map_err(db_err)?;
            if had_it {
                return Ok(ClaimOutcome::NotForWorker { qa_key });
            }
            match take(CLAIM_QA)? {
                Some(t) => t,
                None => return Ok(ClaimOutcome::TaskGone),
            }
        }
    };
    c.prepare_cached(
        "INSERT INTO claims (task_id, worker_id, attempt, claimed_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| s.execute(params![task_id, worker_id, task.attempt, now_ms]))
    .map_err(db_err)?;
    c.prepare_cached(
        "UPDATE workers SET tasks_claimed = tasks_claimed + 1, last_seen = ?2,
                claims_today = CASE WHEN claims_day = ?3 THEN claims_today + 1 ELSE 1 END, claims_day = ?3
         WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![worker_id, now_ms, crate::clock::day_start_ms(now_ms)]))
        .map_err(db_err)?;
    Ok(ClaimOutcome::Claimed(task))
}

pub(super) fn unclaim(
    tx: &mut Tx<'_>,
    task_id: TaskId,
    worker_id: WorkerId,
    attempt: u32,
) -> Result<Option<LiveTask>, EngineError> {
    let task_id = task_id.into_string();
    let worker_id = worker_id.into_string();
    let n = tx
        .conn
        .prepare_cached(
            "UPDATE tasks SET status = 'pending', worker_id = NULL, deadline = NULL, assigned_at = NULL,
                    attempts = attempts - 1
             WHERE id = ?1 AND status = 'assigned' AND worker_id = ?2 AND attempts = ?3",
        )
        .and_then(|mut s| s.execute(params![task_id, worker_id, attempt]))
        .map_err(db_err)?;
    if n == 0 {
        return Ok(None);
    }
    tx.conn
        .prepare_cached("DELETE FROM claims WHERE task_id = ?1 AND attempt = ?2")
        .and_then(|mut s| s.execute(params![task_id, attempt]))
        .map_err(db_err)?;
    tx.task_event(
        &task_id,
        "unclaimed",
        "Dispatcher",
        serde_json::json!({ "worker_id": worker_id, "attempt": attempt,
            "why": "the worker went away before it was told of the claim" }),
        crate::clock::now_ms(),
    )?;
    tx.conn
        .prepare_cached(
            "UPDATE workers SET tasks_claimed = max(tasks_claimed - 1, 0), claims_today = max(claims_today - 1, 0)
             WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![worker_id]))
        .map_err(db_err)?;
    tx.task_live(&task_id)
}

pub(super) fn release(
    tx: &mut Tx<'_>,
    task_id: TaskId,
    worker_id: WorkerId,
) -> Result<Option<LiveTask>, EngineError> {
    let task_id = task_id.into_string();
    let worker_id = worker_id.into_string();
    let n = tx
        .conn
        .prepare_cached(
            "UPDATE tasks SET status = 'pending', worker_id = NULL, deadline = NULL, assigned_at = NULL
             WHERE id = ?1 AND status = 'assigned' AND worker_id = ?2",
        )
        .and_then(|mut s| s.execute(params![task_id, worker_id]))
        .map_err(db_err)?;
    if n == 0 {
        return Ok(None);
    }
    tx.task_event(
        &task_id,
        "released",
        &worker_id,
        serde_json::json!({ "why": "the worker gave it back before its deadline" }),
        crate::clock::now_ms(),
    )?;
    tx.task_live(&task_id)
}

pub(super) fn submit(
    tx: &mut Tx<'_>,
    task_id: TaskId,
    worker_id: WorkerId,
    output: Output,
    now_ms: i64,
    cfg: Arc<PlatformConfig>,
    spot_roll_bp: u32,
) -> Result<Settlement, EngineError> {
    let task_id = task_id.into_string();
    let worker_id = worker_id.into_string();
    let (task, tag) = read_task_tagged(tx.conn, &task_id)?
        .ok_or_else(|| EngineError::NotFound("no such task".into()))?;
    let mine = task.worker_id.as_deref() == Some(worker_id.as_str());
    let (stats, tier, tier_penalty) = tx
        .worker_stats(&worker_id)?
        .ok_or_else(|| EngineError::Unauthorized("unknown worker".into()))?;
    use rules::settlement::Standing;
    match rules::settlement::standing(task.status, mine, task.deadline_ms, now_ms) {
        Standing::Open => {}
        Standing::Repeat => {
            return Ok(Settlement {
                task_id,
                task_type: task.task_type.clone(),
                buyer_id: task.buyer_id,
                earned_cents: task.earned_cents.unwrap_or(0),
                commission_cents: task.price_cents - task.earned_cents.unwrap_or(0),
                stats,
                tier,
                repeated: true,
                qa_group: None,
                spot_check: None,
                sensitive: task.input_preview.is_some(),
            });
        }
        Standing::Expired => return Err(EngineError::TaskExpired),
        Standing::NotHeld => {
            let held_before: bool = tx
                .conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM claims WHERE task_id = ?1 AND worker_id = ?2)",
                )
                .and_then(|mut s| s.query_row(params![task_id, worker_id], |r| r.get(0)))
                .map_err(db_err)?;
            return Err(rules::settlement::not_held(held_before));
        }
    }
    rules::settlement::check_output(task.constraints.min_output_length, &output.text)?;
    let sensitive = task.input_preview.is_some();
    let output = output.stored(sensitive)?;
    let task_type = crate::domain::TaskType::parse(&task.task_type)?;
    let QaTag {
        platform_paid,
        group: qa_group,
    } = tag;
    let settled = rules::settlement::settle(
        &cfg,
        &rules::settlement::Submitted {
            task_id: &task_id,
            task_type: &task_type,
            price_cents: task.price_cents,
            platform_paid,
            in_qa_group: qa_group.is_some(),
            worker_id: &worker_id,
            stats,
            tier: &tier,
            tier_penalty,
            now_ms,
            spot_roll_bp,
        },
    );
    let (earned, commission) = (settled.earned_cents, settled.commission_cents);
    let purge_after = rules::retention::purge_after_ms(now_ms, Some(settled.release_at_ms));
    tx.conn
        .prepare_cached(
            "UPDATE tasks SET status = 'completed', output = ?2, earned_cents = ?3, commission_cents = ?4,
                    completed_at = ?5, deadline = NULL, purge_after = ?6
             WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![task_id, output, earned, commission, now_ms, purge_after]))
        .map_err(db_err)?;
    tx.conn
        .prepare_cached(
            "INSERT INTO lots (worker_id, task_id, amount_cents, commission_cents, created_at, release_at, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'frozen')",
        )
        .and_then(|mut s| s.execute(params![worker_id, task_id, earned, commission, now_ms, settled.release_at_ms]))
        .map_err(db_err)?;
    tx.apply(&settled.entry, now_ms)?;
    let spot_check = if settled.spot_check {
        let task = tx.open_group(&task_id, QaType::SpotCheck, now_ms)?;
        Some(QaCopy {
            task,
            barred: vec![worker_id.clone()],
        })
    } else {
        None
    };
    tx.conn
        .prepare_cached("UPDATE balances SET total_earned_cents = total_earned_cents + ?2, version = version + 1 WHERE user_id = ?1")
        .and_then(|mut s| s.execute(params![worker_id, earned]))
        .map_err(db_err)?;
    let rules::settlement::Settled {
        stats,
        tier: new_tier,
        ..
    } = settled;
    tx.conn
        .prepare_cached(
            "UPDATE workers SET tasks_completed = tasks_completed + 1, consecutive_expires = 0,
                    total_earned_cents = total_earned_cents + ?2, tier = ?3, last_seen = ?4
             WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![worker_id, earned, new_tier, now_ms]))
        .map_err(db_err)?;
    if !platform_paid {
        tx.hook(
            crate::store::webhook::events::task_completed(
                &task.buyer_id,
                &task_id,
                &task.task_type,
                task.price_cents,
            ),
            now_ms,
        )?;
    }
    Ok(Settlement {
        task_id,
        task_type: task.task_type.clone(),
        buyer_id: task.buyer_id,
        earned_cents: earned,
        commission_cents: commission,
        stats,
        tier: new_tier,
        repeated: false,
        qa_group,
        spot_check,
        sensitive,
    })
}

pub(super) fn expire(
    tx: &mut Tx<'_>,
    task_id: TaskId,
    worker_id: WorkerId,
    attempt: u32,
    now_ms: i64,
    cfg: Arc<PlatformConfig>,
) -> Result<ExpireOutcome, EngineError> {
    let task_id = task_id.into_string();
    let worker_id = worker_id.into_string();
    let found: Option<(String, u32)> = tx
        .conn
        .prepare_cached(
            "SELECT buyer_id, attempts FROM tasks
             WHERE id = ?1 AND status = 'assigned' AND worker_id = ?2 AND attempts = ?3",
        )
        .and_then(|mut s| {
            s.query_row(params![task_id, worker_id, attempt], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })
        .map_err(db_err)?;
    let Some((buyer_id, attempts)) = found else {
        return Ok(ExpireOutcome::Stale);
    };
    // The worker who let it lapse: count it, and suspend after too many in a row.
    let (stats, tier, tier_penalty) = tx
        .worker_stats(&worker_id)?
        .ok_or_else(|| EngineError::internal("expired task's worker is missing"))?;
    let lapsed = rules::expiry::lapse(
        &cfg,
        &rules::expiry::Lapse {
            stats,
            tier: &tier,
            tier_penalty,
            attempts,
            now_ms,
        },
    );
    let suspended_until_ms = lapsed.suspended_until_ms;
    tx.conn
        .prepare_cached(
            "UPDATE workers SET tasks_expired = ?2, consecutive_expires = ?3,
                    suspended_until = coalesce(?4, suspended_until)
             WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                worker_id,
                lapsed.stats.tasks_expired as i64,
                lapsed.stats.consecutive_expires as i64,
                suspended_until_ms
            ])
        })
        .map_err(db_err)?;
    if lapsed.tier != tier {
        tx.set_tier(&worker_id, &lapsed.tier)?;
    }
    tx.task_event(
        &task_id,
        "expired",
        &worker_id,
        serde_json::json!({
            "attempt": attempt, "requeued": !lapsed.fails, "refunded": lapsed.fails,
            "suspended_until": suspended_until_ms.map(crate::clock::rfc3339),
        }),
        now_ms,
    )?;
    if lapsed.fails {
        tx.refund(&task_id, now_ms)?;
        return Ok(ExpireOutcome::Failed {
            buyer_id,
            suspended_until_ms,
        });
    }
    tx.conn
        .prepare_cached("UPDATE tasks SET status = 'pending', worker_id = NULL, deadline = NULL, assigned_at = NULL WHERE id = ?1")
        .and_then(|mut s| s.execute(params![task_id]))
        .map_err(db_err)?;
    let task = tx
        .task_live(&task_id)?
        .ok_or_else(|| EngineError::internal("requeued task vanished"))?;
    Ok(ExpireOutcome::Requeued {
        task,
        suspended_until_ms,
    })
}

pub(super) fn credit(
    tx: &mut Tx<'_>,
    task_id: TaskId,
    buyer: Who,
    reason: Option<String>,
    now_ms: i64,
    idem: Option<IdemKey>,
    cfg: Arc<PlatformConfig>,
) -> Result<Credited, EngineError> {
    let task_id = task_id.into_string();
    let buyer_id = buyer.id.clone();
    tx.idempotent(
        idem.as_ref(),
        now_ms,
        |c| c,
        |tx| {
            let task = read_task(tx.conn, &task_id)?
                .filter(|t| t.buyer_id == buyer_id)
                .ok_or_else(|| EngineError::NotFound("no such task".into()))?;
            let in_window: bool = tx
                .conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM lots WHERE task_id = ?1 AND release_at > ?2)",
                )
                .and_then(|mut s| s.query_row(params![task_id, now_ms], |r| r.get(0)))
                .map_err(db_err)?;
            rules::money::check_credit(task.status, in_window)?;
            let Some((worker_id, price)) = tx.reverse_lot(&task_id, &buyer_id, true, now_ms)?
            else {
                return Err(EngineError::Conflict(
                    "the refund window for this task has closed".into(),
                ));
            };
            tx.replace_tier(&worker_id, &cfg)?;
            tx.hook(
                crate::store::webhook::events::task_credited(&buyer_id, &task_id, price, "buyer"),
                now_ms,
            )?;
            tx.audit(
                &buyer,
                "task.credit",
                &serde_json::json!({ "task_id": task_id, "reason": reason, "cents": price }),
                now_ms,
            )?;
            let balance_after = tx.available(&buyer_id)?.unwrap_or(0);
            Ok(Credited {
                task_id: task_id.clone(),
                credited_cents: price,
                balance_after_cents: balance_after,
                worker_id,
            })
        },
    )
}

pub(super) fn live_tasks(c: &Connection) -> Result<Vec<LiveTask>, EngineError> {
    let mut s = c
        .prepare(&format!(
            "SELECT {LIVE_COLS} FROM tasks WHERE status IN ('pending', 'assigned') ORDER BY seq"
        ))
        .map_err(db_err)?;
    let rows = s.query_map([], live_from_row).map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

impl Tx<'_> {
    pub(super) fn task_live(&self, task_id: &str) -> Result<Option<LiveTask>, EngineError> {
        self.conn
            .prepare_cached(&format!("SELECT {LIVE_COLS} FROM tasks WHERE id = ?1"))
            .and_then(|mut s| s.query_row(params![task_id], live_from_row).optional())
            .map_err(db_err)
    }
}
