//! Money out: email codes, payout bindings, the outbox, withdrawals and their settlement.

use super::*;
use crate::rules::payout::{self, CodeCheck, PayoutMethod, StoredCode};
use crate::rules::withdrawal;

pub(super) fn email_code(tx: &mut Tx<'_>, c: NewEmailCode) -> Result<(), EngineError> {
    let last: Option<i64> = tx
        .conn
        .prepare_cached("SELECT created_at FROM email_codes WHERE worker_id = ?1")
        .and_then(|mut s| s.query_row(params![c.worker_id], |r| r.get(0)).optional())
        .map_err(db_err)?;
    if let Some(at) = last.filter(|at| c.now_ms - at < payout::RESEND_MS) {
        let wait_ms = payout::RESEND_MS - (c.now_ms - at);
        return Err(EngineError::TooMany {
            message: "a code was sent less than a minute ago; use it or wait".into(),
            retry_after_s: (wait_ms as u64).div_ceil(1000).max(1),
        });
    }
    tx.conn
        .prepare_cached(
            "INSERT INTO email_codes (worker_id, email, code_hash, created_at, wrong) VALUES (?1, ?2, ?3, ?4, 0)
             ON CONFLICT (worker_id) DO UPDATE SET email = ?2, code_hash = ?3, created_at = ?4, wrong = 0",
        )
        .and_then(|mut s| s.execute(params![c.worker_id, c.email, c.code_hash, c.now_ms]))
        .map_err(db_err)?;
    if let Some((subject, body)) = &c.outbox {
        tx.conn
            .prepare_cached(
                "INSERT INTO outbox (to_addr, subject, body, created_at) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![c.email, subject, body, c.now_ms]))
            .map_err(db_err)?;
    }
    Ok(())
}

pub(super) fn verify_email(
    tx: &mut Tx<'_>,
    worker_id: String,
    email: String,
    code_hash: String,
    now_ms: i64,
) -> Result<VerifyOutcome, EngineError> {
    let stored: Option<StoredCode> = tx
        .conn
        .prepare_cached(
            "SELECT email, code_hash, created_at, wrong FROM email_codes WHERE worker_id = ?1",
        )
        .and_then(|mut s| {
            s.query_row(params![worker_id], |r| {
                Ok(StoredCode {
                    email: r.get(0)?,
                    code_hash: r.get(1)?,
                    created_at_ms: r.get(2)?,
                    wrong: r.get(3)?,
                })
            })
            .optional()
        })
        .map_err(db_err)?;
    let Some(stored) = stored.filter(|s| s.email == email) else {
        return Ok(VerifyOutcome::NoCode);
    };
    Ok(
        match payout::check_code(&stored, &email, &code_hash, now_ms) {
            CodeCheck::Good => {
                tx.conn
                .prepare_cached(
                    "INSERT INTO payouts (worker_id, email, email_verified_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (worker_id) DO UPDATE SET email = ?2, email_verified_at = ?3",
                )
                .and_then(|mut s| s.execute(params![worker_id, email, now_ms]))
                .map_err(db_err)?;
                tx.conn
                    .prepare_cached("DELETE FROM email_codes WHERE worker_id = ?1")
                    .and_then(|mut s| s.execute(params![worker_id]))
                    .map_err(db_err)?;
                VerifyOutcome::Verified
            }
            CodeCheck::Wrong { left } => {
                tx.conn
                    .prepare_cached("UPDATE email_codes SET wrong = wrong + 1 WHERE worker_id = ?1")
                    .and_then(|mut s| s.execute(params![worker_id]))
                    .map_err(db_err)?;
                VerifyOutcome::Wrong { left }
            }
            CodeCheck::Void => VerifyOutcome::Void,
            CodeCheck::Expired => VerifyOutcome::Expired,
        },
    )
}

fn read_binding(c: &Connection, worker_id: &str) -> Result<Option<PayoutBinding>, EngineError> {
    c.prepare_cached("SELECT email, email_verified_at, method, address, bound_at FROM payouts WHERE worker_id = ?1")
        .and_then(|mut s| {
            s.query_row(params![worker_id], |r| {
                let method: Option<String> = r.get(2)?;
                Ok(PayoutBinding {
                    worker_id: worker_id.to_string(),
                    email: r.get(0)?,
                    email_verified_at_ms: r.get(1)?,
                    method: method.as_deref().and_then(PayoutMethod::parse),
                    address: r.get(3)?,
                    bound_at_ms: r.get(4)?,
                })
            })
            .optional()
        })
        .map_err(db_err)
}

pub(super) fn payout_binding(
    c: &Connection,
    worker_id: String,
) -> Result<Option<PayoutBinding>, EngineError> {
    read_binding(c, &worker_id)
}

pub(super) fn bind_payout(
    tx: &mut Tx<'_>,
    worker_id: String,
    method: PayoutMethod,
    address: String,
    now_ms: i64,
) -> Result<PayoutBinding, EngineError> {
    let n = tx
        .conn
        .prepare_cached(
            "UPDATE payouts SET method = ?2, address = ?3, bound_at = ?4 WHERE worker_id = ?1",
        )
        .and_then(|mut s| s.execute(params![worker_id, method.as_str(), address, now_ms]))
        .map_err(db_err)?;
    if n == 0 {
        return Err(EngineError::EmailNotVerified);
    }
    read_binding(tx.conn, &worker_id)?.ok_or_else(|| EngineError::internal("binding not found"))
}

pub(super) fn outbox(
    c: &Connection,
    before_seq: Option<i64>,
    limit: u32,
) -> Result<Vec<OutboxMessage>, EngineError> {
    let mut s = c
        .prepare_cached(
            "SELECT seq, to_addr, subject, body, created_at FROM outbox WHERE (?1 IS NULL OR seq < ?1) ORDER BY seq DESC LIMIT ?2",
        )
        .map_err(db_err)?;
    let rows = s
        .query_map(params![before_seq, limit], |r| {
            Ok(OutboxMessage {
                seq: r.get(0)?,
                to: r.get(1)?,
                subject: r.get(2)?,
                body: r.get(3)?,
                created_at_ms: r.get(4)?,
            })
        })
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

const WITHDRAWAL_COLS: &str = "seq, id, worker_id, amount_cents, status, method, address, available_after_cents, \
    external_ref, reason, created_at, settled_at, settled_by";

fn withdrawal_from_row(r: &Row<'_>) -> rusqlite::Result<WithdrawalRecord> {
    let status: String = r.get(4)?;
    Ok(WithdrawalRecord {
        seq: r.get(0)?,
        withdrawal_id: r.get(1)?,
        worker_id: r.get(2)?,
        amount_cents: r.get(3)?,
        status: WithdrawalStatus::parse(&status).unwrap_or(WithdrawalStatus::Pending),
        method: r.get(5)?,
        address: r.get(6)?,
        available_after_cents: r.get(7)?,
        external_ref: r.get(8)?,
        reason: r.get(9)?,
        created_at_ms: r.get(10)?,
        settled_at_ms: r.get(11)?,
        settled_by: r.get(12)?,
    })
}

fn read_withdrawal(c: &Connection, id: &str) -> Result<Option<WithdrawalRecord>, EngineError> {
    let sql = format!("SELECT {WITHDRAWAL_COLS} FROM withdrawals WHERE id = ?1");
    c.prepare_cached(&sql)
        .and_then(|mut s| s.query_row(params![id], withdrawal_from_row).optional())
        .map_err(db_err)
}

pub(super) fn withdraw(tx: &mut Tx<'_>, w: NewWithdrawal) -> Result<WithdrawalRecord, EngineError> {
    let idem = w.idem.clone();
    tx.idempotent(idem.as_ref(), w.now_ms, |r| r, |tx| {
        let worker: Option<(Option<i64>, bool)> = tx
            .conn
            .prepare_cached("SELECT banned_at, balance_frozen FROM workers WHERE id = ?1")
            .and_then(|mut s| s.query_row(params![w.worker_id], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0))).optional())
            .map_err(db_err)?;
        let Some((banned_at, balance_frozen)) = worker else {
            return Err(EngineError::NotFound("no such worker".into()));
        };
        let binding = read_binding(tx.conn, &w.worker_id)?;
        let bound = binding.as_ref().and_then(|b| Some((b.method?, b.address.clone()?)));
        let today_cents: i64 = tx
            .conn
            .prepare_cached(
                "SELECT coalesce(sum(amount_cents), 0) FROM withdrawals
                 WHERE worker_id = ?1 AND created_at >= ?2 AND status IN ('pending', 'completed')",
            )
            .and_then(|mut s| s.query_row(params![w.worker_id, crate::clock::day_start_ms(w.now_ms)], |r| r.get(0)))
            .map_err(db_err)?;
        let facts = withdrawal::Facts {
            amount_cents: w.amount_cents,
            banned: banned_at.is_some(),
            balance_frozen,
            payout_bound: bound.is_some(),
            available_cents: tx.available(&w.worker_id)?.unwrap_or(0),
            today_cents,
        };
        withdrawal::check(&facts, &w.limits)?;
        let Some((method, address)) = bound else {
            return Err(EngineError::PayoutNotBound);
        };
        tx.apply(&rules::money::withdrawal(&w.withdrawal_id, &w.worker_id, w.amount_cents), w.now_ms)?;
        let available_after = tx.available(&w.worker_id)?.unwrap_or(0);
        tx.conn
            .prepare_cached(
                "INSERT INTO withdrawals (id, worker_id, amount_cents, status, method, address, available_after_cents, created_at)
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![w.withdrawal_id, w.worker_id, w.amount_cents, method.as_str(), address, available_after, w.now_ms])
            })
            .map_err(db_err)?;
        let record = read_withdrawal(tx.conn, &w.withdrawal_id)?
            .ok_or_else(|| EngineError::internal("new withdrawal not found"))?;
        tx.audit(&w.by, "withdrawal.request", &withdrawal_requested(&record), w.now_ms)?;
        Ok(record)
    })
}

