//! Every size and bound the engine enforces on what clients send, in one place, each with its
//! unit in its name. The web layer's body limits and the API document are built from these.

use std::time::Duration;

/// Largest task input, as JSON text.
pub const MAX_INPUT_BYTES: usize = 128 * 1024;
/// Largest submitted output (or benchmark answer), as JSON text.
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// Largest `constraints.min_output_length` a buyer may ask for.
pub const MAX_MIN_OUTPUT_CHARS: u32 = (MAX_OUTPUT_BYTES / 2) as u32;
/// No price, credit or config amount is above this.
pub const MAX_PRICE_CENTS: i64 = 10_000_000;
/// Longest a buyer may wait on `GET /api/task/{id}?wait=`.
pub const MAX_TASK_WAIT: Duration = Duration::from_secs(30);
/// Longest a worker may wait on `GET /api/work/next?wait=`.
pub const MAX_WORK_WAIT: Duration = Duration::from_secs(15);
/// A credit's or an admin credit's reason.
pub const MAX_REASON_CHARS: usize = 2000;
/// A worker's self-declared type.
pub const MAX_WORKER_TYPE_CHARS: usize = 64;
/// Names in each of a profile's lists (`accept`, `reject`, `languages`)…
pub const MAX_PROFILE_NAMES: usize = 64;
/// …and the length of each.
pub const MAX_PROFILE_NAME_CHARS: usize = 64;
/// A profile's free-form schedule, as JSON text.
pub const MAX_SCHEDULE_BYTES: usize = 8 * 1024;
/// The most tasks a worker may hold at once (`limits.concurrent`).
pub const MAX_CONCURRENT_TASKS: u32 = 100;
/// A task type (`skill:NAME` included).
pub const MAX_TASK_TYPE_CHARS: usize = 64;
/// An email address.
pub const MAX_EMAIL_CHARS: usize = 254;
/// A password's length.
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=256;
/// A task id as this server makes them; a longer one is no task of ours.
pub const MAX_TASK_ID_BYTES: usize = 64;
/// Items on one page of a list (`?limit=`).
pub const MAX_PAGE_ITEMS: u32 = 100;
/// An `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// Rows of the admin console's actor list per page.
pub const MAX_ACTOR_ROWS: usize = 500;
/// How long the console waits for an actor to describe its state.
pub const INSPECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Versions of a config document the console's history lists.
pub const MAX_CONFIG_VERSIONS: u32 = 50;
/// A bounty's title.
pub const MAX_BOUNTY_TITLE_CHARS: usize = 200;
/// A bounty's description and its criteria, each.
pub const MAX_BOUNTY_TEXT_CHARS: usize = 20_000;
