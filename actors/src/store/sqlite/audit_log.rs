//! The audit log on SQLite: entries in `audit_log` (the row id is the chain's number), the head
//! and the pruning anchor in the one row of `audit_chain`. The single writer appends one entry
//! at a time, so the chain needs no other guard.

use super::*;
use crate::rules::audit::{Fields, Link, Verifier};
use crate::store::audit_log::{AuditEntry, AuditFilter, ChainReport, Pruned, VERIFY_PAGE, Who};

/// The head (newest entry) and the anchor (last pruned entry).
fn chain_links(c: &Connection) -> Result<(Link, Link), EngineError> {
    c.prepare_cached(
        "SELECT head_seq, head_hash, anchor_seq, anchor_hash FROM audit_chain WHERE id = 1",
    )
    .and_then(|mut s| {
        s.query_row([], |r| {
            Ok((
                Link {
                    seq: r.get(0)?,
                    hash: r.get(1)?,
                },
                Link {
                    seq: r.get(2)?,
                    hash: r.get(3)?,
                },
            ))
        })
        .optional()
    })
    .map_err(db_err)
    .map(|found| found.unwrap_or_else(|| (Link::genesis(), Link::genesis())))
}

/// Appends one entry after `head`; returns the new head.
fn append(
    c: &Connection,
    head: &Link,
    by: &Who,
    action: &str,
    details: &str,
    now_ms: i64,
) -> Result<Link, EngineError> {
    let fields = Fields {
        seq: head.seq + 1,
        created_at_ms: now_ms,
        actor_id: &by.id,
        action,
        ip: &by.ip,
        user_agent: &by.user_agent,
        details,
    };
    let next = head.next(&fields);
    c.prepare_cached(
        "INSERT INTO audit_log (id, actor_id, action, ip, user_agent, details, created_at, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            next.seq, by.id, action, by.ip, by.user_agent, details, now_ms, head.hash, next.hash
        ])
    })
    .map_err(db_err)?;
    set_head(c, &next)?;
    Ok(next)
}

fn set_head(c: &Connection, head: &Link) -> Result<(), EngineError> {
    c.prepare_cached("UPDATE audit_chain SET head_seq = ?1, head_hash = ?2 WHERE id = 1")
        .and_then(|mut s| s.execute(params![head.seq, head.hash]))
        .map_err(db_err)?;
    Ok(())
}

impl Tx<'_> {
    /// One audit entry, in this transaction, chained to the one before.
    pub(super) fn audit(
        &self,
        by: &Who,
        action: &str,
        details: &Value,
        now_ms: i64,
    ) -> Result<(), EngineError> {
        let (head, _) = chain_links(self.conn)?;
        append(self.conn, &head, by, action, &details.to_string(), now_ms)?;
        Ok(())
    }
}

const COLUMNS: &str = "id, actor_id, action, ip, user_agent, details, created_at, prev_hash, hash";

/// An entry as stored (the hashes are empty before it is chained).
struct Stored {
    seq: i64,
    by: Who,
    action: String,
    details: String,
    created_at_ms: i64,
    prev_hash: String,
    hash: String,
}

impl Stored {
    fn fields(&self) -> Fields<'_> {
        Fields {
            seq: self.seq,
            created_at_ms: self.created_at_ms,
            actor_id: &self.by.id,
            action: &self.action,
            ip: &self.by.ip,
            user_agent: &self.by.user_agent,
            details: &self.details,
        }
    }

    fn view(self) -> AuditEntry {
        AuditEntry::from_stored(
            self.seq,
            self.by,
            self.action,
            &self.details,
            self.created_at_ms,
            self.prev_hash,
            self.hash,
        )
    }
}

/// A row of [`COLUMNS`].
fn stored(r: &Row<'_>) -> rusqlite::Result<Stored> {
    Ok(Stored {
        seq: r.get(0)?,
        by: Who {
            id: r.get(1)?,
            ip: r.get(3)?,
            user_agent: r.get(4)?,
        },
        action: r.get(2)?,
        details: r.get(5)?,
        created_at_ms: r.get(6)?,
        prev_hash: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
        hash: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
    })
}

