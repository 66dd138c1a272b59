//! `GET /api/work/ws`: the worker WebSocket. The bearer token comes in the `Authorization` header
//! or, for clients that cannot set headers, a `token` query parameter.

use actix::Actor;
use actix_web::{HttpRequest, HttpResponse, web};
use clawjobs_actors::domain::Role;
use clawjobs_actors::feed::{Audience, Subscribe};
use tokio::sync::mpsc;

use crate::AppState;
use crate::error::ApiError;
use crate::session::{Inbound, Notify, OUT_QUEUE, Out, WorkerSession};

/// Largest frame a worker may send: a 256 KB output plus its envelope.
const MAX_FRAME_BYTES: usize = clawjobs_actors::limits::MAX_OUTPUT_BYTES + 4096;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/api/work/ws", "GET").route(web::get().to(connect)));
}

fn token(req: &HttpRequest) -> Option<String> {
    crate::auth::bearer(req).or_else(|| {
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("token").cloned())
    })
}

#[utoipa::path(get, path = "/api/work/ws", tag = "realtime", operation_id = "work_socket", security(("bearer" = [])),
    params(("token" = Option<String>, Query, description = "The worker token, for clients that cannot set headers")),
    responses(
        (status = 101, description = "A WebSocket of JSON text frames (see the README's Real time)"),
        (status = 401, description = "No or unknown token", body = crate::error::ErrorEnvelope),
        (status = 403, description = "Not a worker's token; SUSPENDED; BANNED", body = crate::error::ErrorEnvelope),
    ))]
pub(crate) async fn connect(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let token = token(&req).ok_or_else(|| ApiError::unauthorized("a worker token is required"))?;
    let who = crate::auth::check(&state, &token, &[Role::Worker]).await?;
    // A suspended worker is refused before the upgrade, with the same answer as HTTP.
    let worker = state.engine.worker(&who.id).await.map_err(ApiError::from)?;
    worker
        .check_not_suspended(clawjobs_actors::clock::now_ms())
        .map_err(ApiError::from)?;

    let (response, mut socket, frames) = actix_ws::handle(&req, body)?;
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(OUT_QUEUE);
    let session = WorkerSession::new(who.id.clone(), state.clone(), out_tx, state.ws_idle);
    let meter = session.meter.clone();
    let session =
        clawjobs_actors::meter::Metered::listed(session.start(), meter, crate::session::GAUGES);

    let mut frames = frames
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    // The worker's notifications, from its stream on the FeedHub, until the socket ends.
    let (ended, mut gone) = tokio::sync::oneshot::channel::<()>();
    let (notes_tx, mut notes) = mpsc::channel(clawjobs_actors::feed::SUBSCRIBER_QUEUE);
    state.engine.feed.do_send(Subscribe {
        audience: Audience::User(who.id.clone()),
        last_event_id: None,
        recent: 0,
        tx: notes_tx,
    });
    let notified = session.clone();
    actix_web::rt::spawn(async move {
        loop {
            tokio::select! {
                wire = notes.recv() => match wire {
                    Some(w) => {
                        if let Some(("notification", n)) = clawjobs_actors::feed::parse_wire(&w) {
                            notified.do_send(Notify(n));
                        }
                    }
                    None => return,
                },
                _ = &mut gone => return,
            }
        }
    });
    let reader = session.clone();
    actix_web::rt::spawn(async move {
        while let Some(frame) = frames.recv().await {
            match frame {
                Ok(f) => reader.do_send(Inbound::Frame(f)),
                Err(_) => break,
            }
        }
        reader.do_send(Inbound::Gone);
    });
    actix_web::rt::spawn(async move {
        // Dropped when this writer ends, which ends the notification forwarder.
        let _ended = ended;
        while let Some(out) = out_rx.recv().await {
            let sent = match out {
                Out::Text(t) => socket.text(t).await,
                Out::Ping => socket.ping(b"").await,
                Out::Pong(b) => socket.pong(&b).await,
                Out::Close(reason) => {
                    let _ = socket.close(Some(reason)).await;
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
        // The session ended without a close of its own.
        let _ = socket.close(None).await;
    });
    Ok(response)
}
