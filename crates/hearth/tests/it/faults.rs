//! The real binary under faults: SIGTERM, SIGKILL and cut connections while
//! a stream of messages flows. The database is the truth; a client that
//! follows the documented catch-up ends with exactly its transcript.

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use crate::common::{CableClient, Event, Remote, TestUser, connect_small_window, room_identifier};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

/// A `hearth` process on a fixed port, so it can be killed and started again.
struct ServerProcess {
    port: u16,
    data_dir: tempfile::TempDir,
    /// Extra `hearth serve` arguments (a shared database, Redis).
    args: Vec<String>,
    database_url: String,
    /// An open-file limit to start the binary under, if any.
    open_file_limit: Option<u32>,
    child: Option<Child>,
}

impl ServerProcess {
    fn start() -> Self {
        Self::start_with(None, &[])
    }

    /// Starts on `database_url` (SQLite in its own folder when `None`).
    fn start_with(database_url: Option<&str>, args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data_dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = args.iter().map(std::string::ToString::to_string).collect();
        let database_url = match database_url {
            Some(url) => {
                args.extend(["--database-url".to_string(), url.to_string()]);
                url.to_owned()
            }
            None => hearth::db::sqlite_url(data_dir.path()),
        };
        let mut server = Self {
            port,
            data_dir,
            args,
            database_url,
            open_file_limit: None,
            child: None,
        };
        server.restart();
        server
    }

    /// Starts the binary under a shell that first lowers the open-file
    /// limit to `limit` (soft and hard).
    fn start_with_open_file_limit(limit: u32, args: &[&str]) -> Self {
        let mut server = Self::start_with(None, args);
        server.kill();
        server.open_file_limit = Some(limit);
        server.restart();
        server
    }

