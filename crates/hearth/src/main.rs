//! The `hearth` binary: parse the command line, set up logging, serve.

use clap::Parser;
use hearth::config::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's allocator: measured in BENCHMARKS.md, it keeps
/// idle connections smaller and gives back the 19 MiB each password hash
/// borrows, where glibc kept every one of them. Counted, for
/// `hearth_heap_bytes` in `/metrics`.
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static ALLOCATOR: hearth::heap::Counting<mimalloc::MiMalloc> =
    hearth::heap::Counting(mimalloc::MiMalloc);

/// With `--features dhat-heap`, dhat's allocator records where every live
/// byte was allocated (`hearth_heap_bytes` then reads 0).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Written to `dhat-heap.json` when dropped, at the end of `main`: the
    // allocations live at the heap's peak (`t-gmax`) by call stack.
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::new_heap();
    // Before anything grows the heap: see `heap::refuse_huge_pages`.
    let small_pages = hearth::heap::refuse_huge_pages();
    let cli = Cli::parse();
    let config = match cli.command {
        Some(Command::Serve(config)) => *config,
        None => cli.serve,
        Some(Command::Migrate(args)) => {
            init_tracing(LogFormat::Text);
            let url = args
                .database_url
                .unwrap_or_else(|| hearth::db::sqlite_url(&args.data_dir));
            if url.starts_with("sqlite:") {
                std::fs::create_dir_all(&args.data_dir)?;
            }
            hearth::db::connect(&url).await?.close().await;
            println!("{} is up to date", hearth::db::redact(&url));
            return Ok(());
        }
        Some(Command::Copy(args)) => {
            init_tracing(LogFormat::Text);
            let report = hearth::copy::copy(&args.from, &args.to, args.with_sessions).await?;
            println!("copied {report}; counts verified");
            return Ok(());
        }
    };
    init_tracing(config.log_format);
    if !small_pages {
        tracing::debug!("transparent huge pages could not be refused");
    }
    if let Some(limit) = hearth::fds::raise_limit() {
        tracing::info!(open_file_limit = limit, "raised the open-file limit");
    }
    let listener = hearth::bind(config.bind)?;
    let app = hearth::App::build(config).await?;
    hearth::serve(listener, app, shutdown_signal()).await
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("hearth=info,cable=info,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
