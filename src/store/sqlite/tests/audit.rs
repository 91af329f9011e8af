//! `AuditStore`.

use super::*;

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

    let conn = store.lock();
    let update = conn.execute("UPDATE audit_events SET event = 'forged'", []);
    assert!(
        update
            .unwrap_err()
            .to_string()
            .contains("audit_events is append-only")
    );
    let delete = conn.execute("DELETE FROM audit_events", []);
    assert!(
        delete
            .unwrap_err()
            .to_string()
            .contains("audit_events is append-only")
    );
    let count: i64 = conn
        .query_row("SELECT count(*) FROM audit_events", [], |row| row.get(0))
        .unwrap();
    assert_eq!(count, 6);
}
