//! The platform config documents (`platform_config`): versioned, audit-logged.

use super::*;

pub(super) async fn load_config(tx: &mut Tx<'_>) -> R<BTreeMap<String, StoredConfig>> {
    let db = tx.db;
    let found = tx
        .many(&db.config, doc! {}, doc! { "_id": 1 }, None)
        .await?;
    found
        .into_iter()
        .map(|c| c.stored().map_err(Fail::Engine))
        .collect()
}

pub(super) async fn seed_config(
    tx: &mut Tx<'_>,
    docs: &BTreeMap<String, Value>,
    now_ms: i64,
) -> R<u32> {
    let db = tx.db;
    let mut added = 0;
    for (key, doc) in docs {
        // Only what is missing: a document an admin changed stays as it is.
        let result = db
            .config
            .update_one(
                doc! { "_id": key },
                doc! { "$setOnInsert": {
                    "doc": doc.to_string(), "version": 1_i64, "updated_at": now_ms, "updated_by": "seed",
                } },
            )
            .upsert(true)
            .session(&mut *tx.s)
            .await?;
        if result.upserted_id.is_some() {
            added += 1;
        }
    }
    Ok(added)
}

pub(super) async fn put_config(
    tx: &mut Tx<'_>,
    key: &str,
    doc: &Value,
    expected_version: Option<i64>,
    admin_id: &str,
    now_ms: i64,
) -> R<StoredConfig> {
    let db = tx.db;
    let current = tx
        .one(&db.config, doc! { "_id": key })
        .await?
        .map_or(0, |c| c.version);
    if let Some(expected) = expected_version.filter(|v| *v != current) {
        return Err(Fail::Engine(EngineError::Conflict(format!(
            "config {key} is at version {current}, not {expected}: read it again and reapply your change"
        ))));
    }
    let version = current + 1;
    db.config
        .update_one(
            doc! { "_id": key },
            doc! { "$set": {
                "doc": doc.to_string(), "version": version, "updated_at": now_ms, "updated_by": admin_id,
            } },
        )
        .upsert(true)
        .session(&mut *tx.s)
        .await?;
    tx.audit(
        admin_id,
        "config.put",
        &serde_json::json!({ "key": key, "version": version, "doc": doc }),
        now_ms,
    )
    .await?;
    Ok(StoredConfig {
        doc: doc.clone(),
        version,
        updated_at_ms: now_ms,
        updated_by: Some(admin_id.to_string()),
    })
}
