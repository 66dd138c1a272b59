//! The platform config: every economic number, as typed documents that are validated before they
//! are stored. Rates arrive as fractions (`0.25`) and are compiled to basis points once, here, so
//! that no float ever touches money.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::EngineError;

/// The documents an admin can read and replace, in the order they are listed.
pub const KEYS: &[&str] = &[
    "pricing",
    "tiers",
    "commissions",
    "signup",
    "qa",
    "rate_limits",
    "dispatch",
    "bounty",
    "webhooks",
    "retention",
];

/// A rate held as basis points: 10_000 is 100 %.
pub type RateBp = u32;

/// Largest price any one task may have, as a guard against typos in the pricing document.
pub use crate::limits::MAX_PRICE_CENTS;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnStep {
    pub up_to_message: u32,
    pub price_cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceRule {
    pub base_cents: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_turn: Option<Vec<TurnStep>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_segment: bool,
}

/// `pricing`: one rule per task type; `skill` is the fallback for `skill:NAME` types. The
/// document also holds `deposit_tiers_cents`, the amounts a buyer may deposit (see
/// [`parse_pricing`]).
pub type Pricing = BTreeMap<String, PriceRule>;

/// The field of the `pricing` document that lists the deposit amounts.
pub const DEPOSIT_TIERS_FIELD: &str = "deposit_tiers_cents";
/// The deposit amounts when the document names none: $5, $10, $20.
pub const DEFAULT_DEPOSIT_TIERS_CENTS: [i64; 3] = [500, 1000, 2000];
/// Stripe's smallest USD charge, and the largest deposit this server takes in one payment.
pub const DEPOSIT_CENTS: std::ops::RangeInclusive<i64> = 50..=1_000_000;
/// At most this many deposit amounts.
pub const MAX_DEPOSIT_TIERS: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLevelDoc {
    pub min_tasks: u64,
    pub min_completion: f64,
    pub max_credit_rate: f64,
    pub commission: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiersDoc {
    pub levels: BTreeMap<String, TierLevelDoc>,
    /// Tasks priced at or above this go first to the highest-tier worker waiting for one, and a
    /// worker above the lowest tier is offered them before older, cheaper tasks.
    #[serde(default = "default_priority_min_price_cents")]
    pub priority_min_price_cents: i64,
}

/// `tiers.priority_min_price_cents` when a stored document predates it: an analysis task's
/// base price.
pub const DEFAULT_PRIORITY_MIN_PRICE_CENTS: i64 = 20;

fn default_priority_min_price_cents() -> i64 {
    DEFAULT_PRIORITY_MIN_PRICE_CENTS
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeDiscountDoc {
    pub min_tasks: u64,
    pub commission: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommissionsDoc {
    pub standard: f64,
    pub skill: f64,
    pub subscription: f64,
    #[serde(default)]
    pub volume_discounts: Vec<VolumeDiscountDoc>,
    /// Freeze window = refund window for each earning.
    pub freeze_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupDoc {
    pub buyer_free_credit_cents: i64,
    pub first_deposit_bonus_pct: f64,
    pub referral_buyer_credit_cents: i64,
    pub referral_seller_pct: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarityThresholds {
    pub pass: f64,
    pub flag: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondFail {
    pub deduct_pct: f64,
    pub downgrade: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThirdFail {
    pub ban: bool,
    pub freeze_balance: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PenaltyDoc {
    pub first_fail: String,
    pub second_fail: SecondFail,
    pub third_fail: ThirdFail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QaDoc {
    pub spot_check_rates: BTreeMap<String, f64>,
    pub shadow_execution_rate: f64,
    pub similarity_thresholds: SimilarityThresholds,
    pub penalty: PenaltyDoc,
    #[serde(default)]
    pub benchmark_interval_seconds: u64,
    #[serde(default = "default_true")]
    pub auto_credit_on_fail: bool,
    /// The chance that a hand-off ignores tier priority (fairness for lower tiers).
    #[serde(default = "default_fairness_random")]
    pub fairness_random: f64,
}

/// `qa.fairness_random` when a stored document predates it.
pub const DEFAULT_FAIRNESS_RANDOM: f64 = 0.1;

fn default_fairness_random() -> f64 {
    DEFAULT_FAIRNESS_RANDOM
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationLimits {
    pub per_ip_per_min: u32,
    pub fingerprint_per_hour: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkNextLimits {
    pub new_per_min: u32,
    pub established_per_min: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerMin {
    pub per_min: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalLimits {
    pub daily_max_cents: i64,
    pub min_cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsDoc {
    pub registration: RegistrationLimits,
    pub work_next: WorkNextLimits,
    pub task_submit: PerMin,
    pub withdrawal: WithdrawalLimits,
}

/// `dispatch`: the task lifecycle numbers (deadlines, retries, suspension of peeking workers).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchDoc {
    pub default_timeout_seconds: u32,
    pub min_timeout_seconds: u32,
    pub max_timeout_seconds: u32,
    /// Deadlines a task may miss before it fails and its escrow goes back to the buyer.
    pub max_attempts: u32,
    /// A task nobody claimed for this long fails and is refunded.
    pub pending_ttl_seconds: u64,
    pub expiries_before_suspension: u32,
    pub suspension_seconds: u64,
}

/// `bounty`: the terms of bounties. A bounty keeps the terms in force when it was posted (its
/// buyer and its workers agreed to those), so a change here applies to bounties posted after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BountyDoc {
    /// The platform's share of what a bounty pays its winner.
    pub fee_pct: f64,
    /// How long a worker may dispute a rejection, and how long a winner's pay stays frozen.
    pub dispute_window_seconds: u64,
    /// A submission its buyer has not reviewed for this long is approved automatically.
    pub auto_release_seconds: u64,
    /// How long before the automatic approval the buyer is warned.
    pub auto_release_warning_seconds: u64,
    /// Validators asked to vote on each submission of a `consensus` bounty.
    pub validators: u32,
    /// What each validator who votes with the majority is paid, out of the platform's fee.
    pub validator_fee_cents: i64,
    /// The lowest tier a validator may have.
    pub validator_min_tier: String,
    /// How long the validators asked to vote on a submission have before more are asked.
    #[serde(default = "default_vote_window_seconds")]
    pub vote_window_seconds: u64,
    pub min_reward_cents: i64,
    pub max_reward_cents: i64,
    /// The most submissions a bounty may accept (and the default when it names none).
    pub max_submissions: u32,
    /// How far ahead a deadline may be.
    pub max_deadline_seconds: u64,
}

/// `bounty.vote_window_seconds` when a stored document predates it.
pub const DEFAULT_VOTE_WINDOW_SECONDS: u64 = 3600;

fn default_vote_window_seconds() -> u64 {
    DEFAULT_VOTE_WINDOW_SECONDS
}

/// `webhooks`: how buyer webhooks are delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksDoc {
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: u32,
    /// The wait after the first failure; it doubles after each one (with jitter).
    pub initial_backoff_ms: u64,
    /// No wait is longer than this.
    pub max_backoff_ms: u64,
    /// How long an endpoint has to answer.
    pub timeout_ms: u64,
    /// Endpoints one buyer may register.
    pub max_per_buyer: u32,
}

/// `retention`: how long task content outlives the task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionDoc {
    /// Seconds a task's input and output are kept after its refund window ends (see
    /// [`crate::rules::retention`]).
    pub grace_seconds: u64,
}

impl RetentionDoc {
    pub fn grace_ms(&self) -> i64 {
        i64::try_from(self.grace_seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// One tier, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierLevel {
    pub name: String,
    pub min_tasks: u64,
    pub min_completion_bp: RateBp,
    pub max_credit_rate_bp: RateBp,
    pub commission_bp: RateBp,
}

/// The whole platform config as the engine uses it: documents plus their compiled views.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    pub pricing: Pricing,
    /// The amounts a buyer may deposit, ascending.
    pub deposit_tiers_cents: Vec<i64>,
    pub tiers: TiersDoc,
    pub commissions: CommissionsDoc,
    pub signup: SignupDoc,
    pub qa: QaDoc,
    pub rate_limits: RateLimitsDoc,
    pub dispatch: DispatchDoc,
    pub bounty: BountyDoc,
    pub webhooks: WebhooksDoc,
    pub retention: RetentionDoc,
    /// Tiers ordered by `min_tasks`, lowest first.
    pub tier_levels: Vec<TierLevel>,
    pub skill_commission_bp: RateBp,
    /// Volume discount steps ordered by `min_tasks`.
    pub volume_discounts: Vec<(u64, RateBp)>,
    /// Version of each document, by key.
    pub versions: BTreeMap<String, i64>,
}

/// Converts a fraction in [0, 1] to basis points, refusing anything else.
impl QaDoc {
    /// The spot-check rate for a worker of `tier`, or the `suspicious` rate when its credit rate is
    /// above what its tier allows. A tier without a rate is never spot-checked.
    pub fn spot_check_bp(&self, tier: &str, suspicious: bool) -> RateBp {
        let key = if suspicious { "suspicious" } else { tier };
        let rate = self
            .spot_check_rates
            .get(key)
            .or_else(|| self.spot_check_rates.get(tier))
            .copied()
            .unwrap_or(0.0);
        // Validated on the way in.
        rate_bp("qa.spot_check_rates", rate).unwrap_or(0)
    }

    pub fn shadow_bp(&self) -> RateBp {
        rate_bp("qa.shadow_execution_rate", self.shadow_execution_rate).unwrap_or(0)
    }

    pub fn fairness_bp(&self) -> RateBp {
        rate_bp("qa.fairness_random", self.fairness_random).unwrap_or(0)
    }
}

pub fn rate_bp(field: &str, value: f64) -> Result<RateBp, EngineError> {
    if !value.is_finite() || !(0.0..=1.0).contains(&value) {
        return Err(EngineError::validation_field(
            field,
            format!("{field} must be a fraction between 0 and 1, got {value}"),
        ));
    }
    Ok((value * 10_000.0).round() as RateBp)
}

fn invalid(field: &str, message: impl Into<String>) -> EngineError {
    EngineError::validation_field(field, message)
}

/// Reads the `pricing` document: the task types' rules and the deposit amounts.
pub fn parse_pricing(mut doc: Value) -> Result<(Pricing, Vec<i64>), EngineError> {
    let field = format!("pricing.{DEPOSIT_TIERS_FIELD}");
    let tiers = match doc
        .as_object_mut()
        .and_then(|o| o.remove(DEPOSIT_TIERS_FIELD))
    {
        None => DEFAULT_DEPOSIT_TIERS_CENTS.to_vec(),
        Some(v) => serde_json::from_value::<Vec<i64>>(v)
            .map_err(|_| invalid(&field, format!("{field} must be a list of whole cents")))?,
    };
    if tiers.is_empty() || tiers.len() > MAX_DEPOSIT_TIERS {
        return Err(invalid(
            &field,
            format!("{field} must list 1 to {MAX_DEPOSIT_TIERS} amounts"),
        ));
    }
    if tiers.iter().any(|c| !DEPOSIT_CENTS.contains(c)) || tiers.windows(2).any(|w| w[0] >= w[1]) {
        return Err(invalid(
            &field,
            format!(
                "{field} must be strictly increasing amounts between {} and {} cents",
                DEPOSIT_CENTS.start(),
                DEPOSIT_CENTS.end()
            ),
        ));
    }
    let pricing: Pricing = parse_doc("pricing", doc)?;
    validate_pricing(&pricing)?;
    Ok((pricing, tiers))
}

pub fn validate_pricing(p: &Pricing) -> Result<(), EngineError> {
    if p.is_empty() {
        return Err(invalid(
            "pricing",
            "pricing must list at least one task type",
        ));
    }
    for (name, rule) in p {
        let field = format!("pricing.{name}");
        crate::domain::TaskType::parse(name)
            .map_err(|_| invalid(&field, format!("{name:?} is not a valid task type name")))?;
        if !(1..=MAX_PRICE_CENTS).contains(&rule.base_cents) {
            return Err(invalid(
                &field,
                format!("base_cents must be between 1 and {MAX_PRICE_CENTS}"),
            ));
        }
        if let Some(steps) = &rule.multi_turn {
            if steps.is_empty() {
                return Err(invalid(
                    &field,
                    "multi_turn, when present, needs at least one step",
                ));
            }
            let mut last = 0;
            for s in steps {
                if s.up_to_message <= last {
                    return Err(invalid(
                        &field,
                        "multi_turn steps must have strictly increasing up_to_message, starting at 1 or more",
                    ));
                }
                if !(1..=MAX_PRICE_CENTS).contains(&s.price_cents) {
                    return Err(invalid(
                        &field,
                        format!("multi_turn price_cents must be between 1 and {MAX_PRICE_CENTS}"),
                    ));
                }
                last = s.up_to_message;
            }
        }
    }
    Ok(())
}

pub fn compile_tiers(t: &TiersDoc) -> Result<Vec<TierLevel>, EngineError> {
    if !(0..=MAX_PRICE_CENTS).contains(&t.priority_min_price_cents) {
        return Err(invalid(
            "tiers.priority_min_price_cents",
            format!("must be between 0 and {MAX_PRICE_CENTS}"),
        ));
    }
    let mut levels = Vec::with_capacity(t.levels.len());
    for (name, l) in &t.levels {
        if name.is_empty()
            || name.len() > 32
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return Err(invalid(
                "tiers.levels",
                format!("tier name {name:?} must be lowercase letters"),
            ));
        }
        if name == "suspicious" {
            return Err(invalid(
                "tiers.levels",
                "\"suspicious\" is reserved for QA rates",
            ));
        }
        let f = |what: &str| format!("tiers.levels.{name}.{what}");
        levels.push(TierLevel {
            name: name.clone(),
            min_tasks: l.min_tasks,
            min_completion_bp: rate_bp(&f("min_completion"), l.min_completion)?,
            max_credit_rate_bp: rate_bp(&f("max_credit_rate"), l.max_credit_rate)?,
            commission_bp: rate_bp(&f("commission"), l.commission)?,
        });
    }
    levels.sort_by_key(|l| l.min_tasks);
    match levels.first() {
        None => return Err(invalid("tiers.levels", "at least one tier is needed")),
        Some(first) if first.min_tasks != 0 => {
            return Err(invalid(
                "tiers.levels",
                "the lowest tier must have min_tasks 0",
            ));
        }
        Some(_) => {}
    }
    if levels.windows(2).any(|w| w[0].min_tasks == w[1].min_tasks) {
        return Err(invalid(
            "tiers.levels",
            "two tiers cannot share the same min_tasks",
        ));
    }
    Ok(levels)
}

pub fn compile_volume_discounts(c: &CommissionsDoc) -> Result<Vec<(u64, RateBp)>, EngineError> {
    let mut steps = Vec::with_capacity(c.volume_discounts.len());
    for (i, v) in c.volume_discounts.iter().enumerate() {
        steps.push((
            v.min_tasks,
            rate_bp(
                &format!("commissions.volume_discounts[{i}].commission"),
                v.commission,
            )?,
        ));
    }
    steps.sort_by_key(|s| s.0);
    if steps.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(invalid(
            "commissions.volume_discounts",
            "two volume discount steps cannot share the same min_tasks",
        ));
    }
    Ok(steps)
}

fn validate_commissions(c: &CommissionsDoc) -> Result<(), EngineError> {
    rate_bp("commissions.standard", c.standard)?;
    rate_bp("commissions.skill", c.skill)?;
    rate_bp("commissions.subscription", c.subscription)?;
    compile_volume_discounts(c)?;
    if c.freeze_seconds > 365 * 86_400 {
        return Err(invalid(
            "commissions.freeze_seconds",
            "freeze_seconds is at most one year",
        ));
    }
    Ok(())
}

fn validate_signup(s: &SignupDoc) -> Result<(), EngineError> {
    for (field, v) in [
        ("signup.buyer_free_credit_cents", s.buyer_free_credit_cents),
        (
            "signup.referral_buyer_credit_cents",
            s.referral_buyer_credit_cents,
        ),
    ] {
        if !(0..=MAX_PRICE_CENTS).contains(&v) {
            return Err(invalid(
                field,
                format!("{field} must be between 0 and {MAX_PRICE_CENTS}"),
            ));
        }
    }
    if !s.first_deposit_bonus_pct.is_finite() || !(0.0..=10.0).contains(&s.first_deposit_bonus_pct)
    {
        return Err(invalid(
            "signup.first_deposit_bonus_pct",
            "must be between 0 and 10",
        ));
    }
    rate_bp("signup.referral_seller_pct", s.referral_seller_pct)?;
    Ok(())
}

fn validate_qa(q: &QaDoc) -> Result<(), EngineError> {
    for (tier, rate) in &q.spot_check_rates {
        rate_bp(&format!("qa.spot_check_rates.{tier}"), *rate)?;
    }
    rate_bp("qa.shadow_execution_rate", q.shadow_execution_rate)?;
    rate_bp("qa.fairness_random", q.fairness_random)?;
    let pass = rate_bp(
        "qa.similarity_thresholds.pass",
        q.similarity_thresholds.pass,
    )?;
    let flag = rate_bp(
        "qa.similarity_thresholds.flag",
        q.similarity_thresholds.flag,
    )?;
    if flag > pass {
        return Err(invalid(
            "qa.similarity_thresholds",
            "flag must not be above pass",
        ));
    }
    if q.penalty.first_fail != "warning" {
        return Err(invalid(
            "qa.penalty.first_fail",
            "first_fail must be \"warning\"",
        ));
    }
    rate_bp(
        "qa.penalty.second_fail.deduct_pct",
        q.penalty.second_fail.deduct_pct,
    )?;
    Ok(())
}

fn validate_rate_limits(r: &RateLimitsDoc) -> Result<(), EngineError> {
    let positive = [
        (
            "rate_limits.registration.per_ip_per_min",
            r.registration.per_ip_per_min,
        ),
        (
            "rate_limits.registration.fingerprint_per_hour",
            r.registration.fingerprint_per_hour,
        ),
        ("rate_limits.work_next.new_per_min", r.work_next.new_per_min),
        (
            "rate_limits.work_next.established_per_min",
            r.work_next.established_per_min,
        ),
        ("rate_limits.task_submit.per_min", r.task_submit.per_min),
    ];
    for (field, v) in positive {
        if v == 0 {
            return Err(invalid(field, format!("{field} must be at least 1")));
        }
    }
    if r.withdrawal.min_cents < 0 || r.withdrawal.daily_max_cents < r.withdrawal.min_cents {
        return Err(invalid(
            "rate_limits.withdrawal",
            "withdrawal.min_cents must be >= 0 and <= daily_max_cents",
        ));
    }
    Ok(())
}

fn validate_dispatch(d: &DispatchDoc) -> Result<(), EngineError> {
    if d.min_timeout_seconds == 0 {
        return Err(invalid(
            "dispatch.min_timeout_seconds",
            "must be at least 1",
        ));
    }
    if !(d.min_timeout_seconds <= d.default_timeout_seconds
        && d.default_timeout_seconds <= d.max_timeout_seconds)
    {
        return Err(invalid(
            "dispatch",
            "need min_timeout_seconds <= default_timeout_seconds <= max_timeout_seconds",
        ));
    }
    if d.max_timeout_seconds > 7 * 86_400 {
        return Err(invalid("dispatch.max_timeout_seconds", "at most one week"));
    }
    if d.max_attempts == 0 || d.expiries_before_suspension == 0 {
        return Err(invalid(
            "dispatch",
            "max_attempts and expiries_before_suspension must be at least 1",
        ));
    }
    if d.pending_ttl_seconds == 0 {
        return Err(invalid(
            "dispatch.pending_ttl_seconds",
            "must be at least 1",
        ));
    }
    Ok(())
}

/// The longest any bounty timer may be (a year): keeps every due time far inside `i64`.
const MAX_BOUNTY_SECONDS: u64 = 365 * 86_400;

fn validate_bounty(b: &BountyDoc, tiers: Option<&[TierLevel]>) -> Result<(), EngineError> {
    rate_bp("bounty.fee_pct", b.fee_pct)?;
    for (field, v) in [
        ("bounty.dispute_window_seconds", b.dispute_window_seconds),
        ("bounty.auto_release_seconds", b.auto_release_seconds),
        ("bounty.max_deadline_seconds", b.max_deadline_seconds),
        ("bounty.vote_window_seconds", b.vote_window_seconds),
    ] {
        if !(1..=MAX_BOUNTY_SECONDS).contains(&v) {
            return Err(invalid(field, "must be between 1 second and a year"));
        }
    }
    if b.auto_release_warning_seconds >= b.auto_release_seconds {
        return Err(invalid(
            "bounty.auto_release_warning_seconds",
            "must be shorter than auto_release_seconds",
        ));
    }
    if !(1..=MAX_VALIDATORS).contains(&b.validators) || b.validators.is_multiple_of(2) {
        return Err(invalid(
            "bounty.validators",
            format!(
                "must be an odd number from 1 to {MAX_VALIDATORS}, so that a majority always decides"
            ),
        ));
    }
    if !(1..=MAX_PRICE_CENTS).contains(&b.min_reward_cents)
        || !(b.min_reward_cents..=MAX_PRICE_CENTS).contains(&b.max_reward_cents)
    {
        return Err(invalid(
            "bounty",
            format!("need 1 <= min_reward_cents <= max_reward_cents <= {MAX_PRICE_CENTS}"),
        ));
    }
    if b.validator_fee_cents < 0 {
        return Err(invalid("bounty.validator_fee_cents", "must be 0 or more"));
    }
    if !(1..=MAX_BOUNTY_SUBMISSIONS).contains(&b.max_submissions) {
        return Err(invalid(
            "bounty.max_submissions",
            format!("must be between 1 and {MAX_BOUNTY_SUBMISSIONS}"),
        ));
    }
    if let Some(levels) = tiers
        && !levels.iter().any(|t| t.name == b.validator_min_tier)
    {
        return Err(invalid(
            "bounty.validator_min_tier",
            format!("{:?} is not one of the tiers", b.validator_min_tier),
        ));
    }
    Ok(())
}

/// The most validators a consensus review may ask.
pub const MAX_VALIDATORS: u32 = 15;
/// The most submissions any bounty may take.
pub const MAX_BOUNTY_SUBMISSIONS: u32 = 1000;

fn validate_webhooks(w: &WebhooksDoc) -> Result<(), EngineError> {
    if !(1..=20).contains(&w.max_attempts) {
        return Err(invalid("webhooks.max_attempts", "must be between 1 and 20"));
    }
    if !(100..=3_600_000).contains(&w.initial_backoff_ms)
        || !(w.initial_backoff_ms..=86_400_000).contains(&w.max_backoff_ms)
    {
        return Err(invalid(
            "webhooks",
            "need 100 ms <= initial_backoff_ms <= 1 hour and initial_backoff_ms <= max_backoff_ms <= 1 day",
        ));
    }
    if !(100..=60_000).contains(&w.timeout_ms) {
        return Err(invalid(
            "webhooks.timeout_ms",
            "must be between 100 and 60000",
        ));
    }
    if !(1..=100).contains(&w.max_per_buyer) {
        return Err(invalid(
            "webhooks.max_per_buyer",
            "must be between 1 and 100",
        ));
    }
    Ok(())
}

fn validate_retention(r: &RetentionDoc) -> Result<(), EngineError> {
    if r.grace_seconds > 365 * 86_400 {
        return Err(invalid(
            "retention.grace_seconds",
            "grace_seconds is at most one year",
        ));
    }
    Ok(())
}

/// The answer for a config key that is not one of [`KEYS`]: it names the ones there are.
pub fn unknown_key(key: &str) -> EngineError {
    EngineError::NotFound(format!(
        "no config document named {key:?}; the documents are: {}",
        KEYS.join(", ")
    ))
}

fn parse_doc<T: serde::de::DeserializeOwned>(key: &str, doc: Value) -> Result<T, EngineError> {
    serde_json::from_value(doc).map_err(|e| EngineError::Validation {
        message: format!("config {key} is not valid: {e}"),
        details: serde_json::json!({ "key": key }),
    })
}

/// Checks one document and returns its normalised form (as it will be stored and served).
/// `version`, `updated_at` and `updated_by` in the body are bookkeeping, not content, and are dropped.
pub fn normalise_doc(key: &str, mut doc: Value) -> Result<Value, EngineError> {
    let Some(obj) = doc.as_object_mut() else {
        return Err(invalid(key, format!("config {key} must be a JSON object")));
    };
    for k in ["version", "updated_at", "updated_by"] {
        obj.remove(k);
    }
    fn back<T: Serialize>(v: &T) -> Value {
        serde_json::to_value(v).unwrap_or(Value::Null)
    }
    Ok(match key {
        "pricing" => {
            let (p, tiers) = parse_pricing(doc)?;
            let mut out = back(&p);
            if let Some(obj) = out.as_object_mut() {
                obj.insert(DEPOSIT_TIERS_FIELD.into(), serde_json::json!(tiers));
            }
            out
        }
        "tiers" => {
            let t: TiersDoc = parse_doc(key, doc)?;
            compile_tiers(&t)?;
            back(&t)
        }
        "commissions" => {
            let c: CommissionsDoc = parse_doc(key, doc)?;
            validate_commissions(&c)?;
            back(&c)
        }
        "signup" => {
            let s: SignupDoc = parse_doc(key, doc)?;
            validate_signup(&s)?;
            back(&s)
        }
        "qa" => {
            let q: QaDoc = parse_doc(key, doc)?;
            validate_qa(&q)?;
            back(&q)
        }
        "rate_limits" => {
            let r: RateLimitsDoc = parse_doc(key, doc)?;
            validate_rate_limits(&r)?;
            back(&r)
        }
        "dispatch" => {
            let d: DispatchDoc = parse_doc(key, doc)?;
            validate_dispatch(&d)?;
            back(&d)
        }
        "bounty" => {
            let b: BountyDoc = parse_doc(key, doc)?;
            // The tier names are checked against the tiers in force when the config is built.
            validate_bounty(&b, None)?;
            back(&b)
        }
        "webhooks" => {
            let w: WebhooksDoc = parse_doc(key, doc)?;
            validate_webhooks(&w)?;
            back(&w)
        }
        "retention" => {
            let r: RetentionDoc = parse_doc(key, doc)?;
            validate_retention(&r)?;
            back(&r)
        }
        other => return Err(unknown_key(other)),
    })
}

impl PlatformConfig {
    /// Builds the config from one normalised document per key (all of [`KEYS`] must be present).
    pub fn from_docs(docs: &BTreeMap<String, (Value, i64)>) -> Result<PlatformConfig, EngineError> {
        let get = |key: &str| {
            docs.get(key)
                .map(|(v, _)| v.clone())
                .ok_or_else(|| EngineError::internal(format!("config document {key} is missing")))
        };
        let (pricing, deposit_tiers_cents) = parse_pricing(get("pricing")?)?;
        let tiers: TiersDoc = parse_doc("tiers", get("tiers")?)?;
        let tier_levels = compile_tiers(&tiers)?;
        let commissions: CommissionsDoc = parse_doc("commissions", get("commissions")?)?;
        validate_commissions(&commissions)?;
        let signup: SignupDoc = parse_doc("signup", get("signup")?)?;
        validate_signup(&signup)?;
        let qa: QaDoc = parse_doc("qa", get("qa")?)?;
        validate_qa(&qa)?;
        let rate_limits: RateLimitsDoc = parse_doc("rate_limits", get("rate_limits")?)?;
        validate_rate_limits(&rate_limits)?;
        let dispatch: DispatchDoc = parse_doc("dispatch", get("dispatch")?)?;
        validate_dispatch(&dispatch)?;
        let bounty: BountyDoc = parse_doc("bounty", get("bounty")?)?;
        validate_bounty(&bounty, Some(&tier_levels))?;
        let webhooks: WebhooksDoc = parse_doc("webhooks", get("webhooks")?)?;
        validate_webhooks(&webhooks)?;
        let retention: RetentionDoc = parse_doc("retention", get("retention")?)?;
        validate_retention(&retention)?;
        Ok(PlatformConfig {
            skill_commission_bp: rate_bp("commissions.skill", commissions.skill)?,
            volume_discounts: compile_volume_discounts(&commissions)?,
            tier_levels,
            pricing,
            deposit_tiers_cents,
            tiers,
            commissions,
            signup,
            qa,
            rate_limits,
            dispatch,
            bounty,
            webhooks,
            retention,
            versions: docs.iter().map(|(k, (_, v))| (k.clone(), *v)).collect(),
        })
    }

    /// The shipped defaults (`config/platform.toml`), compiled in so that tests and a bare binary agree.
    pub fn defaults_toml() -> &'static str {
        include_str!("../../config/platform.toml")
    }

    /// Parses a platform TOML file into one normalised document per key.
    pub fn docs_from_toml(text: &str) -> Result<BTreeMap<String, Value>, EngineError> {
        let all: Value = toml::from_str(text)
            .map_err(|e| EngineError::validation(format!("platform config file: {e}")))?;
        let mut out = BTreeMap::new();
        for key in KEYS {
            let doc = all.get(*key).cloned().ok_or_else(|| {
                EngineError::validation(format!("platform config file lacks [{key}]"))
            })?;
            out.insert(key.to_string(), normalise_doc(key, doc)?);
        }
        Ok(out)
    }

    pub fn tier(&self, name: &str) -> Option<&TierLevel> {
        self.tier_levels.iter().find(|t| t.name == name)
    }

    pub fn lowest_tier(&self) -> &str {
        // compile_tiers guarantees at least one level.
        self.tier_levels
            .first()
            .map(|t| t.name.as_str())
            .unwrap_or("new")
    }

    /// The built-in defaults, compiled. Panics only if the shipped file is broken, which a unit
    /// test guards.
    pub fn builtin() -> PlatformConfig {
        let docs =
            Self::docs_from_toml(Self::defaults_toml()).expect("shipped platform.toml is valid");
        let docs = docs.into_iter().map(|(k, v)| (k, (v, 1))).collect();
        Self::from_docs(&docs).expect("shipped platform.toml compiles")
    }
}

/// The current config, readable from any thread without a lock; swapped whole by the ConfigActor.
#[derive(Debug, Clone)]
pub struct ConfigHandle(Arc<ArcSwap<PlatformConfig>>);

impl ConfigHandle {
    pub fn new(cfg: PlatformConfig) -> Self {
        ConfigHandle(Arc::new(ArcSwap::from_pointee(cfg)))
    }

    pub fn get(&self) -> Arc<PlatformConfig> {
        self.0.load_full()
    }

    pub fn set(&self, cfg: PlatformConfig) {
        self.0.store(Arc::new(cfg));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_defaults_are_valid() {
        let cfg = PlatformConfig::builtin();
        assert_eq!(cfg.pricing["chat"].base_cents, 2);
        let names: Vec<_> = cfg.tier_levels.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["new", "proven", "trusted", "elite"]);
        assert_eq!(cfg.tier("new").unwrap().commission_bp, 2500);
        assert_eq!(cfg.commissions.freeze_seconds, 86_400);
        assert_eq!(cfg.signup.buyer_free_credit_cents, 50);
    }

    #[test]
    fn bad_documents_are_refused() {
        let bad = [
            ("pricing", serde_json::json!({})),
            ("pricing", serde_json::json!({"chat": {"base_cents": 0}})),
            (
                "pricing",
                serde_json::json!({"chat": {"base_cents": 2, "multi_turn": [{"up_to_message": 3, "price_cents": 2}, {"up_to_message": 3, "price_cents": 5}]}}),
            ),
            ("pricing", serde_json::json!({"Chat!": {"base_cents": 2}})),
            (
                "pricing",
                serde_json::json!({"chat": {"base_cents": 2, "typo": 1}}),
            ),
            ("tiers", serde_json::json!({"levels": {}})),
            (
                "tiers",
                serde_json::json!({"levels": {"new": {"min_tasks": 5, "min_completion": 0, "max_credit_rate": 1, "commission": 0.2}}}),
            ),
            (
                "tiers",
                serde_json::json!({"levels": {"new": {"min_tasks": 0, "min_completion": 0, "max_credit_rate": 1, "commission": 1.5}}}),
            ),
            (
                "signup",
                serde_json::json!({"buyer_free_credit_cents": -1, "first_deposit_bonus_pct": 0.2, "referral_buyer_credit_cents": 0, "referral_seller_pct": 0.05}),
            ),
            ("nope", serde_json::json!({})),
            ("pricing", serde_json::json!([1, 2])),
            // Deposit amounts: listed, increasing, within Stripe's bounds.
            (
                "pricing",
                serde_json::json!({"chat": {"base_cents": 2}, "deposit_tiers_cents": []}),
            ),
            (
                "pricing",
                serde_json::json!({"chat": {"base_cents": 2}, "deposit_tiers_cents": [1000, 500]}),
            ),
            (
                "pricing",
                serde_json::json!({"chat": {"base_cents": 2}, "deposit_tiers_cents": [10]}),
            ),
            (
                "pricing",
                serde_json::json!({"chat": {"base_cents": 2}, "deposit_tiers_cents": "500"}),
            ),
        ];
        for (key, doc) in bad {
            assert!(normalise_doc(key, doc.clone()).is_err(), "{key}: {doc}");
        }
    }

    #[test]
    fn bookkeeping_fields_are_dropped() {
        let doc = serde_json::json!({"chat": {"base_cents": 3}, "version": 4, "updated_at": "x"});
        let out = normalise_doc("pricing", doc).unwrap();
        // A document without deposit amounts gets the default ones.
        assert_eq!(
            out,
            serde_json::json!({"chat": {"base_cents": 3}, "deposit_tiers_cents": [500, 1000, 2000]})
        );
    }

    #[test]
    fn rates_round_to_basis_points() {
        assert_eq!(rate_bp("x", 0.25).unwrap(), 2500);
        assert_eq!(rate_bp("x", 0.15).unwrap(), 1500);
        assert_eq!(rate_bp("x", 0.0001).unwrap(), 1);
        assert!(rate_bp("x", f64::NAN).is_err());
        assert!(rate_bp("x", -0.1).is_err());
    }
}
