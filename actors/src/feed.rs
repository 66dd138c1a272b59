//! FeedHub: fans events out to live subscribers (SSE streams) without letting a slow one hold the
//! engine back. Each event gets a global, increasing id and is rendered to SSE wire text once.
//! The last [`RING`] public events and the last [`RING`] buyer events are kept, so a client that
//! reconnects with `Last-Event-ID` gets what it missed, or a `reset` event when the gap is older
//! than the ring. A subscriber whose queue is full is dropped (it can resume by id); publishing
//! never waits. Talks to: the engine and the Dispatcher (publish), the SSE routes (subscribe).
//!
//! On a store several nodes share, the hub gives no ids itself: what is published goes to the
//! store's [`EventLog`], and the hub delivers what every node appended as it comes back
//! ([`Deliver`]), with the log's ids, so that every node's streams show the same events under the
//! same ids and a client resumes on any node.

use std::collections::{HashMap, VecDeque};

use actix::prelude::*;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::store::EventLog;

/// Events kept for resumption, per audience kind.
pub const RING: usize = 10_000;
/// Queue length of a live subscriber; a subscriber this far behind is dropped.
pub const SUBSCRIBER_QUEUE: usize = 512;

/// Who may see an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Audience {
    /// The public activity feed.
    Public,
    /// One user's stream: a buyer's task events, and anyone's notifications.
    User(String),
    /// One bounty's activity, for its buyer and the workers who submitted to it.
    Bounty(String),
}

impl Audience {
    /// The stream's name: none for the public feed, the user's id, or `bounty:{id}` (user ids
    /// never have a colon). A shared event log stores it with each event.
    pub fn key(&self) -> Option<String> {
        match self {
            Audience::Public => None,
            Audience::User(u) => Some(u.clone()),
            Audience::Bounty(b) => Some(format!("bounty:{b}")),
        }
    }

    /// The audience a [`Audience::key`] names.
    pub fn from_key(key: Option<String>) -> Audience {
        match key {
            None => Audience::Public,
            Some(k) => match k.strip_prefix("bounty:") {
                Some(b) => Audience::Bounty(b.to_string()),
                None => Audience::User(k),
            },
        }
    }
}

struct Stored {
    id: u64,
    audience: Audience,
    wire: Bytes,
}

struct Subscriber {
    tx: mpsc::Sender<Bytes>,
}

#[derive(Default)]
pub struct FeedHub {
    /// The shared log events go to (a store several nodes share), else None: this hub ids and
    /// delivers them itself.
    log: Option<std::sync::Arc<dyn EventLog>>,
    /// The first id this hub gave out: a client resuming from an older one missed events that
    /// a hub before this one (an earlier process, or one that panicked) sent.
    first_id: u64,
    next_id: u64,
    public_ring: VecDeque<Stored>,
    buyer_ring: VecDeque<Stored>,
    public: Vec<Subscriber>,
    buyers: HashMap<String, Vec<Subscriber>>,
    dropped: u64,
    closed: bool,
    meter: Option<std::sync::Arc<crate::meter::Meter>>,
}

fn wire(id: u64, event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("id: {id}\nevent: {event}\ndata: {data}\n\n"))
}

/// The event name and data of one event as [`wire`] renders it (for a subscriber that is not an
/// SSE stream, such as a worker's WebSocket); None for comments, resets without data, or bytes
/// that are not an event.
pub fn parse_wire(bytes: &[u8]) -> Option<(&str, Value)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut event = None;
    let mut data = None;
    for line in text.lines() {
        if let Some(e) = line.strip_prefix("event: ") {
            event = Some(e);
        } else if let Some(d) = line.strip_prefix("data: ") {
            data = serde_json::from_str(d).ok();
        }
    }
    Some((event?, data?))
}

/// Delivers to every subscriber in `subs`, dropping those that are full or gone.
fn fan_out(subs: &mut Vec<Subscriber>, wire: &Bytes, dropped: &mut u64) {
    subs.retain(|s| match s.tx.try_send(wire.clone()) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            *dropped += 1;
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    });
}

impl FeedHub {
    /// A hub whose ids start above every id an earlier hub gave out: the clock's milliseconds
    /// times 1,000 (ids stay increasing across restarts unless a hub publishes more than 1,000
    /// events a millisecond for its whole life, or the clock goes back).
    pub fn new() -> FeedHub {
        Self::starting_at((crate::clock::now_ms().max(0) as u64).saturating_mul(1_000))
    }

    pub fn starting_at(first_id: u64) -> FeedHub {
        FeedHub {
            first_id,
            next_id: first_id,
            ..FeedHub::default()
        }
    }

