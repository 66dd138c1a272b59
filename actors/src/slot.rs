//! A restartable actor's current address. The node's Dispatcher, FeedHub and QaComparator each
//! run on an arbiter (thread) of their own; when one panics its mailbox is gone, the Supervisor
//! starts a new one from the store's state and puts it in the slot, and everyone who holds the
//! slot (not the address) talks to the new one from then on.

use std::sync::Arc;

use actix::prelude::*;
use arc_swap::ArcSwap;

struct Running<A: Actor> {
    addr: Addr<A>,
    arbiter: ArbiterHandle,
}

pub struct Slot<A: Actor> {
    running: Arc<ArcSwap<Running<A>>>,
}

impl<A: Actor> Clone for Slot<A> {
    fn clone(&self) -> Self {
        Slot {
            running: self.running.clone(),
        }
    }
}

impl<A> Slot<A>
where
    A: Actor<Context = Context<A>> + Send,
{
    /// Starts `make()` on a new arbiter.
    pub fn start(make: impl FnOnce() -> A + Send + 'static) -> Slot<A> {
        Slot {
            running: Arc::new(ArcSwap::from_pointee(Self::spawn(make))),
        }
    }

    fn spawn(make: impl FnOnce() -> A + Send + 'static) -> Running<A> {
        let arbiter = Arbiter::new().handle();
        let addr = A::start_in_arbiter(&arbiter, move |_| make());
        Running { addr, arbiter }
    }

    /// The address of the actor running now.
    pub fn get(&self) -> Addr<A> {
        self.running.load().addr.clone()
    }

    /// Whether the actor in the slot still has its mailbox (false once it panicked).
    pub fn alive(&self) -> bool {
        self.running.load().addr.connected()
    }

    /// Puts a new `make()` in the slot, on a new arbiter; the old arbiter's thread is stopped.
    pub fn restart(&self, make: impl FnOnce() -> A + Send + 'static) {
        let old = self.running.swap(Arc::new(Self::spawn(make)));
        old.arbiter.stop();
    }
}

impl<A: Actor> Slot<A> {
    /// `Addr::do_send` to the actor running now.
    pub fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: actix::dev::ToEnvelope<A, M>,
    {
        self.running.load().addr.do_send(msg)
    }

    /// `Addr::send` to the actor running now.
    pub fn send<M>(&self, msg: M) -> actix::dev::Request<A, M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: actix::dev::ToEnvelope<A, M>,
    {
        self.running.load().addr.send(msg)
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
    };
}
