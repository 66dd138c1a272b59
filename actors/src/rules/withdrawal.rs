//! Withdrawals: whether a worker may take this amount out now. The store reads the facts inside
//! its transaction and asks [`check`]; the first rule broken is the answer.

use crate::config::WithdrawalLimits;
use crate::error::EngineError;

/// What a withdrawal is judged on, read in the withdrawal's own transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub amount_cents: i64,
    pub banned: bool,
    pub balance_frozen: bool,
    pub payout_bound: bool,
    pub available_cents: i64,
    /// Withdrawn (pending or completed) on this UTC day before this one.
    pub today_cents: i64,
}

/// In order: the minimum (400), a ban or frozen balance (403), a payout binding (409), the money
/// (402), the daily maximum (429).
pub fn check(f: &Facts, limits: &WithdrawalLimits) -> Result<(), EngineError> {
    if f.amount_cents < limits.min_cents.max(1) {
        return Err(EngineError::validation_field(
            "amount_cents",
            format!("a withdrawal is at least {} cents", limits.min_cents.max(1)),
        ));
    }
    if f.banned {
        return Err(EngineError::Banned);
    }
    if f.balance_frozen {
        return Err(EngineError::Forbidden(
            "this worker's balance is frozen: it cannot be withdrawn".into(),
        ));
    }
    if !f.payout_bound {
        return Err(EngineError::PayoutNotBound);
    }
    if f.amount_cents > f.available_cents {
        return Err(EngineError::InsufficientBalance {
            needed_cents: f.amount_cents,
            available_cents: f.available_cents,
        });
    }
    if f.today_cents.saturating_add(f.amount_cents) > limits.daily_max_cents {
        return Err(EngineError::WithdrawalLimit {
            daily_max_cents: limits.daily_max_cents,
            today_cents: f.today_cents,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> WithdrawalLimits {
        WithdrawalLimits {
            daily_max_cents: 10_000,
            min_cents: 1_000,
        }
    }

    fn ok() -> Facts {
        Facts {
            amount_cents: 1_000,
            banned: false,
            balance_frozen: false,
            payout_bound: true,
            available_cents: 5_000,
            today_cents: 0,
        }
    }

    #[test]
    fn each_rule_answers_for_itself_in_order() {
        assert!(check(&ok(), &limits()).is_ok());
        let below = Facts {
            amount_cents: 999,
            banned: true,
            ..ok()
        };
        assert!(matches!(
            check(&below, &limits()),
            Err(EngineError::Validation { .. })
        ));
        let banned = Facts {
            banned: true,
            payout_bound: false,
            ..ok()
        };
        assert!(matches!(
            check(&banned, &limits()),
            Err(EngineError::Banned)
        ));
        let frozen = Facts {
            balance_frozen: true,
            ..ok()
        };
        assert!(matches!(
            check(&frozen, &limits()),
            Err(EngineError::Forbidden(_))
        ));
        let unbound = Facts {
            payout_bound: false,
            available_cents: 0,
            ..ok()
        };
        assert!(matches!(
            check(&unbound, &limits()),
            Err(EngineError::PayoutNotBound)
        ));
        let poor = Facts {
            available_cents: 999,
            ..ok()
        };
        assert!(matches!(
            check(&poor, &limits()),
            Err(EngineError::InsufficientBalance { .. })
        ));
        let over = Facts {
            today_cents: 9_500,
            ..ok()
        };
        assert!(matches!(
            check(&over, &limits()),
            Err(EngineError::WithdrawalLimit { .. })
        ));
        let exactly = Facts {
            today_cents: 9_000,
            ..ok()
        };
        assert!(
            check(&exactly, &limits()).is_ok(),
            "the maximum itself is allowed"
        );
    }
}
