//! Buyer webhooks: which events there are, which endpoints may be registered, how a delivery is
//! signed, and when a failed one is tried again.
//!
//! A delivery is signed the way Stripe signs its events: `Clawjobs-Signature: t=<unix seconds>,
//! v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`. A receiver recomputes the HMAC over the raw body
//! and refuses a `t` too far from its clock (replays). Failed deliveries wait
//! `initial · 2^(n-1)` (capped), of which the second half is random ("equal jitter": never less
//! than half the backoff, so a herd of failed deliveries spreads out without hammering sooner).

use std::net::IpAddr;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::config::WebhooksDoc;

/// The events a buyer may subscribe to, as `type` says them.
pub const EVENTS: [&str; 9] = [
    "task.completed",
    "task.failed",
    "task.credited",
    "deposit.completed",
    "bounty.submission",
    "bounty.completed",
    "bounty.expired",
    "dispute.opened",
    "dispute.resolved",
];

/// The longest URL an endpoint may have.
pub const MAX_URL_LEN: usize = 2_048;
/// How much of an endpoint's answer is kept with a failed attempt.
pub const KEPT_ANSWER_CHARS: usize = 200;

/// Checks the events of a registration: known, not repeated, at least one. Answers them in
/// [`EVENTS`] order.
pub fn check_events(events: &[String]) -> Result<Vec<String>, String> {
    if events.is_empty() {
        return Err(format!(
            "events: give at least one of {}",
            EVENTS.join(", ")
        ));
    }
    for e in events {
        if !EVENTS.contains(&e.as_str()) {
            return Err(format!(
                "events: unknown event {e:?}; known: {}",
                EVENTS.join(", ")
            ));
        }
    }
    Ok(EVENTS
        .iter()
        .filter(|k| events.iter().any(|e| e == *k))
        .map(|k| k.to_string())
        .collect())
}