/// Chains the entries written before the chain existed (schema version 3 and older), in their
/// order, renumbering them 1, 2, … after the head. Runs at every open; does nothing once done.
pub(super) fn chain_unchained(c: &Connection) -> Result<u64, EngineError> {
    let old: Vec<Stored> = c
        .prepare(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE hash IS NULL ORDER BY id"
        ))
        .and_then(|mut s| s.query_map([], stored)?.collect())
        .map_err(db_err)?;
    let (mut head, _) = chain_links(c)?;
    for e in &old {
        // Taken out and written again under its number in the chain (never above its own id:
        // the unchained rows come in id order after every chained one).
        c.execute("DELETE FROM audit_log WHERE id = ?1", params![e.seq])
            .map_err(db_err)?;
        head = append(c, &head, &e.by, &e.action, &e.details, e.created_at_ms)?;
    }
    Ok(old.len() as u64)
}

pub(super) fn audit_log(c: &Connection, f: &AuditFilter) -> Result<Vec<AuditEntry>, EngineError> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM audit_log
         WHERE (?1 IS NULL OR action = ?1) AND (?2 IS NULL OR actor_id = ?2) AND (?3 IS NULL OR id < ?3)
         ORDER BY id DESC LIMIT ?4"
    ))
    .and_then(|mut s| {
        s.query_map(
            params![f.action, f.actor_id, f.before_seq, f.limit],
            |r| stored(r).map(Stored::view),
        )?
        .collect()
    })
    .map_err(db_err)
}

/// Walks the whole chain from the anchor (run it in one read transaction).
pub(super) fn verify(c: &Connection) -> Result<ChainReport, EngineError> {
    let (head, anchor) = chain_links(c)?;
    let mut v = Verifier::new(anchor.clone());
    let mut after = anchor.seq.min(head.seq);
    let mut s = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))
        .map_err(db_err)?;
    'pages: loop {
        let rows: Vec<Stored> = s
            .query_map(params![after, VERIFY_PAGE], stored)
            .and_then(|rows| rows.collect())
            .map_err(db_err)?;
        let full = rows.len() as u32 == VERIFY_PAGE;
        for e in &rows {
            after = e.seq;
            if !v.entry(&e.fields(), &e.prev_hash, &e.hash) {
                break 'pages;
            }
        }
        if !full {
            break;
        }
    }
    let verdict = v.finish(&head);
    Ok(ChainReport {
        ok: verdict.ok,
        checked: verdict.checked,
        anchor,
        head,
        first_bad: verdict.first_bad,
    })
}

/// Removes the entries written before `before_ms`, keeping the last removed one as the anchor.
/// A broken chain is never pruned: the evidence stays until an operator has looked at it.
pub(super) fn prune(tx: &mut Tx<'_>, before_ms: i64) -> Result<Pruned, EngineError> {
    let report = verify(tx.conn)?;
    if let Some(bad) = report.first_bad {
        return Err(EngineError::Conflict(format!(
            "the audit log's chain is broken at entry {} ({}); nothing is pruned until it is looked at",
            bad.seq, bad.reason
        )));
    }
    let anchor = report.anchor;
    let last: Option<(i64, String)> = tx
        .conn
        .prepare_cached(
            "SELECT id, hash FROM audit_log WHERE created_at < ?1 ORDER BY id DESC LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row(params![before_ms], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db_err)?;
    let Some((seq, hash)) = last else {
        return Ok(Pruned { removed: 0, anchor });
    };
    let removed = tx
        .conn
        .prepare_cached("DELETE FROM audit_log WHERE id <= ?1")
        .and_then(|mut s| s.execute(params![seq]))
        .map_err(db_err)? as u64;
    tx.conn
        .prepare_cached("UPDATE audit_chain SET anchor_seq = ?1, anchor_hash = ?2 WHERE id = 1")
        .and_then(|mut s| s.execute(params![seq, hash]))
        .map_err(db_err)?;
    Ok(Pruned {
        removed,
        anchor: Link { seq, hash },
    })
}
