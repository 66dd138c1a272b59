//! What a command caused, as data, and the one [`Publisher`] that tells the actors. To see what a
//! post, a submit, a credit or a QA decision causes, read its function here: the buyer's stream,
//! the public feed, the Dispatcher's queue, the comparator, the ban list.
//!
//! The order of a list is the order of delivery, and it matters: a buyer hears `pending` before
//! the Dispatcher can hand the task out, and `assigned` before the worker hears of it.
//! (Balances need no effect: the store's commit observer keeps the BalanceActors current.)

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::clock::{now_ms, rfc3339};
use crate::dispatcher::{Dispatcher, TaskFinal, TaskPending};
use crate::feed::{Audience, FeedHub, Publish};
use crate::metrics::Metrics;
use crate::qa::comparator::{BanList, Judge, QaComparator};
use crate::slot::Slot;
use crate::store::{
    BalanceObserver, BalanceSnapshot, BountyEvent, Credited, LiveTask, NotificationRecord,
    QaApplied, QaCopy, Settlement, TaskPosted,
};

#[derive(Debug, Clone)]
pub enum Effect {
    /// A `task_status` event on the buyer's stream (QA tasks have no buyer: the hub drops them).
    Status {
        buyer_id: String,
        task_id: String,
        status: &'static str,
        extra: Value,
    },
    /// A `task_completed` event on the public feed: no input, output or identity.
    Completed {
        task_type: String,
        price_cents: i64,
        earned_cents: i64,
        worker_id: String,
    },
    /// A task the Dispatcher offers (to anyone but its barred workers).
    Pending(TaskPending),
    /// A task is final: its timer goes, buyers waiting on it wake.
    Final { task_id: String },
    /// A QA group the comparator looks at.
    Judge { group_id: String },
    /// Workers the penalty ladder banned: every worker call refuses them from now on.
    Banned { worker_ids: Vec<String> },
    /// A stored notification: a `notification` event on its user's stream (a worker's
    /// WebSocket forwards it as a frame).
    Notified(NotificationRecord),
    /// A `bounty` event on that bounty's stream.
    Bounty(BountyEvent),
}

impl Effect {
    pub fn status(buyer_id: &str, task_id: &str, status: &'static str, extra: Value) -> Effect {
        Effect::Status {
            buyer_id: buyer_id.to_string(),
            task_id: task_id.to_string(),
            status,
            extra,
        }
    }

    fn pending(copy: QaCopy) -> Effect {
        Effect::Pending(TaskPending::from(copy))
    }
}

/// A buyer posted: its stream hears `pending`, then the task (and its shadow twin) is offered.
pub fn posted(buyer_id: &str, task_type: &str, posted: &TaskPosted) -> Vec<Effect> {
    let mut out = vec![
        Effect::status(
            buyer_id,
            &posted.task_id,
            "pending",
            json!({ "type": task_type, "price_cents": posted.price_cents }),
        ),
        Effect::Pending(TaskPending::from(LiveTask {
            seq: posted.seq,
            task_id: posted.task_id.clone(),
            task_type: task_type.to_string(),
            price_cents: posted.price_cents,
            created_at_ms: posted.created_at_ms,
            buyer_id: buyer_id.to_string(),
            assigned: None,
            qa_key: posted.shadow.as_ref().map(|_| posted.task_id.clone()),
        })),
    ];
    out.extend(posted.shadow.clone().map(Effect::pending));
    out
}

/// A worker's result was accepted: the buyer gets it, the public feed hears of the completion
/// (QA copies too: the feed must not tell them apart), the task is final, a spot-check copy is
/// offered, and the comparator looks at the task's QA group.
pub fn settled(worker_id: &str, output: &Value, s: &Settlement) -> Vec<Effect> {
    // A sensitive task's output stays out of every event (a shared store keeps its events):
    // the buyer reads it with `GET /api/task/{id}`.
    let news = if s.sensitive {
        json!({ "sensitive": true })
    } else {
        json!({ "output": output })
    };
    let mut out = vec![
        Effect::status(&s.buyer_id, &s.task_id, "completed", news),
        Effect::Completed {
            task_type: s.task_type.clone(),
            price_cents: s.earned_cents + s.commission_cents,
            earned_cents: s.earned_cents,
            worker_id: worker_id.to_string(),
        },
        Effect::Final {
            task_id: s.task_id.clone(),
        },
    ];
    out.extend(s.spot_check.clone().map(Effect::pending));
    out.extend(
        s.qa_group
            .clone()
            .map(|group_id| Effect::Judge { group_id }),
    );
    out
}

