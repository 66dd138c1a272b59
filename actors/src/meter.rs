//! Mailbox meters for the admin console. actix does not expose how many messages wait in an
//! actor's mailbox, so every message to a metered actor travels in a [`Timed`] envelope: made
//! when it is sent (counting it in and noting the time), opened when the actor takes it (counting
//! it out and noting how long it waited). That is two relaxed atomic increments and two clock
//! reads per message — cheap enough for the hot path.
//!
//! Every live actor's meter is listed in the process-wide [`registry`], beside a weak address to
//! which the console sends [`Inspect`] for the actor's state. The registry holds neither the actor
//! nor its meter alive: an actor that stops drops its meter and its entry goes at the next sweep.
//! Once a second [`Registry::sample`] turns the counters into rates and the slowest wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Instant;

use actix::WeakRecipient;
use actix::prelude::*;
use serde_json::Value;

/// One actor's counters.
#[derive(Debug)]
pub struct Meter {
    pub kind: &'static str,
    pub id: String,
    pub started_ms: i64,
    sent: AtomicU64,
    handled: AtomicU64,
    /// The longest a message has waited in the mailbox since the last sample, in µs.
    slowest_us: AtomicU64,
    /// Figures of the last whole second, written by [`Registry::sample`].
    rate_per_s: AtomicU64,
    last_slowest_us: AtomicU64,
    last_handled: AtomicU64,
    /// Up to three numbers the actor keeps current for the console's list (held tasks, a balance);
    /// what each means is the kind's [`Gauges`].
    gauges: [AtomicI64; 3],
}

/// What an actor kind's gauges are called.
pub type Gauges = &'static [&'static str];

impl Meter {
    pub fn new(kind: &'static str, id: impl Into<String>) -> Arc<Meter> {
        Arc::new(Meter {
            kind,
            id: id.into(),
            started_ms: crate::clock::now_ms(),
            sent: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            slowest_us: AtomicU64::new(0),
            rate_per_s: AtomicU64::new(0),
            last_slowest_us: AtomicU64::new(0),
            last_handled: AtomicU64::new(0),
            gauges: Default::default(),
        })
    }

    /// Wraps a message for this actor's mailbox.
    pub fn timed<M>(self: &Arc<Self>, msg: M) -> Timed<M> {
        self.sent.fetch_add(1, Relaxed);
        Timed {
            msg,
            sent: Instant::now(),
            meter: self.clone(),
        }
    }

    pub fn set_gauge(&self, i: usize, value: i64) {
        if let Some(g) = self.gauges.get(i) {
            g.store(value, Relaxed);
        }
    }

    pub fn gauge(&self, i: usize) -> i64 {
        self.gauges.get(i).map_or(0, |g| g.load(Relaxed))
    }

    /// Messages sent and not yet taken.
    pub fn mailbox_len(&self) -> u64 {
        let handled = self.handled.load(Relaxed);
        self.sent.load(Relaxed).saturating_sub(handled)
    }

    pub fn messages_handled(&self) -> u64 {
        self.handled.load(Relaxed)
    }

    pub fn messages_per_s(&self) -> u64 {
        self.rate_per_s.load(Relaxed)
    }

    /// The longest wait in the mailbox over the last sampled second (or since, if longer), µs.
    pub fn slowest_wait_us(&self) -> u64 {
        self.last_slowest_us
            .load(Relaxed)
            .max(self.slowest_us.load(Relaxed))
    }

    fn sample(&self, elapsed_s: f64) {
        let handled = self.handled.load(Relaxed);
        let before = self.last_handled.swap(handled, Relaxed);
        let rate = (handled.saturating_sub(before) as f64 / elapsed_s.max(1e-3)).round();
        self.rate_per_s.store(rate as u64, Relaxed);
        self.last_slowest_us
            .store(self.slowest_us.swap(0, Relaxed), Relaxed);
    }
}

/// A message on its way into a metered actor's mailbox. Handlers take it with [`Timed::open`]
/// (the [`metered!`](crate::metered) macro writes those handlers).
pub struct Timed<M> {
    msg: M,
    sent: Instant,
    meter: Arc<Meter>,
}

impl<M: Message> Message for Timed<M> {
    type Result = M::Result;
}

