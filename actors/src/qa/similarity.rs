//! How alike two outputs are: a deterministic score in [0, 1] with three dimensions.
//!
//! Both outputs are reduced to text (an object's `text` field when it has one, else its canonical
//! JSON), lowercased and split into words (runs of letters and digits).
//!
//! * `accuracy`: cosine similarity of the two word-count vectors — the same words in the same
//!   proportions score 1, no shared word scores 0.
//! * `factual`: Jaccard overlap of the *facts* each side states — numbers, and words written with
//!   a capital other than at the start of a sentence (names). When neither side states any fact there is no
//!   independent evidence, and `factual` takes the `accuracy` score.
//! * `depth`: the shorter side's word count over the longer one's (both empty: 1).
//!
//! `overall = 0.4 accuracy + 0.4 factual + 0.2 depth`, rounded to 4 decimals: a wrong fact in
//! otherwise identical wording is enough to keep a pair from passing. Identical outputs
//! score exactly 1; outputs with no word in common score at most 0.2 (only depth can add), which
//! is below any sensible `flag` threshold.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Dimensions {
    pub factual: f64,
    pub depth: f64,
    pub accuracy: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    pub similarity: f64,
    pub dimensions: Dimensions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Flag,
    Fail,
}

impl Verdict {
    /// `pass` at or above the pass threshold, `fail` below the flag threshold, `flag` between.
    pub fn from_score(similarity: f64, pass: f64, flag: f64) -> Verdict {
        if similarity >= pass {
            Verdict::Pass
        } else if similarity < flag {
            Verdict::Fail
        } else {
            Verdict::Flag
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Flag => "flag",
            Verdict::Fail => "fail",
        }
    }
}

/// The text an output stands for.
pub fn output_text(output: &Value) -> String {
    match output {
        Value::String(s) => s.clone(),
        Value::Object(o) => match o.get("text") {
            Some(Value::String(s)) => s.clone(),
            _ => output.to_string(),
        },
        other => other.to_string(),
    }
}

struct Parsed {
    counts: BTreeMap<String, u32>,
    facts: BTreeSet<String>,
    words: u32,
}

fn parse(text: &str) -> Parsed {
    let mut counts = BTreeMap::new();
    let mut facts = BTreeSet::new();
    let mut words = 0;
    // A capital that only starts a sentence says nothing about names.
    let mut sentence_start = true;
    let mut word = String::new();
    let mut flush = |word: &mut String, sentence_start: bool| {
        if word.is_empty() {
            return;
        }
        let lower = word.to_lowercase();
        let is_number = word.chars().all(|c| c.is_ascii_digit());
        let is_name = !sentence_start && word.chars().next().is_some_and(char::is_uppercase);
        if is_number || is_name {
            facts.insert(lower.clone());
        }
        *counts.entry(lower).or_insert(0) += 1;
        words += 1;
        word.clear();
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.push(c);
            continue;
        }
        let had_word = !word.is_empty();
        flush(&mut word, sentence_start);
        if had_word {
            sentence_start = false;
        }
        if matches!(c, '.' | '!' | '?' | '\n') {
            sentence_start = true;
        }
    }
    flush(&mut word, sentence_start);
    Parsed {
        counts,
        facts,
        words,
    }
}

fn cosine(a: &BTreeMap<String, u32>, b: &BTreeMap<String, u32>) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let dot: f64 = a
        .iter()
        .filter_map(|(w, x)| b.get(w).map(|y| f64::from(*x) * f64::from(*y)))
        .sum();
    let norm = |m: &BTreeMap<String, u32>| {
        m.values()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na * nb)).clamp(0.0, 1.0)
    }
}

/// Rounds to 4 decimals. Adding 0.0 turns a negative zero (a tiny negative rounding error
/// rounded away) into a plain zero, so no score prints as `-0.0`.
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0 + 0.0
}

