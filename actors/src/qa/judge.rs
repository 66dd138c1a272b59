//! What the comparator concludes about a QA group once its sides are in. Pure: the group as read
//! from the store in, a decision out, so the rules are tested without actors or a store.
//!
//! * Benchmark: the worker's output against the expected output; the verdict is the worker's.
//! * Spot-check or shadow, first look: the original against its copy. A pass is final for both
//!   workers. Anything else asks for a third copy before anyone is blamed.
//! * With the third copy in: it "agrees" with a side when their similarity reaches `pass`. If it
//!   agrees with exactly one side, the other side is the odd one out and takes the fail (the other
//!   two pass). If it agrees with both or with neither, the three do not settle it: everyone is
//!   flagged for review and nobody is penalised.

use serde_json::Value;

use crate::domain::TaskStatus;
use crate::store::{QaDecision, QaGroup, QaMember, QaRole, QaState, QaType, TiebreakScores};

use super::similarity::{Score, Verdict, score};

/// The done output and worker of a member, if it has finished.
fn done(m: &QaMember) -> Option<(Value, &str)> {
    if !matches!(m.status, TaskStatus::Completed | TaskStatus::Credited) {
        return None;
    }
    let text = m.output.as_deref()?;
    let worker = m.worker_id.as_deref()?;
    let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()));
    Some((value, worker))
}

fn member(g: &QaGroup, role: QaRole) -> Option<(Value, &str)> {
    g.members.iter().find(|m| m.role == role).and_then(done)
}

