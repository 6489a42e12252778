//! What a trusted chat server must withstand: reconnects without loss
//! (catch-up, AnyCable's extended protocol), slow consumers, sign-out, and
//! every configured limit.

use std::time::Duration;

use crate::common::{Event, TestApp, room_identifier, session_cookie};
use reqwest::header::{RETRY_AFTER, SET_COOKIE};
use serde_json::{Value, json};

fn seq(message: &Value) -> i64 {
    message["seq"]
        .as_i64()
        .unwrap_or_else(|| panic!("no seq in {message}"))
}

#[tokio::test]
async fn catch_up_replays_what_a_reconnecting_client_missed_in_order() {
    let (app, ann, room) = TestApp::with_ann_in_general(&["--message-rate", "0"]).await;
    let (mut cable, identifier) = app.join(&ann, room).await;
    app.post_message(&ann, room, "seen 1").await;
    app.post_message(&ann, room, "seen 2").await;
    assert_eq!(seq(&cable.next_message(&identifier).await), 1);
    assert_eq!(seq(&cable.next_message(&identifier).await), 2);
    drop(cable);

    for n in 3..=7 {
        app.post_message(&ann, room, &format!("missed {n}")).await;
    }
    let mut cable = app.connect_cable(Some(&ann.cookie)).await;
    cable.join_room(room).await;
    let data = json!({ "action": "catch_up", "after": 2 }).to_string();
    cable
        .send_json(json!({ "command": "message", "identifier": identifier, "data": data }))
        .await;
    for n in 3..=7 {
        let message = cable.next_message(&identifier).await;
        assert_eq!(
            (seq(&message), message["content"].as_str().unwrap()),
            (n, format!("missed {n}").as_str())
        );
        assert!(message["html"].as_str().unwrap().contains("missed"));
    }
    assert_eq!(
        cable.next_message(&identifier).await,
        json!({ "type": "caught_up", "last_seq": 7, "more": false })
    );
}

#[tokio::test]
async fn the_extended_protocol_restores_a_session_and_replays_history_by_offset() {
    let (app, ann, room) = TestApp::with_ann_in_general(&["--message-rate", "0"]).await;
    let identifier = room_identifier(room);
    let stream = format!("chatrooms:{room}");

    let mut cable = app.connect_extended(&ann.cookie, None).await;
    assert_eq!(cable.protocol.as_deref(), Some("actioncable-v1-ext-json"));
    let welcome = cable.next_frame().await;
    assert_eq!(welcome["type"], "welcome");
    let sid = welcome["sid"]
        .as_str()
        .expect("a sid in the welcome")
        .to_owned();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    cable
        .send_json(json!({ "command": "subscribe", "identifier": identifier, "history": { "since": now } }))
        .await;
    assert_eq!(
        cable.next_frame().await,
        json!({ "type": "confirm_subscription", "identifier": identifier })
    );
    assert_eq!(
        cable.next_frame().await,
        json!({ "type": "confirm_history", "identifier": identifier })
    );

    app.post_message(&ann, room, "one").await;
    let frame = cable.next_frame().await;
    assert_eq!(
        (frame["stream_id"].as_str(), frame["offset"].as_i64()),
        (Some(stream.as_str()), Some(1))
    );
    let epoch = frame["epoch"].as_str().unwrap().to_owned();
    drop(cable);

    for n in 2..=4 {
        app.post_message(&ann, room, &format!("while away {n}"))
            .await;
    }
    let mut cable = app.connect_extended(&ann.cookie, Some(&sid)).await;
    let welcome = cable.next_frame().await;
    assert_eq!(welcome["restored"], true, "{welcome}");
    assert_eq!(welcome["restored_ids"], json!([identifier]));
    assert_ne!(
        welcome["sid"],
        sid.as_str(),
        "each connection gets a fresh sid"
    );
    // A live message before the client asks for history must not jump the gap.
    app.post_message(&ann, room, "while away 5").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let history = json!({ "streams": { stream.clone(): { "epoch": epoch, "offset": 1 } } });
    cable
        .send_json(json!({ "command": "history", "identifier": identifier, "history": history }))
        .await;
    for n in 2..=5 {
        let frame = cable.next_frame().await;
        assert_eq!(frame["offset"], n, "{frame}");
        assert_eq!(frame["message"]["content"], format!("while away {n}"));
    }
    assert_eq!(cable.next_frame().await["type"], "confirm_history");

    app.post_message(&ann, room, "live again").await;
    let frame = cable.next_frame().await;
    assert_eq!(
        (
            frame["offset"].as_i64(),
            frame["message"]["content"].as_str()
        ),
        (Some(6), Some("live again"))
    );
    cable.expect_silence(Duration::from_millis(300)).await;

    let other = json!({ "streams": { stream: { "epoch": "another", "offset": 1 } } });
    cable
        .send_json(json!({ "command": "history", "identifier": identifier, "history": other }))
        .await;
    assert_eq!(
        cable.next_frame().await,
        json!({ "type": "reject_history", "identifier": identifier })
    );
}

