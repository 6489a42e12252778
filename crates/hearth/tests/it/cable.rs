//! The Action Cable endpoint, over real WebSockets.

use std::time::Duration;

use crate::common::{Event, TestApp, WAIT, room_identifier};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn assert_message_shape(message: &Value, room: i64, nickname: &str, content: &str) {
    let keys: Vec<&str> = message
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "type",
        "id",
        "chatroom_id",
        "user_id",
        "nickname",
        "content",
        "created_at",
        "html",
    ] {
        assert!(keys.contains(&key), "{key} missing from {message}");
    }
    assert_eq!(message["type"], "message");
    assert_eq!(message["chatroom_id"], room);
    assert_eq!(message["nickname"], nickname);
    assert_eq!(message["content"], content);
    assert!(message["user_id"].is_i64());
    let id = message["id"].as_i64().unwrap();
    assert!(
        message["html"]
            .as_str()
            .unwrap()
            .contains(&format!(r#"id="message_{id}""#))
    );
    assert!(message["created_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn messages_from_http_and_speak_reach_every_subscriber_and_the_page() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let room = app.general_room(&ann).await;
    let mut ann_cable = app.connect_cable(Some(&ann.cookie)).await;
    let mut bob_cable = app.connect_cable(Some(&bob.cookie)).await;
    assert_eq!(ann_cable.protocol.as_deref(), Some("actioncable-v1-json"));
    let identifier = ann_cable.join_room(room).await;
    bob_cable.join_room(room).await;

    assert_eq!(
        app.post_message(&ann, room, "posted over http")
            .await
            .status(),
        201
    );
    bob_cable.speak(&identifier, "spoken over the cable").await;

    for cable in [&mut ann_cable, &mut bob_cable] {
        let first = cable.next_message(&identifier).await;
        assert_message_shape(&first, room, "ann", "posted over http");
        let second = cable.next_message(&identifier).await;
        assert_message_shape(&second, room, "bob", "spoken over the cable");
        assert!(second["seq"].as_i64() > first["seq"].as_i64());
    }
    let page = app.page(&format!("/chatrooms/{room}"), &bob.cookie).await;
    crate::common::assert_in_order(&page, &["posted over http", "spoken over the cable"]);
}

#[tokio::test]
async fn broadcasts_reach_only_the_room_subscribed() {
    let (app, ann, general) = TestApp::with_ann_in_general(&[]).await;
    let random = app.create_room(&ann, "random").await;
    let (mut cable, identifier) = app.join(&ann, random).await;
    app.post_message(&ann, general, "elsewhere").await;
    app.post_message(&ann, random, "here").await;
    assert_eq!(cable.next_message(&identifier).await["content"], "here");
}

#[tokio::test]
async fn a_cable_without_a_session_is_told_unauthorized_and_closed() {
    let app = TestApp::spawn().await;
    for cookie in [None, Some("hearth_session=forged")] {
        let mut cable = app.connect_cable(cookie).await;
        assert_eq!(
            cable.next_frame().await,
            json!({ "type": "disconnect", "reason": "unauthorized", "reconnect": false })
        );
        assert!(matches!(cable.next_event().await, Event::Closed(_)));
    }
}

#[tokio::test]
async fn a_foreign_origin_is_refused_before_the_upgrade() {
    let app = TestApp::spawn_with(&["--allowed-origin", "https://chat.example.com"]).await;
    let ann = app.sign_up("ann").await;
    let refused = app
        .try_connect_cable(Some(&ann.cookie), &[("origin", "https://evil.example")])
        .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
        }
        other => panic!("expected a 403, got {:?}", other.map(|_| "an upgrade")),
    }
    let own = app.base.clone();
    for origin in [own.as_str(), "https://chat.example.com"] {
        let mut cable = app
            .try_connect_cable(Some(&ann.cookie), &[("origin", origin)])
            .await
            .unwrap();
        cable.expect_welcome().await;
    }
}

#[tokio::test]
async fn requests_that_are_not_a_websocket_handshake_get_a_clear_answer() {
    let app = TestApp::spawn().await;
    let plain = app.get("/cable", None).await;
    assert_eq!(plain.status(), 400);
    assert!(plain.text().await.unwrap().contains("Upgrade: websocket"));

    let old_version = app
        .client()
        .get(app.url("/cable"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "8")
        .send()
        .await
        .unwrap();
    assert_eq!(old_version.status(), 426);
    assert_eq!(old_version.headers()["sec-websocket-version"], "13");

    let post = app.client().post(app.url("/cable")).send().await.unwrap();
    assert_eq!(post.status(), 405);
}

#[tokio::test]
async fn the_server_pings_every_few_seconds() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let mut cable = app.connect_cable(Some(&ann.cookie)).await;
    cable.expect_welcome().await;
    let ping = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Ok(Message::Text(text))) =
                futures_util::StreamExt::next(&mut cable.ws).await
            {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "ping" {
                    return frame;
                }
            }
        }
    })
    .await
    .expect("a ping within 5 s");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (ping["message"].as_i64().unwrap() - now).abs() <= 5,
        "{ping}"
    );
}

