//! Notifications: each user's own, listed newest first and marked read.

use super::*;

/// The most ids one `POST /api/notifications/read` marks.
pub const MAX_MARK_READ: usize = 100;

impl Engine {
    /// The caller's notifications, newest first (one more than `limit` is asked for, to say
    /// whether there are more).
    pub async fn notifications(
        &self,
        user_id: &UserId,
        unread_only: bool,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<NotificationRecord>, bool), EngineError> {
        let rows = self
            .store
            .notifications(NotificationFilter {
                user_id: user_id.as_str().to_string(),
                unread_only,
                before_seq: cursor,
                limit: limit + 1,
            })
            .await?;
        Ok(page(rows, limit))
    }

    /// Marks the caller's notifications `ids` read; returns how many were unread. Ids that are
    /// not the caller's, or unknown, change nothing.
    pub async fn mark_read(&self, user_id: &UserId, ids: &[String]) -> Result<u64, EngineError> {
        if ids.is_empty() || ids.len() > MAX_MARK_READ {
            return Err(EngineError::validation_field(
                "ids",
                format!("ids must list 1 to {MAX_MARK_READ} notification ids"),
            ));
        }
        // An id that cannot be one is simply unknown: it marks nothing.
        let ids: Vec<String> = ids
            .iter()
            .filter(|id| super::bounties::well_formed_id(id))
            .cloned()
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        self.store
            .mark_read(user_id.as_str().to_string(), ids, now_ms())
            .await
    }
}
