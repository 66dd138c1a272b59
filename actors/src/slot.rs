//! A restartable actor's current address. The node's Dispatcher, FeedHub and QaComparator each
//! run on an arbiter (thread) of their own; when one panics its mailbox is gone, the Supervisor
//! starts a new one from the store's state and puts it in the slot, and everyone who holds the
//! slot (not the address) talks to the new one from then on.
//!
//! Each incarnation has its own mailbox [`Meter`], listed in the [`registry`](crate::meter): every
//! message through the slot travels in a [`Timed`] envelope.

use std::sync::Arc;

use actix::prelude::*;
use arc_swap::ArcSwap;

use crate::meter::{Gauges, Inspect, Meter, Metered, Timed};

struct Running<A: Actor> {
    actor: Metered<A>,
    arbiter: ArbiterHandle,
}

/// An actor that runs in a slot: its kind's name and gauges for the console.
pub trait Slotted: Actor<Context = Context<Self>> + Handler<Inspect> + Send {
    const KIND: &'static str;
    const GAUGES: Gauges = &[];
    /// Where the actor keeps its gauges current.
    fn set_meter(&mut self, meter: Arc<Meter>);
}

pub struct Slot<A: Actor> {
    /// None until the actor is first started (slots are made before the actors that hold each
    /// other's slots).
    running: Arc<ArcSwap<Option<Running<A>>>>,
}

impl<A: Actor> Clone for Slot<A> {
    fn clone(&self) -> Self {
        Slot {
            running: self.running.clone(),
        }
    }
}

impl<A: Slotted> Slot<A> {
    /// A slot with no actor in it yet: [`Slot::restart`] starts one.
    pub fn empty() -> Slot<A> {
        Slot {
            running: Arc::new(ArcSwap::from_pointee(None)),
        }
    }

    fn spawn(make: impl FnOnce() -> A + Send + 'static) -> Running<A> {
        let arbiter = Arbiter::new().handle();
        let meter = Meter::new(A::KIND, A::KIND.to_ascii_lowercase());
        let mine = meter.clone();
        let addr = A::start_in_arbiter(&arbiter, move |_| {
            let mut actor = make();
            actor.set_meter(mine);
            actor
        });
        Running {
            actor: Metered::listed(addr, meter, A::GAUGES),
            arbiter,
        }
    }

    /// Whether the actor in the slot still has its mailbox (false once it panicked).
    pub fn alive(&self) -> bool {
        self.running
            .load()
            .as_ref()
            .as_ref()
            .is_some_and(|r| r.actor.connected())
    }

    /// Starts `make()` in the slot, on a new arbiter; the arbiter of the one before (if any) is
    /// stopped.
    pub fn restart(&self, make: impl FnOnce() -> A + Send + 'static) {
        let old = self.running.swap(Arc::new(Some(Self::spawn(make))));
        if let Some(old) = old.as_ref() {
            old.arbiter.stop();
        }
    }
}

impl<A: Actor> Slot<A> {
    /// `Addr::do_send` to the actor running now.
    pub fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Timed<M>>,
        A::Context: actix::dev::ToEnvelope<A, Timed<M>>,
    {
        match self.running.load().as_ref() {
            Some(r) => r.actor.do_send(msg),
            None => tracing::warn!("a message to an actor that was never started was dropped"),
        }
    }

    /// `Addr::send` to the actor running now.
    pub fn send<M>(
        &self,
        msg: M,
    ) -> impl Future<Output = Result<M::Result, MailboxError>> + use<A, M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Timed<M>>,
        A::Context: actix::dev::ToEnvelope<A, Timed<M>>,
    {
        let sent = self
            .running
            .load()
            .as_ref()
            .as_ref()
            .map(|r| r.actor.send(msg));
        async move {
            match sent {
                Some(request) => request.await,
                None => Err(MailboxError::Closed),
            }
        }
    }
}

/// Makes the actor panic, for the tests of the restart (debug builds only: a release build has
/// no way to ask for it).
#[cfg(debug_assertions)]
#[derive(Message)]
#[rtype(result = "()")]
pub struct Crash;

/// `Handler<Crash>` for a restartable actor.
#[macro_export]
#[doc(hidden)]
macro_rules! crash_on_request {
    ($actor:ty) => {
        #[cfg(debug_assertions)]
        impl actix::Handler<$crate::slot::Crash> for $actor {
            type Result = ();
            fn handle(&mut self, _: $crate::slot::Crash, _: &mut Self::Context) {
                panic!(
                    "{} crashed on request (a test of the Supervisor)",
                    stringify!($actor)
                );
            }
        }
        #[cfg(debug_assertions)]
        $crate::metered!($actor: $crate::slot::Crash);
    };
}
