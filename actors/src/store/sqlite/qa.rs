//! Invisible QA: copies paid by the QA fund, groups, decisions and the penalty ladder's writes,
//! benchmarks, results and stats.

use super::*;

pub(super) fn qa_group(c: &Connection, group_id: String) -> Result<Option<QaGroup>, EngineError> {
    let head: Option<(String, String, Option<String>)> = c
        .prepare_cached("SELECT qa_type, state, expected_output FROM qa_groups WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row(params![group_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(db_err)?;
    let Some((qa_type, state, expected_output)) = head else {
        return Ok(None);
    };
    let bad = |what: &str| EngineError::internal(format!("qa group {group_id}: bad {what}"));
    let mut s = c
        .prepare_cached("SELECT id, qa_role, status, worker_id, output FROM tasks WHERE qa_group = ?1 ORDER BY seq")
        .map_err(db_err)?;
    let rows = s
        .query_map(params![group_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get(3)?,
                r.get(4)?,
            ))
        })
        .map_err(db_err)?;
    let mut members = Vec::new();
    for row in rows {
        let (task_id, role, status, worker_id, output) = row.map_err(db_err)?;
        members.push(QaMember {
            task_id,
            role: QaRole::parse(&role).ok_or_else(|| bad("role"))?,
            status: TaskStatus::parse(&status).ok_or_else(|| bad("status"))?,
            worker_id,
            output,
        });
    }
    Ok(Some(QaGroup {
        id: group_id.clone(),
        qa_type: QaType::parse(&qa_type).ok_or_else(|| bad("type"))?,
        state: QaState::parse(&state).ok_or_else(|| bad("state"))?,
        expected_output,
        members,
    }))
}

pub(super) fn qa_undecided(c: &Connection) -> Result<Vec<String>, EngineError> {
    let mut s = c
        .prepare_cached(
            "SELECT id FROM qa_groups WHERE state IN ('open', 'tiebreak') ORDER BY created_at",
        )
        .map_err(db_err)?;
    let rows = s.query_map([], |r| r.get(0)).map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

pub(super) fn qa_apply(
    tx: &mut Tx<'_>,
    group_id: String,
    from: QaState,
    decision: QaDecision,
    now_ms: i64,
    cfg: Arc<PlatformConfig>,
) -> Result<QaApplied, EngineError> {
    let head: Option<(String, String, String, String, Option<String>)> = tx
        .conn
        .prepare_cached("SELECT state, qa_type, task_id, qa_task_id, tiebreak_task_id FROM qa_groups WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row(params![group_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))).optional()
        })
        .map_err(db_err)?;
    let Some((state, qa_type, task_id, qa_task_id, tiebreak_task_id)) = head else {
        return Ok(QaApplied::default());
    };
    if state != from.as_str() {
        return Ok(QaApplied::default());
    }
    let mut applied = QaApplied {
        applied: true,
        ..QaApplied::default()
    };
    match decision {
        QaDecision::Tiebreak { .. } => {
            let barred: Vec<String> = {
                let mut s = tx
                    .conn
                    .prepare_cached("SELECT DISTINCT worker_id FROM tasks WHERE qa_group = ?1 AND worker_id IS NOT NULL")
                    .map_err(db_err)?;
                let rows = s
                    .query_map(params![group_id], |r| r.get(0))
                    .map_err(db_err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
            };
            let task = tx.copy_task(&task_id, &group_id, QaRole::Tiebreak, now_ms)?;
            tx.conn
                .prepare_cached(
                    "UPDATE qa_groups SET state = 'tiebreak', tiebreak_task_id = ?2 WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![group_id, task.task_id]))
                .map_err(db_err)?;
            applied.tiebreak = Some(QaCopy { task, barred });
        }
        QaDecision::Decide {
            score,
            verdict,
            outcomes,
            blamed,
            tiebreak,
        } => {
            applied.decided = true;
            applied.failed = blamed.is_some();
            let worker_ids: Vec<&str> = outcomes.iter().map(|(w, _)| w.as_str()).collect();
            let seq: i64 = tx
                .conn
                .prepare_cached(
                    "INSERT INTO qa_results (group_id, task_id, qa_task_id, qa_type, similarity, dimensions, verdict,
                                             worker_ids, blamed_worker_id, tiebreak_task_id, tiebreak, decided_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING seq",
                )
                .and_then(|mut s| {
                    s.query_row(
                        params![
                            group_id,
                            task_id,
                            qa_task_id,
                            qa_type,
                            score.similarity,
                            serde_json::to_string(&score.dimensions).unwrap_or_default(),
                            verdict.as_str(),
                            serde_json::to_string(&worker_ids).unwrap_or_default(),
                            blamed,
                            tiebreak_task_id,
                            tiebreak.map(|t| serde_json::to_string(&t).unwrap_or_default()),
                            now_ms
                        ],
                        |r| r.get(0),
                    )
                })
                .map_err(db_err)?;
            for (worker_id, v) in &outcomes {
                let column = match v {
                    crate::qa::similarity::Verdict::Pass => "qa_pass",
                    crate::qa::similarity::Verdict::Flag => "qa_flag",
                    crate::qa::similarity::Verdict::Fail => "qa_fail",
                };
                tx.conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO qa_outcomes (worker_id, result_seq, tier, qa_type, verdict)
                         SELECT id, ?2, tier, ?3, ?4 FROM workers WHERE id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![worker_id, seq, qa_type, v.as_str()]))
                    .map_err(db_err)?;
                tx.conn
                    .prepare_cached(&format!(
                        "UPDATE workers SET {column} = {column} + 1 WHERE id = ?1"
                    ))
                    .and_then(|mut s| s.execute(params![worker_id]))
                    .map_err(db_err)?;
            }
            if let Some(worker_id) = &blamed {
                if tx.penalise(worker_id, now_ms, &cfg)? {
                    applied.banned.push(worker_id.clone());
                }
                // The buyer's own result failed: the buyer gets the price back.
                let original_worker: Option<String> = tx
                    .conn
                    .prepare_cached("SELECT worker_id FROM tasks WHERE id = ?1 AND funded_by = 'buyer' AND status = 'completed'")
                    .and_then(|mut s| s.query_row(params![task_id], |r| r.get(0)).optional())
                    .map_err(db_err)?
                    .flatten();
                if rules::penalty::credits_buyer(&cfg, worker_id, original_worker.as_deref()) {
                    applied.auto_credit = tx.auto_credit(&task_id, now_ms)?;
                }
            }
            tx.conn
                .prepare_cached("UPDATE qa_groups SET state = 'decided' WHERE id = ?1")
                .and_then(|mut s| s.execute(params![group_id]))
                .map_err(db_err)?;
        }
    }
    Ok(applied)
}

