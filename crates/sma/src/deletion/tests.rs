//! Unit tests of the deletion policy and the rule that it is the only
//! place that deletes.

use super::*;

fn caps(raw: &[&str]) -> Capabilities {
    Capabilities::from_raw(raw.iter().map(|c| (*c).to_owned()).collect())
}

#[test]
fn the_mode_follows_the_stored_behaviour_and_x_gm_ext_1() {
    let plain = caps(&["IMAP4rev1", "UIDPLUS"]);
    let gmail = caps(&["IMAP4rev1", "UIDPLUS", "X-GM-EXT-1"]);
    let unchecked = DeleteBehaviour::default();
    assert_eq!(Deletion::new(&unchecked, &plain), Deletion::expunge());
    assert_eq!(Deletion::new(&unchecked, &gmail).describe(), "trash");
    let expunges = DeleteBehaviour {
        detected_by: Detection::Probe,
        ..DeleteBehaviour::default()
    };
    assert_eq!(Deletion::new(&expunges, &gmail), Deletion::expunge());
    let archives = DeleteBehaviour {
        archives: true,
        detected_by: Detection::Probe,
        trash: Some("Trash".into()),
        all_mail: Some("All".into()),
    };
    assert_eq!(
        Deletion::new(&archives, &plain).mode,
        Mode::ViaTrash("Trash".into())
    );
}

#[test]
fn header_fields_are_read_unfolded_and_bounded_to_ascii() {
    let h = b"From: <a@b>\r\nmessage-id:\r\n  <x@sma.invalid>\r\nSubject: s\r\n\r\n";
    assert_eq!(
        header_field(h, "Message-ID").as_deref(),
        Some("<x@sma.invalid>")
    );
    assert_eq!(header_field(h, "To"), None);
    assert_eq!(header_field(b"Message-ID: \r\n\r\n", "Message-ID"), None);
    assert_eq!(
        header_field("Message-ID: <\u{e9}>\r\n".as_bytes(), "Message-ID"),
        None
    );
    assert_eq!(header_field(&[0xff, b':', b'x'], "Message-ID"), None);
}

/// Every deletion in the driver goes through this module: no other source
/// file of the crate calls the transport's `delete_messages` or `delete`.
/// `session.rs` is exempt: it implements the transport (delegating each
/// call to the IMAP or JMAP session), it does not decide to delete.
#[test]
fn no_other_module_deletes_on_its_own() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                if !path.ends_with("deletion") {
                    stack.push(path);
                }
                continue;
            }
            if path.ends_with("session.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            for (i, line) in text.lines().enumerate() {
                if line.contains(".delete_messages(") || line.contains("t.delete(") {
                    offenders.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "delete through crate::deletion::Deletion instead:\n{}",
        offenders.join("\n")
    );
}
