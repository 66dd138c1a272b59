//! Bounties: larger work with the reward in escrow (`rules::bounty` decides, the store moves).

use super::*;
use crate::rules::bounty::{self, BountyStatus, Review, Terms};

/// What a buyer sends to post a bounty.
#[derive(Debug, Clone)]
pub struct BountyAsk {
    pub title: String,
    pub description: String,
    pub criteria: Option<String>,
    pub reward_cents: i64,
    /// RFC 3339.
    pub deadline: String,
    pub max_submissions: Option<u32>,
    pub review: Review,
}

/// Trims `text` and checks it has 1 to `max` characters (0 to `max` when it may be empty).
fn check_text(field: &str, text: &str, max: usize, required: bool) -> Result<String, EngineError> {
    let t = text.trim();
    let n = t.chars().count();
    if (required && n == 0) || n > max {
        let least = if required { 1 } else { 0 };
        return Err(EngineError::validation_field(
            field,
            format!("{field} must have {least} to {max} characters"),
        ));
    }
    Ok(t.to_string())
}

fn parse_time(field: &str, raw: &str) -> Result<i64, EngineError> {
    chrono::DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            EngineError::validation_field(
                field,
                format!("{field} must be an RFC 3339 time, e.g. 2026-12-31T18:00:00Z"),
            )
        })
}

impl Engine {
    pub async fn post_bounty(
        &self,
        buyer_id: &UserId,
        ask: BountyAsk,
        idem: Option<IdemKey>,
    ) -> Result<BountyRecord, EngineError> {
        let title = check_text("title", &ask.title, MAX_BOUNTY_TITLE_CHARS, true)?;
        let description = check_text("description", &ask.description, MAX_BOUNTY_TEXT_CHARS, true)?;
        let criteria = match ask.criteria.as_deref() {
            None => None,
            Some(c) => Some(check_text("criteria", c, MAX_BOUNTY_TEXT_CHARS, false)?)
                .filter(|c| !c.is_empty()),
        };
        let deadline_ms = parse_time("deadline", &ask.deadline)?;
        let now = now_ms();
        let cfg = self.cfg();
        let posting = bounty::Posting {
            reward_cents: ask.reward_cents,
            deadline_ms,
            max_submissions: ask.max_submissions,
            review: ask.review,
        };
        let max_submissions = bounty::check_post(&posting, &cfg.bounty, now)?;
        self.store
            .post_bounty(NewBounty {
                bounty_id: domain::new_id("bty"),
                buyer_id: buyer_id.as_str().to_string(),
                title,
                description,
                criteria,
                reward_cents: ask.reward_cents,
                deadline_ms,
                max_submissions,
                review: ask.review,
                terms: Terms::from_config(&cfg.bounty),
                now_ms: now,
                idem,
            })
            .await
    }

    pub async fn bounty(&self, bounty_id: &str) -> Result<BountyRecord, EngineError> {
        let id = check_id("bounty_id", bounty_id)?;
        self.store
            .bounty(id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("no bounty {bounty_id}")))
    }

    /// Bounties, newest first (one more than `limit` is asked for, to say whether there are more).
    pub async fn bounties(
        &self,
        status: Option<&str>,
        buyer_id: Option<&UserId>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<BountyRecord>, bool), EngineError> {
        let status = match status {
            None => None,
            Some(s) => Some(BountyStatus::parse(s).ok_or_else(|| {
                EngineError::validation_field(
                    "status",
                    "status is one of open, completed, resolved, expired, cancelled",
                )
            })?),
        };
        let mut rows = self
            .store
            .bounties(BountyFilter {
                status,
                buyer_id: buyer_id.map(|b| b.as_str().to_string()),
                before_seq: cursor,
                limit: limit + 1,
            })
            .await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        Ok((rows, more))
    }

    pub async fn cancel_bounty(
        &self,
        buyer_id: &UserId,
        bounty_id: &str,
    ) -> Result<BountyRecord, EngineError> {
        let id = check_id("bounty_id", bounty_id)?;
        self.store
            .cancel_bounty(id, buyer_id.as_str().to_string(), now_ms())
            .await
    }
}

/// An id from a path: at most [`MAX_TASK_ID_BYTES`] bytes of letters, digits, `_` and `-`.
fn check_id(field: &str, raw: &str) -> Result<String, EngineError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_TASK_ID_BYTES
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(EngineError::NotFound(format!("no {field} {raw:?}")));
    }
    Ok(raw.to_string())
}
