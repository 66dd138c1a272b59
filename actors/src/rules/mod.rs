//! Every decision of the marketplace, as plain functions of plain data. A store backend reads
//! what a rule needs inside its transaction, asks the rule, and writes what the rule answers —
//! the rows, the journal entry — atomically. A new backend writes storage, not policy; the rules
//! are tested here without a database.
//!
//! - [`crate::economics`]: price, commission, the earning split, tier placement.
//! - [`claim`]: whether a worker may claim now (ban, suspension, `limits`).
//! - [`settlement`]: an accepted submit — the split, the lot, the entry, the stats and tier, the
//!   spot-check roll.
//! - [`expiry`]: a missed deadline — the count, the suspension, the tier, requeue or fail.
//! - [`penalty`]: a QA fail — the ladder step, the notice the worker reads, the deduction, the
//!   ban; and whether the buyer is credited.
//! - [`money`]: the journal entries of every other movement (pay, refund, credit reversal,
//!   unfreeze, the QA fund's payments, signup and admin credits, deposits and withdrawals).
//! - [`deposit`]: what a verified Stripe event does to a deposit (credit once, hold, expire).
//! - [`referral`]: codes, the referred buyer's credit, the referrer's share of released tasks.
//! - [`bounty`]: bounties — what may be posted and submitted, the payout and refund entries,
//!   dispute resolutions, consensus majorities, and the due times the Supervisor acts on.
//! - [`payout`]: email codes and payout addresses; [`withdrawal`]: who may withdraw what, now.
//! - [`audit`]: the audit log's hash chain — each entry's hash, and walking the chain to verify it.
//! - [`retention`]: when a task's input and output are purged.
//! - [`webhook`]: buyer webhooks — events, endpoints that may be registered, signatures, backoff.

pub mod audit;
pub mod bounty;
pub mod claim;
pub mod deposit;
pub mod expiry;
pub mod money;
pub mod payout;
pub mod penalty;
pub mod referral;
pub mod retention;
pub mod settlement;
pub mod webhook;
pub mod withdrawal;
