//! Spreading one scenario over several processes, and the barriers that
//! keep them in step.
//!
//! One process may hold only as many sockets as its open-file limit allows
//! (20,000 here), so `--workers K` re-executes this binary K times, each
//! with `--worker-index i`, taking every K-th client. A worker talks to its
//! parent in lines: it prints `@barrier <name>` on stdout and waits for `go`
//! on stdin; at the end it prints `@result <json>`. The parent (the leader)
//! releases a barrier once every worker has reached it, after sampling the
//! server's memory and CPU; then it merges the results. The leader's setup
//! (users, rooms) reaches the workers in a file that it removes at the end.
//! A run without workers goes through the same barriers, in process.

use std::future::Future;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines, Stdin};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

use crate::procfs;
use crate::report::spinner;

/// The environment variable that names the file in which the leader hands
/// its setup to workers (a file, as 10,000 cookies pass the 128 KiB an
/// environment variable may hold).
pub const SETUP_ENV: &str = "HEARTH_BENCH_SETUP_FILE";

/// The file of this leader's setup for its workers; removed when dropped.
struct SetupFile(std::path::PathBuf);

impl SetupFile {
    fn write(setup_json: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "hearth-bench-setup-{}-{}.json",
            std::process::id(),
            unix_nanos()
        ));
        std::fs::write(&path, setup_json)
            .with_context(|| format!("writing the workers' setup to {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for SetupFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A worker's setup, as its leader wrote it.
pub fn read_setup() -> anyhow::Result<String> {
    let path = std::env::var_os(SETUP_ENV).context("a worker needs its parent's setup")?;
    std::fs::read_to_string(&path)
        .with_context(|| format!("reading the parent's setup from {}", path.display()))
}

/// What the leader saw at one barrier.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// The barrier's name.
    pub name: String,
    /// When, Unix nanoseconds.
    pub unix_nanos: u64,
    /// The server's VmRSS, with `--pid`.
    pub server_rss_kib: Option<u64>,
    /// The server's CPU seconds so far, with `--pid`.
    pub server_cpu_s: Option<f64>,
    /// CPU seconds used so far by this tool (all its processes).
    pub client_cpu_s: f64,
    /// VmRSS of this tool (all its processes).
    pub client_rss_kib: u64,
}

/// The process that measures: samples at barriers, merges results.
pub struct Leader {
    server_pid: Option<u32>,
    client_pids: Mutex<Vec<u32>>,
    samples: Mutex<Vec<Sample>>,
}

impl Leader {
    /// A leader watching server `server_pid`, with this process as the only client.
    pub fn new(server_pid: Option<u32>) -> Self {
        Self {
            server_pid,
            client_pids: Mutex::new(vec![std::process::id()]),
            samples: Mutex::new(Vec::new()),
        }
    }

    fn sample(&self, name: &str) {
        let pids = self.client_pids.lock().expect("not poisoned").clone();
        let sample = Sample {
            name: name.to_owned(),
            unix_nanos: unix_nanos(),
            server_rss_kib: self.server_pid.and_then(procfs::rss_kib),
            server_cpu_s: self.server_pid.and_then(procfs::cpu_seconds),
            client_cpu_s: pids.iter().filter_map(|&p| procfs::cpu_seconds(p)).sum(),
            client_rss_kib: pids.iter().filter_map(|&p| procfs::rss_kib(p)).sum(),
        };
        self.samples.lock().expect("not poisoned").push(sample);
    }
}

/// A scenario's handle on the barriers.
pub enum Coord {
    /// No workers: barriers are samples taken in process.
    Solo(Arc<Leader>),
    /// A worker: barriers go through the parent.
    Worker(tokio::sync::Mutex<Lines<BufReader<Stdin>>>),
}

impl Coord {
    /// Waits until every process has reached barrier `name`.
    pub async fn barrier(&self, name: &str) -> anyhow::Result<()> {
        match self {
            Coord::Solo(leader) => {
                leader.sample(name);
                Ok(())
            }
            Coord::Worker(stdin) => {
                println!("@barrier {name}");
                let line = stdin.lock().await.next_line().await?;
                match line.as_deref() {
                    Some("go") => Ok(()),
                    other => bail!("expected go from the parent at {name}, got {other:?}"),
                }
            }
        }
    }
}

/// The merged outcome of a scenario, on the leader.
pub struct Outcome<P> {
    /// One partial result per process.
    pub partials: Vec<P>,
    /// The leader's samples, in barrier order.
    pub samples: Vec<Sample>,
}

impl<P> Outcome<P> {
    /// The sample taken at barrier `name`.
    pub fn at(&self, name: &str) -> Option<&Sample> {
        self.samples.iter().find(|s| s.name == name)
    }
}

impl<P: crate::stats::Merge> Outcome<P> {
    /// Every process's share added up.
    pub fn total(&self) -> P {
        let mut total = P::default();
        for p in &self.partials {
            total.merge(p);
        }
        total
    }
}

/// Runs `work` here, or in `workers` child processes when more than one.
/// In a worker (`worker_index` set) it prints the result for the parent and
/// returns `None`.
pub async fn drive<P, F, Fut>(
    workers: usize,
    worker_index: Option<usize>,
    server_pid: Option<u32>,
    setup_json: &str,
    work: F,
) -> anyhow::Result<Option<Outcome<P>>>
where
    P: Serialize + DeserializeOwned,
    F: FnOnce(Coord) -> Fut,
    Fut: Future<Output = anyhow::Result<P>>,
{
    if worker_index.is_some() {
        let stdin = BufReader::new(tokio::io::stdin()).lines();
        let partial = work(Coord::Worker(tokio::sync::Mutex::new(stdin))).await?;
        println!("@result {}", serde_json::to_string(&partial)?);
        return Ok(None);
    }
    let leader = Arc::new(Leader::new(server_pid));
    if workers <= 1 {
        let partial = work(Coord::Solo(leader.clone())).await?;
        let samples = leader.samples.lock().expect("not poisoned").clone();
        return Ok(Some(Outcome {
            partials: vec![partial],
            samples,
        }));
    }
    lead(workers, leader, setup_json).await.map(Some)
}

enum Line {
    Barrier(String),
    Result(String),
    Gone,
}

async fn lead<P: DeserializeOwned>(
    workers: usize,
    leader: Arc<Leader>,
    setup_json: &str,
) -> anyhow::Result<Outcome<P>> {
    let exe = std::env::current_exe().context("finding this program")?;
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let setup = SetupFile::write(setup_json)?;
    // Every worker's stdout lines, tagged with its index; bounded by the few
    // lines a worker prints.
    let (lines_tx, mut lines) = mpsc::unbounded_channel();
    let mut children: Vec<Child> = Vec::new();
    let mut stdins: Vec<ChildStdin> = Vec::new();
    for i in 0..workers {
        let mut child = tokio::process::Command::new(&exe)
            .args(&args)
            .arg("--worker-index")
            .arg(i.to_string())
            .env(SETUP_ENV, &setup.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker")?;
        if let Some(pid) = child.id() {
            leader.client_pids.lock().expect("not poisoned").push(pid);
        }
        stdins.push(child.stdin.take().expect("piped"));
        let stdout = child.stdout.take().expect("piped");
        let tx = lines_tx.clone();
        // Forwards one worker's protocol lines; ends with its stdout.
        tokio::spawn(async move {
            let mut out = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = out.next_line().await {
                let parsed = if let Some(name) = line.strip_prefix("@barrier ") {
                    Line::Barrier(name.to_owned())
                } else if let Some(json) = line.strip_prefix("@result ") {
                    Line::Result(json.to_owned())
                } else {
                    eprintln!("[worker {i}] {line}");
                    continue;
                };
                if tx.send((i, parsed)).is_err() {
                    return;
                }
            }
            let _ = tx.send((i, Line::Gone));
        });
        children.push(child);
    }
    drop(lines_tx);

    let started = Instant::now();
    let bar = spinner("workers");
    let mut waiting: Vec<usize> = Vec::new();
    let mut current: Option<String> = None;
    let mut results: Vec<Option<P>> = (0..workers).map(|_| None).collect();
    while results.iter().any(Option::is_none) {
        let Some((i, line)) = lines.recv().await else {
            bail!("every worker stopped before sending its result");
        };
        match line {
            Line::Barrier(name) => {
                if current.get_or_insert_with(|| name.clone()) != &name {
                    bail!("worker {i} reached {name} while others wait at {current:?}");
                }
                waiting.push(i);
                bar.set_message(format!(
                    "{name}: {}/{workers} workers ({:.0?})",
                    waiting.len(),
                    started.elapsed()
                ));
                if waiting.len() == workers {
                    leader.sample(&name);
                    for stdin in &mut stdins {
                        stdin.write_all(b"go\n").await?;
                        stdin.flush().await?;
                    }
                    waiting.clear();
                    current = None;
                }
            }
            Line::Result(json) => {
                results[i] = Some(serde_json::from_str(&json).context("a worker's result")?);
            }
            Line::Gone if results[i].is_none() => {
                bail!("worker {i} stopped before sending its result (see its errors above)");
            }
            Line::Gone => {}
        }
    }
    bar.finish_and_clear();
    for mut child in children {
        child.wait().await?;
    }
    let samples = leader.samples.lock().expect("not poisoned").clone();
    Ok(Outcome {
        partials: results.into_iter().flatten().collect(),
        samples,
    })
}

/// Now, in Unix nanoseconds: the clock every process of a run shares.
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
