//! `hearth-bench`: a load generator for Hearth and any Action Cable
//! (protocol v1) server, so Hearth can be measured side by side with Rails
//! and with the reference peers in `src/bin/`. It owns the client side of a
//! benchmark: connections, timing, accounting and reports.
//!
//! - [`cli`]: the command line, one subcommand per scenario.
//! - [`run`]: one run's target, users, rooms and this process's share of clients.
//! - [`protocol`]: the cable commands sent, the frames read, the bench marker.
//! - [`cable`]: opening and subscribing one cable client.
//! - [`http`]: a minimal HTTP/1.1 keep-alive client.
//! - [`hearth`]: Hearth's sign-up, rooms and message posts.
//! - [`net`]: source addresses, sockets, the open-file limit.
//! - [`stats`]: latency histogram, percentiles, lost/duplicate accounting.
//! - [`workers`]: spreading clients over processes, barriers, merging.
//! - [`procfs`]: a process's RSS, open files and CPU time.
//! - [`peer`]: the cable subset the reference peers in `src/bin/` serve.
//! - [`scenarios`]: fanout, idle, connect, rtt, post, soak, presence.
//! - [`report`]: progress bars, tables, JSON lines.
//! - [`chart`]: latency and memory against clients, or a soak's memory and
//!   open files against time, as SVG or PNG.
//! - [`summary`]: the side-by-side table and ratios of a results file.
//! - [`seed`]: a database of a million messages, as Hearth would have stored them.
//! - [`reads`]: search, history, room page and unread-count latency on it.

pub mod cable;
pub mod chart;
pub mod cli;
pub mod hearth;
pub mod http;
pub mod net;
pub mod peer;
pub mod procfs;
pub mod protocol;
pub mod reads;
pub mod report;
pub mod run;
pub mod scenarios;
pub mod seed;
pub mod stats;
pub mod summary;
pub mod workers;

use cli::{Cli, Command};
use run::Ctx;

/// Runs one command line.
pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Fanout { common, args } => {
            scenarios::fanout::run(Ctx::prepare(common, 0).await?, args).await
        }
        Command::Idle { common, args } => {
            scenarios::idle::run(Ctx::prepare(common, 0).await?, args).await
        }
        Command::Connect { common, args } => {
            scenarios::connect::run(Ctx::prepare(common, 0).await?, args).await
        }
        Command::Rtt { common, args } => {
            scenarios::rtt::run(Ctx::prepare(common, 0).await?, args).await
        }
        Command::Post { common, args } => {
            let own = match args.rooms {
                cli::Rooms::Own => args.writers,
                cli::Rooms::Shared => 0,
            };
            scenarios::post::run(Ctx::prepare(common, own).await?, args).await
        }
        Command::Soak { common, args } => {
            scenarios::soak::run(Ctx::prepare(common, 0).await?, args).await
        }
        Command::Presence { common, args } => {
            let own = usize::from(args.probe_room.is_none());
            scenarios::presence::run(Ctx::prepare(common, own).await?, args).await
        }
        Command::Users(args) => {
            let endpoint = net::Endpoint::parse(&args.server)?;
            let source = std::net::Ipv4Addr::LOCALHOST.into();
            let run = workers::unix_nanos() as u32;
            let cookies = hearth::sign_up_pool(&endpoint, source, run, args.users, 4).await?;
            std::fs::write(&args.out, cookies.join("\n") + "\n")?;
            eprintln!(
                "{} cookies written to {}",
                cookies.len(),
                args.out.display()
            );
            Ok(())
        }
        Command::Seed(args) => seed::run(&args).await,
        Command::Reads(args) => reads::run(&args).await,
        Command::Chart(args) => chart::draw(&args),
        Command::Summary(args) => summary::print(&args),
    }
}

/// Runtime threads the command asks for (1: a current-thread runtime).
pub fn threads(cli: &Cli) -> usize {
    match &cli.command {
        Command::Fanout { common, .. }
        | Command::Idle { common, .. }
        | Command::Connect { common, .. }
        | Command::Rtt { common, .. }
        | Command::Post { common, .. }
        | Command::Soak { common, .. }
        | Command::Presence { common, .. } => common.threads.max(1),
        Command::Users(_)
        | Command::Seed(_)
        | Command::Reads(_)
        | Command::Chart(_)
        | Command::Summary(_) => 1,
    }
}
