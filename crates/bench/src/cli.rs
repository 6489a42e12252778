//! The command line: options every scenario shares, and one subcommand per
//! scenario.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Load generator for Hearth and any Action Cable (protocol v1) server.
#[derive(Debug, Parser)]
#[command(name = "hearth-bench", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to measure.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// N subscribers in one room; a publisher sends M timed messages; every receipt is timed.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: FanoutArgs,
    },
    /// Hold N subscribed connections and read the server's resident memory per connection.
    Idle {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: IdleArgs,
    },
    /// Connection set-up rate: welcome plus confirmed subscription per second.
    Connect {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: ConnectArgs,
    },
    /// AnyCable websocket-bench's "broadcast" method: RTT at the sender as clients grow.
    Rtt {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: RttArgs,
    },
    /// Messages created per second by many signed-in users at once.
    Post {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: PostArgs,
    },
    /// Hold N subscribers for a long time while clients disconnect, reconnect
    /// and catch up and a steady stream is published; sample the server's
    /// memory and open files; check every client got every message once.
    Soak {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: SoakArgs,
    },
    /// N subscribers join one room with presence at a set rate, counting the
    /// presence frames they get, while a probe in another room times its
    /// own messages: coalesced presence against one frame per join to
    /// everyone, and the server's responsiveness meanwhile (Hearth only).
    Presence {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: PresenceArgs,
    },
    /// Sign users up on Hearth and write their session cookies to a file, one
    /// a line, for `--cookies-file` (so a server can be restarted between
    /// sign-up and measurement).
    Users(UsersArgs),
    /// Fill an empty database (SQLite file or PostgreSQL URL) with users,
    /// rooms, memberships and messages as Hearth would have stored them.
    Seed(SeedArgs),
    /// Start Hearth on a seeded database and time searches, history pages,
    /// room pages and unread counts over HTTP, and the start itself.
    Reads(ReadsArgs),
    /// Draw latency and memory against client count from result JSON lines.
    Chart(ChartArgs),
    /// Print the side-by-side table and ratios of a `bench/run.sh` results file.
    Summary(SummaryArgs),
}

/// Which kind of server is on the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum App {
    /// Hearth: sign users up (or take `--cookie`), find `#general`, post over HTTP.
    Hearth,
    /// Any Action Cable server without auth (the Rails and Rust peers): use `--room`.
    Plain,
}

/// Options every scenario shares.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The server's base URL; the cable is at `<server><cable-path>`. Loopback only.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub server: String,

    /// Path of the Action Cable endpoint.
    #[arg(long, default_value = "/cable")]
    pub cable_path: String,

    /// What the server is: `hearth` signs users in itself; `plain` needs no auth.
    #[arg(long, value_enum, default_value = "hearth")]
    pub app: App,

    /// Room id for the identifier; Hearth defaults to `#general`, others to 1.
    #[arg(long)]
    pub room: Option<String>,

    /// A `hearth_session` cookie value to use instead of signing up (repeatable).
    #[arg(long = "cookie")]
    pub cookies: Vec<String>,

    /// A file of `hearth_session` cookie values, one a line (see `users`).
    #[arg(long)]
    pub cookies_file: Option<PathBuf>,

    /// Users to sign up when no cookie is given; connections reuse their cookies.
    #[arg(long, default_value_t = 20)]
    pub users: usize,

    /// Another identifier every connection subscribes to after the room
    /// (repeatable): `--also '{"channel":"RoomsChannel"}'` holds what
    /// Hearth's room page subscribes to.
    #[arg(long = "also")]
    pub also: Vec<String>,

    /// Subscribe to rooms with `"presence":true`, as Hearth's room page
    /// does, getting its presence and typing frames too.
    #[arg(long)]
    pub presence: bool,

    /// Subscribe to rooms asking for this much of each message (Hearth's
    /// `"format"`: `full`, `html` or `json`); the room page takes `html`.
    #[arg(long)]
    pub format: Option<String>,

    /// Local addresses to connect from, round robin: a list (`127.0.0.1,127.0.0.2`)
    /// or a range (`127.0.0.1-127.0.0.8`); each gives ~28k ports.
    #[arg(long, default_value = "127.0.0.1-127.0.0.8", value_parser = parse_sources)]
    pub sources: Sources,

    /// Connection set-ups in flight at once (over all workers).
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,

    /// Server process id: its VmRSS and CPU time are read from /proc.
    #[arg(long)]
    pub pid: Option<u32>,

    /// Processes to spread the clients over (each has its own open-file limit).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,

    /// Runtime threads per process; 1 is a current-thread runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// Name of the server in results (hearth, reference, rails, baseline…).
    #[arg(long, default_value = "server")]
    pub label: String,

    /// Name of this measurement in results, for `summary` (e.g. fanout-1k).
    #[arg(long, default_value = "")]
    pub case: String,

    /// Also append each result's JSON line to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Seconds one connection set-up may take before it counts as failed.
    #[arg(long, default_value_t = 30.0)]
    pub connect_timeout: f64,

    /// This process is worker number N of `--workers` (set by the parent).
    #[arg(long, hide = true)]
    pub worker_index: Option<usize>,
}

