//! Deposits: what a verified Stripe event does to a deposit. Events arrive at least once and in
//! any order; the store records each event id once and asks [`step`] what the event means for the
//! deposit as it is now, so that a deposit is credited exactly once however the events come.

use serde::{Deserialize, Serialize};

/// Where a deposit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DepositStatus {
    /// The Checkout Session is open; nothing is credited.
    Pending,
    /// Paid and credited (the only state that moved money).
    Completed,
    /// The session expired unpaid.
    Expired,
    /// Stripe says it was paid, but not the deposit's amount: held for an admin, nothing credited.
    Mismatch,
}

impl DepositStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DepositStatus::Pending => "pending",
            DepositStatus::Completed => "completed",
            DepositStatus::Expired => "expired",
            DepositStatus::Mismatch => "mismatch",
        }
    }

    pub fn parse(s: &str) -> Option<DepositStatus> {
        match s {
            "pending" => Some(DepositStatus::Pending),
            "completed" => Some(DepositStatus::Completed),
            "expired" => Some(DepositStatus::Expired),
            "mismatch" => Some(DepositStatus::Mismatch),
            _ => None,
        }
    }
}

/// What a verified event says about a Checkout Session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The session was paid: `amount_cents` in `currency`.
    Paid { amount_cents: i64, currency: String },
    /// The session expired unpaid.
    Expired,
}

/// What to do with the deposit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Mark it completed and credit its amount (and the first deposit's bonus).
    Credit,
    /// Mark it `mismatch` and credit nothing.
    Hold,
    /// Mark it expired.
    Expire,
    /// Nothing changes (already final, or an event that adds nothing).
    Nothing,
}

/// The currency every deposit is in.
pub const CURRENCY: &str = "usd";

/// What `event` does to a deposit of `amount_cents` that is `status` now. A payment is credited
/// even after an expiry was heard (the money was taken; losing it would be worse), never twice.
pub fn step(status: DepositStatus, amount_cents: i64, event: &SessionEvent) -> Step {
    match (status, event) {
        (DepositStatus::Completed | DepositStatus::Mismatch, _) => Step::Nothing,
        (
            DepositStatus::Pending | DepositStatus::Expired,
            SessionEvent::Paid {
                amount_cents: paid,
                currency,
            },
        ) => {
            if *paid == amount_cents && currency.eq_ignore_ascii_case(CURRENCY) {
                Step::Credit
            } else {
                Step::Hold
            }
        }
        (DepositStatus::Pending, SessionEvent::Expired) => Step::Expire,
        (DepositStatus::Expired, SessionEvent::Expired) => Step::Nothing,
    }
}

/// The first deposit's bonus: `bonus_pct` (a fraction, validated to 0..=10) of the amount,
/// floored to the cent, with integer arithmetic on basis points.
pub fn bonus_cents(amount_cents: i64, bonus_pct: f64) -> i64 {
    let bp = (bonus_pct.clamp(0.0, 10.0) * 10_000.0).round() as i64;
    amount_cents.saturating_mul(bp) / 10_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paid(cents: i64) -> SessionEvent {
        SessionEvent::Paid {
            amount_cents: cents,
            currency: "usd".into(),
        }
    }

    #[test]
    fn a_deposit_is_credited_once_and_only_for_its_amount() {
        use DepositStatus::*;
        assert_eq!(step(Pending, 500, &paid(500)), Step::Credit);
        assert_eq!(step(Completed, 500, &paid(500)), Step::Nothing);
        assert_eq!(step(Pending, 500, &paid(499)), Step::Hold);
        assert_eq!(step(Mismatch, 500, &paid(500)), Step::Nothing);
        let eur = SessionEvent::Paid {
            amount_cents: 500,
            currency: "eur".into(),
        };
        assert_eq!(step(Pending, 500, &eur), Step::Hold);
    }

    #[test]
    fn expiry_only_ends_an_open_deposit_and_a_late_payment_still_counts() {
        use DepositStatus::*;
        assert_eq!(step(Pending, 500, &SessionEvent::Expired), Step::Expire);
        assert_eq!(step(Completed, 500, &SessionEvent::Expired), Step::Nothing);
        assert_eq!(step(Expired, 500, &SessionEvent::Expired), Step::Nothing);
        assert_eq!(step(Expired, 500, &paid(500)), Step::Credit);
    }

    #[test]
    fn the_bonus_is_floored() {
        assert_eq!(bonus_cents(500, 0.20), 100);
        assert_eq!(bonus_cents(999, 0.20), 199);
        assert_eq!(bonus_cents(1000, 0.0), 0);
        assert_eq!(bonus_cents(1, 0.5), 0);
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            DepositStatus::Pending,
            DepositStatus::Completed,
            DepositStatus::Expired,
            DepositStatus::Mismatch,
        ] {
            assert_eq!(DepositStatus::parse(s.as_str()), Some(s));
        }
    }
}
