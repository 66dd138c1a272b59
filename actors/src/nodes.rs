//! The node's three restartable actors — FeedHub, Dispatcher, QaComparator — and how each is
//! built from the store's state: at start, and again by the Supervisor after one panicked.
//!
//! What each loses and gets back: the Dispatcher rebuilds its index from the store's live tasks
//! (pending ones are offered again, assigned ones get their deadline timers back); workers parked
//! in it ask again (the engine and the WebSocket sessions retry a dropped claim). The FeedHub
//! starts a new id range above every id it gave out before, so a client resuming from an older
//! id is told `reset`. The QaComparator looks at every undecided group again.

use std::sync::Arc;

use crate::config::ConfigHandle;
use crate::dispatcher::{Dispatcher, Recover};
use crate::effects::Publisher;
use crate::error::EngineError;
use crate::feed::FeedHub;
use crate::metrics::Metrics;
use crate::qa::benchmarks::Benchmark;
use crate::qa::comparator::{BanList, Judge, QaComparator};
use crate::slot::Slot;
use crate::store::Store;

/// What the actors are built from.
#[derive(Clone)]
struct Parts {
    store: Arc<dyn Store>,
    config: ConfigHandle,
    metrics: Arc<Metrics>,
    benchmarks: Vec<Benchmark>,
    publisher: Publisher,
    /// Opens sensitive tasks' outputs for the comparator.
    keys: Option<Arc<crate::sealed::DataKeys>>,
}

#[derive(Clone)]
pub struct Nodes {
    pub feed: Slot<FeedHub>,
    pub dispatcher: Slot<Dispatcher>,
    pub comparator: Slot<QaComparator>,
    /// Tells all three (and the ban list) what commands caused.
    pub publisher: Publisher,
    parts: Parts,
}

impl Nodes {
    /// Starts the three actors, each on its own thread, and gives them the store's state.
    pub async fn start(
        store: Arc<dyn Store>,
        config: ConfigHandle,
        metrics: Arc<Metrics>,
        banned: BanList,
        benchmarks: Vec<Benchmark>,
        keys: Option<Arc<crate::sealed::DataKeys>>,
    ) -> Result<Nodes, EngineError> {
        // The actors publish to each other, so their slots (and the publisher) come first.
        let (feed, dispatcher, comparator) = (Slot::empty(), Slot::empty(), Slot::empty());
        let publisher = Publisher::new(
            feed.clone(),
            dispatcher.clone(),
            comparator.clone(),
            banned,
            metrics.clone(),
        );
        let parts = Parts {
            store,
            config,
            metrics,
            benchmarks,
            publisher: publisher.clone(),
            keys,
        };
        feed.restart(parts.feed_hub());
        dispatcher.restart(parts.dispatcher());
        comparator.restart(parts.comparator());
        let nodes = Nodes {
            feed,
            dispatcher,
            comparator,
            publisher,
            parts,
        };
        nodes.recover_dispatcher().await?;
        nodes.rejudge().await?;
        Ok(nodes)
    }

    /// Whether all three still have their mailboxes (none has panicked).
    pub fn all_alive(&self) -> bool {
        self.feed.alive() && self.dispatcher.alive() && self.comparator.alive()
    }

    /// Restarts every actor whose mailbox is gone (it panicked); returns which were restarted.
    pub async fn revive(&self) -> Result<Vec<&'static str>, EngineError> {
        let mut revived = Vec::new();
        if !self.feed.alive() {
            self.feed.restart(self.parts.feed_hub());
            revived.push("feed_hub");
        }
        if !self.dispatcher.alive() {
            self.dispatcher.restart(self.parts.dispatcher());
            self.recover_dispatcher().await?;
            revived.push("dispatcher");
        }
        if !self.comparator.alive() {
            self.comparator.restart(self.parts.comparator());
            self.rejudge().await?;
            revived.push("qa_comparator");
        }
        Ok(revived)
    }

    /// Every live task back under the Dispatcher.
    async fn recover_dispatcher(&self) -> Result<(), EngineError> {
        let live = self.parts.store.live_tasks().await?;
        if !live.is_empty() {
            tracing::info!(tasks = live.len(), "dispatcher: recovered live tasks");
        }
        self.dispatcher
            .send(Recover(live))
            .await
            .map_err(EngineError::internal)
    }

    /// Groups left undecided (by a stop or a panic) are looked at again; those still waiting for
    /// a side stay waiting.
    async fn rejudge(&self) -> Result<(), EngineError> {
        for group in self.parts.store.qa_undecided().await? {
            self.comparator.do_send(Judge(group));
        }
        Ok(())
    }
}

impl Parts {
    fn feed_hub(&self) -> impl FnOnce() -> FeedHub + Send + 'static {
        let log = self.store.event_log();
        move || FeedHub::with_log(log)
    }

    fn dispatcher(&self) -> impl FnOnce() -> Dispatcher + Send + 'static {
        let p = self.clone();
        move || Dispatcher::new(p.store, p.config, p.metrics, p.publisher)
    }

    fn comparator(&self) -> impl FnOnce() -> QaComparator + Send + 'static {
        let p = self.clone();
        move || {
            QaComparator::new(p.store, p.config, p.metrics, p.publisher, p.benchmarks)
                .with_keys(p.keys)
        }
    }
}