/// A buyer's credit went through.
pub fn credited(buyer_id: &str, c: &Credited) -> Vec<Effect> {
    vec![
        Effect::status(
            buyer_id,
            &c.task_id,
            "credited",
            json!({ "credited_cents": c.credited_cents }),
        ),
        Effect::Final {
            task_id: c.task_id.clone(),
        },
    ]
}

/// A QA decision was applied: the tie-breaker copy is offered, a buyer credited for a failed
/// original hears it, banned workers are refused from now on.
pub fn qa_applied(a: &QaApplied) -> Vec<Effect> {
    let mut out: Vec<Effect> = a
        .tiebreak
        .clone()
        .map(Effect::pending)
        .into_iter()
        .collect();
    if let Some((buyer_id, task_id, cents)) = &a.auto_credit {
        out.push(Effect::status(
            buyer_id,
            task_id,
            "credited",
            json!({ "credited_cents": cents, "reason": "quality_check" }),
        ));
        out.push(Effect::Final {
            task_id: task_id.clone(),
        });
    }
    if !a.banned.is_empty() {
        out.push(Effect::Banned {
            worker_ids: a.banned.clone(),
        });
    }
    out
}

/// Hands effects to the actors they concern, in order.
#[derive(Clone)]
pub struct Publisher {
    feed: Slot<FeedHub>,
    dispatcher: Slot<Dispatcher>,
    comparator: Slot<QaComparator>,
    banned: BanList,
    metrics: Arc<Metrics>,
}

impl Publisher {
    pub(crate) fn new(
        feed: Slot<FeedHub>,
        dispatcher: Slot<Dispatcher>,
        comparator: Slot<QaComparator>,
        banned: BanList,
        metrics: Arc<Metrics>,
    ) -> Publisher {
        Publisher {
            feed,
            dispatcher,
            comparator,
            banned,
            metrics,
        }
    }

    pub fn publish(&self, effects: impl IntoIterator<Item = Effect>) {
        for effect in effects {
            self.send(effect);
        }
    }

    fn send(&self, effect: Effect) {
        match effect {
            Effect::Status {
                buyer_id,
                task_id,
                status,
                extra,
            } => {
                let mut data =
                    json!({ "task_id": task_id, "status": status, "at": rfc3339(now_ms()) });
                if let (Some(d), Value::Object(e)) = (data.as_object_mut(), extra) {
                    d.extend(e);
                }
                self.feed.do_send(Publish {
                    audience: Audience::User(buyer_id),
                    event: "task_status",
                    data,
                });
            }
            Effect::Completed {
                task_type,
                price_cents,
                earned_cents,
                worker_id,
            } => self.feed.do_send(Publish {
                audience: Audience::Public,
                event: "task_completed",
                data: json!({
                    "task_type": task_type,
                    "price_cents": price_cents,
                    "earned_cents": earned_cents,
                    "worker": feed_label(&worker_id),
                    "at": rfc3339(now_ms()),
                }),
            }),
            Effect::Pending(task) => {
                if task.task.buyer_id == crate::store::QA_BUYER {
                    Metrics::inc(&self.metrics.qa_copies_total);
                }
                self.dispatcher.do_send(task);
            }
            Effect::Final { task_id } => self.dispatcher.do_send(TaskFinal { task_id }),
            Effect::Judge { group_id } => self.comparator.do_send(Judge(group_id)),
            Effect::Notified(n) => self.feed.do_send(Publish {
                audience: Audience::User(n.user_id.clone()),
                event: "notification",
                data: n.wire(),
            }),
            Effect::Bounty(e) => self.feed.do_send(Publish {
                audience: Audience::Bounty(e.bounty_id),
                event: "bounty",
                data: e.data,
            }),
            Effect::Banned { worker_ids } => {
                if let Ok(mut set) = self.banned.write() {
                    for w in worker_ids {
                        Metrics::inc(&self.metrics.workers_banned_total);
                        set.insert(w);
                    }
                }
            }
        }
    }
}

