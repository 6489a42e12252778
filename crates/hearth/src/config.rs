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
    Serve(Config),
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

    /// Subscriptions one connection may hold.
    #[arg(long, env = "HEARTH_MAX_SUBSCRIPTIONS", default_value_t = 100)]
    pub max_subscriptions: usize,

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

impl Config {
    /// The configuration `hearth serve` would use with these arguments
    /// (without the program name) and the environment.
    pub fn from_args<I: IntoIterator<Item = S>, S: Into<std::ffi::OsString> + Clone>(
        args: I,
    ) -> Self {
        let cli = Cli::parse_from(
            std::iter::once("hearth".into()).chain(args.into_iter().map(Into::into)),
        );
        match cli.command {
            Some(Command::Serve(config)) => config,
            None => cli.serve,
        }
    }
}
