//! Rate limits from `config:rate_limits`, enforced with `governor` (GCRA, keyed). The limiters are
//! rebuilt when an admin changes the document, so a new limit is in force for the next request
//! (counters start afresh at that moment).
//!
//! * `registration.per_ip_per_min`: buyer registrations and worker connects per client IP.
//! * `registration.fingerprint_per_hour`: the same per client fingerprint: the
//!   `Clawjobs-Fingerprint` header a client sends (any opaque string of at most 256 bytes), else
//!   the address with the user agent. Only its SHA-256 is kept, so a limiter holds no raw header.
//! * `work_next.new_per_min` / `established_per_min`: `work/next` calls per worker, by whether the
//!   worker is still in the lowest tier.
//! * `task_submit.per_min`: tasks posted per buyer.
//!
//! `withdrawal` limits belong to withdrawals and are enforced there. Limits are per node: with
//! several nodes behind a balancer, each counts what reaches it.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use clawjobs_actors::config::PlatformConfig;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

struct Limiters {
    version: i64,
    registration: DefaultKeyedRateLimiter<IpAddr>,
    registration_fingerprint: DefaultKeyedRateLimiter<[u8; 32]>,
    work_next_new: DefaultKeyedRateLimiter<String>,
    work_next_established: DefaultKeyedRateLimiter<String>,
    task_submit: DefaultKeyedRateLimiter<String>,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl Limiters {
    fn new(cfg: &PlatformConfig) -> Limiters {
        let r = &cfg.rate_limits;
        Limiters {
            version: version(cfg),
            registration: RateLimiter::keyed(per_minute(r.registration.per_ip_per_min)),
            registration_fingerprint: RateLimiter::keyed(per_hour(
                r.registration.fingerprint_per_hour,
            )),
            work_next_new: RateLimiter::keyed(per_minute(r.work_next.new_per_min)),
            work_next_established: RateLimiter::keyed(per_minute(r.work_next.established_per_min)),
            task_submit: RateLimiter::keyed(per_minute(r.task_submit.per_min)),
        }
    }
}

fn per_hour(n: u32) -> Quota {
    Quota::per_hour(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

/// The header a client may send to name itself for `registration.fingerprint_per_hour`.
pub const FINGERPRINT_HEADER: &str = "clawjobs-fingerprint";
const MAX_FINGERPRINT_BYTES: usize = 256;

/// The key a registration is counted under per fingerprint: the hash of the client's
/// `Clawjobs-Fingerprint` (when it sends a usable one), else of its address and user agent.
pub fn fingerprint(req: &actix_web::HttpRequest) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= MAX_FINGERPRINT_BYTES)
    };
    let mut h = Sha256::new();
    match header(FINGERPRINT_HEADER) {
        Some(fp) => {
            h.update(b"fp:");
            h.update(fp.as_bytes());
        }
        None => {
            h.update(b"addr:");
            if let Some(a) = req.peer_addr() {
                h.update(a.ip().to_string().as_bytes());
            }
            h.update(b"|ua:");
            h.update(header("user-agent").unwrap_or("").as_bytes());
        }
    }
    h.finalize().into()
}

fn version(cfg: &PlatformConfig) -> i64 {
    cfg.versions.get("rate_limits").copied().unwrap_or(0)
}

pub struct RateLimits {
    current: ArcSwap<Limiters>,
    clock: DefaultClock,
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
    clock: &DefaultClock,
    what: &str,
) -> Result<(), ApiError> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(clock.now());
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut e = ApiError::new(
            crate::error::ErrorCode::RateLimited,
            format!("too many {what}; try again in {seconds} s"),
        );
        e.retry_after_seconds = Some(seconds.max(1));
        e.details = serde_json::json!({ "retry_after_seconds": seconds.max(1) });
        e
    })
}

impl RateLimits {
    pub fn new(cfg: &PlatformConfig) -> RateLimits {
        RateLimits {
            current: ArcSwap::from_pointee(Limiters::new(cfg)),
            clock: DefaultClock::default(),
        }
    }

    fn limiters(&self, cfg: &PlatformConfig) -> Arc<Limiters> {
        let cur = self.current.load_full();
        if cur.version == version(cfg) {
            return cur;
        }
        let fresh = Arc::new(Limiters::new(cfg));
        self.current.store(fresh.clone());
        fresh
    }

    /// A buyer registration or a worker connect from `req`: counted per address and per
    /// fingerprint, refused (429) when either is over its limit.
    pub fn registration(
        &self,
        cfg: &PlatformConfig,
        req: &actix_web::HttpRequest,
    ) -> Result<(), ApiError> {
        let l = self.limiters(cfg);
        if let Some(ip) = req.peer_addr().map(|a| a.ip()) {
            check(
                &l.registration,
                &ip,
                &self.clock,
                "registrations from this address",
            )?;
        }
        check(
            &l.registration_fingerprint,
            &fingerprint(req),
            &self.clock,
            "registrations from this client",
        )
    }

    pub fn work_next(
        &self,
        cfg: &PlatformConfig,
        worker_id: &str,
        tier: &str,
    ) -> Result<(), ApiError> {
        let l = self.limiters(cfg);
        let limiter = if tier == cfg.lowest_tier() {
            &l.work_next_new
        } else {
            &l.work_next_established
        };
        check(
            limiter,
            &worker_id.to_string(),
            &self.clock,
            "work/next calls",
        )
    }

    pub fn task_submit(&self, cfg: &PlatformConfig, buyer_id: &str) -> Result<(), ApiError> {
        check(
            &self.limiters(cfg).task_submit,
            &buyer_id.to_string(),
            &self.clock,
            "tasks posted",
        )
    }

    /// Forgets keys whose limits have fully replenished, so memory stays bounded.
    pub fn sweep(&self) {
        let l = self.current.load();
        l.registration.retain_recent();
        l.registration_fingerprint.retain_recent();
        l.work_next_new.retain_recent();
        l.work_next_established.retain_recent();
        l.task_submit.retain_recent();
    }

    /// How often [`RateLimits::sweep`] should run.
    pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
}
