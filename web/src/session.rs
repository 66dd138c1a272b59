//! WorkerSession: one actor per worker WebSocket. It keeps up to `ready.max` claims outstanding
//! (capped by the worker's `limits.concurrent`), pushes each claimed task the moment the
//! Dispatcher hands it over, settles submits, gives tasks back on `release`, tells the worker
//! when a deadline passes, and closes a connection that has gone silent. The socket itself is
//! driven by two small tasks: a reader that forwards frames here, and a writer fed by a bounded
//! queue (a client that stops reading is disconnected, never waited on).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::web;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use bytes::Bytes;
use clawjobs_actors::EngineError;
use clawjobs_actors::dispatcher::TaskExpired;
use clawjobs_actors::domain::{TaskId, WorkerId};
use clawjobs_actors::meter::{Gauges, Inspect, Meter, MeteredRecipient, State};
use clawjobs_actors::store::ClaimedTask;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::AppState;
use crate::error::ApiError;
use crate::views::{SubmitView, WorkView};

/// How often the server pings and checks for silence: a third of the idle limit, 1 to 10 s.
fn heartbeat(idle: Duration) -> Duration {
    (idle / 3).clamp(Duration::from_secs(1), Duration::from_secs(10))
}
/// Frames queued for a client before it counts as not reading.
pub const OUT_QUEUE: usize = 256;
/// Tasks released or let lapse that are not offered back to the same session at once.
const REMEMBER_RELEASED: usize = 16;

pub enum Out {
    Text(String),
    Ping,
    Pong(Bytes),
    Close(CloseReason),
}

pub struct WorkerSession {
    worker_id: String,
    state: web::Data<AppState>,
    out: mpsc::Sender<Out>,
    /// Tasks the worker wants at once (`ready.max`, capped by `limits.concurrent`).
    capacity: u32,
    held: HashSet<String>,
    /// Claims asked of the Dispatcher and not yet answered, oldest first, by ask number.
    asks: VecDeque<(u64, SpawnHandle)>,
    next_ask: u64,
    released: VecDeque<String>,
    last_heard: Instant,
    idle: Duration,
    /// A refill is scheduled (after a rate limit or a refusal).
    refill_pending: bool,
    pub meter: Arc<Meter>,
    connected_at: Instant,
}

/// What the console lists of a session.
pub const GAUGES: Gauges = &["held", "capacity", "asks"];

/// Numbers sessions, so that a worker's second socket has an id of its own in the console.
static SESSIONS: AtomicU64 = AtomicU64::new(0);

impl WorkerSession {
    pub fn new(
        worker_id: String,
        state: web::Data<AppState>,
        out: mpsc::Sender<Out>,
        idle: Duration,
    ) -> Self {
        let n = SESSIONS.fetch_add(1, Ordering::Relaxed) + 1;
        WorkerSession {
            meter: Meter::new("WorkerSession", format!("{worker_id}/{n}")),
            connected_at: Instant::now(),
            worker_id,
            state,
            out,
            capacity: 0,
            held: HashSet::new(),
            asks: VecDeque::new(),
            next_ask: 0,
            released: VecDeque::new(),
            last_heard: Instant::now(),
            idle,
            refill_pending: false,
        }
    }

    fn send(&self, frame: Value, ctx: &mut Context<Self>) {
        if self.out.try_send(Out::Text(frame.to_string())).is_err() {
            // The client is not reading (or gone): drop it; its tasks follow the deadline rules.
            ctx.stop();
        }
    }

    /// An error frame: the HTTP API's code, message and details (always an object), and the task
    /// it is about when there is one.
    fn api_error(&self, e: ApiError, task_id: Option<&str>, ctx: &mut Context<Self>) {
        let mut frame = json!({
            "type": "error", "code": e.code.as_str(), "message": e.message, "details": e.details,
        });
        if let Some(t) = task_id {
            frame["task_id"] = json!(t);
        }
        self.send(frame, ctx);
    }

    fn close(&self, code: CloseCode, why: &str, ctx: &mut Context<Self>) {
        let _ = self.out.try_send(Out::Close(CloseReason {
            code,
            description: Some(why.to_string()),
        }));
        ctx.stop();
    }

