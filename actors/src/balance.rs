//! BalanceActor: one per active account. It is the single place that decides whether an account
//! can pay: it holds the last committed balance, refuses a debit that the committed balance cannot
//! cover without touching the store, and lets the store's guarded write decide the rest (debits in
//! flight are not subtracted here: the commit observer may already have counted them, and a
//! double count would refuse a buyer who can pay). Reads of the balance are served from it. The store's commit observer keeps it current;
//! it passivates after a quiet spell and is revived on demand by the [`Bank`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::error::EngineError;
use crate::meter::{Inspect, Meter, Metered, State};
use crate::store::{BalanceObserver, BalanceSnapshot, NewTask, Store, TaskPosted};

/// How long an idle balance actor stays in memory.
const IDLE: Duration = Duration::from_secs(120);

type Registry = Arc<Mutex<HashMap<String, Metered<BalanceActor>>>>;

/// The directory of live balance actors.
#[derive(Clone)]
pub struct Bank {
    registry: Registry,
    store: Arc<dyn Store>,
}

/// Builds the registry first so that the store can be given its observer before the bank exists.
pub fn registry() -> (Box<dyn BalanceObserver>, BankSeed) {
    let registry: Registry = Arc::default();
    let observer = BankObserver(Arc::downgrade(&registry));
    (Box::new(observer), BankSeed(registry))
}

/// Forwards committed balances to the live balance actors.
struct BankObserver(std::sync::Weak<Mutex<HashMap<String, Metered<BalanceActor>>>>);

impl BalanceObserver for BankObserver {
    fn watches(&self, user_id: &str) -> bool {
        self.0
            .upgrade()
            .is_some_and(|r| r.lock().is_ok_and(|m| m.contains_key(user_id)))
    }

    fn observe(&self, snapshots: &[BalanceSnapshot]) {
        let Some(registry) = self.0.upgrade() else {
            return;
        };
        let Ok(map) = registry.lock() else { return };
        for s in snapshots {
            if let Some(addr) = map.get(&s.user_id) {
                addr.do_send(Observed(s.clone()));
            }
        }
    }
}

pub struct BankSeed(Registry);

impl BankSeed {
    pub fn into_bank(self, store: Arc<dyn Store>) -> Bank {
        Bank {
            registry: self.0,
            store,
        }
    }
}

impl Bank {
    fn actor(&self, user_id: &str) -> Metered<BalanceActor> {
        let mut map = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(addr) = map.get(user_id).filter(|a| a.connected()) {
            return addr.clone();
        }
        let meter = Meter::new("BalanceActor", user_id);
        let addr = BalanceActor {
            user_id: user_id.to_string(),
            store: self.store.clone(),
            registry: Arc::downgrade(&self.registry),
            snapshot: None,
            in_flight: 0,
            last_used: Instant::now(),
            meter: meter.clone(),
        }
        .start();
        let addr = Metered::listed(addr, meter, GAUGES);
        map.insert(user_id.to_string(), addr.clone());
        addr
    }

    /// Sends to the account's actor, starting a fresh one if the old one stopped meanwhile.
    async fn ask<M>(&self, user_id: &str, msg: impl Fn() -> M) -> Result<M::Result, EngineError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        BalanceActor: Handler<crate::meter::Timed<M>>,
    {
        for _ in 0..2 {
            match self.actor(user_id).send(msg()).await {
                Ok(r) => return Ok(r),
                Err(MailboxError::Closed) => continue,
                Err(e) => return Err(EngineError::internal(e)),
            }
        }
        Err(EngineError::internal("balance actor unavailable"))
    }

    pub async fn snapshot(&self, user_id: &str) -> Result<Option<BalanceSnapshot>, EngineError> {
        self.ask(user_id, || GetBalance).await?
    }

    /// Posts a task, paid from the buyer's balance.
    pub async fn post_task(&self, task: NewTask) -> Result<TaskPosted, EngineError> {
        let buyer = task.buyer_id.clone();
        self.ask(&buyer, || PostTask(task.clone())).await?
    }

    pub fn live_actors(&self) -> usize {
        self.registry.lock().map(|m| m.len()).unwrap_or(0)
    }
}

pub struct BalanceActor {
    user_id: String,
    store: Arc<dyn Store>,
    registry: std::sync::Weak<Mutex<HashMap<String, Metered<BalanceActor>>>>,
    snapshot: Option<BalanceSnapshot>,
    /// Debits sent to the store and not yet answered (the actor stays alive while there are any).
    in_flight: u32,
    last_used: Instant,
    meter: Arc<Meter>,
}

