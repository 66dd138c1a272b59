//! The audit log's hash chain. Each entry's hash covers its own fields and the hash of the entry
//! before it, so changing, removing or reordering an entry breaks every link after it. Pruning
//! old entries keeps the last pruned entry's number and hash as the anchor the first kept entry
//! links to, and the store keeps the newest entry's number and hash (the head), so entries cut
//! from the end are missed too. An operator who copies the head hash somewhere else (it is in
//! every `verify` answer) can also tell a rewritten chain from the one they saw.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the first entry links to: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hashed fields of one entry, as stored (`details` is the JSON text exactly as written).
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    pub seq: i64,
    pub created_at_ms: i64,
    pub actor_id: &'a str,
    pub action: &'a str,
    pub ip: &'a str,
    pub user_agent: &'a str,
    pub details: &'a str,
}

/// The entry's hash (lower-case hex): SHA-256 of the previous hash and the fields, as one JSON
/// array (unambiguous: no field can run into the next).
pub fn entry_hash(prev_hash: &str, f: &Fields<'_>) -> String {
    let text = serde_json::json!([
        prev_hash,
        f.seq,
        f.created_at_ms,
        f.actor_id,
        f.action,
        f.ip,
        f.user_agent,
        f.details
    ])
    .to_string();
    crate::domain::hex(&Sha256::digest(text.as_bytes()))
}

/// A point of the chain: an entry's number and hash (the anchor, the head).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Link {
    pub seq: i64,
    pub hash: String,
}

impl Link {
    /// Before any entry: number 0, the genesis hash.
    pub fn genesis() -> Link {
        Link {
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }

    /// The link an entry appended after this one makes.
    pub fn next(&self, f: &Fields<'_>) -> Link {
        Link {
            seq: f.seq,
            hash: entry_hash(&self.hash, f),
        }
    }
}

/// The first entry that does not hold, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Break {
    /// The number of the entry that does not hold (for entries missing from the end, the first
    /// missing number).
    pub seq: i64,
    pub reason: String,
}

/// Walks the chain in order, from the anchor: feed every stored entry, then [`Verifier::finish`].
#[derive(Debug, Clone)]
pub struct Verifier {
    last: Link,
    checked: u64,
    broken: Option<Break>,
}

impl Verifier {
    pub fn new(anchor: Link) -> Verifier {
        Verifier {
            last: anchor,
            checked: 0,
            broken: None,
        }
    }

    /// Checks the next stored entry; false once the chain is broken (the rest need not be read).
    pub fn entry(&mut self, f: &Fields<'_>, prev_hash: &str, hash: &str) -> bool {
        if self.broken.is_some() {
            return false;
        }
        self.checked += 1;
        let reason = if f.seq != self.last.seq + 1 {
            Some(if f.seq > self.last.seq + 1 {
                format!(
                    "entries {} to {} are missing before it",
                    self.last.seq + 1,
                    f.seq - 1
                )
            } else {
                format!("it is out of order after entry {}", self.last.seq)
            })
        } else if prev_hash != self.last.hash {
            Some(format!(
                "its prev_hash does not match the hash of entry {}",
                self.last.seq
            ))
        } else if entry_hash(prev_hash, f) != hash {
            Some("its contents do not match its hash: it was changed after it was written".into())
        } else {
            None
        };
        match reason {
            Some(reason) => {
                self.broken = Some(Break { seq: f.seq, reason });
                false
            }
            None => {
                self.last = Link {
                    seq: f.seq,
                    hash: hash.to_string(),
                };
                true
            }
        }
    }

    /// The verdict, given the head the store keeps.
    pub fn finish(self, head: &Link) -> Verdict {
        let broken = self.broken.or_else(|| {
            (self.last != *head).then(|| Break {
                seq: self.last.seq + 1,
                reason: if head.seq > self.last.seq {
                    format!(
                        "entries {} to {} are missing from the end",
                        self.last.seq + 1,
                        head.seq
                    )
                } else {
                    format!(
                        "the chain ends at entry {} but the recorded head is entry {}",
                        self.last.seq, head.seq
                    )
                },
            })
        });
        Verdict {
            ok: broken.is_none(),
            checked: self.checked,
            first_bad: broken,
        }
    }
}

