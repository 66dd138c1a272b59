//! Money in from Stripe: creating Checkout Sessions ([`Checkout`], Stripe's own client in
//! [`stripe`]) and reading the webhooks Stripe sends back ([`webhook`]: the signature is checked
//! on the raw bytes before anything is parsed).
//!
//! The engine holds a [`Payments`] only when an operator configured a secret key; without one,
//! deposits answer `PAYMENTS_DISABLED` and everything else works.

use std::future::Future;
use std::pin::Pin;

#[cfg(feature = "stripe")]
pub mod stripe;
pub mod webhook;

/// What the engine asks the payment provider for: one payment of `amount_cents` for a deposit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    pub deposit_id: String,
    pub buyer_id: String,
    pub amount_cents: i64,
    pub success_url: String,
    pub cancel_url: String,
    /// The same key for every attempt at this deposit, so that a retried create makes one session.
    pub idempotency_key: String,
}

/// The session the provider made: where to send the buyer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSession {
    pub id: String,
    pub url: String,
}

/// The provider could not be reached or refused: nothing was made on our side.
#[derive(Debug, Clone, thiserror::Error)]
#[error("payment provider: {0}")]
pub struct ProviderError(pub String);

pub type CheckoutFuture =
    Pin<Box<dyn Future<Output = Result<CheckoutSession, ProviderError>> + Send + 'static>>;

/// Creates Checkout Sessions. Stripe's client in production; the tests use the same client
/// against a fake Stripe server.
pub trait Checkout: Send + Sync + 'static {
    fn create_session(&self, req: CheckoutRequest) -> CheckoutFuture;
}

/// Payments as configured: the provider, the webhook secret, and this server's public address
/// (where Checkout sends the buyer back).
#[derive(Clone)]
pub struct Payments {
    pub checkout: std::sync::Arc<dyn Checkout>,
    pub webhook_secret: String,
    pub public_url: String,
}

impl std::fmt::Debug for Payments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payments")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// The server settings that turn payments on (`STRIPE_*`, `CLAWJOBS_PUBLIC_URL`). Its `Debug`
/// shows whether the keys are set, never the keys.
#[derive(Clone, Default)]
pub struct PaymentSettings {
    pub secret_key: Option<String>,
    pub webhook_secret: Option<String>,
    /// Stripe's API base, for tests and proxies (default Stripe's own).
    pub api_base: Option<String>,
    pub public_url: String,
}

impl std::fmt::Debug for PaymentSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |k: &Option<String>| if k.is_some() { "<set>" } else { "<none>" };
        f.debug_struct("PaymentSettings")
            .field("secret_key", &set(&self.secret_key))
            .field("webhook_secret", &set(&self.webhook_secret))
            .field("api_base", &self.api_base)
            .field("public_url", &self.public_url)
            .finish()
    }
}

impl PaymentSettings {
    /// None without a secret key (payments off). A key without a webhook secret is refused: the
    /// server could take payments it could never credit.
    pub fn build(&self) -> Result<Option<Payments>, String> {
        let Some(key) = self.secret_key.as_deref().filter(|k| !k.trim().is_empty()) else {
            return Ok(None);
        };
        let Some(webhook_secret) = self
            .webhook_secret
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        else {
            return Err(
                "STRIPE_SECRET_KEY is set but STRIPE_WEBHOOK_SECRET is not: deposits could be \
                 paid but never credited. Set both (see README, \"Money in\")"
                    .into(),
            );
        };
        let public_url = self.public_url.trim_end_matches('/').to_string();
        #[cfg(feature = "stripe")]
        {
            let checkout = stripe::StripeCheckout::new(key, self.api_base.as_deref())?;
            Ok(Some(Payments {
                checkout: std::sync::Arc::new(checkout),
                webhook_secret: webhook_secret.to_string(),
                public_url,
            }))
        }
        #[cfg(not(feature = "stripe"))]
        {
            let _ = (key, webhook_secret, public_url);
            Err("this binary was built without the `stripe` feature".into())
        }
    }
}
