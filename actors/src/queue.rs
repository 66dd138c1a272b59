//! The Dispatcher's index of pending tasks: by type, then by price, then in arrival order. A
//! worker's match is the oldest task of a type it accepts at a price it accepts, found by looking
//! at the head of each (type, price) bucket, so a worker with a high `min_price` does not walk
//! past every cheaper task.

use std::collections::{BTreeMap, HashMap, HashSet};

/// QA key → the workers who already had a task with that key (the same input).
pub type Barred = HashMap<String, HashSet<String>>;

/// A pending task as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub seq: i64,
    pub task_id: String,
    pub task_type: String,
    pub price_cents: i64,
    pub buyer_id: String,
    /// Tasks sharing a QA key carry the same input: a worker gets at most one of them.
    pub qa_key: Option<String>,
}

/// What a claimer will take.
#[derive(Clone, Copy)]
pub struct Want<'a> {
    pub worker_id: &'a str,
    pub accept: &'a [String],
    pub reject: &'a [String],
    pub min_price_cents: i64,
    pub exclude: &'a [String],
    pub barred: &'a Barred,
}

impl Want<'_> {
    fn takes_type(&self, task_type: &str) -> bool {
        (self.accept.is_empty() || self.accept.iter().any(|t| t == task_type))
            && !self.reject.iter().any(|t| t == task_type)
    }

    /// Whether this claimer takes `p`.
    pub fn takes(&self, p: &Pending) -> bool {
        self.takes_type(&p.task_type) && p.price_cents >= self.min_price_cents && self.may_have(p)
    }

    /// Not given back by this claimer just now, and no input it already had.
    fn may_have(&self, p: &Pending) -> bool {
        !self.exclude.contains(&p.task_id)
            && p.qa_key.as_ref().is_none_or(|k| {
                !self
                    .barred
                    .get(k)
                    .is_some_and(|workers| workers.contains(self.worker_id))
            })
    }
}

#[derive(Default)]
pub struct PendingIndex {
    by_type: HashMap<String, BTreeMap<i64, BTreeMap<i64, Pending>>>,
    /// task id → (type, price, seq)
    ids: HashMap<String, (String, i64, i64)>,
}

