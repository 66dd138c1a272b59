//! Invisible QA: copies paid by the QA fund, groups, decisions and the penalty ladder's writes,
//! benchmarks, results and stats.

use super::accounts::int;
use super::*;

pub(super) async fn qa_group(tx: &mut Tx<'_>, group_id: &str) -> R<Option<QaGroup>> {
    let db = tx.db;
    let Some(head) = tx.one(&db.qa_groups, doc! { "_id": group_id }).await? else {
        return Ok(None);
    };
    let bad = |what: &str| EngineError::internal(format!("qa group {group_id}: bad {what}"));
    let tasks = group_tasks(tx, group_id).await?;
    let mut members = Vec::with_capacity(tasks.len());
    for t in tasks {
        let role = t.qa_role.as_deref().and_then(QaRole::parse);
        members.push(QaMember {
            role: role.ok_or_else(|| bad("role"))?,
            status: TaskStatus::parse(&t.status).ok_or_else(|| bad("status"))?,
            task_id: t.id,
            worker_id: t.worker_id,
            output: t.output,
        });
    }
    Ok(Some(QaGroup {
        id: group_id.to_string(),
        qa_type: QaType::parse(&head.qa_type).ok_or_else(|| bad("type"))?,
        state: QaState::parse(&head.state).ok_or_else(|| bad("state"))?,
        expected_output: head.expected_output,
        members,
    }))
}

/// A QA group's tasks (the original and its copies), in the order they were made.
async fn group_tasks(tx: &mut Tx<'_>, group_id: &str) -> R<Vec<TaskDoc>> {
    let db = tx.db;
    tx.many(
        &db.tasks,
        doc! { "qa_group": group_id },
        doc! { "seq": 1 },
        None,
    )
    .await
}

pub(super) async fn qa_undecided(tx: &mut Tx<'_>) -> R<Vec<String>> {
    let db = tx.db;
    let found = tx
        .many(
            &db.qa_groups,
            doc! { "state": { "$in": ["open", "tiebreak"] } },
            doc! { "created_at": 1 },
            None,
        )
        .await?;
    Ok(found.into_iter().map(|g| g.id).collect())
}

