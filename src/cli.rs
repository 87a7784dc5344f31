//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "sealgate",
    version,
    about = "MCP governance gateway with a tamper-evident audit ledger"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Config file (TOML). Default: ./sealgate.toml if it exists.
    #[arg(long, global = true, env = "SEALGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory. Default: the config's `data_dir`, else ./sealgate-data.
    #[arg(long, global = true, env = "SEALGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory of signing key files. Default: the config's `key_dir`, else DATA_DIR/keys.
    #[arg(long, global = true, env = "SEALGATE_KEY_DIR")]
    pub key_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the data directory, a signing key and the ledger's genesis event.
    Init {
        /// Use this existing key file instead of generating one (it is copied into the key directory).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Principal recorded as the actor of the genesis event.
        #[arg(long, default_value = "sealgate:init")]
        principal: String,
    },
    /// Generate an Ed25519 signing key file (mode 0600; never overwrites).
    Keygen {
        /// Where to write the key.
        #[arg(long, short = 'o')]
        out: PathBuf,
    },
    /// Rotate the signing key: a `key.rotated` event signed by the current key introduces the new one.
    RotateKey {
        /// Key file of the new key (default: generate one).
        #[arg(long)]
        new_key: Option<PathBuf>,
        /// Why the key is rotated (recorded in the event).
        #[arg(long)]
        reason: Option<String>,
        /// Principal recorded as the actor of the rotation.
        #[arg(long, default_value = "sealgate:operator")]
        principal: String,
    },
    /// Append events from JSON lines on stdin; prints `SEQ HASH` per event once it is durable.
    Append {
        /// Lines validated and written together. 0 (default) validates the whole input before
        /// writing any of it; 1 streams line by line.
        #[arg(long, default_value_t = 0)]
        batch_size: usize,
        #[arg(long, short = 'o', value_enum, default_value_t = AckFormat::Text)]
        output: AckFormat,
    },
    /// Show events.
    Log {
        #[command(flatten)]
        range: Range,
        /// Only these kinds (repeatable).
        #[arg(long)]
        kind: Vec<String>,
        /// Show at most this many events.
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long, short = 'o', value_enum, default_value_t = LogFormat::Table)]
        output: LogFormat,
    },
    /// Verify hashes, links, signatures, key validity, sequence and time order.
    Verify {
        #[command(flatten)]
        range: Range,
        /// A head written down earlier, `SEQ:HASH`, that must still be part of the log.
        #[arg(long)]
        head: Option<String>,
        /// How far (milliseconds) a timestamp may go back from its predecessor's.
        #[arg(long, default_value_t = 0)]
        time_tolerance_ms: u64,
        /// Show a progress bar even when stderr is not a terminal.
        #[arg(long)]
        progress: bool,
        #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Text)]
        output: ReportFormat,
    },
    /// Print the current head: sequence number, hash and key id, to pin the log.
    Head {
        #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Text)]
        output: ReportFormat,
    },
    /// Run the gateway over HTTP: `/mcp/{server}` for every configured server.
    Serve,
    /// Run one gateway session on stdin/stdout, relayed to a configured server
    /// (the form a desktop MCP client puts in its config).
    Stdio {
        /// The configured server to relay to.
        #[arg(long)]
        server: String,
        /// Principal recorded on every event. Default: the config's `gateway.stdio_principal`.
        #[arg(long)]
        principal: Option<String>,
    },
    /// Manage static bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Generate a token: prints it once on stdout; the tokens file keeps only its SHA-256.
    Create {
        #[arg(long)]
        principal: String,
        /// A team of the principal (repeatable).
        #[arg(long)]
        team: Vec<String>,
        /// Append the entry to this tokens file (else print it on stderr).
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

/// A range of the log by sequence number or RFC 3339 time.
#[derive(Args, Debug, Clone)]
pub struct Range {
    /// First event: a sequence number or an RFC 3339 time (2026-07-14T00:00:00Z).
    #[arg(long)]
    pub from: Option<String>,
    /// Last event (inclusive): a sequence number or an RFC 3339 time.
    #[arg(long)]
    pub to: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Table,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Text,
    Json,
}
