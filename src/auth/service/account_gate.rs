//! One credential check at a time per account. Sign-in attempts for the same email (and
//! re-authentications of its sessions) queue here, so each reads the account after the
//! previous one recorded its failure: once failures reach the lockout threshold, the
//! attempts still waiting find the account locked and are refused without a password check,
//! instead of each being checked against the state it read before the lock.
//!
//! Attempts for different accounts do not wait for each other. Entries live only while an
//! attempt holds or waits for them, so the map never outgrows the attempts in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// The gates of the accounts with a credential check in flight, by normalised email.
#[derive(Default)]
pub(super) struct AccountGates {
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held for the whole credential check of one account; dropping it lets the next in.
pub(super) struct AccountGate<'a> {
    gates: &'a AccountGates,
    email: String,
    gate: Arc<tokio::sync::Mutex<()>>,
    held: Option<OwnedMutexGuard<()>>,
}

impl AccountGates {
    /// Waits until no other credential check of `email` is in flight.
    pub(super) async fn enter(&self, email: &str) -> AccountGate<'_> {
        let gate = self.map().entry(email.to_owned()).or_default().clone();
        let held = gate.clone().lock_owned().await;
        AccountGate {
            gates: self,
            email: email.to_owned(),
            gate,
            held: Some(held),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        // A panic while holding this lock leaves the map consistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.gates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

impl Drop for AccountGate<'_> {
    fn drop(&mut self) {
        drop(self.held.take());
        let mut map = self.gates.map();
        // Clones are only taken under the map's lock: the map's and ours are the last two
        // when nobody else waits, and then the entry goes.
        if Arc::strong_count(&self.gate) == 2 {
            map.remove(&self.email);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn checks_of_one_account_queue_and_others_pass() {
        let gates = Arc::new(AccountGates::default());
        let first = gates.enter("a@example.com").await;
        // Another account is not held up.
        drop(gates.enter("b@example.com").await);
        // The same account waits until the first check ends.
        let waiting = {
            let gates = gates.clone();
            tokio::spawn(async move {
                let _second = gates.enter("a@example.com").await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the second check ran during the first"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the second check ran after the first")
            .expect("task");
        assert_eq!(gates.len(), 0, "entries outlived their checks");
    }
}