pub(super) async fn qa_apply(
    tx: &mut Tx<'_>,
    group_id: &str,
    from: QaState,
    decision: &QaDecision,
    now_ms: i64,
    cfg: &PlatformConfig,
) -> R<QaApplied> {
    let db = tx.db;
    // Guarded on the write: of two comparators deciding one group (two nodes), one moves it on
    // and the other finds it moved.
    let Some(head) = tx
        .one(
            &db.qa_groups,
            doc! { "_id": group_id, "state": from.as_str() },
        )
        .await?
    else {
        return Ok(QaApplied::default());
    };
    let mut applied = QaApplied {
        applied: true,
        ..QaApplied::default()
    };
    match decision {
        QaDecision::Tiebreak { .. } => {
            let members = group_tasks(tx, group_id).await?;
            let mut barred: Vec<String> = members.into_iter().filter_map(|t| t.worker_id).collect();
            barred.sort();
            barred.dedup();
            let task = tx
                .copy_task(&head.task_id, group_id, QaRole::Tiebreak, now_ms)
                .await?;
            move_group(
                tx,
                group_id,
                from,
                doc! { "state": "tiebreak", "tiebreak_task_id": &task.task_id },
            )
            .await?;
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
            move_group(tx, group_id, from, doc! { "state": "decided" }).await?;
            let seq = db.next_seq("qa_results").await?;
            let result = QaResultDoc {
                seq,
                group_id: group_id.to_string(),
                task_id: head.task_id.clone(),
                qa_task_id: head.qa_task_id.clone(),
                qa_type: head.qa_type.clone(),
                similarity: score.similarity,
                dimensions: serde_json::to_string(&score.dimensions).map_err(json_err)?,
                verdict: verdict.as_str().to_string(),
                worker_ids: outcomes.iter().map(|(w, _)| w.clone()).collect(),
                blamed_worker_id: blamed.clone(),
                tiebreak_task_id: head.tiebreak_task_id.clone(),
                tiebreak: tiebreak
                    .map(|t| serde_json::to_string(&t))
                    .transpose()
                    .map_err(json_err)?,
                decided_at: now_ms,
            };
            tx.insert(&db.qa_results, &result).await?;
            let mut judged: Vec<&str> = Vec::with_capacity(outcomes.len());
            for (worker_id, v) in outcomes {
                // A write error would abort the whole transaction: no duplicate is ever tried.
                if judged.contains(&worker_id.as_str()) {
                    continue;
                }
                judged.push(worker_id);
                let Some(worker) = tx.one(&db.workers, doc! { "_id": worker_id }).await? else {
                    continue;
                };
                let outcome = QaOutcomeDoc {
                    id: format!("{worker_id}/{seq}"),
                    worker_id: worker_id.clone(),
                    result_seq: seq,
                    tier: worker.tier,
                    qa_type: head.qa_type.clone(),
                    verdict: v.as_str().to_string(),
                };
                tx.insert(&db.qa_outcomes, &outcome).await?;
                let counter = match v {
                    crate::qa::similarity::Verdict::Pass => "qa_pass",
                    crate::qa::similarity::Verdict::Flag => "qa_flag",
                    crate::qa::similarity::Verdict::Fail => "qa_fail",
                };
                tx.update(
                    &db.workers,
                    doc! { "_id": worker_id },
                    doc! { "$inc": { counter: 1_i64 } },
                )
                .await?;
            }
            if let Some(worker_id) = blamed {
                if tx.penalise(worker_id, now_ms, cfg).await? {
                    applied.banned.push(worker_id.clone());
                }
                // The buyer's own result failed: the buyer gets the price back.
                let original = tx
                    .one(
                        &db.tasks,
                        doc! { "_id": &head.task_id, "funded_by": FUNDED_BY_BUYER, "status": "completed" },
                    )
                    .await?;
                let original_worker = original.and_then(|t| t.worker_id);
                if rules::penalty::credits_buyer(cfg, worker_id, original_worker.as_deref()) {
                    applied.auto_credit = tx.auto_credit(&head.task_id, now_ms).await?;
                }
            }
        }
    }
    Ok(applied)
}

/// Moves a group from `from` to a new state; a group moved meanwhile makes the command run again.
async fn move_group(tx: &mut Tx<'_>, group_id: &str, from: QaState, set: Document) -> R<()> {
    let db = tx.db;
    let moved = tx
        .update(
            &db.qa_groups,
            doc! { "_id": group_id, "state": from.as_str() },
            doc! { "$set": set },
        )
        .await?;
    if moved { Ok(()) } else { Err(Fail::Retry) }
}

pub(super) async fn inject_benchmark(tx: &mut Tx<'_>, b: &NewBenchmark) -> R<QaCopy> {
    // Re-injections of the same benchmark share a key: no worker sees one input twice.
    let key = format!(
        "bench:{}",
        &crate::domain::token_hash(&format!("{}\n{}", b.task_type, b.input))[..24]
    );
    let db = tx.db;
    let seq = db.next_seq("tasks").await?;
    let mut task = TaskDoc::pending(
        &b.task_id,
        seq,
        QA_BUYER,
        &b.task_type,
        &b.input,
        b.constraints,
        b.price_cents,
        FUNDED_BY_PLATFORM,
        b.now_ms,
    );
    task.qa_group = Some(b.task_id.clone());
    task.qa_key = Some(key.clone());
    task.qa_role = Some(QaRole::Benchmark.as_str().into());
    tx.insert(&db.tasks, &task).await?;
    tx.fund_qa_task(&b.task_id, b.price_cents, b.now_ms).await?;
    let group = QaGroupDoc {
        id: b.task_id.clone(),
        qa_type: QaType::Benchmark.as_str().into(),
        task_id: b.task_id.clone(),
        qa_task_id: b.task_id.clone(),
        tiebreak_task_id: None,
        expected_output: Some(b.expected_output.clone()),
        state: QaState::Open.as_str().into(),
        created_at: b.now_ms,
    };
    tx.insert(&db.qa_groups, &group).await?;
    Ok(QaCopy {
        task: task.live(),
        barred: Vec::new(),
    })
}

