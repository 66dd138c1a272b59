//! Deposits and the provider events that credit them.

use super::*;
use crate::rules::deposit::{self, DepositStatus, Step};

const DEPOSIT_COLS: &str = "seq, id, buyer_id, amount_cents, bonus_cents, status, session_id, \
    checkout_url, paid_cents, created_at, settled_at";

fn deposit_from_row(r: &Row<'_>) -> rusqlite::Result<DepositRecord> {
    let status: String = r.get(5)?;
    Ok(DepositRecord {
        seq: r.get(0)?,
        deposit_id: r.get(1)?,
        buyer_id: r.get(2)?,
        amount_cents: r.get(3)?,
        bonus_cents: r.get(4)?,
        status: DepositStatus::parse(&status).unwrap_or(DepositStatus::Pending),
        session_id: r.get(6)?,
        checkout_url: r.get(7)?,
        paid_cents: r.get(8)?,
        created_at_ms: r.get(9)?,
        settled_at_ms: r.get(10)?,
    })
}

fn read_deposit(
    c: &Connection,
    session_id: &str,
    deposit_id: Option<&str>,
) -> Result<Option<DepositRecord>, EngineError> {
    let sql = format!(
        "SELECT {DEPOSIT_COLS} FROM deposits WHERE session_id = ?1 OR id = ?2 ORDER BY session_id = ?1 DESC LIMIT 1"
    );
    c.prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_row(params![session_id, deposit_id], deposit_from_row)
                .optional()
        })
        .map_err(db_err)
}

pub(super) fn create_deposit(tx: &mut Tx<'_>, d: NewDeposit) -> Result<DepositRecord, EngineError> {
    let idem = d.idem.clone();
    tx.idempotent(idem.as_ref(), d.now_ms, |r| r, |tx| {
        tx.conn
            .prepare_cached(
                "INSERT INTO deposits (id, buyer_id, amount_cents, bonus_cents, status, session_id, checkout_url, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![d.deposit_id, d.buyer_id, d.amount_cents, d.bonus_cents, d.session_id, d.checkout_url, d.now_ms])
            })
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    EngineError::Conflict("this deposit or Checkout Session is already stored".into())
                }
                e => db_err(e),
            })?;
        read_deposit(tx.conn, &d.session_id, None)?
            .ok_or_else(|| EngineError::internal("new deposit not found"))
    })
}

pub(super) fn deposit_event(
    tx: &mut Tx<'_>,
    e: ProviderEvent,
) -> Result<EventOutcome, EngineError> {
    let seen: bool = tx
        .conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM provider_events WHERE id = ?1)")
        .and_then(|mut s| s.query_row(params![e.event_id], |r| r.get(0)))
        .map_err(db_err)?;
    if seen {
        return Ok(EventOutcome::Duplicate);
    }
    let outcome = match &e.session {
        None => EventOutcome::Nothing,
        Some((session_id, deposit_id, event)) => {
            match read_deposit(tx.conn, session_id, deposit_id.as_deref())? {
                None => EventOutcome::Unmatched,
                Some(found) => settle(tx, found, event, &e)?,
            }
        }
    };
    let label = outcome.label();
    tx.conn
        .prepare_cached("INSERT INTO provider_events (id, type, session_id, outcome, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
        .and_then(|mut s| {
            s.execute(params![e.event_id, e.event_type, e.session.as_ref().map(|s| s.0.as_str()), label, e.now_ms])
        })
        .map_err(db_err)?;
    Ok(outcome)
}

