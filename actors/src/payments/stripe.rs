//! [`Checkout`] through Stripe's API with `async-stripe`.

use std::collections::HashMap;
use std::time::Duration;

use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_checkout::CheckoutSessionMode;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    ProductData,
};

use super::{Checkout, CheckoutFuture, CheckoutRequest, CheckoutSession, ProviderError};

/// How long one call to Stripe may take before the deposit answers `PAYMENT_PROVIDER_ERROR`.
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct StripeCheckout {
    client: Client,
}

impl StripeCheckout {
    /// A client for `secret_key`; `api_base` (ending in `/`) replaces Stripe's own address.
    pub fn new(secret_key: &str, api_base: Option<&str>) -> Result<StripeCheckout, String> {
        let mut builder = ClientBuilder::new(secret_key).timeout(TIMEOUT);
        if let Some(base) = api_base.filter(|b| !b.is_empty()) {
            let base = if base.ends_with('/') {
                base.to_string()
            } else {
                format!("{base}/")
            };
            builder = builder.url(base);
        }
        let client = builder.build().map_err(|e| format!("Stripe client: {e}"))?;
        Ok(StripeCheckout { client })
    }
}

impl Checkout for StripeCheckout {
    fn create_session(&self, req: CheckoutRequest) -> CheckoutFuture {
        let client = self.client.clone();
        Box::pin(async move {
            let key = IdempotencyKey::new(&req.idempotency_key)
                .map_err(|e| ProviderError(format!("idempotency key: {e}")))?;
            let mut price =
                CreateCheckoutSessionLineItemsPriceData::new(stripe_types::Currency::USD);
            price.unit_amount = Some(req.amount_cents);
            price.product_data = Some(ProductData::new("clawjobs balance"));
            let mut item = CreateCheckoutSessionLineItems::new();
            item.price_data = Some(price);
            item.quantity = Some(1);
            let metadata = HashMap::from([
                ("deposit_id".to_string(), req.deposit_id.clone()),
                ("buyer_id".to_string(), req.buyer_id.clone()),
            ]);
            let session = CreateCheckoutSession::new()
                .mode(CheckoutSessionMode::Payment)
                .line_items(vec![item])
                .client_reference_id(req.deposit_id.clone())
                .metadata(metadata)
                .success_url(req.success_url.clone())
                .cancel_url(req.cancel_url.clone())
                .customize()
                .request_strategy(RequestStrategy::Idempotent(key))
                .send(&client)
                .await
                .map_err(|e| ProviderError(e.to_string()))?;
            let url = session
                .url
                .ok_or_else(|| ProviderError("the Checkout Session has no url".into()))?;
            Ok(CheckoutSession {
                id: session.id.to_string(),
                url,
            })
        })
    }
}
