//! Notifications: stored by the command that causes them, listed and marked read by their user.

use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct NotificationDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub seq: i64,
    pub user_id: String,
    pub kind: String,
    /// JSON text.
    pub data: String,
    pub created_at: i64,
    #[serde(default)]
    pub read_at: Option<i64>,
}

impl NotificationDoc {
    fn record(self) -> NotificationRecord {
        NotificationRecord {
            seq: self.seq,
            data: serde_json::from_str(&self.data).unwrap_or(Value::Null),
            notification_id: self.id,
            user_id: self.user_id,
            kind: self.kind,
            created_at_ms: self.created_at,
            read_at_ms: self.read_at,
        }
    }
}

impl Tx<'_> {
    /// Stores what a step of the bounty flow tells and keeps its stream event, both told to the
    /// observer once this command commits.
    pub async fn tell(&mut self, told: Told, now_ms: i64) -> R<()> {
        for n in told.notices {
            self.notify(n, now_ms).await?;
        }
        self.events.extend(told.event);
        if let Some(hook) = told.hook {
            self.hook(hook, now_ms).await?;
        }
        Ok(())
    }

    /// Stores a notification, told to the observer once this command commits. Its `seq` is
    /// drawn outside the transaction: lists are ordered by it, live delivery by commit.
    pub async fn notify(&mut self, n: Notice, now_ms: i64) -> R<()> {
        let db = self.db;
        let d = NotificationDoc {
            id: crate::domain::new_id("ntf"),
            seq: db.next_seq("notifications").await?,
            user_id: n.user_id,
            kind: n.kind.to_string(),
            data: serde_json::to_string(&n.data)
                .map_err(|e| Fail::Engine(EngineError::internal(e)))?,
            created_at: now_ms,
            read_at: None,
        };
        self.insert(&db.notifications, &d).await?;
        self.notified.push(d.record());
        Ok(())
    }
}

pub(super) async fn list(tx: &mut Tx<'_>, f: &NotificationFilter) -> R<Vec<NotificationRecord>> {
    let db = tx.db;
    let mut filter = doc! { "user_id": &f.user_id };
    if f.unread_only {
        filter.insert("read_at", Bson::Null);
    }
    if let Some(before) = f.before_seq {
        filter.insert("seq", doc! { "$lt": before });
    }
    let found = tx
        .many(
            &db.notifications,
            filter,
            doc! { "seq": -1 },
            Some(i64::from(f.limit)),
        )
        .await?;
    Ok(found.into_iter().map(NotificationDoc::record).collect())
}

pub(super) async fn mark_read(
    tx: &mut Tx<'_>,
    user_id: &str,
    ids: &[String],
    now_ms: i64,
) -> R<u64> {
    let db = tx.db;
    tx.update_many(
        &db.notifications,
        doc! { "_id": { "$in": ids }, "user_id": user_id, "read_at": Bson::Null },
        doc! { "$set": { "read_at": now_ms } },
    )
    .await
}
