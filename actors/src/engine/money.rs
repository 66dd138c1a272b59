//! Money in: deposit options, Checkout Sessions, the webhook that credits them, deposit lists.

use sha2::{Digest, Sha256};

use super::*;
use crate::payments::{CheckoutRequest, Payments, webhook};
use crate::rules::deposit::{self, DepositStatus};

/// `GET /api/deposit/options`.
#[derive(Debug, Clone, PartialEq)]
pub struct DepositOptions {
    pub amounts_cents: Vec<i64>,
    pub first_deposit_bonus_pct: f64,
    pub currency: &'static str,
    /// Whether this server takes deposits (a payment provider is configured).
    pub enabled: bool,
}

impl Engine {
    /// Turns deposits on with this provider (None: off).
    pub fn with_payments(mut self, payments: Option<Payments>) -> Engine {
        self.payments = payments;
        self
    }

    pub fn deposit_options(&self) -> DepositOptions {
        let cfg = self.cfg();
        DepositOptions {
            amounts_cents: cfg.deposit_tiers_cents.clone(),
            first_deposit_bonus_pct: cfg.signup.first_deposit_bonus_pct,
            currency: deposit::CURRENCY,
            enabled: self.payments.is_some(),
        }
    }

    /// Makes a Checkout Session for one of the configured amounts and stores the deposit. The
    /// provider is asked first, under an idempotency key of its own: if it fails, nothing is
    /// stored; a retry with the same `Idempotency-Key` reaches the same session.
    pub async fn deposit(
        &self,
        buyer_id: &UserId,
        amount_cents: i64,
        idem: Option<IdemKey>,
    ) -> Result<DepositRecord, EngineError> {
        let cfg = self.cfg();
        if !cfg.deposit_tiers_cents.contains(&amount_cents) {
            return Err(EngineError::Validation {
                message: format!(
                    "amount_cents must be one of the deposit amounts: {:?}",
                    cfg.deposit_tiers_cents
                ),
                details: serde_json::json!({
                    "field": "amount_cents", "amounts_cents": cfg.deposit_tiers_cents,
                }),
            });
        }
        let payments = self
            .payments
            .as_ref()
            .ok_or(EngineError::PaymentsDisabled)?;
        // A repeat of the same request names the same deposit (and so the same session).
        let deposit_id = match &idem {
            Some(k) => {
                let digest =
                    Sha256::digest(format!("{}\n{}\n{}", k.scope, k.key, k.body_hash).as_bytes());
                format!("dep_{}", &domain::hex(&digest)[..28])
            }
            None => domain::new_id("dep"),
        };
        let earlier = self
            .store
            .deposits(DepositFilter {
                buyer_id: Some(buyer_id.as_str().to_string()),
                status: Some(DepositStatus::Completed),
                before_seq: None,
                limit: 1,
            })
            .await?;
        let bonus_cents = if earlier.is_empty() {
            deposit::bonus_cents(amount_cents, cfg.signup.first_deposit_bonus_pct)
        } else {
            0
        };
        let base = &payments.public_url;
        let session = payments
            .checkout
            .create_session(CheckoutRequest {
                deposit_id: deposit_id.clone(),
                buyer_id: buyer_id.as_str().to_string(),
                amount_cents,
                success_url: format!("{base}/deposit/success?deposit_id={deposit_id}"),
                cancel_url: format!("{base}/deposit/cancel?deposit_id={deposit_id}"),
                idempotency_key: format!("clawjobs-{deposit_id}"),
            })
            .await
            .map_err(|e| EngineError::PaymentProvider(e.0))?;
        self.store
            .create_deposit(NewDeposit {
                deposit_id,
                buyer_id: buyer_id.as_str().to_string(),
                amount_cents,
                bonus_cents,
                session_id: session.id,
                checkout_url: session.url,
                now_ms: now_ms(),
                idem,
            })
            .await
    }

    /// A webhook from the provider: verified on the raw bytes, then acted on exactly once.
    pub async fn deposit_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<EventOutcome, EngineError> {
        let refused =
            |r: webhook::Refused| EngineError::validation_field("Stripe-Signature", r.to_string());
        // What is wrong whatever the secret is answers 400 before anything else.
        if signature.is_none() {
            return Err(refused(webhook::Refused::Missing));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(EngineError::validation("the webhook has no body"));
        }
        let payments = self
            .payments
            .as_ref()
            .ok_or(EngineError::PaymentsDisabled)?;
        let now_s = now_ms() / 1000;
        webhook::verify(&payments.webhook_secret, signature, body, now_s).map_err(refused)?;
        let event = webhook::parse(body).map_err(refused)?;
        let session = match event.kind {
            webhook::EventKind::Session {
                session_id,
                deposit_id,
                event: e,
            } => Some((session_id, deposit_id, e)),
            webhook::EventKind::Ignored => None,
        };
        let outcome = self
            .store
            .deposit_event(ProviderEvent {
                event_id: event.id.clone(),
                event_type: event.event_type.clone(),
                session,
                now_ms: now_ms(),
                bonus_pct: self.cfg().signup.first_deposit_bonus_pct,
            })
            .await?;
        match &outcome {
            EventOutcome::Credited(d) => {
                tracing::info!(deposit = %d.deposit_id, buyer = %d.buyer_id, cents = d.amount_cents, bonus = d.bonus_cents, "deposit credited")
            }
            EventOutcome::Held(d) => {
                tracing::warn!(deposit = %d.deposit_id, paid = ?d.paid_cents, expected = d.amount_cents, "deposit paid with another amount: held as mismatch")
            }
            EventOutcome::Unmatched => {
                tracing::warn!(event = %event.id, "provider event for a session no deposit has")
            }
            _ => {}
        }
        Ok(outcome)
    }

    /// An admin credits a deposit held as `mismatch` with what Stripe says was paid.
    pub async fn resolve_deposit(
        &self,
        deposit_id: &str,
        by: &Who,
        note: &str,
    ) -> Result<DepositRecord, EngineError> {
        if note.trim().is_empty() || note.chars().count() > MAX_REASON_CHARS {
            return Err(EngineError::validation_field(
                "note",
                format!("a note of 1 to {MAX_REASON_CHARS} characters is required"),
            ));
        }
        self.store
            .resolve_deposit(
                deposit_id.to_string(),
                by.clone(),
                note.to_string(),
                now_ms(),
            )
            .await
    }

    /// Deposits, newest first: a buyer's own (`buyer_id`), or all of one status for an admin.
    pub async fn deposits(
        &self,
        buyer_id: Option<&UserId>,
        status: Option<&str>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<DepositRecord>, bool), EngineError> {
        let status = match status {
            None => None,
            Some(s) => Some(DepositStatus::parse(s).ok_or_else(|| {
                EngineError::validation_field(
                    "status",
                    "status is one of pending, completed, expired, mismatch",
                )
            })?),
        };
        let limit = limit.clamp(1, MAX_PAGE_ITEMS);
        let rows = self
            .store
            .deposits(DepositFilter {
                buyer_id: buyer_id.map(|b| b.as_str().to_string()),
                status,
                before_seq: cursor,
                limit: limit + 1,
            })
            .await?;
        Ok(page(rows, limit))
    }
}
