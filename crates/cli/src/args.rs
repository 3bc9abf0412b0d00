//! Command-line arguments (clap). Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sma_crypto::PreferEncrypt;

/// sma — keep every mail program of one email account in sync.
///
/// sma lets the mail programs on your devices find each other through
/// dedicated folders on the account's own IMAP server, pair with a short code,
/// and share the account's Autocrypt key and keyring, end-to-end encrypted.
///
/// Typical first steps:
///   sma --home ~/sma/laptop init --server imap.example.org --user alice@example.org
///   sma --home ~/sma/phone  init --server imap.example.org --user alice@example.org
///   sma --home ~/sma/laptop pair    # shows a code
///   sma --home ~/sma/phone  join    # type the code
///
/// A device can talk JMAP instead of IMAP (same account, same group):
///   sma --home ~/sma/tablet init --jmap https://HOST/.well-known/jmap --user alice@example.org
///
/// The IMAP password comes from --password-file, --password-command or the
/// SMA_PASSWORD environment variable (in that order). Accounts that need
/// OAuth 2.0 (Outlook.com, Microsoft 365, optionally Gmail) log in with
/// --oauth2-token-command instead, given once to `init`, e.g.
///   sma init --user alice@outlook.com --oauth2-token-command 'oama access alice@outlook.com'
#[derive(Debug, Parser)]
// Verbatim: the examples in the doc comment above keep their lines.
#[command(
    name = "sma",
    version,
    propagate_version = true,
    max_term_width = 100,
    verbatim_doc_comment
)]
pub struct Cli {
    /// Directory holding this device's state [default: a per-account folder
    /// under the platform data directory].
    #[arg(long, global = true, env = "SMA_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Print one JSON object per line on stdout (errors as JSON on stderr).
    #[arg(long, global = true)]
    pub json: bool,

    /// More log output on stderr (-v: info, -vv: debug, -vvv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Read the IMAP password from this file (first line).
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Run this shell command and use the first line of its output as the IMAP password.
    #[arg(long, global = true, value_name = "CMD")]
    pub password_command: Option<String>,

    /// Log in with OAuth 2.0 instead of a password: run this shell command
    /// (sh -c, no input, at most 120 s) for every connection and use the
    /// first line of its output as the access token (AUTHENTICATE
    /// OAUTHBEARER, else XOAUTH2), e.g. `oama access alice@outlook.com`.
    /// `init` stores the command (never a token) in the home; given to a
    /// later command, it replaces the stored one.
    #[arg(
        long,
        global = true,
        value_name = "CMD",
        conflicts_with_all = ["password_file", "password_command"]
    )]
    pub oauth2_token_command: Option<String>,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// IMAP connection security.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SecurityArg {
    /// Implicit TLS (default port 993).
    Tls,
    /// Plain connection upgraded with STARTTLS (default port 143).
    Starttls,
    /// No encryption (loopback only unless --allow-insecure).
    Plain,
}

