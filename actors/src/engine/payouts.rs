//! Money out: email verification, payout binding, withdrawals, and an admin's payouts.

use sha2::{Digest, Sha256};

use super::*;
use crate::rules::payout::{self, PayoutMethod};

/// The longest payment reference an admin may record.
pub const MAX_EXTERNAL_REF_CHARS: usize = 200;

/// Only the hash of a code is kept; the worker's id salts it.
fn code_hash(worker_id: &str, code: &str) -> String {
    domain::hex(&Sha256::digest(format!("{worker_id}:{code}").as_bytes()))
}

impl Engine {
    /// Sends the worker a mailer (SMTP), or None to keep codes in the outbox and the log.
    pub fn with_mailer(mut self, mailer: Option<Arc<dyn crate::mail::Mailer>>) -> Engine {
        self.mailer = mailer;
        self
    }

    /// Sends a 6-digit code to `email`: over SMTP when a mailer is configured, else into the
    /// admin outbox and the log. Returns the normalised address and where the code went.
    pub async fn bind_email(
        &self,
        worker_id: &WorkerId,
        email: &str,
    ) -> Result<(String, &'static str), EngineError> {
        let email = domain::Email::parse(email)?.as_str().to_string();
        let code = format!("{:06}", rand::random_range(0..1_000_000u32));
        let hash = code_hash(worker_id.as_str(), &code);
        let subject = "Your clawjobs verification code".to_string();
        let body = format!(
            "Your clawjobs payout verification code is {code}. It is good for 15 minutes.\n\
             If you did not ask for it, ignore this message."
        );
        let keep = self
            .mailer
            .is_none()
            .then(|| (subject.clone(), body.clone()));
        // Stored first: the once-a-minute rule holds before anything is sent.
        self.store
            .email_code(NewEmailCode {
                worker_id: worker_id.as_str().to_string(),
                email: email.clone(),
                code_hash: hash.clone(),
                now_ms: now_ms(),
                outbox: keep,
            })
            .await?;
        let Some(mailer) = &self.mailer else {
            tracing::info!(worker = %worker_id.as_str(), %email, %code, "email code (no mailer configured: kept in the admin outbox)");
            return Ok((email, "outbox"));
        };
        if let Err(cause) = mailer.send(&email, &subject, &body).await {
            // Not sent: forget it, so that the worker may ask again at once.
            self.store
                .forget_email_code(worker_id.as_str().to_string(), hash)
                .await?;
            return Err(EngineError::Mail(cause));
        }
        Ok((email, "smtp"))
    }

