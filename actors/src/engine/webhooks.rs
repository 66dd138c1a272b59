//! Buyer webhooks: registering endpoints (checked, with a signing secret shown once), listing
//! and deleting them, and reading and retrying their deliveries. Sending is the Supervisor's
//! (`crate::webhooks`).

use super::*;

impl Engine {
    /// Lets webhooks point at this machine and private networks, over plain HTTP too: for
    /// development and tests only (`CLAWJOBS_WEBHOOKS_ALLOW_PRIVATE`).
    pub fn with_private_webhooks(self, allow: bool) -> Engine {
        self.webhooks_private.store(allow, Ordering::Relaxed);
        self
    }

    /// Registers an endpoint for `buyer_id`; the answer carries its secret, the only time it is
    /// shown.
    pub async fn create_webhook(
        &self,
        buyer_id: &UserId,
        url: &str,
        events: &[String],
    ) -> Result<WebhookRecord, EngineError> {
        let allow_private = self.webhooks_private.load(Ordering::Relaxed);
        let url = crate::rules::webhook::check_url(url.trim(), allow_private)
            .map_err(|e| EngineError::validation_field("url", e))?;
        let events = crate::rules::webhook::check_events(events)
            .map_err(|e| EngineError::validation_field("events", e))?;
        let mut secret = [0u8; 24];
        rand::RngExt::fill(&mut rand::rng(), &mut secret[..]);
        let secret = format!("whsec_{}", domain::hex(&secret));
        // Sealed at rest where the server has a data key; the answer shows it plain, once.
        let stored = match self.data_keys.as_deref() {
            Some(keys) => keys.seal(crate::sealed::Field::WebhookSecret, &secret)?,
            None => secret.clone(),
        };
        let mut created = self
            .store
            .create_webhook(NewWebhook {
                webhook_id: domain::new_id("whk"),
                buyer_id: buyer_id.as_str().to_string(),
                url: url.to_string(),
                events,
                secret: stored,
                now_ms: now_ms(),
                max_per_buyer: self.cfg().webhooks.max_per_buyer,
            })
            .await?;
        created.secret = secret;
        Ok(created)
    }

    pub async fn webhooks(&self, buyer_id: &UserId) -> Result<Vec<WebhookRecord>, EngineError> {
        self.store.webhooks(buyer_id.as_str().to_string()).await
    }

    /// The caller's endpoint `webhook_id` (404 when it is someone else's: nothing is revealed).
    pub async fn own_webhook(
        &self,
        buyer_id: &UserId,
        webhook_id: &str,
    ) -> Result<WebhookRecord, EngineError> {
        let not_found = || EngineError::NotFound("no such webhook".into());
        if !super::bounties::well_formed_id(webhook_id) {
            return Err(not_found());
        }
        self.store
            .webhook(webhook_id.to_string())
            .await?
            .filter(|w| w.buyer_id == buyer_id.as_str())
            .ok_or_else(not_found)
    }

    pub async fn delete_webhook(
        &self,
        buyer_id: &UserId,
        webhook_id: &str,
    ) -> Result<(), EngineError> {
        self.own_webhook(buyer_id, webhook_id).await?;
        if self
            .store
            .delete_webhook(buyer_id.as_str().to_string(), webhook_id.to_string())
            .await?
        {
            Ok(())
        } else {
            Err(EngineError::NotFound("no such webhook".into()))
        }
    }

    /// An endpoint's deliveries, newest first (one more than `limit` is asked for, to say
    /// whether there are more).
    pub async fn deliveries(
        &self,
        buyer_id: &UserId,
        webhook_id: &str,
        status: Option<DeliveryStatus>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<DeliveryRecord>, bool), EngineError> {
        self.own_webhook(buyer_id, webhook_id).await?;
        let rows = self
            .store
            .deliveries(DeliveryFilter {
                buyer_id: buyer_id.as_str().to_string(),
                webhook_id: webhook_id.to_string(),
                status,
                before_seq: cursor,
                limit: limit + 1,
            })
            .await?;
        Ok(page(rows, limit))
    }

    /// Sends a delivery again (a dead one, or a delivered one the buyer wants once more), now.
    pub async fn retry_delivery(
        &self,
        buyer_id: &UserId,
        webhook_id: &str,
        delivery_id: &str,
    ) -> Result<DeliveryRecord, EngineError> {
        self.own_webhook(buyer_id, webhook_id).await?;
        if !super::bounties::well_formed_id(delivery_id) {
            return Err(EngineError::NotFound("no such delivery".into()));
        }
        self.store
            .retry_delivery(
                buyer_id.as_str().to_string(),
                webhook_id.to_string(),
                delivery_id.to_string(),
                now_ms(),
            )
            .await
    }
}
