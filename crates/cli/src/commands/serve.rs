//! `serve`: JSON-RPC 2.0 over standard input and output.

use anyhow::Result;
use sma::Error;

use super::Ctx;

impl Ctx<'_> {
    /// `sma serve --stdio | --openrpc`
    pub(crate) async fn serve(&self, _stdio: bool, _openrpc: bool) -> Result<()> {
        Err(Error::NotImplemented("serve").into())
    }
}
