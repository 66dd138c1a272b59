//! A fake Stripe API for the deposit tests: `POST /v1/checkout/sessions` answers a Checkout
//! Session in the shape `async-stripe` parses, replays the same session for a repeated
//! `Idempotency-Key` (as Stripe does), and records every request it got. It can be taken down
//! (connections are dropped) or made to answer Stripe's 500. The tests sign the webhooks
//! themselves, with HMAC-SHA256 as Stripe documents it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const SECRET_KEY: &str = "sk_test_fake";
pub const WEBHOOK_SECRET: &str = "whsec_fake_secret";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Up,
    /// Every connection is dropped without an answer.
    Down,
    /// Every request gets Stripe's `api_error` with status 500.
    Failing,
}

/// One request the fake got: its path, `Idempotency-Key` and form fields.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub idempotency_key: Option<String>,
    pub form: HashMap<String, String>,
}

#[derive(Default)]
struct State {
    mode: Option<Mode>,
    seen: Vec<Seen>,
    /// Session answers by idempotency key.
    sessions: HashMap<String, Value>,
    made: u64,
}

#[derive(Clone)]
pub struct FakeStripe {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl FakeStripe {
    pub async fn start() -> FakeStripe {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}/", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let serving = state.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let state = serving.clone();
                tokio::spawn(async move {
                    let _ = serve(conn, state).await;
                });
            }
        });
        FakeStripe { base, state }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// How many distinct sessions were made.
    pub fn sessions_made(&self) -> u64 {
        self.state.lock().unwrap().made
    }

    /// The server settings that point clawjobs at this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("STRIPE_SECRET_KEY", SECRET_KEY.to_string()),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_string()),
            ("STRIPE_API_BASE", self.base.clone()),
            (
                "CLAWJOBS_PUBLIC_URL",
                "https://clawjobs.example".to_string(),
            ),
        ]
    }
}

async fn serve(mut conn: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_end, content_length) = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            break (i + 4, len);
        }
    };
    while buf.len() < head_end + content_length {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    let idempotency_key = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("idempotency-key")
            .then(|| v.trim().to_string())
    });
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let (status, answer) = {
        let mut s = state.lock().unwrap();
        let mode = s.mode.unwrap_or(Mode::Up);
        s.seen.push(Seen {
            path: path.clone(),
            idempotency_key: idempotency_key.clone(),
            form: form.clone(),
        });
        match mode {
            Mode::Down => return Ok(()), // dropped: the client sees a broken connection
            Mode::Failing => (
                500,
                json!({"error": {"type": "api_error", "message": "fake Stripe is failing"}}),
            ),
            Mode::Up if path == "/v1/checkout/sessions" => {
                let key = idempotency_key.clone().unwrap_or_default();
                let session = match s.sessions.get(&key) {
                    Some(found) => found.clone(),
                    None => {
                        s.made += 1;
                        let made = session(s.made, &form);
                        s.sessions.insert(key, made.clone());
                        made
                    }
                };
                (200, session)
            }
            Mode::Up => (
                404,
                json!({"error": {"type": "invalid_request_error", "message": "no such path"}}),
            ),
        }
    };
    let text = answer.to_string();
    let reply = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    conn.write_all(reply.as_bytes()).await?;
    conn.shutdown().await
}

/// A Checkout Session as Stripe answers one (the fields `async-stripe` needs).
fn session(n: u64, form: &HashMap<String, String>) -> Value {
    let id = format!("cs_test_fake_{n:04}");
    let amount: i64 = form
        .get("line_items[0][price_data][unit_amount]")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let metadata: HashMap<String, String> = form
        .iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((key.to_string(), v.clone()))
        })
        .collect();
    json!({
        "id": id,
        "object": "checkout.session",
        "created": 1_700_000_000,
        "expires_at": 1_700_086_400,
        "livemode": false,
        "mode": "payment",
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "status": "open",
        "automatic_tax": {"enabled": false},
        "custom_fields": [],
        "custom_text": {},
        "shipping_options": [],
        "amount_total": amount,
        "currency": "usd",
        "client_reference_id": form.get("client_reference_id"),
        "metadata": metadata,
        "url": format!("https://checkout.stripe.test/c/pay/{id}"),
    })
}

/// `Stripe-Signature` for `body` signed at `t` with `secret`, as Stripe computes it.
pub fn signature(secret: &str, body: &str, t: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A Checkout Session event as Stripe sends it.
pub fn session_event(
    event_id: &str,
    event_type: &str,
    session_id: &str,
    deposit_id: &str,
    amount_cents: i64,
    payment_status: &str,
) -> String {
    json!({
        "id": event_id,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": now_s(),
        "livemode": false,
        "pending_webhooks": 1,
        "type": event_type,
        "data": {"object": {
            "id": session_id,
            "object": "checkout.session",
            "client_reference_id": deposit_id,
            "metadata": {"deposit_id": deposit_id},
            "amount_total": amount_cents,
            "currency": "usd",
            "payment_status": payment_status,
            "status": if event_type == "checkout.session.expired" { "expired" } else { "complete" },
        }},
    })
    .to_string()
}
