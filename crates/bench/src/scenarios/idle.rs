//! `idle`: opens subscribed connections step by step and holds them, reading
//! the server's resident memory (VmRSS of `--pid`) at each step: memory per
//! connection since the start, and the slope between steps.

use anyhow::bail;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{hold, join_all};
use crate::cli::IdleArgs;
use crate::report;
use crate::run::Ctx;
use crate::workers::Coord;

/// One process's share: per step, connections held and failures.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Partial {
    held: Vec<u64>,
    failures: Vec<u64>,
    first_error: Option<String>,
    dropped: u64,
}

/// Runs the scenario and reports one result per step.
pub async fn run(ctx: Ctx, args: IdleArgs) -> anyhow::Result<()> {
    if ctx.common.pid.is_none() {
        bail!("idle reads the server's memory: give its process id with --pid");
    }
    let mut steps = args.steps.clone();
    steps.sort_unstable();
    steps.dedup();
    let outcome = ctx.drive(|coord| work(&ctx, &steps, &args, coord)).await?;
    let Some(outcome) = outcome else {
        return Ok(());
    };
    let Some(base) = outcome.at("baseline").cloned() else {
        bail!("no baseline sample");
    };
    let base_rss = base.server_rss_kib.unwrap_or(0);
    let mut previous = (0u64, base_rss, base.client_rss_kib);
    for (k, &step) in steps.iter().enumerate() {
        let held: u64 = outcome.partials.iter().map(|p| p.held[k]).sum();
        let failures: u64 = outcome.partials.iter().map(|p| p.failures[k]).sum();
        let Some(sample) = outcome.at(&format!("step-{step}")) else {
            bail!("no sample for step {step}");
        };
        let rss = sample.server_rss_kib.unwrap_or(0);
        let per = |kib: u64, base: u64, n: u64| {
            if n == 0 {
                0.0
            } else {
                (kib as f64 - base as f64) / n as f64
            }
        };
        let mut result = report::Result::new("idle")
            .with("clients", step)
            .with("held", held)
            .with("connect_failures", failures)
            .with("server_rss_kib", rss)
            .with("server_rss_base_kib", base_rss)
            .num("kib_per_conn", per(rss, base_rss, held), 2)
            .num(
                "slope_kib_per_conn",
                per(rss, previous.1, held - previous.0),
                2,
            )
            .num(
                "client_kib_per_conn",
                per(sample.client_rss_kib, base.client_rss_kib, held),
                2,
            )
            .with("from_clients", previous.0);
        if let Some(cpu) = sample.server_cpu_s {
            result = result.num("server_cpu_s", cpu - base.server_cpu_s.unwrap_or(0.0), 2);
        }
        if k == 0
            && let Some(e) = outcome.partials.iter().find_map(|p| p.first_error.clone())
        {
            result = result.with("first_connect_error", e);
        }
        result.emit(&ctx.common)?;
        previous = (held, rss, sample.client_rss_kib);
    }
    let dropped: u64 = outcome.partials.iter().map(|p| p.dropped).sum();
    if dropped > 0 {
        eprintln!("{dropped} held connections were dropped by the server");
    }
    Ok(())
}

async fn work(
    ctx: &Ctx,
    steps: &[usize],
    args: &IdleArgs,
    coord: Coord,
) -> anyhow::Result<Partial> {
    let (settle, rooms) = (args.settle, &args.rooms[..]);
    let shared = ctx.identifier();
    let identifier = |i: usize| match rooms {
        [] => shared.clone(),
        rooms => ctx.identifier_of(&rooms[i % rooms.len()]),
    };
    let (stop_tx, stop) = watch::channel(false);
    let mut holders = JoinSet::new();
    let mut partial = Partial::default();
    // Let the server settle first (Hearth's start-up hash frees 19 MiB late).
    tokio::time::sleep(std::time::Duration::from_secs_f64(settle)).await;
    coord.barrier("baseline").await?;
    let mut opened = 0;
    for &step in steps {
        let clients: Vec<usize> = ctx.share.clients(step).filter(|&i| i >= opened).collect();
        let joined = join_all(ctx, clients, identifier, &format!("to {step}")).await;
        partial.failures.push(joined.failures);
        if partial.first_error.is_none() {
            partial.first_error = joined.first_error;
        }
        for (_, ws) in joined.conns {
            holders.spawn(hold(ws, stop.clone()));
        }
        opened = step;
        tokio::time::sleep(std::time::Duration::from_secs_f64(settle)).await;
        partial.held.push(holders.len() as u64);
        coord.barrier(&format!("step-{step}")).await?;
    }
    tokio::time::sleep(std::time::Duration::from_secs_f64(args.hold)).await;
    let _ = stop_tx.send(true);
    while let Some(ended) = holders.join_next().await {
        if let Ok(Some(_)) = ended {
            partial.dropped += 1;
        }
    }
    Ok(partial)
}