    /// Asks for tasks until held + asked reaches the capacity.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        while (self.held.len() + self.asks.len()) < self.capacity as usize {
            let id = self.next_ask;
            self.next_ask += 1;
            let handle = self.ask(id, ctx);
            self.asks.push_back((id, handle));
        }
    }

    fn refill_later(&mut self, after: Duration, ctx: &mut Context<Self>) {
        if self.refill_pending {
            return;
        }
        self.refill_pending = true;
        ctx.run_later(after, |act, ctx| {
            act.refill_pending = false;
            act.fill(ctx);
        });
    }

    fn ask(&mut self, id: u64, ctx: &mut Context<Self>) -> SpawnHandle {
        let state = self.state.clone();
        let worker_id = self.worker_id.clone();
        let notify = MeteredRecipient::new(ctx.address(), self.meter.clone());
        let exclude: Vec<String> = self.released.iter().cloned().collect();
        let fut = async move {
            let engine = &state.engine;
            let worker = engine.worker(&worker_id).await.map_err(ApiError::from)?;
            state
                .limits
                .work_next(&engine.cfg(), &worker_id, &worker.tier)?;
            let Some(mut spec) = engine
                .claim_spec(&worker, Some(notify))
                .map_err(ApiError::from)?
            else {
                return Ok(None);
            };
            spec.exclude = exclude;
            // A claim dropped by a Dispatcher that panicked is asked again of its successor.
            loop {
                match engine.request_claim(spec.clone(), true).await {
                    Ok(reply) => {
                        let claimed =
                            reply.and_then(|t| t.map(|t| engine.open_claimed(t)).transpose());
                        return claimed.map_err(ApiError::from);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        };
        ctx.spawn(fut.into_actor(self).map(
            move |res: Result<Option<ClaimedTask>, ApiError>, act, ctx| {
                act.asks.retain(|(ask, _)| *ask != id);
                match res {
                    Ok(Some(task)) => {
                        act.held.insert(task.task_id.clone());
                        act.send(
                            json!({ "type": "task", "task": WorkView::from(&task) }),
                            ctx,
                        );
                        act.fill(ctx);
                    }
                    // Daily cap reached, or the node is stopping: look again later.
                    Ok(None) => act.refill_later(Duration::from_secs(60), ctx),
                    Err(e) => {
                        let wait = e
                            .retry_after_seconds
                            .map_or(Duration::from_secs(5), Duration::from_secs);
                        act.api_error(e, None, ctx);
                        act.refill_later(wait, ctx);
                    }
                }
            },
        ))
    }

    fn remember(&mut self, task_id: String) {
        self.released.push_back(task_id);
        if self.released.len() > REMEMBER_RELEASED {
            self.released.pop_front();
        }
    }

    /// Withdraws asks beyond the capacity (dropping them tells the Dispatcher).
    fn shrink(&mut self, ctx: &mut Context<Self>) {
        while self.held.len() + self.asks.len() > self.capacity as usize {
            match self.asks.pop_back() {
                Some((_, h)) => {
                    ctx.cancel_future(h);
                }
                None => break,
            }
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let frame: Frame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                let e = ApiError::validation(format!("bad frame: {e}"));
                return self.api_error(e, None, ctx);
            }
        };
        match frame {
            Frame::Ping => self.send(json!({ "type": "pong" }), ctx),
            Frame::Ready { max } => self.ready(max, ctx),
            Frame::Submit { task_id, output } => self.submit(task_id, output, ctx),
            Frame::Release { task_id } => self.release(task_id, ctx),
        }
    }

    fn ready(&mut self, max: u32, ctx: &mut Context<Self>) {
        let state = self.state.clone();
        let worker_id = self.worker_id.clone();
        let fut = async move { state.engine.worker(&worker_id).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(w) => {
                act.capacity = max.min(w.profile.limits.concurrent.max(1));
                act.shrink(ctx);
                act.fill(ctx);
            }
            Err(e) => act.api_error(e.into(), None, ctx),
        }));
    }

    fn submit(&mut self, task_id: String, output: Value, ctx: &mut Context<Self>) {
        if !output.is_object() {
            let e = ApiError::validation("output must be a JSON object, e.g. {\"text\": \"...\"}");
            return self.api_error(e, Some(&task_id), ctx);
        }
        let state = self.state.clone();
        let worker_id = self.worker_id.clone();
        let fut = {
            let task_id = task_id.clone();
            async move {
                let (worker_id, task_id) = (WorkerId::from(worker_id), TaskId::from(task_id));
                state.engine.submit(&worker_id, &task_id, &output).await
            }
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            match res {
                Ok(settled) => {
                    let mut frame =
                        serde_json::to_value(SubmitView::from(&settled)).unwrap_or_default();
                    frame["type"] = json!("result");
                    act.send(frame, ctx);
                    act.held.remove(&task_id);
                }
                Err(e) => {
                    if matches!(e, EngineError::TaskExpired | EngineError::Forbidden(_)) {
                        act.held.remove(&task_id);
                    }
                    act.api_error(e.into(), Some(&task_id), ctx);
                }
            }
            act.fill(ctx);
        }));
    }

    fn release(&mut self, task_id: String, ctx: &mut Context<Self>) {
        let state = self.state.clone();
        let worker_id = self.worker_id.clone();
        let fut = {
            let task_id = task_id.clone();
            async move {
                let (worker_id, task_id) = (WorkerId::from(worker_id), TaskId::from(task_id));
                state.engine.release(&worker_id, &task_id).await
            }
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            match res {
                Ok(()) => {
                    act.held.remove(&task_id);
                    act.remember(task_id.clone());
                    act.send(json!({ "type": "released", "task_id": task_id }), ctx);
                }
                Err(e) => act.api_error(e.into(), Some(&task_id), ctx),
            }
            act.fill(ctx);
        }));
    }
}

