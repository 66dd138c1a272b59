//! The platform config documents: versioned, audit-logged.

use super::*;

pub(super) fn load_config(c: &Connection) -> Result<BTreeMap<String, StoredConfig>, EngineError> {
    let mut s = c
        .prepare("SELECT key, doc, version, updated_at, updated_by FROM config")
        .map_err(db_err)?;
    let rows = s
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
            ))
        })
        .map_err(db_err)?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (key, doc, version, updated_at_ms, updated_by) = row.map_err(db_err)?;
        let doc = serde_json::from_str(&doc).map_err(json_err)?;
        out.insert(
            key,
            StoredConfig {
                doc,
                version,
                updated_at_ms,
                updated_by,
            },
        );
    }
    Ok(out)
}

pub(super) fn seed_config(
    tx: &mut Tx<'_>,
    docs: BTreeMap<String, Value>,
    now_ms: i64,
) -> Result<u32, EngineError> {
    let mut added = 0;
    for (key, doc) in docs {
        let n = tx
            .conn
            .prepare_cached("INSERT OR IGNORE INTO config (key, doc, version, updated_at, updated_by) VALUES (?1, ?2, 1, ?3, 'seed')")
            .and_then(|mut s| s.execute(params![key, doc.to_string(), now_ms]))
            .map_err(db_err)? as u32;
        if n > 0 {
            tx.config_version(&key, 1, &doc, now_ms, "seed")?;
        }
        added += n;
    }
    Ok(added)
}

impl Tx<'_> {
    fn config_version(
        &self,
        key: &str,
        version: i64,
        doc: &Value,
        now_ms: i64,
        by: &str,
    ) -> Result<(), EngineError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO config_history (key, version, doc, updated_at, updated_by)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![key, version, doc.to_string(), now_ms, by]))
            .map_err(db_err)?;
        Ok(())
    }
}

pub(super) fn config_history(
    c: &Connection,
    key: String,
    limit: u32,
) -> Result<Vec<StoredConfig>, EngineError> {
    let mut s = c
        .prepare_cached(
            "SELECT doc, version, updated_at, updated_by FROM config_history
             WHERE key = ?1 ORDER BY version DESC LIMIT ?2",
        )
        .map_err(db_err)?;
    let rows = s
        .query_map(params![key, limit], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (doc, version, updated_at_ms, updated_by) = row.map_err(db_err)?;
        out.push(StoredConfig {
            doc: serde_json::from_str(&doc).map_err(json_err)?,
            version,
            updated_at_ms,
            updated_by,
        });
    }
    Ok(out)
}

pub(super) fn put_config(
    tx: &mut Tx<'_>,
    key: String,
    doc: Value,
    expected_version: Option<i64>,
    by: Who,
    now_ms: i64,
) -> Result<StoredConfig, EngineError> {
    let current: Option<i64> = tx
        .conn
        .prepare_cached("SELECT version FROM config WHERE key = ?1")
        .and_then(|mut s| s.query_row(params![key], |r| r.get(0)).optional())
        .map_err(db_err)?;
    let current = current.unwrap_or(0);
    if let Some(expected) = expected_version.filter(|v| *v != current) {
        return Err(EngineError::Conflict(format!(
            "config {key} is at version {current}, not {expected}: read it again and reapply your change"
        )));
    }
    let version = current + 1;
    tx.conn
        .prepare_cached(
            "INSERT INTO config (key, doc, version, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (key) DO UPDATE SET doc = excluded.doc, version = excluded.version,
                updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .and_then(|mut s| s.execute(params![key, doc.to_string(), version, now_ms, by.id]))
        .map_err(db_err)?;
    tx.config_version(&key, version, &doc, now_ms, &by.id)?;
    tx.audit(
        &by,
        "config.put",
        &serde_json::json!({ "key": key, "version": version, "doc": doc }),
        now_ms,
    )?;
    Ok(StoredConfig {
        doc,
        version,
        updated_at_ms: now_ms,
        updated_by: Some(by.id),
    })
}
