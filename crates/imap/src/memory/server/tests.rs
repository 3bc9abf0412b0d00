//! Unit tests of the in-memory server.

use super::*;

#[test]
fn wildcards() {
    assert!(wildcard(b"*", b"a.b"));
    assert!(wildcard(b"_A*", b"_A_x"));
    assert!(!wildcard(b"%", b"a.b"));
    assert!(wildcard(b"a.%", b"a.b"));
    assert!(wildcard(b"INBOX", b"INBOX"));
    assert!(!wildcard(b"INBOX", b"INBOXES"));
}

#[test]
fn uids_ascend_and_validity_reset_renumbers() {
    let mut s = Server::new();
    let c = s.connect();
    s.create("F").unwrap();
    assert_eq!(s.create("F").unwrap(), CreateOutcome::AlreadyExisted);
    assert_eq!(s.append("F", b"a\r\n\r\n").unwrap(), 1);
    assert_eq!(s.append("F", b"b\r\n\r\n").unwrap(), 2);
    let v = s.select(c, "F", false).unwrap().uid_validity;
    s.delete_messages(c, &[1]).unwrap();
    assert!(!s.take_changed(c).unwrap(), "own expunge is not a change");
    assert_eq!(s.append("F", b"c\r\n\r\n").unwrap(), 3);
    assert!(s.take_changed(c).unwrap());
    s.reset_uid_validity("F");
    assert!(!s.alive(c));
    let c2 = s.connect();
    let st = s.select(c2, "F", true).unwrap();
    assert_ne!(st.uid_validity, v);
    let uids: Vec<_> = s
        .fetch_headers(c2, UidRange::all())
        .unwrap()
        .iter()
        .map(|h| h.uid)
        .collect();
    assert_eq!(uids, vec![1, 2]);
    assert!(matches!(
        s.append("G", b"x"),
        Err(ImapError::NoSuchFolder { .. })
    ));
    s.delete(Some(c2), "F").unwrap();
    assert!(s.alive(c2));
    assert!(matches!(
        s.fetch_headers(c2, UidRange::all()),
        Err(ImapError::InvalidArgument(_))
    ));
}
