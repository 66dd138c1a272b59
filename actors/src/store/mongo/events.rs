//! The feed's shared event log: the `events` collection. A node appends its events in order
//! (one writer, ordered batches); every node, itself included, reads them back from its change
//! stream and delivers them with an id made from the event's cluster time, so that all nodes
//! show the same events under the same ids. Events expire after [`KEEP_SECONDS`] (a TTL index):
//! the streams resume from their own rings, not from here.

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::*;

/// How long the collection keeps an event.
pub(super) const KEEP_SECONDS: u64 = 3_600;
/// Most events one insert carries.
const BATCH: usize = 512;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct EventDoc {
    #[serde(rename = "_id")]
    pub id: mongodb::bson::oid::ObjectId,
    /// The buyer whose stream it is for; absent for the public feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer: Option<String>,
    pub event: String,
    /// JSON text.
    pub data: String,
    /// For the TTL index.
    pub at: mongodb::bson::DateTime,
}

pub(super) struct MongoEventLog {
    tx: mpsc::UnboundedSender<EventDoc>,
}

impl MongoEventLog {
    pub fn start(events: Collection<EventDoc>) -> MongoEventLog {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write(events, rx));
        MongoEventLog { tx }
    }
}

impl EventLog for MongoEventLog {
    fn append(&self, buyer: Option<&str>, event: &str, data: &Value) {
        let doc = EventDoc {
            id: mongodb::bson::oid::ObjectId::new(),
            buyer: buyer.map(str::to_string),
            event: event.to_string(),
            data: data.to_string(),
            at: mongodb::bson::DateTime::now(),
        };
        let _ = self.tx.send(doc);
    }
}

/// Writes what is queued in order, in batches; while the database is away the batch is retried
/// (and later events wait behind it), so a node's events keep their order.
async fn write(events: Collection<EventDoc>, mut rx: mpsc::UnboundedReceiver<EventDoc>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let mut pause = Duration::from_millis(50);
        loop {
            match events.insert_many(&batch).ordered(true).await {
                Ok(_) => break,
                // A retried batch whose first attempt got through: the ids are already there.
                Err(e) if is_duplicate(&e) => break,
                Err(e) => {
                    tracing::warn!(error = %e, events = batch.len(), "store: cannot append feed events; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
        batch.clear();
    }
}

/// A cluster time as a feed id: seconds above, the operation's counter below. Grows with the
/// log's order, which every node reads the same.
pub(super) fn event_id(t: mongodb::bson::Timestamp) -> u64 {
    (u64::from(t.time) << 32) | u64::from(t.increment)
}