impl PendingIndex {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Every pending task's id.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.ids.keys().map(String::as_str)
    }

    /// How many tasks of each type wait.
    pub fn counts_by_type(&self) -> BTreeMap<String, usize> {
        self.by_type
            .iter()
            .map(|(t, prices)| (t.clone(), prices.values().map(BTreeMap::len).sum()))
            .collect()
    }

    pub fn insert(&mut self, p: Pending) {
        if self.ids.contains_key(&p.task_id) {
            return;
        }
        self.ids.insert(
            p.task_id.clone(),
            (p.task_type.clone(), p.price_cents, p.seq),
        );
        self.by_type
            .entry(p.task_type.clone())
            .or_default()
            .entry(p.price_cents)
            .or_default()
            .insert(p.seq, p);
    }

    pub fn remove(&mut self, task_id: &str) -> Option<Pending> {
        let (task_type, price, seq) = self.ids.remove(task_id)?;
        let prices = self.by_type.get_mut(&task_type)?;
        let bucket = prices.get_mut(&price)?;
        let found = bucket.remove(&seq);
        if bucket.is_empty() {
            prices.remove(&price);
        }
        if prices.is_empty() {
            self.by_type.remove(&task_type);
        }
        found
    }

    /// Takes out the oldest task `want` accepts.
    pub fn take_match(&mut self, want: &Want<'_>) -> Option<Pending> {
        let mut best: Option<(i64, &str)> = None;
        for (task_type, prices) in &self.by_type {
            if !want.takes_type(task_type) {
                continue;
            }
            for (_, bucket) in prices.range(want.min_price_cents..) {
                // Excluded tasks are few (recent releases, QA copies of inputs this worker had).
                if let Some(p) = bucket.values().find(|p| want.may_have(p))
                    && best.is_none_or(|(seq, _)| p.seq < seq)
                {
                    best = Some((p.seq, &p.task_id));
                }
            }
        }
        let task_id = best?.1.to_string();
        self.remove(&task_id)
    }

    /// Takes out the oldest task priced at or above `from_price` that `want` accepts: what a
    /// worker whose tier comes first for high-value work is offered before older, cheaper tasks.
    pub fn take_valued(&mut self, want: &Want<'_>, from_price: i64) -> Option<Pending> {
        let valued = Want {
            min_price_cents: from_price.max(want.min_price_cents),
            ..*want
        };
        self.take_match(&valued)
    }

    /// The QA keys of the pending tasks.
    pub fn qa_keys(&self) -> impl Iterator<Item = &str> {
        self.by_type
            .values()
            .flat_map(|prices| prices.values())
            .flat_map(|bucket| bucket.values())
            .filter_map(|p| p.qa_key.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn task(seq: i64, task_type: &str, price: i64) -> Pending {
        Pending {
            seq,
            task_id: format!("t{seq}"),
            task_type: task_type.into(),
            price_cents: price,
            buyer_id: "b".into(),
            qa_key: None,
        }
    }

    static NOBODY_BARRED: std::sync::LazyLock<Barred> = std::sync::LazyLock::new(Barred::new);

    fn want<'a>(accept: &'a [String], min: i64, exclude: &'a [String]) -> Want<'a> {
        Want {
            worker_id: "w",
            accept,
            reject: &[],
            min_price_cents: min,
            exclude,
            barred: &NOBODY_BARRED,
        }
    }

    #[test]
    fn a_worker_never_gets_a_second_task_with_the_same_qa_key() {
        let mut q = PendingIndex::default();
        let mut original = task(1, "chat", 2);
        original.qa_key = Some("k".into());
        let mut copy = task(2, "chat", 2);
        copy.qa_key = Some("k".into());
        q.insert(copy);
        q.insert(task(3, "chat", 2));
        let barred: Barred = [("k".to_string(), ["w".to_string()].into())].into();
        let w = Want {
            barred: &barred,
            ..want(&[], 0, &[])
        };
        assert!(!w.takes(&original));
        assert_eq!(q.take_match(&w).map(|p| p.seq), Some(3));
        assert_eq!(q.take_match(&w), None);
        let other = Want {
            worker_id: "v",
            ..w
        };
        assert_eq!(q.take_match(&other).map(|p| p.seq), Some(2));
        assert_eq!(q.qa_keys().count(), 0);
    }

    #[test]
    fn oldest_acceptable_task_first() {
        let mut q = PendingIndex::default();
        for (seq, t, p) in [
            (1, "chat", 2),
            (2, "code", 5),
            (3, "chat", 10),
            (4, "chat", 2),
        ] {
            q.insert(task(seq, t, p));
        }
        assert_eq!(q.take_match(&want(&[], 5, &[])).map(|p| p.seq), Some(2));
        assert_eq!(
            q.take_match(&want(&["chat".into()], 0, &[])).map(|p| p.seq),
            Some(1)
        );
        assert_eq!(
            q.take_match(&want(&[], 0, &["t3".into()])).map(|p| p.seq),
            Some(4)
        );
        assert_eq!(q.take_match(&want(&[], 11, &[])), None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.remove("t3").map(|p| p.seq), Some(3));
        assert!(q.is_empty());
    }

    proptest! {
        /// The index answers exactly as a plain scan in arrival order would.
        #[test]
        fn agrees_with_a_linear_scan(
            tasks in proptest::collection::vec((0usize..3, 1i64..6), 0..40),
            asks in proptest::collection::vec((proptest::option::of(0usize..3), 0i64..7), 0..40),
        ) {
            let types = ["chat", "code", "research"];
            let mut q = PendingIndex::default();
            let mut model: Vec<Pending> = vec![];
            for (i, (t, p)) in tasks.iter().enumerate() {
                let pending = task(i as i64, types[*t], *p);
                q.insert(pending.clone());
                model.push(pending);
            }
            for (t, min) in asks {
                let accept: Vec<String> = t.map(|t| vec![types[t].to_string()]).unwrap_or_default();
                let w = want(&accept, min, &[]);
                let expected = model.iter().position(|p| w.takes(p)).map(|i| model.remove(i));
                prop_assert_eq!(q.take_match(&w), expected);
            }
            prop_assert_eq!(q.len(), model.len());
        }

        /// The valued pick is the oldest acceptable task at or above the floor, as a plain scan
        /// would find it.
        #[test]
        fn the_valued_pick_agrees_with_a_linear_scan(
            tasks in proptest::collection::vec((0usize..3, 1i64..8), 0..40),
            asks in proptest::collection::vec((proptest::option::of(0usize..3), 0i64..5, 0i64..8), 0..40),
        ) {
            let types = ["chat", "code", "research"];
            let mut q = PendingIndex::default();
            let mut model: Vec<Pending> = vec![];
            for (i, (t, p)) in tasks.iter().enumerate() {
                let pending = task(i as i64, types[*t], *p);
                q.insert(pending.clone());
                model.push(pending);
            }
            for (t, min, floor) in asks {
                let accept: Vec<String> = t.map(|t| vec![types[t].to_string()]).unwrap_or_default();
                let w = want(&accept, min, &[]);
                let expected = model
                    .iter()
                    .position(|p| w.takes(p) && p.price_cents >= floor)
                    .map(|i| model.remove(i));
                prop_assert_eq!(q.take_valued(&w, floor), expected);
            }
            prop_assert_eq!(q.len(), model.len());
        }
    }
}
