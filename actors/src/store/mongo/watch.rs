//! One change stream on the database tells this node what every node commits: tasks that became
//! pending, assigned or final, config documents, bans, revoked tokens, and balances (the latter
//! go straight to the balance observer). If the stream breaks (the database went away) it is
//! reopened where it stopped; if the database no longer has that point, the node is handed every
//! live task again ([`Change::Resync`]).

use futures_util::StreamExt;
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType, ResumeToken};
use mongodb::options::FullDocumentType;
use tokio::sync::mpsc;

use super::*;

/// Changes waiting for the engine before the stream stops reading (backpressure).
const QUEUE: usize = 65_536;
/// The server's error for a resume point it no longer has.
const HISTORY_LOST: i32 = 286;

type Stream = ChangeStream<ChangeStreamEvent<Document>>;

/// Only what some node must act on; everything else stays on the server.
fn pipeline() -> Vec<Document> {
    vec![doc! { "$match": { "$or": [
        { "ns.coll": "tasks", "operationType": "insert" },
        { "ns.coll": "tasks", "updateDescription.updatedFields.status": { "$exists": true } },
        { "ns.coll": "platform_config", "operationType": { "$in": ["insert", "update", "replace"] } },
        { "ns.coll": "workers", "updateDescription.updatedFields.banned_at": { "$exists": true } },
        { "ns.coll": "tokens", "operationType": "delete" },
        { "ns.coll": "balances", "operationType": { "$in": ["insert", "update", "replace"] } },
        { "ns.coll": "events", "operationType": "insert" },
    ] } }]
}

async fn open(db: &mongodb::Database, resume: Option<ResumeToken>) -> Result<Stream, DbError> {
    db.watch()
        .pipeline(pipeline())
        .full_document(FullDocumentType::UpdateLookup)
        .resume_after(resume)
        .await
}

/// Opens the stream now (so that nothing committed after this call is missed) and follows it.
pub(super) async fn start(inner: Arc<Inner>) -> Result<mpsc::Receiver<Change>, EngineError> {
    let stream = open(&inner.database, None).await.map_err(db_error)?;
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(follow(inner, stream, tx));
    Ok(rx)
}

async fn follow(inner: Arc<Inner>, mut stream: Stream, tx: mpsc::Sender<Change>) {
    let mut resume = stream.resume_token();
    let mut pause = Duration::from_millis(100);
    // Feed ids: from the cluster time, and strictly growing even if two events share one.
    let mut last_event_id = 0_u64;
    loop {
        match stream.next().await {
            Some(Ok(event)) => {
                resume = stream.resume_token();
                pause = Duration::from_millis(100);
                for mut change in inner.translate(event).await {
                    if let Change::Event { id, .. } = &mut change {
                        *id = (*id).max(last_event_id + 1);
                        last_event_id = *id;
                    }
                    if tx.send(change).await.is_err() {
                        return; // the engine stopped
                    }
                }
            }
            failed => {
                match failed {
                    Some(Err(e)) => tracing::warn!(error = %e, "store: change stream broke"),
                    _ => tracing::warn!("store: change stream ended"),
                }
                stream = loop {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    match open(&inner.database, resume.clone()).await {
                        Ok(s) => {
                            tracing::info!("store: change stream resumed");
                            break s;
                        }
                        Err(e) if matches!(&*e.kind, ErrorKind::Command(c) if c.code == HISTORY_LOST) =>
                        {
                            tracing::warn!(
                                "store: change stream history lost; resyncing the live tasks"
                            );
                            resume = None;
                            let Ok(s) = open(&inner.database, None).await else {
                                continue;
                            };
                            let live = inner.live_tasks().await;
                            match live {
                                Ok(tasks) => {
                                    if tx.send(Change::Resync(tasks)).await.is_err() {
                                        return;
                                    }
                                    break s;
                                }
                                Err(e) => tracing::warn!(error = %e, "store: resync failed"),
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "store: change stream not back yet"),
                    }
                };
            }
        }
    }
}

impl Inner {
    async fn live_tasks(&self) -> Result<Vec<LiveTask>, DbError> {
        let mut cursor = self
            .db
            .tasks
            .find(doc! { "status": { "$in": ["pending", "assigned"] } })
            .sort(doc! { "seq": 1 })
            .await?;
        let mut out = Vec::new();
        while cursor.advance().await? {
            out.push(cursor.deserialize_current()?.live());
        }
        Ok(out)
    }

    /// The changes one event means (none for what nobody acts on).
    async fn translate(&self, event: ChangeStreamEvent<Document>) -> Vec<Change> {
        let Some(coll) = event.ns.as_ref().and_then(|ns| ns.coll.clone()) else {
            return Vec::new();
        };
        let full = event.full_document.as_ref();
        match coll.as_str() {
            "tasks" => {
                let Some(task) = decode::<TaskDoc>(full) else {
                    return Vec::new();
                };
                match task.status.as_str() {
                    "pending" => vec![Change::Pending(task.live())],
                    "assigned" => vec![Change::Assigned { task_id: task.id }],
                    _ => vec![Change::Final { task_id: task.id }],
                }
            }
            "platform_config" => decode::<ConfigDoc>(full)
                .and_then(|c| c.stored().ok())
                .map(|(key, stored)| Change::Config { key, stored })
                .into_iter()
                .collect(),
            "workers" => decode::<WorkerDoc>(full)
                .filter(|w| w.banned_at.is_some())
                .map(|w| Change::Banned { worker_id: w.id })
                .into_iter()
                .collect(),
            "tokens" if event.operation_type == OperationType::Delete => event
                .document_key
                .as_ref()
                .and_then(|k| k.get_str("_id").ok())
                .map(|hash| Change::TokenRevoked {
                    token_hash: hash.to_string(),
                })
                .into_iter()
                .collect(),
            "balances" => {
                if let Some(b) = decode::<BalanceDoc>(full)
                    && self.observer.watches(&b.user_id)
                {
                    self.observer.observe(&[b.snapshot()]);
                }
                Vec::new()
            }
            "events" => {
                let Some(e) = decode::<events::EventDoc>(full) else {
                    return Vec::new();
                };
                let Ok(data) = serde_json::from_str(&e.data) else {
                    return Vec::new();
                };
                let id = event.cluster_time.map_or(0, events::event_id);
                vec![Change::Event {
                    id,
                    buyer: e.buyer,
                    event: e.event,
                    data,
                }]
            }
            _ => Vec::new(),
        }
    }
}

/// The document an event carries, if it has one this node can read.
fn decode<T: serde::de::DeserializeOwned>(full: Option<&Document>) -> Option<T> {
    match mongodb::bson::deserialize_from_document(full?.clone()) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, "store: undecodable change");
            None
        }
    }
}
