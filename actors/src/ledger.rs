//! The double-entry ledger: accounts, journal entries and the invariants that must hold.
//!
//! Invariants (checked before an entry is written and by the audit afterwards):
//! 1. every entry's postings sum to zero, so the total over all accounts is always zero;
//! 2. accounts that hold someone's money (user available/frozen, task escrow, platform revenue)
//!    never go negative; only funding and external accounts may;
//! 3. every live task (pending or assigned) has exactly its price in escrow, every other task none;
//! 4. each account's stored balance equals the sum of its postings;
//! 5. a worker's frozen balance equals the sum of its lots that are still frozen (or held: a
//!    banned worker's lots are never released).

use std::collections::BTreeMap;

use serde::Serialize;

/// Money held for tasks between the buyer's payment and settlement or refund.
pub const ESCROW: &str = "platform:escrow";
/// Commissions the platform has earned.
pub const REVENUE: &str = "platform:revenue";
/// What the platform pays QA copies from.
pub const QA_FUND: &str = "platform:qa_fund";
/// Signup credits and admin credits are paid from here (an expense: it goes negative).
pub const PROMOTIONS: &str = "platform:promotions";
/// Money that came in through Stripe (negative: the counterpart of deposits).
pub const EXTERNAL_STRIPE: &str = "external:stripe";
/// Money paid out to workers.
pub const EXTERNAL_PAYOUTS: &str = "external:payouts";
/// Withdrawals a worker asked for that an admin has not yet paid out or rejected.
pub const PAYOUTS_PENDING: &str = "platform:payouts_pending";
/// Bounty rewards held between posting and payout or refund (each bounty's part is the postings
/// that name it).
pub const BOUNTY_ESCROW: &str = "platform:bounty_escrow";

pub const PLATFORM_ACCOUNTS: &[&str] = &[
    ESCROW,
    REVENUE,
    QA_FUND,
    PROMOTIONS,
    EXTERNAL_STRIPE,
    EXTERNAL_PAYOUTS,
    PAYOUTS_PENDING,
    BOUNTY_ESCROW,
];

/// A user's spendable balance.
pub fn available(user_id: &str) -> String {
    format!("user:{user_id}:available")
}

/// A worker's earnings still inside the freeze window.
pub fn frozen(user_id: &str) -> String {
    format!("user:{user_id}:frozen")
}

/// Whether an account may hold a negative balance.
pub fn may_go_negative(account: &str) -> bool {
    matches!(
        account,
        PROMOTIONS | QA_FUND | EXTERNAL_STRIPE | EXTERNAL_PAYOUTS
    )
}