/// What [`Verifier`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    pub checked: u64,
    pub first_bad: Option<Break>,
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Entry {
        seq: i64,
        details: String,
        prev: String,
        hash: String,
    }

    fn fields(e: &Entry) -> Fields<'_> {
        Fields {
            seq: e.seq,
            created_at_ms: 1_000 * e.seq,
            actor_id: "admin-1",
            action: "admin.credit",
            ip: "127.0.0.1",
            user_agent: "curl/8",
            details: &e.details,
        }
    }

    fn chain(n: i64) -> (Vec<Entry>, Link) {
        let mut head = Link::genesis();
        let mut out = Vec::new();
        for seq in 1..=n {
            let mut e = Entry {
                seq,
                details: format!("{{\"amount_cents\":{seq}}}"),
                prev: head.hash.clone(),
                hash: String::new(),
            };
            head = head.next(&fields(&e));
            e.hash = head.hash.clone();
            out.push(e);
        }
        (out, head)
    }

    fn verify(anchor: Link, entries: &[Entry], head: &Link) -> Verdict {
        let mut v = Verifier::new(anchor);
        for e in entries {
            v.entry(&fields(e), &e.prev, &e.hash);
        }
        v.finish(head)
    }

    #[test]
    fn an_untouched_chain_verifies_and_so_does_an_empty_one() {
        let (entries, head) = chain(5);
        let v = verify(Link::genesis(), &entries, &head);
        assert!(v.ok, "{v:?}");
        assert_eq!(v.checked, 5);
        assert!(verify(Link::genesis(), &[], &Link::genesis()).ok);
    }

    #[test]
    fn a_changed_entry_is_the_first_bad_one() {
        let (mut entries, head) = chain(5);
        entries[2].details = "{\"amount_cents\":300000}".into();
        let v = verify(Link::genesis(), &entries, &head);
        assert!(!v.ok);
        let bad = v.first_bad.unwrap();
        assert_eq!(bad.seq, 3);
        assert!(bad.reason.contains("changed"), "{}", bad.reason);
    }

    #[test]
    fn a_rehashed_entry_breaks_the_link_of_the_next() {
        let (mut entries, head) = chain(5);
        entries[2].details = "{}".into();
        entries[2].hash = entry_hash(&entries[2].prev, &fields(&entries[2]));
        let bad = verify(Link::genesis(), &entries, &head).first_bad.unwrap();
        assert_eq!(bad.seq, 4);
        assert!(bad.reason.contains("prev_hash"), "{}", bad.reason);
    }

    #[test]
    fn removed_entries_are_found_in_the_middle_and_at_the_end() {
        let (mut entries, head) = chain(5);
        entries.remove(1);
        let bad = verify(Link::genesis(), &entries, &head).first_bad.unwrap();
        assert_eq!((bad.seq, bad.reason.contains("missing")), (3, true));
        let (mut entries, head) = chain(5);
        entries.truncate(3);
        let bad = verify(Link::genesis(), &entries, &head).first_bad.unwrap();
        assert_eq!(bad.seq, 4);
        assert!(
            bad.reason.contains("missing from the end"),
            "{}",
            bad.reason
        );
    }

    #[test]
    fn a_pruned_chain_verifies_from_its_anchor_and_only_from_it() {
        let (entries, head) = chain(6);
        let anchor = Link {
            seq: 3,
            hash: entries[2].hash.clone(),
        };
        assert!(verify(anchor.clone(), &entries[3..], &head).ok);
        // Pruning more than the anchor says (or forging it) shows.
        assert!(!verify(anchor.clone(), &entries[4..], &head).ok);
        let forged = Link {
            seq: 3,
            hash: GENESIS.into(),
        };
        assert_eq!(
            verify(forged, &entries[3..], &head).first_bad.unwrap().seq,
            4
        );
    }
}