/// Whether deliveries may go to this address. Loopback, private, link-local, unspecified,
/// multicast, documentation and carrier-grade NAT addresses are refused unless `allow_private`
/// (a server setting for development and tests): a webhook must not become a way into the
/// platform's own network.
pub fn address_allowed(ip: IpAddr, allow_private: bool) -> bool {
    if allow_private {
        return true;
    }
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return address_allowed(IpAddr::V4(v4), false);
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

/// A registered endpoint, checked: scheme, host and (for a literal address) where it points.
/// `https` only, unless `allow_private` (then `http` too, for a receiver on this machine).
/// Host names are checked again when a delivery resolves them (see `webhooks::Sender`).
pub fn check_url(raw: &str, allow_private: bool) -> Result<url::Url, String> {
    if raw.len() > MAX_URL_LEN {
        return Err(format!("url: at most {MAX_URL_LEN} characters"));
    }
    let url = url::Url::parse(raw).map_err(|e| format!("url: not a URL ({e})"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => return Err("url: must be https".into()),
        other => return Err(format!("url: {other} is not https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url: no user name or password in the URL; authenticate the signature".into());
    }
    if url.fragment().is_some() {
        return Err("url: no #fragment".into());
    }
    match url.host() {
        None => return Err("url: no host".into()),
        Some(url::Host::Ipv4(ip)) if !address_allowed(IpAddr::V4(ip), allow_private) => {
            return Err("url: that address is not reachable from here".into());
        }
        Some(url::Host::Ipv6(ip)) if !address_allowed(IpAddr::V6(ip), allow_private) => {
            return Err("url: that address is not reachable from here".into());
        }
        Some(url::Host::Domain(d)) if !allow_private && is_local_name(d) => {
            return Err("url: that host is not reachable from here".into());
        }
        Some(_) => {}
    }
    Ok(url)
}

fn is_local_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost") || h.ends_with(".local") || !h.contains('.')
}

/// The `Clawjobs-Signature` header's value for `body` sent at `t` (unix seconds).
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    format!("t={t},v1={}", sign(secret, t, body))
}

fn sign(secret: &str, t: i64, body: &str) -> String {
    // HMAC accepts a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// What a receiver does with a `Clawjobs-Signature` header: true when one `v1` matches the body
/// and `t` is within `tolerance_s` of `now_s`. (Our own tests use it as a receiver would.)
pub fn verify(secret: &str, header: &str, body: &str, now_s: i64, tolerance_s: i64) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1.push(v),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now_s - t).abs() > tolerance_s {
        return false;
    }
    let want = sign(secret, t, body);
    // Constant-time in the length of the expected value.
    v1.iter().any(|got| {
        got.len() == want.len()
            && got
                .bytes()
                .zip(want.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

/// The wait before attempt `attempts + 1`, after `attempts` (≥ 1) failed ones:
/// `initial · 2^(attempts-1)` capped at `max_backoff_ms`, its second half scaled by `jitter`
/// (a uniform draw in `[0, 1)`).
pub fn backoff_ms(doc: &WebhooksDoc, attempts: u32, jitter: f64) -> i64 {
    let exp = attempts.saturating_sub(1).min(40);
    let full = doc
        .initial_backoff_ms
        .saturating_mul(1u64 << exp)
        .min(doc.max_backoff_ms)
        .max(1);
    let half = full / 2;
    let jitter = jitter.clamp(0.0, 1.0);
    (full - half + (half as f64 * jitter) as u64) as i64
}

/// After a failed attempt (the `attempts`-th): when to try again, or `None` when that was the
/// last one and the delivery is dead-lettered.
pub fn retry_at(doc: &WebhooksDoc, attempts: u32, now_ms: i64, jitter: f64) -> Option<i64> {
    (attempts < doc.max_attempts).then(|| now_ms.saturating_add(backoff_ms(doc, attempts, jitter)))
}

/// A delivery's state.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (maybe the first).
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every attempt failed: kept for the buyer to read and retry.
    Dead,
    /// Its endpoint was deleted before it was delivered.
    Cancelled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Dead,
            DeliveryStatus::Cancelled,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> WebhooksDoc {
        WebhooksDoc {
            max_attempts: 8,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 3_600_000,
            timeout_ms: 10_000,
            max_per_buyer: 10,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_in_its_upper_half_and_is_capped() {
        let d = doc();
        assert_eq!(backoff_ms(&d, 1, 0.0), 500);
        assert_eq!(backoff_ms(&d, 1, 0.999_999), 999);
        assert_eq!(backoff_ms(&d, 2, 0.0), 1_000);
        assert_eq!(backoff_ms(&d, 4, 0.0), 4_000);
        for attempts in 1..30 {
            for j in [0.0, 0.5, 0.99] {
                let b = backoff_ms(&d, attempts, j);
                assert!(b <= 3_600_000 && b >= 1_800_000.min(500 << (attempts - 1).min(20)));
            }
        }
        assert_eq!(backoff_ms(&d, 40, 0.0), 1_800_000);
    }

    #[test]
    fn the_last_attempt_dead_letters() {
        let d = doc();
        assert_eq!(retry_at(&d, 1, 10_000, 0.0), Some(10_500));
        assert!(retry_at(&d, 7, 0, 0.0).is_some());
        assert_eq!(retry_at(&d, 8, 0, 0.0), None);
        assert_eq!(retry_at(&d, 9, 0, 0.0), None);
    }

    #[test]
    fn signatures_verify_as_a_receiver_checks_them() {
        let header = signature("whsec_x", 1_700_000_000, r#"{"id":"evt_1"}"#);
        assert!(header.starts_with("t=1700000000,v1="));
        assert!(verify(
            "whsec_x",
            &header,
            r#"{"id":"evt_1"}"#,
            1_700_000_100,
            300
        ));
        assert!(!verify(
            "whsec_y",
            &header,
            r#"{"id":"evt_1"}"#,
            1_700_000_100,
            300
        ));
        assert!(!verify(
            "whsec_x",
            &header,
            r#"{"id":"evt_2"}"#,
            1_700_000_100,
            300
        ));
        // Too old: a replay.
        assert!(!verify(
            "whsec_x",
            &header,
            r#"{"id":"evt_1"}"#,
            1_700_001_000,
            300
        ));
        // A known vector: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn endpoints_must_be_public_https() {
        assert!(check_url("https://hooks.example.com/clawjobs", false).is_ok());
        for bad in [
            "http://hooks.example.com/x",
            "ftp://hooks.example.com/x",
            "https://user:pw@hooks.example.com/x",
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://localhost/x",
            "https://metadata/x",
            "https://100.64.0.1/x",
            "not a url",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad} was accepted");
        }
        // A development server may deliver to this machine.
        assert!(check_url("http://127.0.0.1:8081/hook", true).is_ok());
        assert!(address_allowed("93.184.216.34".parse().unwrap(), false));
        assert!(address_allowed(
            "2606:2800:220:1::1".parse().unwrap(),
            false
        ));
    }

    #[test]
    fn events_are_checked_and_ordered() {
        let got = check_events(&["dispute.opened".into(), "task.completed".into()]).unwrap();
        assert_eq!(got, vec!["task.completed", "dispute.opened"]);
        assert!(check_events(&[]).is_err());
        assert!(check_events(&["task.exploded".into()]).is_err());
    }
}
