//! `hearth-bench reads`: what reading costs on a big database. Starts the
//! real `hearth` binary on a database made by `hearth-bench seed` (timing
//! the start), signs in as a seeded user and times, one request at a time
//! over HTTP: searches (a common word, a rare one, part of a word, a two-
//! and a four-character Chinese phrase, each alone and with `in:#room` for
//! the busiest and the quietest public room),
//! history pages, room pages and the sidebar's unread counts, the last also
//! as the bare query (`hearth::db::memberships::unread`) in this process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cli::ReadsArgs;
use crate::http::{HttpConn, Request, Response};
use crate::net::Endpoint;
use crate::seed;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Latencies of one kind of request, in milliseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Timing {
    /// What was asked.
    pub what: String,
    /// Requests timed.
    pub count: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    /// What one answer held (results, messages), for the table.
    pub note: String,
}

impl Timing {
    /// The percentiles of `samples` (ms).
    pub fn of(what: impl Into<String>, mut samples: Vec<f64>, note: String) -> Self {
        samples.sort_by(f64::total_cmp);
        let at = |p: f64| {
            if samples.is_empty() {
                return 0.0;
            }
            let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1]
        };
        Self {
            what: what.into(),
            count: samples.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or(0.0),
            note,
        }
    }
}

/// A `hearth` process started by this tool, stopped with SIGTERM on drop.
struct Server {
    child: tokio::process::Child,
    endpoint: Endpoint,
}

