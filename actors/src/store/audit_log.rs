//! What the store keeps of the audit log: every admin action, config change, money movement
//! outside the task loop and ban, with who did it and from where, chained by SHA-256
//! (`rules::audit`). Entries are written by `Tx::audit` in the transaction of what they record.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rules::audit::{Break, Link};

/// Who did something the audit log records, and from where. The platform's own jobs (QA, the
/// payment provider's events, the Supervisor) have a name for an id and no address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    pub id: String,
    pub ip: String,
    pub user_agent: String,
}

/// The longest user agent kept (longer ones are cut, at a character boundary).
pub const MAX_USER_AGENT_CHARS: usize = 256;

impl Who {
    pub fn new(id: impl Into<String>, ip: impl Into<String>, user_agent: &str) -> Who {
        Who {
            id: id.into(),
            ip: ip.into(),
            user_agent: user_agent.chars().take(MAX_USER_AGENT_CHARS).collect(),
        }
    }

    /// One of the platform's own jobs (`"qa"`, `"stripe"`, `"supervisor"`).
    pub fn system(name: &str) -> Who {
        Who::new(name, "", "")
    }
}

/// One entry, for `GET /api/admin/audit-log`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// The entry's place in the chain (1, 2, …); also the page cursor.
    pub seq: i64,
    pub actor_id: String,
    pub action: String,
    pub ip: String,
    pub user_agent: String,
    #[schema(value_type = Object)]
    pub details: Value,
    pub created_at: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// From the stored fields (`details` is JSON text; text that is not JSON is shown as a
    /// string, so a damaged entry can still be read).
    pub fn from_stored(
        seq: i64,
        actor: Who,
        action: String,
        details: &str,
        created_at_ms: i64,
        prev_hash: String,
        hash: String,
    ) -> AuditEntry {
        AuditEntry {
            seq,
            actor_id: actor.id,
            action,
            ip: actor.ip,
            user_agent: actor.user_agent,
            details: serde_json::from_str(details).unwrap_or_else(|_| Value::from(details)),
            created_at: crate::clock::rfc3339(created_at_ms),
            prev_hash,
            hash,
        }
    }
}

/// Which entries to list: newest first, before `before_seq`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor_id: Option<String>,
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// What `GET /api/admin/audit-log/verify` answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChainReport {
    /// Whether every kept entry links to the one before it, from the anchor to the head.
    pub ok: bool,
    /// How many entries were read.
    pub checked: u64,
    /// The last pruned entry the first kept one links to (number 0 and the genesis hash when
    /// nothing was pruned).
    pub anchor: Link,
    /// The newest entry, as the store records it: copy its hash elsewhere to notice a rewrite.
    pub head: Link,
    /// The first entry that does not hold, and why (None when `ok`).
    pub first_bad: Option<Break>,
}

/// What a prune did: how many entries it removed, and the anchor it left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub removed: u64,
    pub anchor: Link,
}

/// How long entries are kept before the Supervisor may prune them (the seed's 90-day TTL).
pub const RETENTION_MS: i64 = 90 * 24 * 3600 * 1000;

/// How many entries a verification reads per store read.
pub const VERIFY_PAGE: u32 = 1_000;
