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
    /// Find the events that carried a value output safety redacted (by its keyed digests;
    /// docs/EVENTS.md "Findable redactions"). Reads the ledger and the ledger's find key.
    Find {
        /// The value: whole (`billing+cust-4711@example.com`) or a part of a redacted personal
        /// value (`cust-4711`, `example.com`); case-insensitive, at least 3 characters.
        #[arg(long, required_unless_present = "value_stdin")]
        value: Option<String>,
        /// Read the value from stdin instead (keeps it out of the process list and shell history).
        #[arg(long, conflicts_with = "value")]
        value_stdin: bool,
        #[command(flatten)]
        range: Range,
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
    /// Print a signed checkpoint (c2sp.org/tlog-checkpoint) of the Merkle tree over the log:
    /// origin, tree size and root hash, signed with the ledger's current key. Keep it: proofs
    /// are checked against it later (docs/FORMAT.md, "Checkpoints and proofs").
    Checkpoint {
        /// The tree of the first N events (default: every event up to the head).
        #[arg(long)]
        size: Option<u64>,
        /// The checkpoint the gateway last issued, with the witnesses' cosignatures.
        #[arg(long, conflicts_with = "size")]
        issued: bool,
    },
    /// Print the ledger's public keys for offline verification (`verify-proof --key`): one
    /// `FROM VKEY` line per key, FROM the first seq the key signs.
    KeyHistory,
    /// Prove that an event is in the log (a c2sp.org/tlog-proof holding the event and a
    /// checkpoint), or with --consistency that the log of OLD events is a prefix of the log of NEW.
    Prove {
        /// The event's sequence number.
        #[arg(required_unless_present = "consistency", conflicts_with = "consistency")]
        seq: Option<u64>,
        /// Prove the event in the tree of the first N events (default: every event).
        #[arg(long)]
        size: Option<u64>,
        /// A consistency proof from the tree of the first OLD events to that of the first NEW.
        #[arg(long, num_args = 2, value_names = ["OLD", "NEW"], conflicts_with = "size")]
        consistency: Option<Vec<u64>>,
        /// Prove the event in the tree of the checkpoint the gateway last issued (whose
        /// cosignatures the proof then carries).
        #[arg(long, conflicts_with_all = ["size", "consistency"])]
        issued: bool,
    },
    /// Check a proof offline, with only the proof, a checkpoint and the ledger's public keys;
    /// exit status 1 if it does not hold, with the reason.
    VerifyProof {
        /// The proof file (`-` for stdin).
        proof: PathBuf,
        /// A checkpoint held from before: for an inclusion proof, the one the proof must be
        /// for (optional); for a consistency proof, the older one (required).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The ledger's key history (`sealgate key-history`), or a single verifier key, as a
        /// file or inline.
        #[arg(long)]
        key: String,
        /// A witness's verifier key (NAME+ID+KEY, as `sealgate witness serve` prints it), inline
        /// or in a file (repeatable): cosignatures by other keys do not count.
        #[arg(long)]
        witness: Vec<String>,
        /// How many of the --witness keys must have cosigned the checkpoint (default: all given).
        #[arg(long, requires = "witness")]
        min_witnesses: Option<usize>,
        #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Text)]
        output: ReportFormat,
    },
    /// Write an evidence bundle: one file proving offline that the selected events are in the
    /// log (the events, their proofs, the checkpoint and its cosignatures, the key events, a
    /// README), sealed with the ledger's key (docs/FORMAT.md, "Evidence bundles").
    Evidence {
        /// One call's story: every event with this `correlation.call_id`.
        #[arg(long, group = "select")]
        call_id: Option<String>,
        /// Every event with this JSON-RPC request id (an integer, or a string in quotes:
        /// '"abc"'), in --session if given.
        #[arg(long, group = "select")]
        request_id: Option<String>,
        /// Every event of this session (with --request-id: that request in this session).
        #[arg(long)]
        session: Option<String>,
        /// Every event from this time (RFC 3339), with --to: a range proved complete unless
        /// --server or --principal filter it.
        #[arg(long, group = "select", requires = "to")]
        from: Option<String>,
        /// The range's end (inclusive, RFC 3339).
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// Only the range's events on this server (the bundle is then not proved complete).
        #[arg(long, requires = "from")]
        server: Option<String>,
        /// Only the range's events by this principal (the bundle is then not proved complete).
        #[arg(long, requires = "from")]
        principal: Option<String>,
        /// Prove against a fresh checkpoint of the head, even when the gateway's last issued
        /// (cosigned) checkpoint covers the selection.
        #[arg(long)]
        fresh: bool,
        /// The bundle file to write (never overwritten).
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// Check an evidence bundle offline with the ledger's keys you trust (and witnesses); exit
    /// status 1 if it does not hold, with the reason.
    VerifyEvidence {
        /// The bundle file (`-` for stdin).
        bundle: PathBuf,
        /// The ledger's key history (`sealgate key-history`) or one of its verifier keys, as a
        /// file or inline: the bundle's keys must include it.
        #[arg(long)]
        key: String,
        /// A witness's verifier key, inline or in a file (repeatable).
        #[arg(long)]
        witness: Vec<String>,
        /// How many of the --witness keys must have cosigned the checkpoint (default: all given).
        #[arg(long, requires = "witness")]
        min_witnesses: Option<usize>,
        /// Also print the selected events, one JSON line each (`sealgate log -o json` form).
        #[arg(long)]
        events: bool,
        #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Text)]
        output: ReportFormat,
    },
    /// A witness of Sealgate ledgers (c2sp.org/tlog-witness), or a checkpoint pushed to one.
    #[command(subcommand)]
    Witness(WitnessCommand),
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
    /// The governance state (registry, grants, policy, approvals, suspensions), now or as of a time or seq.
    ///
    /// Replayed from the log, whose last event replayed must be signed by the
    /// log's key (with every hash and link on the way checked).
    State {
        #[arg(value_enum)]
        part: StatePart,
        /// An RFC 3339 time (2026-07-14T00:00:00Z) or a sequence number.
        #[arg(long)]
        as_of: Option<String>,
        /// Start from the newest snapshot file at or before that point
        /// instead of the log's start: faster on a long log. A snapshot is
        /// used only if the log's current key signed it (one made before a
        /// key rotation, or by anyone without the key, is passed over with
        /// a warning), so it is as trustworthy as that key.
        #[arg(long)]
        snapshots: bool,
    },
    /// Approvals, through the running gateway's admin API.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// The server registry, through the running gateway's admin API.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Grants, through the running gateway's admin API.
    #[command(subcommand)]
    Grants(GrantsCommand),
    /// The kill switch: stop a principal's, team's, server's or session's
    /// calls at once, through the running gateway's admin API.
    ///
    /// New calls are denied naming the suspension, held calls withdrawn,
    /// running calls cancelled upstream (each recorded); a suspended session
    /// is closed. In force until `sealgate resume` (docs/CONTROLS.md).
    Suspend {
        #[arg(value_enum)]
        target: SuspensionTargetArg,
        /// The principal, team, server or session id.
        name: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Lift a suspension (`sealgate suspend`).
    Resume {
        #[arg(value_enum)]
        target: SuspensionTargetArg,
        name: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Check a policy file, or try a call against it without running it.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run a read-only SQL query over the `events` table and the views
    /// `calls`, `decisions`, `approvals`, `sessions` (docs/QUERY.md).
    ///
    /// Answers from the derived index under `<data dir>/derived/query/` and,
    /// past it, from the log; names the ledger head it was computed at.
    #[command(visible_alias = "query")]
    Sql {
        /// One SELECT (or WITH ... SELECT) statement.
        query: String,
        #[arg(long, short = 'o', value_enum, default_value_t = SqlFormat::Table)]
        format: SqlFormat,
        /// Re-check the answer against the signed log: each returned row
        /// with seq and hash, each index segment read, and the same query
        /// over rows rebuilt from the log. Exit status 1 if anything differs.
        #[arg(long)]
        verify: bool,
        /// The projection tables (servers, pins, grants, policies) as of
        /// this sequence number or RFC 3339 time, instead of the head.
        #[arg(long)]
        as_of: Option<String>,
        /// Stop the query after this many seconds (default: query.timeout_sec).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: Option<u64>,
    },
    /// Full-text search over the ledger's events, ranked (docs/QUERY.md).
    ///
    /// Answers from the search index under `<data dir>/derived/search/`
    /// and, past it, from the log; names the ledger head it was computed at.
    Search(SearchArgs),
    /// The derived query and search indexes.
    #[command(subcommand)]
    Index(IndexCommand),
    /// Copies of the log for other systems: the configured OTLP sinks
    /// (`[[exporters]]`, docs/EXPORT.md) and Parquet files (docs/QUERY.md).
    #[command(subcommand)]
    Export(ExportCommand),
    /// An auditor's report over a time window, computed by SQL
    /// (docs/QUERY.md, Reports). Without a name: the list of reports.
    Report {
        /// The report (`sealgate report` lists them).
        name: Option<String>,
        #[command(flatten)]
        window: WindowArgs,
        /// The environment label `servers-touching` asks about.
        #[arg(long, default_value = "prod")]
        env: String,
        #[arg(long, short = 'o', value_enum, default_value_t = SqlFormat::Table)]
        format: SqlFormat,
        /// Re-check the answer against the signed log (as `sql --verify`).
        #[arg(long)]
        verify: bool,
        /// Print the report's SQL instead of running it.
        #[arg(long)]
        sql: bool,
        /// Stop the query after this many seconds (default: query.timeout_sec).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: Option<u64>,
    },
}

/// A time window of events: `--from`/`--to`, `--last`, or `--last-quarter`.
#[derive(clap::Args, Debug)]
pub struct WindowArgs {
    /// Start of the window (RFC 3339, or a date: midnight UTC), inclusive.
    #[arg(long)]
    pub from: Option<String>,
    /// End of the window (RFC 3339, or a date), exclusive.
    #[arg(long)]
    pub to: Option<String>,
    /// The window ending now: `7d`, `24h`, `30m`.
    #[arg(long, conflicts_with_all = ["from", "to", "last_quarter"])]
    pub last: Option<String>,
    /// The previous calendar quarter, UTC.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub last_quarter: bool,
}

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// `events` and the views (calls, decisions, approvals, sessions) over a
    /// time window as Parquet files in a new directory, with a manifest
    /// naming the head they were computed at (docs/QUERY.md).
    Parquet {
        /// The directory to write (created; must not hold an export).
        #[arg(long)]
        out: std::path::PathBuf,
        #[command(flatten)]
        window: WindowArgs,
    },
    /// Per sink: cursor, lag in events and seconds, state, last error, dead letters.
    Status {
        #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Text)]
        output: ReportFormat,
    },
    /// Send the log again from a seq (or a time): the running gateway's sink takes the
    /// request within a moment, or the next `serve` does. The collector gets the events
    /// again with the same `sealgate.hash`.
    Replay {
        /// The sink's `name`.
        #[arg(long)]
        sink: String,
        /// The first seq to send again.
        #[arg(long, required_unless_present = "since", conflicts_with = "since")]
        from: Option<u64>,
        /// The first event at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// The query: words (all must match), "a phrase", field:word
    /// (principal, server, tool, args, result, error, reason, body, kind),
    /// OR, AND, NOT, -word, +word, (groups), "a prefix"*.
    pub query: String,
    #[command(flatten)]
    pub range: Range,
    /// Only events of this server (`subject.server`, exact).
    #[arg(long)]
    pub server: Option<String>,
    /// Only events of this principal (`actor.principal`, exact).
    #[arg(long)]
    pub principal: Option<String>,
    /// At most this many hits.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    #[arg(long, short = 'o', value_enum, default_value_t = SearchFormat::Table)]
    pub format: SearchFormat,
    /// Re-check the answer against the signed log: each hit's seq, hash and
    /// text, and every match in the range against the log indexed afresh.
    /// Exit status 1 if anything differs.
    #[arg(long)]
    pub verify: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchFormat {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum IndexCommand {
    /// Delete the indexes (query and search) and build them again from the
    /// log (progress on stderr).
    Rebuild,
    /// Bring the indexes up to the log's head (what `serve` does continuously).
    Update,
    /// The cursors, the log's head and how far the indexes lag it.
    Status,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlFormat {
    Table,
    Json,
    Csv,
}

#[derive(Subcommand, Debug)]
pub enum WitnessCommand {
    /// Run a witness: cosigns each checkpoint of the given logs that is consistent with the
    /// last one it cosigned, refuses (and logs as an alarm) any other.
    Serve {
        /// Its key and the last checkpoint cosigned per log (made on first start).
        #[arg(long)]
        state: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7380")]
        listen: std::net::SocketAddr,
        /// The witness's name (its key name in cosignatures).
        #[arg(long, default_value = "sealgate-witness")]
        name: String,
        /// A log to witness: its key history (`sealgate key-history`) or verifier key, as a
        /// file or inline (repeatable).
        #[arg(long, required = true)]
        log: Vec<String>,
        /// Seconds a client has to send a request's headers, and then its body, before its
        /// connection is closed (also how long an idle keep-alive connection stays open).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
        read_timeout_sec: u64,
    },
    /// Push the ledger's checkpoint to a witness once; print the cosigned note.
    Push {
        /// The witness's URL prefix (`<url>/add-checkpoint` is posted to).
        #[arg(long)]
        url: String,
        /// The witness's verifier key.
        #[arg(long)]
        vkey: String,
        /// The tree of the first N events (default: every event up to the head).
        #[arg(long)]
        size: Option<u64>,
    },
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
        /// An admin API role: admin, approver or auditor (repeatable).
        #[arg(long, value_parser = ["admin", "approver", "auditor"])]
        role: Vec<String>,
        /// Append the entry to this tokens file (else print it on stderr).
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate a policy file; print its hash and rule count (exit 1 if invalid).
    Check {
        /// The policy (YAML).
        file: PathBuf,
        #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Text)]
        output: ReportFormat,
    },
    /// Evaluate a described call against a policy without running it.
    Test {
        /// The policy (YAML).
        file: PathBuf,
        /// The configured server the call goes to.
        #[arg(long)]
        server: String,
        /// The MCP method (tools/call, resources/read, prompts/get, sampling/createMessage, ...).
        #[arg(long, default_value = "tools/call")]
        method: String,
        /// The tool name, prompt name or resource URI.
        #[arg(long)]
        tool: Option<String>,
        /// The caller.
        #[arg(long, default_value = "local")]
        principal: String,
        /// A team of the caller (repeatable).
        #[arg(long)]
        team: Vec<String>,
        /// An environment label of the server (repeatable).
        #[arg(long)]
        env: Vec<String>,
        /// A risk tag of the server (repeatable).
        #[arg(long)]
        risk: Vec<String>,
        /// What the tool does (default: unknown, which no `action:` condition matches).
        #[arg(long, value_enum)]
        action: Option<ActionArg>,
        #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Text)]
        output: ReportFormat,
    },
    /// Load a policy into the running gateway (admin API): an event with its full text and hash.
    Load {
        /// The policy (YAML).
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// How to reach the running gateway's admin API.
#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// Base URL of the gateway. Default: http:// and the config's `gateway.listen`.
    #[arg(long, env = "SEALGATE_API")]
    pub api: Option<String>,
    /// A bearer token with an admin API role.
    #[arg(long, env = "SEALGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuspensionTargetArg {
    Principal,
    Team,
    Server,
    Session,
}

impl SuspensionTargetArg {
    pub fn as_str(self) -> &'static str {
        match self {
            SuspensionTargetArg::Principal => "principal",
            SuspensionTargetArg::Team => "team",
            SuspensionTargetArg::Server => "server",
            SuspensionTargetArg::Session => "session",
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatePart {
    Registry,
    Grants,
    Policy,
    Approvals,
    Suspensions,
    All,
}

impl StatePart {
    pub fn as_str(self) -> &'static str {
        match self {
            StatePart::Registry => "registry",
            StatePart::Grants => "grants",
            StatePart::Policy => "policy",
            StatePart::Approvals => "approvals",
            StatePart::Suspensions => "suspensions",
            StatePart::All => "all",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ApprovalsCommand {
    /// The approval queue, with waiting times.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Approve a held call (you must be one of its approvers, not its requester).
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Deny a held call.
    Deny {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Register a configured server (one declared with `register = false`).
    Register(ServerAction),
    /// Approve a server and pin the tools it lists now.
    Approve(ServerAction),
    /// Re-approve drifted tools at their new definitions (all drifted tools unless --tool).
    ApproveTools {
        #[command(flatten)]
        server: ServerAction,
        #[arg(long)]
        tool: Vec<String>,
    },
    /// Quarantine a server: its calls are refused until it is approved again.
    Quarantine(ServerAction),
    /// Revoke a server.
    Revoke(ServerAction),
}

#[derive(Args, Debug)]
pub struct ServerAction {
    pub name: String,
    /// Why (recorded in the event).
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Subcommand, Debug)]
pub enum GrantsCommand {
    /// Issue a grant: a principal or team may use matching tools of a server.
    Issue {
        #[arg(long, conflicts_with = "team", required_unless_present = "team")]
        principal: Option<String>,
        #[arg(long)]
        team: Option<String>,
        #[arg(long)]
        server: String,
        /// Tool name, prompt name or resource URI (glob).
        #[arg(long, default_value = "*")]
        tool: String,
        /// Only on servers with this environment label.
        #[arg(long)]
        env: Option<String>,
        /// RFC 3339 time after which the grant no longer applies.
        #[arg(long)]
        expires_at: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Revoke a grant; open sessions lose it at their next call.
    Revoke {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionArg {
    Read,
    Write,
    Destructive,
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