#[tokio::test]
async fn subscriptions_to_unknown_channels_or_missing_rooms_are_rejected() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let mut cable = app.connect_cable(Some(&ann.cookie)).await;
    cable.expect_welcome().await;
    for identifier in [
        json!({ "channel": "NoSuchChannel" }).to_string(),
        room_identifier(999),
        json!({ "channel": "ChatroomChannel", "id": "abc" }).to_string(),
        json!({ "channel": "ChatroomChannel" }).to_string(),
        "not json at all".to_string(),
    ] {
        let answer = cable.subscribe_raw(&identifier).await;
        assert_eq!(
            answer,
            json!({ "type": "reject_subscription", "identifier": identifier })
        );
    }
}

#[tokio::test]
async fn the_identifier_is_echoed_byte_for_byte_and_string_ids_work() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let mut cable = app.connect_cable(Some(&ann.cookie)).await;
    cable.expect_welcome().await;
    let identifier = format!(r#"{{ "id" : "{room}",  "channel":"ChatroomChannel" }}"#);
    let answer = cable.subscribe_raw(&identifier).await;
    assert_eq!(answer["type"], "confirm_subscription");
    assert_eq!(answer["identifier"].as_str().unwrap(), identifier);
    app.post_message(&ann, room, "hello").await;
    let frame = cable.next_frame().await;
    assert_eq!(frame["identifier"].as_str().unwrap(), identifier);
}

#[tokio::test]
async fn a_duplicate_subscribe_is_confirmed_again_and_delivers_once() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let (mut cable, identifier) = app.join(&ann, room).await;
    let again = cable.subscribe_raw(&identifier).await;
    assert_eq!(
        again,
        json!({ "type": "confirm_subscription", "identifier": identifier })
    );
    app.post_message(&ann, room, "once").await;
    assert_eq!(cable.next_message(&identifier).await["content"], "once");
    cable.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn unsubscribe_stops_the_stream() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let (mut cable, identifier) = app.join(&ann, room).await;
    cable
        .send_json(json!({ "command": "unsubscribe", "identifier": identifier }))
        .await;
    // The unsubscribe is handled before any later frame of this connection.
    cable
        .send_json(json!({ "command": "subscribe", "identifier": "x" }))
        .await;
    assert_eq!(cable.next_frame().await["type"], "reject_subscription");
    app.post_message(&ann, room, "nobody hears this").await;
    cable.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn bad_frames_are_ignored_and_the_connection_carries_on() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let (mut cable, identifier) = app.join(&ann, room).await;

    cable.send_text("{not json").await;
    cable
        .send_json(json!({ "command": "dance", "identifier": identifier }))
        .await;
    cable.send_json(json!({ "identifier": identifier })).await;
    cable.send_json(json!([1, 2, 3])).await;
    let unknown = room_identifier(room + 100);
    let speak = json!({ "action": "speak", "content": "lost" }).to_string();
    cable
        .send_json(json!({ "command": "message", "identifier": unknown, "data": speak }))
        .await;
    cable
        .send_json(json!({ "command": "unsubscribe", "identifier": unknown }))
        .await;
    cable
        .send_json(json!({ "command": "message", "identifier": identifier, "data": "no json" }))
        .await;
    cable
        .ws
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();

    cable.speak(&identifier, "still here").await;
    assert_eq!(
        cable.next_message(&identifier).await["content"],
        "still here"
    );
    assert_eq!(app.count("messages").await, 1, "nothing else was stored");
}