/// What the console lists of a balance actor.
const GAUGES: crate::meter::Gauges = &["available_cents", "frozen_cents", "in_flight"];

impl BalanceActor {
    fn observe(&mut self, s: BalanceSnapshot) {
        if self
            .snapshot
            .as_ref()
            .is_none_or(|cur| s.version > cur.version)
        {
            self.meter.set_gauge(0, s.available_cents);
            self.meter.set_gauge(1, s.frozen_cents);
            self.snapshot = Some(s);
        }
    }
}

impl Actor for BalanceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        // Nothing is answered before the committed balance is loaded.
        let load = self.store.balance(self.user_id.clone());
        ctx.wait(load.into_actor(self).map(|res, act, _| match res {
            Ok(Some(s)) => act.observe(s),
            Ok(None) => {}
            Err(e) => tracing::warn!(user = %act.user_id, error = %e, "balance load failed"),
        }));
        ctx.run_interval(IDLE / 4, |act, ctx| {
            if act.in_flight == 0 && act.last_used.elapsed() > IDLE {
                ctx.stop();
            }
        });
    }

    fn stopping(&mut self, ctx: &mut Context<Self>) -> Running {
        if let Some(registry) = self.registry.upgrade()
            && let Ok(mut map) = registry.lock()
            && map
                .get(&self.user_id)
                .is_some_and(|a| a.addr == ctx.address())
        {
            map.remove(&self.user_id);
        }
        Running::Stop
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Observed(pub BalanceSnapshot);

impl Handler<Observed> for BalanceActor {
    type Result = ();
    fn handle(&mut self, msg: Observed, _: &mut Context<Self>) {
        self.observe(msg.0);
    }
}

#[derive(Message)]
#[rtype(result = "Result<Option<BalanceSnapshot>, EngineError>")]
pub struct GetBalance;

impl Handler<GetBalance> for BalanceActor {
    type Result = Result<Option<BalanceSnapshot>, EngineError>;
    fn handle(&mut self, _: GetBalance, _: &mut Context<Self>) -> Self::Result {
        self.last_used = Instant::now();
        Ok(self.snapshot.clone())
    }
}

#[derive(Message)]
#[rtype(result = "Result<TaskPosted, EngineError>")]
pub struct PostTask(pub NewTask);

impl Handler<PostTask> for BalanceActor {
    type Result = ResponseActFuture<Self, Result<TaskPosted, EngineError>>;

    fn handle(&mut self, msg: PostTask, _: &mut Context<Self>) -> Self::Result {
        self.last_used = Instant::now();
        let task = msg.0;
        let price = task.price_cents;
        // A repeated Idempotency-Key must get its first answer even if the money is gone now,
        // so only fresh posts are refused here; the store's guarded write has the last word.
        if task.idempotency.is_none() {
            let available = self.snapshot.as_ref().map_or(0, |s| s.available_cents);
            if available < price {
                let err = EngineError::InsufficientBalance {
                    needed_cents: price,
                    available_cents: available,
                };
                return Box::pin(fut::ready(Err(err)));
            }
        }
        self.in_flight += 1;
        self.meter.set_gauge(2, i64::from(self.in_flight));
        let fut = self.store.post_task(task);
        Box::pin(fut.into_actor(self).map(move |res, act, _| {
            act.in_flight -= 1;
            act.meter.set_gauge(2, i64::from(act.in_flight));
            res
        }))
    }
}

crate::metered!(BalanceActor: Observed, GetBalance, PostTask);

impl Handler<Inspect> for BalanceActor {
    type Result = State;
    fn handle(&mut self, _: Inspect, _: &mut Context<Self>) -> State {
        State(serde_json::json!({
            "user_id": self.user_id,
            "balance": self.snapshot.as_ref().map(|s| serde_json::json!({
                "available_cents": s.available_cents,
                "frozen_cents": s.frozen_cents,
                "total_deposited_cents": s.total_deposited_cents,
                "total_earned_cents": s.total_earned_cents,
                "total_withdrawn_cents": s.total_withdrawn_cents,
                "version": s.version,
            })),
            "debits_in_flight": self.in_flight,
            "idle_seconds": self.last_used.elapsed().as_secs(),
            "passivates_after_idle_seconds": IDLE.as_secs(),
        }))
    }
}
