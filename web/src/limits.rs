//! Body size limits per endpoint (DESIGN.md §8).

use actix_web::web::JsonConfig;

/// Registration, login, worker connect and profile.
pub const REGISTER: usize = 16 * 1024;
/// A task: 128 KB of input. The body may carry a little more than the input itself.
pub const TASK: usize = 128 * 1024 + 1024;
/// A submitted output.
pub const OUTPUT: usize = 256 * 1024 + 1024;
/// Small bodies (credits).
pub const SMALL: usize = 8 * 1024;

pub fn json(limit: usize) -> JsonConfig {
    JsonConfig::default()
        .limit(limit)
        .content_type_required(false)
        .error_handler(crate::error::json_error)
}
