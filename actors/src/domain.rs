//! Domain values that are parsed once at the edge and trusted afterwards.

use std::fmt;

use rand::RngExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::EngineError;

/// Who a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Buyer,
    Worker,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Buyer => "buyer",
            Role::Worker => "worker",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "buyer" => Some(Role::Buyer),
            "worker" => Some(Role::Worker),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    fn token_prefix(self) -> &'static str {
        match self {
            Role::Buyer => "cjb_",
            Role::Worker => "cjw_",
            Role::Admin => "cja_",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub role: Role,
}

/// A freshly minted bearer token. The plain text is shown once; only [`token_hash`] is stored.
pub fn new_token(role: Role) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes[..]);
    format!("{}{}", role.token_prefix(), hex(&bytes))
}

/// SHA-256 of a token, hex encoded: the only form in which tokens are stored.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// A new identifier: a prefix, 12 hex digits of milliseconds (so ids sort by creation) and 16 random.
pub fn new_id(prefix: &str) -> String {
    let ms = crate::clock::now_ms().max(0) as u64;
    let random: u64 = rand::rng().random();
    format!("{prefix}_{ms:012x}{random:016x}")
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }
    };
}

id_type!(
    /// A task's id (`task_…`): never to be passed where a worker's or a user's goes.
    TaskId
);
id_type!(
    /// A worker's id (`w_…`).
    WorkerId
);
id_type!(
    /// A buyer's or an admin's id (`u_…`, `admin`).
    UserId
);

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// A task type: `chat`, `translate`, …, or `skill:NAME`. Lowercase ASCII letters, digits, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TaskType(String);

impl TaskType {
    pub const MAX_LEN: usize = crate::limits::MAX_TASK_TYPE_CHARS;

    pub fn parse(raw: &str) -> Result<TaskType, EngineError> {
        let bad = || {
            EngineError::validation_field(
                "type",
                format!(
                    "task type {raw:?} is not valid: use lowercase letters, digits, '_' or '-', \
                     optionally as skill:NAME"
                ),
            )
        };
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(bad());
        }
        let name = match raw.split_once(':') {
            Some(("skill", name)) => name,
            Some(_) => return Err(bad()),
            None => raw,
        };
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(TaskType(raw.to_string()))
        } else {
            Err(bad())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_skill(&self) -> bool {
        self.0.starts_with("skill:")
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Pending,
    Assigned,
    Completed,
    Failed,
    Credited,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Assigned => "assigned",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Credited => "credited",
        }
    }

    pub fn parse(s: &str) -> Option<TaskStatus> {
        Some(match s {
            "pending" => TaskStatus::Pending,
            "assigned" => TaskStatus::Assigned,
            "completed" => TaskStatus::Completed,
            "failed" => TaskStatus::Failed,
            "credited" => TaskStatus::Credited,
            _ => return None,
        })
    }

    /// A buyer waiting on a task stops waiting once it reaches one of these.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Credited
        )
    }
}

/// A normalised (lowercased) e-mail address of a plausible shape: a local part, `@`, and a
/// domain of two or more dot-separated labels; no spaces, control characters or second `@`;
/// at most 254 characters. [`EMAIL_PATTERN`] says the same for the API document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

/// The rule of [`Email::parse`] as a regular expression (for the OpenAPI document).
pub const EMAIL_PATTERN: &str =
    r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@.\s\x00-\x1f\x7f-\x9f]+(\.[^@.\s\x00-\x1f\x7f-\x9f]+)+$";

impl Email {
    pub const MAX_CHARS: usize = crate::limits::MAX_EMAIL_CHARS;

    pub fn parse(raw: &str) -> Result<Email, EngineError> {
        let bad = || EngineError::validation_field("email", "email is not a valid address");
        let allowed = |c: char| c != '@' && !c.is_whitespace() && !c.is_control();
        let label = |l: &str| !l.is_empty() && l.chars().all(allowed);
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(bad());
        }
        let (local, domain) = raw.split_once('@').ok_or_else(bad)?;
        let labels: Vec<&str> = domain.split('.').collect();
        if !label(local) || labels.len() < 2 || !labels.iter().all(|l| label(l)) {
            return Err(bad());
        }
        Ok(Email(raw.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as accepted at registration: 8 to 256 characters.
pub fn check_password(raw: &str) -> Result<(), EngineError> {
    let n = raw.chars().count();
    if !crate::limits::PASSWORD_CHARS.contains(&n) {
        return Err(EngineError::validation_field(
            "password",
            "password must be 8 to 256 characters long",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_types() {
        for ok in ["chat", "translate", "skill:summarise-pdf", "code_review"] {
            assert!(TaskType::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Chat",
            "skill:",
            "foo:bar",
            "chat ",
            "a/b",
            &"x".repeat(65),
        ] {
            assert!(TaskType::parse(bad).is_err(), "{bad}");
        }
        assert!(TaskType::parse("skill:x").unwrap().is_skill());
    }

    #[test]
    fn emails() {
        assert_eq!(Email::parse("A@B.io").unwrap().as_str(), "a@b.io");
        assert!(Email::parse("ann.lee+x@mail.example.co").is_ok());
        for bad in [
            "",
            "a",
            "a@b",
            "@b.io",
            "a@@b.io",
            "a b@c.io",
            "a@.io",
            "a@b..io",
            "a@b.io.",
            " a@b.io",
            "a@b.io\n",
            "a\u{7}@b.io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Email::parse(&format!("{}@b.io", "a".repeat(249))).is_ok());
        assert!(Email::parse(&format!("{}@b.io", "a".repeat(250))).is_err());
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token(Role::Worker);
        let b = new_token(Role::Worker);
        assert_ne!(a, b);
        assert!(a.starts_with("cjw_"));
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
    }
}