/// The user an account belongs to and which of their balances it is.
pub fn owner(account: &str) -> Option<(&str, UserBalance)> {
    let rest = account.strip_prefix("user:")?;
    let (user, which) = rest.rsplit_once(':')?;
    let which = match which {
        "available" => UserBalance::Available,
        "frozen" => UserBalance::Frozen,
        _ => return None,
    };
    Some((user, which))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserBalance {
    Available,
    Frozen,
}

/// Why money moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    SignupCredit,
    AdminCredit,
    TaskPay,
    TaskSettle,
    Unfreeze,
    BuyerCredit,
    TaskRefund,
    /// The QA fund pays for a QA copy's escrow.
    QaPay,
    /// Part of a failing worker's frozen earnings goes to the QA fund.
    QaDeduction,
    /// The QA fund makes a buyer whole when the original failed QA after its lot was released.
    QaCredit,
    /// A Stripe payment reached a buyer: external:stripe → available.
    Deposit,
    /// The bonus on a buyer's first deposit, from promotions.
    DepositBonus,
    /// A worker's withdrawal request: available → payouts pending.
    Withdrawal,
    /// An admin paid a withdrawal out: payouts pending → external:payouts.
    WithdrawalPaid,
    /// An admin rejected a withdrawal: payouts pending → back to available.
    WithdrawalReturned,
    /// A referred buyer's credit, from promotions.
    ReferralCredit,
    /// A referrer's share of a referred worker's released task, from revenue.
    ReferralShare,
    /// A bounty's reward: the buyer's available → bounty escrow.
    BountyEscrow,
    /// A bounty pays out: escrow → the winner's frozen lot, validators, revenue (and the buyer's
    /// part of a split).
    BountyPay,
    /// A bounty's escrow back to its buyer (expired, cancelled, a dispute resolved for the buyer).
    BountyRefund,
    /// The validators who voted with the majority to reject a submission are paid by the QA fund
    /// (an approval pays them out of the bounty's fee instead).
    ValidatorFee,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::SignupCredit => "signup_credit",
            EntryKind::AdminCredit => "admin_credit",
            EntryKind::TaskPay => "task_pay",
            EntryKind::TaskSettle => "task_settle",
            EntryKind::Unfreeze => "unfreeze",
            EntryKind::BuyerCredit => "buyer_credit",
            EntryKind::TaskRefund => "task_refund",
            EntryKind::QaPay => "qa_pay",
            EntryKind::QaDeduction => "qa_deduction",
            EntryKind::QaCredit => "qa_credit",
            EntryKind::Deposit => "deposit",
            EntryKind::DepositBonus => "deposit_bonus",
            EntryKind::Withdrawal => "withdrawal",
            EntryKind::WithdrawalPaid => "withdrawal_paid",
            EntryKind::WithdrawalReturned => "withdrawal_returned",
            EntryKind::ReferralCredit => "referral_credit",
            EntryKind::ReferralShare => "referral_share",
            EntryKind::BountyEscrow => "bounty_escrow",
            EntryKind::BountyPay => "bounty_pay",
            EntryKind::BountyRefund => "bounty_refund",
            EntryKind::ValidatorFee => "validator_fee",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub account: String,
    pub amount_cents: i64,
}

/// One journal entry: a balanced set of postings with a reason and a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    /// The task, lot or user this entry is about.
    pub ref_id: String,
    /// The task or bounty whose escrow this entry touches, if any (invariant 3 is checked through
    /// it).
    pub task_id: Option<String>,
    pub postings: Vec<Posting>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("entry has no postings")]
    Empty,
    #[error("entry postings sum to {0}, not zero")]
    Unbalanced(i64),
    #[error("entry has a zero posting to {0}")]
    ZeroPosting(String),
}

impl Entry {
    pub fn new(kind: EntryKind, ref_id: impl Into<String>) -> Entry {
        Entry {
            kind,
            ref_id: ref_id.into(),
            task_id: None,
            postings: Vec::with_capacity(3),
        }
    }

    pub fn for_task(mut self, task_id: &str) -> Entry {
        self.task_id = Some(task_id.to_string());
        self
    }

    /// Adds a posting; zero amounts are skipped (a 1-cent task leaves the platform nothing).
    pub fn post(mut self, account: impl Into<String>, amount_cents: i64) -> Entry {
        if amount_cents != 0 {
            self.postings.push(Posting {
                account: account.into(),
                amount_cents,
            });
        }
        self
    }

    /// Moves `amount_cents` from one account to another.
    pub fn transfer(
        self,
        from: impl Into<String>,
        to: impl Into<String>,
        amount_cents: i64,
    ) -> Entry {
        self.post(from, -amount_cents).post(to, amount_cents)
    }

    pub fn check(&self) -> Result<(), EntryError> {
        if self.postings.is_empty() {
            return Err(EntryError::Empty);
        }
        if let Some(p) = self.postings.iter().find(|p| p.amount_cents == 0) {
            return Err(EntryError::ZeroPosting(p.account.clone()));
        }
        let sum: i128 = self
            .postings
            .iter()
            .map(|p| i128::from(p.amount_cents))
            .sum();
        if sum != 0 {
            return Err(EntryError::Unbalanced(sum as i64));
        }
        Ok(())
    }
}

