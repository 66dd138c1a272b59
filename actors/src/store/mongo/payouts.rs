//! Money out: email codes, payout bindings, the outbox, withdrawals and their settlement.
//!
//! Two withdrawals of one worker at once, on two nodes, must not both pass the daily limit: each
//! bumps a counter on the worker's document in its transaction, so the second conflicts, retries,
//! and then counts the first.

use super::*;
use crate::rules::payout::{self, CodeCheck, PayoutMethod, StoredCode};
use crate::rules::withdrawal;

pub(super) async fn email_code(tx: &mut Tx<'_>, c: &NewEmailCode) -> R<()> {
    let db = tx.db;
    if let Some(last) = tx
        .one(&db.email_codes, doc! { "_id": &c.worker_id })
        .await?
        && c.now_ms - last.created_at < payout::RESEND_MS
    {
        let wait_ms = payout::RESEND_MS - (c.now_ms - last.created_at);
        return Err(Fail::Engine(EngineError::TooMany {
            message: "a code was sent less than a minute ago; use it or wait".into(),
            retry_after_s: (wait_ms as u64).div_ceil(1000).max(1),
        }));
    }
    let code = EmailCodeDoc {
        worker_id: c.worker_id.clone(),
        email: c.email.clone(),
        code_hash: c.code_hash.clone(),
        created_at: c.now_ms,
        wrong: 0,
    };
    db.email_codes
        .replace_one(doc! { "_id": &c.worker_id }, &code)
        .upsert(true)
        .session(&mut *tx.s)
        .await?;
    if let Some((subject, body)) = &c.outbox {
        let seq = db.next_seq("outbox").await?;
        let message = OutboxDoc {
            seq,
            to: c.email.clone(),
            subject: subject.clone(),
            body: body.clone(),
            created_at: c.now_ms,
        };
        tx.insert(&db.outbox, &message).await?;
    }
    Ok(())
}

pub(super) async fn verify_email(
    tx: &mut Tx<'_>,
    worker_id: &str,
    email: &str,
    code_hash: &str,
    now_ms: i64,
) -> R<VerifyOutcome> {
    let db = tx.db;
    let Some(found) = tx
        .one(&db.email_codes, doc! { "_id": worker_id, "email": email })
        .await?
    else {
        return Ok(VerifyOutcome::NoCode);
    };
    let stored = StoredCode {
        email: found.email,
        code_hash: found.code_hash,
        created_at_ms: found.created_at,
        wrong: u32::try_from(found.wrong).unwrap_or(u32::MAX),
    };
    Ok(
        match payout::check_code(&stored, email, code_hash, now_ms) {
            CodeCheck::Good => {
                db.payouts
                    .update_one(
                        doc! { "_id": worker_id },
                        doc! { "$set": { "email": email, "email_verified_at": now_ms } },
                    )
                    .upsert(true)
                    .session(&mut *tx.s)
                    .await?;
                tx.delete(&db.email_codes, doc! { "_id": worker_id })
                    .await?;
                VerifyOutcome::Verified
            }
            CodeCheck::Wrong { left } => {
                tx.update(
                    &db.email_codes,
                    doc! { "_id": worker_id },
                    doc! { "$inc": { "wrong": 1_i64 } },
                )
                .await?;
                VerifyOutcome::Wrong { left }
            }
            CodeCheck::Void => VerifyOutcome::Void,
            CodeCheck::Expired => VerifyOutcome::Expired,
        },
    )
}

pub(super) async fn bind_payout(
    tx: &mut Tx<'_>,
    worker_id: &str,
    method: PayoutMethod,
    address: &str,
    now_ms: i64,
) -> R<PayoutBinding> {
    let db = tx.db;
    let found = tx
        .take(
            &db.payouts,
            doc! { "_id": worker_id },
            doc! { "$set": { "method": method.as_str(), "address": address, "bound_at": now_ms } },
        )
        .await?;
    found
        .map(PayoutDoc::binding)
        .ok_or(Fail::Engine(EngineError::EmailNotVerified))
}

pub(super) async fn payout_binding(tx: &mut Tx<'_>, worker_id: &str) -> R<Option<PayoutBinding>> {
    let db = tx.db;
    Ok(tx
        .one(&db.payouts, doc! { "_id": worker_id })
        .await?
        .map(PayoutDoc::binding))
}

pub(super) async fn outbox(
    tx: &mut Tx<'_>,
    before_seq: Option<i64>,
    limit: u32,
) -> R<Vec<OutboxMessage>> {
    let db = tx.db;
    let filter = match before_seq {
        Some(b) => doc! { "_id": { "$lt": b } },
        None => doc! {},
    };
    let found = tx
        .many(
            &db.outbox,
            filter,
            doc! { "_id": -1 },
            Some(i64::from(limit)),
        )
        .await?;
    Ok(found
        .into_iter()
        .map(|m| OutboxMessage {
            seq: m.seq,
            to: m.to,
            subject: m.subject,
            body: m.body,
            created_at_ms: m.created_at,
        })
        .collect())
}

