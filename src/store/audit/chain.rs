//! The audit log's hash chain: the canonical encoding of an entry, its hash, and the
//! verification of a chain read in order.
//!
//! `hash = SHA-256(prev_hash || encoding(entry))`, in lower-case hex, where the encoding
//! (version 1, [`HASH_VERSION`]) is a fixed tag followed by every field of the entry in a
//! fixed order, each length-prefixed so no two entries encode alike:
//!
//! ```text
//! "sluice-audit-v1" 0x00
//! prev_hash   u32-BE length, UTF-8
//! id, at      i64 big-endian each
//! event       u32-BE length, UTF-8
//! user_id, email, actor, ip, user_agent, reason, details:
//!             0x00 when absent, else 0x01, u32-BE length, UTF-8
//! ```
//!
//! The first entry chains to [`GENESIS`]; after retention pruned the oldest entries, the
//! first one left chains to the anchor (the hash of the last entry pruned). Pure: no IO, no
//! clock; any store implementation hashes and verifies with these functions.

use sha2::{Digest, Sha256};

use super::{AuditEvent, AuditRecord};

/// The version of the encoding [`entry_hash`] hashes.
pub const HASH_VERSION: u32 = 1;

/// The `prev_hash` of the first entry ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const TAG: &[u8] = b"sluice-audit-v1\0";

/// The hash of `event` (whose `id` must be the one it is stored under) chained to
/// `prev_hash`.
pub fn entry_hash(prev_hash: &str, event: &AuditEvent) -> String {
    let mut hasher = Sha256::new();
    hasher.update(TAG);
    text(&mut hasher, prev_hash);
    hasher.update(event.id.to_be_bytes());
    hasher.update(event.at.to_be_bytes());
    text(&mut hasher, &event.event);
    for field in [
        &event.user_id,
        &event.email,
        &event.actor,
        &event.ip,
        &event.user_agent,
        &event.reason,
        &event.details,
    ] {
        match field {
            None => hasher.update([0u8]),
            Some(value) => {
                hasher.update([1u8]);
                text(&mut hasher, value);
            }
        }
    }
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 0x0f)]));
    }
    hex
}

fn text(hasher: &mut Sha256, value: &str) {
    // An entry's fields are far below 4 GiB; a longer one would still hash unambiguously
    // enough never to happen, but refuse to truncate silently.
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    hasher.update(len.to_be_bytes());
    hasher.update(value.as_bytes());
}

/// Where a chain starts and ends, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainState {
    /// The last entry pruned (0: none); the first entry left follows it.
    pub anchor_id: i64,
    /// Its hash ([`GENESIS`] when nothing was pruned).
    pub anchor_hash: String,
    /// When entries were last pruned (Unix seconds).
    pub anchor_at: Option<i64>,
    /// The newest entry appended (0: none).
    pub head_id: i64,
    pub head_hash: String,
}

/// A chain that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Entries checked.
    pub entries: u64,
    /// The newest entry's id and hash (the anchor's when the log is empty).
    pub last_id: i64,
    pub last_hash: String,
    /// The chain's start: entries up to this id were pruned (0: none).
    pub anchor_id: i64,
    pub anchor_at: Option<i64>,
}

/// The first broken link of a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// The entry's fields do not hash to its stored hash: it was changed after it was
    /// written.
    #[error("entry {id}: content changed (its fields no longer match its hash)")]
    ContentChanged { id: i64 },
    /// Ids `from..=to` are missing between two entries.
    #[error("{}: missing (deleted from the middle of the log)", span(*from, *to))]
    Missing { from: i64, to: i64 },
    /// The newest entries `from..=to`, which the chain's head records, are missing.
    #[error("{}: missing (the newest entries were deleted; the chain's head is entry {to})", span(*from, *to))]
    HeadMissing { from: i64, to: i64 },
    /// The entry does not name the entry before it as its predecessor: that one was
    /// replaced or re-hashed, or entries were moved.
    #[error(
        "entry {id}: order broken (it does not follow {}: that entry was replaced or re-hashed, or entries were moved)",
        previous.map_or("the chain's anchor".to_string(), |p| format!("entry {p}"))
    )]
    Order { id: i64, previous: Option<i64> },
    /// The newest entry is not the head the store recorded (an entry added outside the
    /// chain, or the head rewritten).
    #[error("entry {id}: order broken (the chain's head records entry {head_id})")]
    Head { id: i64, head_id: i64 },
}

fn span(from: i64, to: i64) -> String {
    if from == to {
        format!("entry {from}")
    } else {
        format!("entries {from} to {to}")
    }
}

/// Checks a chain entry by entry, oldest first, starting from the store's [`ChainState`].
#[derive(Debug)]
pub struct Verifier {
    state: ChainState,
    /// The id the next entry should have.
    expect_id: i64,
    /// The hash the next entry should chain to.
    prev_hash: String,
    /// The id of the last entry checked.
    previous: Option<i64>,
    entries: u64,
}

impl Verifier {
    pub fn new(state: &ChainState) -> Verifier {
        Verifier {
            expect_id: state.anchor_id + 1,
            prev_hash: state.anchor_hash.clone(),
            previous: None,
            entries: 0,
            state: state.clone(),
        }
    }

    /// Checks the next entry (entries must come in id order).
    pub fn check(&mut self, record: &AuditRecord) -> Result<(), ChainBreak> {
        let id = record.event.id;
        if self.previous.is_some_and(|previous| id <= previous) || id <= self.state.anchor_id {
            return Err(ChainBreak::Order {
                id,
                previous: self.previous,
            });
        }
        if entry_hash(&record.prev_hash, &record.event) != record.hash {
            return Err(ChainBreak::ContentChanged { id });
        }
        if id > self.expect_id {
            return Err(ChainBreak::Missing {
                from: self.expect_id,
                to: id - 1,
            });
        }
        if record.prev_hash != self.prev_hash {
            return Err(ChainBreak::Order {
                id,
                previous: self.previous,
            });
        }
        self.expect_id = id + 1;
        self.prev_hash.clone_from(&record.hash);
        self.previous = Some(id);
        self.entries += 1;
        Ok(())
    }

    /// Ends the walk: the last entry must be the head the store recorded.
    pub fn finish(self) -> Result<Verified, ChainBreak> {
        let last_id = self.expect_id - 1;
        if last_id < self.state.head_id {
            return Err(ChainBreak::HeadMissing {
                from: last_id + 1,
                to: self.state.head_id,
            });
        }
        if last_id > self.state.head_id || self.prev_hash != self.state.head_hash {
            return Err(ChainBreak::Head {
                id: last_id,
                head_id: self.state.head_id,
            });
        }
        Ok(Verified {
            entries: self.entries,
            last_id,
            last_hash: self.prev_hash,
            anchor_id: self.state.anchor_id,
            anchor_at: self.state.anchor_at,
        })
    }
}

#[cfg(test)]
mod tests;
