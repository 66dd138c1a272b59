//! Referrals: a user's code and what it brought; the terms a new account's code is taken on.

use super::*;
use crate::rules::referral;

/// `GET /api/referral`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    pub stats: ReferralStats,
    pub link: String,
}

impl Engine {
    /// Links in answers start with this address (`CLAWJOBS_PUBLIC_URL`).
    pub fn with_public_url(mut self, url: &str) -> Engine {
        self.public_url = url.trim_end_matches('/').to_string();
        self
    }

    /// The referral a new account comes with, on the terms in force now.
    pub(super) fn new_referral(
        &self,
        code: Option<&str>,
        role: Role,
    ) -> Result<Option<NewReferral>, EngineError> {
        let Some(code) = code else { return Ok(None) };
        if !referral::is_code(code.trim()) {
            return Err(EngineError::validation_field(
                "referral_code",
                "no account has this referral code",
            ));
        }
        let signup = &self.cfg().signup;
        Ok(Some(NewReferral {
            code: referral::normalise(code),
            buyer_credit_cents: if role == Role::Buyer {
                signup.referral_buyer_credit_cents
            } else {
                0
            },
            share_bp: i64::from(crate::config::rate_bp(
                "signup.referral_seller_pct",
                signup.referral_seller_pct,
            )?),
        }))
    }

    pub async fn referral(&self, user_id: &str) -> Result<Referral, EngineError> {
        let stats = self
            .store
            .referral(user_id.to_string(), referral::new_code(), now_ms())
            .await?;
        let link = format!("{}/?ref={}", self.public_url, stats.code);
        Ok(Referral { stats, link })
    }
}
