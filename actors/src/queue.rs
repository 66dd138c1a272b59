//! The Dispatcher's index of pending tasks: by type, then by price, then in arrival order. A
//! worker's match is the oldest task of a type it accepts at a price it accepts, found by looking
//! at the head of each (type, price) bucket, so a worker with a high `min_price` does not walk
//! past every cheaper task.

use std::collections::{BTreeMap, HashMap};

/// A pending task as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub seq: i64,
    pub task_id: String,
    pub task_type: String,
    pub price_cents: i64,
    pub buyer_id: String,
}

/// What a claimer will take.
pub struct Want<'a> {
    pub accept: &'a [String],
    pub reject: &'a [String],
    pub min_price_cents: i64,
    pub exclude: &'a [String],
}

impl Want<'_> {
    fn takes_type(&self, task_type: &str) -> bool {
        (self.accept.is_empty() || self.accept.iter().any(|t| t == task_type))
            && !self.reject.iter().any(|t| t == task_type)
    }

    /// Whether this claimer takes `p`.
    pub fn takes(&self, p: &Pending) -> bool {
        self.takes_type(&p.task_type)
            && p.price_cents >= self.min_price_cents
            && !self.exclude.contains(&p.task_id)
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
                // Excluded tasks are few (a session's recent releases), so this stays short.
                if let Some(p) = bucket.values().find(|p| !want.exclude.contains(&p.task_id))
                    && best.is_none_or(|(seq, _)| p.seq < seq)
                {
                    best = Some((p.seq, &p.task_id));
                }
            }
        }
        let task_id = best?.1.to_string();
        self.remove(&task_id)
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
        }
    }

    fn want<'a>(accept: &'a [String], min: i64, exclude: &'a [String]) -> Want<'a> {
        Want {
            accept,
            reject: &[],
            min_price_cents: min,
            exclude,
        }
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
    }
}
