//! The economics rules (docs/ARCHITECTURE.md, "Economics"): price, commission, earnings split and tier moves.
//! Pure functions of the platform config, so they are tested without a store or a clock.

use serde_json::Value;

use crate::config::{PlatformConfig, PriceRule, RateBp, TierLevel};
use crate::domain::TaskType;
use crate::error::EngineError;

/// The price of a task of `task_type` with `input`, in cents.
pub fn price_cents(
    cfg: &PlatformConfig,
    task_type: &TaskType,
    input: &Value,
) -> Result<i64, EngineError> {
    let rule = price_rule(cfg, task_type).ok_or_else(|| {
        EngineError::validation_field(
            "type",
            format!(
                "unknown task type {:?}: see the pricing config for the accepted types",
                task_type.as_str()
            ),
        )
    })?;
    if let Some(steps) = &rule.multi_turn {
        let user_messages = count_user_messages(input)?;
        // The first step that covers this many messages; past the last step the last price holds.
        let step = steps
            .iter()
            .find(|s| u64::from(s.up_to_message) >= user_messages)
            .or(steps.last());
        return Ok(step.map_or(rule.base_cents, |s| s.price_cents));
    }
    if rule.per_segment {
        let segments = match input.get("segments") {
            None | Some(Value::Null) => 1,
            Some(Value::Array(a)) if !a.is_empty() => a.len() as i64,
            Some(Value::Array(_)) => {
                return Err(EngineError::validation_field(
                    "input.segments",
                    "segments must not be empty",
                ));
            }
            Some(_) => {
                return Err(EngineError::validation_field(
                    "input.segments",
                    "segments must be an array",
                ));
            }
        };
        return rule
            .base_cents
            .checked_mul(segments)
            .filter(|p| *p <= crate::limits::MAX_PRICE_CENTS)
            .ok_or_else(|| EngineError::validation_field("input.segments", "too many segments"));
    }
    Ok(rule.base_cents)
}

fn price_rule<'a>(cfg: &'a PlatformConfig, task_type: &TaskType) -> Option<&'a PriceRule> {
    cfg.pricing.get(task_type.as_str()).or_else(|| {
        if task_type.is_skill() {
            cfg.pricing.get("skill")
        } else {
            None
        }
    })
}

/// Messages with `role: "user"` in `input.messages` (a chat without the list counts as one turn).
fn count_user_messages(input: &Value) -> Result<u64, EngineError> {
    match input.get("messages") {
        None | Some(Value::Null) => Ok(1),
        Some(Value::Array(msgs)) => {
            let n = msgs
                .iter()
                .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
                .count() as u64;
            Ok(n.max(1))
        }
        Some(_) => Err(EngineError::validation_field(
            "input.messages",
            "messages must be an array",
        )),
    }
}

/// The commission rate for a worker of `tier` with `completed` tasks doing `task_type`.
pub fn commission_bp(
    cfg: &PlatformConfig,
    tier: &str,
    task_type: &TaskType,
    completed: u64,
) -> RateBp {
    let mut rate = cfg
        .tier(tier)
        .or(cfg.tier_levels.first())
        .map_or(10_000, |t| t.commission_bp);
    if task_type.is_skill() {
        rate = rate.min(cfg.skill_commission_bp);
    }
    if let Some((_, step)) = cfg
        .volume_discounts
        .iter()
        .rev()
        .find(|(min, _)| completed >= *min)
    {
        rate = rate.min(*step);
    }
    rate
}

/// Splits a price into (worker, platform). The rounding rule: the worker gets
/// `floor(price × (10000 − rate) / 10000)`, but never less than one cent, and the platform keeps
/// the rest. So the platform's commission absorbs every fraction of a cent, and a task so cheap
/// that its rounded-down share would be zero (a 1-cent translate at 25 %) pays its worker one cent
/// and the platform nothing: no accepted task pays its worker nothing.
pub fn split(price_cents: i64, rate_bp: RateBp) -> (i64, i64) {
    let rate = i128::from(rate_bp.min(10_000));
    let floored = (i128::from(price_cents) * (10_000 - rate) / 10_000) as i64;
    let worker = floored.max(1).min(price_cents);
    (worker, price_cents - worker)
}

/// What tier placement looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierStats {
    pub claimed: u64,
    pub completed: u64,
    pub credit_requests: u64,
}

/// Whether `stats` meet every requirement of `level`. Ratios are compared in integers.
pub fn meets(level: &TierLevel, s: &TierStats) -> bool {
    let completion_ok = u128::from(s.completed) * 10_000
        >= u128::from(level.min_completion_bp) * u128::from(s.claimed);
    let credit_ok = u128::from(s.credit_requests) * 10_000
        <= u128::from(level.max_credit_rate_bp) * u128::from(s.completed);
    s.completed >= level.min_tasks && completion_ok && credit_ok
}