#[tokio::test]
async fn a_session_is_restored_only_for_the_same_signed_in_session() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let room = app.general_room(&ann).await;
    let mut cable = app.connect_extended(&ann.cookie, None).await;
    let sid = cable.next_frame().await["sid"].as_str().unwrap().to_owned();
    assert_eq!(
        cable.subscribe_raw(&room_identifier(room)).await["type"],
        "confirm_subscription"
    );
    drop(cable);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut stranger = app.connect_extended(&bob.cookie, Some(&sid)).await;
    let welcome = stranger.next_frame().await;
    assert!(
        welcome.get("restored").is_none(),
        "bob must not inherit ann's session: {welcome}"
    );

    // Bob's failed attempt leaves ann's parked session for ann.
    let mut owner = app.connect_extended(&ann.cookie, Some(&sid)).await;
    let welcome = owner.next_frame().await;
    assert_eq!(welcome["restored"], true, "{welcome}");
    assert_eq!(welcome["restored_ids"], json!([room_identifier(room)]));
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_as_too_slow_and_others_get_everything() {
    let (app, ann, room) =
        TestApp::with_ann_in_general(&["--send-queue", "4", "--message-rate", "0"]).await;
    let (mut stalled, identifier) = app.join(&ann, room).await;
    let mut reader = app.connect_cable(Some(&ann.cookie)).await;
    reader.join_room(room).await;

    // Big messages fill the stalled client's socket buffers, then its queue;
    // posting stops soon after the server counts the overflow, so the
    // stalled client reads again well within its goodbye's time.
    let big = "x".repeat(3990);
    let limit = 3_000;
    let mut total = 0;
    let mut received = 0;
    while total < limit {
        assert_eq!(
            app.post_message(&ann, room, &format!("{total} {big}"))
                .await
                .status(),
            201
        );
        total += 1;
        while let Ok(Event::Frame(frame)) =
            tokio::time::timeout(Duration::from_millis(1), reader.next_event())
                .await
                .map_err(|_| ())
        {
            assert_eq!(frame["identifier"], identifier);
            received += 1;
        }
        if total % 10 == 0 && app.metric("hearth_queue_drops_total").await > 0.0 {
            break;
        }
    }
    assert!(total < limit, "the stalled client's queue never overflowed");
    while received < total {
        reader.next_message(&identifier).await;
        received += 1;
    }

    // The stalled client finds, after what it had been sent, the goodbye.
    let mut seen = 0;
    let goodbye = loop {
        match stalled.next_event().await {
            Event::Frame(frame) if frame["type"] == "disconnect" => break frame,
            Event::Frame(_) => seen += 1,
            Event::Closed(_) => panic!("closed without saying too_slow after {seen} messages"),
        }
    };
    assert_eq!(
        goodbye,
        json!({ "type": "disconnect", "reason": "too_slow", "reconnect": true })
    );
    assert!(
        seen < total,
        "it was dropped before everything was queued for it"
    );
}

#[tokio::test]
async fn signing_out_closes_that_sessions_sockets_only() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let other_session = app.post_sign_in(&ann.email, &ann.password, None).await;
    let other_cookie = session_cookie(other_session.headers()).unwrap();
    let mut signed_out = app.connect_cable(Some(&ann.cookie)).await;
    signed_out.join_room(room).await;
    let mut kept = app.connect_cable(Some(&other_cookie)).await;
    let identifier = kept.join_room(room).await;

    assert_eq!(
        app.post_form("/sign_out", Some(&ann.cookie), &[])
            .await
            .status(),
        303
    );
    assert_eq!(
        signed_out.next_frame().await,
        json!({ "type": "disconnect", "reason": "unauthorized", "reconnect": false })
    );
    let ann_elsewhere = crate::common::TestUser {
        cookie: other_cookie,
        ..ann.clone()
    };
    app.post_message(&ann_elsewhere, room, "still here").await;
    assert_eq!(
        kept.next_message(&identifier).await["content"],
        "still here"
    );
}

