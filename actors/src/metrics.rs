//! Counters for `/metrics`, rendered in the Prometheus text format by hand (no exporter needed).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $help:literal),* $(,)?) => {
        /// Monotonic counters shared by the engine and the web layer.
        #[derive(Debug, Default)]
        pub struct Metrics { $(pub $name: AtomicU64,)* }

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
    workers_suspended_total: "Worker suspensions for repeated expiries.",
    qa_copies_total: "QA tasks created (shadows, spot-checks, tie-breakers, benchmarks).",
    qa_decided_total: "QA comparisons decided.",
    qa_fails_total: "QA comparisons that blamed a worker.",
    workers_banned_total: "Workers banned by the QA penalty ladder.",
    actor_restarts_total: "Actors (FeedHub, Dispatcher, QaComparator) restarted after a panic.",
}

/// Point-in-time values that are not counters.
#[derive(Debug, Default, Clone, Copy)]
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
        let mut out = String::with_capacity(2048);
        self.write_counters(&mut out);
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