pub(super) async fn withdraw(tx: &mut Tx<'_>, w: &NewWithdrawal) -> R<WithdrawalRecord> {
    if let Some(first) = tx.replay(w.idem.as_ref()).await? {
        return Ok(first);
    }
    let db = tx.db;
    // Claims the worker's document for this transaction (see the module's note).
    let Some(worker) = tx
        .take(
            &db.workers,
            doc! { "_id": &w.worker_id },
            doc! { "$inc": { "withdrawals": 1_i64 } },
        )
        .await?
    else {
        return Err(Fail::Engine(EngineError::NotFound("no such worker".into())));
    };
    let binding = tx
        .one(&db.payouts, doc! { "_id": &w.worker_id })
        .await?
        .map(PayoutDoc::binding);
    let bound = binding.and_then(|b| Some((b.method?, b.address?)));
    let today = tx
        .aggregate(
            &db.withdrawals,
            vec![
                doc! { "$match": {
                    "worker_id": &w.worker_id,
                    "created_at": { "$gte": crate::clock::day_start_ms(w.now_ms) },
                    "status": { "$in": ["pending", "completed"] },
                } },
                doc! { "$group": { "_id": Bson::Null, "sum": { "$sum": "$amount_cents" } } },
            ],
        )
        .await?;
    let facts = withdrawal::Facts {
        amount_cents: w.amount_cents,
        banned: worker.banned_at.is_some(),
        balance_frozen: worker.balance_frozen,
        payout_bound: bound.is_some(),
        available_cents: tx.available(&w.worker_id).await?.unwrap_or(0),
        today_cents: today.first().map_or(0, |d| accounts::int(d, "sum")),
    };
    withdrawal::check(&facts, &w.limits)?;
    let Some((method, address)) = bound else {
        return Err(Fail::Engine(EngineError::PayoutNotBound));
    };
    tx.apply(
        &rules::money::withdrawal(&w.withdrawal_id, &w.worker_id, w.amount_cents),
        w.now_ms,
    )
    .await?;
    let available_after = tx.available(&w.worker_id).await?.unwrap_or(0);
    let seq = db.next_seq("withdrawals").await?;
    let doc = WithdrawalDoc {
        id: w.withdrawal_id.clone(),
        seq,
        worker_id: w.worker_id.clone(),
        amount_cents: w.amount_cents,
        status: WithdrawalStatus::Pending.as_str().to_string(),
        method: method.as_str().to_string(),
        address,
        available_after_cents: available_after,
        external_ref: None,
        reason: None,
        created_at: w.now_ms,
        settled_at: None,
        settled_by: None,
    };
    tx.insert(&db.withdrawals, &doc).await?;
    let record = doc.record();
    tx.audit(
        &w.by,
        "withdrawal.request",
        &withdrawal_requested(&record),
        w.now_ms,
    )
    .await?;
    tx.remember(w.idem.as_ref(), &record, w.now_ms).await?;
    Ok(record)
}

pub(super) async fn withdrawals(tx: &mut Tx<'_>, f: &WithdrawalFilter) -> R<Vec<WithdrawalRecord>> {
    let db = tx.db;
    let mut filter = doc! {};
    if let Some(w) = &f.worker_id {
        filter.insert("worker_id", w);
    }
    let status = f.status.map(|s| s.as_str());
    let found = tx
        .newest(&db.withdrawals, filter, status, f.before_seq, f.limit)
        .await?;
    Ok(found.into_iter().map(WithdrawalDoc::record).collect())
}

pub(super) struct SettleAsk<'a> {
    pub withdrawal_id: &'a str,
    pub settle: &'a Settle,
    pub by: &'a Who,
    pub now_ms: i64,
}

pub(super) async fn settle_withdrawal(
    tx: &mut Tx<'_>,
    a: SettleAsk<'_>,
    idem: Option<&IdemKey>,
) -> R<WithdrawalRecord> {
    if let Some(first) = tx.replay(idem).await? {
        return Ok(first);
    }
    let db = tx.db;
    let Some(w) = tx
        .one(&db.withdrawals, doc! { "_id": a.withdrawal_id })
        .await?
    else {
        return Err(Fail::Engine(EngineError::NotFound(format!(
            "no withdrawal {}",
            a.withdrawal_id
        ))));
    };
    if w.status != WithdrawalStatus::Pending.as_str() {
        return Err(Fail::Engine(EngineError::Conflict(format!(
            "this withdrawal is already {}",
            w.status
        ))));
    }
    let (status, external_ref, reason, entry) = match a.settle {
        Settle::Complete { external_ref } => (
            WithdrawalStatus::Completed,
            Some(external_ref.as_str()),
            None,
            rules::money::withdrawal_paid(&w.id, w.amount_cents),
        ),
        Settle::Reject { reason } => (
            WithdrawalStatus::Rejected,
            None,
            Some(reason.as_str()),
            rules::money::withdrawal_returned(&w.id, &w.worker_id, w.amount_cents),
        ),
    };
    let Some(after) = tx
        .take(
            &db.withdrawals,
            doc! { "_id": &w.id, "status": "pending" },
            doc! { "$set": {
                "status": status.as_str(), "external_ref": external_ref, "reason": reason,
                "settled_at": a.now_ms, "settled_by": &a.by.id,
            } },
        )
        .await?
    else {
        return Err(Fail::Retry);
    };
    tx.apply(&entry, a.now_ms).await?;
    if status == WithdrawalStatus::Completed {
        tx.update(
            &db.balances,
            doc! { "_id": &w.worker_id },
            doc! { "$inc": { "total_withdrawn_cents": w.amount_cents, "version": 1_i64 } },
        )
        .await?;
        tx.touch(&w.worker_id);
    }
    tx.audit(
        a.by,
        &format!("withdrawal.{}", status.as_str()),
        &serde_json::json!({ "withdrawal_id": w.id, "worker_id": w.worker_id,
            "amount_cents": w.amount_cents, "external_ref": external_ref, "reason": reason }),
        a.now_ms,
    )
    .await?;
    let record = after.record();
    tx.remember(idem, &record, a.now_ms).await?;
    Ok(record)
}
