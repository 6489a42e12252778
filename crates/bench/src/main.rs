//! The `hearth-bench` binary: parse the command line, build the runtime, run.

use clap::Parser;
use hearth_bench::cli::Cli;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let threads = hearth_bench::threads(&cli);
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(hearth_bench::execute(cli))
}
