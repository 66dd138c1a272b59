//! The penalty ladder of `config:qa.penalty`: what the n-th QA fail of a worker costs it.

use crate::config::{PenaltyDoc, RateBp, rate_bp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Penalty {
    /// First fail: a warning the worker sees in `GET /api/worker/me`.
    Warning,
    /// Second fail: `deduct_bp` of the worker's frozen earnings go to the QA fund; with
    /// `downgrade`, the worker drops one tier.
    Deduct { deduct_bp: RateBp, downgrade: bool },
    /// Third fail and after: with `ban`, every worker call answers 403 BANNED; with
    /// `freeze_balance`, nothing more is released to the worker.
    Ban { ban: bool, freeze_balance: bool },
}

/// The penalty for a worker's `fail_number`-th fail (1-based).
pub fn for_fail(fail_number: u32, doc: &PenaltyDoc) -> Penalty {
    match fail_number {
        0 | 1 => Penalty::Warning,
        2 => Penalty::Deduct {
            // The document is validated on the way in; a fraction outside [0, 1] cannot be here.
            deduct_bp: rate_bp(
                "qa.penalty.second_fail.deduct_pct",
                doc.second_fail.deduct_pct,
            )
            .unwrap_or(0),
            downgrade: doc.second_fail.downgrade,
        },
        _ => Penalty::Ban {
            ban: doc.third_fail.ban,
            freeze_balance: doc.third_fail.freeze_balance,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PlatformConfig;

    #[test]
    fn the_ladder_walks_warning_deduction_ban() {
        let doc = PlatformConfig::builtin().qa.penalty;
        assert_eq!(for_fail(1, &doc), Penalty::Warning);
        assert_eq!(
            for_fail(2, &doc),
            Penalty::Deduct {
                deduct_bp: 2000,
                downgrade: true
            }
        );
        assert_eq!(
            for_fail(3, &doc),
            Penalty::Ban {
                ban: true,
                freeze_balance: true
            }
        );
        assert_eq!(
            for_fail(7, &doc),
            Penalty::Ban {
                ban: true,
                freeze_balance: true
            }
        );
    }
}