/// The tier a worker belongs in: the highest level such that it meets that level and every level
/// below it. A worker moves up as soon as it meets the next level and down as soon as it stops
/// meeting its own; the lowest level always holds.
pub fn placement<'a>(cfg: &'a PlatformConfig, s: &TierStats) -> &'a str {
    let mut tier = cfg.lowest_tier();
    for level in cfg.tier_levels.iter().skip(1) {
        if !meets(level, s) {
            break;
        }
        tier = &level.name;
    }
    tier
}

/// [`placement`], held `penalty` levels lower by QA downgrades (never below the lowest tier).
pub fn placement_penalised<'a>(cfg: &'a PlatformConfig, s: &TierStats, penalty: u32) -> &'a str {
    let placed = placement(cfg, s);
    let idx = cfg
        .tier_levels
        .iter()
        .position(|l| l.name == placed)
        .unwrap_or(0);
    cfg.tier_levels
        .get(idx.saturating_sub(penalty as usize))
        .map(|l| l.name.as_str())
        .unwrap_or(placed)
}

/// Whether a worker's credit rate is above what its tier allows (it gets the `suspicious`
/// spot-check rate).
pub fn suspicious(cfg: &PlatformConfig, tier: &str, s: &TierStats) -> bool {
    cfg.tier(tier).is_some_and(|level| {
        u128::from(s.credit_requests) * 10_000
            > u128::from(level.max_credit_rate_bp) * u128::from(s.completed)
    })
}