pub(super) async fn qa_results(
    tx: &mut Tx<'_>,
    worker_id: Option<&str>,
    verdict: Option<&str>,
    before_seq: Option<i64>,
    limit: u32,
) -> R<Vec<QaResult>> {
    let db = tx.db;
    let mut filter = doc! { "_id": { "$lt": before_seq.unwrap_or(i64::MAX) } };
    if let Some(v) = verdict {
        filter.insert("verdict", v);
    }
    if let Some(w) = worker_id {
        // A result names the workers it judged, as their outcomes do.
        filter.insert("worker_ids", w);
    }
    let found = tx
        .many(
            &db.qa_results,
            filter,
            doc! { "_id": -1 },
            Some(i64::from(limit)),
        )
        .await?;
    found
        .into_iter()
        .map(|r| r.result().map_err(Fail::Engine))
        .collect()
}

pub(super) async fn qa_stats(tx: &mut Tx<'_>) -> R<QaStats> {
    let db = tx.db;
    let mut stats = QaStats::default();
    let add = |counts: &mut VerdictCounts, verdict: &str, n: u64| match verdict {
        "pass" => counts.pass += n,
        "flag" => counts.flag += n,
        _ => counts.fail += n,
    };
    let groups = tx
        .aggregate(
            &db.qa_outcomes,
            vec![doc! { "$group": {
                "_id": { "tier": "$tier", "qa_type": "$qa_type", "verdict": "$verdict" },
                "n": { "$sum": 1_i64 },
            } }],
        )
        .await?;
    for g in groups {
        let key = g.get_document("_id").cloned().unwrap_or_default();
        let field = |k: &str| key.get_str(k).unwrap_or_default().to_string();
        let (tier, qa_type, verdict) = (field("tier"), field("qa_type"), field("verdict"));
        let n = int(&g, "n").max(0) as u64;
        add(&mut stats.overall, &verdict, n);
        add(stats.by_tier.entry(tier).or_default(), &verdict, n);
        add(stats.by_type.entry(qa_type).or_default(), &verdict, n);
    }
    let flagged = tx
        .aggregate(
            &db.qa_outcomes,
            vec![
                doc! { "$match": { "verdict": "flag" } },
                doc! { "$group": { "_id": "$worker_id", "flags": { "$sum": 1_i64 } } },
                doc! { "$sort": { "flags": -1, "_id": 1 } },
                doc! { "$limit": 100_i64 },
            ],
        )
        .await?;
    let ids: Vec<&str> = flagged
        .iter()
        .filter_map(|d| d.get_str("_id").ok())
        .collect();
    let workers = tx
        .many(
            &db.workers,
            doc! { "_id": { "$in": &ids } },
            doc! { "_id": 1 },
            None,
        )
        .await?;
    for d in &flagged {
        let Ok(id) = d.get_str("_id") else { continue };
        let Some(w) = workers.iter().find(|w| w.id == id) else {
            continue;
        };
        stats.flagged_workers.push(serde_json::json!({
            "worker_id": id, "flags": int(d, "flags"), "fails": w.qa_fail, "tier": w.tier,
        }));
    }
    let banned = tx
        .many(
            &db.workers,
            doc! { "banned_at": { "$type": "long" } },
            doc! { "banned_at": -1 },
            Some(1000),
        )
        .await?;
    stats.banned_workers = banned
        .into_iter()
        .map(|w| {
            serde_json::json!({
                "worker_id": w.id, "banned_at": crate::clock::rfc3339(w.banned_at.unwrap_or(0)),
                "fails": w.qa_fail, "balance_frozen": w.balance_frozen,
            })
        })
        .collect();
    stats.waiting = tx
        .count(
            &db.qa_groups,
            doc! { "state": { "$in": ["open", "tiebreak"] } },
        )
        .await?;
    stats.void = tx.count(&db.qa_groups, doc! { "state": "void" }).await?;
    stats.qa_fund_cents = audit::account_balance(tx, ledger::QA_FUND).await?;
    Ok(stats)
}