/// Inbox folder layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    /// `_Autocrypt_SMA_<id>` next to the announcements folder.
    Flat,
    /// `_Autocrypt_SMA/<id>` below it (servers with a hierarchy).
    Nested,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create this device; found the group or announce it as pending.
    ///
    /// If the account has no SMA yet, this device founds the group: it creates
    /// the announcements folder and its inbox, announces itself and generates
    /// the account key (or imports it from an Autocrypt Setup Message).
    /// Otherwise it announces itself as pending: then run `sma pair` on a
    /// member device and `sma join --code ...` here.
    ///
    /// OAuth 2.0 (Outlook.com and Microsoft 365 need it; Gmail takes it
    /// instead of an app password): pass --oauth2-token-command CMD, a
    /// command that prints a current access token for the account on its
    /// first line. A token helper such as `oama access ADDR` or mutt's
    /// `mutt_oauth2.py TOKENFILE` does the browser authorization once and
    /// refreshes the token later. sma stores the command (never a token) and
    /// runs it for every connection, so later commands need only --home; no
    /// password is read. If the command fails, prints nothing or takes
    /// longer than 120 s, sma says so and exits 1; a token the server
    /// rejects exits 3.
    ///
    /// JMAP: pass --jmap URL instead of --server, with URL the server's JMAP
    /// session resource (usually https://HOST/.well-known/jmap). The device
    /// then talks JMAP for good, and pairs and messages with the account's
    /// IMAP devices, which see the same folders.
    #[command(
        after_long_help = "Examples:\n  sma init --user alice@posteo.de            # provider from the address\n  sma init --server imap.example.org --user alice@example.org\n  sma init --user alice@outlook.com --oauth2-token-command 'oama access alice@outlook.com'\n  sma init --jmap https://mail.example.org/.well-known/jmap --user alice@example.org"
    )]
    Init(InitArgs),
    /// Pair a pending device: show a code and wait until it has joined.
    ///
    /// Ends with exit 1 ("gone from its inbox") if the device joined
    /// through another member's code meanwhile.
    Pair {
        /// The pending device to pair [default: the newest one].
        #[arg(long, value_name = "ID")]
        device: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600, value_name = "SECS")]
        timeout: u64,
    },
    /// Complete pairing on this (pending) device with the code shown by `sma pair`.
    ///
    /// If two members show codes for this device at once, type either: the
    /// code's first digit says which member's request it belongs to, and
    /// the other member's `pair` ends on its own. A first digit that fits no
    /// waiting request exits 3 at once without using any code: type it
    /// again.
    Join {
        /// The code shown on the member device (spaces and dashes are
        /// ignored). Without it, sma asks for the code on the terminal, or
        /// reads one line from standard input; an option is visible to other
        /// local users in the process list, so prefer typing it.
        #[arg(long)]
        code: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300, value_name = "SECS")]
        timeout: u64,
    },
    /// Show this device, the group, the server and the SMA folders.
    Status,
    /// List every known device (one JSON line each with --json).
    Devices,
    /// Send an application message to another device of this account.
    Send {
        /// Recipient device id.
        #[arg(
            long,
            value_name = "ID",
            conflicts_with = "all",
            required_unless_present = "all"
        )]
        to: Option<String>,
        /// Send to every other member.
        #[arg(long)]
        all: bool,
        /// Application-defined message kind.
        #[arg(long, default_value = "text")]
        kind: String,
        /// File holding the message body (`-` or nothing: standard input).
        file: Option<PathBuf>,
    },
    /// Receive every waiting application message (and remove them).
    Recv {
        /// Wait up to this many seconds for at least one message (exit 5 if none came).
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
    },
    /// Run one sync round: fetch and apply, heartbeat and expiry if due, send.
    Sync,
    /// Keep syncing until interrupted (IDLE, with polling), printing events.
    Watch,
    /// The replicated Autocrypt keyring.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the `Autocrypt:` header value for outgoing mail from this account.
    ///
    /// Made from the account key and the prefer-encrypt setting, e.g. for a
    /// mail program's send hook: `Autocrypt: $(sma autocrypt-header)`.
    #[command(name = "autocrypt-header")]
    AutocryptHeader {
        /// Fold the value into lines of at most 78 characters (continuation
        /// lines start with a space).
        #[arg(long)]
        fold: bool,
    },
    /// The shared account key.
    #[command(subcommand, name = "account-key")]
    AccountKey(AccountKeyCommand),
    /// Autocrypt Level 1 Setup Message export and import.
    #[command(subcommand, name = "setup-message")]
    SetupMessage(SetupMessageCommand),
    /// Expel a device (a lost phone): delete its folders, stop sealing to it.
    Remove {
        /// The device to remove.
        id: String,
        /// Also make a new account key shared only with the remaining members.
        #[arg(long)]
        rotate_account_key: bool,
    },
    /// Leave the group from this device (it stops and forgets the group).
    Leave,
    /// Expire devices that were silent for longer than the policy.
    Gc {
        /// Silence after which a device expires, e.g. `90d`, `12h`, `3s`, for
        /// this run only; the stored policy that `sync` applies changes only
        /// with `sma config set expire-after` [default: the stored policy,
        /// else 90d].
        #[arg(long, value_name = "DURATION")]
        expire_after: Option<String>,
    },
    /// Show or change this device's stored settings.
    ///
    /// Keys: expire-after (the expiry policy of `sync`), server.host,
    /// server.port, server.security, server.ca-file, server.allow-insecure,
    /// user (read-only), password-command (used when no password option is
    /// given), oauth2-token-command, password-saved (read-only). An empty
    /// value unsets an optional setting or restores a default.
    #[command(
        subcommand,
        after_long_help = "Examples:\n  sma config list\n  sma config set expire-after 30d\n  sma config set password-command 'pass show mail/alice'\n  sma config set server.host imap.new-host.example"
    )]
    Config(ConfigCommand),
    /// Serve the library API as JSON-RPC 2.0 (one object per line).
    Serve {
        /// Speak JSON-RPC on standard input and output.
        #[arg(long)]
        stdio: bool,
        /// Print the OpenRPC description and exit.
        #[arg(long)]
        openrpc: bool,
    },
    /// Check the server and this device's setup, and say what to fix.
    ///
    /// Checks the server's capabilities, the SMA folders (present, not
    /// subscribed), the clock against the server's, and IDLE. With --json,
    /// one line per check: {"check", "status": "ok"|"warn"|"fail", "detail",
    /// "fix"}. Exits 0 unless a check fails.
    Doctor {
        /// Also fix what can be fixed safely (unsubscribe SMA folders).
        #[arg(long)]
        fix: bool,
    },
    /// Print a shell completion script (e.g. `sma completions bash > /etc/bash_completion.d/sma`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `sma man | man -l -`.
    Man,
}