/// Progress towards the next tier, for `GET /api/worker/me`.
pub fn tier_progress(cfg: &PlatformConfig, tier: &str, s: &TierStats) -> Value {
    let idx = cfg
        .tier_levels
        .iter()
        .position(|l| l.name == tier)
        .unwrap_or(0);
    let pct = |bp: u64| bp as f64 / 10_000.0;
    let completion_bp = (s.completed * 10_000).checked_div(s.claimed).unwrap_or(0);
    let credit_bp = (s.credit_requests * 10_000)
        .checked_div(s.completed)
        .unwrap_or(0);
    let next = cfg.tier_levels.get(idx + 1).map(|n| {
        serde_json::json!({
            "tier": n.name,
            "min_tasks": n.min_tasks,
            "tasks_needed": n.min_tasks.saturating_sub(s.completed),
            "min_completion": pct(u64::from(n.min_completion_bp)),
            "max_credit_rate": pct(u64::from(n.max_credit_rate_bp)),
        })
    });
    serde_json::json!({
        "tier": tier,
        "completed": s.completed,
        "completion_rate": pct(completion_bp),
        "credit_rate": pct(credit_bp),
        "next": next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn cfg() -> PlatformConfig {
        PlatformConfig::builtin()
    }

    fn tt(s: &str) -> TaskType {
        TaskType::parse(s).unwrap()
    }

    #[test]
    fn prices_follow_the_pricing_document() {
        let c = cfg();
        assert_eq!(price_cents(&c, &tt("code"), &json!({})).unwrap(), 5);
        assert_eq!(price_cents(&c, &tt("research"), &json!({})).unwrap(), 50);
        let chat = |n: usize| {
            let msgs: Vec<_> = (0..n)
                .flat_map(|_| {
                    [
                        json!({"role": "user", "content": "q"}),
                        json!({"role": "assistant", "content": "a"}),
                    ]
                })
                .collect();
            price_cents(&c, &tt("chat"), &json!({ "messages": msgs })).unwrap()
        };
        assert_eq!(chat(1), 2);
        assert_eq!(chat(3), 2);
        assert_eq!(chat(4), 5);
        assert_eq!(chat(7), 5);
        assert_eq!(chat(8), 10);
        assert_eq!(chat(2000), 10);
        assert_eq!(
            price_cents(&c, &tt("translate"), &json!({"text": "x"})).unwrap(),
            1
        );
        assert_eq!(
            price_cents(&c, &tt("translate"), &json!({"segments": ["a", "b", "c"]})).unwrap(),
            3
        );
        assert!(price_cents(&c, &tt("translate"), &json!({"segments": []})).is_err());
        assert!(price_cents(&c, &tt("translate"), &json!({"segments": "abc"})).is_err());
        assert_eq!(price_cents(&c, &tt("skill:pdf"), &json!({})).unwrap(), 10);
        assert!(matches!(
            price_cents(&c, &tt("astrology"), &json!({})),
            Err(EngineError::Validation { .. })
        ));
    }

    #[test]
    fn named_skill_price_wins_over_the_fallback() {
        let mut c = cfg();
        c.pricing.insert(
            "skill:pdf".into(),
            PriceRule {
                base_cents: 33,
                multi_turn: None,
                per_segment: false,
            },
        );
        assert_eq!(price_cents(&c, &tt("skill:pdf"), &json!({})).unwrap(), 33);
        assert_eq!(price_cents(&c, &tt("skill:other"), &json!({})).unwrap(), 10);
    }

    #[test]
    fn commission_rules() {
        let c = cfg();
        assert_eq!(commission_bp(&c, "new", &tt("chat"), 0), 2500);
        assert_eq!(commission_bp(&c, "elite", &tt("chat"), 0), 1000);
        // Skills take the lower of tier and skill rate.
        assert_eq!(commission_bp(&c, "new", &tt("skill:x"), 0), 1500);
        assert_eq!(commission_bp(&c, "elite", &tt("skill:x"), 0), 1000);
        // Volume discounts lower the rate further once reached.
        assert_eq!(commission_bp(&c, "new", &tt("chat"), 499), 2500);
        assert_eq!(commission_bp(&c, "new", &tt("chat"), 500), 2000);
        assert_eq!(commission_bp(&c, "new", &tt("chat"), 2000), 1800);
        assert_eq!(commission_bp(&c, "new", &tt("chat"), 10_000), 1500);
        assert_eq!(commission_bp(&c, "elite", &tt("chat"), 10_000), 1000);
    }

    #[test]
    fn qa_downgrades_and_the_suspicious_spot_check_rate() {
        let c = cfg();
        let proven = TierStats {
            claimed: 60,
            completed: 60,
            credit_requests: 0,
        };
        assert_eq!(placement(&c, &proven), "proven");
        assert_eq!(placement_penalised(&c, &proven, 1), "new");
        assert_eq!(
            placement_penalised(&c, &proven, 9),
            "new",
            "never below the lowest"
        );
        // A new worker with 3 credits in 10 tasks is within "new" (max 1.0) but not "proven".
        let creditted = TierStats {
            claimed: 10,
            completed: 10,
            credit_requests: 3,
        };
        assert!(!suspicious(&c, "new", &creditted));
        assert!(suspicious(&c, "proven", &creditted));
        assert!(!suspicious(&c, "proven", &TierStats::default()));
        assert_eq!(c.qa.spot_check_bp("proven", false), 800);
        assert_eq!(c.qa.spot_check_bp("proven", true), 3000);
        assert_eq!(c.qa.spot_check_bp("unknown", false), 0);
        assert_eq!(c.qa.shadow_bp(), 300);
    }

    #[test]
    fn split_rounds_down_for_the_worker() {
        assert_eq!(split(2, 2500), (1, 1));
        assert_eq!(split(5, 2500), (3, 2));
        assert_eq!(split(50, 2500), (37, 13));
        assert_eq!(split(100, 0), (100, 0));
    }

    #[test]
    fn split_never_pays_a_worker_nothing() {
        // floor(1 × 0.75) would be 0: the worker gets the cent and the platform nothing.
        assert_eq!(split(1, 2500), (1, 0));
        assert_eq!(split(3, 8000), (1, 2));
        assert_eq!(split(100, 10_000), (1, 99));
    }

    #[test]
    fn tiers_move_up_and_down() {
        let c = cfg();
        let s = |claimed, completed, credits| TierStats {
            claimed,
            completed,
            credit_requests: credits,
        };
        assert_eq!(placement(&c, &s(0, 0, 0)), "new");
        assert_eq!(placement(&c, &s(50, 49, 0)), "new");
        assert_eq!(placement(&c, &s(50, 50, 0)), "proven");
        // Completion below 90 % keeps a worker out of proven.
        assert_eq!(placement(&c, &s(60, 50, 0)), "new");
        assert_eq!(placement(&c, &s(55, 50, 0)), "proven");
        // Too many credit requests: 3 of 50 is 6 % > 5 %.
        assert_eq!(placement(&c, &s(50, 50, 3)), "new");
        assert_eq!(placement(&c, &s(200, 200, 0)), "trusted");
        assert_eq!(placement(&c, &s(200, 200, 7)), "proven");
        assert_eq!(placement(&c, &s(1000, 1000, 0)), "elite");
        assert_eq!(placement(&c, &s(1100, 1000, 0)), "proven");
    }

    proptest! {
        #[test]
        fn split_conserves_money(price in 1i64..=crate::limits::MAX_PRICE_CENTS, rate in 0u32..=10_000) {
            let (w, p) = split(price, rate);
            prop_assert_eq!(w + p, price);
            prop_assert!(w >= 1 && p >= 0);
            // The platform never keeps more than its rate, rounded up to the cent…
            prop_assert!(i128::from(p - 1) * 10_000 < i128::from(price) * i128::from(rate));
            // …and keeps exactly that whenever the worker's rounded-down share is a cent or more.
            let floored = i128::from(price) * i128::from(10_000 - rate) / 10_000;
            if floored >= 1 {
                prop_assert!(i128::from(p) * 10_000 >= i128::from(price) * i128::from(rate));
            }
        }

        #[test]
        fn placement_is_monotonic_in_completed_work(claimed in 0u64..3000, extra in 0u64..3000) {
            // Completing more of the same claims never lowers the tier.
            let c = cfg();
            let idx = |t: &str| c.tier_levels.iter().position(|l| l.name == t).unwrap();
            let done = claimed.min(extra);
            let a = placement(&c, &TierStats { claimed, completed: done, credit_requests: 0 });
            let b = placement(&c, &TierStats { claimed, completed: claimed, credit_requests: 0 });
            prop_assert!(idx(a) <= idx(b));
        }
    }
}
