//! Referrals: codes, the referred buyer's credit, and the referrer's share of a referred worker's
//! first tasks. The share is paid when a task's lot is released (its refund window over), out of
//! the commission the platform kept for that task, so that a credited task pays no share and the
//! worker's own earning is never touched.

use crate::ledger::{self, Entry, EntryKind};

/// A referred worker's tasks that pay its referrer a share.
pub const SHARED_TASKS: i64 = 100;
/// Referral codes: 8 characters of an alphabet without look-alikes (no 0/O, 1/I/L).
pub const CODE_CHARS: usize = 8;
const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// The rule of [`is_code`] as a pattern (for the OpenAPI document).
pub const CODE_PATTERN: &str = "^[2-9A-HJKMNP-Z]{8}$";

/// A fresh code (the store makes sure it is unused).
pub fn new_code() -> String {
    (0..CODE_CHARS)
        .map(|_| CODE_ALPHABET[rand::random_range(0..CODE_ALPHABET.len())] as char)
        .collect()
}

/// Whether `s` could be a code (case-insensitive; see [`normalise`]).
pub fn is_code(s: &str) -> bool {
    s.len() == CODE_CHARS
        && s.bytes()
            .all(|b| CODE_ALPHABET.contains(&b.to_ascii_uppercase()))
}

pub fn normalise(s: &str) -> String {
    s.trim().to_ascii_uppercase()
}

/// The referrer's share of a released task: `share_bp` of its price, floored, and never more than
/// the commission the platform kept for it.
pub fn share_cents(price_cents: i64, commission_cents: i64, share_bp: i64) -> i64 {
    (price_cents.saturating_mul(share_bp) / 10_000).clamp(0, commission_cents.max(0))
}

/// The referrer's share: revenue → the referrer's available balance, under the task (the same
/// shard of revenue its commission went to).
pub fn share(task_id: &str, referrer_id: &str, cents: i64) -> Option<Entry> {
    (cents > 0).then(|| {
        Entry::new(EntryKind::ReferralShare, task_id).transfer(
            ledger::REVENUE,
            ledger::available(referrer_id),
            cents,
        )
    })
}

/// A referred buyer's credit, from promotions.
pub fn buyer_credit(user_id: &str, cents: i64) -> Option<Entry> {
    (cents > 0).then(|| {
        Entry::new(EntryKind::ReferralCredit, user_id).transfer(
            ledger::PROMOTIONS,
            ledger::available(user_id),
            cents,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_floored_and_within_the_commission() {
        assert_eq!(share_cents(100, 25, 500), 5);
        assert_eq!(share_cents(19, 5, 500), 0);
        assert_eq!(
            share_cents(100, 3, 500),
            3,
            "never more than the platform kept"
        );
        assert!(share("t", "u", 0).is_none());
        assert!(share("t", "u", 5).is_some_and(|e| e.check().is_ok()));
    }

    #[test]
    fn codes_are_what_the_pattern_says() {
        for _ in 0..100 {
            let c = new_code();
            assert!(is_code(&c), "{c}");
        }
        assert!(is_code("k7m2pq9z"), "lower case is the same code");
        assert!(!is_code("0OIL1234"));
        assert!(!is_code("ABC"));
        assert_eq!(normalise(" k7m2pq9z "), "K7M2PQ9Z");
    }
}
