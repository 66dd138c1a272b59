//! Referrals: codes, who referred whom, the referred buyer's credit and the referrer's share of
//! a referred worker's released tasks.

use super::*;
use crate::rules::referral;

/// Records that `user_id` (a new account) came with `r.code`, and pays a buyer's credit.
pub(super) fn attach(
    tx: &mut Tx<'_>,
    user_id: &str,
    role: Role,
    r: &NewReferral,
    now_ms: i64,
) -> Result<(), EngineError> {
    let referrer: Option<String> = tx
        .conn
        .prepare_cached("SELECT user_id FROM referral_codes WHERE code = ?1")
        .and_then(|mut s| s.query_row(params![r.code], |row| row.get(0)).optional())
        .map_err(db_err)?;
    let referrer = match referrer {
        None => {
            return Err(EngineError::validation_field(
                "referral_code",
                "no account has this referral code",
            ));
        }
        Some(id) if id == user_id => {
            return Err(EngineError::validation_field(
                "referral_code",
                "one's own referral code does not count",
            ));
        }
        Some(id) => id,
    };
    tx.conn
        .prepare_cached(
            "INSERT INTO referrals (user_id, referrer_id, role, share_bp, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| s.execute(params![user_id, referrer, role.as_str(), r.share_bp, now_ms]))
        .map_err(db_err)?;
    if role == Role::Buyer
        && let Some(entry) = referral::buyer_credit(user_id, r.buyer_credit_cents)
    {
        tx.apply(&entry, now_ms)?;
    }
    Ok(())
}

/// A referred worker's lot was released: its referrer gets its share, for the first
/// [`referral::SHARED_TASKS`] buyers' tasks (a QA copy's commission went back to the QA fund,
/// not to revenue: it pays no share and does not count).
pub(super) fn share_on_release(
    tx: &mut Tx<'_>,
    worker_id: &str,
    task_id: &str,
    price_cents: i64,
    commission_cents: i64,
    now_ms: i64,
) -> Result<(), EngineError> {
    let found: Option<(String, i64)> = tx
        .conn
        .prepare_cached(
            "SELECT referrer_id, share_bp FROM referrals WHERE user_id = ?1 AND role = 'worker' AND tasks_paid < ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![worker_id, referral::SHARED_TASKS], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db_err)?;
    let Some((referrer, share_bp)) = found else {
        return Ok(());
    };
    let funded_by: Option<String> = tx
        .conn
        .prepare_cached("SELECT funded_by FROM tasks WHERE id = ?1")
        .and_then(|mut s| s.query_row(params![task_id], |r| r.get(0)).optional())
        .map_err(db_err)?;
    if funded_by.as_deref() == Some(FUNDED_BY_PLATFORM) {
        return Ok(());
    }
    let cents = referral::share_cents(price_cents, commission_cents, share_bp);
    if let Some(entry) = referral::share(task_id, &referrer, cents) {
        tx.apply(&entry, now_ms)?;
    }
    tx.conn
        .prepare_cached(
            "UPDATE referrals SET tasks_paid = tasks_paid + 1, earned_cents = earned_cents + ?2 WHERE user_id = ?1",
        )
        .and_then(|mut s| s.execute(params![worker_id, cents]))
        .map_err(db_err)?;
    Ok(())
}

pub(super) fn referral(
    tx: &mut Tx<'_>,
    user_id: String,
    candidate: String,
    now_ms: i64,
) -> Result<ReferralStats, EngineError> {
    let existing: Option<String> = tx
        .conn
        .prepare_cached("SELECT code FROM referral_codes WHERE user_id = ?1")
        .and_then(|mut s| s.query_row(params![user_id], |r| r.get(0)).optional())
        .map_err(db_err)?;
    let code = match existing {
        Some(c) => c,
        None => {
            let inserted = tx
                .conn
                .prepare_cached(
                    "INSERT INTO referral_codes (code, user_id, created_at) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![candidate, user_id, now_ms]));
            match inserted {
                Ok(_) => candidate,
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    return Err(EngineError::Unavailable(
                        "referral code taken; try again".into(),
                    ));
                }
                Err(e) => return Err(db_err(e)),
            }
        }
    };
    let (buyers, workers, earned): (i64, i64, i64) = tx
        .conn
        .prepare_cached(
            "SELECT coalesce(sum(role = 'buyer'), 0), coalesce(sum(role = 'worker'), 0), coalesce(sum(earned_cents), 0)
             FROM referrals WHERE referrer_id = ?1",
        )
        .and_then(|mut s| s.query_row(params![user_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
        .map_err(db_err)?;
    Ok(ReferralStats {
        code,
        referred_buyers: buyers as u64,
        referred_workers: workers as u64,
        earned_cents: earned,
    })
}