/// Local source addresses, used round robin.
#[derive(Debug, Clone)]
pub struct Sources(pub Vec<IpAddr>);

fn parse_sources(text: &str) -> Result<Sources, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((from, to)) = part.split_once('-') {
            let from: std::net::Ipv4Addr = from.parse().map_err(|e| format!("{from}: {e}"))?;
            let to: std::net::Ipv4Addr = to.parse().map_err(|e| format!("{to}: {e}"))?;
            let (a, b) = (u32::from(from), u32::from(to));
            if b < a || b - a > 255 {
                return Err(format!(
                    "{part}: a range runs low to high, 256 addresses at most"
                ));
            }
            out.extend((a..=b).map(|ip| IpAddr::V4(ip.into())));
        } else {
            out.push(part.parse().map_err(|e| format!("{part}: {e}"))?);
        }
    }
    if out.is_empty() {
        return Err("no source address".into());
    }
    if let Some(ip) = out.iter().find(|ip| !ip.is_loopback()) {
        return Err(format!("{ip} is not a loopback address"));
    }
    Ok(Sources(out))
}

/// How fan-out messages are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// The `speak` action over the cable.
    Speak,
    /// `POST /chatrooms/<id>/messages` with `Accept: application/json` (Hearth only).
    Http,
}

/// `fanout` options.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Subscribers in the room.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Messages to publish.
    #[arg(long, default_value_t = 100)]
    pub messages: u64,
    /// Messages per second over all publishers; 0 sends as fast as the server takes them.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Publishing connections (each sends every P-th message).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// How to publish.
    #[arg(long, value_enum, default_value = "speak")]
    pub via: Via,
    /// Extra subscribers that never read a byte: a stalled client among the
    /// others, whose effect on their latency this measures.
    #[arg(long, default_value_t = 0)]
    pub stalled: usize,
    /// With `--via http`: post to this server instead of `--server`, e.g.
    /// another node of a cluster, to time the hop between nodes.
    #[arg(long)]
    pub publish_server: Option<String>,
    /// Give up on missing messages after this many seconds without a new receipt.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Longest the publish-and-receive phase may take, in seconds.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Exit non-zero unless every subscriber got every message exactly once.
    #[arg(long)]
    pub expect_complete: bool,
    /// Bytes of filler after each message's marker, e.g. to give a server
    /// that broadcasts only the content frames as large as Hearth's.
    #[arg(long, default_value_t = 0)]
    pub pad: usize,
}

