//! What deleting does on the server (PROTOCOL 3.5): the `status` line and
//! the `doctor` check.

use sma::status::DeleteView;
use sma::{Detection, Device};
use sma_imap::Transport;

use super::doctor::{ok, warn, Check};

/// The `Deleting:` line of human `status` output.
pub(crate) fn delete_line(d: &DeleteView) -> String {
    let how = if d.method == "trash" {
        format!(
            "an expunge only archives (to {}); sma moves its messages to {} and expunges them there",
            d.all_mail.as_deref().unwrap_or("All Mail"),
            d.trash.as_deref().unwrap_or("the Trash")
        )
    } else {
        "an expunge deletes".to_owned()
    };
    format!("{how} ({})", detected(d.detected_by))
}

fn detected(by: &str) -> &'static str {
    match by {
        "capability" => "the server is Gmail: X-GM-EXT-1",
        "probe" => "found by the probe at init",
        _ => "not checked: set up by an older sma",
    }
}

/// `doctor`'s `delete` check: what deleting does, whether the Trash that
/// sma deletes through is still there; with `fix`, checks again (the
/// probe of `init`) and records the result.
pub(crate) async fn delete_check<T: Transport>(dev: &mut Device, t: &mut T, fix: bool) -> Check {
    let stored = dev.info().delete.clone();
    let trash_gone = match (&stored.trash, stored.archives) {
        (Some(trash), true) => match t.special_use_folders().await {
            Ok(found) => !found
                .iter()
                .any(|f| &f.name == trash && f.has_attribute("\\Trash")),
            Err(e) => return warn("delete", e.to_string(), "check the connection and retry"),
        },
        _ => false,
    };
    let behaviour = if fix && (stored.detected_by == Detection::NotChecked || trash_gone) {
        match dev.check_delete_behaviour(t).await {
            Ok(b) => b,
            Err(e) => {
                return warn(
                    "delete",
                    format!("could not check what deleting does on the server: {e}"),
                    "retry `sma doctor --fix`",
                )
            }
        }
    } else {
        stored
    };
    let view = DeleteView::new(&behaviour, t.capabilities());
    let line = delete_line(&view);
    if behaviour.detected_by == Detection::NotChecked {
        return warn(
            "delete",
            line,
            "run `sma doctor --fix` to check whether deleting archives on this server",
        );
    }
    if trash_gone && !fix {
        return warn(
            "delete",
            format!(
                "{line}; but the Trash folder {} is gone",
                behaviour.trash.as_deref().unwrap_or_default()
            ),
            "run `sma doctor --fix` to find the Trash folder again",
        );
    }
    if view.archives && view.trash.is_none() {
        return warn(
            "delete",
            format!("{line}; but the server shows no \\Trash folder, so sma's deleted messages stay in All Mail"),
            "make the Trash visible over IMAP (Gmail: Settings, Labels, Trash: show in IMAP), then run `sma doctor --fix`",
        );
    }
    ok("delete", line)
}