/// What a worker may send.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Frame {
    Ready { max: u32 },
    Submit { task_id: String, output: Value },
    Release { task_id: String },
    Ping,
}

impl Actor for WorkerSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.state
            .ws_sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ctx.run_interval(heartbeat(self.idle), |act, ctx| {
            act.meter.set_gauge(0, act.held.len() as i64);
            act.meter.set_gauge(1, i64::from(act.capacity));
            act.meter.set_gauge(2, act.asks.len() as i64);
            if act.last_heard.elapsed() > act.idle {
                act.close(CloseCode::Normal, "idle: no frame received in time", ctx);
            } else if act.out.try_send(Out::Ping).is_err() {
                ctx.stop();
            }
        });
        // A graceful stop closes the socket with a reason.
        let mut shutdown = self.state.shutdown.clone();
        ctx.spawn(
            async move {
                let _ = shutdown.wait_for(|stopping| *stopping).await;
            }
            .into_actor(self)
            .map(|_, act, ctx| act.close(CloseCode::Restart, "server stopping; reconnect", ctx)),
        );
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.state
            .ws_sessions
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A frame from the socket, or the socket's end.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Inbound {
    Frame(AggregatedMessage),
    Gone,
}

impl Handler<Inbound> for WorkerSession {
    type Result = ();

    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match msg {
            Inbound::Frame(AggregatedMessage::Text(text)) => self.on_text(&text, ctx),
            Inbound::Frame(AggregatedMessage::Binary(_)) => {
                self.api_error(ApiError::validation("frames are JSON text"), None, ctx)
            }
            Inbound::Frame(AggregatedMessage::Ping(bytes)) => {
                if self.out.try_send(Out::Pong(bytes)).is_err() {
                    ctx.stop();
                }
            }
            Inbound::Frame(AggregatedMessage::Pong(_)) => {}
            Inbound::Frame(AggregatedMessage::Close(_)) | Inbound::Gone => ctx.stop(),
        }
    }
}

/// A notification for this worker, from its stream on the FeedHub: sent as a
/// `{"type": "notification", …}` frame.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Notify(pub serde_json::Value);

impl Handler<Notify> for WorkerSession {
    type Result = ();

    fn handle(&mut self, msg: Notify, ctx: &mut Context<Self>) {
        let mut frame = json!({ "type": "notification" });
        if let (Some(f), serde_json::Value::Object(n)) = (frame.as_object_mut(), msg.0) {
            f.extend(n);
        }
        self.send(frame, ctx);
    }
}

clawjobs_actors::metered!(WorkerSession: Inbound, TaskExpired, Notify);

impl Handler<Inspect> for WorkerSession {
    type Result = State;
    fn handle(&mut self, _: Inspect, _: &mut Context<Self>) -> State {
        let mut held: Vec<&String> = self.held.iter().collect();
        held.sort();
        State(json!({
            "worker_id": self.worker_id,
            "ready_for": self.capacity,
            "held_tasks": held,
            "claims_asked": self.asks.len(),
            "recently_given_back": self.released,
            "refill_scheduled": self.refill_pending,
            "connected_seconds": self.connected_at.elapsed().as_secs(),
            "silent_seconds": self.last_heard.elapsed().as_secs(),
            "closes_when_silent_seconds": self.idle.as_secs(),
        }))
    }
}

impl Handler<TaskExpired> for WorkerSession {
    type Result = ();

    fn handle(&mut self, msg: TaskExpired, ctx: &mut Context<Self>) {
        if self.held.remove(&msg.task_id) {
            // Not offered straight back to the worker that just let it lapse.
            self.remember(msg.task_id.clone());
            self.send(json!({ "type": "expired", "task_id": msg.task_id }), ctx);
            self.fill(ctx);
        }
    }
}
