//! The clients of the real-time endpoints for the tests (shared with the multi-node suite): a
//! worker WebSocket and a minimal SSE reader.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::TestApp;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn ws(app: &TestApp, token: &str) -> Ws {
    let url = app.url("/api/work/ws").replace("http://", "ws://");
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("ws connect");
    socket
}

/// A worker socket that has said `ready` for `max` tasks. Tests that need its asks parked in the
/// Dispatcher wait for them with `parked`.
pub async fn ready_ws(app: &TestApp, token: &str, max: u32) -> Ws {
    let mut socket = ws(app, token).await;
    send(&mut socket, json!({"type": "ready", "max": max})).await;
    socket
}

pub async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON frame, skipping pings.
pub async fn frame(ws: &mut Ws, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).unwrap(),
            Ok(Some(Ok(Message::Close(c)))) => {
                return json!({"type": "close", "reason": c.map(|c| c.reason.to_string())});
            }
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("socket ended: {other:?}"),
            Err(_) => panic!("no frame within {within:?}"),
        }
    }
}

/// A minimal SSE reader over a streaming response.
pub struct Sse {
    res: reqwest::Response,
    buf: String,
}

#[derive(Debug)]
pub struct Event {
    pub id: Option<u64>,
    pub event: String,
    pub data: Value,
}

impl Sse {
    pub async fn open(app: &TestApp, path: &str, token: Option<&str>, last_id: Option<u64>) -> Sse {
        let mut req = app
            .client
            .get(app.url(path))
            .timeout(Duration::from_secs(3600));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        Sse {
            res,
            buf: String::new(),
        }
    }

    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = Instant::now() + within;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = Event {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        ev.id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        ev.event = v.to_string();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        ev.data = serde_json::from_str(v).unwrap();
                    }
                }
                if any {
                    return Some(ev);
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.res.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(_) => return None,
                Err(_) => return None,
            }
        }
    }
}
