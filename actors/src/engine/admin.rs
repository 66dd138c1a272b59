//! What admins do: the platform config, credits, QA results and benchmarks, the audit, metrics.

use super::*;

impl Engine {
    pub async fn config_doc(&self, key: &str) -> Result<StoredConfig, EngineError> {
        self.config_actor
            .send(GetConfig(key.to_string()))
            .await
            .map_err(EngineError::internal)?
    }

    pub async fn put_config(
        &self,
        key: &str,
        doc: Value,
        by: &Who,
    ) -> Result<StoredConfig, EngineError> {
        self.config_actor
            .send(PutConfig {
                key: key.to_string(),
                doc,
                by: by.clone(),
            })
            .await
            .map_err(EngineError::internal)?
    }

    /// A document's versions, newest first: the one in force, then those before it (those
    /// stored before history was kept are not known).
    pub async fn config_history(&self, key: &str) -> Result<Vec<StoredConfig>, EngineError> {
        let current = self.config_doc(key).await?;
        let mut versions = self
            .store
            .config_history(key.to_string(), MAX_CONFIG_VERSIONS)
            .await?;
        if versions
            .first()
            .is_none_or(|v| v.version != current.version)
        {
            versions.insert(0, current);
        }
        Ok(versions)
    }

    /// Puts an earlier version back, as a new version: validated like any change (a document
    /// that no longer fits the rest of the config is refused) and audit-logged.
    pub async fn rollback_config(
        &self,
        key: &str,
        version: i64,
        by: &Who,
    ) -> Result<StoredConfig, EngineError> {
        let old = self
            .config_history(key)
            .await?
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| {
                EngineError::NotFound(format!("{key} has no stored version {version}"))
            })?;
        let stored = self.put_config(key, old.doc, by).await?;
        self.store
            .record_audit(
                by.clone(),
                "config.rollback".into(),
                serde_json::json!({ "key": key, "to_version": version, "new_version": stored.version }),
                now_ms(),
            )
            .await?;
        Ok(stored)
    }

    pub async fn admin_credit(
        &self,
        user_id: &UserId,
        amount_cents: i64,
        reason: &str,
        by: &Who,
        idem: Option<IdemKey>,
    ) -> Result<AdminCredited, EngineError> {
        if !(1..=MAX_PRICE_CENTS).contains(&amount_cents) {
            return Err(EngineError::validation_field(
                "amount_cents",
                format!("amount_cents must be between 1 and {MAX_PRICE_CENTS}"),
            ));
        }
        if reason.trim().is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(EngineError::validation_field(
                "reason",
                format!("a reason of 1 to {MAX_REASON_CHARS} characters is required"),
            ));
        }
        self.store
            .admin_credit(
                user_id.clone(),
                amount_cents,
                reason.to_string(),
                by.clone(),
                now_ms(),
                idem,
            )
            .await
    }

    // ---------- QA (admins) ----------

    /// Decided QA comparisons, newest first; `cursor` is the last page's `cursor`.
    pub async fn qa_results(
        &self,
        worker_id: Option<String>,
        verdict: Option<String>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<QaResult>, bool), EngineError> {
        if let Some(v) = &verdict
            && !matches!(v.as_str(), "pass" | "flag" | "fail")
        {
            return Err(EngineError::validation_field(
                "verdict",
                "verdict is one of pass, flag, fail",
            ));
        }
        let limit = limit.clamp(1, MAX_PAGE_ITEMS);
        let rows = self
            .store
            .qa_results(worker_id, verdict, cursor, limit + 1)
            .await?;
        Ok(page(rows, limit))
    }

    pub async fn qa_stats(&self) -> Result<QaStats, EngineError> {
        self.store.qa_stats().await
    }

    /// Puts a benchmark task (known answer, paid by the QA fund) in the queue; returns its id.
    pub async fn inject_benchmark(&self, inject: Inject) -> Result<String, EngineError> {
        self.comparator
            .send(inject)
            .await
            .map_err(EngineError::internal)?
    }

    pub async fn audit(&self) -> Result<AuditReport, EngineError> {
        self.store.audit().await
    }

    /// Audit-log entries, newest first, optionally of one action or one actor.
    pub async fn audit_log(
        &self,
        action: Option<String>,
        actor_id: Option<String>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<AuditEntry>, bool), EngineError> {
        let name = |b: u8| b.is_ascii_lowercase() || b == b'_' || b == b'.';
        if action
            .as_ref()
            .is_some_and(|a| a.len() > 64 || !a.bytes().all(name))
        {
            return Err(EngineError::validation_field(
                "action",
                "action is up to 64 of a-z, '_' and '.'",
            ));
        }
        if actor_id.as_ref().is_some_and(|a| a.chars().count() > 64) {
            return Err(EngineError::validation_field(
                "actor_id",
                "actor_id is at most 64 characters",
            ));
        }
        let limit = limit.clamp(1, MAX_PAGE_ITEMS);
        let rows = self
            .store
            .audit_log(AuditFilter {
                action,
                actor_id,
                before_seq: cursor,
                limit: limit + 1,
            })
            .await?;
        Ok(page(rows, limit))
    }

    /// Whether the audit log's hash chain is intact, from its anchor to its head.
    pub async fn verify_audit_log(&self) -> Result<ChainReport, EngineError> {
        self.store.verify_audit_log().await
    }

    pub async fn metrics_text(&self) -> String {
        let gauges = self.dispatcher.send(GetGauges).await.unwrap_or_default();
        self.metrics.render(gauges)
    }

    /// Makes the named actors (`feed_hub`, `dispatcher`, `qa_comparator`) panic, for the tests
    /// of the Supervisor's restarts. Debug builds only.
    #[cfg(debug_assertions)]
    pub fn crash(&self, actors: &[&str]) {
        use crate::slot::Crash;
        for a in actors {
            match *a {
                "feed_hub" => self.feed.do_send(Crash),
                "dispatcher" => self.dispatcher.do_send(Crash),
                "qa_comparator" => self.comparator.do_send(Crash),
                other => tracing::warn!(actor = other, "no such actor to crash"),
            }
        }
    }

    pub fn live_balance_actors(&self) -> usize {
        self.bank.live_actors()
    }
}