/// The decision for `g`, or `None` while a side is still out (or the group is settled).
pub fn decide(g: &QaGroup, pass: f64, flag: f64) -> Option<QaDecision> {
    let verdict = |s: &Score| Verdict::from_score(s.similarity, pass, flag);
    match (g.qa_type, g.state) {
        (_, QaState::Decided | QaState::Void) => None,
        (QaType::Benchmark, _) => {
            let (output, worker) = member(g, QaRole::Benchmark)?;
            let expected: Value = serde_json::from_str(g.expected_output.as_deref()?).ok()?;
            let s = score(&output, &expected);
            let v = verdict(&s);
            Some(QaDecision::Decide {
                score: s,
                verdict: v,
                outcomes: vec![(worker.to_string(), v)],
                blamed: (v == Verdict::Fail).then(|| worker.to_string()),
                tiebreak: None,
            })
        }
        (QaType::SpotCheck | QaType::Shadow, state) => {
            let (a, wa) = member(g, QaRole::Original)?;
            let (b, wb) = member(g, QaRole::Copy)?;
            let pair = score(&a, &b);
            if state == QaState::Open {
                if verdict(&pair) == Verdict::Pass {
                    return Some(QaDecision::Decide {
                        score: pair,
                        verdict: Verdict::Pass,
                        outcomes: vec![(wa.into(), Verdict::Pass), (wb.into(), Verdict::Pass)],
                        blamed: None,
                        tiebreak: None,
                    });
                }
                return Some(QaDecision::Tiebreak { score: pair });
            }
            let (t, wt) = member(g, QaRole::Tiebreak)?;
            let (ta, tb) = (score(&t, &a), score(&t, &b));
            let agrees = |s: &Score| s.similarity >= pass;
            let scores = Some(TiebreakScores {
                with_task: ta.similarity,
                with_qa_task: tb.similarity,
            });
            let odd_one_out = match (agrees(&ta), agrees(&tb)) {
                (true, false) => Some((wb, wa)),
                (false, true) => Some((wa, wb)),
                _ => None,
            };
            Some(match odd_one_out {
                Some((blamed, other)) => QaDecision::Decide {
                    score: pair,
                    verdict: Verdict::Fail,
                    outcomes: vec![
                        (other.into(), Verdict::Pass),
                        (wt.into(), Verdict::Pass),
                        (blamed.into(), Verdict::Fail),
                    ],
                    blamed: Some(blamed.into()),
                    tiebreak: scores,
                },
                None => QaDecision::Decide {
                    score: pair,
                    verdict: Verdict::Flag,
                    outcomes: [wa, wb, wt]
                        .into_iter()
                        .map(|w| (w.to_string(), Verdict::Flag))
                        .collect(),
                    blamed: None,
                    tiebreak: scores,
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RIGHT: &str = "The Eiffel Tower is in Paris and was finished in 1889.";
    const RIGHT_TOO: &str = "Finished in 1889, the Eiffel Tower stands in Paris, France.";
    const WRONG: &str = "Bananas are yellow and rich in potassium.";
    const OTHER_WRONG: &str = "Quantum computers use qubits to factor 2048 bit keys.";

    fn m(task: &str, role: QaRole, worker: &str, text: Option<&str>) -> QaMember {
        QaMember {
            task_id: task.into(),
            role,
            status: if text.is_some() {
                TaskStatus::Completed
            } else {
                TaskStatus::Assigned
            },
            worker_id: Some(worker.into()),
            output: text.map(|t| json!({ "text": t }).to_string()),
        }
    }

    fn group(state: QaState, members: Vec<QaMember>) -> QaGroup {
        QaGroup {
            id: "g".into(),
            qa_type: QaType::Shadow,
            state,
            expected_output: None,
            members,
        }
    }

    fn outcomes(d: &QaDecision) -> Vec<(String, Verdict)> {
        match d {
            QaDecision::Decide { outcomes, .. } => {
                let mut o = outcomes.clone();
                o.sort_by(|a, b| a.0.cmp(&b.0));
                o
            }
            other => panic!("not final: {other:?}"),
        }
    }

    #[test]
    fn waits_until_both_sides_are_in() {
        let g = group(
            QaState::Open,
            vec![
                m("t1", QaRole::Original, "a", Some(RIGHT)),
                m("t2", QaRole::Copy, "b", None),
            ],
        );
        assert_eq!(decide(&g, 0.7, 0.4), None);
    }

    #[test]
    fn agreeing_pair_passes_both() {
        let g = group(
            QaState::Open,
            vec![
                m("t1", QaRole::Original, "a", Some(RIGHT)),
                m("t2", QaRole::Copy, "b", Some(RIGHT_TOO)),
            ],
        );
        let d = decide(&g, 0.7, 0.4).unwrap();
        assert_eq!(
            outcomes(&d),
            vec![("a".into(), Verdict::Pass), ("b".into(), Verdict::Pass)]
        );
    }

    #[test]
    fn disagreeing_pair_asks_for_a_third_copy_first() {
        let g = group(
            QaState::Open,
            vec![
                m("t1", QaRole::Original, "a", Some(RIGHT)),
                m("t2", QaRole::Copy, "b", Some(WRONG)),
            ],
        );
        assert!(matches!(
            decide(&g, 0.7, 0.4),
            Some(QaDecision::Tiebreak { .. })
        ));
    }

    #[test]
    fn the_odd_one_out_takes_the_fail() {
        let g = group(
            QaState::Tiebreak,
            vec![
                m("t1", QaRole::Original, "a", Some(WRONG)),
                m("t2", QaRole::Copy, "b", Some(RIGHT)),
                m("t3", QaRole::Tiebreak, "c", Some(RIGHT_TOO)),
            ],
        );
        let d = decide(&g, 0.7, 0.4).unwrap();
        assert_eq!(
            outcomes(&d),
            vec![
                ("a".into(), Verdict::Fail),
                ("b".into(), Verdict::Pass),
                ("c".into(), Verdict::Pass)
            ]
        );
        assert!(
            matches!(d, QaDecision::Decide { blamed: Some(ref w), verdict: Verdict::Fail, .. } if w == "a")
        );
    }

    #[test]
    fn three_way_disagreement_flags_everyone_and_blames_nobody() {
        let g = group(
            QaState::Tiebreak,
            vec![
                m("t1", QaRole::Original, "a", Some(WRONG)),
                m("t2", QaRole::Copy, "b", Some(RIGHT)),
                m("t3", QaRole::Tiebreak, "c", Some(OTHER_WRONG)),
            ],
        );
        let d = decide(&g, 0.7, 0.4).unwrap();
        assert!(outcomes(&d).iter().all(|(_, v)| *v == Verdict::Flag));
        assert!(matches!(
            d,
            QaDecision::Decide {
                blamed: None,
                verdict: Verdict::Flag,
                ..
            }
        ));
    }

    #[test]
    fn benchmarks_are_judged_against_the_expected_output() {
        let bench = |text: &str| QaGroup {
            id: "g".into(),
            qa_type: QaType::Benchmark,
            state: QaState::Open,
            expected_output: Some(json!({ "text": RIGHT }).to_string()),
            members: vec![m("t1", QaRole::Benchmark, "a", Some(text))],
        };
        let good = decide(&bench(RIGHT), 0.7, 0.4).unwrap();
        assert_eq!(outcomes(&good), vec![("a".into(), Verdict::Pass)]);
        let bad = decide(&bench(WRONG), 0.7, 0.4).unwrap();
        assert_eq!(outcomes(&bad), vec![("a".into(), Verdict::Fail)]);
        assert!(matches!(
            bad,
            QaDecision::Decide {
                blamed: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn settled_groups_are_left_alone() {
        let mut g = group(
            QaState::Decided,
            vec![
                m("t1", QaRole::Original, "a", Some(RIGHT)),
                m("t2", QaRole::Copy, "b", Some(RIGHT)),
            ],
        );
        assert_eq!(decide(&g, 0.7, 0.4), None);
        g.state = QaState::Void;
        assert_eq!(decide(&g, 0.7, 0.4), None);
    }
}
