//! `remove`, `leave` and `gc`: the group lifecycle.

use anyhow::Result;
use sma::lifecycle::{parse_duration, RemovalReport};
use sma_imap::Transport as _;

use super::{parse_device_id, Ctx};

impl Ctx<'_> {
    /// `sma remove ID [--rotate-account-key]`
    pub(crate) async fn remove(&self, id: &str, rotate: bool) -> Result<()> {
        let id = parse_device_id(id)?;
        let (mut dev, mut t) = self.connected().await?;
        let report = dev.remove(&mut t, &id, rotate).await?;
        let _ = t.logout().await;
        self.emit_removed(&report, || {
            let pending = if report.pending_acks.is_empty() {
                " Every remaining member has acknowledged it.".to_owned()
            } else {
                let waiting: Vec<String> = report.pending_acks.iter().map(|d| d.to_string()).collect();
                format!(
                    " The removal is pending until every remaining member has acknowledged it; waiting for {} \
                     (they learn of it at their next sync; `sma status` shows the progress).",
                    waiting.join(", ")
                )
            };
            format!(
                "Removed device {id}: no member seals anything to it any more, its announcement is deleted and its inbox holds a signed removal notice.{}{}",
                if rotate {
                    " A new account key was made and shared with the remaining members only (see `sma account-key show`)."
                } else {
                    ""
                },
                pending
            )
        })
    }

    /// `sma leave`
    pub(crate) async fn leave(&self) -> Result<()> {
        let (mut dev, mut t) = self.connected().await?;
        let report = dev.leave(&mut t).await?;
        let _ = t.logout().await;
        self.emit_removed(&report, || {
            "This device left the group: the other members were told, its folders are deleted and its keys wiped. Run `sma init` with a fresh --home to set it up again.".to_string()
        })
    }

    /// `sma gc [--expire-after DURATION]`
    pub(crate) async fn gc(&self, expire_after: Option<&str>) -> Result<()> {
        let policy = expire_after.map(parse_duration).transpose()?;
        let (mut dev, mut t) = self.connected().await?;
        let report = dev.gc(&mut t, policy).await?;
        let _ = t.logout().await;
        self.emit_removed(&report, || {
            if report.removed.is_empty() {
                "No device was silent past the expiry policy.".to_string()
            } else {
                format!("Expired: {}", report.removed.join(", "))
            }
        })
    }

    fn emit_removed(&self, report: &RemovalReport, human: impl FnOnce() -> String) -> Result<()> {
        self.out.emit(report, human)
    }
}