fn settle(
    tx: &mut Tx<'_>,
    d: DepositRecord,
    event: &deposit::SessionEvent,
    e: &ProviderEvent,
) -> Result<EventOutcome, EngineError> {
    let paid = match event {
        deposit::SessionEvent::Paid { amount_cents, .. } => Some(*amount_cents),
        deposit::SessionEvent::Expired => None,
    };
    let step = deposit::step(d.status, d.amount_cents, event);
    let (status, bonus) = match step {
        Step::Nothing => return Ok(EventOutcome::Nothing),
        Step::Expire => (DepositStatus::Expired, 0),
        Step::Hold => (DepositStatus::Mismatch, 0),
        Step::Credit => {
            let earlier: bool = tx
                .conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM deposits WHERE buyer_id = ?1 AND status = 'completed')")
                .and_then(|mut s| s.query_row(params![d.buyer_id], |r| r.get(0)))
                .map_err(db_err)?;
            let bonus = if earlier {
                0
            } else {
                deposit::bonus_cents(d.amount_cents, e.bonus_pct)
            };
            (DepositStatus::Completed, bonus)
        }
    };
    let changed = tx
        .conn
        .prepare_cached(
            "UPDATE deposits SET status = ?2, bonus_cents = ?3, paid_cents = coalesce(?4, paid_cents), settled_at = ?5
             WHERE id = ?1 AND status = ?6",
        )
        .and_then(|mut s| {
            s.execute(params![d.deposit_id, status.as_str(), bonus, paid, e.now_ms, d.status.as_str()])
        })
        .map_err(db_err)?;
    if changed == 0 {
        return Ok(EventOutcome::Nothing);
    }
    if step == Step::Credit {
        tx.apply(
            &rules::money::deposit(&d.deposit_id, &d.buyer_id, d.amount_cents),
            e.now_ms,
        )?;
        if let Some(entry) = rules::money::deposit_bonus(&d.deposit_id, &d.buyer_id, bonus) {
            tx.apply(&entry, e.now_ms)?;
        }
        tx.conn
            .prepare_cached("UPDATE balances SET total_deposited_cents = total_deposited_cents + ?2, version = version + 1 WHERE user_id = ?1")
            .and_then(|mut s| s.execute(params![d.buyer_id, d.amount_cents]))
            .map_err(db_err)?;
    }
    let after = read_deposit(tx.conn, &d.session_id, None)?
        .ok_or_else(|| EngineError::internal("settled deposit not found"))?;
    if let Some((action, details)) = deposit_audit(step, &after, &e.event_id) {
        tx.audit(&Who::system("stripe"), action, &details, e.now_ms)?;
    }
    if step == Step::Credit {
        tx.hook(
            crate::store::webhook::events::deposit_completed(&after),
            e.now_ms,
        )?;
    }
    Ok(match step {
        Step::Credit => EventOutcome::Credited(after),
        Step::Hold => EventOutcome::Held(after),
        _ => EventOutcome::Expired(after),
    })
}

pub(super) fn deposits(
    c: &Connection,
    f: DepositFilter,
) -> Result<Vec<DepositRecord>, EngineError> {
    let sql = format!(
        "SELECT {DEPOSIT_COLS} FROM deposits
         WHERE (?1 IS NULL OR buyer_id = ?1) AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR seq < ?3)
         ORDER BY seq DESC LIMIT ?4"
    );
    let mut s = c.prepare_cached(&sql).map_err(db_err)?;
    let rows = s
        .query_map(
            params![
                f.buyer_id,
                f.status.map(|s| s.as_str()),
                f.before_seq,
                f.limit
            ],
            deposit_from_row,
        )
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

pub(super) fn purge_idempotency(tx: &mut Tx<'_>, before_ms: i64) -> Result<u64, EngineError> {
    let n = tx
        .conn
        .prepare_cached("DELETE FROM idempotency WHERE created_at < ?1")
        .and_then(|mut s| s.execute(params![before_ms]))
        .map_err(db_err)?;
    Ok(n as u64)
}

pub(super) fn resolve_deposit(
    tx: &mut Tx<'_>,
    deposit_id: String,
    by: Who,
    note: String,
    now_ms: i64,
) -> Result<DepositRecord, EngineError> {
    let sql = format!("SELECT {DEPOSIT_COLS} FROM deposits WHERE id = ?1");
    let found = tx
        .conn
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_row(params![deposit_id], deposit_from_row)
                .optional()
        })
        .map_err(db_err)?;
    let Some(d) = found else {
        return Err(EngineError::NotFound(format!("no deposit {deposit_id}")));
    };
    let paid = match (d.status, d.paid_cents) {
        (DepositStatus::Mismatch, Some(paid)) if paid > 0 => paid,
        (DepositStatus::Mismatch, _) => {
            return Err(EngineError::Conflict(
                "this deposit was paid nothing to credit".into(),
            ));
        }
        (other, _) => {
            return Err(EngineError::Conflict(format!(
                "only a mismatch deposit is resolved; this one is {}",
                other.as_str()
            )));
        }
    };
    let n = tx
        .conn
        .prepare_cached("UPDATE deposits SET status = 'completed', settled_at = ?2 WHERE id = ?1 AND status = 'mismatch'")
        .and_then(|mut s| s.execute(params![deposit_id, now_ms]))
        .map_err(db_err)?;
    if n == 0 {
        return Err(EngineError::Conflict(
            "this deposit is already resolved".into(),
        ));
    }
    tx.apply(
        &rules::money::deposit(&d.deposit_id, &d.buyer_id, paid),
        now_ms,
    )?;
    tx.conn
        .prepare_cached("UPDATE balances SET total_deposited_cents = total_deposited_cents + ?2, version = version + 1 WHERE user_id = ?1")
        .and_then(|mut s| s.execute(params![d.buyer_id, paid]))
        .map_err(db_err)?;
    tx.audit(
        &by,
        "deposit.resolve",
        &serde_json::json!({ "deposit_id": d.deposit_id, "buyer_id": d.buyer_id, "credited_cents": paid,
            "amount_cents": d.amount_cents, "note": note }),
        now_ms,
    )?;
    read_deposit(tx.conn, &d.session_id, None)?
        .ok_or_else(|| EngineError::internal("deposit not found"))
}