impl<M> Timed<M> {
    /// Counts the message out of the mailbox and hands it over.
    pub fn open(self) -> M {
        let waited_us = u64::try_from(self.sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.meter.handled.fetch_add(1, Relaxed);
        self.meter.slowest_us.fetch_max(waited_us, Relaxed);
        self.msg
    }
}

/// Asks an actor for its state, as the console shows it (secrets left out).
#[derive(Message)]
#[rtype(result = "State")]
pub struct Inspect;

/// An actor's state as JSON.
#[derive(Debug, Clone, MessageResponse)]
pub struct State(pub Value);

/// `Handler<Timed<M>>` for each listed message of an actor: open the envelope, handle the message.
#[macro_export]
macro_rules! metered {
    ($actor:ty: $($msg:ty),+ $(,)?) => {
        $(
            impl actix::Handler<$crate::meter::Timed<$msg>> for $actor {
                type Result = <$actor as actix::Handler<$msg>>::Result;
                fn handle(
                    &mut self,
                    m: $crate::meter::Timed<$msg>,
                    ctx: &mut Self::Context,
                ) -> Self::Result {
                    <$actor as actix::Handler<$msg>>::handle(self, m.open(), ctx)
                }
            }
        )+
    };
}

/// A metered actor's address: sends go through the envelope.
pub struct Metered<A: Actor> {
    pub addr: Addr<A>,
    pub meter: Arc<Meter>,
}

impl<A: Actor> Clone for Metered<A> {
    fn clone(&self) -> Self {
        Metered {
            addr: self.addr.clone(),
            meter: self.meter.clone(),
        }
    }
}

impl<A> Metered<A>
where
    A: Actor<Context = Context<A>> + Handler<Inspect>,
{
    /// Starts `actor` (in the current arbiter) with a meter of its own, listed in the registry.
    pub fn start(actor: A, kind: &'static str, id: impl Into<String>, gauges: Gauges) -> Self {
        Self::listed(actor.start(), Meter::new(kind, id), gauges)
    }

    /// An actor already started with `meter` (one that keeps its own gauges), listed in the
    /// registry.
    pub fn listed(addr: Addr<A>, meter: Arc<Meter>, gauges: Gauges) -> Self {
        registry().add(&meter, addr.clone().recipient().downgrade(), gauges);
        Metered { addr, meter }
    }
}

impl<A: Actor> Metered<A> {
    pub fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Timed<M>>,
        A::Context: actix::dev::ToEnvelope<A, Timed<M>>,
    {
        self.addr.do_send(self.meter.timed(msg));
    }

    pub fn send<M>(&self, msg: M) -> actix::dev::Request<A, Timed<M>>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Timed<M>>,
        A::Context: actix::dev::ToEnvelope<A, Timed<M>>,
    {
        self.addr.send(self.meter.timed(msg))
    }

    pub fn connected(&self) -> bool {
        self.addr.connected()
    }
}

/// A metered actor as a recipient of one message type (the Dispatcher tells WebSocket sessions
/// of expiries through one).
pub struct MeteredRecipient<M>
where
    M: Message + Send,
    M::Result: Send,
{
    recipient: Recipient<Timed<M>>,
    meter: Arc<Meter>,
}

impl<M> Clone for MeteredRecipient<M>
where
    M: Message + Send,
    M::Result: Send,
{
    fn clone(&self) -> Self {
        MeteredRecipient {
            recipient: self.recipient.clone(),
            meter: self.meter.clone(),
        }
    }
}

impl<M> MeteredRecipient<M>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    pub fn new<A>(addr: Addr<A>, meter: Arc<Meter>) -> Self
    where
        A: Actor + Handler<Timed<M>>,
        A::Context: actix::dev::ToEnvelope<A, Timed<M>>,
    {
        MeteredRecipient {
            recipient: addr.recipient(),
            meter,
        }
    }

    pub fn do_send(&self, msg: M) {
        self.recipient.do_send(self.meter.timed(msg));
    }
}

struct Entry {
    meter: Weak<Meter>,
    inspect: WeakRecipient<Inspect>,
    gauges: Gauges,
}

/// Every live metered actor of this process.
#[derive(Default)]
pub struct Registry {
    entries: RwLock<HashMap<usize, Entry>>,
    last_sample: RwLock<Option<Instant>>,
}

/// One row of the console's list.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActorRow {
    pub kind: &'static str,
    pub id: String,
    pub mailbox_len: u64,
    pub messages_handled: u64,
    pub messages_per_s: u64,
    pub slowest_wait_us: u64,
    pub started_ms: i64,
    /// The kind's gauges, named by `gauge_names` (a plain array, so that listing 100,000
    /// sessions to sort them allocates nothing but their ids).
    pub gauges: [i64; 3],
    pub gauge_names: Gauges,
}