    /// A hub for a shared store: events go through `log`, ids come from it. Until the first
    /// event comes back, any `Last-Event-ID` is older than this hub (a `reset`).
    pub fn shared(log: std::sync::Arc<dyn EventLog>) -> FeedHub {
        FeedHub {
            log: Some(log),
            ..FeedHub::default()
        }
    }

    /// [`FeedHub::shared`] when there is a log, else [`FeedHub::new`].
    pub fn with_log(log: Option<std::sync::Arc<dyn EventLog>>) -> FeedHub {
        match log {
            Some(log) => Self::shared(log),
            None => Self::new(),
        }
    }

    /// Fans an event out under `id` and keeps it for resumption.
    fn deliver(&mut self, id: u64, audience: Audience, event: &str, data: &Value) {
        if self.next_id == 0 {
            self.first_id = id;
        }
        self.next_id = id + 1;
        let bytes = wire(id, event, data);
        let mut dropped = 0;
        match audience.key() {
            None => fan_out(&mut self.public, &bytes, &mut dropped),
            Some(key) => {
                if let Some(subs) = self.buyers.get_mut(&key) {
                    fan_out(subs, &bytes, &mut dropped);
                }
            }
        }
        self.dropped += dropped;
        let ring = self.ring(&audience);
        if ring.len() == RING {
            ring.pop_front();
        }
        ring.push_back(Stored {
            id,
            audience,
            wire: bytes,
        });
    }

    fn ring(&mut self, audience: &Audience) -> &mut VecDeque<Stored> {
        match audience {
            Audience::Public => &mut self.public_ring,
            Audience::User(_) | Audience::Bounty(_) => &mut self.buyer_ring,
        }
    }

    pub fn subscriber_count(&self) -> usize {
        self.public.len() + self.buyers.values().map(Vec::len).sum::<usize>()
    }
}

impl Actor for FeedHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1 << 20);
        // Forget buyers whose streams all ended.
        ctx.run_interval(std::time::Duration::from_secs(30), |act, _| {
            act.buyers.retain(|_, subs| {
                subs.retain(|s| !s.tx.is_closed());
                !subs.is_empty()
            });
            act.public.retain(|s| !s.tx.is_closed());
        });
        ctx.run_interval(std::time::Duration::from_secs(1), |act, _| {
            if let Some(m) = &act.meter {
                m.set_gauge(0, act.public.len() as i64);
                m.set_gauge(1, act.buyers.values().map(Vec::len).sum::<usize>() as i64);
                m.set_gauge(2, act.dropped as i64);
            }
        });
    }
}

impl crate::slot::Slotted for FeedHub {
    const KIND: &'static str = "FeedHub";
    const GAUGES: crate::meter::Gauges = &["public_subscribers", "buyer_subscribers", "dropped"];
    fn set_meter(&mut self, meter: std::sync::Arc<crate::meter::Meter>) {
        self.meter = Some(meter);
    }
}

crate::metered!(FeedHub: Publish, Deliver, Subscribe, CloseAll, FeedStats);

impl Handler<crate::meter::Inspect> for FeedHub {
    type Result = crate::meter::State;
    fn handle(&mut self, _: crate::meter::Inspect, _: &mut Context<Self>) -> crate::meter::State {
        let buyer_streams: usize = self.buyers.values().map(Vec::len).sum();
        crate::meter::State(json!({
            "public_subscribers": self.public.len(),
            "buyers_watching": self.buyers.len(),
            "buyer_subscribers": buyer_streams,
            "dropped_for_falling_behind": self.dropped,
            "public_ring": self.public_ring.len(),
            "buyer_ring": self.buyer_ring.len(),
            "ring_capacity": RING,
            "first_id": self.first_id,
            "next_id": self.next_id,
            "shared_log": self.log.is_some(),
            "closed": self.closed,
        }))
    }
}

/// Something happened. `event` is the SSE event name, `data` its JSON.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Publish {
    pub audience: Audience,
    pub event: &'static str,
    pub data: Value,
}

impl Handler<Publish> for FeedHub {
    type Result = ();

    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) {
        // QA copies have no buyer: nobody streams their status.
        let to_nobody = matches!(&msg.audience, Audience::User(b) if b == crate::store::QA_BUYER);
        if self.closed || to_nobody {
            return;
        }
        if let Some(log) = &self.log {
            log.append(msg.audience.key().as_deref(), msg.event, &msg.data);
            return;
        }
        let id = self.next_id.max(1);
        self.deliver(id, msg.audience, msg.event, &msg.data);
    }
}

