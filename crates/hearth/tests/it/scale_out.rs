//! Several nodes on one PostgreSQL and one Redis: fan-out between nodes, no
//! gaps across a Redis outage, Action Cable Redis interop, and `hearth copy`.
//!
//! These need PostgreSQL and/or Redis (`HEARTH_TEST_POSTGRES_URL`,
//! `HEARTH_TEST_REDIS_URL`) or a `redis-server` to start: each is
//! `#[ignore = "needs …"]`, so `cargo test` lists it as ignored, and
//! `.ci/run` runs them with `--include-ignored`, where a missing service
//! fails the test.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{CableClient, TestApp, TestDatabase, uuid_like};
use futures_util::StreamExt;
use serde_json::{Value, json};

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

/// One node on SQLite and `redis`, with a channel prefix of its own
/// (returned), ready.
async fn redis_node(redis: &str) -> (TestApp, String) {
    let prefix = format!("hearth-test-{}", uuid_like());
    let app = TestApp::spawn_with(&["--redis-url", redis, "--redis-channel-prefix", &prefix]).await;
    wait_ready(&app).await;
    (app, prefix)
}

/// Two nodes on a fresh database of the shared PostgreSQL and on the shared
/// Redis (failing the test if either is not configured).
async fn two_nodes_on_shared_services() -> (TestApp, TestApp) {
    two_nodes_on_shared_services_with(&[]).await
}

/// The same, with more `hearth serve` arguments for both.
async fn two_nodes_on_shared_services_with(extra: &[&str]) -> (TestApp, TestApp) {
    crate::common::service(crate::common::POSTGRES);
    let redis = crate::common::service(crate::common::REDIS);
    two_nodes_with(Arc::new(TestDatabase::create().await), &redis, extra).await
}

/// Two nodes on a fresh database and one Redis channel prefix of their own.
async fn two_nodes(database: Arc<TestDatabase>, redis: &str) -> (TestApp, TestApp) {
    two_nodes_with(database, redis, &[]).await
}

/// The same, with more `hearth serve` arguments for both.
async fn two_nodes_with(
    database: Arc<TestDatabase>,
    redis: &str,
    extra: &[&str],
) -> (TestApp, TestApp) {
    let prefix = format!("hearth-test-{}", uuid_like());
    let mut args = vec![
        "--redis-url",
        redis,
        "--redis-channel-prefix",
        &prefix,
        "--message-rate",
        "0",
    ];
    args.extend_from_slice(extra);
    let one = TestApp::spawn_on(Some(database.clone()), &args).await;
    let two = TestApp::spawn_on(Some(database), &args).await;
    wait_ready(&one).await;
    wait_ready(&two).await;
    (one, two)
}

/// Two nodes; ann signed up on node one, bob on node two, following her room.
struct Listening {
    one: TestApp,
    two: TestApp,
    ann: crate::common::TestUser,
    bob: crate::common::TestUser,
    room: i64,
    listener: CableClient,
    identifier: String,
}

async fn bob_on_node_two_listening_to_ann_on_node_one() -> Listening {
    let (one, two) = two_nodes_on_shared_services().await;
    let ann = one.sign_up("ann").await;
    let bob = two.sign_up("bob").await;
    let room = one.general_room(&ann).await;
    let mut listener = two.connect_cable(Some(&bob.cookie)).await;
    let identifier = listener.join_room(room).await;
    Listening {
        one,
        two,
        ann,
        bob,
        room,
        listener,
        identifier,
    }
}

