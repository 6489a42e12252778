//! Command-line and environment configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Hearth: a team chat that speaks the Rails Action Cable protocol.
#[derive(Debug, Parser)]
#[command(
    name = "hearth",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `serve`'s options, for when no subcommand is given.
    #[command(flatten)]
    pub serve: Config,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the chat (the default).
    Serve(Box<Config>),
    /// Create or update the database schema, then exit.
    Migrate(MigrateArgs),
    /// Copy a whole instance from one database to another (e.g. SQLite to
    /// PostgreSQL), then check that the counts match.
    Copy(CopyArgs),
}

/// `hearth migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// The database to migrate; defaults to SQLite in the data folder.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Folder for the SQLite database, when no URL is given.
    #[arg(long, env = "HEARTH_DATA", default_value = "./hearth-data")]
    pub data_dir: PathBuf,
}

/// `hearth copy`.
#[derive(Debug, Clone, Args)]
pub struct CopyArgs {
    /// The source database, e.g. sqlite://hearth-data/hearth.db
    #[arg(long)]
    pub from: String,

    /// The target database, e.g. postgres://hearth@db/hearth; must hold no chat data yet.
    #[arg(long)]
    pub to: String,

    /// Also copy sign-in sessions, so nobody has to sign in again.
    #[arg(long)]
    pub with_sessions: bool,
}

