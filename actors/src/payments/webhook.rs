//! Stripe webhooks: the `Stripe-Signature` check on the raw body, then the few fields of the
//! event this server acts on.
//!
//! The header is `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>[,v1=…]`: any `v1`
//! may match (Stripe sends several while a secret is being rolled), compared in constant time,
//! and `t` must be within [`TOLERANCE_S`] of now (a captured request cannot be replayed later).

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::rules::deposit::SessionEvent;

/// How far a signature's timestamp may be from now, in seconds (Stripe's own default).
pub const TOLERANCE_S: i64 = 300;

/// Why a webhook was refused (answered 400, nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is not t=…,v1=…")]
    Malformed,
    #[error("the Stripe-Signature timestamp is more than 300 s from now")]
    Stale,
    #[error("no v1 signature in Stripe-Signature matches the body")]
    Mismatch,
    #[error("the signed body is not a Stripe event")]
    NotAnEvent,
}

/// Checks `header` against `body` with `secret`, at `now_s` (unix seconds).
pub fn verify(secret: &str, header: Option<&str>, body: &[u8], now_s: i64) -> Result<(), Refused> {
    let header = header.ok_or(Refused::Missing)?;
    let mut timestamp: Option<&str> = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            return Err(Refused::Malformed);
        };
        match k {
            "t" => timestamp = Some(v),
            "v1" => signatures.push(v),
            _ => {} // v0 (test-mode legacy) and schemes added later are not ours to check
        }
    }
    let t_text = timestamp.ok_or(Refused::Malformed)?;
    let t: i64 = t_text.parse().map_err(|_| Refused::Malformed)?;
    if signatures.is_empty() {
        return Err(Refused::Malformed);
    }
    if (now_s - t).abs() > TOLERANCE_S {
        return Err(Refused::Stale);
    }
    for sig in signatures {
        let Some(expected) = hex_decode(sig) else {
            continue;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return Err(Refused::Mismatch);
        };
        mac.update(t_text.as_bytes());
        mac.update(b".");
        mac.update(body);
        // verify_slice compares in constant time.
        if mac.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err(Refused::Mismatch)
}

/// The `Stripe-Signature` header for `body` at `t`: what Stripe sends (for tests and tools).
pub fn sign(secret: &str, body: &[u8], t: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={t},v1={}",
        crate::domain::hex(&mac.finalize().into_bytes())
    )
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A verified event, as far as this server cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Stripe's event id (`evt_…`): each is acted on once.
    pub id: String,
    /// `checkout.session.completed`, …
    pub event_type: String,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// Something happened to a Checkout Session.
    Session {
        session_id: String,
        /// Our deposit id, from `client_reference_id` or `metadata.deposit_id`.
        deposit_id: Option<String>,
        event: SessionEvent,
    },
    /// An event type (or a session state) this server does not act on.
    Ignored,
}

