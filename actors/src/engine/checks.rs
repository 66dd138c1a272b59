//! Checks of what clients send, against the engine's [`limits`](crate::limits).

use super::*;

/// A task input must be a JSON object of at most 128 KB; returns its JSON text.
pub(super) fn check_input(input: &Value) -> Result<String, EngineError> {
    if !input.is_object() {
        return Err(EngineError::validation_field(
            "input",
            "input must be a JSON object",
        ));
    }
    let text = serde_json::to_string(input).map_err(EngineError::internal)?;
    if text.len() > MAX_INPUT_BYTES {
        return Err(EngineError::PayloadTooLarge(format!(
            "input is larger than {} KB",
            MAX_INPUT_BYTES / 1024
        )));
    }
    Ok(text)
}

pub(super) fn check_profile(p: &WorkerProfile) -> Result<(), EngineError> {
    let prefs = &p.preferences;
    for (field, list) in [
        ("accept", &prefs.accept),
        ("reject", &prefs.reject),
        ("languages", &prefs.languages),
    ] {
        let too_long = |s: &String| s.is_empty() || s.chars().count() > MAX_PROFILE_NAME_CHARS;
        if list.len() > MAX_PROFILE_NAMES || list.iter().any(too_long) {
            return Err(EngineError::validation_field(
                &format!("preferences.{field}"),
                format!(
                    "preferences.{field} takes at most {MAX_PROFILE_NAMES} names of 1 to \
                     {MAX_PROFILE_NAME_CHARS} characters"
                ),
            ));
        }
    }
    if prefs.min_price < 0 {
        return Err(EngineError::validation_field(
            "preferences.min_price",
            "min_price must not be negative",
        ));
    }
    if !(1..=MAX_CONCURRENT_TASKS).contains(&p.limits.concurrent) {
        return Err(EngineError::validation_field(
            "limits.concurrent",
            format!("limits.concurrent must be between 1 and {MAX_CONCURRENT_TASKS}"),
        ));
    }
    if p.limits.daily_max_tasks == 0 {
        return Err(EngineError::validation_field(
            "limits.daily_max_tasks",
            "limits.daily_max_tasks must be at least 1",
        ));
    }
    if p.schedule.to_string().len() > MAX_SCHEDULE_BYTES {
        return Err(EngineError::validation_field(
            "schedule",
            format!("schedule is larger than {} KB", MAX_SCHEDULE_BYTES / 1024),
        ));
    }
    Ok(())
}