/// What the store tells after each commit: balances go to the BalanceActors, notifications and
/// bounty events to the [`Publisher`] (through a channel: the store is opened before the actors
/// exist), in commit order.
pub struct CommitObserver {
    pub balances: Box<dyn BalanceObserver>,
    pub told: mpsc::UnboundedSender<Effect>,
}

impl BalanceObserver for CommitObserver {
    fn watches(&self, user_id: &str) -> bool {
        self.balances.watches(user_id)
    }

    fn observe(&self, snapshots: &[BalanceSnapshot]) {
        self.balances.observe(snapshots);
    }

    fn notified(&self, notifications: &[NotificationRecord]) {
        for n in notifications {
            let _ = self.told.send(Effect::Notified(n.clone()));
        }
    }

    fn bounty_events(&self, events: &[BountyEvent]) {
        for e in events {
            let _ = self.told.send(Effect::Bounty(e.clone()));
        }
    }
}

/// Publishes what commits told, in commit order, for as long as the store runs.
pub fn deliver_told(mut told: mpsc::UnboundedReceiver<Effect>, publisher: Publisher) {
    actix::spawn(async move {
        while let Some(effect) = told.recv().await {
            publisher.publish([effect]);
        }
    });
}

/// A short, stable, anonymous label for a worker in the public feed.
pub fn feed_label(worker_id: &str) -> String {
    let digest = crate::domain::token_hash(&format!("feed-label:{worker_id}"));
    format!("lobster-{}", &digest[..6])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::WorkerStats;

    fn settlement(spot: bool, group: bool) -> Settlement {
        Settlement {
            task_id: "t".into(),
            task_type: "code".into(),
            buyer_id: "b".into(),
            earned_cents: 3,
            commission_cents: 2,
            stats: WorkerStats::default(),
            tier: "new".into(),
            repeated: false,
            qa_group: group.then(|| "g".to_string()),
            spot_check: spot.then(|| QaCopy {
                task: LiveTask {
                    seq: 2,
                    task_id: "copy".into(),
                    task_type: "code".into(),
                    price_cents: 5,
                    created_at_ms: 0,
                    buyer_id: crate::store::QA_BUYER.into(),
                    assigned: None,
                    qa_key: Some("t".into()),
                },
                barred: vec!["w".into()],
            }),
            sensitive: false,
        }
    }

    #[test]
    fn a_settlement_tells_the_buyer_first_and_the_comparator_last() {
        let e = settled("w", &json!({"text": "x"}), &settlement(true, false));
        let kinds: Vec<&str> = e
            .iter()
            .map(|e| match e {
                Effect::Status { status, .. } => status,
                Effect::Completed { .. } => "feed",
                Effect::Final { .. } => "final",
                Effect::Pending(_) => "copy",
                Effect::Judge { .. } => "judge",
                Effect::Banned { .. } => "ban",
                Effect::Notified(_) => "notification",
                Effect::Bounty(_) => "bounty",
            })
            .collect();
        assert_eq!(kinds, ["completed", "feed", "final", "copy"]);
        let judged = settled("w", &json!({}), &settlement(false, true));
        assert!(matches!(judged.last(), Some(Effect::Judge { group_id }) if group_id == "g"));
    }

    #[test]
    fn a_sensitive_task_s_output_is_in_no_event() {
        let sensitive = Settlement {
            sensitive: true,
            ..settlement(false, false)
        };
        let e = settled("w", &json!({"text": "the secret"}), &sensitive);
        let shown = format!("{e:?}");
        assert!(!shown.contains("the secret"), "{shown}");
        assert!(shown.contains("sensitive"), "{shown}");
    }

    #[test]
    fn the_public_feed_label_is_stable_and_anonymous() {
        assert_eq!(feed_label("w_1"), feed_label("w_1"));
        assert_ne!(feed_label("w_1"), feed_label("w_2"));
        assert!(!feed_label("w_1").contains("w_1"));
    }
}