/// Scores two outputs against each other (symmetric).
pub fn score(a: &Value, b: &Value) -> Score {
    let (pa, pb) = (parse(&output_text(a)), parse(&output_text(b)));
    let accuracy = cosine(&pa.counts, &pb.counts);
    let factual = if pa.facts.is_empty() && pb.facts.is_empty() {
        accuracy
    } else {
        let shared = pa.facts.intersection(&pb.facts).count() as f64;
        let all = pa.facts.union(&pb.facts).count() as f64;
        shared / all
    };
    let depth = match (pa.words, pb.words) {
        (0, 0) => 1.0,
        (x, y) => f64::from(x.min(y)) / f64::from(x.max(y)),
    };
    let overall = 0.4 * accuracy + 0.4 * factual + 0.2 * depth;
    Score {
        similarity: round4(overall),
        dimensions: Dimensions {
            factual: round4(factual),
            depth: round4(depth),
            accuracy: round4(accuracy),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn s(a: &str, b: &str) -> Score {
        score(&json!({ "text": a }), &json!({ "text": b }))
    }

    #[test]
    fn no_score_is_negative_zero() {
        assert!(round4(-1e-12).is_sign_positive());
        assert!(round4(-0.0).is_sign_positive());
        let x = s("alpha beta", "gamma delta");
        for d in [
            x.similarity,
            x.dimensions.accuracy,
            x.dimensions.factual,
            x.dimensions.depth,
        ] {
            assert!(d.is_sign_positive(), "{x:?}");
        }
    }

    #[test]
    fn identical_outputs_score_one() {
        let x = s(
            "Paris is the capital of France, with 2.1 million people.",
            "Paris is the capital of France, with 2.1 million people.",
        );
        assert_eq!(x.similarity, 1.0);
        assert_eq!(
            x.dimensions,
            Dimensions {
                factual: 1.0,
                depth: 1.0,
                accuracy: 1.0
            }
        );
        assert_eq!(
            score(&json!({"a": [1, 2]}), &json!({"a": [1, 2]})).similarity,
            1.0
        );
        assert_eq!(s("", "").similarity, 1.0);
    }

    #[test]
    fn unrelated_outputs_fall_below_flag() {
        let x = s(
            "The mitochondria is the powerhouse of the cell.",
            "Buy low, sell high; markets reward patience.",
        );
        assert!(x.similarity < 0.40, "{x:?}");
        let y = s("Paris is the capital of France.", "Berlin hosts 3 museums.");
        assert!(y.similarity < 0.40, "{y:?}");
    }

    #[test]
    fn fixed_pairs_score_as_documented() {
        // Same answer, reworded a little: passes the default 0.70.
        let close = s(
            "Water boils at 100 degrees Celsius at sea level.",
            "At sea level, water boils at 100 degrees Celsius.",
        );
        assert_eq!(close.similarity, 1.0, "same words, same facts, same length");
        let paraphrase = s(
            "The Eiffel Tower is in Paris and was finished in 1889.",
            "Finished in 1889, the Eiffel Tower stands in Paris, France.",
        );
        assert!(paraphrase.similarity >= 0.70, "{paraphrase:?}");
        // A wrong fact with the same wording lands between flag and pass.
        let wrong_fact = s(
            "The Eiffel Tower is in Paris and was finished in 1889.",
            "The Eiffel Tower is in Rome and was finished in 1921.",
        );
        assert!(
            (0.40..0.70).contains(&wrong_fact.similarity),
            "{wrong_fact:?}"
        );
        assert!(wrong_fact.dimensions.factual < wrong_fact.dimensions.accuracy);
        // A lazy one-liner against a full answer loses depth.
        let lazy = s(
            "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen in plants.",
            "plants make sugar",
        );
        assert!(lazy.dimensions.depth < 0.3, "{lazy:?}");
    }

    #[test]
    fn verdicts_follow_the_thresholds() {
        assert_eq!(Verdict::from_score(0.70, 0.70, 0.40), Verdict::Pass);
        assert_eq!(Verdict::from_score(0.69, 0.70, 0.40), Verdict::Flag);
        assert_eq!(Verdict::from_score(0.40, 0.70, 0.40), Verdict::Flag);
        assert_eq!(Verdict::from_score(0.39, 0.70, 0.40), Verdict::Fail);
    }

    proptest! {
        #[test]
        fn scores_are_symmetric_and_bounded(a in "[a-zA-Z0-9 ,.]{0,80}", b in "[a-zA-Z0-9 ,.]{0,80}") {
            let (x, y) = (s(&a, &b), s(&b, &a));
            prop_assert_eq!(x, y);
            prop_assert!((0.0..=1.0).contains(&x.similarity));
            prop_assert_eq!(s(&a, &a).similarity, 1.0);
        }
    }
}
