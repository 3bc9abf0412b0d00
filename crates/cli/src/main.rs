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
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
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

/// Parses the command line. Help and version go to stdout as clap prints
/// them; a usage error is clap's text, or under `--json` one JSON object on
/// stderr (`"kind":"usage"`), with exit status 2 either way.
fn parse_args() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    let err = match Cli::try_parse() {
        Ok(cli) => return Ok(cli),
        Err(err) => err,
    };
    let help = matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    );
    if help || !wants_json(std::env::args_os()) {
        let _ = err.print();
        return Err(ExitCode::from(if help { 0 } else { 2 }));
    }
    let text = if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        "a command is missing: run `sma --help` (or `sma COMMAND --help`) for the list".to_owned()
    } else {
        usage_error_text(&err.render().to_string())
    };
    Output::new(true).error(&anyhow::anyhow!(text), "usage");
    Err(ExitCode::from(2))
}

/// Whether `--json` is among the options (before a `--` that ends them).
fn wants_json(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    args.skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// clap's rendering of a usage error as one line: the message without its
/// `error: ` prefix, clap's tips, then the usage line.
fn usage_error_text(rendered: &str) -> String {
    let mut message = String::new();
    let mut usage = None;
    for line in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(u) = line.strip_prefix("Usage: ") {
            usage = Some(u.to_owned());
        } else if !line.starts_with("For more information") {
            if !message.is_empty() {
                message.push_str("; ");
            }
            message.push_str(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    if message.is_empty() {
        message.push_str("invalid command line");
    }
    match usage {
        Some(u) => format!("{message} (usage: {u}; see --help)"),
        None => format!("{message} (see --help)"),
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
    // Colours only for a person at a terminal: a log redirected to a file
    // (`2> sma.log`) stays plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::{usage_error_text, wants_json};

    #[test]
    fn json_is_wanted_only_as_an_option() {
        let args = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert!(wants_json(args(&["sma", "status", "--json"]).into_iter()));
        assert!(wants_json(args(&["sma", "--json", "nope"]).into_iter()));
        assert!(!wants_json(
            args(&["sma", "send", "--", "--json"]).into_iter()
        ));
        assert!(
            !wants_json(args(&["--json", "status"]).into_iter()),
            "argv[0] is the program"
        );
    }

    #[test]
    fn a_usage_error_is_one_line_without_the_prefix() {
        let text = usage_error_text(
            "error: unexpected argument '--frob' found\n\nUsage: sma status\n\nFor more information, try '--help'.\n",
        );
        assert_eq!(
            text,
            "unexpected argument '--frob' found (usage: sma status; see --help)"
        );
        let tipped = usage_error_text(
            "error: unexpected argument '-x' found\n\n  tip: to pass '-x' as a value, use '-- -x'\n\nUsage: sma send [FILE]\n",
        );
        assert_eq!(
            tipped,
            "unexpected argument '-x' found; tip: to pass '-x' as a value, use '-- -x' (usage: sma send [FILE]; see --help)"
        );
    }
}
