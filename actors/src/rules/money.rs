//! The journal entries of money movements, and who pays for what.

use crate::domain::TaskStatus;
use crate::error::EngineError;
use crate::ledger::{self, Entry, EntryKind};

/// A buyer pays for a task: available → escrow.
pub fn task_pay(buyer_id: &str, task_id: &str, price_cents: i64) -> Entry {
    Entry::new(EntryKind::TaskPay, task_id)
        .for_task(task_id)
        .transfer(ledger::available(buyer_id), ledger::ESCROW, price_cents)
}

/// The QA fund pays for a QA copy or a benchmark: QA fund → escrow.
pub fn qa_pay(task_id: &str, price_cents: i64) -> Entry {
    Entry::new(EntryKind::QaPay, task_id)
        .for_task(task_id)
        .transfer(ledger::QA_FUND, ledger::ESCROW, price_cents)
}

/// A task that cannot be done gives its escrow back to whoever paid: the QA fund for a QA task,
/// else its buyer.
pub fn refund(task_id: &str, buyer_id: &str, platform_paid: bool, price_cents: i64) -> Entry {
    let payer = if platform_paid {
        ledger::QA_FUND.to_string()
    } else {
        ledger::available(buyer_id)
    };
    Entry::new(EntryKind::TaskRefund, task_id)
        .for_task(task_id)
        .transfer(ledger::ESCROW, payer, price_cents)
}

/// A worker's earning for one task, frozen until its window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lot<'a> {
    pub worker_id: &'a str,
    /// What is left for the worker.
    pub amount_cents: i64,
    /// What the platform took.
    pub commission_cents: i64,
    /// What QA penalties took into the QA fund.
    pub deducted_cents: i64,
}

impl Lot<'_> {
    /// The task's whole price: what a reversal gives back.
    pub fn price_cents(&self) -> i64 {
        self.amount_cents + self.commission_cents + self.deducted_cents
    }
}

/// A buyer may credit a task only while it is completed and its lot's window is open.
pub fn check_credit(status: TaskStatus, in_window: bool) -> Result<(), EngineError> {
    if status != TaskStatus::Completed {
        return Err(EngineError::Conflict(format!(
            "only a completed task can be credited; this one is {}",
            status.as_str()
        )));
    }
    if !in_window {
        return Err(EngineError::Conflict(
            "the refund window for this task has closed".into(),
        ));
    }
    Ok(())
}

/// A credit reverses the task's lot: each part goes back where it came from (the worker's frozen
/// earning, the platform's commission, the QA fund's deduction) and the buyer gets the price.
pub fn reversal(task_id: &str, buyer_id: &str, lot: &Lot<'_>) -> Entry {
    Entry::new(EntryKind::BuyerCredit, task_id)
        .post(ledger::frozen(lot.worker_id), -lot.amount_cents)
        .post(ledger::REVENUE, -lot.commission_cents)
        .post(ledger::QA_FUND, -lot.deducted_cents)
        .post(ledger::available(buyer_id), lot.price_cents())
}

/// The buyer of a task whose lot is gone (released) is made whole by the QA fund.
pub fn qa_credit(task_id: &str, buyer_id: &str, price_cents: i64) -> Entry {
    Entry::new(EntryKind::QaCredit, task_id).transfer(
        ledger::QA_FUND,
        ledger::available(buyer_id),
        price_cents,
    )
}

/// A lot's window ended: frozen → available. None for a lot a penalty emptied.
pub fn unfreeze(task_id: &str, worker_id: &str, amount_cents: i64) -> Option<Entry> {
    (amount_cents > 0).then(|| {
        Entry::new(EntryKind::Unfreeze, task_id).transfer(
            ledger::frozen(worker_id),
            ledger::available(worker_id),
            amount_cents,
        )
    })
}

/// The signup credit of a new buyer, from promotions. None when the config gives none.
pub fn signup_credit(user_id: &str, cents: i64) -> Option<Entry> {
    (cents > 0).then(|| {
        Entry::new(EntryKind::SignupCredit, user_id).transfer(
            ledger::PROMOTIONS,
            ledger::available(user_id),
            cents,
        )
    })
}

/// An admin's credit, from promotions.
pub fn admin_credit(user_id: &str, cents: i64) -> Entry {
    Entry::new(EntryKind::AdminCredit, user_id).transfer(
        ledger::PROMOTIONS,
        ledger::available(user_id),
        cents,
    )
}