/// `presence` options.
#[derive(Debug, Clone, Args)]
pub struct PresenceArgs {
    /// Subscribers joining the room, each with `"presence":true`; each should
    /// be a user of its own (`--users`, `--cookies-file`), as presence
    /// counts users, not tabs.
    #[arg(long, default_value_t = 10_000)]
    pub joiners: usize,
    /// Joins started per second over all workers.
    #[arg(long, default_value_t = 1000.0)]
    pub join_rate: f64,
    /// Each joiner asks for the presence frame once subscribed, as Hearth's
    /// room page does (`{"action":"presence"}`).
    #[arg(long)]
    pub ask: bool,
    /// Joiners subscribe without presence: a control run, whose probe
    /// latency and server CPU are what the joins alone cost.
    #[arg(long)]
    pub without_presence: bool,
    /// Messages per second the probe speaks in its own room (without
    /// presence), each timed from send to its receipt by the probe.
    #[arg(long, default_value_t = 20.0)]
    pub probe_rate: f64,
    /// The probe's room; by default one is created for the run.
    #[arg(long)]
    pub probe_room: Option<String>,
    /// Seconds to keep counting after the last join, so that the frames
    /// coalesced at the end arrive (a few presence intervals).
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
    /// Longest the join phase may take, in seconds; joins not started by
    /// then are not made.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Exit non-zero unless every joiner subscribed and its last presence
    /// frame counted every user, and every probe message came back.
    #[arg(long)]
    pub expect_complete: bool,
}

/// `idle` options.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Connection counts to hold, cumulative, e.g. 1000,5000,10000.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    pub steps: Vec<usize>,
    /// Seconds to wait at each step before reading memory.
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
    /// Spread the connections round robin over these room ids instead of
    /// the one room, e.g. to follow only some rooms on a node (`bench/rooms.sh`).
    #[arg(long = "rooms", value_delimiter = ',')]
    pub rooms: Vec<String>,
    /// Seconds to keep holding the connections after the last step, e.g.
    /// while other tools post to their rooms (`bench/nodes.sh` stops it sooner).
    #[arg(long, default_value_t = 0.0)]
    pub hold: f64,
}

/// `connect` options.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Connections to open (all are held until the last is set up).
    #[arg(long, default_value_t = 5000)]
    pub clients: usize,
}

/// `rtt` options (the names follow websocket-bench's `broadcast`).
#[derive(Debug, Clone, Args)]
pub struct RttArgs {
    /// Clients added at each step.
    #[arg(long, default_value_t = 1000)]
    pub step_size: usize,
    /// Steps to run.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Broadcasts timed at each step.
    #[arg(long, default_value_t = 20)]
    pub sample_size: usize,
    /// Broadcasts in flight at once.
    #[arg(long = "concurrent", default_value_t = 4)]
    pub concurrent: usize,
    /// Seconds one broadcast may take before it counts as dropped.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
}

/// Where `post` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Rooms {
    /// Every writer posts to the one room (`--room`, or `#general`).
    Shared,
    /// Each writer gets a room of its own (created first), so no fan-out is measured.
    Own,
}

/// `post` options.
#[derive(Debug, Clone, Args)]
pub struct PostArgs {
    /// Writers at once: HTTP keep-alive connections, or cable speakers.
    #[arg(long, default_value_t = 100)]
    pub writers: usize,
    /// How to post.
    #[arg(long, value_enum, default_value = "http")]
    pub via: Via,
    /// Seconds to keep posting.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Which rooms writers post to.
    #[arg(long, value_enum, default_value = "shared")]
    pub rooms: Rooms,
}

/// `soak` options.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// Subscribers held in the room (spread over `--workers`).
    #[arg(long, default_value_t = 5000)]
    pub clients: usize,
    /// Disconnect-and-reconnect cycles per second over all clients; each
    /// reconnected client resubscribes and asks `catch_up` for what it missed.
    #[arg(long, default_value_t = 100.0)]
    pub churn: f64,
    /// Messages published per second.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Publishing connections, each sending every P-th message, so that a
    /// slow answer does not hold the stream back.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// How to publish.
    #[arg(long, value_enum, default_value = "http")]
    pub via: Via,
    /// How long to churn and publish: `90s`, `2m`, `30m`, `1h`, or seconds.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seconds between samples of the server (RSS, open files, /metrics).
    #[arg(long, default_value_t = 10.0)]
    pub sample_every: f64,
    /// Also write each sample to this file as a JSON line, as it is taken.
    #[arg(long)]
    pub samples: Option<PathBuf>,
    /// Seconds the clients may take, once publishing stops, to finish catching
    /// up; whatever a client still lacks then counts as lost.
    #[arg(long, default_value_t = 60.0)]
    pub drain: f64,
    /// Seconds at the start and at the end of the run whose samples are
    /// compared for growth (at most a third of the run each).
    #[arg(long, default_value_t = 300.0)]
    pub window: f64,
    /// Largest growth of the server's RSS allowed, percent, from the first
    /// window's mean to the last's; without SQLite's page caches when the
    /// server reports them (`hearth_sqlite_memory_bytes`), since those fill up
    /// to a fixed size as the database grows.
    #[arg(long, default_value_t = 10.0)]
    pub rss_tolerance: f64,
    /// Largest growth of the server's open files allowed, percent.
    #[arg(long, default_value_t = 2.0)]
    pub fd_tolerance: f64,
}

