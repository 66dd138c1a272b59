//! The ledger's own check of the money invariants, in one snapshot (a read-only transaction).

use std::collections::HashMap;

use super::accounts::int;
use super::*;

/// A platform account's balance: the sum of its shards.
pub(super) async fn account_balance(tx: &mut Tx<'_>, account: &str) -> R<i64> {
    let db = tx.db;
    let shards = tx
        .many(
            &db.accounts,
            doc! { "account": account },
            doc! { "_id": 1 },
            None,
        )
        .await?;
    Ok(shards.iter().map(|s| s.balance_cents).sum())
}

/// `{_id, sum}` rows of a pipeline, as a map.
fn sums(rows: &[Document]) -> BTreeMap<String, i64> {
    rows.iter()
        .filter_map(|d| Some((d.get_str("_id").ok()?.to_string(), int(d, "sum"))))
        .collect()
}

pub(super) async fn audit_snapshot(tx: &mut Tx<'_>) -> R<AuditReport> {
    let db = tx.db;
    let mut violations = Vec::new();
    // Stored balances of every account.
    let mut stored: BTreeMap<String, i64> = BTreeMap::new();
    let balances = tx
        .many(&db.balances, doc! {}, doc! { "_id": 1 }, None)
        .await?;
    for b in &balances {
        stored.insert(ledger::available(&b.user_id), b.available_cents);
        stored.insert(ledger::frozen(&b.user_id), b.frozen_cents);
    }
    for account in ledger::PLATFORM_ACCOUNTS {
        stored.insert(account.to_string(), 0);
    }
    for shard in tx
        .many(&db.accounts, doc! {}, doc! { "_id": 1 }, None)
        .await?
    {
        if shard.balance_cents < 0 && !ledger::may_go_negative(&shard.account) {
            violations.push(format!(
                "shard {} is negative: {}",
                shard.id, shard.balance_cents
            ));
        }
        *stored.entry(shard.account).or_default() += shard.balance_cents;
    }
    // Invariant 4: replaying the postings gives the stored balances.
    let replayed = sums(
        &tx.aggregate(
            &db.transactions,
            vec![
                doc! { "$unwind": "$postings" },
                doc! { "$group": { "_id": "$postings.account", "sum": { "$sum": "$postings.amount_cents" } } },
            ],
        )
        .await?,
    );
    let sum_cents = ledger::check_balances(&stored, &replayed, &mut violations);
    // Every entry balances.
    let unbalanced = tx
        .aggregate(
            &db.transactions,
            vec![
                doc! { "$project": { "sum": { "$sum": "$postings.amount_cents" } } },
                doc! { "$match": { "sum": { "$ne": 0_i64 } } },
            ],
        )
        .await?;
    for e in &unbalanced {
        let id = e
            .get_object_id("_id")
            .map(|o| o.to_hex())
            .unwrap_or_default();
        violations.push(format!("entry {id} is unbalanced by {}", int(e, "sum")));
    }
    // Invariant 3: live tasks hold exactly their price in escrow, others nothing.
    let mut held: HashMap<String, i64> = sums(
        &tx.aggregate(
            &db.transactions,
            vec![
                doc! { "$match": { "task_id": { "$type": "string" } } },
                doc! { "$unwind": "$postings" },
                doc! { "$match": { "postings.account": ledger::ESCROW } },
                doc! { "$group": { "_id": "$task_id", "sum": { "$sum": "$postings.amount_cents" } } },
            ],
        )
        .await?,
    )
    .into_iter()
    .collect();
    let tasks = tx.many(&db.tasks, doc! {}, doc! { "seq": 1 }, None).await?;
    for t in &tasks {
        let expected = if matches!(t.status.as_str(), "pending" | "assigned") {
            t.price_cents
        } else {
            0
        };
        let h = held.remove(&t.id).unwrap_or(0);
        if h != expected {
            violations.push(format!(
                "task {} holds {h} in escrow, expected {expected}",
                t.id
            ));
        }
    }
    for (task, h) in held.into_iter().filter(|(_, h)| *h != 0) {
        violations.push(format!("task {task} holds {h} in escrow, expected 0"));
    }
    // Invariant 3, for bounties: an open bounty holds exactly its reward in bounty escrow,
    // every other none.
    let mut in_bounty_escrow: HashMap<String, i64> = sums(
        &tx.aggregate(
            &db.transactions,
            vec![
                doc! { "$match": { "task_id": { "$type": "string" } } },
                doc! { "$unwind": "$postings" },
                doc! { "$match": { "postings.account": ledger::BOUNTY_ESCROW } },
                doc! { "$group": { "_id": "$task_id", "sum": { "$sum": "$postings.amount_cents" } } },
            ],
        )
        .await?,
    )
    .into_iter()
    .collect();
    for b in tx
        .many(&db.bounties, doc! {}, doc! { "seq": 1 }, None)
        .await?
    {
        let expected = if b.status == "open" {
            b.reward_cents
        } else {
            0
        };
        let h = in_bounty_escrow.remove(&b.id).unwrap_or(0);
        if h != expected {
            violations.push(format!(
                "bounty {} holds {h} in escrow, expected {expected}",
                b.id
            ));
        }
    }
    for (bounty, h) in in_bounty_escrow.into_iter().filter(|(_, h)| *h != 0) {
        violations.push(format!("bounty {bounty} holds {h} in escrow, expected 0"));
    }
    // Invariant 5: frozen balances are the sum of frozen lots.
    let lots = sums(
        &tx.aggregate(
            &db.lots,
            vec![
                doc! { "$match": { "status": { "$in": ["frozen", "held"] } } },
                doc! { "$group": { "_id": "$worker_id", "sum": { "$sum": "$amount_cents" } } },
            ],
        )
        .await?,
    );
    for b in &balances {
        let l = lots.get(&b.user_id).copied().unwrap_or(0);
        if b.frozen_cents != l {
            violations.push(format!(
                "{}: frozen {} but frozen lots sum to {l}",
                b.user_id, b.frozen_cents
            ));
        }
    }
    let entries = tx.count(&db.transactions, doc! {}).await?;
    Ok(AuditReport {
        ok: violations.is_empty(),
        sum_cents,
        accounts: stored.len() as u64,
        entries,
        violations,
    })
}
