//! The audit log on MongoDB: entries in `audit_log` with their number in the chain (`seq`), the
//! head and the pruning anchor in the `meta` document `audit_chain`. Every append moves the head
//! guarded on the head it read, so two entries written at once collide and one command runs
//! again: the chain never forks.

use super::*;
use crate::rules::audit::{Fields, GENESIS, Link, Verifier};
use crate::store::audit_log::{AuditEntry, AuditFilter, ChainReport, Pruned, VERIFY_PAGE, Who};

const CHAIN: &str = "audit_chain";

fn link(d: &Document, seq: &str, hash: &str) -> Link {
    Link {
        seq: accounts::int(d, seq),
        hash: d.get_str(hash).unwrap_or(GENESIS).to_string(),
    }
}

/// The head (newest entry) and the anchor (last pruned entry).
async fn chain_links(tx: &mut Tx<'_>) -> R<(Link, Link)> {
    let db = tx.db;
    let found = tx
        .one(&db.meta, doc! { "_id": CHAIN })
        .await?
        .ok_or_else(|| {
            Fail::Engine(EngineError::internal(
                "the audit log's chain document is missing (the schema step makes it)",
            ))
        })?;
    Ok((
        link(&found, "head_seq", "head_hash"),
        link(&found, "anchor_seq", "anchor_hash"),
    ))
}

/// Moves the head from `from` to `to`; another entry written since `from` was read makes the
/// command run again.
async fn move_head(tx: &mut Tx<'_>, from: &Link, to: &Link) -> R<()> {
    let db = tx.db;
    let moved = tx
        .update(
            &db.meta,
            doc! { "_id": CHAIN, "head_seq": from.seq },
            doc! { "$set": { "head_seq": to.seq, "head_hash": &to.hash } },
        )
        .await?;
    if moved { Ok(()) } else { Err(Fail::Retry) }
}

fn fields(d: &AuditLogDoc) -> Fields<'_> {
    Fields {
        seq: d.seq.unwrap_or(0),
        created_at_ms: d.created_at,
        actor_id: &d.actor_id,
        action: &d.action,
        ip: &d.ip,
        user_agent: &d.user_agent,
        details: &d.details,
    }
}

impl Tx<'_> {
    /// One audit entry, in this transaction, chained to the one before.
    pub async fn audit(&mut self, by: &Who, action: &str, details: &Value, now_ms: i64) -> R<()> {
        let db = self.db;
        let (head, _) = chain_links(self).await?;
        let mut entry = AuditLogDoc {
            id: mongodb::bson::oid::ObjectId::new(),
            seq: Some(head.seq + 1),
            actor_id: by.id.clone(),
            action: action.to_string(),
            ip: by.ip.clone(),
            user_agent: by.user_agent.clone(),
            details: details.to_string(),
            created_at: now_ms,
            prev_hash: Some(head.hash.clone()),
            hash: None,
        };
        let next = head.next(&fields(&entry));
        entry.hash = Some(next.hash.clone());
        move_head(self, &head, &next).await?;
        self.insert(&db.audit_log, &entry).await
    }
}

/// Chains up to `limit` entries written before the chain existed, oldest first; returns how
/// many (run until it answers 0).
pub(super) async fn chain_unchained(tx: &mut Tx<'_>, limit: i64) -> R<u64> {
    let db = tx.db;
    let old = tx
        .many(
            &db.audit_log,
            doc! { "seq": Bson::Null },
            doc! { "created_at": 1, "_id": 1 },
            Some(limit),
        )
        .await?;
    if old.is_empty() {
        return Ok(0);
    }
    let (first, _) = chain_links(tx).await?;
    let mut head = first.clone();
    for mut d in old.iter().cloned() {
        d.seq = Some(head.seq + 1);
        let next = head.next(&fields(&d));
        tx.update(
            &db.audit_log,
            doc! { "_id": d.id, "seq": Bson::Null },
            doc! { "$set": { "seq": next.seq, "prev_hash": &head.hash, "hash": &next.hash } },
        )
        .await?;
        head = next;
    }
    move_head(tx, &first, &head).await?;
    Ok(old.len() as u64)
}