/// `90s`, `2m`, `30m`, `1h`, `1.5h` or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("{other}: use s, m or h")),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|e| format!("{number}: {e}"))?;
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("{text}: a duration is positive"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// `users` options.
#[derive(Debug, Clone, Args)]
pub struct UsersArgs {
    /// Hearth's base URL. Loopback only.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub server: String,
    /// Users to sign up.
    #[arg(long, default_value_t = 20)]
    pub users: usize,
    /// Where to write the cookies.
    #[arg(long)]
    pub out: PathBuf,
}

/// `seed` options.
#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    /// A SQLite file (created if missing) or a `postgres://` URL; it must
    /// hold no users or messages yet.
    #[arg(long)]
    pub database: String,
    /// Messages to store.
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: u64,
    /// Rooms, `general` included: about 70 % public, 20 % private, 10 % direct.
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Users (`ada1@seed.test`, `bob1@seed.test`, …, password `bench-password-1`).
    #[arg(long, default_value_t = 1_000)]
    pub users: usize,
    /// Seed of the random choices: the same seed gives the same database.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `reads` options.
#[derive(Debug, Clone, Args)]
pub struct ReadsArgs {
    /// The seeded database: a SQLite file or a `postgres://` URL.
    #[arg(long)]
    pub database: String,
    /// The `hearth` binary to start.
    #[arg(long, default_value = "target/release/hearth")]
    pub hearth: PathBuf,
    /// Timed requests of each kind (after 5 untimed ones).
    #[arg(long, default_value_t = 200)]
    pub repeat: usize,
    /// Server starts timed (the last one stays up for the requests).
    #[arg(long, default_value_t = 3)]
    pub starts: usize,
    /// Also write each figure as a JSON line to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `chart` options.
#[derive(Debug, Clone, Args)]
pub struct ChartArgs {
    /// Result JSON lines (from `--json` or `bench/run.sh`).
    #[arg(long, required = true)]
    pub input: Vec<PathBuf>,
    /// Output file: `.svg`, or `.png` (needs a TrueType font, e.g. fonts-dejavu-core).
    #[arg(long)]
    pub out: PathBuf,
    /// Results (`rtt` or `fanout`) of this case prefix, for the latency panel.
    #[arg(long, default_value = "rtt")]
    pub latency_case: String,
    /// Only results of this case prefix, for the memory panel.
    #[arg(long, default_value = "idle")]
    pub memory_case: String,
}

/// `summary` options.
#[derive(Debug, Clone, Args)]
pub struct SummaryArgs {
    /// Result JSON lines written by `bench/run.sh`.
    #[arg(long)]
    pub input: PathBuf,
    /// Label of the server under test.
    #[arg(long, default_value = "hearth")]
    pub subject: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_take_lists_and_ranges_of_loopback_addresses() {
        let s = parse_sources("127.0.0.1-127.0.0.3,127.0.0.9").unwrap();
        let text: Vec<String> = s.0.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.9"]);
        assert!(
            parse_sources("10.0.0.1").is_err(),
            "only loopback is allowed"
        );
        assert!(parse_sources("127.0.0.5-127.0.0.1").is_err());
    }

    #[test]
    fn durations_take_a_unit_or_are_seconds() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("120"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("0m").is_err());
        assert!(parse_duration("m").is_err());
    }
}