pub(super) fn withdrawals(
    c: &Connection,
    f: WithdrawalFilter,
) -> Result<Vec<WithdrawalRecord>, EngineError> {
    let sql = format!(
        "SELECT {WITHDRAWAL_COLS} FROM withdrawals
         WHERE (?1 IS NULL OR worker_id = ?1) AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR seq < ?3)
         ORDER BY seq DESC LIMIT ?4"
    );
    let mut s = c.prepare_cached(&sql).map_err(db_err)?;
    let rows = s
        .query_map(
            params![
                f.worker_id,
                f.status.map(|s| s.as_str()),
                f.before_seq,
                f.limit
            ],
            withdrawal_from_row,
        )
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

pub(super) fn settle_withdrawal(
    tx: &mut Tx<'_>,
    withdrawal_id: String,
    settle: Settle,
    by: Who,
    now_ms: i64,
    idem: Option<IdemKey>,
) -> Result<WithdrawalRecord, EngineError> {
    tx.idempotent(idem.as_ref(), now_ms, |r| r, |tx| {
        let Some(w) = read_withdrawal(tx.conn, &withdrawal_id)? else {
            return Err(EngineError::NotFound(format!("no withdrawal {withdrawal_id}")));
        };
        if w.status != WithdrawalStatus::Pending {
            return Err(EngineError::Conflict(format!("this withdrawal is already {}", w.status.as_str())));
        }
        let (status, external_ref, reason, entry) = match &settle {
            Settle::Complete { external_ref } => (
                WithdrawalStatus::Completed,
                Some(external_ref.as_str()),
                None,
                rules::money::withdrawal_paid(&w.withdrawal_id, w.amount_cents),
            ),
            Settle::Reject { reason } => (
                WithdrawalStatus::Rejected,
                None,
                Some(reason.as_str()),
                rules::money::withdrawal_returned(&w.withdrawal_id, &w.worker_id, w.amount_cents),
            ),
        };
        let n = tx
            .conn
            .prepare_cached(
                "UPDATE withdrawals SET status = ?2, external_ref = ?3, reason = ?4, settled_at = ?5, settled_by = ?6
                 WHERE id = ?1 AND status = 'pending'",
            )
            .and_then(|mut s| s.execute(params![w.withdrawal_id, status.as_str(), external_ref, reason, now_ms, by.id]))
            .map_err(db_err)?;
        if n == 0 {
            return Err(EngineError::Conflict("this withdrawal is already settled".into()));
        }
        tx.apply(&entry, now_ms)?;
        if status == WithdrawalStatus::Completed {
            tx.conn
                .prepare_cached("UPDATE balances SET total_withdrawn_cents = total_withdrawn_cents + ?2, version = version + 1 WHERE user_id = ?1")
                .and_then(|mut s| s.execute(params![w.worker_id, w.amount_cents]))
                .map_err(db_err)?;
            if !tx.touched.contains(&w.worker_id) {
                tx.touched.push(w.worker_id.clone());
            }
        }
        tx.audit(
            &by,
            &format!("withdrawal.{}", status.as_str()),
            &serde_json::json!({ "withdrawal_id": w.withdrawal_id, "worker_id": w.worker_id,
                "amount_cents": w.amount_cents, "external_ref": external_ref, "reason": reason }),
            now_ms,
        )?;
        read_withdrawal(tx.conn, &w.withdrawal_id)?.ok_or_else(|| EngineError::internal("withdrawal not found"))
    })
}
