//! Invisible QA, the parts that are pure rules: the similarity method the comparator scores
//! outputs with, the verdict thresholds, the penalty ladder, and the shipped benchmark set.
//! (The QaComparator actor, QA copies and the admin QA API build on these.)

pub mod benchmarks;
pub mod penalty;
pub mod similarity;
