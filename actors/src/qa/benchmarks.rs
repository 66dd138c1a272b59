//! The benchmark set: tasks with known-good answers, shipped in `config/benchmarks.toml`.

use serde::Deserialize;
use serde_json::Value;

use crate::domain::TaskType;
use crate::error::EngineError;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Benchmark {
    #[serde(rename = "type")]
    pub task_type: String,
    pub input: Value,
    pub expected_output: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    benchmark: Vec<Benchmark>,
}

/// The set built into the binary.
pub fn shipped() -> &'static str {
    include_str!("../../../config/benchmarks.toml")
}

/// Parses and checks a benchmark file: valid types, object inputs and outputs.
pub fn load(text: &str) -> Result<Vec<Benchmark>, EngineError> {
    let file: File = toml::from_str(text)
        .map_err(|e| EngineError::validation(format!("benchmark file: {e}")))?;
    for (i, b) in file.benchmark.iter().enumerate() {
        TaskType::parse(&b.task_type)?;
        if !b.input.is_object() || !b.expected_output.is_object() {
            return Err(EngineError::validation(format!(
                "benchmark {i}: input and expected_output must be tables"
            )));
        }
    }
    Ok(file.benchmark)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PlatformConfig;
    use crate::economics::price_cents;
    use crate::qa::similarity::score;

    #[test]
    fn the_shipped_set_loads_and_every_task_is_priced() {
        let set = load(shipped()).unwrap();
        assert!(set.len() >= 5);
        let cfg = PlatformConfig::builtin();
        for b in &set {
            let t = TaskType::parse(&b.task_type).unwrap();
            assert!(price_cents(&cfg, &t, &b.input).is_ok(), "{b:?}");
            // The expected answer passes against itself, as a right worker answer would.
            assert_eq!(
                score(&b.expected_output, &b.expected_output).similarity,
                1.0
            );
        }
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(load("[[benchmark]]\ntype = \"Chat!\"\ninput = {}\nexpected_output = {}").is_err());
        assert!(
            load("[[benchmark]]\ntype = \"chat\"\ninput = \"x\"\nexpected_output = {}").is_err()
        );
        assert!(
            load("[[benchmark]]\ntype = \"chat\"\ninput = {}\nexpected_output = {}\nextra = 1")
                .is_err()
        );
    }
}