pub(super) fn inject_benchmark(tx: &mut Tx<'_>, b: NewBenchmark) -> Result<QaCopy, EngineError> {
    // Re-injections of the same benchmark share a key: no worker sees one input twice.
    let key = format!(
        "bench:{}",
        &crate::domain::token_hash(&format!("{}\n{}", b.task_type, b.input))[..24]
    );
    tx.conn
        .prepare_cached(
            "INSERT INTO tasks (id, buyer_id, type, input, timeout_seconds, min_output_length, price_cents, status,
                                funded_by, created_at, qa_group, qa_key, qa_role)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 'platform', ?8, ?1, ?9, 'benchmark')",
        )
        .and_then(|mut s| {
            s.execute(params![
                b.task_id, QA_BUYER, b.task_type, b.input, b.constraints.timeout_seconds,
                b.constraints.min_output_length, b.price_cents, b.now_ms, key
            ])
        })
        .map_err(db_err)?;
    let seq = tx.conn.last_insert_rowid();
    tx.fund_qa_task(&b.task_id, b.price_cents, b.now_ms)?;
    tx.conn
        .prepare_cached(
            "INSERT INTO qa_groups (id, qa_type, task_id, qa_task_id, expected_output, state, created_at)
             VALUES (?1, 'benchmark', ?1, ?1, ?2, 'open', ?3)",
        )
        .and_then(|mut s| s.execute(params![b.task_id, b.expected_output, b.now_ms]))
        .map_err(db_err)?;
    Ok(QaCopy {
        task: LiveTask {
            seq,
            task_id: b.task_id.clone(),
            task_type: b.task_type.clone(),
            price_cents: b.price_cents,
            created_at_ms: b.now_ms,
            buyer_id: QA_BUYER.into(),
            assigned: None,
            qa_key: Some(key),
        },
        barred: Vec::new(),
    })
}

