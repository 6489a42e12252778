//! Who is in a room and who is typing, on one node: the frames a page that
//! asks for them (`"presence":true`) receives, how often, and who may send
//! typing. The same across nodes is in `scale_out`.

use std::time::Duration;

use crate::common::{CableClient, Remote, TestApp, TestUser};
use serde_json::{Value, json};

/// The identifier of a page's room subscription: the room, with presence.
pub fn watching_identifier(room: i64) -> String {
    json!({ "channel": "ChatroomChannel", "id": room, "presence": true }).to_string()
}

/// Opens a cable as `user` and joins `room` asking for presence frames.
pub async fn watch(app: &Remote, user: &TestUser, room: i64) -> (CableClient, String) {
    let mut cable = app.connect_cable(Some(&user.cookie)).await;
    cable.expect_welcome().await;
    let identifier = watching_identifier(room);
    let answer = cable.subscribe_raw(&identifier).await;
    assert_eq!(answer["type"], "confirm_subscription", "{answer}");
    (cable, identifier)
}

/// The next presence frame that satisfies `wanted`, failing after `within`;
/// every frame skipped on the way is checked by `meanwhile`. Messages and
/// typing frames are skipped.
pub async fn presence_until(
    cable: &mut CableClient,
    within: Duration,
    wanted: impl Fn(&Value) -> bool,
    mut meanwhile: impl FnMut(&Value),
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = Value::Null;
    loop {
        let frame = tokio::time::timeout_at(deadline, cable.next_frame())
            .await
            .unwrap_or_else(|_| panic!("no such presence frame in {within:?}; last one {last}"));
        let message = &frame["message"];
        if message["type"] != "presence" {
            continue;
        }
        assert!(
            message.get("seq").is_none(),
            "presence has no seq: {message}"
        );
        if wanted(message) {
            return message.clone();
        }
        meanwhile(message);
        last = message.clone();
    }
}

/// The next presence frame whose count is `count`.
pub async fn presence_of(cable: &mut CableClient, count: u64) -> Value {
    presence_until(
        cable,
        Duration::from_secs(10),
        |m| m["count"] == count,
        |_| {},
    )
    .await
}

/// The nicknames a presence frame lists.
pub fn nicknames(presence: &Value) -> Vec<String> {
    presence["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["nickname"].as_str().unwrap().to_owned())
        .collect()
}

/// The next typing frame, skipping presence frames and messages.
pub async fn next_typing(cable: &mut CableClient) -> Value {
    loop {
        let message = cable.next_frame().await["message"].clone();
        if message["type"] == "typing" {
            return message;
        }
    }
}

/// What the `presence` action answers right now.
async fn ask_presence(cable: &mut CableClient, identifier: &str) -> Value {
    cable
        .perform(identifier, json!({ "action": "presence" }))
        .await;
    loop {
        let message = cable.next_message(identifier).await;
        if message["type"] == "presence" {
            return message;
        }
    }
}

#[tokio::test]
async fn two_users_in_a_room_see_each_other_present() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let bob = app.sign_up("bob").await;
    let (mut ann_cable, ann_id) = watch(&app, &ann, room).await;
    let alone = ask_presence(&mut ann_cable, &ann_id).await;
    assert_eq!(alone["count"], 1);
    assert_eq!(nicknames(&alone), ["ann"]);
    assert!(alone["users"][0]["id"].is_i64(), "{alone}");

    let (mut bob_cable, bob_id) = watch(&app, &bob, room).await;
    let seen_by_ann = presence_of(&mut ann_cable, 2).await;
    assert_eq!(nicknames(&seen_by_ann), ["ann", "bob"]);
    let seen_by_bob = ask_presence(&mut bob_cable, &bob_id).await;
    assert_eq!(seen_by_bob, seen_by_ann);
}

#[tokio::test]
async fn a_second_tab_counts_once_and_closing_the_last_tab_removes_the_user() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let bob = app.sign_up("bob").await;
    let carl = app.sign_up("carl").await;
    let (mut observer, _) = watch(&app, &ann, room).await;
    let (bob_tab_one, _) = watch(&app, &bob, room).await;
    presence_of(&mut observer, 2).await;

    let (mut bob_tab_two, tab_two_id) = watch(&app, &bob, room).await;
    let with_two_tabs = ask_presence(&mut bob_tab_two, &tab_two_id).await;
    assert_eq!(nicknames(&with_two_tabs), ["ann", "bob"]);
    // A plain subscriber (no presence frames) is in the room all the same.
    let (carl_cable, _) = app.join(&carl, room).await;
    let never_four = |m: &Value| assert!(m["count"].as_u64() <= Some(3), "{m}");
    let with_carl = presence_until(
        &mut observer,
        Duration::from_secs(10),
        |m| m["count"] == 3,
        never_four,
    )
    .await;
    assert_eq!(nicknames(&with_carl), ["ann", "bob", "carl"]);

    // One of bob's tabs closes: bob stays; carl leaves.
    drop(bob_tab_one);
    drop(carl_cable);
    let without_carl = presence_of(&mut observer, 2).await;
    assert_eq!(nicknames(&without_carl), ["ann", "bob"]);

    // Bob's last tab closes: he is gone within seconds.
    drop(bob_tab_two);
    let alone = presence_of(&mut observer, 1).await;
    assert_eq!(nicknames(&alone), ["ann"]);
}