impl Server {
    /// Starts `hearth` on `url` on a free loopback port; returns it once
    /// `/health` answers 200, and how long that took.
    async fn start(hearth: &Path, url: &str, log: &Path) -> anyhow::Result<(Self, Duration)> {
        let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log_file = std::fs::File::create(log)?;
        let started = Instant::now();
        let child = tokio::process::Command::new(hearth)
            .args(["--bind", &addr.to_string(), "--database-url", url])
            .env("RUST_LOG", "hearth=warn")
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", hearth.display()))?;
        let mut server = Self {
            child,
            endpoint: Endpoint::parse(&format!("http://{addr}"))?,
        };
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!("hearth exited with {status} (log: {})", log.display());
            }
            if started.elapsed() > Duration::from_secs(300) {
                bail!("hearth did not answer /health in 300 s");
            }
            if let Ok(mut conn) = HttpConn::connect(&server.endpoint, LOOPBACK).await
                && let Ok(response) = get(&mut conn, "/health", &[]).await
                && response.status == 200
            {
                return Ok((server, started.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// SIGTERM, then waits for the process to end.
    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on the pid of our own child, which has not
            // been waited for yet, so the pid is still ours.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??;
        Ok(())
    }
}

async fn get(
    conn: &mut HttpConn,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Response> {
    conn.send(&Request {
        method: "GET",
        path,
        headers,
        form: None,
    })
    .await
}

/// Signs in as `email` with the seeded password; returns the session cookie.
pub async fn sign_in(endpoint: &Endpoint, email: &str) -> anyhow::Result<String> {
    let mut conn = HttpConn::connect(endpoint, LOOPBACK).await?;
    let response = conn
        .send(&Request {
            method: "POST",
            path: "/sign_in",
            headers: &[],
            form: Some(&[("email", email), ("password", seed::PASSWORD)]),
        })
        .await?;
    match (response.status, response.cookie("hearth_session")) {
        (303, Some(cookie)) => Ok(cookie.to_owned()),
        (status, _) => bail!("signing in as {email} answered {status}"),
    }
}

/// `text` for a URL's query: everything but ASCII letters and digits escaped.
pub fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Times `count` GETs of the paths `path(i)` gives, after a few untimed
/// ones; each must answer 200. Returns the samples (ms) and the first body.
async fn time_gets(
    conn: &mut HttpConn,
    headers: &[(&str, &str)],
    count: usize,
    mut path: impl FnMut(usize) -> String,
) -> anyhow::Result<(Vec<f64>, Vec<u8>)> {
    let mut samples = Vec::with_capacity(count);
    let mut first = Vec::new();
    for i in 0..count + 5 {
        let path = path(i);
        let started = Instant::now();
        let response = get(conn, &path, headers).await?;
        let took = started.elapsed().as_secs_f64() * 1e3;
        ensure!(
            response.status == 200,
            "GET {path} answered {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
                .chars()
                .take(200)
                .collect::<String>()
        );
        if i == 0 {
            first = response.body;
        }
        if i >= 5 {
            samples.push(took);
        }
    }
    Ok((samples, first))
}

/// Runs `hearth-bench reads`.
pub async fn run(args: &ReadsArgs) -> anyhow::Result<()> {
    let url = seed::database_url(&args.database);
    let log = std::env::temp_dir().join(format!("hearth-reads-{}.log", std::process::id()));
    let mut timings = Vec::new();

    // Start-up on the big database, a few times; the last one stays up.
    let mut starts = Vec::new();
    let mut server = None;
    for n in 0..args.starts.max(1) {
        let (started, took) = Server::start(&args.hearth, &url, &log).await?;
        starts.push(took.as_secs_f64() * 1e3);
        if n + 1 < args.starts.max(1) {
            started.stop().await?;
        } else {
            server = Some(started);
        }
    }
    timings.push(Timing::of("server start to /health", starts, String::new()));
    let server = server.expect("a server was started");

    // The app's own pool (its connection settings; migrations are done).
    let db = hearth::db::connect(&url).await?;
    let email = seed::email(1);
    let (user,): (i64,) = sqlx::query_as("SELECT id FROM users WHERE email = $1")
        .bind(&email)
        .fetch_one(&db)
        .await
        .with_context(|| format!("{email} is not in the database: seed it first"))?;
    let cookie = format!(
        "hearth_session={}",
        sign_in(&server.endpoint, &email).await?
    );
    let json: [(&str, &str); 2] = [("Cookie", &cookie), ("Accept", "application/json")];
    let html: [(&str, &str); 1] = [("Cookie", &cookie)];
    let mut conn = HttpConn::connect(&server.endpoint, LOOPBACK).await?;
    let repeat = args.repeat.max(1);

    // Search.
    // `in:#room` for the busiest room after general and for the quietest,
    // when there are such rooms (a one-room seed has only general).
    let rooms: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM chatrooms WHERE kind = 'public' AND name <> 'general' \
         ORDER BY last_seq DESC",
    )
    .fetch_all(&db)
    .await?;
    let mut scopes = vec![None];
    if let (Some(busy), Some(quiet)) = (rooms.first(), rooms.last()) {
        scopes.extend([Some(busy), Some(quiet)]);
    }
    let rare = &seed::text::rare_words()[17];
    let queries = [
        ("common word", "deploy".to_owned()),
        ("rare word", rare.clone()),
        ("part of a word", "ploy".to_owned()),
        ("2-character Chinese", "会议".to_owned()),
        ("4-character Chinese", "性能测试".to_owned()),
    ];
    for (what, terms) in &queries {
        for scope in scopes.iter().copied() {
            let q = match scope {
                Some(room) => format!("{terms} in:#{room}"),
                None => terms.clone(),
            };
            let path = format!("/search?q={}", query_escape(&q));
            let (samples, body) = time_gets(&mut conn, &json, repeat, |_| path.clone()).await?;
            let answer: serde_json::Value = serde_json::from_slice(&body)?;
            let found = answer["results"].as_array().map_or(0, Vec::len);
            let more = if answer["more"] == true { "+" } else { "" };
            timings.push(Timing::of(
                format!("search {what}: {q}"),
                samples,
                format!("{found}{more} results on page 0"),
            ));
        }
    }

    // History pages of the busiest room, at random places.
    let (general, last_seq): (i64, i64) = sqlx::query_as(
        "SELECT id, last_seq FROM chatrooms WHERE kind = 'public' ORDER BY last_seq DESC LIMIT 1",
    )
    .fetch_one(&db)
    .await?;
    let mut rng = StdRng::seed_from_u64(11);
    let (samples, body) = time_gets(&mut conn, &json, repeat, |_| {
        let before = rng.gen_range(2..=last_seq.max(2));
        format!("/chatrooms/{general}/messages?before={before}")
    })
    .await?;
    let page: serde_json::Value = serde_json::from_slice(&body)?;
    timings.push(Timing::of(
        format!("history page, room {general} ({last_seq} events), random ?before="),
        samples,
        format!(
            "{} messages a page",
            page["messages"].as_array().map_or(0, Vec::len)
        ),
    ));

    // Room pages (50 messages, the sidebar with its unread counts) of every
    // room the user may read, in turn.
    let readable: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM chatrooms WHERE archived_at IS NULL AND (kind = 'public' \
         OR id IN (SELECT chatroom_id FROM memberships WHERE user_id = $1)) ORDER BY id",
    )
    .bind(user)
    .fetch_all(&db)
    .await?;
    let (samples, _) = time_gets(&mut conn, &html, repeat, |i| {
        format!("/chatrooms/{}", readable[i % readable.len()])
    })
    .await?;
    timings.push(Timing::of(
        format!("room page, {} rooms in turn", readable.len()),
        samples,
        String::new(),
    ));

    // Unread counts: the sidebar alone (the "New message" page is the
    // sidebar and a form), then the query alone in this process.
    let (samples, _) = time_gets(&mut conn, &html, repeat, |_| "/dm".to_owned()).await?;
    timings.push(Timing::of(
        "page with only the sidebar (GET /dm)",
        samples,
        String::new(),
    ));
    let mut listed: Vec<i64> = hearth::db::chatrooms::recent(&db, user, 50)
        .await?
        .into_iter()
        .map(|room| room.id)
        .collect();
    listed.extend(
        hearth::db::chatrooms::directs(&db, user, 30)
            .await?
            .into_iter()
            .map(|room| room.id),
    );
    let mut samples = Vec::with_capacity(repeat);
    let mut unread = std::collections::HashMap::new();
    for i in 0..repeat + 5 {
        let started = Instant::now();
        unread = hearth::db::memberships::unread(&db, user, &listed).await?;
        if i >= 5 {
            samples.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    timings.push(Timing::of(
        format!("unread-count query, {} sidebar rooms", listed.len()),
        samples,
        format!(
            "{} rooms unread, {} messages",
            unread.values().filter(|u| u.messages > 0).count(),
            unread.values().map(|u| u.messages).sum::<i64>()
        ),
    ));
    db.close().await;
    server.stop().await?;

    print_table(&args.database, &timings);
    if let Some(out) = &args.out {
        let mut lines = String::new();
        for timing in &timings {
            lines.push_str(&serde_json::to_string(timing)?);
            lines.push('\n');
        }
        std::fs::write(out, lines)?;
    }
    Ok(())
}

fn print_table(database: &str, timings: &[Timing]) {
    println!("{}", hearth::db::redact(database));
    println!("| what | n | p50 ms | p95 ms | p99 ms | max ms | |");
    println!("|---|---|---|---|---|---|---|");
    for t in timings {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            t.what, t.count, t.p50, t.p95, t.p99, t.max, t.note
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_ranks_of_the_sorted_samples() {
        let t = Timing::of("x", (1..=100).rev().map(f64::from).collect(), String::new());
        assert_eq!((t.p50, t.p95, t.p99, t.max), (50.0, 95.0, 99.0, 100.0));
    }

    #[test]
    fn queries_are_escaped_for_urls() {
        assert_eq!(query_escape("a b#会"), "a%20b%23%E4%BC%9A");
    }
}