pub(super) fn qa_results(
    c: &Connection,
    worker_id: Option<String>,
    verdict: Option<String>,
    before_seq: Option<i64>,
    limit: u32,
) -> Result<Vec<QaResult>, EngineError> {
    let mut s = c
        .prepare_cached(
            "SELECT seq, task_id, qa_task_id, qa_type, similarity, dimensions, verdict, worker_ids, blamed_worker_id,
                    tiebreak_task_id, tiebreak, decided_at
             FROM qa_results r
             WHERE seq < ?1 AND (?2 IS NULL OR verdict = ?2)
               AND (?3 IS NULL OR EXISTS (SELECT 1 FROM qa_outcomes o WHERE o.worker_id = ?3 AND o.result_seq = r.seq))
             ORDER BY seq DESC LIMIT ?4",
        )
        .map_err(db_err)?;
    let rows = s
        .query_map(
            params![before_seq.unwrap_or(i64::MAX), verdict, worker_id, limit],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, f64>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, Option<String>>(9)?,
                    r.get::<_, Option<String>>(10)?,
                    r.get::<_, i64>(11)?,
                ))
            },
        )
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (
            seq,
            task_id,
            qa_task_id,
            qa_type,
            similarity,
            dims,
            verdict,
            workers,
            blamed,
            tb_id,
            tb,
            at,
        ) = row.map_err(db_err)?;
        out.push(QaResult {
            seq,
            task_id,
            qa_task_id,
            qa_type: QaType::parse(&qa_type).ok_or_else(|| EngineError::internal("bad qa type"))?,
            similarity,
            dimensions: serde_json::from_str(&dims).map_err(json_err)?,
            verdict,
            worker_ids: serde_json::from_str(&workers).map_err(json_err)?,
            blamed_worker_id: blamed,
            tiebreak_task_id: tb_id,
            tiebreak: tb
                .map(|t| serde_json::from_str(&t))
                .transpose()
                .map_err(json_err)?,
            decided_at: crate::clock::rfc3339(at),
        });
    }
    Ok(out)
}