/// Arguments of `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// IMAP server, `HOST` or `HOST:PORT` [default: the built-in settings
    /// of the address's provider, e.g. imap.gmail.com:993 for
    /// @gmail.com; see docs/COMPATIBILITY.md].
    #[arg(long, value_name = "HOST[:PORT]")]
    pub server: Option<String>,
    /// Talk JMAP (RFC 8620/8621) instead of IMAP: the URL of the server's
    /// JMAP session resource, usually `https://HOST/.well-known/jmap` (e.g.
    /// https://api.fastmail.com/jmap/session for Fastmail). The device
    /// joins the same group as the account's IMAP devices: both see the
    /// same folders. `http://` only to a loopback address unless
    /// --allow-insecure. Log in with the password (HTTP Basic), or with
    /// --oauth2-token-command (a Bearer token); later commands connect over
    /// JMAP by themselves.
    #[arg(long, value_name = "URL", conflicts_with_all = ["server", "security"])]
    pub jmap: Option<String>,
    /// Login (the account address), over IMAP or JMAP.
    #[arg(long)]
    pub user: String,
    /// Connection security of --server [default: tls].
    #[arg(long, value_enum, requires = "server")]
    pub security: Option<SecurityArg>,
    /// PEM file of the CA(s) to trust instead of the web PKI (private servers).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Allow --security plain (or an http:// --jmap URL) to a host that is
    /// not loopback (the password and everything else travel unencrypted).
    #[arg(long)]
    pub allow_insecure: bool,
    /// Name of this device [default: the host name].
    #[arg(long)]
    pub name: Option<String>,
    /// Inbox folder layout, if this device founds the group.
    #[arg(long, value_enum, default_value = "flat")]
    pub layout: LayoutArg,
    /// Found the group with the key from this Autocrypt Setup Message.
    #[arg(long, value_name = "FILE")]
    pub import_setup: Option<PathBuf>,
    /// The setup code of --import-setup (36 digits, dashes optional).
    /// Without it, sma asks for it on the terminal or reads one line from
    /// standard input (an option is visible to other local users).
    #[arg(long, value_name = "CODE", requires = "import_setup")]
    pub setup_code: Option<String>,
    /// Store the password in the home (readable only by you) so later
    /// commands need none (not with --oauth2-token-command, whose command
    /// is always stored).
    #[arg(long)]
    pub save_password: bool,
}

