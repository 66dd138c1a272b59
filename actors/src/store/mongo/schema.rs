//! What the database must be (a replica set), the indexes, and the schema version.

use mongodb::IndexModel;
use mongodb::options::IndexOptions;

use super::*;

/// The version of the collections' shapes this binary writes.
pub(super) const SCHEMA_VERSION: i64 = 1;

/// Fails with a message an operator can act on when the server cannot be reached or cannot run
/// transactions.
pub(super) async fn check_server(db: &mongodb::Database, shown: &str) -> Result<(), EngineError> {
    let started = std::time::Instant::now();
    let hello = loop {
        match db.run_command(doc! { "hello": 1 }).await {
            Ok(hello) => break hello,
            Err(e) if started.elapsed() + SERVER_SELECTION > START_WAIT => {
                return Err(EngineError::internal(format!(
                    "cannot reach MongoDB at {shown} within {:?}: {e}",
                    started.elapsed()
                )));
            }
            Err(e) => tracing::warn!(error = %e, "store: MongoDB not reachable yet"),
        }
    };
    let replica_set = hello.get_str("setName").is_ok();
    let router = hello.get_str("msg").is_ok_and(|m| m == "isdbgrid");
    if !replica_set && !router {
        return Err(EngineError::internal(format!(
            "MongoDB at {shown} is a standalone server, and clawjobs needs transactions, which \
             need a replica set: start mongod with --replSet rs0 and run rs.initiate() once (a \
             one-member replica set is enough), then connect with ?replicaSet=rs0"
        )));
    }
    Ok(())
}

fn index(keys: Document) -> IndexModel {
    IndexModel::builder().keys(keys).build()
}

fn unique(keys: Document) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(IndexOptions::builder().unique(true).build())
        .build()
}

fn partial(keys: Document, filter: Document) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(
            IndexOptions::builder()
                .partial_filter_expression(filter)
                .build(),
        )
        .build()
}

