//! The ledger's own check of the money invariants, in one read snapshot.

use super::*;

pub(super) fn audit_snapshot(c: &Connection) -> Result<AuditReport, EngineError> {
    let mut violations = Vec::new();
    let q = |sql: &str| -> Result<Vec<(String, i64, i64)>, EngineError> {
        let mut s = c.prepare(sql).map_err(db_err)?;
        let rows = s
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
    };
    // Stored balances of every account, as (account, stored, 0).
    let mut stored: BTreeMap<String, i64> = BTreeMap::new();
    for (user, available, frozen) in
        q("SELECT user_id, available_cents, frozen_cents FROM balances")?
    {
        stored.insert(ledger::available(&user), available);
        stored.insert(ledger::frozen(&user), frozen);
    }
    for (id, balance, _) in q("SELECT id, balance_cents, 0 FROM accounts")? {
        stored.insert(id, balance);
    }
    // Invariant 4: replaying the postings gives the stored balances.
    let replayed: BTreeMap<String, i64> =
        q("SELECT account, sum(amount_cents), count(*) FROM postings GROUP BY account")?
            .into_iter()
            .map(|(a, s, _)| (a, s))
            .collect();
    let sum_cents = ledger::check_balances(&stored, &replayed, &mut violations);
    // Every entry balances.
    for (entry, sum, _) in q(
        "SELECT entry_id, sum(amount_cents), 0 FROM postings GROUP BY entry_id HAVING sum(amount_cents) <> 0",
    )? {
        violations.push(format!("entry {entry} is unbalanced by {sum}"));
    }
    // Invariant 3: live tasks hold exactly their price in escrow, others nothing.
    for (task, held, price) in q(
        "SELECT t.id, coalesce(e.held, 0), CASE WHEN t.status IN ('pending', 'assigned') THEN t.price_cents ELSE 0 END
         FROM tasks t LEFT JOIN (SELECT task_id, sum(amount_cents) AS held FROM postings
                                 WHERE account = 'platform:escrow' GROUP BY task_id) e ON e.task_id = t.id
         WHERE coalesce(e.held, 0) <> CASE WHEN t.status IN ('pending', 'assigned') THEN t.price_cents ELSE 0 END",
    )? {
        violations.push(format!("task {task} holds {held} in escrow, expected {price}"));
    }
    // Invariant 3, for bounties: an open bounty holds exactly its reward in bounty escrow,
    // every other none.
    for (bounty, held, reward) in q(
        "SELECT b.id, coalesce(e.held, 0), CASE WHEN b.status = 'open' THEN b.reward_cents ELSE 0 END
         FROM bounties b LEFT JOIN (SELECT task_id, sum(amount_cents) AS held FROM postings
                                   WHERE account = 'platform:bounty_escrow' GROUP BY task_id) e ON e.task_id = b.id
         WHERE coalesce(e.held, 0) <> CASE WHEN b.status = 'open' THEN b.reward_cents ELSE 0 END",
    )? {
        violations.push(format!("bounty {bounty} holds {held} in escrow, expected {reward}"));
    }
    // Invariant 5: frozen balances are the sum of frozen lots.
    for (user, frozen, lots) in q(
        "SELECT b.user_id, b.frozen_cents, coalesce(l.s, 0) FROM balances b
         LEFT JOIN (SELECT worker_id, sum(amount_cents) AS s FROM lots WHERE status IN ('frozen', 'held') GROUP BY worker_id) l
           ON l.worker_id = b.user_id
         WHERE b.frozen_cents <> coalesce(l.s, 0)",
    )? {
        violations.push(format!("{user}: frozen {frozen} but frozen lots sum to {lots}"));
    }
    let entries: i64 = c
        .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .map_err(db_err)?;
    Ok(AuditReport {
        ok: violations.is_empty(),
        sum_cents,
        accounts: stored.len() as u64,
        entries: entries as u64,
        violations,
    })
}