    pub async fn verify_email(
        &self,
        worker_id: &WorkerId,
        email: &str,
        code: &str,
    ) -> Result<PayoutBinding, EngineError> {
        let email = domain::Email::parse(email)?.as_str().to_string();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(EngineError::validation_field(
                "code",
                "the code is 6 digits",
            ));
        }
        let outcome = self
            .store
            .verify_email(
                worker_id.as_str().to_string(),
                email,
                code_hash(worker_id.as_str(), code),
                now_ms(),
            )
            .await?;
        match outcome {
            VerifyOutcome::Verified => self
                .store
                .payout_binding(worker_id.as_str().to_string())
                .await?
                .ok_or_else(|| EngineError::internal("verified email not stored")),
            VerifyOutcome::Wrong { left } => Err(EngineError::Validation {
                message: format!("wrong code; {left} tries left"),
                details: serde_json::json!({ "field": "code", "tries_left": left }),
            }),
            VerifyOutcome::Void => Err(EngineError::TooMany {
                message: format!(
                    "{} wrong codes: this code is void; ask for a new one",
                    payout::MAX_WRONG
                ),
                retry_after_s: (payout::RESEND_MS / 1000) as u64,
            }),
            VerifyOutcome::Expired => Err(EngineError::validation_field(
                "code",
                "the code expired (codes are good for 15 minutes); ask for a new one",
            )),
            VerifyOutcome::NoCode => Err(EngineError::validation_field(
                "email",
                "no code was sent to this address; ask for one with bind-email",
            )),
        }
    }

    pub async fn bind_payout(
        &self,
        worker_id: &WorkerId,
        method: &str,
        address: &str,
    ) -> Result<PayoutBinding, EngineError> {
        let method = PayoutMethod::parse(method)
            .ok_or_else(|| EngineError::validation_field("method", "method is paypal or solana"))?;
        let address = payout::check_address(method, address.trim())?;
        self.store
            .bind_payout(worker_id.as_str().to_string(), method, address, now_ms())
            .await
    }

    pub async fn payout_binding(
        &self,
        worker_id: &WorkerId,
    ) -> Result<Option<PayoutBinding>, EngineError> {
        self.store
            .payout_binding(worker_id.as_str().to_string())
            .await
    }

    /// Takes `amount_cents` of available money out into payouts pending, within the limits of
    /// `rate_limits.withdrawal`.
    /// `worker.id` is the worker.
    pub async fn withdraw(
        &self,
        worker: &Who,
        amount_cents: i64,
        idem: Option<IdemKey>,
    ) -> Result<WithdrawalRecord, EngineError> {
        if amount_cents > MAX_PRICE_CENTS {
            return Err(EngineError::validation_field(
                "amount_cents",
                format!("amount_cents is at most {MAX_PRICE_CENTS}"),
            ));
        }
        self.store
            .withdraw(NewWithdrawal {
                withdrawal_id: domain::new_id("wd"),
                worker_id: worker.id.clone(),
                amount_cents,
                by: worker.clone(),
                now_ms: now_ms(),
                limits: self.cfg().rate_limits.withdrawal.clone(),
                idem,
            })
            .await
    }

    /// Withdrawals, newest first: a worker's own, or (None) everyone's for an admin.
    pub async fn withdrawals(
        &self,
        worker_id: Option<&WorkerId>,
        status: Option<&str>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<WithdrawalRecord>, bool), EngineError> {
        let status = match status {
            None => None,
            Some(s) => Some(WithdrawalStatus::parse(s).ok_or_else(|| {
                EngineError::validation_field(
                    "status",
                    "status is one of pending, completed, rejected",
                )
            })?),
        };
        let limit = limit.clamp(1, MAX_PAGE_ITEMS);
        let rows = self
            .store
            .withdrawals(WithdrawalFilter {
                worker_id: worker_id.map(|w| w.as_str().to_string()),
                status,
                before_seq: cursor,
                limit: limit + 1,
            })
            .await?;
        Ok(page(rows, limit))
    }

    /// An admin pays a withdrawal out (`external:payouts`) or rejects it (back to the worker).
    pub async fn settle_withdrawal(
        &self,
        withdrawal_id: &str,
        settle: Settle,
        by: &Who,
        idem: Option<IdemKey>,
    ) -> Result<WithdrawalRecord, EngineError> {
        match &settle {
            Settle::Complete { external_ref } => {
                if external_ref.trim().is_empty()
                    || external_ref.chars().count() > MAX_EXTERNAL_REF_CHARS
                {
                    return Err(EngineError::validation_field(
                        "external_ref",
                        format!(
                            "the payment's reference is 1 to {MAX_EXTERNAL_REF_CHARS} characters"
                        ),
                    ));
                }
            }
            Settle::Reject { reason } => {
                if reason.trim().is_empty() || reason.chars().count() > MAX_REASON_CHARS {
                    return Err(EngineError::validation_field(
                        "reason",
                        format!("a reason of 1 to {MAX_REASON_CHARS} characters is required"),
                    ));
                }
            }
        }
        self.store
            .settle_withdrawal(
                withdrawal_id.to_string(),
                settle,
                by.clone(),
                now_ms(),
                idem,
            )
            .await
    }

    pub async fn outbox(
        &self,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<OutboxMessage>, bool), EngineError> {
        let limit = limit.clamp(1, MAX_PAGE_ITEMS);
        let rows = self.store.outbox(cursor, limit + 1).await?;
        Ok(page(rows, limit))
    }
}