#[ignore = "needs PostgreSQL and Redis (HEARTH_TEST_POSTGRES_URL, HEARTH_TEST_REDIS_URL)"]
#[tokio::test]
async fn a_subscriber_on_node_two_receives_in_order_what_node_one_stores() {
    // Node two must live to the end: bound, not dropped with `..`.
    let Listening {
        one,
        two: _two,
        ann,
        room,
        mut listener,
        identifier,
        ..
    } = bob_on_node_two_listening_to_ann_on_node_one().await;
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

#[ignore = "needs PostgreSQL and Redis (HEARTH_TEST_POSTGRES_URL, HEARTH_TEST_REDIS_URL)"]
#[tokio::test]
async fn edits_and_deletions_on_node_one_reach_node_two_in_the_rooms_sequence() {
    let Listening {
        one,
        two,
        ann,
        bob,
        room,
        mut listener,
        identifier,
    } = bob_on_node_two_listening_to_ann_on_node_one().await;

    let posted: Value = one
        .post_message(&ann, room, "frist")
        .await
        .json()
        .await
        .unwrap();
    let id = posted["id"].as_i64().unwrap();
    assert_eq!(
        one.edit_message(&ann, room, id, "first").await.status(),
        200
    );
    assert_eq!(one.post_message(&ann, room, "second").await.status(), 201);
    assert_eq!(one.delete_message(&ann, room, id).await.status(), 200);

    let received = collect(&mut listener, &identifier, 4).await;
    assert_eq!(seqs(&received), [1, 2, 3, 4]);
    let kinds = crate::common::payload_types(&received);
    assert_eq!(
        kinds,
        ["message", "message_edited", "message", "message_deleted"]
    );
    assert_eq!(received[1]["content"], "first");
    assert_eq!(received[3]["id"], id);

    // A late subscriber on node two catches up the same sequence from PostgreSQL.
    let mut late = two.connect_cable(Some(&bob.cookie)).await;
    let late_id = late.join_room(room).await;
    late.catch_up(&late_id, 0).await;
    let replayed = collect(&mut late, &late_id, 5).await;
    let kinds = crate::common::payload_types(&replayed);
    // Each place as it is now: the post and the edit of a message deleted
    // since replay as deletions, and its text is not sent again.
    assert_eq!(
        kinds,
        [
            "message_deleted",
            "message_deleted",
            "message",
            "message_deleted",
            "caught_up"
        ]
    );
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

#[ignore = "needs PostgreSQL (HEARTH_TEST_POSTGRES_URL) and redis-server to start a Redis of its own"]
#[tokio::test]
async fn a_redis_outage_mid_stream_loses_and_repeats_nothing_on_either_node() {
    crate::common::service(crate::common::POSTGRES);
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

#[ignore = "needs Redis (HEARTH_TEST_REDIS_URL)"]
#[tokio::test]
async fn rails_and_hearth_share_broadcasts_through_redis() {
    let redis = crate::common::service(crate::common::REDIS);
    let (app, prefix) = redis_node(&redis).await;
    let ann = app.sign_up("ann").await;
    let room = app.general_room(&ann).await;
    let (mut cable, identifier) = app.join(&ann, room).await;
    let channel = format!("{prefix}:chatrooms:{room}");
    wait_heard(&redis, &channel, &mut [&mut cable]).await;

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

#[ignore = "needs PostgreSQL (HEARTH_TEST_POSTGRES_URL)"]
#[tokio::test]
async fn hearth_copy_moves_a_sqlite_instance_to_postgres_that_behaves_the_same() {
    crate::common::service(crate::common::POSTGRES);
    let mut old = TestApp::spawn_on(None, &["--message-rate", "0"]).await;
    let ann = old.sign_up("ann").await;
    let bob = old.sign_up("bob").await;
    let general = old.general_room(&ann).await;
    let created = old
        .post_form(
            "/chatrooms",
            Some(&bob.cookie),
            &[("name", "random"), ("topic", "Anything goes — ß")],
        )
        .await;
    assert_eq!(created.status(), 303);
    let random: i64 = created.headers()["location"].to_str().unwrap()["/chatrooms/".len()..]
        .parse()
        .unwrap();
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
    // One edit and one deletion in general (messages 2 and 3 are ann's there).
    assert_eq!(
        old.edit_message(&ann, general, 2, "edited").await.status(),
        200
    );
    assert_eq!(old.delete_message(&ann, general, 3).await.status(), 200);
    // A private room, a conversation, and unread messages in both for ann:
    // her sidebar shows them with their badges, so the page comparison
    // below covers kinds, members and read cursors.
    let secret = old.create_private_room(&bob, "secret").await;
    assert_eq!(old.invite(&bob, secret, "ann").await.status(), 303);
    old.post_message(&bob, secret, "for @ann").await;
    let direct = old.open_direct(&bob, "ann").await;
    old.post_message(&bob, direct, "hello ann").await;
    let before = old
        .page(&format!("/chatrooms/{general}"), &ann.cookie)
        .await;
    assert!(before.contains("(edited)"));
    assert!(
        before.contains("🔒 secret")
            && before.contains(r#"aria-label="1 unread""#)
            && before.contains(r#"aria-label="1 mention""#),
        "ann sees the private room with its unread message: {before}"
    );
    let members = old.count("memberships").await;
    assert!(members >= 1, "bob created random");
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
            report.message_events,
            report.memberships,
            report.mentions,
            report.sessions
        ),
        (2, 4, 32, 2, members, 1, 2)
    );

    let new = TestApp::spawn_on(Some(target), &[]).await;
    let after = new
        .page(&format!("/chatrooms/{general}"), &ann.cookie)
        .await;
    assert_eq!(
        before, after,
        "the room page is the same, sessions included"
    );
    let random_page = new.page(&format!("/chatrooms/{random}"), &bob.cookie).await;
    assert!(
        random_page.contains(r#"<p class="room-topic" title="Anything goes — ß">"#),
        "the topic came along"
    );
    let found = new
        .page("/chatrooms?q=ANYTHING%20GOES%20%E2%80%94%20SS", &bob.cookie)
        .await;
    assert!(
        found.contains("# random</span>") && found.contains("✓ Joined"),
        "the folded topic and bob's membership came along: {found}"
    );
    assert_eq!(new.count("memberships").await, members);
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
    assert_eq!(message["seq"], 23, "the room's sequence carries on");
    assert_eq!(message["id"], 33, "ids carry on after the copied ones");
    let carol = new.sign_up("carol").await;
    assert_eq!(
        new.get(&format!("/chatrooms/{secret}"), Some(&carol.cookie))
            .await
            .status(),
        404,
        "the private room stayed private"
    );
    new.create_room(&ann, "fresh").await;
    assert_eq!(new.count("users").await, 3);
}

#[ignore = "needs PostgreSQL (HEARTH_TEST_POSTGRES_URL)"]
#[tokio::test]
async fn copy_refuses_a_target_that_already_has_chat_data() {
    crate::common::service(crate::common::POSTGRES);
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

/// A raw Redis connection, as a Rails app or `redis-cli` would use.
async fn raw_redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("the test's Redis answers")
}

/// `PUBLISH channel payload`, as `ActionCable.server.broadcast` does it.
async fn publish(url: &str, channel: &str, payload: &str) {
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async::<i64>(&mut raw_redis(url).await)
        .await
        .unwrap();
}

/// Subscribers of exactly `channel` in Redis (`PUBSUB NUMSUB`).
async fn numsub(url: &str, channel: &str) -> i64 {
    let (_, count): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut raw_redis(url).await)
        .await
        .unwrap();
    count
}

/// Waits until `channel` has `count` subscribers in Redis: a node subscribes
/// to a room's channel just after confirming its first subscriber.
async fn wait_numsub(url: &str, channel: &str, count: i64) {
    for _ in 0..100 {
        if numsub(url, channel).await == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{channel} has {} subscribers in Redis, not {count}",
        numsub(url, channel).await
    );
}

/// Publishes numbered probes on `channel` until every cable has received
/// the latest one: then whatever is published next reaches them all. Works
/// however a node subscribes, so a test that uses it fails on what it checks.
async fn wait_heard(url: &str, channel: &str, cables: &mut [&mut CableClient]) {
    for n in 0..50 {
        publish(url, channel, &json!({ "probe": n }).to_string()).await;
        let mut all = true;
        for cable in cables.iter_mut() {
            all &= saw_probe(cable, n).await;
        }
        if all {
            return;
        }
    }
    panic!("the cables never heard {channel}");
}

/// Reads probes until probe `n`; false if it has not come within 200 ms.
async fn saw_probe(cable: &mut CableClient, n: i64) -> bool {
    loop {
        let Ok(frame) = tokio::time::timeout(Duration::from_millis(200), cable.next_frame()).await
        else {
            return false;
        };
        match frame["message"]["probe"].as_i64() {
            Some(m) if m == n => return true,
            Some(_) => continue,
            None => panic!("unexpected frame while probing: {frame}"),
        }
    }
}

/// The value of an unlabelled metric from `/metrics`.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics", None).await.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} is not in /metrics"))
        .parse()
        .unwrap()
}

#[ignore = "needs PostgreSQL and Redis (HEARTH_TEST_POSTGRES_URL, HEARTH_TEST_REDIS_URL)"]
#[tokio::test]
async fn a_published_seq_cannot_silence_a_room_for_existing_or_later_subscribers() {
    crate::common::service(crate::common::POSTGRES);
    let redis = crate::common::service(crate::common::REDIS);
    let prefix = format!("hearth-test-{}", uuid_like());
    let args = ["--redis-url", &redis, "--redis-channel-prefix", &prefix];
    let database = Arc::new(TestDatabase::create().await);
    let one = TestApp::spawn_on(Some(database.clone()), &args).await;
    let two = TestApp::spawn_on(Some(database), &args).await;
    wait_ready(&one).await;
    wait_ready(&two).await;
    let ann = one.sign_up("ann").await;
    let bob = two.sign_up("bob").await;
    let room = one.general_room(&ann).await;
    let channel = format!("{prefix}:chatrooms:{room}");
    let mut early = two.connect_cable(Some(&bob.cookie)).await;
    let identifier = early.join_room(room).await;
    let mut speaker = one.connect_cable(Some(&ann.cookie)).await;
    speaker.join_room(room).await;
    wait_heard(&redis, &channel, &mut [&mut early, &mut speaker]).await;

    // Anyone can publish a `seq` far above the room's: a Rails app or redis-cli.
    let forged = r#"{"seq":1000,"content":"not a stored message"}"#;
    publish(&redis, &channel, forged).await;
    for cable in [&mut early, &mut speaker] {
        assert_eq!(
            cable.next_message(&identifier).await,
            serde_json::from_str::<Value>(forged).unwrap(),
            "a foreign payload arrives unchanged"
        );
    }
    // Even Hearth's own marker with a `seq` nobody stored moves nothing.
    publish(
        &redis,
        &channel,
        r#"{"hearth_node":"0123456789abcdef","type":"message","seq":2000,"content":"forged"}"#,
    )
    .await;

    assert_eq!(one.post_message(&ann, room, "real one").await.status(), 201);
    for cable in [&mut early, &mut speaker] {
        let message = cable.next_message(&identifier).await;
        assert_eq!(
            (message["seq"].as_i64(), &message["content"]),
            (Some(1), &json!("real one"))
        );
    }
    let mut later = two.connect_cable(Some(&bob.cookie)).await;
    later.join_room(room).await;
    assert_eq!(one.post_message(&ann, room, "real two").await.status(), 201);
    for cable in [&mut early, &mut speaker, &mut later] {
        let message = cable.next_message(&identifier).await;
        assert_eq!(
            (message["seq"].as_i64(), &message["content"]),
            (Some(2), &json!("real two"))
        );
        cable.expect_silence(Duration::from_millis(300)).await;
    }
}

#[ignore = "needs Redis (HEARTH_TEST_REDIS_URL)"]
#[tokio::test]
async fn glob_characters_in_the_prefix_match_no_other_channel() {
    let redis = crate::common::service(crate::common::REDIS);
    let unique = uuid_like();
    let prefix = format!("hearth-test-{unique}-gl?b*");
    let app =
        TestApp::spawn_with(&["--redis-url", &redis, "--redis-channel-prefix", &prefix]).await;
    wait_ready(&app).await;
    let ann = app.sign_up("ann").await;
    let room = app.general_room(&ann).await;
    let (mut cable, identifier) = app.join(&ann, room).await;
    let channel = format!("{prefix}:chatrooms:{room}");
    wait_heard(&redis, &channel, &mut [&mut cable]).await;

    // Each of these matches the prefix read as a glob pattern.
    for lookalike in [
        format!("hearth-test-{unique}-glob-anything:chatrooms:{room}"),
        format!("{prefix}:chatrooms:{room}:extra"),
    ] {
        publish(&redis, &lookalike, r#"{"content":"wrong channel"}"#).await;
    }
    publish(&redis, &channel, r#"{"content":"right channel"}"#).await;
    assert_eq!(
        cable.next_message(&identifier).await,
        json!({ "content": "right channel" })
    );
    cable.expect_silence(Duration::from_millis(300)).await;
}

#[ignore = "needs PostgreSQL and Redis (HEARTH_TEST_POSTGRES_URL, HEARTH_TEST_REDIS_URL)"]
#[tokio::test]
async fn a_node_receives_nothing_from_redis_for_rooms_it_has_no_subscriber_in() {
    let (one, two) = two_nodes_on_shared_services().await;
    let ann = one.sign_up("ann").await;
    let bob = two.sign_up("bob").await;
    let general = one.general_room(&ann).await;
    let busy = one.create_room(&ann, "busy").await;
    let mut ann_cable = one.connect_cable(Some(&ann.cookie)).await;
    let busy_identifier = ann_cable.join_room(busy).await;
    let mut bob_cable = two.connect_cable(Some(&bob.cookie)).await;
    let general_identifier = bob_cable.join_room(general).await;
    for (node, channels) in [(&one, 1.0), (&two, 1.0)] {
        for _ in 0..100 {
            if metric(node, "hearth_broker_channels").await == channels {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(metric(node, "hearth_broker_channels").await, channels);
    }

    for n in 0..10 {
        assert_eq!(
            one.post_message(&ann, busy, &format!("busy {n}"))
                .await
                .status(),
            201
        );
        assert_eq!(
            ann_cable.next_message(&busy_identifier).await["content"],
            format!("busy {n}")
        );
    }
    assert_eq!(
        one.post_message(&ann, general, "hello bob").await.status(),
        201
    );
    assert_eq!(
        bob_cable.next_message(&general_identifier).await["content"],
        "hello bob"
    );

    assert_eq!(
        metric(&two, "hearth_broker_received_total").await,
        1.0,
        "node two heard only the room its subscriber is in"
    );
    assert_eq!(
        metric(&one, "hearth_broker_received_total").await,
        10.0,
        "node one heard only its own ten in the busy room"
    );
}

#[ignore = "needs Redis (HEARTH_TEST_REDIS_URL)"]
#[tokio::test]
async fn the_last_subscriber_leaving_ends_the_nodes_redis_subscription() {
    let redis = crate::common::service(crate::common::REDIS);
    let (app, prefix) = redis_node(&redis).await;
    let ann = app.sign_up("ann").await;
    let room = app.general_room(&ann).await;
    let channel = format!("{prefix}:chatrooms:{room}");
    let (mut first, identifier) = app.join(&ann, room).await;
    let mut second = app.connect_cable(Some(&ann.cookie)).await;
    second.join_room(room).await;
    wait_numsub(&redis, &channel, 1).await;

    first
        .send_json(json!({ "command": "unsubscribe", "identifier": identifier }))
        .await;
    first.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(numsub(&redis, &channel).await, 1, "one subscriber is left");
    drop(second);
    wait_numsub(&redis, &channel, 0).await;
    assert_eq!(metric(&app, "hearth_broker_channels").await, 0.0);

    let received = metric(&app, "hearth_broker_received_total").await;
    publish(&redis, &channel, r#"{"content":"nobody here"}"#).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(metric(&app, "hearth_broker_received_total").await, received);

    // A new first subscriber subscribes the node again.
    let mut again = app.connect_cable(Some(&ann.cookie)).await;
    again.join_room(room).await;
    wait_numsub(&redis, &channel, 1).await;
    publish(&redis, &channel, r#"{"content":"back"}"#).await;
    assert_eq!(
        again.next_message(&identifier).await,
        json!({ "content": "back" })
    );
}

#[ignore = "needs redis-server to start a Redis of its own"]
#[tokio::test]
async fn an_empty_prefix_publishes_and_hears_bare_room_channels() {
    // A Redis of its own: bare `chatrooms:<id>` would collide between tests.
    let redis = OwnRedis::start();
    let app =
        TestApp::spawn_with(&["--redis-url", &redis.url(), "--redis-channel-prefix", ""]).await;
    wait_ready(&app).await;
    let ann = app.sign_up("ann").await;
    let room = app.general_room(&ann).await;
    let channel = format!("chatrooms:{room}");
    let mut rails = redis::Client::open(redis.url())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    rails.subscribe(&channel).await.unwrap();
    let (mut cable, identifier) = app.join(&ann, room).await;
    wait_heard(&redis.url(), &channel, &mut [&mut cable]).await;
    // The probes reached the raw subscriber too.
    while let Ok(Some(probe)) =
        tokio::time::timeout(Duration::from_millis(100), rails.on_message().next()).await
    {
        assert!(probe.get_payload::<String>().unwrap().contains("probe"));
    }

    assert_eq!(app.post_message(&ann, room, "to rails").await.status(), 201);
    let heard = tokio::time::timeout(Duration::from_secs(5), rails.on_message().next())
        .await
        .expect("Redis carries Hearth's message on the bare channel")
        .unwrap();
    assert_eq!(heard.get_channel_name(), channel);
    let payload: Value = serde_json::from_str(&heard.get_payload::<String>().unwrap()).unwrap();
    assert_eq!(payload["content"], "to rails");
    assert_eq!(cable.next_message(&identifier).await["content"], "to rails");

    publish(&redis.url(), &channel, r#"{"content":"from rails"}"#).await;
    assert_eq!(
        cable.next_message(&identifier).await,
        json!({ "content": "from rails" })
    );
}

/// A TCP proxy to Redis that holds back what its clients send by `delay`,
/// so a subscription made through it lands late; what Redis sends back is
/// passed at once. Returns the URL to give the node.
async fn slow_redis_proxy(redis: &str, delay: Duration) -> String {
    let target = redis
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts for the life of the test runtime; each connection is two pumps.
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                continue;
            };
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buffer = vec![0; 64 * 1024];
                while let Ok(n @ 1..) = from_client.read(&mut buffer).await {
                    tokio::time::sleep(delay).await;
                    if to_server.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
            });
        }
    });
    format!("redis://127.0.0.1:{port}")
}

#[ignore = "needs Redis (HEARTH_TEST_REDIS_URL)"]
#[tokio::test]
async fn a_broadcast_published_right_after_the_confirmation_arrives() {
    let redis = crate::common::service(crate::common::REDIS);
    let prefix = format!("hearth-test-{}", uuid_like());
    // The node's commands reach Redis 100 ms late, so a SUBSCRIBE sent as
    // the subscriber is confirmed would land after the publish below.
    let slow = slow_redis_proxy(&redis, Duration::from_millis(100)).await;
    let app = TestApp::spawn_with(&["--redis-url", &slow, "--redis-channel-prefix", &prefix]).await;
    wait_ready(&app).await;
    let ann = app.sign_up("ann").await;
    let room = app.general_room(&ann).await;
    let other = app.create_room(&ann, "other").await;
    let mut rails = raw_redis(&redis).await;
    // Rails confirms a subscription only once Redis has subscribed; so does
    // Hearth, for a room's first subscriber and for the next ones.
    let mut cables = Vec::new();
    for room in [room, other, room] {
        let mut cable = app.connect_cable(Some(&ann.cookie)).await;
        let identifier = cable.join_room(room).await;
        redis::cmd("PUBLISH")
            .arg(format!("{prefix}:chatrooms:{room}"))
            .arg(json!({ "content": "at once", "cable": cables.len() }).to_string())
            .query_async::<i64>(&mut rails)
            .await
            .unwrap();
        // `next_message` waits as long as pings keep coming: bound it.
        let message = tokio::time::timeout(Duration::from_secs(2), cable.next_message(&identifier))
            .await
            .expect("the broadcast published right after the confirmation arrives");
        assert_eq!(
            message,
            json!({ "content": "at once", "cable": cables.len() })
        );
        cables.push(cable);
    }
}

#[ignore = "needs PostgreSQL and Redis (HEARTH_TEST_POSTGRES_URL, HEARTH_TEST_REDIS_URL)"]
#[tokio::test]
async fn a_room_created_on_one_node_appears_in_room_lists_on_the_other() {
    let (one, two) = two_nodes_on_shared_services().await;
    let ann = one.sign_up("ann").await;
    let bob = two.sign_up("bob").await;
    let (mut cable, identifier) = two.follow_rooms(&bob).await;
    // The node follows the `rooms` channel, bob's own, the activity of the
    // one room bob is in (#general), and who is online on other nodes, in
    // Redis, once it has a subscriber.
    two.wait_for_metric("hearth_broker_channels", 4.0).await;
    let room = one.create_room(&ann, "elsewhere").await;
    let message = cable.next_message(&identifier).await;
    assert_eq!(
        (message["type"].as_str(), message["id"].as_i64()),
        (Some("room"), Some(room))
    );
    cable.expect_silence(Duration::from_millis(300)).await;
}

#[ignore = "needs PostgreSQL and Redis (HEARTH_TEST_POSTGRES_URL, HEARTH_TEST_REDIS_URL)"]
#[tokio::test]
async fn presence_and_typing_cross_nodes_and_a_stopped_nodes_users_expire_within_the_ttl() {
    use crate::presence::{next_typing, nicknames, presence_of, presence_until, watch};
    let (one, mut two) = two_nodes_on_shared_services_with(&["--presence-ttl", "3"]).await;
    let ann = one.sign_up("ann").await;
    let bob = two.sign_up("bob").await;
    let carl = two.sign_up("carl").await;
    let room = one.general_room(&ann).await;
    let (mut ann_cable, ann_id) = watch(&one, &ann, room).await;
    let (mut bob_cable, bob_id) = watch(&two, &bob, room).await;

    // Each node learns the other's members: at once on asking (`sync`),
    // and from every change.
    assert_eq!(
        nicknames(&presence_of(&mut ann_cable, 2).await),
        ["ann", "bob"]
    );
    assert_eq!(
        nicknames(&presence_of(&mut bob_cable, 2).await),
        ["ann", "bob"]
    );
    let (_carl_cable, _) = two.join(&carl, room).await;
    assert_eq!(
        nicknames(&presence_of(&mut ann_cable, 3).await),
        ["ann", "bob", "carl"]
    );

    // Typing crosses too (the typist's own tabs hear it as well), and
    // each node delivers it once: its own publish heard back from Redis is
    // not delivered again.
    bob_cable
        .perform(&bob_id, json!({ "action": "typing" }))
        .await;
    assert_eq!(next_typing(&mut ann_cable).await["nickname"], "bob");
    assert_eq!(next_typing(&mut bob_cable).await["nickname"], "bob");
    ann_cable
        .perform(&ann_id, json!({ "action": "typing" }))
        .await;
    assert_eq!(next_typing(&mut bob_cable).await["nickname"], "ann");
    ann_cable.speak(&ann_id, "after typing").await;
    let mut typing = Vec::new();
    loop {
        let message = ann_cable.next_frame().await["message"].clone();
        match message["type"].as_str() {
            Some("typing") => typing.push(message["nickname"].clone()),
            Some("message") => break,
            _ => {}
        }
    }
    assert_eq!(typing, ["ann"], "ann's page hears her typing once");

    // Node two stops: its users are gone from node one within the TTL
    // (3 s here; bounded generously for a loaded machine).
    two.shutdown().await;
    let alone = presence_until(
        &mut ann_cable,
        Duration::from_secs(3 + 5),
        |m| m["count"] == 1,
        |_| {},
    )
    .await;
    assert_eq!(nicknames(&alone), ["ann"]);
}

#[ignore = "needs Redis (HEARTH_TEST_REDIS_URL)"]
#[tokio::test]
async fn a_silent_nodes_snapshot_expires_and_presence_payloads_never_reach_clients_raw() {
    use crate::presence::{nicknames, presence_of, watch};
    let redis = crate::common::service(crate::common::REDIS);
    let (app, prefix) = redis_node(&redis).await;
    let ann = app.sign_up("ann").await;
    let room = app.general_room(&ann).await;
    let (mut ann_cable, _) = watch(&app, &ann, room).await;
    let channel = format!("{prefix}:chatrooms:{room}:presence");
    wait_numsub(&redis, &channel, 1).await;

    // A node that published once and then died (or was cut off).
    let snapshot = json!({ "hearth_node": "gone", "presence": "snapshot",
        "members": [[9999, "ghost"]], "ttl_ms": 1500 });
    publish(&redis, &channel, &snapshot.to_string()).await;
    assert_eq!(
        nicknames(&presence_of(&mut ann_cable, 2).await),
        ["ann", "ghost"]
    );
    let alone = presence_of(&mut ann_cable, 1).await;
    assert_eq!(nicknames(&alone), ["ann"]);

    // Anything else on the channel is ignored, not delivered as it came.
    publish(&redis, &channel, r#"{"type":"presence","count":1000}"#).await;
    publish(&redis, &channel, "not json").await;
    ann_cable.expect_silence(Duration::from_millis(300)).await;
}

#[ignore = "needs PostgreSQL and Redis (HEARTH_TEST_POSTGRES_URL, HEARTH_TEST_REDIS_URL)"]
#[tokio::test]
async fn a_member_removed_on_node_one_loses_the_room_on_node_two_at_once() {
    let (one, two) = two_nodes_on_shared_services().await;
    let ann = one.sign_up("ann").await;
    let bob = two.sign_up("bob").await;
    let room = one.create_private_room(&ann, "secret").await;
    assert_eq!(one.invite(&ann, room, "bob").await.status(), 303);
    let mut cable = two.connect_cable(Some(&bob.cookie)).await;
    let identifier = cable.join_room(room).await;
    let (mut lists, rooms_identifier) = two.follow_rooms(&bob).await;
    two.wait_for_metric("hearth_activity_rooms", 2.0).await;
    let before: Value = one
        .post_message(&ann, room, "before")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cable.next_message(&identifier).await["content"], "before");
    assert_eq!(
        lists.next_message(&rooms_identifier).await,
        json!({ "type": "activity", "id": room, "seq": before["seq"], "mention": false }),
        "news of a message stored on node one reaches his page on node two"
    );
    // A mention of him, stored on node one, says so on node two.
    let mention: Value = one
        .post_message(&ann, room, "@bob look")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        cable.next_message(&identifier).await["content"],
        "@bob look"
    );
    assert_eq!(
        lists.next_message(&rooms_identifier).await,
        json!({ "type": "activity", "id": room, "seq": mention["seq"], "mention": true })
    );

    let bob_id = one.user_id("bob").await;
    assert_eq!(one.remove_member(&ann, room, bob_id).await.status(), 303);
    assert_eq!(
        cable.next_frame().await,
        json!({ "type": "reject_subscription", "identifier": identifier }),
        "ended on the node he is connected to"
    );
    assert_eq!(
        lists.next_message(&rooms_identifier).await,
        json!({ "type": "room_removed", "id": room })
    );
    one.post_message(&ann, room, "after").await;
    cable.expect_silence(Duration::from_millis(500)).await;
    lists.expect_silence(Duration::from_millis(300)).await;
    let again = cable.subscribe_raw(&identifier).await;
    assert_eq!(again["type"], "reject_subscription");
}

#[ignore = "needs PostgreSQL and Redis (HEARTH_TEST_POSTGRES_URL, HEARTH_TEST_REDIS_URL)"]
#[tokio::test]
async fn who_is_online_crosses_nodes_and_a_stopped_nodes_users_go_offline_within_the_ttl() {
    use crate::online::{drawn_online, next_online};
    let (mut one, two) = two_nodes_on_shared_services_with(&["--presence-ttl", "3"]).await;
    let ann = one.sign_up("ann").await;
    let bob = two.sign_up("bob").await;
    let ann_id = one.user_id("ann").await;
    let direct = two.open_direct(&bob, "ann").await;
    let (mut bobs, bob_stream) = two.follow_rooms(&bob).await;

    // Ann opens a page on node one: bob, on node two, hears it, and node
    // two draws her online.
    let (_anns, _) = one.follow_rooms(&ann).await;
    assert_eq!(
        next_online(&mut bobs, &bob_stream).await,
        json!({ "type": "online", "user": ann_id, "online": true })
    );
    assert_eq!(drawn_online(&two, &bob, direct).await, ann_id.to_string());

    // Node one stops: ann is offline for bob within the TTL at the latest
    // (3 s here; `next_message` waits while pings come, so bound it).
    one.shutdown().await;
    let offline = tokio::time::timeout(
        Duration::from_secs(3 + 5),
        next_online(&mut bobs, &bob_stream),
    )
    .await
    .expect("ann goes offline within the TTL");
    assert_eq!(
        offline,
        json!({ "type": "online", "user": ann_id, "online": false })
    );
}
