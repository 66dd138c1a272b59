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
    banned: BanList,
    benchmarks: Vec<Benchmark>,
}

#[derive(Clone)]
pub struct Nodes {
    pub feed: Slot<FeedHub>,
    pub dispatcher: Slot<Dispatcher>,
    pub comparator: Slot<QaComparator>,
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
    ) -> Result<Nodes, EngineError> {
        let parts = Parts {
            store,
            config,
            metrics,
            banned,
            benchmarks,
        };
        let feed = Slot::start(FeedHub::new);
        let dispatcher = Slot::start(parts.dispatcher(&feed));
        let comparator = Slot::start(parts.comparator(&dispatcher, &feed));
        let nodes = Nodes {
            feed,
            dispatcher,
            comparator,
            parts,
        };
        nodes.recover_dispatcher().await?;
        nodes.rejudge().await?;
        Ok(nodes)
    }

    /// Restarts every actor whose mailbox is gone (it panicked); returns which were restarted.
    pub async fn revive(&self) -> Result<Vec<&'static str>, EngineError> {
        let mut revived = Vec::new();
        if !self.feed.alive() {
            self.feed.restart(FeedHub::new);
            revived.push("feed_hub");
        }
        if !self.dispatcher.alive() {
            self.dispatcher.restart(self.parts.dispatcher(&self.feed));
            self.recover_dispatcher().await?;
            revived.push("dispatcher");
        }
        if !self.comparator.alive() {
            self.comparator
                .restart(self.parts.comparator(&self.dispatcher, &self.feed));
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
    fn dispatcher(&self, feed: &Slot<FeedHub>) -> impl FnOnce() -> Dispatcher + Send + 'static {
        let (store, config, metrics, feed) = (
            self.store.clone(),
            self.config.clone(),
            self.metrics.clone(),
            feed.clone(),
        );
        move || Dispatcher::new(store, config, metrics, feed)
    }

    fn comparator(
        &self,
        dispatcher: &Slot<Dispatcher>,
        feed: &Slot<FeedHub>,
    ) -> impl FnOnce() -> QaComparator + Send + 'static {
        let p = self.clone();
        let (dispatcher, feed) = (dispatcher.clone(), feed.clone());
        move || {
            QaComparator::new(
                p.store,
                p.config,
                p.metrics,
                dispatcher,
                feed,
                p.banned,
                p.benchmarks,
            )
        }
    }
}
