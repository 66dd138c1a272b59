//! What the store keeps of bounties.

use serde::{Deserialize, Serialize};

use super::IdemKey;
use crate::rules::bounty::{BountyStatus, Review, Terms};

/// A bounty to post: its reward moves into escrow in the same transaction.
#[derive(Debug, Clone)]
pub struct NewBounty {
    pub bounty_id: String,
    pub buyer_id: String,
    pub title: String,
    pub description: String,
    pub criteria: Option<String>,
    pub reward_cents: i64,
    pub deadline_ms: i64,
    pub max_submissions: u32,
    pub review: Review,
    pub terms: Terms,
    pub now_ms: i64,
    pub idem: Option<IdemKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BountyRecord {
    pub seq: i64,
    pub bounty_id: String,
    pub buyer_id: String,
    pub title: String,
    pub description: String,
    pub criteria: Option<String>,
    pub reward_cents: i64,
    pub deadline_ms: i64,
    pub max_submissions: u32,
    pub review: Review,
    pub terms: Terms,
    pub status: BountyStatus,
    pub submissions: u32,
    pub created_at_ms: i64,
    /// When it was completed, resolved, expired or cancelled.
    pub settled_at_ms: Option<i64>,
}

impl BountyRecord {
    /// What is in escrow for it now.
    pub fn escrow_cents(&self) -> i64 {
        if self.status.holds_escrow() {
            self.reward_cents
        } else {
            0
        }
    }
}

/// Which bounties to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct BountyFilter {
    pub status: Option<BountyStatus>,
    pub buyer_id: Option<String>,
    pub before_seq: Option<i64>,
    pub limit: u32,
}
