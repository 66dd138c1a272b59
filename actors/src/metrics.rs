//! Counters for `/metrics`, rendered in the Prometheus text format by hand (no exporter needed).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $help:literal),* $(,)?) => {
        /// Monotonic counters shared by the engine and the web layer.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(pub $name: AtomicU64,)*
            /// How long answered requests took (long-polls, streams and sockets left out).
            pub http_latency: Histogram,
        }

        impl Metrics {
            fn write_counters(&self, out: &mut String) {
                $(
                    let _ = writeln!(out, "# HELP clawjobs_{} {}", stringify!($name), $help);
                    let _ = writeln!(out, "# TYPE clawjobs_{} counter", stringify!($name));
                    let _ = writeln!(out, "clawjobs_{} {}", stringify!($name), self.$name.load(Ordering::Relaxed));
                )*
            }
        }
    };
}

counters! {
    http_requests_total: "HTTP requests answered.",
    http_errors_total: "HTTP requests answered with a 4xx or 5xx status.",
    tasks_posted_total: "Tasks posted by buyers.",
    tasks_claimed_total: "Claims committed.",
    tasks_completed_total: "Tasks completed and settled.",
    tasks_expired_total: "Claims whose deadline passed.",
    tasks_failed_total: "Tasks failed and refunded.",
    tasks_credited_total: "Completed tasks credited back to buyers.",
    lots_released_total: "Frozen earnings released to workers.",
    tasks_purged_total: "Ended tasks whose input and output were purged (retention).",
    workers_suspended_total: "Worker suspensions for repeated expiries.",
    qa_copies_total: "QA tasks created (shadows, spot-checks, tie-breakers, benchmarks).",
    qa_decided_total: "QA comparisons decided.",
    qa_fails_total: "QA comparisons that blamed a worker.",
    workers_banned_total: "Workers banned by the QA penalty ladder.",
    actor_restarts_total: "Actors (FeedHub, Dispatcher, QaComparator) restarted after a panic.",
    webhook_attempts_total: "Webhook POSTs attempted.",
    webhook_delivered_total: "Webhook deliveries an endpoint answered with 2xx.",
    webhook_dead_total: "Webhook deliveries dead-lettered after their last attempt.",
}

/// Point-in-time values that are not counters.
#[derive(Debug, Default, Clone, Copy, actix::MessageResponse)]
pub struct Gauges {
    pub pending_tasks: u64,
    pub assigned_tasks: u64,
    pub parked_claimers: u64,
    pub task_watchers: u64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, g: Gauges) -> String {
        let mut out = String::with_capacity(4096);
        self.write_counters(&mut out);
        self.http_latency.write(
            &mut out,
            "http_request_duration_seconds",
            "Time to answer a request (long-polls, streams and sockets left out).",
        );
        for (name, help, v) in [
            (
                "pending_tasks",
                "Tasks waiting for a worker.",
                g.pending_tasks,
            ),
            (
                "assigned_tasks",
                "Tasks held by a worker.",
                g.assigned_tasks,
            ),
            (
                "parked_claimers",
                "Long-poll claims waiting for a task.",
                g.parked_claimers,
            ),
            (
                "task_watchers",
                "Buyers long-polling a task until it is final.",
                g.task_watchers,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP clawjobs_{name} {help}\n# TYPE clawjobs_{name} gauge\nclawjobs_{name} {v}"
            );
        }
        out
    }
}

/// Upper bounds of the latency buckets, in µs (the last bucket holds everything slower).
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 5_000_000, 10_000_000,
];

/// A latency histogram with fixed buckets: one relaxed increment per observation.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: std::time::Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BUCKETS_US.partition_point(|&b| b < us);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Every bucket's count so far.
    pub fn snapshot(&self) -> [u64; LATENCY_BUCKETS_US.len() + 1] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let counts = self.snapshot();
        let _ = writeln!(
            out,
            "# HELP clawjobs_{name} {help}\n# TYPE clawjobs_{name} histogram"
        );
        let mut cumulative = 0;
        for (i, c) in counts.iter().enumerate() {
            cumulative += c;
            let le = LATENCY_BUCKETS_US
                .get(i)
                .map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
            let _ = writeln!(out, "clawjobs_{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "clawjobs_{name}_sum {sum}\nclawjobs_{name}_count {cumulative}"
        );
    }
}

/// The `q` quantile (0..1) of the observations between two snapshots, as the upper bound of the
/// bucket it falls in, in µs; None when nothing was observed.
pub fn quantile_us(before: &[u64], after: &[u64], q: f64) -> Option<u64> {
    let deltas: Vec<u64> = after
        .iter()
        .zip(before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let total: u64 = deltas.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, d) in deltas.iter().enumerate() {
        seen += d;
        if seen >= rank {
            return Some(
                LATENCY_BUCKETS_US
                    .get(i)
                    .copied()
                    .unwrap_or(LATENCY_BUCKETS_US[LATENCY_BUCKETS_US.len() - 1] * 2),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_p99_is_the_bucket_the_99th_percentile_falls_in() {
        let h = Histogram::default();
        let before = h.snapshot();
        for _ in 0..98 {
            h.observe(Duration::from_micros(150));
        }
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(30));
        let after = h.snapshot();
        assert_eq!(quantile_us(&before, &after, 0.5), Some(200));
        assert_eq!(quantile_us(&before, &after, 0.99), Some(5_000));
        assert_eq!(quantile_us(&before, &after, 1.0), Some(50_000));
        assert_eq!(quantile_us(&after, &after, 0.99), None);
        let text = Metrics::default().render(Gauges::default());
        assert!(text.contains("clawjobs_http_request_duration_seconds_bucket{le=\"+Inf\"} 0"));
    }
}
