//! Sends buyer webhooks. Each pass of the Supervisor's `webhooks` job leases the deliveries that
//! are due (at most [`PER_WEBHOOK`] of one endpoint, none of an endpoint still busy with earlier
//! ones) and starts one POST for each on its own task: the job never waits for an endpoint, and
//! a slow or dead endpoint holds only its own deliveries back. Every attempt is recorded under
//! its lease; a failed one is due again after `rules::webhook::backoff_ms`, the last one is
//! dead-lettered. A sender that dies mid-attempt leaves the lease to run out, and the delivery
//! is sent again then: delivery is at least once, and receivers dedupe on the event `id`.
//!
//! Host names are resolved here, and addresses a webhook must not reach (loopback, private
//! networks, cloud metadata) are dropped at resolution time, so a name that resolves to the
//! platform's own network later (DNS rebinding) is refused too. Redirects are not followed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::clock::now_ms;
use crate::config::ConfigHandle;
use crate::error::EngineError;
use crate::metrics::Metrics;
use crate::rules::webhook as rules;
use crate::store::{Attempt, Claimed, Store};

/// At most this many deliveries of one endpoint are sent at once.
pub const PER_WEBHOOK: u32 = 4;
/// At most this many deliveries are leased per pass.
const BATCH: u32 = 200;
/// At most this many sends are under way at once, over every endpoint.
const MAX_IN_FLIGHT: usize = 512;
/// A lease outlives the endpoint's timeout by this much (the attempt is recorded in it).
const LEASE_MARGIN_MS: i64 = 5_000;

/// The webhook sender: an HTTP client and the store. Cheap to clone.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    store: Arc<dyn Store>,
    config: ConfigHandle,
    metrics: Arc<Metrics>,
    /// A development server may deliver to its own machine (`CLAWJOBS_WEBHOOKS_ALLOW_PRIVATE`).
    allow_private: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
    /// Opens the signing secrets sealed at rest.
    keys: Option<Arc<crate::sealed::DataKeys>>,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pass {
    pub started: usize,
    pub in_flight: usize,
}

