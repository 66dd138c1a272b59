//! Journal entries and the balances they move; refunds and credit reversals (the entries are
//! the rules' [`crate::rules::money`]; this writes them).

use super::*;

impl Tx<'_> {
    /// Writes a journal entry and applies its postings, refusing to take a guarded account below
    /// zero. Runs inside the command's savepoint, so a refusal undoes everything the command did.
    pub(super) fn apply(&mut self, entry: &Entry, now_ms: i64) -> Result<i64, EngineError> {
        entry
            .check()
            .map_err(|e| EngineError::internal(format!("ledger: {e}")))?;
        let c = self.conn;
        c.prepare_cached("INSERT INTO entries (kind, ref_id, created_at) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![entry.kind.as_str(), entry.ref_id, now_ms]))
            .map_err(db_err)?;
        let entry_id = c.last_insert_rowid();
        for p in &entry.postings {
            c.prepare_cached("INSERT INTO postings (entry_id, account, amount_cents, task_id) VALUES (?1, ?2, ?3, ?4)")
                .and_then(|mut s| s.execute(params![entry_id, p.account, p.amount_cents, entry.task_id]))
                .map_err(db_err)?;
            let after: Option<i64> = match ledger::owner(&p.account) {
                Some((user, which)) => {
                    let sql = match which {
                        UserBalance::Available => {
                            "UPDATE balances SET available_cents = available_cents + ?1, version = version + 1
                             WHERE user_id = ?2 RETURNING available_cents"
                        }
                        UserBalance::Frozen => {
                            "UPDATE balances SET frozen_cents = frozen_cents + ?1, version = version + 1
                             WHERE user_id = ?2 RETURNING frozen_cents"
                        }
                    };
                    let user = user.to_string();
                    let after = c
                        .prepare_cached(sql)
                        .and_then(|mut s| s.query_row(params![p.amount_cents, user], |r| r.get(0)).optional());
                    if !self.touched.contains(&user) {
                        self.touched.push(user);
                    }
                    match after {
                        Ok(v) => v,
                        // The CHECK constraint is the last line of defence for user balances.
                        Err(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                            return Err(EngineError::internal(format!("ledger: {} would go negative", p.account)));
                        }
                        Err(e) => return Err(db_err(e)),
                    }
                }
                None => c
                    .prepare_cached("UPDATE accounts SET balance_cents = balance_cents + ?1 WHERE id = ?2 RETURNING balance_cents")
                    .and_then(|mut s| s.query_row(params![p.amount_cents, p.account], |r| r.get(0)).optional())
                    .map_err(db_err)?,
            };
            match after {
                None => {
                    return Err(EngineError::internal(format!(
                        "ledger: no account {}",
                        p.account
                    )));
                }
                Some(v) if v < 0 && !ledger::may_go_negative(&p.account) => {
                    return Err(EngineError::internal(format!(
                        "ledger: {} would go negative",
                        p.account
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(entry_id)
    }

    pub(super) fn available(&self, user_id: &str) -> Result<Option<i64>, EngineError> {
        self.conn
            .prepare_cached("SELECT available_cents FROM balances WHERE user_id = ?1")
            .and_then(|mut s| s.query_row(params![user_id], |r| r.get(0)).optional())
            .map_err(db_err)
    }

    /// Returns a live task's escrow to whoever paid it (the buyer, or the QA fund for a QA copy)
    /// and marks it failed (its content due for the purge after the grace: a failed task has no
    /// refund window); its QA group, if any, can no longer be compared. Returns the buyer.
    pub(super) fn refund(
        &mut self,
        task_id: &str,
        now_ms: i64,
    ) -> Result<Option<String>, EngineError> {
        let found: Option<(String, i64, String, Option<String>)> = self
            .conn
            .prepare_cached(
                "UPDATE tasks SET status = 'failed', worker_id = NULL, deadline = NULL, completed_at = ?2,
                        purge_after = ?3
                 WHERE id = ?1 AND status IN ('pending', 'assigned')
                 RETURNING buyer_id, price_cents, funded_by, qa_group",
            )
            .and_then(|mut s| {
                let purge_after = rules::retention::purge_after_ms(now_ms, None);
                s.query_row(params![task_id, now_ms, purge_after], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                    .optional()
            })
            .map_err(db_err)?;
        let Some((buyer_id, price_cents, funded_by, qa_group)) = found else {
            return Ok(None);
        };
        let entry = rules::money::refund(
            task_id,
            &buyer_id,
            funded_by == FUNDED_BY_PLATFORM,
            price_cents,
        );
        self.apply(&entry, now_ms)?;
        if funded_by != FUNDED_BY_PLATFORM {
            self.hook(
                crate::store::webhook::events::task_failed(&buyer_id, task_id, price_cents),
                now_ms,
            )?;
        }
        if let Some(group) = qa_group {
            self.conn
                .prepare_cached("UPDATE qa_groups SET state = 'void' WHERE id = ?1 AND state IN ('open', 'tiebreak')")
                .and_then(|mut s| s.execute(params![group]))
                .map_err(db_err)?;
        }
        Ok(Some(buyer_id))
    }

    /// Gives a buyer back a task's price out of the worker's lot for it: the lot is reversed (its
    /// commission comes back from revenue, anything a penalty took from the QA fund). With
    /// `count_credit`, the worker's record counts a credit request. None when the lot is gone.
    pub(super) fn reverse_lot(
        &mut self,
        task_id: &str,
        buyer_id: &str,
        count_credit: bool,
        now_ms: i64,
    ) -> Result<Option<(String, i64)>, EngineError> {
        let lot: Option<(i64, String, i64, i64, i64)> = self
            .conn
            .prepare_cached(
                "SELECT id, worker_id, amount_cents, commission_cents, deducted_cents FROM lots
                 WHERE task_id = ?1 AND status IN ('frozen', 'held')",
            )
            .and_then(|mut s| {
                s.query_row(params![task_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()
            })
            .map_err(db_err)?;
        let Some((lot_id, worker_id, amount, commission, deducted)) = lot else {
            return Ok(None);
        };
        let lot = rules::money::Lot {
            worker_id: &worker_id,
            amount_cents: amount,
            commission_cents: commission,
            deducted_cents: deducted,
        };
        let price = lot.price_cents();
        self.apply(&rules::money::reversal(task_id, buyer_id, &lot), now_ms)?;
        self.conn
            .prepare_cached("UPDATE lots SET status = 'reversed' WHERE id = ?1")
            .and_then(|mut s| s.execute(params![lot_id]))
            .map_err(db_err)?;
        self.mark_credited(task_id, now_ms)?;
        self.unearn(&worker_id, amount, count_credit)?;
        Ok(Some((worker_id, price)))
    }

    pub(super) fn mark_credited(&self, task_id: &str, now_ms: i64) -> Result<(), EngineError> {
        self.conn
            .prepare_cached("UPDATE tasks SET status = 'credited', credited_at = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![task_id, now_ms]))
            .map_err(db_err)?;
        Ok(())
    }

    /// Takes `cents` off a worker's earned totals (a reversed lot or a QA deduction); with
    /// `count_credit`, its record counts a credit request.
    pub(super) fn unearn(
        &self,
        worker_id: &str,
        cents: i64,
        count_credit: bool,
    ) -> Result<(), EngineError> {
        self.conn
            .prepare_cached(
                "UPDATE balances SET total_earned_cents = total_earned_cents - ?2, version = version + 1 WHERE user_id = ?1",
            )
            .and_then(|mut s| s.execute(params![worker_id, cents]))
            .map_err(db_err)?;
        self.conn
            .prepare_cached(
                "UPDATE workers SET credit_requests = credit_requests + ?3, total_earned_cents = total_earned_cents - ?2 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![worker_id, cents, i64::from(count_credit)]))
            .map_err(db_err)?;
        Ok(())
    }
}