/// Creates what is missing (indexes, platform account shards, the schema version) and refuses a
/// database a newer binary wrote. Safe to run on every start, from every node at once.
pub(super) async fn migrate(raw: &mongodb::Database, db: &Db) -> Result<(), EngineError> {
    let found = db
        .meta
        .find_one(doc! { "_id": "schema_version" })
        .await
        .map_err(db_error)?;
    let version = found.as_ref().and_then(|d| match d.get("value") {
        Some(Bson::Int64(v)) => Some(*v),
        Some(Bson::Int32(v)) => Some(i64::from(*v)),
        _ => None,
    });
    if let Some(v) = version.filter(|v| *v > SCHEMA_VERSION) {
        return Err(EngineError::internal(format!(
            "the database {} has schema version {v}, newer than this binary's {SCHEMA_VERSION}",
            raw.name()
        )));
    }
    // Collections are created before any transaction needs them (creating one inside a
    // transaction is not allowed everywhere).
    let existing = raw.list_collection_names().await.map_err(db_error)?;
    for name in [
        "meta",
        "counters",
        "users",
        "tokens",
        "workers",
        "balances",
        "accounts",
        "transactions",
        "tasks",
        "claims",
        "lots",
        "idempotency",
        "platform_config",
        "qa_groups",
        "qa_results",
        "qa_outcomes",
        "worker_notices",
        "audit_log",
        "events",
        "deposits",
        "provider_events",
        "email_codes",
        "payouts",
        "outbox",
        "withdrawals",
        "bounties",
        "bounty_submissions",
        "disputes",
        "bounty_votes",
        "notifications",
        "webhooks",
        "webhook_deliveries",
        "referral_codes",
        "referrals",
        "task_events",
        "config_history",
    ] {
        if !existing.iter().any(|e| e == name) {
            match raw.create_collection(name).await {
                Ok(()) => {}
                // Another node created it first.
                Err(e) if matches!(&*e.kind, ErrorKind::Command(c) if c.code == 48) => {}
                Err(e) => return Err(db_error(e)),
            }
        }
    }
    let string = doc! { "$type": "string" };
    let steps: Vec<(&str, Vec<IndexModel>)> = vec![
        (
            "users",
            vec![
                IndexModel::builder()
                    .keys(doc! { "email": 1 })
                    .options(
                        IndexOptions::builder()
                            .unique(true)
                            .partial_filter_expression(doc! { "email": string.clone() })
                            .build(),
                    )
                    .build(),
            ],
        ),
        ("tokens", vec![index(doc! { "role": 1, "created_at": 1 })]),
        (
            "tasks",
            vec![
                unique(doc! { "seq": 1 }),
                index(doc! { "buyer_id": 1, "seq": -1 }),
                // The queue: pending tasks in order (the seed's partial index).
                partial(doc! { "status": 1, "seq": 1 }, doc! { "status": "pending" }),
                // Deadlines of assigned tasks, and what each worker holds.
                partial(doc! { "deadline": 1 }, doc! { "status": "assigned" }),
                partial(doc! { "worker_id": 1 }, doc! { "status": "assigned" }),
                partial(
                    doc! { "qa_group": 1, "seq": 1 },
                    doc! { "qa_group": string.clone() },
                ),
                // Ended tasks whose content is still to purge (rules::retention), by due time.
                partial(
                    doc! { "purge_after": 1, "_id": 1 },
                    doc! { "purge_after": { "$type": "long" } },
                ),
            ],
        ),
        (
            "claims",
            vec![
                index(doc! { "task_id": 1, "worker_id": 1 }),
                partial(
                    doc! { "qa_key": 1, "worker_id": 1 },
                    doc! { "qa_key": string.clone() },
                ),
            ],
        ),
        (
            "lots",
            vec![
                unique(doc! { "task_id": 1 }),
                partial(doc! { "release_at": 1 }, doc! { "status": "frozen" }),
                index(doc! { "worker_id": 1, "created_at": 1 }),
            ],
        ),
        ("transactions", vec![index(doc! { "task_id": 1 })]),
        ("accounts", vec![index(doc! { "account": 1 })]),
        (
            "qa_groups",
            vec![partial(
                doc! { "state": 1, "created_at": 1 },
                doc! { "state": { "$in": ["open", "tiebreak"] } },
            )],
        ),
        (
            "qa_results",
            vec![
                unique(doc! { "group_id": 1 }),
                index(doc! { "verdict": 1, "_id": -1 }),
            ],
        ),
        (
            "qa_outcomes",
            vec![
                index(doc! { "worker_id": 1, "result_seq": -1 }),
                index(doc! { "verdict": 1, "worker_id": 1 }),
            ],
        ),
        (
            "workers",
            vec![
                partial(
                    doc! { "banned_at": 1 },
                    doc! { "banned_at": { "$type": "long" } },
                ),
                // Validators are chosen by tier (not by last_seen too: every claim changes it).
                index(doc! { "tier": 1 }),
            ],
        ),
        (
            "worker_notices",
            vec![index(doc! { "worker_id": 1, "created_at": -1 })],
        ),
        (
            "audit_log",
            vec![index(doc! { "created_at": 1 }), index(doc! { "seq": 1 })],
        ),
        ("task_events", vec![index(doc! { "task_id": 1, "_id": 1 })]),
        (
            "config_history",
            vec![index(doc! { "key": 1, "version": -1 })],
        ),
        ("idempotency", vec![index(doc! { "created_at": 1 })]),
        ("referral_codes", vec![unique(doc! { "user_id": 1 })]),
        ("referrals", vec![index(doc! { "referrer_id": 1 })]),
        (
            "withdrawals",
            vec![
                unique(doc! { "seq": 1 }),
                index(doc! { "worker_id": 1, "created_at": -1 }),
                index(doc! { "status": 1, "seq": -1 }),
            ],
        ),
        (
            "bounties",
            vec![
                unique(doc! { "seq": 1 }),
                index(doc! { "status": 1, "seq": -1 }),
                index(doc! { "buyer_id": 1, "seq": -1 }),
            ],
        ),
        (
            "bounty_submissions",
            vec![
                unique(doc! { "bounty_id": 1, "worker_id": 1 }),
                unique(doc! { "bounty_id": 1, "position": 1 }),
                index(doc! { "review_due": 1 }),
                index(doc! { "warning_due": 1 }),
                index(doc! { "worker_id": 1 }),
                index(doc! { "invite_due": 1 }),
            ],
        ),
        (
            "bounty_votes",
            vec![
                index(doc! { "validator_id": 1, "approve": 1, "asked_at": 1 }),
                index(doc! { "validator_id": 1, "with_majority": 1 }),
                index(doc! { "submission_id": 1 }),
                index(doc! { "bounty_id": 1, "approve": 1 }),
            ],
        ),
        (
            "notifications",
            vec![
                unique(doc! { "seq": 1 }),
                index(doc! { "user_id": 1, "seq": -1 }),
                index(doc! { "user_id": 1, "read_at": 1, "seq": -1 }),
            ],
        ),
        ("webhooks", vec![index(doc! { "buyer_id": 1, "events": 1 })]),
        (
            "webhook_deliveries",
            vec![
                unique(doc! { "seq": 1 }),
                index(doc! { "webhook_id": 1, "seq": -1 }),
                index(doc! { "status": 1, "next_at": 1 }),
            ],
        ),
        (
            "disputes",
            vec![
                unique(doc! { "seq": 1 }),
                unique(doc! { "submission_id": 1 }),
                index(doc! { "status": 1, "seq": -1 }),
                index(doc! { "bounty_id": 1, "status": 1 }),
            ],
        ),
        (
            "deposits",
            vec![
                unique(doc! { "session_id": 1 }),
                unique(doc! { "seq": 1 }),
                index(doc! { "buyer_id": 1, "seq": -1 }),
                index(doc! { "status": 1, "seq": -1 }),
            ],
        ),
        (
            "events",
            vec![
                IndexModel::builder()
                    .keys(doc! { "at": 1 })
                    .options(
                        IndexOptions::builder()
                            .expire_after(Duration::from_secs(super::events::KEEP_SECONDS))
                            .build(),
                    )
                    .build(),
            ],
        ),
    ];
    for (collection, models) in steps {
        raw.collection::<Document>(collection)
            .create_indexes(models)
            .await
            .map_err(|e| {
                EngineError::internal(format!("creating the indexes of {collection}: {e}"))
            })?;
    }
    for counter in [
        "tasks",
        "qa_results",
        "deposits",
        "withdrawals",
        "outbox",
        "bounties",
        "disputes",
        "notifications",
        "webhook_deliveries",
    ] {
        db.counters
            .update_one(
                doc! { "_id": counter },
                doc! { "$setOnInsert": { "n": 0_i64 } },
            )
            .upsert(true)
            .await
            .map_err(db_error)?;
    }
    audit_log::ensure_chain(db).await?;
    if version.is_none() {
        db.meta
            .update_one(
                doc! { "_id": "schema_version" },
                doc! { "$setOnInsert": { "value": SCHEMA_VERSION } },
            )
            .upsert(true)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}