pub(super) fn qa_stats(c: &Connection) -> Result<QaStats, EngineError> {
    let mut stats = QaStats::default();
    let add = |counts: &mut VerdictCounts, verdict: &str, n: u64| match verdict {
        "pass" => counts.pass += n,
        "flag" => counts.flag += n,
        _ => counts.fail += n,
    };
    let mut s = c
        .prepare("SELECT tier, qa_type, verdict, count(*) FROM qa_outcomes GROUP BY tier, qa_type, verdict")
        .map_err(db_err)?;
    let rows = s
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .map_err(db_err)?;
    for row in rows {
        let (tier, qa_type, verdict, n) = row.map_err(db_err)?;
        let n = n as u64;
        add(&mut stats.overall, &verdict, n);
        add(stats.by_tier.entry(tier).or_default(), &verdict, n);
        add(stats.by_type.entry(qa_type).or_default(), &verdict, n);
    }
    let mut s = c
        .prepare(
            "SELECT o.worker_id, count(*), w.qa_fail, w.tier FROM qa_outcomes o JOIN workers w ON w.id = o.worker_id
             WHERE o.verdict = 'flag' GROUP BY o.worker_id ORDER BY count(*) DESC, o.worker_id LIMIT 100",
        )
        .map_err(db_err)?;
    let rows = s
        .query_map([], |r| {
            Ok(serde_json::json!({
                "worker_id": r.get::<_, String>(0)?, "flags": r.get::<_, i64>(1)?,
                "fails": r.get::<_, i64>(2)?, "tier": r.get::<_, String>(3)?,
            }))
        })
        .map_err(db_err)?;
    stats.flagged_workers = rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?;
    let mut s = c
        .prepare("SELECT id, banned_at, qa_fail, balance_frozen FROM workers WHERE banned_at IS NOT NULL ORDER BY banned_at DESC LIMIT 1000")
        .map_err(db_err)?;
    let rows = s
        .query_map([], |r| {
            Ok(serde_json::json!({
                "worker_id": r.get::<_, String>(0)?, "banned_at": crate::clock::rfc3339(r.get(1)?),
                "fails": r.get::<_, i64>(2)?, "balance_frozen": r.get::<_, bool>(3)?,
            }))
        })
        .map_err(db_err)?;
    stats.banned_workers = rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?;
    let (waiting, void): (i64, i64) = c
        .query_row(
            "SELECT count(*) FILTER (WHERE state IN ('open', 'tiebreak')), count(*) FILTER (WHERE state = 'void') FROM qa_groups",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db_err)?;
    stats.waiting = waiting as u64;
    stats.void = void as u64;
    stats.qa_fund_cents = c
        .query_row(
            "SELECT balance_cents FROM accounts WHERE id = ?1",
            params![ledger::QA_FUND],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    Ok(stats)
}

pub(super) fn worker_notices(
    c: &Connection,
    worker_id: String,
) -> Result<Vec<WorkerNotice>, EngineError> {
    let mut s = c
        .prepare_cached("SELECT kind, message, created_at FROM worker_notices WHERE worker_id = ?1 ORDER BY id DESC LIMIT 20")
        .map_err(db_err)?;
    let rows = s
        .query_map(params![worker_id], |r| {
            Ok(WorkerNotice {
                kind: r.get(0)?,
                message: r.get(1)?,
                at: crate::clock::rfc3339(r.get(2)?),
            })
        })
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

pub(super) fn banned_workers(c: &Connection) -> Result<Vec<String>, EngineError> {
    let mut s = c
        .prepare("SELECT id FROM workers WHERE banned_at IS NOT NULL")
        .map_err(db_err)?;
    let rows = s.query_map([], |r| r.get(0)).map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

impl Tx<'_> {
    /// Pays a QA task's escrow from the QA fund.
    pub(super) fn fund_qa_task(
        &mut self,
        task_id: &str,
        price_cents: i64,
        now_ms: i64,
    ) -> Result<(), EngineError> {
        self.apply(&rules::money::qa_pay(task_id, price_cents), now_ms)?;
        Ok(())
    }

    /// Makes a buyer's task the original of a new QA group of `qa_type` with one copy.
    pub(super) fn open_group(
        &mut self,
        task_id: &str,
        qa_type: QaType,
        now_ms: i64,
    ) -> Result<LiveTask, EngineError> {
        self.conn
            .prepare_cached(
                "UPDATE tasks SET qa_group = ?1, qa_key = ?1, qa_role = 'original' WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![task_id]))
            .map_err(db_err)?;
        let copy = self.copy_task(task_id, task_id, QaRole::Copy, now_ms)?;
        self.conn
            .prepare_cached(
                "INSERT INTO qa_groups (id, qa_type, task_id, qa_task_id, state, created_at) VALUES (?1, ?2, ?1, ?3, 'open', ?4)",
            )
            .and_then(|mut s| s.execute(params![task_id, qa_type.as_str(), copy.task_id, now_ms]))
            .map_err(db_err)?;
        Ok(copy)
    }

    /// A pending copy of `source` (same type, input, constraints and price), paid by the QA fund.
    pub(super) fn copy_task(
        &mut self,
        source: &str,
        group: &str,
        role: QaRole,
        now_ms: i64,
    ) -> Result<LiveTask, EngineError> {
        let task_id = crate::domain::new_id("task");
        let (seq, task_type, price_cents): (i64, String, i64) = self
            .conn
            .prepare_cached(
                "INSERT INTO tasks (id, buyer_id, type, input, timeout_seconds, min_output_length, price_cents, status,
                                    funded_by, created_at, qa_group, qa_key, qa_role, input_preview)
                 SELECT ?2, ?3, type, input, timeout_seconds, min_output_length, price_cents, 'pending',
                        'platform', ?4, ?5, qa_key, ?6, input_preview
                 FROM tasks WHERE id = ?1
                 RETURNING seq, type, price_cents",
            )
            .and_then(|mut s| {
                s.query_row(params![source, task_id, QA_BUYER, now_ms, group, role.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
            })
            .map_err(db_err)?;
        self.fund_qa_task(&task_id, price_cents, now_ms)?;
        let qa_key = Some(group.to_string());
        Ok(LiveTask {
            seq,
            task_id,
            task_type,
            price_cents,
            created_at_ms: now_ms,
            buyer_id: QA_BUYER.into(),
            assigned: None,
            qa_key,
        })
    }

    pub(super) fn notice(
        &self,
        worker_id: &str,
        kind: &str,
        message: &str,
        now_ms: i64,
    ) -> Result<(), EngineError> {
        self.conn
            .prepare_cached("INSERT INTO worker_notices (worker_id, kind, message, created_at) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut s| s.execute(params![worker_id, kind, message, now_ms]))
            .map_err(db_err)?;
        Ok(())
    }

    /// Walks `worker_id` one step down the penalty ladder for a QA fail (its `qa_fail` count is
    /// already raised), as [`rules::penalty::plan`] says. Returns whether the worker is now banned.
    pub(super) fn penalise(
        &mut self,
        worker_id: &str,
        now_ms: i64,
        cfg: &PlatformConfig,
    ) -> Result<bool, EngineError> {
        let fails: u32 = self
            .conn
            .prepare_cached("SELECT qa_fail FROM workers WHERE id = ?1")
            .and_then(|mut s| s.query_row(params![worker_id], |r| r.get(0)))
            .map_err(db_err)?;
        let lots: Vec<FrozenLot> = {
            let mut s = self
                .conn
                .prepare_cached("SELECT id, amount_cents FROM lots WHERE worker_id = ?1 AND status IN ('frozen', 'held')")
                .map_err(db_err)?;
            let rows = s
                .query_map(params![worker_id], |r| {
                    Ok(FrozenLot {
                        lot_id: r.get(0)?,
                        amount_cents: r.get(1)?,
                    })
                })
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
        };
        let plan = rules::penalty::plan(worker_id, fails, &lots, &cfg.qa.penalty);
        for (lot_id, cut) in &plan.cuts {
            self.conn
                .prepare_cached(
                    "UPDATE lots SET amount_cents = amount_cents - ?2, deducted_cents = deducted_cents + ?2 WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![lot_id, cut]))
                .map_err(db_err)?;
        }
        if let Some(entry) = &plan.entry {
            self.apply(entry, now_ms)?;
            self.unearn(worker_id, plan.deducted_cents, false)?;
        }
        if plan.downgrade {
            self.conn
                .prepare_cached("UPDATE workers SET tier_penalty = tier_penalty + 1 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![worker_id]))
                .map_err(db_err)?;
            self.replace_tier(worker_id, cfg)?;
        }
        if plan.freeze_balance {
            // Held lots are never released; buyers can still be credited from them.
            self.conn
                .prepare_cached(
                    "UPDATE lots SET status = 'held' WHERE worker_id = ?1 AND status = 'frozen'",
                )
                .and_then(|mut s| s.execute(params![worker_id]))
                .map_err(db_err)?;
        }
        let newly_banned = plan.ban
            && self
                .conn
                .prepare_cached("SELECT banned_at IS NULL FROM workers WHERE id = ?1")
                .and_then(|mut s| s.query_row(params![worker_id], |r| r.get::<_, bool>(0)))
                .map_err(db_err)?;
        if plan.ban || plan.freeze_balance {
            self.conn
                .prepare_cached(
                    "UPDATE workers SET banned_at = CASE WHEN ?2 THEN coalesce(banned_at, ?3) ELSE banned_at END,
                            balance_frozen = max(balance_frozen, ?4)
                     WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![worker_id, plan.ban, now_ms, plan.freeze_balance]))
                .map_err(db_err)?;
        }
        if newly_banned {
            self.audit(
                &Who::system("qa"),
                "worker.ban",
                &rules::penalty::ban_details(worker_id, fails, &plan),
                now_ms,
            )?;
        }
        self.notice(worker_id, plan.notice.kind, &plan.notice.message, now_ms)?;
        Ok(plan.ban)
    }

    /// The buyer's original failed QA: the buyer gets its price back, from the worker's lot while
    /// it is frozen, else from the QA fund. Not counted as a credit request of the worker (the
    /// penalty ladder already answers for it). Returns (buyer, task, cents).
    pub(super) fn auto_credit(
        &mut self,
        task_id: &str,
        now_ms: i64,
    ) -> Result<Option<(String, String, i64)>, EngineError> {
        let found: Option<(String, i64)> = self
            .conn
            .prepare_cached("SELECT buyer_id, price_cents FROM tasks WHERE id = ?1 AND status = 'completed' AND funded_by = 'buyer'")
            .and_then(|mut s| s.query_row(params![task_id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(db_err)?;
        let Some((buyer_id, price)) = found else {
            return Ok(None);
        };
        let cents = match self.reverse_lot(task_id, &buyer_id, false, now_ms)? {
            Some((_, cents)) => cents,
            None => {
                self.apply(&rules::money::qa_credit(task_id, &buyer_id, price), now_ms)?;
                self.mark_credited(task_id, now_ms)?;
                price
            }
        };
        self.hook(
            crate::store::webhook::events::task_credited(&buyer_id, task_id, cents, "qa"),
            now_ms,
        )?;
        self.audit(
            &Who::system("qa"),
            "task.auto_credit",
            &serde_json::json!({ "task_id": task_id, "cents": cents }),
            now_ms,
        )?;
        Ok(Some((buyer_id, task_id.to_string(), cents)))
    }
}
