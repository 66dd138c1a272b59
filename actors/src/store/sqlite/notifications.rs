//! Notifications: stored by the command that causes them, listed and marked read by their user.

use super::*;

const COLS: &str = "seq, id, user_id, kind, data, created_at, read_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<NotificationRecord> {
    let data: String = r.get(4)?;
    Ok(NotificationRecord {
        seq: r.get(0)?,
        notification_id: r.get(1)?,
        user_id: r.get(2)?,
        kind: r.get(3)?,
        data: serde_json::from_str(&data).unwrap_or(Value::Null),
        created_at_ms: r.get(5)?,
        read_at_ms: r.get(6)?,
    })
}

impl Tx<'_> {
    /// Stores what a step of the bounty flow tells and keeps its stream event, both told to the
    /// observer once this command commits.
    pub(super) fn tell(&mut self, told: Told, now_ms: i64) -> Result<(), EngineError> {
        for n in told.notices {
            self.notify(n, now_ms)?;
        }
        self.events.extend(told.event);
        if let Some(hook) = told.hook {
            self.hook(hook, now_ms)?;
        }
        Ok(())
    }

    /// Stores a notification for `user_id`, told to the observer once this command commits.
    pub(super) fn notify(&mut self, n: Notice, now_ms: i64) -> Result<(), EngineError> {
        let Notice {
            user_id,
            kind,
            data,
        } = n;
        let id = crate::domain::new_id("ntf");
        let text = serde_json::to_string(&data).map_err(json_err)?;
        self.conn
            .prepare_cached(
                "INSERT INTO notifications (id, user_id, kind, data, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![id, user_id, kind, text, now_ms]))
            .map_err(db_err)?;
        self.notified.push(NotificationRecord {
            seq: self.conn.last_insert_rowid(),
            notification_id: id,
            user_id,
            kind: kind.to_string(),
            data,
            created_at_ms: now_ms,
            read_at_ms: None,
        });
        Ok(())
    }
}

pub(super) fn list(
    c: &Connection,
    f: NotificationFilter,
) -> Result<Vec<NotificationRecord>, EngineError> {
    let sql = format!(
        "SELECT {COLS} FROM notifications
         WHERE user_id = ?1 AND seq < ?2 AND (?3 = 0 OR read_at IS NULL)
         ORDER BY seq DESC LIMIT ?4"
    );
    let mut s = c.prepare_cached(&sql).map_err(db_err)?;
    let rows = s
        .query_map(
            params![
                f.user_id,
                f.before_seq.unwrap_or(i64::MAX),
                f.unread_only,
                f.limit
            ],
            from_row,
        )
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

pub(super) fn mark_read(
    tx: &mut Tx<'_>,
    user_id: &str,
    ids: &[String],
    now_ms: i64,
) -> Result<u64, EngineError> {
    let mut n = 0;
    for id in ids {
        n += tx
            .conn
            .prepare_cached(
                "UPDATE notifications SET read_at = ?3 WHERE id = ?1 AND user_id = ?2 AND read_at IS NULL",
            )
            .and_then(|mut s| s.execute(params![id, user_id, now_ms]))
            .map_err(db_err)? as u64;
    }
    Ok(n)
}
