//! Journal entries and the balances they move; refunds and credit reversals (the entries are the
//! rules' [`crate::rules::money`]; this writes them).
//!
//! A user's balances are one document, and a debit is a condition on the write
//! (`available_cents >= amount`), never a read then a write. A platform account (escrow, revenue,
//! the QA fund…) is touched by nearly every command, so one document would make every pair of
//! concurrent commands conflict: its balance is spread over [`ACCOUNT_SHARDS`] documents, chosen
//! by the entry's reference (the task). A task's hold and release land on the same shard, so each
//! shard of a guarded account is guarded on the write as well; the account's balance is the sum
//! of its shards.

use super::*;

/// Documents each platform account is spread over.
pub(super) const ACCOUNT_SHARDS: u64 = 16;

pub(super) fn shard_of(account: &str, reference: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(reference.as_bytes());
    let n = u64::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ]);
    format!("{account}#{}", n % ACCOUNT_SHARDS)
}

fn negative(account: &str) -> Fail {
    Fail::Engine(EngineError::internal(format!(
        "ledger: {account} would go negative"
    )))
}

impl Tx<'_> {
    /// Writes a journal entry and applies its postings, refusing to take a guarded account below
    /// zero. Runs inside the command's transaction, so a refusal undoes everything it did.
    pub async fn apply(&mut self, entry: &Entry, now_ms: i64) -> R<()> {
        entry
            .check()
            .map_err(|e| EngineError::internal(format!("ledger: {e}")))?;
        let db = self.db;
        let doc = EntryDoc {
            id: mongodb::bson::oid::ObjectId::new(),
            kind: entry.kind.as_str().to_string(),
            ref_id: entry.ref_id.clone(),
            task_id: entry.task_id.clone(),
            created_at: now_ms,
            postings: entry
                .postings
                .iter()
                .map(|p| Posting {
                    account: p.account.clone(),
                    amount_cents: p.amount_cents,
                })
                .collect(),
        };
        self.insert(&db.transactions, &doc).await?;
        for p in &entry.postings {
            let amount = p.amount_cents;
            match ledger::owner(&p.account) {
                Some((user, which)) => {
                    let field = match which {
                        UserBalance::Available => "available_cents",
                        UserBalance::Frozen => "frozen_cents",
                    };
                    let mut filter = doc! { "_id": user };
                    if amount < 0 {
                        filter.insert(field, doc! { "$gte": -amount });
                    }
                    let update = doc! { "$inc": { field: amount, "version": 1_i64 } };
                    if !self.update(&db.balances, filter, update).await? {
                        let exists = self.exists(&db.balances, doc! { "_id": user }).await?;
                        return Err(if exists {
                            negative(&p.account)
                        } else {
                            Fail::Engine(EngineError::internal(format!(
                                "ledger: no account {}",
                                p.account
                            )))
                        });
                    }
                    self.touch(user);
                }
                None => {
                    if !ledger::PLATFORM_ACCOUNTS.contains(&p.account.as_str()) {
                        return Err(Fail::Engine(EngineError::internal(format!(
                            "ledger: no account {}",
                            p.account
                        ))));
                    }
                    let id = shard_of(&p.account, &entry.ref_id);
                    let guarded = amount < 0 && !ledger::may_go_negative(&p.account);
                    let update = doc! {
                        "$inc": { "balance_cents": amount },
                        "$setOnInsert": { "account": &p.account },
                    };
                    if guarded {
                        let filter = doc! { "_id": &id, "balance_cents": { "$gte": -amount } };
                        if !self.update(&db.accounts, filter, update).await? {
                            return Err(negative(&p.account));
                        }
                    } else {
                        db.accounts
                            .update_one(doc! { "_id": &id }, update)
                            .upsert(true)
                            .session(&mut *self.s)
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }

    pub async fn available(&mut self, user_id: &str) -> R<Option<i64>> {
        let db = self.db;
        Ok(self
            .one(&db.balances, doc! { "_id": user_id })
            .await?
            .map(|b| b.available_cents))
    }

    /// Returns a live task's escrow to whoever paid it (the buyer, or the QA fund for a QA copy)
    /// and marks it failed (its content due for the purge after the grace: a failed task has no
    /// refund window); its QA group, if any, can no longer be compared. Returns the buyer.
    pub async fn refund(&mut self, task_id: &str, now_ms: i64) -> R<Option<String>> {
        let db = self.db;
        let found = self
            .take(
                &db.tasks,
                doc! { "_id": task_id, "status": { "$in": ["pending", "assigned"] } },
                doc! { "$set": {
                    "status": "failed", "worker_id": Bson::Null, "deadline": Bson::Null,
                    "completed_at": now_ms,
                    "purge_after": rules::retention::purge_after_ms(now_ms, None),
                } },
            )
            .await?;
        let Some(task) = found else {
            return Ok(None);
        };
        let entry = rules::money::refund(
            task_id,
            &task.buyer_id,
            task.platform_paid(),
            task.price_cents,
        );
        self.apply(&entry, now_ms).await?;
        if !task.platform_paid() {
            let ev = crate::store::webhook::events::task_failed(
                &task.buyer_id,
                task_id,
                task.price_cents,
            );
            self.hook(ev, now_ms).await?;
        }
        if let Some(group) = &task.qa_group {
            self.update(
                &db.qa_groups,
                doc! { "_id": group, "state": { "$in": ["open", "tiebreak"] } },
                doc! { "$set": { "state": "void" } },
            )
            .await?;
        }
        Ok(Some(task.buyer_id))
    }

    /// Gives a buyer back a task's price out of the worker's lot for it: the lot is reversed (its
    /// commission comes back from revenue, anything a penalty took from the QA fund). With
    /// `count_credit`, the worker's record counts a credit request. None when the lot is gone.
    pub async fn reverse_lot(
        &mut self,
        task_id: &str,
        buyer_id: &str,
        count_credit: bool,
        now_ms: i64,
    ) -> R<Option<(String, i64)>> {
        let db = self.db;
        // The guard is on the write: a lot reversed or released meanwhile does not match.
        let found = self
            .take(
                &db.lots,
                doc! { "task_id": task_id, "status": { "$in": ["frozen", "held"] } },
                doc! { "$set": { "status": "reversed" } },
            )
            .await?;
        let Some(lot) = found else {
            return Ok(None);
        };
        let parts = rules::money::Lot {
            worker_id: &lot.worker_id,
            amount_cents: lot.amount_cents,
            commission_cents: lot.commission_cents,
            deducted_cents: lot.deducted_cents,
        };
        let price = parts.price_cents();
        self.apply(&rules::money::reversal(task_id, buyer_id, &parts), now_ms)
            .await?;
        self.mark_credited(task_id, now_ms).await?;
        self.unearn(&lot.worker_id, lot.amount_cents, count_credit)
            .await?;
        Ok(Some((lot.worker_id, price)))
    }

    pub async fn mark_credited(&mut self, task_id: &str, now_ms: i64) -> R<()> {
        let db = self.db;
        self.update(
            &db.tasks,
            doc! { "_id": task_id },
            doc! { "$set": { "status": "credited", "credited_at": now_ms } },
        )
        .await?;
        Ok(())
    }

    /// Takes `cents` off a worker's earned totals (a reversed lot or a QA deduction); with
    /// `count_credit`, its record counts a credit request.
    pub async fn unearn(&mut self, worker_id: &str, cents: i64, count_credit: bool) -> R<()> {
        let db = self.db;
        self.update(
            &db.balances,
            doc! { "_id": worker_id },
            doc! { "$inc": { "total_earned_cents": -cents, "version": 1_i64 } },
        )
        .await?;
        self.touch(worker_id);
        self.update(
            &db.workers,
            doc! { "_id": worker_id },
            doc! { "$inc": {
                "credit_requests": i64::from(count_credit),
                "total_earned_cents": -cents,
            } },
        )
        .await?;
        Ok(())
    }
}