/// An event of the shared log, with its id (see [`FeedHub::shared`]).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Deliver {
    pub id: u64,
    pub audience: Audience,
    pub event: String,
    pub data: Value,
}

impl Handler<Deliver> for FeedHub {
    type Result = ();

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
        // Ids only grow: an event at or below the last one was delivered already.
        if self.closed || (self.next_id > 0 && msg.id < self.next_id) {
            return;
        }
        self.deliver(msg.id, msg.audience, &msg.event, &msg.data);
    }
}

/// A new stream. With `last_event_id`, what was missed is replayed first (or a `reset` event
/// says the gap is too old). The stream ends when the hub drops the sender.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    pub audience: Audience,
    pub last_event_id: Option<u64>,
    /// With no `last_event_id`: replay this many of the newest public events first (a page
    /// showing the feed starts with what just happened). Capped at [`MAX_RECENT`].
    pub recent: usize,
    pub tx: mpsc::Sender<Bytes>,
}

/// The most recent events a new public subscriber may ask for.
pub const MAX_RECENT: usize = 50;

impl Handler<Subscribe> for FeedHub {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        if self.closed {
            return;
        }
        if let Some(last) = msg.last_event_id {
            let audience = msg.audience.clone();
            let (first_id, next_id) = (self.first_id, self.next_id);
            let oldest = self.ring(&audience).front().map_or(next_id, |s| s.id);
            // Events after `last` that this hub no longer holds, or an id from before this hub
            // (or never given out): the client cannot catch up.
            let gone = last.saturating_add(1) < oldest;
            let foreign = last.saturating_add(1) < first_id || last >= next_id;
            if gone || foreign {
                let data = json!({
                    "reason": "events after Last-Event-ID are no longer kept",
                    "last_event_id": last,
                    "oldest_kept": oldest,
                });
                // No id line: the client's Last-Event-ID keeps pointing at what it really has.
                let reset = Bytes::from(format!("event: reset\ndata: {data}\n\n"));
                if msg.tx.try_send(reset).is_err() {
                    return;
                }
            }
            // A client of another hub gets everything this one kept.
            let after = if foreign { 0 } else { last };
            let ring = self.ring(&audience);
            for s in ring
                .iter()
                .filter(|s| s.id > after && s.audience == audience)
            {
                if msg.tx.try_send(s.wire.clone()).is_err() {
                    // Too much to replay into this queue: the client resumes again from what it got.
                    return;
                }
            }
        } else if msg.recent > 0 && msg.audience == Audience::Public {
            let ring = &self.public_ring;
            let skip = ring.len().saturating_sub(msg.recent.min(MAX_RECENT));
            for s in ring.iter().skip(skip) {
                if msg.tx.try_send(s.wire.clone()).is_err() {
                    return;
                }
            }
        }
        let sub = Subscriber { tx: msg.tx };
        match msg.audience.key() {
            None => self.public.push(sub),
            Some(key) => self.buyers.entry(key).or_default().push(sub),
        }
    }
}

/// The node is stopping: every stream gets a final `shutdown` event and ends.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseAll;

impl Handler<CloseAll> for FeedHub {
    type Result = ();

    fn handle(&mut self, _: CloseAll, _: &mut Context<Self>) {
        self.closed = true;
        let last = Bytes::from_static(b"event: shutdown\ndata: {\"reason\":\"server stopping; reconnect with Last-Event-ID\"}\n\n");
        for s in self
            .public
            .drain(..)
            .chain(self.buyers.drain().flat_map(|(_, v)| v))
        {
            let _ = s.tx.try_send(last.clone());
        }
    }
}

#[derive(Message)]
#[rtype(result = "FeedCounts")]
pub struct FeedStats;

/// Streams open now, and subscribers dropped for falling behind since the start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub struct FeedCounts {
    pub subscribers: usize,
    pub dropped: u64,
}