#[tokio::test]
async fn over_the_connection_limit_the_upgrade_gets_503() {
    let app = TestApp::spawn_with(&["--max-connections", "2"]).await;
    let ann = app.sign_up("ann").await;
    let mut first = app.connect_cable(Some(&ann.cookie)).await;
    first.expect_welcome().await;
    let mut second = app.connect_cable(Some(&ann.cookie)).await;
    second.expect_welcome().await;
    match app.try_connect_cable(Some(&ann.cookie), &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("expected 503, got {:?}", other.map(|_| "an upgrade")),
    }
    drop(first);
    // The place is freed once the first session has ended.
    let mut admitted = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(mut cable) = app.try_connect_cable(Some(&ann.cookie), &[]).await {
            cable.expect_welcome().await;
            admitted = true;
            break;
        }
    }
    assert!(admitted);
}

#[tokio::test]
async fn past_the_subscription_limit_subscriptions_are_rejected() {
    let app = TestApp::spawn_with(&["--max-subscriptions", "2"]).await;
    let ann = app.sign_up("ann").await;
    let rooms = [
        app.general_room(&ann).await,
        app.create_room(&ann, "two").await,
        app.create_room(&ann, "three").await,
    ];
    let mut cable = app.connect_cable(Some(&ann.cookie)).await;
    cable.expect_welcome().await;
    assert_eq!(
        cable.subscribe_raw(&room_identifier(rooms[0])).await["type"],
        "confirm_subscription"
    );
    assert_eq!(
        cable.subscribe_raw(&room_identifier(rooms[1])).await["type"],
        "confirm_subscription"
    );
    assert_eq!(
        cable.subscribe_raw(&room_identifier(rooms[2])).await["type"],
        "reject_subscription"
    );
}

#[tokio::test]
async fn the_message_rate_limits_http_and_speak_alike() {
    let (app, ann, room) = TestApp::with_ann_in_general(&["--message-rate", "1"]).await;
    let (mut cable, identifier) = app.join(&ann, room).await;
    assert_eq!(app.post_message(&ann, room, "one").await.status(), 201);
    assert_eq!(app.post_message(&ann, room, "two").await.status(), 201);
    let limited = app.post_message(&ann, room, "three").await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key(RETRY_AFTER));
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    cable.next_message(&identifier).await;
    cable.next_message(&identifier).await;
    cable.speak(&identifier, "four").await;
    assert_eq!(
        cable.next_message(&identifier).await["error"],
        "rate_limited"
    );
    assert_eq!(app.count("messages").await, 2);
}

#[tokio::test]
async fn sign_ups_are_limited_per_address() {
    let app = TestApp::spawn_with(&["--sign-up-rate-per-ip", "2"]).await;
    app.sign_up("ann").await;
    app.sign_up("bob").await;
    let limited = app.post_sign_up("carol").await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key(RETRY_AFTER));
    assert_eq!(app.count("users").await, 2);
}

#[tokio::test]
async fn the_session_cookie_is_secure_when_configured() {
    let app = TestApp::spawn_with(&["--secure-cookies"]).await;
    let response = app.post_sign_up("ann").await;
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
    let plain = TestApp::spawn().await;
    let response = plain.post_sign_up("ann").await;
    assert!(
        !response.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Secure")
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_limits_count_the_forwarded_address() {
    let sign_up = |app: &TestApp, nickname: &str, forwarded: &str| {
        let email = format!("{nickname}@example.com");
        let request = app
            .client()
            .post(app.url("/sign_up"))
            .header("x-forwarded-for", forwarded)
            .form(&[
                ("email", email.as_str()),
                ("nickname", nickname),
                ("password", "long enough"),
            ]);
        async move { request.send().await.unwrap().status() }
    };
    let proxied =
        TestApp::spawn_with(&["--sign-up-rate-per-ip", "1", "--trusted-proxy", "127.0.0.1"]).await;
    assert_eq!(sign_up(&proxied, "ann", "1.1.1.1").await, 303);
    assert_eq!(
        sign_up(&proxied, "bob", "2.2.2.2").await,
        303,
        "another client behind the proxy"
    );
    assert_eq!(sign_up(&proxied, "carol", "1.1.1.1").await, 429);

    let direct = TestApp::spawn_with(&["--sign-up-rate-per-ip", "1"]).await;
    assert_eq!(sign_up(&direct, "ann", "1.1.1.1").await, 303);
    assert_eq!(
        sign_up(&direct, "bob", "2.2.2.2").await,
        429,
        "an untrusted peer cannot pick its address"
    );
}