fn entry(d: AuditLogDoc) -> AuditEntry {
    AuditEntry::from_stored(
        d.seq.unwrap_or(0),
        Who {
            id: d.actor_id,
            ip: d.ip,
            user_agent: d.user_agent,
        },
        d.action,
        &d.details,
        d.created_at,
        d.prev_hash.unwrap_or_default(),
        d.hash.unwrap_or_default(),
    )
}

pub(super) async fn audit_log(tx: &mut Tx<'_>, f: &AuditFilter) -> R<Vec<AuditEntry>> {
    let db = tx.db;
    let mut filter = doc! { "seq": { "$ne": Bson::Null } };
    if let Some(before) = f.before_seq {
        filter.insert("seq", doc! { "$ne": Bson::Null, "$lt": before });
    }
    if let Some(a) = &f.action {
        filter.insert("action", a);
    }
    if let Some(a) = &f.actor_id {
        filter.insert("actor_id", a);
    }
    let rows = tx
        .many(
            &db.audit_log,
            filter,
            doc! { "seq": -1 },
            Some(i64::from(f.limit)),
        )
        .await?;
    Ok(rows.into_iter().map(entry).collect())
}

/// Walks the whole chain from the anchor (run it in one snapshot).
pub(super) async fn verify(tx: &mut Tx<'_>) -> R<ChainReport> {
    let db = tx.db;
    let (head, anchor) = chain_links(tx).await?;
    let mut v = Verifier::new(anchor.clone());
    let mut after = anchor.seq.min(head.seq);
    'pages: loop {
        let rows = tx
            .many(
                &db.audit_log,
                doc! { "seq": { "$gt": after } },
                doc! { "seq": 1 },
                Some(i64::from(VERIFY_PAGE)),
            )
            .await?;
        let full = rows.len() == VERIFY_PAGE as usize;
        for d in &rows {
            after = d.seq.unwrap_or(after);
            let prev = d.prev_hash.as_deref().unwrap_or_default();
            if !v.entry(&fields(d), prev, d.hash.as_deref().unwrap_or_default()) {
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

/// Removes the entries written before `before_ms`, keeping the last removed one as the anchor;
/// a broken chain is never pruned.
pub(super) async fn prune(tx: &mut Tx<'_>, before_ms: i64) -> R<Pruned> {
    let db = tx.db;
    let report = verify(tx).await?;
    if let Some(bad) = report.first_bad {
        return Err(Fail::Engine(EngineError::Conflict(format!(
            "the audit log's chain is broken at entry {} ({}); nothing is pruned until it is looked at",
            bad.seq, bad.reason
        ))));
    }
    let last = tx
        .many(
            &db.audit_log,
            doc! { "created_at": { "$lt": before_ms }, "seq": { "$ne": Bson::Null } },
            doc! { "seq": -1 },
            Some(1),
        )
        .await?;
    let Some(last) = last.into_iter().next() else {
        return Ok(Pruned {
            removed: 0,
            anchor: report.anchor,
        });
    };
    let anchor = Link {
        seq: last.seq.unwrap_or(0),
        hash: last.hash.unwrap_or_default(),
    };
    let removed = tx
        .delete(&db.audit_log, doc! { "seq": { "$lte": anchor.seq } })
        .await?;
    let moved = tx
        .update(
            &db.meta,
            doc! { "_id": CHAIN, "anchor_seq": report.anchor.seq },
            doc! { "$set": { "anchor_seq": anchor.seq, "anchor_hash": &anchor.hash } },
        )
        .await?;
    if !moved {
        return Err(Fail::Retry);
    }
    Ok(Pruned { removed, anchor })
}

/// Makes the chain document if it is missing (a new database, or one from before the chain).
pub(super) async fn ensure_chain(db: &Db) -> Result<(), EngineError> {
    db.meta
        .update_one(
            doc! { "_id": CHAIN },
            doc! { "$setOnInsert": {
                "head_seq": 0_i64, "head_hash": GENESIS, "anchor_seq": 0_i64, "anchor_hash": GENESIS,
            } },
        )
        .upsert(true)
        .await
        .map_err(db_error)?;
    Ok(())
}
