//! `serve`: JSON-RPC 2.0 over standard input and output.

use anyhow::{Context, Result};
use sma::Error;

use super::Ctx;
use crate::rpc::{self, protocol::RpcError};

impl Ctx<'_> {
    /// `sma serve --stdio | --openrpc`
    pub(crate) async fn serve(&self, stdio: bool, openrpc: bool) -> Result<()> {
        if openrpc {
            let doc = serde_json::to_string_pretty(&rpc::openrpc::document())
                .context("cannot render the OpenRPC description")?;
            println!("{doc}");
            return Ok(());
        }
        if !stdio {
            return Err(Error::Usage(
                "choose a transport: `sma serve --stdio` (JSON-RPC on standard input and output) or `sma serve --openrpc` (print the description)".into(),
            )
            .into());
        }
        let settings = rpc::Settings {
            home: self.home().map_err(|e| RpcError::from_anyhow(&e)),
            password_file: self.cli.password_file.clone(),
            password_command: self.cli.password_command.clone(),
            oauth2_token_command: self.cli.oauth2_token_command.clone(),
        };
        rpc::serve(settings, tokio::io::stdin(), tokio::io::stdout())
            .await
            .context("JSON-RPC server: standard input or output failed")?;
        Ok(())
    }
}
