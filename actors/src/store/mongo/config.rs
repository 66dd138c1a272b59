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
            tx.config_version(key, 1, doc, now_ms, "seed").await?;
            added += 1;
        }
    }
    Ok(added)
}

/// One version of a config document.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(super) struct ConfigVersionDoc {
    /// `{key}/{version}`.
    #[serde(rename = "_id")]
    pub id: String,
    pub key: String,
    pub version: i64,
    /// JSON text.
    pub doc: String,
    pub updated_at: i64,
    pub updated_by: Option<String>,
}

impl Tx<'_> {
    async fn config_version(
        &mut self,
        key: &str,
        version: i64,
        doc: &Value,
        now_ms: i64,
        by: &str,
    ) -> R<()> {
        let db = self.db;
        db.config_history
            .replace_one(
                doc! { "_id": format!("{key}/{version}") },
                ConfigVersionDoc {
                    id: format!("{key}/{version}"),
                    key: key.to_string(),
                    version,
                    doc: doc.to_string(),
                    updated_at: now_ms,
                    updated_by: Some(by.to_string()),
                },
            )
            .upsert(true)
            .session(&mut *self.s)
            .await?;
        Ok(())
    }
}

pub(super) async fn config_history(tx: &mut Tx<'_>, key: &str, limit: u32) -> R<Vec<StoredConfig>> {
    let db = tx.db;
    tx.many(
        &db.config_history,
        doc! { "key": key },
        doc! { "version": -1 },
        Some(i64::from(limit.max(1))),
    )
    .await?
    .into_iter()
    .map(|v| {
        Ok(StoredConfig {
            doc: serde_json::from_str(&v.doc).map_err(|e| Fail::Engine(json_err(e)))?,
            version: v.version,
            updated_at_ms: v.updated_at,
            updated_by: v.updated_by,
        })
    })
    .collect()
}

pub(super) async fn put_config(
    tx: &mut Tx<'_>,
    key: &str,
    doc: &Value,
    expected_version: Option<i64>,
    by: &Who,
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
                "doc": doc.to_string(), "version": version, "updated_at": now_ms, "updated_by": &by.id,
            } },
        )
        .upsert(true)
        .session(&mut *tx.s)
        .await?;
    tx.config_version(key, version, doc, now_ms, &by.id).await?;
    tx.audit(
        by,
        "config.put",
        &serde_json::json!({ "key": key, "version": version, "doc": doc }),
        now_ms,
    )
    .await?;
    Ok(StoredConfig {
        doc: doc.clone(),
        version,
        updated_at_ms: now_ms,
        updated_by: Some(by.id.clone()),
    })
}