#[tokio::test]
async fn invalid_speak_content_is_answered_and_neither_stored_nor_broadcast() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let room = app.general_room(&ann).await;
    let mut speaker = app.connect_cable(Some(&ann.cookie)).await;
    let mut listener = app.connect_cable(Some(&bob.cookie)).await;
    let identifier = speaker.join_room(room).await;
    listener.join_room(room).await;

    for content in ["", "   ", &"y".repeat(4001)] {
        speaker.speak(&identifier, content).await;
        let reply = speaker.next_message(&identifier).await;
        assert_eq!(reply["type"], "error");
        assert_eq!(reply["error"], "invalid_content");
    }
    let data = json!({ "action": "shout", "content": "hi" }).to_string();
    speaker
        .send_json(json!({ "command": "message", "identifier": identifier, "data": data }))
        .await;
    assert_eq!(
        speaker.next_message(&identifier).await["error"],
        "unknown_action"
    );

    listener.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(app.count("messages").await, 0);
}

#[tokio::test]
async fn an_oversized_frame_closes_that_connection_only() {
    let (app, ann, room) = TestApp::with_ann_in_general(&["--max-frame-bytes", "1024"]).await;
    let mut big = app.connect_cable(Some(&ann.cookie)).await;
    let mut other = app.connect_cable(Some(&ann.cookie)).await;
    big.join_room(room).await;
    let identifier = other.join_room(room).await;

    big.send_text(&format!(
        r#"{{"command":"subscribe","identifier":"{}"}}"#,
        "x".repeat(2000)
    ))
    .await;
    match big.next_event().await {
        Event::Closed(code) => assert_eq!(code, Some(1009), "closed with 'message too big'"),
        Event::Frame(frame) => panic!("expected a close, got {frame}"),
    }

    other.speak(&identifier, "others carry on").await;
    assert_eq!(
        other.next_message(&identifier).await["content"],
        "others carry on"
    );
}

#[tokio::test]
async fn shutdown_tells_every_client_server_restart() {
    let mut app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let room = app.general_room(&ann).await;
    let mut cable = app.connect_cable(Some(&ann.cookie)).await;
    cable.join_room(room).await;
    let shutdown = tokio::time::timeout(WAIT * 2, app.shutdown());
    let (_, frame) = tokio::join!(shutdown, cable.next_frame());
    assert_eq!(
        frame,
        json!({ "type": "disconnect", "reason": "server_restart", "reconnect": true })
    );
}

#[tokio::test]
async fn a_new_room_is_announced_to_every_room_list() {
    let (app, ann, _) = TestApp::with_ann_in_general(&[]).await;
    let bob = app.sign_up("bob").await;
    let (mut cable, identifier) = app.follow_rooms(&bob).await;
    let room = app.create_room(&ann, "launch <plans>").await;
    let message = cable.next_message(&identifier).await;
    assert_eq!(message["type"], "room");
    assert_eq!(message["id"], room);
    assert_eq!(message["name"], "launch <plans>");
    let html = message["html"].as_str().unwrap();
    assert!(
        html.contains(&format!(r#"href="/chatrooms/{room}""#)),
        "{html}"
    );
    assert!(
        html.contains("launch &#60;plans&#62;") || html.contains("launch &lt;plans&gt;"),
        "escaped: {html}"
    );
}