impl Sender {
    pub fn new(
        store: Arc<dyn Store>,
        config: ConfigHandle,
        metrics: Arc<Metrics>,
        allow_private: Arc<AtomicBool>,
    ) -> Result<Sender, EngineError> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls()?)
            .dns_resolver(Arc::new(Resolver {
                allow_private: allow_private.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(2)
            .user_agent(concat!("clawjobs-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EngineError::internal(format!("webhook client: {e}")))?;
        Ok(Sender {
            client,
            store,
            config,
            metrics,
            allow_private,
            in_flight: Arc::default(),
            keys: None,
        })
    }

    pub fn with_keys(mut self, keys: Option<Arc<crate::sealed::DataKeys>>) -> Sender {
        self.keys = keys;
        self
    }

    /// An endpoint's signing secret in plain (sealed at rest where the server has a key).
    fn secret(&self, stored: &str) -> Result<String, String> {
        let field = crate::sealed::Field::WebhookSecret;
        crate::sealed::open_with(self.keys.as_deref(), field, stored).map_err(|e| match e {
            EngineError::SensitiveDisabled => {
                "the signing secret is sealed and this server has no data key".to_string()
            }
            e => format!("the signing secret does not open: {}", e.for_operator()),
        })
    }

    pub fn allow_private(&self) -> bool {
        self.allow_private.load(Ordering::Relaxed)
    }

    /// Leases what is due and starts sending it; the sends finish on their own.
    pub async fn pass(&self) -> Result<Pass, EngineError> {
        let busy = self.in_flight.load(Ordering::Relaxed);
        let room = MAX_IN_FLIGHT.saturating_sub(busy).min(BATCH as usize) as u32;
        if room == 0 {
            return Ok(Pass {
                started: 0,
                in_flight: busy,
            });
        }
        let doc = self.config.get().webhooks.clone();
        let lease_ms = (doc.timeout_ms as i64).saturating_add(LEASE_MARGIN_MS);
        let claimed = self
            .store
            .claim_deliveries(now_ms(), lease_ms, PER_WEBHOOK, room)
            .await?;
        let started = claimed.len();
        for c in claimed {
            let me = self.clone();
            me.in_flight.fetch_add(1, Ordering::Relaxed);
            actix::spawn(async move {
                me.send(c).await;
                me.in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        Ok(Pass {
            started,
            in_flight: self.in_flight.load(Ordering::Relaxed),
        })
    }

    /// One attempt, recorded.
    async fn send(&self, c: Claimed) {
        let doc = self.config.get().webhooks.clone();
        let (status, error) = self.post(&c, doc.timeout_ms).await;
        let delivered = status.is_some_and(|s| (200..300).contains(&s));
        let now = now_ms();
        let attempts = c.delivery.attempts + 1;
        let retry_at_ms = if delivered {
            None
        } else {
            rules::retry_at(&doc, attempts, now, rand::random::<f64>())
        };
        Metrics::inc(&self.metrics.webhook_attempts_total);
        if delivered {
            Metrics::inc(&self.metrics.webhook_delivered_total);
        } else if retry_at_ms.is_none() {
            Metrics::inc(&self.metrics.webhook_dead_total);
        }
        if !delivered {
            tracing::info!(
                delivery = %c.delivery.delivery_id, webhook = %c.delivery.webhook_id,
                attempts, status, error = error.as_deref().unwrap_or(""),
                dead = retry_at_ms.is_none(), "webhook delivery failed"
            );
        }
        let attempt = Attempt {
            delivery_id: c.delivery.delivery_id.clone(),
            lease: c.lease,
            now_ms: now,
            delivered,
            status,
            error,
            retry_at_ms,
        };
        match self.store.delivery_attempted(attempt).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                delivery = %c.delivery.delivery_id,
                "a webhook attempt outlived its lease; the next one will tell"
            ),
            Err(e) => tracing::warn!(
                delivery = %c.delivery.delivery_id, error = %e,
                "recording a webhook attempt failed; it is sent again when its lease ends"
            ),
        }
    }

    /// The POST: the endpoint's status if it answered, and why it failed if it did.
    async fn post(&self, c: &Claimed, timeout_ms: u64) -> (Option<u16>, Option<String>) {
        // The address is checked again: the setting may have changed since it was registered.
        let url = match rules::check_url(&c.url, self.allow_private()) {
            Ok(u) => u,
            Err(e) => return (None, Some(e)),
        };
        let secret = match self.secret(&c.secret) {
            Ok(s) => s,
            Err(e) => return (None, Some(e)),
        };
        let t = now_ms() / 1000;
        let body = c.delivery.body.clone();
        let sent = self
            .client
            .post(url.as_str())
            .timeout(Duration::from_millis(timeout_ms.max(1)))
            .header("content-type", "application/json")
            .header(
                "clawjobs-signature",
                rules::signature(&secret, t, &c.delivery.body),
            )
            .header("clawjobs-event-id", &c.delivery.event_id)
            .header("clawjobs-delivery-id", &c.delivery.delivery_id)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(res) => {
                let status = res.status().as_u16();
                if res.status().is_success() {
                    return (Some(status), None);
                }
                // The start of the answer says why, often enough.
                let text = res.text().await.unwrap_or_default();
                let said: String = text.chars().take(rules::KEPT_ANSWER_CHARS).collect();
                (Some(status), Some(format!("answered {status}: {said}")))
            }
            Err(e) if e.is_timeout() => (None, Some(format!("no answer within {timeout_ms} ms"))),
            Err(e) => (None, Some(describe(&e))),
        }
    }
}

/// The TLS every reqwest client of this build uses: rustls on ring with the Mozilla roots. (The
/// build's reqwest has rustls without a built-in provider, so a client made without this panics
/// when it is built: the load generator and the tests pass it too.)
pub fn tls() -> Result<rustls::ClientConfig, EngineError> {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| EngineError::internal(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// A reqwest error with its causes, without the URL (it is the buyer's, and shown to them).
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_connect() {
        "could not connect".to_string()
    } else {
        "the request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out.chars().take(rules::KEPT_ANSWER_CHARS).collect()
}

/// Resolves endpoint names and drops the addresses a webhook may not reach.
struct Resolver {
    allow_private: Arc<AtomicBool>,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private.load(Ordering::Relaxed);
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| rules::address_allowed(a.ip(), allow))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no address a webhook may reach").into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
