//! What every node committed to a shared store (MongoDB), delivered to this node's actors: tasks
//! to offer or stop offering, tasks that became final, config changes, bans, revoked tokens. The
//! store's change stream is the source (see `store/mongo/watch.rs`), so a node hears of its own
//! commits too; every receiver takes a change it already knows as a no-op. The feed's events
//! come this way as well (the FeedHub of a shared store delivers only what the log gives back). The embedded store is
//! one node's, and has no changes to follow.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use crate::config_actor::{ConfigActor, Stored};
use crate::dispatcher::{Dispatcher, Recover, TaskFinal, TaskPending, TaskTaken};
use crate::domain::Principal;
use crate::feed::{Audience, Deliver, FeedHub};
use crate::qa::comparator::BanList;
use crate::slot::Slot;
use crate::store::Change;

/// Who hears what.
pub struct Listeners {
    pub dispatcher: Slot<Dispatcher>,
    pub feed: Slot<FeedHub>,
    pub config: crate::meter::Metered<ConfigActor>,
    pub banned: BanList,
    /// The engine's token cache.
    pub tokens: Arc<RwLock<HashMap<String, Principal>>>,
}

/// Follows `changes` until the store stops sending them.
pub fn follow(mut changes: mpsc::Receiver<Change>, to: Listeners) {
    actix::spawn(async move {
        while let Some(change) = changes.recv().await {
            deliver(&to, change);
        }
        tracing::info!("cluster: the store's changes ended");
    });
}

fn deliver(to: &Listeners, change: Change) {
    match change {
        Change::Pending(task) => to.dispatcher.do_send(TaskPending::from(task)),
        Change::Assigned { task_id } => to.dispatcher.do_send(TaskTaken { task_id }),
        Change::Final { task_id } => to.dispatcher.do_send(TaskFinal { task_id }),
        Change::Resync(tasks) => to.dispatcher.do_send(Recover(tasks)),
        Change::Config { key, stored } => to.config.do_send(Stored { key, stored }),
        Change::Banned { worker_id } => {
            if let Ok(mut banned) = to.banned.write() {
                banned.insert(worker_id);
            }
        }
        Change::Event {
            id,
            buyer,
            event,
            data,
        } => to.feed.do_send(Deliver {
            id,
            audience: Audience::from_key(buyer),
            event,
            data,
        }),
        Change::TokenRevoked { token_hash } => {
            if let Ok(mut tokens) = to.tokens.write() {
                tokens.remove(&token_hash);
            }
        }
    }
}
