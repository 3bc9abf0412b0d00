//! `remove`, `leave` and `gc`: the group lifecycle.

use anyhow::Result;
use sma::Error;

use super::Ctx;

impl Ctx<'_> {
    /// `sma remove ID [--rotate-account-key]`
    pub(crate) async fn remove(&self, _id: &str, _rotate: bool) -> Result<()> {
        Err(Error::NotImplemented("remove").into())
    }

    /// `sma leave`
    pub(crate) async fn leave(&self) -> Result<()> {
        Err(Error::NotImplemented("leave").into())
    }

    /// `sma gc [--expire-after DURATION]`
    pub(crate) async fn gc(&self, _expire_after: &str) -> Result<()> {
        Err(Error::NotImplemented("gc").into())
    }
}