pub(super) async fn worker_notices(tx: &mut Tx<'_>, worker_id: &str) -> R<Vec<WorkerNotice>> {
    let db = tx.db;
    let found = tx
        .many(
            &db.notices,
            doc! { "worker_id": worker_id },
            doc! { "created_at": -1, "_id": -1 },
            Some(20),
        )
        .await?;
    Ok(found
        .into_iter()
        .map(|n| WorkerNotice {
            kind: n.kind,
            message: n.message,
            at: crate::clock::rfc3339(n.created_at),
        })
        .collect())
}

pub(super) async fn banned_workers(tx: &mut Tx<'_>) -> R<Vec<String>> {
    let db = tx.db;
    let found = tx
        .many(
            &db.workers,
            doc! { "banned_at": { "$type": "long" } },
            doc! { "_id": 1 },
            None,
        )
        .await?;
    Ok(found.into_iter().map(|w| w.id).collect())
}

impl Tx<'_> {
    /// Pays a QA task's escrow from the QA fund.
    pub async fn fund_qa_task(&mut self, task_id: &str, price_cents: i64, now_ms: i64) -> R<()> {
        self.apply(&rules::money::qa_pay(task_id, price_cents), now_ms)
            .await
    }

    /// Makes a buyer's task the original of a new QA group of `qa_type` with one copy.
    pub async fn open_group(&mut self, task_id: &str, qa_type: QaType, now_ms: i64) -> R<LiveTask> {
        let db = self.db;
        self.update(
            &db.tasks,
            doc! { "_id": task_id },
            doc! { "$set": { "qa_group": task_id, "qa_key": task_id, "qa_role": QaRole::Original.as_str() } },
        )
        .await?;
        // Whoever held the original has had this input.
        self.update_many(
            &db.claims,
            doc! { "task_id": task_id },
            doc! { "$set": { "qa_key": task_id } },
        )
        .await?;
        let copy = self
            .copy_task(task_id, task_id, QaRole::Copy, now_ms)
            .await?;
        let group = QaGroupDoc {
            id: task_id.to_string(),
            qa_type: qa_type.as_str().into(),
            task_id: task_id.to_string(),
            qa_task_id: copy.task_id.clone(),
            tiebreak_task_id: None,
            expected_output: None,
            state: QaState::Open.as_str().into(),
            created_at: now_ms,
        };
        self.insert(&db.qa_groups, &group).await?;
        Ok(copy)
    }

    /// A pending copy of `source` (same type, input, constraints and price), paid by the QA fund.
    pub async fn copy_task(
        &mut self,
        source: &str,
        group: &str,
        role: QaRole,
        now_ms: i64,
    ) -> R<LiveTask> {
        let db = self.db;
        let src = self
            .one(&db.tasks, doc! { "_id": source })
            .await?
            .ok_or_else(|| EngineError::internal(format!("qa copy of a missing task {source}")))?;
        let seq = db.next_seq("tasks").await?;
        let mut copy = TaskDoc::pending(
            &crate::domain::new_id("task"),
            seq,
            QA_BUYER,
            &src.task_type,
            &src.input,
            src.constraints(),
            src.price_cents,
            FUNDED_BY_PLATFORM,
            now_ms,
        );
        copy.qa_group = Some(group.to_string());
        copy.qa_key = src.qa_key.clone();
        copy.qa_role = Some(role.as_str().to_string());
        copy.input_preview = src.input_preview.clone();
        self.insert(&db.tasks, &copy).await?;
        self.fund_qa_task(&copy.id, copy.price_cents, now_ms)
            .await?;
        let mut live = copy.live();
        live.qa_key = Some(group.to_string());
        Ok(live)
    }

    pub async fn notice(
        &mut self,
        worker_id: &str,
        kind: &str,
        message: &str,
        now_ms: i64,
    ) -> R<()> {
        let db = self.db;
        let notice = NoticeDoc {
            id: mongodb::bson::oid::ObjectId::new(),
            worker_id: worker_id.to_string(),
            kind: kind.to_string(),
            message: message.to_string(),
            created_at: now_ms,
        };
        self.insert(&db.notices, &notice).await
    }

    /// Walks `worker_id` one step down the penalty ladder for a QA fail (its `qa_fail` count is
    /// already raised), as [`rules::penalty::plan`] says. Returns whether the worker is now banned.
    pub async fn penalise(
        &mut self,
        worker_id: &str,
        now_ms: i64,
        cfg: &PlatformConfig,
    ) -> R<bool> {
        let db = self.db;
        let fails = self
            .one(&db.workers, doc! { "_id": worker_id })
            .await?
            .map_or(0, |w| u32::try_from(w.qa_fail).unwrap_or(u32::MAX));
        let lots: Vec<FrozenLot> = self
            .many(
                &db.lots,
                doc! { "worker_id": worker_id, "status": { "$in": ["frozen", "held"] } },
                doc! { "_id": 1 },
                None,
            )
            .await?
            .into_iter()
            .map(|l| FrozenLot {
                lot_id: l.id,
                amount_cents: l.amount_cents,
            })
            .collect();
        let plan = rules::penalty::plan(worker_id, fails, &lots, &cfg.qa.penalty);
        for (lot_id, cut) in &plan.cuts {
            self.update(
                &db.lots,
                doc! { "_id": lot_id, "amount_cents": { "$gte": cut } },
                doc! { "$inc": { "amount_cents": -cut, "deducted_cents": cut } },
            )
            .await?;
        }
        if let Some(entry) = &plan.entry {
            self.apply(entry, now_ms).await?;
            self.unearn(worker_id, plan.deducted_cents, false).await?;
        }
        if plan.downgrade {
            self.update(
                &db.workers,
                doc! { "_id": worker_id },
                doc! { "$inc": { "tier_penalty": 1_i64 } },
            )
            .await?;
            self.replace_tier(worker_id, cfg).await?;
        }
        if plan.freeze_balance {
            // Held lots are never released; buyers can still be credited from them.
            self.update_many(
                &db.lots,
                doc! { "worker_id": worker_id, "status": "frozen" },
                doc! { "$set": { "status": "held" } },
            )
            .await?;
            self.update(
                &db.workers,
                doc! { "_id": worker_id },
                doc! { "$set": { "balance_frozen": true } },
            )
            .await?;
        }
        if plan.ban {
            let newly = self
                .update(
                    &db.workers,
                    doc! { "_id": worker_id, "banned_at": Bson::Null },
                    doc! { "$set": { "banned_at": now_ms } },
                )
                .await?;
            if newly {
                let details = rules::penalty::ban_details(worker_id, fails, &plan);
                self.audit(&Who::system("qa"), "worker.ban", &details, now_ms)
                    .await?;
            }
        }
        self.notice(worker_id, plan.notice.kind, &plan.notice.message, now_ms)
            .await?;
        Ok(plan.ban)
    }

    /// The buyer's original failed QA: the buyer gets its price back, from the worker's lot while
    /// it is frozen, else from the QA fund. Not counted as a credit request of the worker (the
    /// penalty ladder already answers for it). Returns (buyer, task, cents).
    pub async fn auto_credit(
        &mut self,
        task_id: &str,
        now_ms: i64,
    ) -> R<Option<(String, String, i64)>> {
        let db = self.db;
        let found = self
            .one(
                &db.tasks,
                doc! { "_id": task_id, "status": "completed", "funded_by": FUNDED_BY_BUYER },
            )
            .await?;
        let Some(task) = found else {
            return Ok(None);
        };
        let cents = match self
            .reverse_lot(task_id, &task.buyer_id, false, now_ms)
            .await?
        {
            Some((_, cents)) => cents,
            None => {
                self.apply(
                    &rules::money::qa_credit(task_id, &task.buyer_id, task.price_cents),
                    now_ms,
                )
                .await?;
                self.mark_credited(task_id, now_ms).await?;
                task.price_cents
            }
        };
        let ev = crate::store::webhook::events::task_credited(&task.buyer_id, task_id, cents, "qa");
        self.hook(ev, now_ms).await?;
        self.audit(
            &Who::system("qa"),
            "task.auto_credit",
            &serde_json::json!({ "task_id": task_id, "cents": cents }),
            now_ms,
        )
        .await?;
        Ok(Some((task.buyer_id, task_id.to_string(), cents)))
    }
}
