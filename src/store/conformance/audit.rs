// `AuditStore`: the append-only, hash-chained log, its triggers and retention.

#[test]
fn audit_log_pages_newest_first_and_is_append_only() {
    let store = store();
    let mut ids = Vec::new();
    for n in 0..5 {
        let mut event = audit(&format!("event_{n}"), NOW + n);
        event.id = 999; // Ignored: the store assigns ids.
        ids.push(store.append_audit(&event).unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let page = store.list_audit(2, None).unwrap();
    assert_eq!(
        page,
        [
            AuditEvent {
                id: ids[4],
                ..audit("event_4", NOW + 4)
            },
            AuditEvent {
                id: ids[3],
                ..audit("event_3", NOW + 3)
            },
        ]
    );
    let next: Vec<_> = store
        .list_audit(10, Some(page[1].id))
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(next, ["event_2", "event_1", "event_0"]);
    let bare = AuditEvent {
        id: 0,
        at: NOW,
        event: "login_failed".into(),
        user_id: None,
        email: None,
        actor: None,
        ip: None,
        user_agent: None,
        reason: None,
        details: None,
    };
    let id = store.append_audit(&bare).unwrap();
    assert_eq!(
        store.list_audit(1, None).unwrap(),
        [AuditEvent { id, ..bare }]
    );

    let update = store.raw("UPDATE audit_events SET event = 'forged'");
    assert!(
        update.unwrap_err().contains("audit_events is append-only"),
        "refused"
    );
    let delete = store.raw("DELETE FROM audit_events");
    assert!(
        delete.unwrap_err().contains("audit_events is append-only"),
        "refused"
    );
    assert_eq!(store.number("SELECT count(*) FROM audit_events"), 6);
}

// ----- The hash chain ----------------------------------------------------------------

use crate::store::audit::chain::{self, GENESIS};
use crate::store::audit::{AuditFilter, ChainBreak, VerifyError, verify};

fn broken(store: &Harness) -> ChainBreak {
    match verify(&**store) {
        Err(VerifyError::Broken(broken)) => broken,
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

/// An attacker with access to the database: drops a trigger and runs `sql`.
fn tamper(store: &Harness, trigger: &str, sql: &str) {
    store.tamper(trigger, sql);
}

fn appended(store: &Harness, n: i64) -> Vec<i64> {
    (0..n)
        .map(|i| {
            store
                .append_audit(&audit(&format!("event_{i}"), NOW + i))
                .unwrap()
        })
        .collect()
}

#[test]
fn appends_are_chained_and_verify() {
    let store = store();
    assert_eq!(verify(&*store).unwrap().entries, 0);
    let ids = appended(&store, 3);
    let batch = store
        .append_audit_batch(&[audit("a", NOW), audit("b", NOW)])
        .unwrap();
    assert_eq!(batch[0].event.id, ids[2] + 1);
    assert_eq!(batch[1].prev_hash, batch[0].hash);
    let records = store.audit_after(0, 100).unwrap();
    assert_eq!(records.len(), 5);
    assert_eq!(records[0].prev_hash, GENESIS);
    for pair in records.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    for record in &records {
        assert_eq!(
            chain::entry_hash(&record.prev_hash, &record.event),
            record.hash
        );
    }
    let verified = verify(&*store).unwrap();
    assert_eq!((verified.entries, verified.last_id), (5, batch[1].event.id));
    assert_eq!(verified.last_hash, batch[1].hash);
    let state = store.audit_chain().unwrap();
    assert_eq!(
        (state.head_id, state.head_hash),
        (batch[1].event.id, batch[1].hash.clone())
    );
}

#[test]
fn concurrent_appends_from_two_connections_never_fork_the_chain() {
    let store = store();
    let a: std::sync::Arc<dyn Store> = std::sync::Arc::from(store.open_again().unwrap());
    let b: std::sync::Arc<dyn Store> = std::sync::Arc::from(store.open_again().unwrap());
    let writers: Vec<_> = [a.clone(), b.clone(), a, b]
        .into_iter()
        .map(|store| {
            std::thread::spawn(move || {
                for i in 0..25 {
                    store.append_audit(&audit("concurrent", NOW + i)).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(verify(&*store).unwrap().entries, 100);
}

#[test]
fn a_changed_entry_is_named() {
    let store = store();
    appended(&store, 5);
    tamper(
        &store,
        "audit_events_no_update",
        "UPDATE audit_events SET reason = 'forged' WHERE id = 3",
    );
    assert_eq!(broken(&store), ChainBreak::ContentChanged { id: 3 });
}

#[test]
fn a_changed_and_rehashed_entry_is_named_by_the_next_link() {
    let store = store();
    appended(&store, 5);
    let mut third = store.audit_after(2, 1).unwrap().remove(0);
    third.event.reason = Some("forged".into());
    let hash = chain::entry_hash(&third.prev_hash, &third.event);
    tamper(
        &store,
        "audit_events_no_update",
        &format!("UPDATE audit_events SET reason = 'forged', hash = '{hash}' WHERE id = 3"),
    );
    assert_eq!(
        broken(&store),
        ChainBreak::Order {
            id: 4,
            previous: Some(3)
        }
    );
}

#[test]
fn deleted_entries_are_named_in_the_middle_and_at_the_end() {
    let store = store();
    appended(&store, 5);
    tamper(
        &store,
        "audit_events_no_delete",
        "DELETE FROM audit_events WHERE id = 2",
    );
    assert_eq!(broken(&store), ChainBreak::Missing { from: 2, to: 2 });

    let second = self::store();
    let store = second;
    appended(&store, 5);
    tamper(
        &store,
        "audit_events_no_delete",
        "DELETE FROM audit_events WHERE id = 5",
    );
    assert_eq!(broken(&store), ChainBreak::HeadMissing { from: 5, to: 5 });
}

#[test]
fn the_triggers_refuse_writes_outside_the_chain() {
    let store = store();
    appended(&store, 3);
    let refused = |sql: &str| {
        let error = store.raw(sql).unwrap_err();
        assert!(
            error.contains("append-only")
                || error.contains("only moves forward")
                || error.contains("is kept"),
            "{sql}: {error}"
        );
    };
    // An entry without a hash, or not after the head.
    refused("INSERT INTO audit_events (at, event) VALUES (1, 'forged')");
    refused(
        "INSERT INTO audit_events (id, at, event, prev_hash, hash) VALUES (2, 1, 'x', 'a', 'b')",
    );
    refused("DELETE FROM audit_events WHERE id = 1");
    refused("UPDATE audit_chain SET head_id = 1");
    refused("UPDATE audit_chain SET anchor_id = 5");
    refused("DELETE FROM audit_chain");
    if store.backend() == Backend::Postgres {
        refused("TRUNCATE audit_events");
        refused("TRUNCATE audit_chain");
    }
    assert_eq!(verify(&*store).unwrap().entries, 3);
}

#[test]
fn pruning_keeps_the_rest_verifiable_and_moves_only_forward() {
    let store = store();
    for at in [NOW - 300, NOW - 200, NOW - 100, NOW - 250, NOW] {
        store.append_audit(&audit("e", at)).unwrap();
    }
    // Older than NOW - 150: entries 1 and 2; entry 4 is old too but comes after a young
    // one, so it stays (the log stays a contiguous tail).
    assert_eq!(store.prune_audit(NOW - 150, NOW, 100).unwrap(), 2);
    let state = store.audit_chain().unwrap();
    assert_eq!((state.anchor_id, state.anchor_at), (2, Some(NOW)));
    let verified = verify(&*store).unwrap();
    assert_eq!((verified.entries, verified.anchor_id), (3, 2));
    assert_eq!(store.prune_audit(NOW - 150, NOW, 100).unwrap(), 0);
    // `max` bounds one call.
    assert_eq!(store.prune_audit(NOW + 1, NOW, 2).unwrap(), 2);
    assert_eq!(verify(&*store).unwrap().entries, 1);
    // Everything pruned: the chain is its anchor, and appends go on from it.
    assert_eq!(store.prune_audit(NOW + 1, NOW, 100).unwrap(), 1);
    assert_eq!(verify(&*store).unwrap().entries, 0);
    let id = store.append_audit(&audit("after", NOW)).unwrap();
    assert_eq!(id, 6);
    assert_eq!(verify(&*store).unwrap().entries, 1);
    // Deleting above the anchor is still refused.
    let error = store
        .raw("DELETE FROM audit_events WHERE id = 6")
        .unwrap_err();
    assert!(error.contains("append-only"), "{error}");
}

#[test]
fn search_filters_and_pages() {
    let store = store();
    for (event, user, actor, at) in [
        ("login_failed", "u1", None, NOW),
        ("login_succeeded", "u1", None, NOW + 10),
        ("role_changed", "u2", Some("admin1"), NOW + 20),
        ("login_failed", "u2", None, NOW + 30),
        ("login_failed", "u1", None, NOW + 40),
    ] {
        let mut event = audit(event, at);
        event.user_id = Some(user.into());
        event.actor = actor.map(str::to_string);
        store.append_audit(&event).unwrap();
    }
    let ids = |filter: AuditFilter, limit, before| -> Vec<i64> {
        store
            .search_audit(&filter, limit, before)
            .unwrap()
            .into_iter()
            .map(|r| r.event.id)
            .collect()
    };
    let failed = AuditFilter {
        event: Some("login_failed".into()),
        ..AuditFilter::default()
    };
    assert_eq!(ids(failed.clone(), 10, None), [5, 4, 1]);
    assert_eq!(ids(failed.clone(), 1, Some(5)), [4]);
    let u1_failed = AuditFilter {
        user_id: Some("u1".into()),
        ..failed
    };
    assert_eq!(ids(u1_failed, 10, None), [5, 1]);
    let by_admin = AuditFilter {
        actor: Some("admin1".into()),
        ..AuditFilter::default()
    };
    assert_eq!(ids(by_admin, 10, None), [3]);
    let window = AuditFilter {
        since: Some(NOW + 10),
        until: Some(NOW + 30),
        ..AuditFilter::default()
    };
    assert_eq!(ids(window, 10, None), [4, 3, 2]);
}

#[test]
fn export_cursors_are_kept_per_sink() {
    let store = store();
    assert_eq!(store.audit_export_cursor("webhook").unwrap(), None);
    store.set_audit_export_cursor("webhook", 7).unwrap();
    store.set_audit_export_cursor("webhook", 9).unwrap();
    store.set_audit_export_cursor("file", 3).unwrap();
    assert_eq!(store.audit_export_cursor("webhook").unwrap(), Some(9));
    assert_eq!(store.audit_export_cursor("file").unwrap(), Some(3));
}

#[test]
fn appends_at_a_cursor_only_while_it_is_where_the_caller_read_it() {
    let store = store();
    let first = store.append_audit(&audit("login_failed", NOW)).unwrap();
    // A cursor never set: only `None` claims it.
    assert_eq!(
        store
            .append_audit_at_cursor("alerts", Some(0), first, &[audit("alert", NOW)])
            .unwrap(),
        None
    );
    let stored = store
        .append_audit_at_cursor("alerts", None, first, &[audit("alert", NOW)])
        .unwrap()
        .expect("the cursor was unset");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event.event, "alert");
    assert!(stored[0].event.id > first);
    assert_eq!(store.audit_export_cursor("alerts").unwrap(), Some(first));
    // A second claim from the same place loses and appends nothing.
    assert_eq!(
        store
            .append_audit_at_cursor("alerts", None, first, &[audit("alert", NOW)])
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .append_audit_at_cursor("alerts", Some(first - 1), first, &[])
            .unwrap(),
        None
    );
    // Moving on with nothing to append is a claim too.
    assert_eq!(
        store
            .append_audit_at_cursor("alerts", Some(first), stored[0].event.id, &[])
            .unwrap(),
        Some(Vec::new())
    );
    assert_eq!(
        store.audit_export_cursor("alerts").unwrap(),
        Some(stored[0].event.id)
    );
    let alerts = AuditFilter {
        event: Some("alert".into()),
        ..AuditFilter::default()
    };
    assert_eq!(store.search_audit(&alerts, 10, None).unwrap().len(), 1);
    assert!(crate::store::audit::verify(&*store).is_ok());
}

#[test]
fn racing_appends_at_one_cursor_append_once() {
    let store = store();
    let head = store.append_audit(&audit("login_failed", NOW)).unwrap();
    store.set_audit_export_cursor("alerts", head).unwrap();
    let won: Vec<bool> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    store
                        .append_audit_at_cursor("alerts", Some(head), head + 1, &[audit("alert", NOW)])
                        .unwrap()
                        .is_some()
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let alerts = AuditFilter {
        event: Some("alert".into()),
        ..AuditFilter::default()
    };
    assert_eq!(store.search_audit(&alerts, 10, None).unwrap().len(), 1);
}