#[tokio::test]
async fn typing_reaches_the_room_without_a_seq_and_a_flood_passes_once() {
    let (app, ann, room) = TestApp::with_ann_in_general(&["--typing-interval", "60"]).await;
    let bob = app.sign_up("bob").await;
    let (mut ann_cable, _) = watch(&app, &ann, room).await;
    let (mut bob_cable, bob_id) = watch(&app, &bob, room).await;

    for _ in 0..50 {
        bob_cable
            .perform(&bob_id, json!({ "action": "typing" }))
            .await;
    }
    bob_cable.speak(&bob_id, "done typing").await;
    let mut typing = Vec::new();
    loop {
        let message = ann_cable.next_frame().await["message"].clone();
        match message["type"].as_str() {
            Some("typing") => typing.push(message),
            Some("message") => break,
            _ => {}
        }
    }
    assert_eq!(typing.len(), 1, "50 typing events became {typing:?}");
    assert_eq!(typing[0]["type"], "typing");
    assert_eq!(typing[0]["nickname"], "bob");
    assert!(typing[0]["user_id"].is_i64());
    assert!(typing[0].get("seq").is_none(), "typing has no seq");
}

#[tokio::test]
async fn typing_needs_a_subscription_to_the_room() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let bob = app.sign_up("bob").await;
    let eve = app.sign_up("eve").await;
    let elsewhere = app.create_room(&eve, "elsewhere").await;
    let (mut ann_cable, _) = watch(&app, &ann, room).await;

    // Signed out: told so and closed; nothing it sends counts.
    let mut stranger = app.connect_cable(None).await;
    let goodbye = stranger.next_frame().await;
    assert_eq!(goodbye["reason"], "unauthorized");
    let general = watching_identifier(room);
    let typing = json!({ "action": "typing" }).to_string();
    let _ = futures_util::SinkExt::send(
        &mut stranger.ws,
        tokio_tungstenite::tungstenite::Message::Text(
            json!({ "command": "message", "identifier": general, "data": typing })
                .to_string()
                .into(),
        ),
    )
    .await;

    // Signed in but subscribed elsewhere: the room's identifier is unknown
    // on this socket. Her own room's answer proves the server read both.
    let (mut eve_cable, eve_id) = watch(&app, &eve, elsewhere).await;
    eve_cable
        .perform(&general, json!({ "action": "typing" }))
        .await;
    ask_presence(&mut eve_cable, &eve_id).await;

    let (mut bob_cable, bob_id) = watch(&app, &bob, room).await;
    bob_cable
        .perform(&bob_id, json!({ "action": "typing" }))
        .await;
    assert_eq!(next_typing(&mut ann_cable).await["nickname"], "bob");
}

#[tokio::test]
async fn a_burst_of_200_joins_reaches_an_observer_as_a_few_coalesced_frames() {
    let (app, ann, room) = TestApp::with_ann_in_general(&["--presence-listed", "20"]).await;
    let crowd = app.crowd("guest", 200).await;
    let (mut observer, _) = watch(&app, &ann, room).await;

    let joins = crowd.iter().map(|user| watch(&app, user, room));
    let cables = futures_util::future::join_all(joins).await;
    let mut frames = 0;
    let full = presence_until(
        &mut observer,
        Duration::from_secs(30),
        |m| m["count"] == 201,
        |_| frames += 1,
    )
    .await;
    frames += 1;
    assert_eq!(
        full["users"].as_array().unwrap().len(),
        20,
        "a frame lists 20 users, not 201"
    );
    assert!(frames <= 20, "200 joins became {frames} presence frames");
    println!("200 joins: {frames} presence frames to the observer");

    drop(cables);
    let mut frames = 0;
    presence_until(
        &mut observer,
        Duration::from_secs(30),
        |m| m["count"] == 1,
        |_| frames += 1,
    )
    .await;
    frames += 1;
    assert!(frames <= 20, "200 leaves became {frames} presence frames");
    println!("200 leaves: {frames} presence frames to the observer");
}

#[tokio::test]
async fn plain_subscribers_get_no_presence_or_typing_frames() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let bob = app.sign_up("bob").await;
    let (mut plain, plain_id) = app.join(&ann, room).await;
    let (mut bob_cable, bob_id) = watch(&app, &bob, room).await;
    bob_cable
        .perform(&bob_id, json!({ "action": "typing" }))
        .await;
    bob_cable.speak(&bob_id, "hello").await;
    // The first thing a plain subscriber hears is the message itself.
    let message = plain.next_message(&plain_id).await;
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"], "hello");
}
