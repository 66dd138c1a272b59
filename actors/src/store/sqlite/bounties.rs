//! Bounties: posting with the reward into escrow, reading, listing, cancelling.

use super::*;
use crate::rules::bounty::{self, BountyStatus, Review, Terms};

const BOUNTY_COLS: &str = "seq, id, buyer_id, title, description, criteria, reward_cents, deadline, \
    max_submissions, review, terms, status, submissions, created_at, settled_at";

fn bounty_from_row(r: &Row<'_>) -> rusqlite::Result<BountyRecord> {
    let review: String = r.get(9)?;
    let terms: String = r.get(10)?;
    let status: String = r.get(11)?;
    let bad = |i: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("bounty {what} is not valid").into(),
        )
    };
    Ok(BountyRecord {
        seq: r.get(0)?,
        bounty_id: r.get(1)?,
        buyer_id: r.get(2)?,
        title: r.get(3)?,
        description: r.get(4)?,
        criteria: r.get(5)?,
        reward_cents: r.get(6)?,
        deadline_ms: r.get(7)?,
        max_submissions: r.get(8)?,
        review: Review::parse(&review).ok_or_else(|| bad(9, "review"))?,
        terms: serde_json::from_str::<Terms>(&terms).map_err(|_| bad(10, "terms"))?,
        status: BountyStatus::parse(&status).ok_or_else(|| bad(11, "status"))?,
        submissions: r.get(12)?,
        created_at_ms: r.get(13)?,
        settled_at_ms: r.get(14)?,
    })
}

pub(super) fn read_bounty(c: &Connection, id: &str) -> Result<Option<BountyRecord>, EngineError> {
    let sql = format!("SELECT {BOUNTY_COLS} FROM bounties WHERE id = ?1");
    c.prepare_cached(&sql)
        .and_then(|mut s| s.query_row(params![id], bounty_from_row).optional())
        .map_err(db_err)
}

pub(super) fn post_bounty(tx: &mut Tx<'_>, b: NewBounty) -> Result<BountyRecord, EngineError> {
    let idem = b.idem.clone();
    tx.idempotent(idem.as_ref(), b.now_ms, |r| r, |tx| {
        let available = tx
            .available(&b.buyer_id)?
            .ok_or_else(|| EngineError::NotFound("no such buyer".into()))?;
        if available < b.reward_cents {
            return Err(EngineError::InsufficientBalance {
                needed_cents: b.reward_cents,
                available_cents: available,
            });
        }
        let terms = serde_json::to_string(&b.terms).map_err(json_err)?;
        tx.conn
            .prepare_cached(
                "INSERT INTO bounties (id, buyer_id, title, description, criteria, reward_cents, deadline,
                   max_submissions, review, terms, status, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'open', ?11)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    b.bounty_id, b.buyer_id, b.title, b.description, b.criteria, b.reward_cents,
                    b.deadline_ms, b.max_submissions, b.review.as_str(), terms, b.now_ms
                ])
            })
            .map_err(db_err)?;
        tx.apply(&bounty::escrow_entry(&b.bounty_id, &b.buyer_id, b.reward_cents), b.now_ms)?;
        read_bounty(tx.conn, &b.bounty_id)?.ok_or_else(|| EngineError::internal("new bounty not found"))
    })
}

pub(super) fn bounties(c: &Connection, f: BountyFilter) -> Result<Vec<BountyRecord>, EngineError> {
    let sql = format!(
        "SELECT {BOUNTY_COLS} FROM bounties
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR buyer_id = ?2) AND (?3 IS NULL OR seq < ?3)
         ORDER BY seq DESC LIMIT ?4"
    );
    let mut s = c.prepare_cached(&sql).map_err(db_err)?;
    let rows = s
        .query_map(
            params![
                f.status.map(|s| s.as_str()),
                f.buyer_id,
                f.before_seq,
                f.limit
            ],
            bounty_from_row,
        )
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

pub(super) fn cancel_bounty(
    tx: &mut Tx<'_>,
    bounty_id: String,
    buyer_id: String,
    now_ms: i64,
) -> Result<BountyRecord, EngineError> {
    let Some(b) = read_bounty(tx.conn, &bounty_id)?.filter(|b| b.buyer_id == buyer_id) else {
        return Err(EngineError::NotFound(format!("no bounty {bounty_id}")));
    };
    bounty::check_cancel(b.status, b.submissions)?;
    let n = tx
        .conn
        .prepare_cached(
            "UPDATE bounties SET status = 'cancelled', settled_at = ?2
             WHERE id = ?1 AND status = 'open' AND submissions = 0",
        )
        .and_then(|mut s| s.execute(params![bounty_id, now_ms]))
        .map_err(db_err)?;
    if n == 0 {
        return Err(EngineError::Conflict(
            "this bounty changed; read it again".into(),
        ));
    }
    tx.apply(
        &bounty::refund_entry(&bounty_id, &buyer_id, b.reward_cents),
        now_ms,
    )?;
    read_bounty(tx.conn, &bounty_id)?.ok_or_else(|| EngineError::internal("bounty not found"))
}