/// Reads the event out of a verified body.
pub fn parse(body: &[u8]) -> Result<Event, Refused> {
    let v: Value = serde_json::from_slice(body).map_err(|_| Refused::NotAnEvent)?;
    let id = v["id"].as_str().ok_or(Refused::NotAnEvent)?.to_string();
    let event_type = v["type"].as_str().ok_or(Refused::NotAnEvent)?.to_string();
    let object = &v["data"]["object"];
    let session = |event: SessionEvent| -> Result<EventKind, Refused> {
        let session_id = object["id"]
            .as_str()
            .ok_or(Refused::NotAnEvent)?
            .to_string();
        let deposit_id = object["client_reference_id"]
            .as_str()
            .or_else(|| object["metadata"]["deposit_id"].as_str())
            .map(str::to_string);
        Ok(EventKind::Session {
            session_id,
            deposit_id,
            event,
        })
    };
    let paid = || SessionEvent::Paid {
        amount_cents: object["amount_total"].as_i64().unwrap_or(-1),
        currency: object["currency"].as_str().unwrap_or("").to_string(),
    };
    let kind = match event_type.as_str() {
        // A card payment is paid at completion; a delayed method completes unpaid and is paid
        // (or not) later, in async_payment_succeeded.
        "checkout.session.completed" if object["payment_status"] == "paid" => session(paid())?,
        "checkout.session.async_payment_succeeded" => session(paid())?,
        "checkout.session.expired" => session(SessionEvent::Expired)?,
        _ => EventKind::Ignored,
    };
    Ok(Event {
        id,
        event_type,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";

    #[test]
    fn a_known_signature_verifies() {
        // Computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac whsec_test
        let header =
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91";
        assert!(verify(SECRET, Some(header), b"{}", 1_700_000_000).is_ok());
        assert_eq!(sign(SECRET, b"{}", 1_700_000_000), header);
    }

    #[test]
    fn every_bad_signature_is_refused_for_its_reason() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_700_000_000;
        let good = sign(SECRET, body, now);
        assert!(verify(SECRET, Some(&good), body, now).is_ok());
        assert!(verify(SECRET, Some(&good), body, now + TOLERANCE_S).is_ok());
        assert_eq!(verify(SECRET, None, body, now), Err(Refused::Missing));
        assert_eq!(
            verify(SECRET, Some("junk"), body, now),
            Err(Refused::Malformed)
        );
        assert_eq!(
            verify(SECRET, Some("t=1"), body, now),
            Err(Refused::Malformed)
        );
        assert_eq!(
            verify(SECRET, Some(&good), body, now + TOLERANCE_S + 1),
            Err(Refused::Stale)
        );
        assert_eq!(
            verify(SECRET, Some(&good), br#"{"id":"evt_2"}"#, now),
            Err(Refused::Mismatch)
        );
        assert_eq!(
            verify("whsec_other", Some(&good), body, now),
            Err(Refused::Mismatch)
        );
        // Any v1 may match, beside others that do not (a secret being rolled).
        let v1 = good.split_once(",v1=").unwrap().1;
        let several = format!("t={now},v1=00ff,v0=abc,v1={v1}");
        assert!(verify(SECRET, Some(&several), body, now).is_ok());
        let odd = format!("t={now},v1=abc");
        assert_eq!(
            verify(SECRET, Some(&odd), body, now),
            Err(Refused::Mismatch)
        );
    }

    #[test]
    fn events_are_read_for_what_they_say() {
        let completed = serde_json::json!({
            "id": "evt_1", "type": "checkout.session.completed",
            "data": {"object": {"id": "cs_1", "client_reference_id": "dep_1",
                "payment_status": "paid", "amount_total": 500, "currency": "usd"}}
        });
        let e = parse(completed.to_string().as_bytes()).unwrap();
        assert_eq!(e.id, "evt_1");
        assert_eq!(
            e.kind,
            EventKind::Session {
                session_id: "cs_1".into(),
                deposit_id: Some("dep_1".into()),
                event: SessionEvent::Paid {
                    amount_cents: 500,
                    currency: "usd".into()
                },
            }
        );
        let unpaid = serde_json::json!({
            "id": "evt_2", "type": "checkout.session.completed",
            "data": {"object": {"id": "cs_1", "payment_status": "unpaid"}}
        });
        assert!(matches!(
            parse(unpaid.to_string().as_bytes()).unwrap().kind,
            EventKind::Ignored
        ));
        let expired = serde_json::json!({
            "id": "evt_3", "type": "checkout.session.expired",
            "data": {"object": {"id": "cs_1", "metadata": {"deposit_id": "dep_1"}}}
        });
        assert!(matches!(
            parse(expired.to_string().as_bytes()).unwrap().kind,
            EventKind::Session {
                event: SessionEvent::Expired,
                deposit_id: Some(_),
                ..
            }
        ));
        assert_eq!(parse(b"[1]"), Err(Refused::NotAnEvent));
        assert_eq!(parse(b"not json"), Err(Refused::NotAnEvent));
    }
}
