//! Whether a worker may claim a task now. The engine asks before a claim is queued (a fast
//! answer), and the store asks again inside the claim's transaction (the answer that counts).

use crate::error::EngineError;
use crate::store::Limits;

/// What the rule needs to know about the worker.
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    pub banned: bool,
    pub suspended_until_ms: Option<i64>,
    /// Tasks it holds now.
    pub held: u32,
    /// Claims it made on the UTC day of `now_ms`.
    pub claims_today: u32,
    pub limits: &'a Limits,
}

/// Why a worker may not claim now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Banned by the QA penalty ladder.
    Banned,
    /// Suspended for letting tasks expire, until then.
    Suspended { until_ms: i64 },
    /// Already holding as many tasks as `limits.concurrent` allows.
    Busy { held: u32 },
    /// `limits.daily_max_tasks` claims made today.
    DailyCap,
}

impl Refusal {
    /// The answer the worker gets: an error, or none for the daily cap (then there is simply
    /// nothing for it today).
    pub fn into_error(self) -> Option<EngineError> {
        match self {
            Refusal::Banned => Some(EngineError::Banned),
            Refusal::Suspended { until_ms } => Some(EngineError::Suspended {
                until: crate::clock::rfc3339(until_ms),
            }),
            Refusal::Busy { held } => Some(EngineError::Conflict(format!(
                "you hold {held} task(s), the most your limits.concurrent allows: submit first"
            ))),
            Refusal::DailyCap => None,
        }
    }
}

pub fn refusal(w: &Claimant<'_>, now_ms: i64) -> Option<Refusal> {
    if w.banned {
        return Some(Refusal::Banned);
    }
    if let Some(until_ms) = w.suspended_until_ms.filter(|u| *u > now_ms) {
        return Some(Refusal::Suspended { until_ms });
    }
    if w.held >= w.limits.concurrent.max(1) {
        return Some(Refusal::Busy { held: w.held });
    }
    if w.claims_today >= w.limits.daily_max_tasks {
        return Some(Refusal::DailyCap);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimant(limits: &Limits) -> Claimant<'_> {
        Claimant {
            banned: false,
            suspended_until_ms: None,
            held: 0,
            claims_today: 0,
            limits,
        }
    }

    #[test]
    fn refusals_in_order_of_gravity() {
        let limits = Limits {
            daily_max_tasks: 3,
            concurrent: 2,
        };
        assert_eq!(refusal(&claimant(&limits), 100), None);
        let all = Claimant {
            banned: true,
            suspended_until_ms: Some(200),
            held: 2,
            claims_today: 3,
            limits: &limits,
        };
        assert_eq!(refusal(&all, 100), Some(Refusal::Banned));
        let all = Claimant {
            banned: false,
            ..all
        };
        assert_eq!(
            refusal(&all, 100),
            Some(Refusal::Suspended { until_ms: 200 })
        );
        // A suspension that has ended refuses nothing.
        assert_eq!(refusal(&all, 200), Some(Refusal::Busy { held: 2 }));
        let all = Claimant { held: 1, ..all };
        assert_eq!(refusal(&all, 200), Some(Refusal::DailyCap));
    }

    #[test]
    fn the_daily_cap_is_no_error_the_others_are() {
        assert!(Refusal::DailyCap.into_error().is_none());
        assert!(matches!(
            Refusal::Banned.into_error(),
            Some(EngineError::Banned)
        ));
        assert!(matches!(
            Refusal::Suspended { until_ms: 0 }.into_error(),
            Some(EngineError::Suspended { .. })
        ));
        assert!(matches!(
            Refusal::Busy { held: 2 }.into_error(),
            Some(EngineError::Conflict(_))
        ));
    }
}
