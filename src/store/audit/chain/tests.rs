//! The hash function against a pinned vector, and verification of crafted chains.

use super::*;

fn event(id: i64) -> AuditEvent {
    AuditEvent {
        id,
        at: 1_767_225_600 + id,
        event: "login_failed".into(),
        user_id: Some("u1".into()),
        email: Some("ada@example.com".into()),
        actor: None,
        ip: Some("192.0.2.7".into()),
        user_agent: Some("curl/8".into()),
        reason: Some("wrong_password".into()),
        details: Some(r#"{"n":1}"#.into()),
    }
}

/// A chain of `n` entries starting after `anchor` (id, hash).
fn chain(anchor: (i64, &str), n: i64) -> (ChainState, Vec<AuditRecord>) {
    let mut prev = anchor.1.to_string();
    let mut records = Vec::new();
    for id in anchor.0 + 1..=anchor.0 + n {
        let event = event(id);
        let hash = entry_hash(&prev, &event);
        records.push(AuditRecord {
            event,
            prev_hash: prev.clone(),
            hash: hash.clone(),
        });
        prev = hash;
    }
    let state = ChainState {
        anchor_id: anchor.0,
        anchor_hash: anchor.1.to_string(),
        anchor_at: None,
        head_id: anchor.0 + n,
        head_hash: prev,
    };
    (state, records)
}

fn verify(state: &ChainState, records: &[AuditRecord]) -> Result<Verified, ChainBreak> {
    let mut verifier = Verifier::new(state);
    for record in records {
        verifier.check(record)?;
    }
    verifier.finish()
}

#[test]
fn the_hash_of_a_known_entry_is_pinned() {
    // Computed once with this encoding (version 1); a change here breaks every stored chain.
    assert_eq!(entry_hash(GENESIS, &event(1)), PINNED);
    let bare = AuditEvent {
        id: 2,
        at: 0,
        event: "x".into(),
        user_id: None,
        email: None,
        actor: None,
        ip: None,
        user_agent: None,
        reason: None,
        details: None,
    };
    assert_eq!(entry_hash(PINNED, &bare), PINNED_BARE);
}

const PINNED: &str = "936436614f8491247e3e2059b113ab45c9ebab4d909b72eb29f9a30fc4ce0fbd";
const PINNED_BARE: &str = "41a937f779ba004aa034b19a872239a815887bc47812181bd5d9383501a6648f";

#[test]
fn every_field_and_the_previous_hash_change_the_hash() {
    let base = event(1);
    let original = entry_hash(GENESIS, &base);
    let changes: Vec<(&str, AuditEvent)> = vec![
        (
            "id",
            AuditEvent {
                id: 2,
                ..base.clone()
            },
        ),
        (
            "at",
            AuditEvent {
                at: base.at + 1,
                ..base.clone()
            },
        ),
        (
            "event",
            AuditEvent {
                event: "login_failes".into(),
                ..base.clone()
            },
        ),
        (
            "user_id",
            AuditEvent {
                user_id: None,
                ..base.clone()
            },
        ),
        (
            "email",
            AuditEvent {
                email: Some("ada@example.org".into()),
                ..base.clone()
            },
        ),
        (
            "actor",
            AuditEvent {
                actor: Some(String::new()),
                ..base.clone()
            },
        ),
        (
            "ip",
            AuditEvent {
                ip: Some("192.0.2.8".into()),
                ..base.clone()
            },
        ),
        (
            "user_agent",
            AuditEvent {
                user_agent: None,
                ..base.clone()
            },
        ),
        (
            "reason",
            AuditEvent {
                reason: Some("locked".into()),
                ..base.clone()
            },
        ),
        (
            "details",
            AuditEvent {
                details: Some(r#"{"n":2}"#.into()),
                ..base.clone()
            },
        ),
    ];
    for (field, changed) in changes {
        assert_ne!(entry_hash(GENESIS, &changed), original, "{field}");
    }
    assert_ne!(entry_hash(&"1".repeat(64), &base), original, "prev_hash");
    // Moving text from one field to the next is not the same entry (length prefixes).
    let shifted_a = AuditEvent {
        user_id: Some("ab".into()),
        email: Some("c".into()),
        ..base.clone()
    };
    let shifted_b = AuditEvent {
        user_id: Some("a".into()),
        email: Some("bc".into()),
        ..base.clone()
    };
    assert_ne!(
        entry_hash(GENESIS, &shifted_a),
        entry_hash(GENESIS, &shifted_b)
    );
}

#[test]
fn an_intact_chain_verifies_from_genesis_and_from_an_anchor() {
    let (state, records) = chain((0, GENESIS), 5);
    let verified = verify(&state, &records).unwrap();
    assert_eq!(verified.entries, 5);
    assert_eq!(verified.last_id, 5);
    assert_eq!(verified.last_hash, records[4].hash);

    let anchor = records[1].hash.clone();
    let (state, records) = chain((2, &anchor), 3);
    let verified = verify(&state, &records).unwrap();
    assert_eq!((verified.entries, verified.anchor_id), (3, 2));

    // Everything pruned: no entries, the head is the anchor.
    let (state, records) = chain((7, &anchor), 0);
    assert_eq!(verify(&state, &records).unwrap().last_hash, anchor);
}

#[test]
fn each_kind_of_tampering_is_named_with_its_entry() {
    let (state, records) = chain((0, GENESIS), 6);

    let mut changed = records.clone();
    changed[2].event.reason = Some("forged".into());
    assert_eq!(
        verify(&state, &changed),
        Err(ChainBreak::ContentChanged { id: 3 })
    );

    // Changed and re-hashed: the entry itself checks out, the next one names it.
    let mut rehashed = records.clone();
    rehashed[2].event.reason = Some("forged".into());
    rehashed[2].hash = entry_hash(&rehashed[2].prev_hash, &rehashed[2].event);
    assert_eq!(
        verify(&state, &rehashed),
        Err(ChainBreak::Order {
            id: 4,
            previous: Some(3)
        })
    );

    let mut middle = records.clone();
    middle.remove(3);
    assert_eq!(
        verify(&state, &middle),
        Err(ChainBreak::Missing { from: 4, to: 4 })
    );

    let mut two = records.clone();
    two.drain(1..3);
    assert_eq!(
        verify(&state, &two),
        Err(ChainBreak::Missing { from: 2, to: 3 })
    );

    let mut last = records.clone();
    last.pop();
    assert_eq!(
        verify(&state, &last),
        Err(ChainBreak::HeadMissing { from: 6, to: 6 })
    );

    let mut first = records.clone();
    first.remove(0);
    assert_eq!(
        verify(&state, &first),
        Err(ChainBreak::Missing { from: 1, to: 1 })
    );

    // Entries moved by changing their ids: the id is hashed too.
    let mut moved = records.clone();
    moved[1].event.id = 3;
    moved[2].event.id = 2;
    moved.swap(1, 2);
    assert_eq!(
        verify(&state, &moved),
        Err(ChainBreak::ContentChanged { id: 2 })
    );

    // A stream out of id order.
    let mut repeated = records.clone();
    repeated.insert(2, records[1].clone());
    assert_eq!(
        verify(&state, &repeated),
        Err(ChainBreak::Order {
            id: 2,
            previous: Some(2)
        })
    );

    // An entry appended past the recorded head.
    let (_, longer) = chain((0, GENESIS), 7);
    assert_eq!(
        verify(&state, &longer),
        Err(ChainBreak::Head { id: 7, head_id: 6 })
    );

    // Messages name the entry and what is wrong.
    assert_eq!(
        ChainBreak::Missing { from: 4, to: 4 }.to_string(),
        "entry 4: missing (deleted from the middle of the log)"
    );
    assert_eq!(
        ChainBreak::ContentChanged { id: 3 }.to_string(),
        "entry 3: content changed (its fields no longer match its hash)"
    );
}
