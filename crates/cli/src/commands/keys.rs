//! `keys`: the replicated Autocrypt keyring.

use anyhow::Result;
use sma::Error;

use super::Ctx;
use crate::args::KeysCommand;

impl Ctx<'_> {
    /// `sma keys ...`
    pub(crate) async fn keys(&self, _cmd: &KeysCommand) -> Result<()> {
        Err(Error::NotImplemented("keys").into())
    }
}