impl ActorRow {
    /// The gauges by name.
    pub fn summary(&self) -> serde_json::Map<String, Value> {
        self.gauge_names
            .iter()
            .zip(self.gauges)
            .map(|(name, v)| (name.to_string(), Value::from(v)))
            .collect()
    }
}

pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

impl Registry {
    /// Lists an actor; `inspect` is where [`Inspect`] goes.
    pub fn add(&self, meter: &Arc<Meter>, inspect: WeakRecipient<Inspect>, gauges: Gauges) {
        let key = Arc::as_ptr(meter) as usize;
        if let Ok(mut e) = self.entries.write() {
            e.insert(
                key,
                Entry {
                    meter: Arc::downgrade(meter),
                    inspect,
                    gauges,
                },
            );
        }
    }

    /// Turns counters into per-second figures and forgets actors that stopped. Called about once
    /// a second (by the console's stream and the Supervisor); a call sooner than 200 ms after the
    /// last one does nothing, so several callers do not shorten the window.
    pub fn sample(&self) {
        let now = Instant::now();
        let elapsed = {
            let Ok(mut last) = self.last_sample.write() else {
                return;
            };
            let elapsed = last.map(|t| now.duration_since(t).as_secs_f64());
            if elapsed.is_some_and(|e| e < 0.2) {
                return;
            }
            *last = Some(now);
            elapsed.unwrap_or(1.0)
        };
        let mut dead = Vec::new();
        if let Ok(entries) = self.entries.read() {
            for (key, e) in entries.iter() {
                match e.meter.upgrade() {
                    Some(m) => m.sample(elapsed),
                    None => dead.push(*key),
                }
            }
        }
        if !dead.is_empty()
            && let Ok(mut entries) = self.entries.write()
        {
            for key in dead {
                entries.remove(&key);
            }
        }
    }

    /// Every live actor's row.
    pub fn rows(&self) -> Vec<ActorRow> {
        let Ok(entries) = self.entries.read() else {
            return Vec::new();
        };
        entries
            .values()
            .filter_map(|e| {
                let m = e.meter.upgrade()?;
                Some(ActorRow {
                    kind: m.kind,
                    id: m.id.clone(),
                    mailbox_len: m.mailbox_len(),
                    messages_handled: m.messages_handled(),
                    messages_per_s: m.messages_per_s(),
                    slowest_wait_us: m.slowest_wait_us(),
                    started_ms: m.started_ms,
                    gauges: [m.gauge(0), m.gauge(1), m.gauge(2)],
                    gauge_names: e.gauges,
                })
            })
            .collect()
    }

    /// Where to send [`Inspect`] for the actor `kind`/`id`, with its row.
    pub fn find(&self, kind: &str, id: &str) -> Option<(ActorRow, WeakRecipient<Inspect>)> {
        let inspect = {
            let entries = self.entries.read().ok()?;
            entries
                .values()
                .find(|e| {
                    e.meter
                        .upgrade()
                        .is_some_and(|m| m.kind.eq_ignore_ascii_case(kind) && m.id == id)
                })
                .map(|e| e.inspect.clone())?
        };
        let row = self
            .rows()
            .into_iter()
            .find(|r| r.kind.eq_ignore_ascii_case(kind) && r.id == id)?;
        Some((row, inspect))
    }

    /// Live actors of each kind.
    pub fn counts(&self) -> HashMap<&'static str, usize> {
        let mut out = HashMap::new();
        if let Ok(entries) = self.entries.read() {
            for e in entries.values() {
                if let Some(m) = e.meter.upgrade() {
                    *out.entry(m.kind).or_default() += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_counts_in_and_out_and_keeps_the_slowest_wait() {
        let m = Meter::new("Test", "t1");
        let a = m.timed(1);
        let b = m.timed(2);
        assert_eq!(m.mailbox_len(), 2);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(a.open(), 1);
        assert_eq!(m.mailbox_len(), 1);
        assert_eq!(b.open(), 2);
        assert_eq!((m.mailbox_len(), m.messages_handled()), (0, 2));
        assert!(m.slowest_wait_us() >= 5_000, "{}", m.slowest_wait_us());
        m.sample(0.5);
        assert_eq!(m.messages_per_s(), 4);
        // The slowest wait is last second's until a newer sample replaces it.
        assert!(m.slowest_wait_us() >= 5_000);
        m.sample(1.0);
        assert_eq!((m.messages_per_s(), m.slowest_wait_us()), (0, 0));
    }
}
