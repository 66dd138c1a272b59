//! Referrals: codes, who referred whom, the referred buyer's credit and the referrer's share of
//! a referred worker's released tasks (see `rules::referral`).

use super::*;
use crate::rules::referral;

pub(super) async fn attach(
    tx: &mut Tx<'_>,
    user_id: &str,
    role: Role,
    r: &NewReferral,
    now_ms: i64,
) -> R<()> {
    let db = tx.db;
    let Some(code) = tx.one(&db.referral_codes, doc! { "_id": &r.code }).await? else {
        return Err(Fail::Engine(EngineError::validation_field(
            "referral_code",
            "no account has this referral code",
        )));
    };
    if code.user_id == user_id {
        return Err(Fail::Engine(EngineError::validation_field(
            "referral_code",
            "one's own referral code does not count",
        )));
    }
    let record = ReferralDoc {
        user_id: user_id.to_string(),
        referrer_id: code.user_id,
        role: role.as_str().to_string(),
        share_bp: r.share_bp,
        tasks_paid: 0,
        earned_cents: 0,
        created_at: now_ms,
    };
    tx.insert(&db.referrals, &record).await?;
    if role == Role::Buyer
        && let Some(entry) = referral::buyer_credit(user_id, r.buyer_credit_cents)
    {
        tx.apply(&entry, now_ms).await?;
    }
    Ok(())
}

/// A referred worker's lot was released: its referrer's share, for the first
/// [`referral::SHARED_TASKS`] buyers' tasks (QA copies pay none and do not count).
pub(super) async fn share_on_release(tx: &mut Tx<'_>, lot: &LotDoc, now_ms: i64) -> R<()> {
    let db = tx.db;
    let Some(found) = tx
        .one(
            &db.referrals,
            doc! { "_id": &lot.worker_id, "role": "worker", "tasks_paid": { "$lt": referral::SHARED_TASKS } },
        )
        .await?
    else {
        return Ok(());
    };
    let platform = tx
        .exists(
            &db.tasks,
            doc! { "_id": &lot.task_id, "funded_by": FUNDED_BY_PLATFORM },
        )
        .await?;
    if platform {
        return Ok(());
    }
    let price = lot.amount_cents + lot.commission_cents + lot.deducted_cents;
    let cents = referral::share_cents(price, lot.commission_cents, found.share_bp);
    // Guarded on the count, so two releases at once cannot pay a 101st task.
    let counted = tx
        .update(
            &db.referrals,
            doc! { "_id": &lot.worker_id, "tasks_paid": found.tasks_paid },
            doc! { "$inc": { "tasks_paid": 1_i64, "earned_cents": cents } },
        )
        .await?;
    if !counted {
        return Err(Fail::Retry);
    }
    if let Some(entry) = referral::share(&lot.task_id, &found.referrer_id, cents) {
        tx.apply(&entry, now_ms).await?;
    }
    Ok(())
}

pub(super) async fn referral(
    tx: &mut Tx<'_>,
    user_id: &str,
    candidate: &str,
    now_ms: i64,
) -> R<ReferralStats> {
    let db = tx.db;
    let code = match tx
        .one(&db.referral_codes, doc! { "user_id": user_id })
        .await?
    {
        Some(c) => c.code,
        None => {
            let record = ReferralCodeDoc {
                code: candidate.to_string(),
                user_id: user_id.to_string(),
                created_at: now_ms,
            };
            match tx.insert(&db.referral_codes, &record).await {
                // The code is taken, or this user got one at the same moment: look again.
                Err(Fail::Db(e)) if is_duplicate(&e) => return Err(Fail::Retry),
                other => other?,
            }
            candidate.to_string()
        }
    };
    let rows = tx
        .aggregate(
            &db.referrals,
            vec![
                doc! { "$match": { "referrer_id": user_id } },
                doc! { "$group": {
                    "_id": Bson::Null,
                    "buyers": { "$sum": { "$cond": [{ "$eq": ["$role", "buyer"] }, 1, 0] } },
                    "workers": { "$sum": { "$cond": [{ "$eq": ["$role", "worker"] }, 1, 0] } },
                    "earned": { "$sum": "$earned_cents" },
                } },
            ],
        )
        .await?;
    let row = rows.first();
    Ok(ReferralStats {
        code,
        referred_buyers: row.map_or(0, |d| accounts::int(d, "buyers")) as u64,
        referred_workers: row.map_or(0, |d| accounts::int(d, "workers")) as u64,
        earned_cents: row.map_or(0, |d| accounts::int(d, "earned")),
    })
}