impl Handler<FeedStats> for FeedHub {
    type Result = FeedCounts;
    fn handle(&mut self, _: FeedStats, _: &mut Context<Self>) -> FeedCounts {
        FeedCounts {
            subscribers: self.subscriber_count(),
            dropped: self.dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(hub: &Addr<FeedHub>, n: u64) {
        for i in 0..n {
            hub.do_send(Publish {
                audience: Audience::Public,
                event: "t",
                data: json!({ "i": i }),
            });
        }
    }

    async fn drain(rx: &mut mpsc::Receiver<Bytes>) -> Vec<String> {
        let mut out = vec![];
        while let Ok(Some(b)) =
            tokio::time::timeout(std::time::Duration::from_millis(100), rx.recv()).await
        {
            out.push(String::from_utf8(b.to_vec()).unwrap());
        }
        out
    }

    #[actix_rt::test]
    async fn a_full_subscriber_is_dropped_and_the_others_get_everything() {
        let hub = FeedHub::starting_at(1).start();
        let (slow_tx, mut slow_rx) = mpsc::channel(2);
        let (fast_tx, mut fast_rx) = mpsc::channel(1000);
        hub.send(Subscribe {
            audience: Audience::Public,
            last_event_id: None,
            recent: 0,
            tx: slow_tx,
        })
        .await
        .unwrap();
        hub.send(Subscribe {
            audience: Audience::Public,
            last_event_id: None,
            recent: 0,
            tx: fast_tx,
        })
        .await
        .unwrap();
        publish(&hub, 10);
        let fast = drain(&mut fast_rx).await;
        assert_eq!(fast.len(), 10);
        assert!(fast[9].starts_with("id: 10\n"));
        // The slow one got what fitted, then its stream ended.
        let slow = drain(&mut slow_rx).await;
        assert_eq!(slow.len(), 2);
        assert!(
            slow_rx.recv().await.is_none(),
            "dropped subscriber's stream ends"
        );
        assert_eq!(
            hub.send(FeedStats).await.unwrap(),
            FeedCounts {
                subscribers: 1,
                dropped: 1
            }
        );
    }

    #[actix_rt::test]
    async fn resume_replays_the_missed_events_or_says_reset() {
        let hub = FeedHub::starting_at(1).start();
        publish(&hub, 5);
        let (tx, mut rx) = mpsc::channel(100);
        hub.send(Subscribe {
            audience: Audience::Public,
            last_event_id: Some(3),
            recent: 0,
            tx,
        })
        .await
        .unwrap();
        let got = drain(&mut rx).await;
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with("id: 4\n") && got[1].starts_with("id: 5\n"));

        publish(&hub, RING as u64 + 10);
        let (tx, mut rx) = mpsc::channel(RING + 100);
        hub.send(Subscribe {
            audience: Audience::Public,
            last_event_id: Some(2),
            recent: 0,
            tx,
        })
        .await
        .unwrap();
        let got = drain(&mut rx).await;
        assert!(got[0].starts_with("event: reset\n"), "{}", got[0]);
        assert_eq!(got.len(), RING + 1);
    }

    /// After a restart (of the process, or of a hub that panicked) ids go on above the old ones,
    /// and a client resuming from an id this hub never gave out is told to reset.
    #[actix_rt::test]
    async fn a_new_hub_resets_clients_of_an_old_one() {
        let hub = FeedHub::starting_at(1_000).start();
        publish(&hub, 3);
        for last in [500, 5_000] {
            let (tx, mut rx) = mpsc::channel(100);
            hub.send(Subscribe {
                audience: Audience::Public,
                last_event_id: Some(last),
                recent: 0,
                tx,
            })
            .await
            .unwrap();
            let got = drain(&mut rx).await;
            assert!(got[0].starts_with("event: reset\n"), "{last}: {got:?}");
            assert_eq!(
                got.len(),
                4,
                "{last}: the reset, then all three kept events"
            );
        }
        // A client of this hub resumes normally.
        let (tx, mut rx) = mpsc::channel(100);
        hub.send(Subscribe {
            audience: Audience::Public,
            last_event_id: Some(1_001),
            recent: 0,
            tx,
        })
        .await
        .unwrap();
        let got = drain(&mut rx).await;
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("id: 1002\n"), "{got:?}");
        assert!(FeedHub::new().first_id > 1_000_000_000_000_000);
    }

    #[test]
    fn the_wire_reads_back() {
        let w = wire(7, "notification", &json!({ "kind": "x", "n": 1 }));
        assert_eq!(
            parse_wire(&w),
            Some(("notification", json!({ "kind": "x", "n": 1 })))
        );
        assert_eq!(parse_wire(b": keep-alive\n\n"), None);
    }

    #[actix_rt::test]
    async fn buyers_see_only_their_own_events() {
        let hub = FeedHub::starting_at(1).start();
        let (tx, mut rx) = mpsc::channel(100);
        hub.send(Subscribe {
            audience: Audience::User("a".into()),
            last_event_id: None,
            recent: 0,
            tx,
        })
        .await
        .unwrap();
        for b in ["a", "b", "a"] {
            hub.do_send(Publish {
                audience: Audience::User(b.into()),
                event: "task_status",
                data: json!({ "b": b }),
            });
        }
        let got = drain(&mut rx).await;
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|e| e.contains("\"b\":\"a\"")));
    }
}
crate::crash_on_request!(FeedHub);