/// The ledger's own check of the money invariants, as served by `GET /api/admin/ledger/audit`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AuditReport {
    pub ok: bool,
    pub sum_cents: i64,
    pub accounts: u64,
    pub entries: u64,
    pub violations: Vec<String>,
}

/// The checks every backend's audit makes of the balances it stores (`stored`: each account's
/// balance) against the postings it replays (`replayed`: each account's sum of postings):
/// everything sums to zero, no guarded account is negative, replaying gives what is stored, and
/// no posting names an account that does not exist. Returns the sum, adds what is wrong.
pub fn check_balances(
    stored: &BTreeMap<String, i64>,
    replayed: &BTreeMap<String, i64>,
    violations: &mut Vec<String>,
) -> i64 {
    let sum_cents: i64 = stored.values().sum();
    if sum_cents != 0 {
        violations.push(format!("accounts sum to {sum_cents} cents, not zero"));
    }
    for (account, balance) in stored {
        if *balance < 0 && !may_go_negative(account) {
            violations.push(format!("{account} is negative: {balance}"));
        }
        let r = replayed.get(account).copied().unwrap_or(0);
        if r != *balance {
            violations.push(format!(
                "{account}: stored {balance} but postings sum to {r}"
            ));
        }
    }
    for account in replayed.keys().filter(|a| !stored.contains_key(*a)) {
        violations.push(format!("postings to unknown account {account}"));
    }
    sum_cents
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_balance_checks_name_what_is_wrong() {
        let map = |pairs: &[(&str, i64)]| -> BTreeMap<String, i64> {
            pairs.iter().map(|(a, c)| (a.to_string(), *c)).collect()
        };
        let stored = map(&[(ESCROW, 5), ("user:b1:available", -5)]);
        let mut v = Vec::new();
        assert_eq!(check_balances(&stored, &stored, &mut v), 0);
        assert_eq!(v, ["user:b1:available is negative: -5"]);
        let mut v = Vec::new();
        let replayed = map(&[(ESCROW, 4), ("user:ghost:frozen", 1)]);
        assert_eq!(
            check_balances(&map(&[(ESCROW, 4), (PROMOTIONS, -4)]), &replayed, &mut v),
            0
        );
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("stored -4 but postings sum to 0"), "{v:?}");
        assert!(v[1].contains("unknown account user:"), "{v:?}");
    }

    #[test]
    fn transfers_balance() {
        let e = Entry::new(EntryKind::TaskPay, "t1").transfer(available("u1"), ESCROW, 5);
        assert!(e.check().is_ok());
        assert_eq!(e.postings.len(), 2);
        let bad = Entry::new(EntryKind::TaskPay, "t1")
            .post(available("u1"), -5)
            .post(ESCROW, 4);
        assert_eq!(bad.check(), Err(EntryError::Unbalanced(-1)));
        assert_eq!(
            Entry::new(EntryKind::TaskPay, "t").check(),
            Err(EntryError::Empty)
        );
    }

    #[test]
    fn account_names() {
        assert_eq!(
            owner(&available("w_1")),
            Some(("w_1", UserBalance::Available))
        );
        assert_eq!(owner(&frozen("w_1")), Some(("w_1", UserBalance::Frozen)));
        assert_eq!(owner(ESCROW), None);
        assert!(may_go_negative(PROMOTIONS));
        assert!(!may_go_negative(ESCROW));
        assert!(!may_go_negative(&available("u")));
    }

    proptest! {
        #[test]
        fn settlement_entries_always_balance(price in 1i64..1_000_000, rate in 0u32..=10_000) {
            let (worker, platform) = crate::economics::split(price, rate);
            let e = Entry::new(EntryKind::TaskSettle, "t")
                .post(ESCROW, -price)
                .post(frozen("w"), worker)
                .post(REVENUE, platform);
            prop_assert!(e.check().is_ok());
        }
    }
}
