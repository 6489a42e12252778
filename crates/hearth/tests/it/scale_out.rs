//! Several nodes on one PostgreSQL and one Redis: fan-out between nodes, no
//! gaps across a Redis outage, Action Cable Redis interop, and `hearth copy`.
//!
//! These need `HEARTH_TEST_POSTGRES_URL` and/or `HEARTH_TEST_REDIS_URL`
//! (`.ci/run` sets both); without them each test says so and passes, so
//! `cargo test` works on a machine with neither.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{CableClient, TestApp, TestDatabase, uuid_like};
use serde_json::{Value, json};

fn redis_url() -> Option<String> {
    std::env::var("HEARTH_TEST_REDIS_URL").ok()
}

fn skip(what: &str) {
    eprintln!("skipped: needs {what}");
}

/// Waits until `/ready` answers 200 (database and broker connected).
async fn wait_ready(app: &TestApp) {
    for _ in 0..100 {
        if app.get("/ready", None).await.status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never became ready", app.base);
}

/// Collects `count` room messages from a cable, in arrival order.
async fn collect(cable: &mut CableClient, identifier: &str, count: usize) -> Vec<Value> {
    let mut messages = Vec::with_capacity(count);
    while messages.len() < count {
        let frame = tokio::time::timeout(Duration::from_secs(30), cable.next_frame())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} messages arrived", messages.len()));
        assert_eq!(frame["identifier"], identifier, "{frame}");
        messages.push(frame["message"].clone());
    }
    messages
}

