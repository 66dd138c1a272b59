//! ConfigActor: owns the platform config. An admin's change is validated, stored (versioned and
//! audit-logged in one transaction) and then swapped into the shared [`ConfigHandle`] that every
//! actor and handler reads, so it is in force for the very next request. Changes are applied one
//! at a time, so two admins cannot interleave a read-modify-write.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;
use serde_json::Value;

use crate::config::{ConfigHandle, PlatformConfig, normalise_doc};
use crate::error::EngineError;
use crate::store::{Store, StoredConfig};

pub struct ConfigActor {
    store: Arc<dyn Store>,
    handle: ConfigHandle,
    docs: BTreeMap<String, StoredConfig>,
}

impl ConfigActor {
    pub fn new(
        store: Arc<dyn Store>,
        handle: ConfigHandle,
        docs: BTreeMap<String, StoredConfig>,
    ) -> Self {
        ConfigActor {
            store,
            handle,
            docs,
        }
    }

    /// Seeds missing documents from the platform TOML, then loads and compiles them all.
    pub async fn load(
        store: &Arc<dyn Store>,
        platform_toml: &str,
    ) -> Result<(PlatformConfig, BTreeMap<String, StoredConfig>), EngineError> {
        let defaults = PlatformConfig::docs_from_toml(platform_toml)?;
        let added = store.seed_config(defaults, crate::clock::now_ms()).await?;
        if added > 0 {
            tracing::info!(added, "seeded platform config documents");
        }
        let docs = store.load_config().await?;
        let cfg = compile(&docs)?;
        Ok((cfg, docs))
    }
}

fn compile(docs: &BTreeMap<String, StoredConfig>) -> Result<PlatformConfig, EngineError> {
    let raw = docs
        .iter()
        .map(|(k, d)| (k.clone(), (d.doc.clone(), d.version)))
        .collect();
    PlatformConfig::from_docs(&raw)
}

impl Actor for ConfigActor {
    type Context = Context<Self>;
}

crate::metered!(ConfigActor: GetConfig, Stored, PutConfig);

impl Handler<crate::meter::Inspect> for ConfigActor {
    type Result = crate::meter::State;
    fn handle(&mut self, _: crate::meter::Inspect, _: &mut Context<Self>) -> crate::meter::State {
        // Versions only: the documents themselves are at GET /api/admin/config/{key}.
        let docs: serde_json::Map<String, Value> = self
            .docs
            .iter()
            .map(|(k, d)| {
                (
                    k.clone(),
                    serde_json::json!({
                        "version": d.version,
                        "updated_at": crate::clock::rfc3339(d.updated_at_ms),
                    }),
                )
            })
            .collect();
        crate::meter::State(serde_json::json!({ "documents": docs }))
    }
}

#[derive(Message)]
#[rtype(result = "Result<StoredConfig, EngineError>")]
pub struct GetConfig(pub String);

impl Handler<GetConfig> for ConfigActor {
    type Result = Result<StoredConfig, EngineError>;
    fn handle(&mut self, msg: GetConfig, _: &mut Context<Self>) -> Self::Result {
        self.docs
            .get(&msg.0)
            .cloned()
            .ok_or_else(|| crate::config::unknown_key(&msg.0))
    }
}

/// A document as some node stored it (heard through the store's changes): put in force here
/// too, unless this node already has that version or a later one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stored {
    pub key: String,
    pub stored: StoredConfig,
}

impl Handler<Stored> for ConfigActor {
    type Result = ();
    fn handle(&mut self, msg: Stored, _: &mut Context<Self>) {
        if self
            .docs
            .get(&msg.key)
            .is_some_and(|d| d.version >= msg.stored.version)
        {
            return;
        }
        let mut next = self.docs.clone();
        next.insert(msg.key.clone(), msg.stored);
        match compile(&next) {
            Ok(cfg) => {
                self.docs = next;
                self.handle.set(cfg);
                tracing::info!(key = %msg.key, "config: a change made on another node is in force");
            }
            Err(e) => {
                tracing::error!(key = %msg.key, error = %e.for_operator(), "config: a stored change does not compile; keeping the current one")
            }
        }
    }
}

#[derive(Message)]
#[rtype(result = "Result<StoredConfig, EngineError>")]
pub struct PutConfig {
    pub key: String,
    pub doc: Value,
    /// The admin, and from where (for the audit log).
    pub by: crate::store::Who,
}

impl Handler<PutConfig> for ConfigActor {
    type Result = ResponseActFuture<Self, Result<StoredConfig, EngineError>>;

    fn handle(&mut self, msg: PutConfig, ctx: &mut Context<Self>) -> Self::Result {
        let expected_version = msg.doc.get("version").and_then(Value::as_i64);
        let checked = normalise_doc(&msg.key, msg.doc).and_then(|doc| {
            // The whole config must still compile with the new document in place.
            let mut next = self.docs.clone();
            let version = next.get(&msg.key).map_or(0, |d| d.version) + 1;
            next.insert(
                msg.key.clone(),
                StoredConfig {
                    doc: doc.clone(),
                    version,
                    updated_at_ms: 0,
                    updated_by: None,
                },
            );
            compile(&next).map(|_| doc)
        });
        let doc = match checked {
            Ok(doc) => doc,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let key = msg.key.clone();
        let fut = self.store.put_config(
            msg.key,
            doc,
            expected_version,
            msg.by,
            crate::clock::now_ms(),
        );
        // `wait`: no other message is handled until this change is stored and in force.
        let (tx, rx) = tokio::sync::oneshot::channel();
        ctx.wait(fut.into_actor(self).map(move |res, act, _| {
            let res = res.and_then(|stored| {
                act.docs.insert(key, stored.clone());
                act.handle.set(compile(&act.docs)?);
                Ok(stored)
            });
            let _ = tx.send(res);
        }));
        Box::pin(
            async move {
                rx.await
                    .unwrap_or_else(|_| Err(EngineError::internal("config change dropped")))
            }
            .into_actor(self),
        )
    }
}