/// Parses a prefer-encrypt value: `mutual` (encrypt by default when the
/// correspondent also says mutual) or `nopreference`.
fn prefer_encrypt(s: &str) -> Result<PreferEncrypt, String> {
    s.parse()
}

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Apply the Autocrypt Level 1 update rules for one received message.
    ///
    /// Either give the message's headers (--from, --date, --autocrypt,
    /// --gossip) or the whole message with --message (a file, or `-` for
    /// standard input), e.g. from a mail program's receive hook. Gossip is
    /// read from the message's headers, so pass the decrypted message.
    /// Changes replicate to the other devices with the next `sma sync`.
    Observe {
        /// The From address.
        #[arg(long, required_unless_present = "message", conflicts_with = "message")]
        from: Option<String>,
        /// The Date header (RFC 2822).
        #[arg(long, required_unless_present = "message", conflicts_with = "message")]
        date: Option<String>,
        /// The Autocrypt header value (absent: the message had none).
        #[arg(long, conflicts_with = "message")]
        autocrypt: Option<String>,
        /// An Autocrypt-Gossip header value (repeatable).
        #[arg(long, conflicts_with = "message")]
        gossip: Vec<String>,
        /// The whole received RFC 5322 message (`-`: standard input).
        #[arg(long, value_name = "FILE")]
        message: Option<PathBuf>,
    },
    /// Import a correspondent's public key, as if it came in an Autocrypt header.
    Import {
        /// The address.
        addr: String,
        /// File with the key (ASCII-armored, binary, or base64 keydata).
        file: PathBuf,
        /// Effective date (RFC 2822) [default: now].
        #[arg(long)]
        date: Option<String>,
        /// Prefer-encrypt setting: `mutual` or `nopreference`.
        #[arg(long, default_value = "nopreference", value_parser = prefer_encrypt, value_name = "mutual|nopreference")]
        prefer_encrypt: PreferEncrypt,
    },
    /// List every peer in the keyring.
    List,
    /// Show one peer with its public key.
    Show {
        /// The address.
        addr: String,
    },
    /// Autocrypt recommendation for encrypting to these addresses.
    Recommend {
        /// The addresses.
        #[arg(required = true)]
        addrs: Vec<String>,
        /// The message replies to an encrypted message.
        #[arg(long)]
        reply_to_encrypted: bool,
    },
    /// Show or set this account's own prefer-encrypt setting (replicated).
    PreferEncrypt {
        /// The new setting, `mutual` or `nopreference` (absent: show the
        /// current one).
        #[arg(value_parser = prefer_encrypt, value_name = "mutual|nopreference")]
        value: Option<PreferEncrypt>,
    },
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Every setting with its value (`(default)` when nothing is stored).
    List,
    /// One setting's value.
    Get {
        /// The setting, e.g. `expire-after`.
        key: String,
    },
    /// Change a setting (checked first; an empty value unsets it).
    Set {
        /// The setting, e.g. `expire-after`.
        key: String,
        /// The new value, e.g. `30d`.
        value: String,
    },
}

/// `account-key` subcommands.
#[derive(Debug, Subcommand)]
pub enum AccountKeyCommand {
    /// Fingerprint, creation time and algorithm of the account key.
    Show,
    /// Export the account key, ASCII-armored (usable by `gpg --import`).
    Export {
        /// Export the secret key (keep it safe!).
        #[arg(long)]
        secret: bool,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// `setup-message` subcommands.
#[derive(Debug, Subcommand)]
pub enum SetupMessageCommand {
    /// Write an Autocrypt Setup Message of the account key; prints the setup code once.
    Export {
        /// Where to write the message.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Import an Autocrypt Setup Message as the group's account key.
    Import {
        /// The setup message (whole message or its armored attachment).
        file: PathBuf,
        /// The 36-digit setup code (dashes and spaces optional). Without it,
        /// sma asks for it on the terminal or reads one line from standard
        /// input (an option is visible to other local users).
        #[arg(long, value_name = "CODE")]
        setup_code: Option<String>,
    },
}