    fn restart(&mut self) {
        let mut command = match self.open_file_limit {
            Some(limit) => {
                let mut shell = Command::new("sh");
                shell
                    .arg("-c")
                    .arg(format!(r#"ulimit -n {limit} && exec "$0" "$@""#))
                    .arg(env!("CARGO_BIN_EXE_hearth"));
                shell
            }
            None => Command::new(env!("CARGO_BIN_EXE_hearth")),
        };
        let child = command
            .args(["--bind", &format!("127.0.0.1:{}", self.port)])
            .args(["--data-dir", &self.data_dir.path().display().to_string()])
            .args(["--message-rate", "0", "--sign-up-rate-per-ip", "0"])
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the hearth binary starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "hearth did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }

    fn terminate(&mut self) -> Child {
        let child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        child
    }

    /// An HTTP and cable client for this server.
    async fn client(&self) -> ProcessClient {
        ProcessClient::new(self.port, &[])
    }

    async fn stored(&self) -> Vec<(i64, i64, String)> {
        let db = hearth::db::connect(&self.database_url).await.unwrap();
        let rows: Vec<(i64, i64, String)> =
            sqlx::query_as("SELECT seq, id, content FROM messages ORDER BY seq")
                .fetch_all(&db)
                .await
                .unwrap();
        db.close().await;
        rows
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A [`Remote`] for one node, whose cable fails over to the other nodes'
/// ports, and whose posts may fail (the node may be down).
struct ProcessClient {
    /// Where it posts.
    remote: Remote,
    /// Where its cable connects: the first that answers, like a load balancer.
    ports: Vec<u16>,
}

impl std::ops::Deref for ProcessClient {
    type Target = Remote;

    fn deref(&self) -> &Remote {
        &self.remote
    }
}

impl ProcessClient {
    fn new(port: u16, failover: &[u16]) -> Self {
        Self {
            remote: Remote::new(([127, 0, 0, 1], port).into()),
            ports: [port].into_iter().chain(failover.iter().copied()).collect(),
        }
    }

    /// Posts a message; the error if the node did not store it.
    async fn post(&self, user: &TestUser, room: i64, content: &str) -> Result<Value, String> {
        let post = self.remote.try_post_message(user, room, content);
        let response = tokio::time::timeout(Duration::from_secs(5), post)
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if response.status() != 201 {
            return Err(format!("status {}", response.status()));
        }
        response.json().await.map_err(|e| e.to_string())
    }

    /// A cable to the first node that takes it within 2 s.
    async fn cable(&self, cookie: &str) -> Option<CableClient> {
        for port in &self.ports {
            let node = Remote::new(([127, 0, 0, 1], *port).into());
            let connect = node.connect_cable_at("/cable", "actioncable-v1-json", Some(cookie), &[]);
            if let Ok(Ok(cable)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
                return Some(cable);
            }
        }
        None
    }
}

/// A follower as the documented client algorithm has it: subscribe, ask
/// `catch_up` from the last shown sequence, show messages strictly in
/// sequence (holding early ones until the gap is filled), ignore those
/// already shown, and reconnect whenever the connection drops.
#[derive(Default)]
struct Follower {
    transcript: Vec<(i64, i64, String)>,
    pending: BTreeMap<i64, (i64, String)>,
    duplicates_ignored: u64,
    reconnects: u64,
}

impl Follower {
    fn last(&self) -> i64 {
        self.transcript.last().map_or(0, |(seq, _, _)| *seq)
    }

    fn receive(&mut self, message: &Value) {
        let seq = message["seq"].as_i64().unwrap();
        if seq <= self.last() || self.pending.contains_key(&seq) {
            self.duplicates_ignored += 1;
            return;
        }
        let entry = (
            message["id"].as_i64().unwrap(),
            message["content"].as_str().unwrap().to_owned(),
        );
        self.pending.insert(seq, entry);
        while let Some(entry) = self.pending.remove(&(self.last() + 1)) {
            let seq = self.last() + 1;
            self.transcript.push((seq, entry.0, entry.1));
        }
    }
}

async fn catch_up(cable: &mut CableClient, identifier: &str, after: i64) {
    let data = json!({ "action": "catch_up", "after": after }).to_string();
    cable
        .send_json(json!({ "command": "message", "identifier": identifier, "data": data }))
        .await;
}

async fn follow(
    client: Arc<ProcessClient>,
    user: TestUser,
    room: i64,
    follower: Arc<Mutex<Follower>>,
    mut cuts: mpsc::UnboundedReceiver<()>,
    target: Arc<AtomicI64>,
) {
    let identifier = room_identifier(room);
    'connect: loop {
        let done = |f: &Follower| {
            let t = target.load(Ordering::SeqCst);
            t > 0 && f.last() >= t
        };
        if done(&*follower.lock().await) {
            return;
        }
        let Some(mut cable) = client.cable(&user.cookie).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        follower.lock().await.reconnects += 1;
        cable
            .send_json(json!({ "command": "subscribe", "identifier": identifier }))
            .await;
        loop {
            let event = tokio::select! {
                _ = cuts.recv() => continue 'connect, // drops the socket: a cut
                event = tokio::time::timeout(Duration::from_millis(500), cable.next_event()) => event,
            };
            // Quiet: if every message is shown we are done, else ask again.
            let Ok(event) = event else {
                let f = follower.lock().await;
                if done(&f) {
                    return;
                }
                let last = f.last();
                drop(f);
                catch_up(&mut cable, &identifier, last).await;
                continue;
            };
            let frame = match event {
                Event::Frame(frame) => frame,
                Event::Closed(_) => continue 'connect,
            };
            if frame["type"] == "confirm_subscription" {
                let last = follower.lock().await.last();
                catch_up(&mut cable, &identifier, last).await;
            } else if frame["type"] == "disconnect" || frame["type"] == "welcome" {
                continue;
            } else if frame["message"]["type"] == "message" {
                follower.lock().await.receive(&frame["message"]);
            } else if frame["message"]["type"] == "caught_up" && frame["message"]["more"] == true {
                let last = follower.lock().await.last();
                catch_up(&mut cable, &identifier, last).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_ends_with_the_databases_transcript_through_cuts_and_kills() {
    let total: usize = 10_000;
    let mut server = ServerProcess::start();
    let client = Arc::new(server.client().await);
    let ann = client.sign_up("ann").await;
    let room = 1; // "general", created at the first start

    let follower = Arc::new(Mutex::new(Follower::default()));
    let target = Arc::new(AtomicI64::new(0));
    let (cut, cuts) = mpsc::unbounded_channel();
    let following = tokio::spawn(follow(
        client.clone(),
        ann.clone(),
        room,
        follower.clone(),
        cuts,
        target.clone(),
    ));

    // The publisher: four workers posting until `total` are acknowledged;
    // a post that fails (the server is down) is tried again.
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let next = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, ann, acked, next, stop) = (
            client.clone(),
            ann.clone(),
            acked.clone(),
            next.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n as usize >= total {
                    return;
                }
                loop {
                    assert!(!stop.load(Ordering::SeqCst), "the test gave up");
                    match client.post(&ann, room, &format!("message {n}")).await {
                        Ok(message) => {
                            acked.lock().await.insert(message["id"].as_i64().unwrap());
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
        }));
    }

    // Faults: 20 cuts at random points and two SIGKILLs with restarts.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("fault seed {seed}");
    let mut random = move |below: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % below
    };
    let mut cut_points: Vec<usize> = (0..20).map(|_| random(total)).collect();
    cut_points.sort_unstable();
    let kill_points = [total / 3, 2 * total / 3];
    let (mut cut_index, mut kill_index) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(240);
    while acked.lock().await.len() < total {
        assert!(
            Instant::now() < deadline,
            "the stream did not finish in time"
        );
        let done = acked.lock().await.len();
        while cut_index < cut_points.len() && cut_points[cut_index] <= done {
            let _ = cut.send(());
            cut_index += 1;
        }
        if kill_index < kill_points.len() && kill_points[kill_index] <= done {
            server.kill();
            tokio::time::sleep(Duration::from_millis(200)).await;
            server.restart();
            kill_index += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for worker in workers {
        worker.await.unwrap();
    }
    while cut_index < cut_points.len() {
        let _ = cut.send(());
        cut_index += 1;
    }

    let stored = server.stored().await;
    target.store(stored.last().unwrap().0, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(60), following)
        .await
        .expect("the follower catches up")
        .unwrap();
    stop.store(true, Ordering::SeqCst);

    let follower = follower.lock().await;
    assert_eq!(kill_index, 2, "the server was killed twice");
    assert_eq!(follower.transcript.len(), stored.len());
    assert!(
        follower.transcript == stored,
        "the follower's transcript equals the database's"
    );
    let stored_ids: HashSet<i64> = stored.iter().map(|(_, id, _)| *id).collect();
    let acked = acked.lock().await;
    assert!(
        acked.is_subset(&stored_ids),
        "every acknowledged message is stored"
    );
    assert!(acked.len() >= total);
    eprintln!(
        "checked {} messages ({} acknowledged), {} connections, {} duplicates ignored",
        stored.len(),
        acked.len(),
        follower.reconnects,
        follower.duplicates_ignored
    );
}

#[tokio::test]
async fn clients_that_ask_for_history_and_stop_reading_hold_a_bounded_amount_of_memory() {
    // The attack of the hardening review: long identifiers (echoed in every
    // reply), a replay of the whole room, then no reading. Each connection
    // may hold one replay page (25 messages, ~230 KB here), not the replay
    // (~9 MB here, of which the kernel's socket buffers take up to ~2 MB).
    const ATTACKERS: usize = 12;
    const BOUND_PER_CONNECTION: f64 = 400_000.0;
    let server = ServerProcess::start_with(None, &["--write-timeout", "600"]);
    let client = server.client().await;
    let ann = client.sign_up("ann").await;
    let mut writer = client.cable(&ann.cookie).await.unwrap();
    let room = 1;
    let identifier = writer.join_room(room).await;
    writer
        .speak_many(&identifier, &"z".repeat(3900), 1000)
        .await;

    let addr = ([127, 0, 0, 1], server.port).into();
    let pad = "p".repeat(950);
    let long = json!({ "channel": "ChatroomChannel", "id": room, "pad": pad }).to_string();
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        let mut cable = connect_small_window(addr, "actioncable-v1-json", &ann.cookie).await;
        cable.expect_welcome().await;
        assert_eq!(
            cable.subscribe_raw(&long).await["type"],
            "confirm_subscription"
        );
        attackers.push(cable);
    }
    let before = client.metric("hearth_heap_bytes").await;
    for cable in &mut attackers {
        catch_up(cable, &long, 0).await;
    }
    // Let every session read its command and fill what it may.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = client.metric("hearth_heap_bytes").await;
    let per_connection = (after - before) / ATTACKERS as f64;
    eprintln!("each stalled replay holds {per_connection:.0} bytes of heap");
    assert!(
        per_connection < BOUND_PER_CONNECTION,
        "each stalled replay holds {per_connection:.0} bytes (replaying it whole would hold ~7 MB)"
    );
    // The server still answers everyone else.
    client.post(&ann, room, "still serving").await.unwrap();
    assert_eq!(
        writer.next_message(&identifier).await["content"],
        "still serving"
    );
}

#[tokio::test]
async fn a_full_cable_leaves_descriptors_for_http() {
    // 256 descriptors: the cable may use 256 - 64 of them.
    let server =
        ServerProcess::start_with_open_file_limit(256, &["--max-connections-per-user", "1000"]);
    let client = server.client().await;
    let ann = client.sign_up("ann").await;
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..230 {
        match client.cable(&ann.cookie).await {
            Some(cable) => open.push(cable),
            None => refused += 1,
        }
    }
    assert!(
        refused > 0,
        "the cable was capped below the open-file limit"
    );
    assert!(
        (150..=192).contains(&open.len()),
        "{} cables open",
        open.len()
    );
    for _ in 0..20 {
        let health = tokio::time::timeout(Duration::from_secs(5), client.get("/health", None))
            .await
            .expect("HTTP still answers with the cable full");
        assert_eq!(health.status(), 200);
    }
    client.post(&ann, 1, "still posting").await.unwrap();
}

#[tokio::test]
async fn sigterm_says_server_restart_finishes_writes_and_exits_cleanly() {
    let mut server = ServerProcess::start();
    let client = server.client().await;
    let ann = client.sign_up("ann").await;
    let mut cable = client.cable(&ann.cookie).await.unwrap();
    cable.join_room(1).await;
    client
        .post(&ann, 1, "just before the restart")
        .await
        .unwrap();
    assert_eq!(
        cable.next_frame().await["message"]["content"],
        "just before the restart"
    );
    // The binary counts its heap (in-process test servers do not).
    let heap = client.metric("hearth_heap_bytes").await;
    assert!(heap > 100_000.0, "heap {heap}");

    let started = Instant::now();
    let mut child = server.terminate();
    assert_eq!(
        cable.next_frame().await,
        json!({ "type": "disconnect", "reason": "server_restart", "reconnect": true })
    );
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let stored = server.stored().await;
    assert_eq!(
        stored.last().map(|(_, _, c)| c.as_str()),
        Some("just before the restart")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis (HEARTH_TEST_POSTGRES_URL, HEARTH_TEST_REDIS_URL)"]
async fn clients_of_a_killed_node_reconnect_to_another_and_lose_nothing() {
    crate::common::service(crate::common::POSTGRES);
    let redis = crate::common::service(crate::common::REDIS);
    let database = crate::common::TestDatabase::create().await;
    let url = database.url.clone().unwrap();
    let prefix = format!("hearth-test-{}", crate::common::uuid_like());
    let args = ["--redis-url", &redis, "--redis-channel-prefix", &prefix];
    let mut one = ServerProcess::start_with(Some(&url), &args);
    let two = ServerProcess::start_with(Some(&url), &args);
    let to_one = Arc::new(ProcessClient::new(one.port, &[two.port]));
    let to_two = Arc::new(two.client().await);
    let ann = to_one.sign_up("ann").await;
    let room = 1;

    let follower = Arc::new(Mutex::new(Follower::default()));
    let target = Arc::new(AtomicI64::new(0));
    let (_cut, cuts) = mpsc::unbounded_channel();
    // The follower starts on node 1; when it dies, node 2 answers.
    let following = tokio::spawn(follow(
        to_one.clone(),
        ann.clone(),
        room,
        follower.clone(),
        cuts,
        target.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let total = 1000;
    for n in 0..total {
        if n == total / 2 {
            one.kill();
        }
        let node = if n % 2 == 0 && n < total / 2 {
            &to_one
        } else {
            &to_two
        };
        node.post(&ann, room, &format!("message {n}"))
            .await
            .expect("posted");
    }
    let stored = one.stored().await;
    target.store(stored.last().unwrap().0, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(60), following)
        .await
        .expect("the follower catches up on node 2")
        .unwrap();
    let follower = follower.lock().await;
    assert_eq!(stored.len(), total);
    assert!(
        follower.transcript == stored,
        "the follower's transcript equals the database's"
    );
    assert!(follower.reconnects >= 2, "it moved to node 2");
}
