//! `connect`: opens N connections, `--concurrency` at a time, each up to
//! its confirmed subscription, and holds them until the last is set up.
//! Reports set-ups per second and the set-up time distribution, and how many
//! connection attempts the kernel dropped because a listen queue was full
//! (machine-wide; each costs its client a 1 s SYN retry).

use serde::{Deserialize, Serialize};

use super::join_room;
use crate::cli::ConnectArgs;
use crate::procfs;
use crate::report::{self, ms};
use crate::run::Ctx;
use crate::stats::{Histogram, Merge, merge_fields};
use crate::workers::Coord;

/// One process's share of the outcome.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Partial {
    connected: u64,
    failures: u64,
    first_error: Option<String>,
    setup: Histogram,
    listen_overflows: u64,
}

impl Merge for Partial {
    fn merge(&mut self, other: &Self) {
        merge_fields!(self, other; connected, failures, first_error, setup, listen_overflows);
    }
}

/// Runs the scenario and reports.
pub async fn run(ctx: Ctx, args: ConnectArgs) -> anyhow::Result<()> {
    let outcome = ctx.drive(|coord| work(&ctx, &args, coord)).await?;
    let Some(outcome) = outcome else {
        return Ok(());
    };
    let Partial {
        connected,
        failures,
        first_error,
        setup,
        listen_overflows,
    } = outcome.total();
    let (Some(start), Some(end)) = (outcome.at("start"), outcome.at("connected")) else {
        anyhow::bail!("missing samples");
    };
    let seconds = (end.unix_nanos - start.unix_nanos) as f64 / 1e9;
    let mut result = report::Result::new("connect")
        .with("clients", args.clients)
        .with("connected", connected)
        .with("failures", failures)
        .num("seconds", seconds, 3)
        .num("connects_per_s", connected as f64 / seconds.max(1e-9), 0)
        .num("setup_p50_ms", ms(setup.percentile(50.0)), 3)
        .num("setup_p99_ms", ms(setup.percentile(99.0)), 3)
        .num("setup_max_ms", ms(setup.max()), 3)
        .with("concurrency", ctx.common.concurrency)
        .with("listen_overflows", listen_overflows)
        .num("client_cpu_s", end.client_cpu_s - start.client_cpu_s, 2);
    if let (Some(a), Some(b)) = (start.server_cpu_s, end.server_cpu_s) {
        result = result.num("server_cpu_s", b - a, 2);
    }
    if let Some(e) = first_error {
        result = result.with("first_connect_error", e);
    }
    result.emit(&ctx.common)
}

async fn work(ctx: &Ctx, args: &ConnectArgs, coord: Coord) -> anyhow::Result<Partial> {
    let identifier = ctx.identifier();
    coord.barrier("start").await?;
    let overflows = procfs::listen_overflows();
    let joined = join_room(ctx, args.clients, &identifier, "connecting").await;
    coord.barrier("connected").await?;
    let listen_overflows = match (overflows, procfs::listen_overflows()) {
        (Some(a), Some(b)) if ctx.share.is_first() => b.saturating_sub(a),
        _ => 0,
    };
    Ok(Partial {
        listen_overflows,
        connected: joined.conns.len() as u64,
        failures: joined.failures,
        first_error: joined.first_error,
        setup: joined.setup_latency,
    })
}
