//! The penalty ladder of `config:qa.penalty`: what the n-th QA fail of a worker costs it, the
//! notice the worker reads about it, and whether the buyer whose task failed is credited.

use crate::config::{PenaltyDoc, PlatformConfig, RateBp, rate_bp};
use crate::ledger::{self, Entry, EntryKind};

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

/// A lot of the penalised worker that is still frozen (or held): what a deduction cuts into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrozenLot {
    pub lot_id: i64,
    pub amount_cents: i64,
}

/// What the worker is told, in `GET /api/worker/me`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `warning`, `deduction` or `ban`.
    pub kind: &'static str,
    pub message: String,
}

/// What a fail costs, for the store to write in the decision's transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub notice: Notice,
    /// Cents taken from each lot, by lot id, into the QA fund.
    pub cuts: Vec<(i64, i64)>,
    /// The worker's frozen earnings → the QA fund, for the sum of the cuts.
    pub entry: Option<Entry>,
    pub deducted_cents: i64,
    /// The worker drops one more tier below what its record earns.
    pub downgrade: bool,
    pub ban: bool,
    /// The worker's frozen lots are held: never released (buyers can still be credited from them).
    pub freeze_balance: bool,
}

/// The audit entry's details of a ban the ladder made.
pub fn ban_details(worker_id: &str, fail_number: u32, plan: &Plan) -> serde_json::Value {
    serde_json::json!({
        "worker_id": worker_id, "qa_fail": fail_number, "deducted_cents": plan.deducted_cents,
        "balance_frozen": plan.freeze_balance, "reason": plan.notice.message,
    })
}

/// The penalty for `worker_id`'s `fail_number`-th fail, with its `lots` as they are now.
pub fn plan(worker_id: &str, fail_number: u32, lots: &[FrozenLot], doc: &PenaltyDoc) -> Plan {
    let none = |notice| Plan {
        notice,
        cuts: Vec::new(),
        entry: None,
        deducted_cents: 0,
        downgrade: false,
        ban: false,
        freeze_balance: false,
    };
    match for_fail(fail_number, doc) {
        Penalty::Warning => none(Notice {
            kind: "warning",
            message: "A recent result of yours fell well short of what other workers delivered \
                      for the same task. Another one costs part of your frozen earnings and a \
                      tier; a third, your account."
                .into(),
        }),
        Penalty::Deduct {
            deduct_bp,
            downgrade,
        } => {
            let cuts: Vec<(i64, i64)> = lots
                .iter()
                .map(|l| {
                    let cut = i128::from(l.amount_cents) * i128::from(deduct_bp) / 10_000;
                    (l.lot_id, cut as i64)
                })
                .filter(|(_, cut)| *cut > 0)
                .collect();
            let total: i64 = cuts.iter().map(|(_, c)| c).sum();
            let entry = (total > 0).then(|| {
                Entry::new(EntryKind::QaDeduction, worker_id).transfer(
                    ledger::frozen(worker_id),
                    ledger::QA_FUND,
                    total,
                )
            });
            let message = format!(
                "A second low-quality result: {total} cents of your frozen earnings went to the \
                 quality fund{}. A third costs your account.",
                if downgrade {
                    " and you move down one tier"
                } else {
                    ""
                }
            );
            Plan {
                downgrade,
                cuts,
                entry,
                deducted_cents: total,
                ..none(Notice {
                    kind: "deduction",
                    message,
                })
            }
        }
        Penalty::Ban {
            ban,
            freeze_balance,
        } => {
            let message = if ban {
                "Repeated low-quality results: this account is banned and its balance is frozen \
                 pending review."
            } else {
                "Repeated low-quality results: your balance is frozen pending review."
            };
            Plan {
                ban,
                freeze_balance,
                ..none(Notice {
                    kind: "ban",
                    message: message.into(),
                })
            }
        }
    }
}

/// Whether the buyer gets the price back when QA blames `blamed`: only when the blamed worker
/// did the buyer's own task (`original_worker`), and the config says so.
pub fn credits_buyer(cfg: &PlatformConfig, blamed: &str, original_worker: Option<&str>) -> bool {
    cfg.qa.auto_credit_on_fail && original_worker == Some(blamed)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_second_fail_takes_its_share_of_every_frozen_lot() {
        let doc = PlatformConfig::builtin().qa.penalty;
        let lots = [
            FrozenLot {
                lot_id: 1,
                amount_cents: 10,
            },
            FrozenLot {
                lot_id: 2,
                amount_cents: 3,
            },
            FrozenLot {
                lot_id: 3,
                amount_cents: 4,
            },
        ];
        let p = plan("w", 2, &lots, &doc);
        // 20 % of 10 is 2; of 3 and 4, rounded down, 0 and 0 — a lot too small is left alone.
        assert_eq!(p.cuts, vec![(1, 2)]);
        assert_eq!(p.deducted_cents, 2);
        assert!(p.entry.as_ref().is_some_and(|e| e.check().is_ok()));
        assert!(p.downgrade && !p.ban);
        assert_eq!(p.notice.kind, "deduction");
        assert!(p.notice.message.contains("2 cents") && p.notice.message.contains("down one tier"));
        // Nothing frozen: nothing moves, the notice still says so.
        let empty = plan("w", 2, &[], &doc);
        assert!(empty.entry.is_none() && empty.notice.message.contains("0 cents"));
    }

    #[test]
    fn warnings_and_bans_move_no_money() {
        let doc = PlatformConfig::builtin().qa.penalty;
        let lots = [FrozenLot {
            lot_id: 1,
            amount_cents: 10,
        }];
        let w = plan("w", 1, &lots, &doc);
        assert_eq!(w.notice.kind, "warning");
        assert!(w.entry.is_none() && w.cuts.is_empty() && !w.ban);
        let b = plan("w", 3, &lots, &doc);
        assert_eq!(b.notice.kind, "ban");
        assert!(b.ban && b.freeze_balance && b.entry.is_none());
        assert!(b.notice.message.contains("banned"));
    }

    #[test]
    fn only_the_original_worker_s_fail_credits_the_buyer() {
        let mut cfg = PlatformConfig::builtin();
        assert!(credits_buyer(&cfg, "w1", Some("w1")));
        assert!(!credits_buyer(&cfg, "w2", Some("w1")));
        assert!(!credits_buyer(&cfg, "w1", None));
        cfg.qa.auto_credit_on_fail = false;
        assert!(!credits_buyer(&cfg, "w1", Some("w1")));
    }
}
