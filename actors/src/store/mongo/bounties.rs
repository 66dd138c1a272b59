//! Bounties: posting with the reward into escrow, reading, listing, cancelling.

use serde::{Deserialize, Serialize};

use super::*;
use crate::rules::bounty::{self, BountyStatus, Review, Terms};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct BountyDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub seq: i64,
    pub buyer_id: String,
    pub title: String,
    pub description: String,
    #[serde(default)]
    pub criteria: Option<String>,
    pub reward_cents: i64,
    pub deadline: i64,
    pub max_submissions: i64,
    pub review: String,
    /// The terms in force when it was posted.
    pub terms: Terms,
    pub status: String,
    pub submissions: i64,
    pub created_at: i64,
    #[serde(default)]
    pub settled_at: Option<i64>,
}

impl BountyDoc {
    fn record(self) -> R<BountyRecord> {
        let bad =
            |what: &str| Fail::Engine(EngineError::internal(format!("bounty {what} is not valid")));
        Ok(BountyRecord {
            seq: self.seq,
            review: Review::parse(&self.review).ok_or_else(|| bad("review"))?,
            status: BountyStatus::parse(&self.status).ok_or_else(|| bad("status"))?,
            bounty_id: self.id,
            buyer_id: self.buyer_id,
            title: self.title,
            description: self.description,
            criteria: self.criteria,
            reward_cents: self.reward_cents,
            deadline_ms: self.deadline,
            max_submissions: u32::try_from(self.max_submissions).unwrap_or(0),
            terms: self.terms,
            submissions: u32::try_from(self.submissions).unwrap_or(0),
            created_at_ms: self.created_at,
            settled_at_ms: self.settled_at,
        })
    }
}

pub(super) async fn read_bounty(tx: &mut Tx<'_>, id: &str) -> R<Option<BountyRecord>> {
    let db = tx.db;
    match tx.one(&db.bounties, doc! { "_id": id }).await? {
        Some(d) => Ok(Some(d.record()?)),
        None => Ok(None),
    }
}

pub(super) async fn post_bounty(tx: &mut Tx<'_>, b: &NewBounty) -> R<BountyRecord> {
    if let Some(first) = tx.replay(b.idem.as_ref()).await? {
        return Ok(first);
    }
    let db = tx.db;
    let Some(available) = tx.available(&b.buyer_id).await? else {
        return Err(Fail::Engine(EngineError::NotFound("no such buyer".into())));
    };
    if available < b.reward_cents {
        return Err(Fail::Engine(EngineError::InsufficientBalance {
            needed_cents: b.reward_cents,
            available_cents: available,
        }));
    }
    let seq = db.next_seq("bounties").await?;
    let d = BountyDoc {
        id: b.bounty_id.clone(),
        seq,
        buyer_id: b.buyer_id.clone(),
        title: b.title.clone(),
        description: b.description.clone(),
        criteria: b.criteria.clone(),
        reward_cents: b.reward_cents,
        deadline: b.deadline_ms,
        max_submissions: i64::from(b.max_submissions),
        review: b.review.as_str().to_string(),
        terms: b.terms,
        status: BountyStatus::Open.as_str().to_string(),
        submissions: 0,
        created_at: b.now_ms,
        settled_at: None,
    };
    tx.insert(&db.bounties, &d).await?;
    tx.apply(
        &bounty::escrow_entry(&b.bounty_id, &b.buyer_id, b.reward_cents),
        b.now_ms,
    )
    .await?;
    let record = d.record()?;
    tx.remember(b.idem.as_ref(), &record, b.now_ms).await?;
    Ok(record)
}

pub(super) async fn bounties(tx: &mut Tx<'_>, f: &BountyFilter) -> R<Vec<BountyRecord>> {
    let db = tx.db;
    let mut filter = doc! {};
    if let Some(s) = f.status {
        filter.insert("status", s.as_str());
    }
    if let Some(b) = &f.buyer_id {
        filter.insert("buyer_id", b);
    }
    if let Some(before) = f.before_seq {
        filter.insert("seq", doc! { "$lt": before });
    }
    let found = tx
        .many(
            &db.bounties,
            filter,
            doc! { "seq": -1 },
            Some(i64::from(f.limit)),
        )
        .await?;
    found.into_iter().map(BountyDoc::record).collect()
}

pub(super) async fn cancel_bounty(
    tx: &mut Tx<'_>,
    bounty_id: &str,
    buyer_id: &str,
    now_ms: i64,
) -> R<BountyRecord> {
    let db = tx.db;
    let Some(b) = read_bounty(tx, bounty_id)
        .await?
        .filter(|b| b.buyer_id == buyer_id)
    else {
        return Err(Fail::Engine(EngineError::NotFound(format!(
            "no bounty {bounty_id}"
        ))));
    };
    bounty::check_cancel(b.status, b.submissions)?;
    let changed = tx
        .update(
            &db.bounties,
            doc! { "_id": bounty_id, "status": "open", "submissions": 0_i64 },
            doc! { "$set": { "status": BountyStatus::Cancelled.as_str(), "settled_at": now_ms } },
        )
        .await?;
    if !changed {
        return Err(Fail::Engine(EngineError::Conflict(
            "this bounty changed; read it again".into(),
        )));
    }
    tx.apply(
        &bounty::refund_entry(bounty_id, buyer_id, b.reward_cents),
        now_ms,
    )
    .await?;
    read_bounty(tx, bounty_id)
        .await?
        .ok_or_else(|| Fail::Engine(EngineError::internal("bounty not found")))
}
