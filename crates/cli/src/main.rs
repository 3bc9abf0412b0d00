//! The `sma` command-line program: a thin front end over the `sma` library.

mod args;
mod commands;
mod outfile;
mod output;
mod rpc;
mod secrets;
mod views;

use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;
use crate::output::Output;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
    let out = Output::new(cli.json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.error(
                &anyhow::anyhow!("cannot start the async runtime: {e}"),
                "failed",
            );
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli, &out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let kind = err
                .chain()
                .find_map(|e| e.downcast_ref::<sma::Error>())
                .map(|e| e.kind())
                .unwrap_or(sma::ErrorKind::Failed);
            out.error(&err, kind.as_str());
            ExitCode::from(kind.exit_code() as u8)
        }
    }
}

fn init_tracing(cli: &Cli) {
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SMA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