/// How `hearth serve` runs.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, env = "HEARTH_BIND", default_value = "127.0.0.1:3000")]
    pub bind: SocketAddr,

    /// Folder for the SQLite database.
    #[arg(long, env = "HEARTH_DATA", default_value = "./hearth-data")]
    pub data_dir: PathBuf,

    /// The database: `sqlite://…` or `postgres://…`; defaults to SQLite in the data folder.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Redis, to fan broadcasts out between several nodes (e.g. redis://127.0.0.1:6379);
    /// without it broadcasts stay in this process.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of the Redis channels: broadcasts go to `<prefix>:<stream>`, as
    /// Action Cable's Redis adapter with `channel_prefix` does.
    #[arg(long, env = "HEARTH_REDIS_CHANNEL_PREFIX", default_value = "hearth")]
    pub redis_channel_prefix: String,

    /// Another origin allowed to open the cable and post forms
    /// (e.g. https://chat.example.com); repeat or separate with commas.
    #[arg(
        long = "allowed-origin",
        env = "HEARTH_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Largest WebSocket frame a client may send, in bytes; larger ones close
    /// the connection with code 1009.
    #[arg(long, env = "HEARTH_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,

    /// Frames queued for one connection before it is dropped as too slow.
    #[arg(long, env = "HEARTH_SEND_QUEUE", default_value_t = 1024)]
    pub send_queue: usize,

    /// Bytes of each WebSocket's read buffer; small keeps idle connections
    /// cheap, larger frames still arrive whole.
    #[arg(long, env = "HEARTH_SOCKET_READ_BUFFER", default_value_t = 256)]
    pub socket_read_buffer: usize,

    /// Subscriptions one connection may hold.
    #[arg(long, env = "HEARTH_MAX_SUBSCRIPTIONS", default_value_t = 100)]
    pub max_subscriptions: usize,

    /// Open cable connections allowed; past it, upgrades get 503. Capped
    /// below the process's open-file limit so HTTP keeps a reserve.
    #[arg(long, env = "HEARTH_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,

    /// Open cable connections one user may hold; past it, upgrades get 429;
    /// 0 is no limit.
    #[arg(long, env = "HEARTH_MAX_CONNECTIONS_PER_USER", default_value_t = 100)]
    pub max_connections_per_user: usize,

    /// Open cable connections from one address; past it, upgrades get 429;
    /// 0 is no limit.
    #[arg(
        long,
        env = "HEARTH_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 1000
    )]
    pub max_connections_per_address: usize,

    /// Subscriptions one user may hold over all their connections; past it,
    /// `reject_subscription`.
    #[arg(
        long,
        env = "HEARTH_MAX_SUBSCRIPTIONS_PER_USER",
        default_value_t = 1000
    )]
    pub max_subscriptions_per_user: usize,

    /// Bytes one connection may have buffered (queued broadcasts, replies,
    /// replay pages, frames being written) before it is dropped as too slow.
    #[arg(long, env = "HEARTH_SEND_BUFFER_BYTES", default_value_t = 1 << 20)]
    pub send_buffer_bytes: usize,

    /// Seconds a write to a client may stall before it is dropped as too slow.
    #[arg(long, env = "HEARTH_WRITE_TIMEOUT", default_value = "30", value_parser = seconds)]
    pub write_timeout: std::time::Duration,

    /// Longest channel identifier accepted, in bytes; longer subscriptions
    /// are rejected.
    #[arg(long, env = "HEARTH_MAX_IDENTIFIER_BYTES", default_value_t = 1024)]
    pub max_identifier_bytes: usize,

    /// Seconds between checks that the sessions behind open sockets are
    /// still live; sockets of sessions that expired or ended on another node
    /// are closed with `unauthorized`.
    #[arg(long, env = "HEARTH_SESSION_CHECK_INTERVAL", default_value = "10", value_parser = seconds)]
    pub session_check_interval: std::time::Duration,

    /// History replays (`catch_up`, extended `history`) one connection may
    /// start per second, with bursts of ten times as many; past it the
    /// client gets a `rate_limited` error.
    #[arg(long, env = "HEARTH_REPLAY_RATE", default_value_t = 2.0)]
    pub replay_rate: f64,

    /// Messages one user may post per second, over HTTP and the cable
    /// together (bursts of twice as many pass); 0 turns the limit off.
    #[arg(long, env = "HEARTH_MESSAGE_RATE", default_value_t = 10)]
    pub message_rate: u32,

    /// Failed sign-ins allowed per minute from one address, whatever the
    /// account; past it, that address waits. 0 turns it off.
    #[arg(
        long,
        alias = "sign-in-rate-per-ip",
        env = "HEARTH_SIGN_IN_FAILURES_PER_IP",
        default_value_t = 20
    )]
    pub sign_in_failures_per_ip: u32,

    /// Failed sign-ins allowed per minute for one account from one address;
    /// past it, that address waits for that account, and the owner signing
    /// in from elsewhere does not. 0 turns it off.
    #[arg(
        long,
        env = "HEARTH_SIGN_IN_FAILURES_PER_ACCOUNT_IP",
        default_value_t = 5
    )]
    pub sign_in_failures_per_account_ip: u32,

    /// Sign-ups allowed per hour from one address; 0 turns it off.
    #[arg(long, env = "HEARTH_SIGN_UP_RATE_PER_IP", default_value_t = 30)]
    pub sign_up_rate_per_ip: u32,

    /// A reverse proxy whose `X-Forwarded-For` names the real client, for
    /// the per-address limits; repeat or separate with commas. Without it,
    /// every user behind the proxy shares the proxy's address.
    #[arg(
        long = "trusted-proxy",
        env = "HEARTH_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// Least seconds between two presence frames of one room: joins and
    /// leaves in between are coalesced into one frame.
    #[arg(long, env = "HEARTH_PRESENCE_INTERVAL", default_value = "1", value_parser = seconds)]
    pub presence_interval: std::time::Duration,

    /// Seconds another node's presence snapshot counts without a refresh
    /// (nodes refresh every third of it): the users of a node that died
    /// disappear within this.
    #[arg(long, env = "HEARTH_PRESENCE_TTL", default_value = "30", value_parser = seconds)]
    pub presence_ttl: std::time::Duration,

    /// Users named in a presence frame; its count covers everyone.
    #[arg(long, env = "HEARTH_PRESENCE_LISTED", default_value_t = 20)]
    pub presence_listed: usize,

    /// Least seconds between two typing events of one user in one room;
    /// more are ignored.
    #[arg(long, env = "HEARTH_TYPING_INTERVAL", default_value = "2", value_parser = seconds)]
    pub typing_interval: std::time::Duration,

    /// Rooms one user may create per hour; 0 turns the limit off.
    #[arg(long, env = "HEARTH_ROOM_CREATE_RATE", default_value_t = 10)]
    pub room_create_rate: u32,

    /// Seconds a connection may take to send a request's headers, counted
    /// from its start or from the previous response (so it also closes idle
    /// keep-alive connections and unfinished WebSocket handshakes).
    #[arg(long, env = "HEARTH_HEADER_READ_TIMEOUT", default_value = "10", value_parser = seconds)]
    pub header_read_timeout: std::time::Duration,

    /// Seconds a request may take from its headers to its answer; past it,
    /// 408. An upgraded WebSocket is not a request any more and is not bound.
    #[arg(long, env = "HEARTH_REQUEST_TIMEOUT", default_value = "30", value_parser = seconds)]
    pub request_timeout: std::time::Duration,

    /// A private address for `/metrics` and `/ready` (e.g. 10.0.0.11:9300);
    /// when set, they are served only there, not on `--bind`.
    #[arg(long, env = "HEARTH_OPS_BIND")]
    pub ops_bind: Option<SocketAddr>,

    /// Mark the session cookie `Secure` (set it when users reach Hearth over HTTPS).
    #[arg(long, env = "HEARTH_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// Log format: `text` or `json`.
    #[arg(long, env = "HEARTH_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

/// A duration in seconds, fractions allowed (`0.5`), at least a millisecond.
fn seconds(raw: &str) -> Result<std::time::Duration, String> {
    let seconds: f64 = raw
        .parse()
        .map_err(|_| format!("{raw:?} is not a number of seconds"))?;
    if !(0.001..=86_400.0).contains(&seconds) {
        return Err("must be between 0.001 and 86400 seconds".into());
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

impl Config {
    /// The database URL in force: the configured one, else SQLite in the data folder.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| crate::db::sqlite_url(&self.data_dir))
    }

    /// The configuration `hearth serve` would use with these arguments
    /// (without the program name) and the environment.
    pub fn from_args<I: IntoIterator<Item = S>, S: Into<std::ffi::OsString> + Clone>(
        args: I,
    ) -> Self {
        let cli = Cli::parse_from(
            std::iter::once("hearth".into()).chain(args.into_iter().map(Into::into)),
        );
        match cli.command {
            Some(Command::Serve(config)) => *config,
            _ => cli.serve,
        }
    }
}