/// A paid Stripe Checkout reaches the buyer: external:stripe → available.
pub fn deposit(deposit_id: &str, buyer_id: &str, cents: i64) -> Entry {
    Entry::new(EntryKind::Deposit, deposit_id).transfer(
        ledger::EXTERNAL_STRIPE,
        ledger::available(buyer_id),
        cents,
    )
}

/// The first deposit's bonus, from promotions. None when there is none.
pub fn deposit_bonus(deposit_id: &str, buyer_id: &str, cents: i64) -> Option<Entry> {
    (cents > 0).then(|| {
        Entry::new(EntryKind::DepositBonus, deposit_id).transfer(
            ledger::PROMOTIONS,
            ledger::available(buyer_id),
            cents,
        )
    })
}

/// A worker asks for a payout: available → payouts pending, under the withdrawal's id (so that
/// its completion or rejection moves the same money back out).
pub fn withdrawal(withdrawal_id: &str, worker_id: &str, cents: i64) -> Entry {
    Entry::new(EntryKind::Withdrawal, withdrawal_id).transfer(
        ledger::available(worker_id),
        ledger::PAYOUTS_PENDING,
        cents,
    )
}

/// An admin paid the withdrawal out: payouts pending → external:payouts.
pub fn withdrawal_paid(withdrawal_id: &str, cents: i64) -> Entry {
    Entry::new(EntryKind::WithdrawalPaid, withdrawal_id).transfer(
        ledger::PAYOUTS_PENDING,
        ledger::EXTERNAL_PAYOUTS,
        cents,
    )
}

/// An admin rejected the withdrawal: the money goes back to the worker's available balance.
pub fn withdrawal_returned(withdrawal_id: &str, worker_id: &str, cents: i64) -> Entry {
    Entry::new(EntryKind::WithdrawalReturned, withdrawal_id).transfer(
        ledger::PAYOUTS_PENDING,
        ledger::available(worker_id),
        cents,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(e: &Entry) -> i64 {
        e.postings.iter().map(|p| p.amount_cents).sum()
    }

    #[test]
    fn a_reversal_gives_the_buyer_the_whole_price_from_where_it_went() {
        let lot = Lot {
            worker_id: "w",
            amount_cents: 30,
            commission_cents: 12,
            deducted_cents: 8,
        };
        let e = reversal("t", "b", &lot);
        assert!(e.check().is_ok());
        assert_eq!(sum(&e), 0);
        let get = |a: &str| {
            e.postings
                .iter()
                .find(|p| p.account == a)
                .map(|p| p.amount_cents)
        };
        assert_eq!(get(&ledger::available("b")), Some(50));
        assert_eq!(get(&ledger::frozen("w")), Some(-30));
        assert_eq!(get(ledger::REVENUE), Some(-12));
        assert_eq!(get(ledger::QA_FUND), Some(-8));
        // A lot with no commission and no deduction (a 1-cent task) has two postings.
        let one = Lot {
            worker_id: "w",
            amount_cents: 1,
            commission_cents: 0,
            deducted_cents: 0,
        };
        assert_eq!(reversal("t", "b", &one).postings.len(), 2);
    }

    #[test]
    fn refunds_go_back_to_whoever_paid() {
        let buyer = refund("t", "b", false, 5);
        assert!(
            buyer
                .postings
                .iter()
                .any(|p| p.account == ledger::available("b"))
        );
        let qa = refund("t", "platform:qa", true, 5);
        assert!(qa.postings.iter().any(|p| p.account == ledger::QA_FUND));
        assert!(buyer.check().is_ok() && qa.check().is_ok());
    }

    #[test]
    fn only_a_completed_task_inside_its_window_is_credited() {
        assert!(check_credit(TaskStatus::Completed, true).is_ok());
        assert!(check_credit(TaskStatus::Completed, false).is_err());
        assert!(check_credit(TaskStatus::Credited, true).is_err());
        assert!(check_credit(TaskStatus::Pending, true).is_err());
    }

    #[test]
    fn empty_movements_write_no_entry() {
        assert!(unfreeze("t", "w", 0).is_none());
        assert!(signup_credit("u", 0).is_none());
        assert!(unfreeze("t", "w", 3).is_some_and(|e| e.check().is_ok()));
    }
}