fn seqs(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

/// Two nodes on a fresh database and one Redis channel prefix of their own.
async fn two_nodes(database: Arc<TestDatabase>, redis: &str) -> (TestApp, TestApp) {
    let prefix = format!("hearth-test-{}", uuid_like());
    let args = [
        "--redis-url",
        redis,
        "--redis-channel-prefix",
        &prefix,
        "--message-rate",
        "0",
    ];
    let one = TestApp::spawn_on(Some(database.clone()), &args).await;
    let two = TestApp::spawn_on(Some(database), &args).await;
    wait_ready(&one).await;
    wait_ready(&two).await;
    (one, two)
}

#[tokio::test]
async fn a_subscriber_on_node_two_receives_in_order_what_node_one_stores() {
    let (Some(redis), true) = (redis_url(), TestDatabase::postgres_configured()) else {
        return skip("HEARTH_TEST_POSTGRES_URL and HEARTH_TEST_REDIS_URL");
    };
    let (one, two) = two_nodes(Arc::new(TestDatabase::create().await), &redis).await;
    let ann = one.sign_up("ann").await;
    let bob = two.sign_up("bob").await;
    let room = one.general_room(&ann).await;
    let mut listener = two.connect_cable(Some(&bob.cookie)).await;
    let identifier = listener.join_room(room).await;
    let mut speaker = one.connect_cable(Some(&ann.cookie)).await;
    speaker.join_room(room).await;

    for n in 0..20 {
        if n % 2 == 0 {
            assert_eq!(
                one.post_message(&ann, room, &format!("http {n}"))
                    .await
                    .status(),
                201
            );
        } else {
            speaker.speak(&identifier, &format!("speak {n}")).await;
            // Wait for our own echo, so the next post is stored after this one.
            speaker.next_frame().await;
        }
    }
    let received = collect(&mut listener, &identifier, 20).await;
    assert_eq!(seqs(&received), (1..=20).collect::<Vec<_>>());
    for (n, message) in received.iter().enumerate() {
        let kind = if n % 2 == 0 { "http" } else { "speak" };
        assert_eq!(message["content"], format!("{kind} {n}"));
        assert_eq!(message["nickname"], "ann");
    }
    listener.expect_silence(Duration::from_millis(300)).await;
}

/// A `redis-server` of the test's own, on a free port, that it may stop.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn a_redis_outage_mid_stream_loses_and_repeats_nothing_on_either_node() {
    if !TestDatabase::postgres_configured()
        || Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
    {
        return skip("HEARTH_TEST_POSTGRES_URL and redis-server");
    }
    let mut redis = OwnRedis::start();
    let (one, two) = two_nodes(Arc::new(TestDatabase::create().await), &redis.url()).await;
    let ann = one.sign_up("ann").await;
    let bob = two.sign_up("bob").await;
    let room = one.general_room(&ann).await;
    let mut ann_cable = one.connect_cable(Some(&ann.cookie)).await;
    let identifier = ann_cable.join_room(room).await;
    let mut bob_cable = two.connect_cable(Some(&bob.cookie)).await;
    bob_cable.join_room(room).await;

    let total = 90;
    for n in 0..total {
        if n == 30 {
            redis.stop();
            // Both nodes notice and say so.
            for node in [&one, &two] {
                let mut degraded = false;
                for _ in 0..100 {
                    let response = node.get("/ready", None).await;
                    if response.status() == 503 {
                        let body: Value = response.json().await.unwrap();
                        assert_eq!(body["broker"], "degraded");
                        degraded = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                assert!(degraded, "{} should report Redis as degraded", node.base);
            }
        }
        if n == 60 {
            redis.restart();
        }
        let (node, user) = if n % 2 == 0 {
            (&one, &ann)
        } else {
            (&two, &bob)
        };
        assert_eq!(
            node.post_message(user, room, &format!("message {n}"))
                .await
                .status(),
            201
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    for cable in [&mut ann_cable, &mut bob_cable] {
        let received = collect(cable, &identifier, total).await;
        assert_eq!(
            seqs(&received),
            (1..=total as i64).collect::<Vec<_>>(),
            "every message once, in order"
        );
        cable.expect_silence(Duration::from_millis(500)).await;
    }
    wait_ready(&one).await;
    wait_ready(&two).await;
}

#[tokio::test]
async fn rails_and_hearth_share_broadcasts_through_redis() {
    let Some(redis) = redis_url() else {
        return skip("HEARTH_TEST_REDIS_URL");
    };
    let prefix = format!("hearth-test-{}", uuid_like());
    let app =
        TestApp::spawn_with(&["--redis-url", &redis, "--redis-channel-prefix", &prefix]).await;
    wait_ready(&app).await;
    let ann = app.sign_up("ann").await;
    let room = app.general_room(&ann).await;
    let mut cable = app.connect_cable(Some(&ann.cookie)).await;
    let identifier = cable.join_room(room).await;
    let channel = format!("{prefix}:chatrooms:{room}");

    // A Rails app's ActionCable.server.broadcast("chatrooms:1", {...}) with
    // channel_prefix set is exactly this PUBLISH.
    let published = Command::new("redis-cli")
        .args([
            "-u",
            &redis,
            "PUBLISH",
            &channel,
            r#"{"content":"from rails"}"#,
        ])
        .output()
        .expect("redis-cli is installed");
    assert!(published.status.success());
    assert_eq!(
        cable.next_message(&identifier).await,
        json!({ "content": "from rails" })
    );

    // And what Hearth broadcasts, a Rails subscriber of that channel hears.
    let mut subscriber = Command::new("redis-cli")
        .args(["-u", &redis, "SUBSCRIBE", &channel])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = subscriber.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        while let Some(Ok(line)) = lines.next() {
            seen.push(line);
            if seen.len() == 6 {
                break;
            }
        }
        seen
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.post_message(&ann, room, "to rails").await.status(), 201);
    let seen = tokio::task::spawn_blocking(move || lines.join().unwrap())
        .await
        .unwrap();
    let _ = subscriber.kill();
    let _ = subscriber.wait();
    assert_eq!(seen[3], "message");
    assert_eq!(seen[4], channel);
    let payload: Value = serde_json::from_str(&seen[5]).unwrap();
    assert_eq!(payload["content"], "to rails");
    assert_eq!(payload["type"], "message");
    assert_eq!(cable.next_message(&identifier).await["content"], "to rails");
}

#[tokio::test]
async fn hearth_copy_moves_a_sqlite_instance_to_postgres_that_behaves_the_same() {
    if !TestDatabase::postgres_configured() {
        return skip("HEARTH_TEST_POSTGRES_URL");
    }
    let mut old = TestApp::spawn_on(None, &["--message-rate", "0"]).await;
    let ann = old.sign_up("ann").await;
    let bob = old.sign_up("bob").await;
    let general = old.general_room(&ann).await;
    let random = old.create_room(&bob, "random").await;
    for n in 0..30 {
        let (user, room) = if n % 3 == 0 {
            (&bob, random)
        } else {
            (&ann, general)
        };
        assert_eq!(
            old.post_message(user, room, &format!("old message {n}"))
                .await
                .status(),
            201
        );
    }
    let before = old
        .page(&format!("/chatrooms/{general}"), &ann.cookie)
        .await;
    old.shutdown().await;

    let target = Arc::new(TestDatabase::create().await);
    let source = hearth::db::sqlite_url(old.data_dir.path());
    let report = hearth::copy::copy(&source, target.url.as_deref().unwrap(), true)
        .await
        .unwrap();
    assert_eq!(
        (
            report.users,
            report.chatrooms,
            report.messages,
            report.sessions
        ),
        (2, 2, 30, 2)
    );

    let new = TestApp::spawn_on(Some(target), &[]).await;
    let after = new
        .page(&format!("/chatrooms/{general}"), &ann.cookie)
        .await;
    assert_eq!(
        before, after,
        "the room page is the same, sessions included"
    );
    let signed_in = new.post_sign_in(&bob.email, &bob.password, None).await;
    assert_eq!(signed_in.status(), 303, "passwords still work");

    let mut cable = new.connect_cable(Some(&ann.cookie)).await;
    let identifier = cable.join_room(general).await;
    assert_eq!(
        new.post_message(&ann, general, "new message")
            .await
            .status(),
        201
    );
    let message = cable.next_message(&identifier).await;
    assert_eq!(message["seq"], 21, "the room's sequence carries on");
    assert_eq!(message["id"], 31, "ids carry on after the copied ones");
    new.sign_up("carol").await;
    new.create_room(&ann, "fresh").await;
    assert_eq!(new.count("users").await, 3);
}

#[tokio::test]
async fn copy_refuses_a_target_that_already_has_chat_data() {
    if !TestDatabase::postgres_configured() {
        return skip("HEARTH_TEST_POSTGRES_URL");
    }
    let database = Arc::new(TestDatabase::create().await);
    let used = TestApp::spawn_on(Some(database.clone()), &[]).await;
    used.sign_up("ann").await;
    let source = TestApp::spawn_on(None, &[]).await;
    let error = hearth::copy::copy(
        &hearth::db::sqlite_url(source.data_dir.path()),
        database.url.as_deref().unwrap(),
        false,
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("already holds users"), "{error}");
    assert_eq!(used.count("users").await, 1);
}
