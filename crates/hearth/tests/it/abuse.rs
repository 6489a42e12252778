//! Clients that must not pass: identifiers too long, replays asked too
//! often, sockets that stop reading while flooding pings, one account or
//! one address taking every slot, and sockets outliving their session.

use std::time::Duration;

use crate::common::{CableClient, Event, TestApp, connect_small_window, room_identifier};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message};

/// `{"channel":"ChatroomChannel","id":room,"pad":"xxx…"}`, `bytes` long.
fn padded_identifier(room: i64, bytes: usize) -> String {
    let bare = json!({ "channel": "ChatroomChannel", "id": room, "pad": "" }).to_string();
    let pad = "x".repeat(bytes.saturating_sub(bare.len()));
    let identifier = json!({ "channel": "ChatroomChannel", "id": room, "pad": pad }).to_string();
    assert_eq!(identifier.len(), bytes.max(bare.len()));
    identifier
}

/// The status of a refused WebSocket handshake.
fn refused_status(result: Result<CableClient, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("the cable was accepted"),
    }
}

#[tokio::test]
async fn an_identifier_longer_than_the_limit_is_rejected_and_a_short_one_confirmed() {
    let (app, ann, room) = TestApp::with_ann_in_general(&["--max-identifier-bytes", "512"]).await;
    let mut cable = app.connect_cable(Some(&ann.cookie)).await;
    cable.expect_welcome().await;

    let long = padded_identifier(room, 513);
    assert_eq!(
        cable.subscribe_raw(&long).await,
        json!({ "type": "reject_subscription", "identifier": long })
    );
    let fits = padded_identifier(room, 512);
    assert_eq!(
        cable.subscribe_raw(&fits).await,
        json!({ "type": "confirm_subscription", "identifier": fits })
    );
    assert_eq!(app.metric("hearth_subscriptions").await, 1.0);
}

#[tokio::test]
async fn catch_up_past_the_replay_rate_is_refused_with_a_retry_after() {
    // One replay a second, bursts of ten.
    let (app, ann, room) = TestApp::with_ann_in_general(&["--replay-rate", "1"]).await;
    app.post_message(&ann, room, "one").await;
    let (mut cable, identifier) = app.join(&ann, room).await;

    for _ in 0..15 {
        cable.catch_up(&identifier, 0).await;
    }
    let (mut answered, mut refused) = (0, 0);
    while answered + refused < 15 {
        let message = cable.next_message(&identifier).await;
        match message["type"].as_str() {
            Some("caught_up") => answered += 1,
            Some("error") => {
                assert_eq!(message["error"], "rate_limited", "{message}");
                let wait = message["retry_after"].as_f64().expect("a retry_after");
                assert!(wait > 0.0 && wait <= 1.0, "retry_after {wait}");
                refused += 1;
            }
            _ => assert_eq!(message["content"], "one", "{message}"),
        }
    }
    assert!(
        (10..=11).contains(&answered),
        "a burst of ten passes (one more may have refilled): {answered}"
    );
    assert_eq!(refused, 15 - answered);
}

#[tokio::test]
async fn a_client_flooding_pings_without_reading_is_still_closed_at_sign_out() {
    // A long write timeout, so that only the sign-out can end the session.
    let app = TestApp::spawn_with(&["--write-timeout", "600"]).await;
    let ann = app.sign_up("ann").await;
    let mut flooder = connect_small_window(app.addr, "actioncable-v1-json", &ann.cookie).await;
    app.wait_for_metric("hearth_connections", 1.0).await;

    // Every ping asks for a pong of the same size; the flooder reads none, so
    // the server's writes stall once the small window and its send buffer fill.
    let flood = tokio::spawn(async move {
        let payload = vec![b'p'; 125];
        for _ in 0..50_000 {
            if flooder
                .ws
                .send(Message::Ping(payload.clone().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        flooder
    });
    tokio::time::sleep(Duration::from_secs(1)).await;

    let signed_out = app.post_form("/sign_out", Some(&ann.cookie), &[]).await;
    assert_eq!(signed_out.status(), 303);
    app.wait_for_metric("hearth_connections", 0.0).await;
    flood.abort();
}

#[tokio::test]
async fn a_client_that_stops_reading_a_replay_is_dropped_when_its_writes_stall() {
    let (app, ann, room) =
        TestApp::with_ann_in_general(&["--write-timeout", "1", "--message-rate", "0"]).await;
    let (mut writer, identifier) = app.join(&ann, room).await;
    // 1,000 messages of 3,900 bytes: more than the kernel buffers on both
    // sides of a loopback socket hold (up to 4 MiB for the sender).
    writer
        .speak_many(&identifier, &"y".repeat(3900), 1000)
        .await;

    let mut stalled = connect_small_window(app.addr, "actioncable-v1-json", &ann.cookie).await;
    stalled.expect_welcome().await;
    assert_eq!(
        stalled.subscribe_raw(&identifier).await["type"],
        "confirm_subscription"
    );
    app.wait_for_metric("hearth_connections", 2.0).await;
    stalled.catch_up(&identifier, 0).await;
    // 4 MB of replay into a 4 KiB window: the write stalls, and a second later
    // the session ends; the reader that keeps up is untouched.
    app.wait_for_metric("hearth_connections", 1.0).await;
    app.post_message(&ann, room, "still here").await;
    assert_eq!(
        writer.next_message(&identifier).await["content"],
        "still here"
    );
}

#[tokio::test]
async fn one_user_cannot_take_every_cable_slot() {
    let app = TestApp::spawn_with(&["--max-connections-per-user", "3"]).await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(app.connect_cable(Some(&ann.cookie)).await);
    }
    assert_eq!(
        refused_status(app.try_connect_cable(Some(&ann.cookie), &[]).await),
        429
    );
    let mut other = app.connect_cable(Some(&bob.cookie)).await;
    other.expect_welcome().await;

    // A slot freed is a slot ann can take again.
    drop(held.pop());
    app.wait_for_metric("hearth_connections", 3.0).await;
    let mut again = app.connect_cable(Some(&ann.cookie)).await;
    again.expect_welcome().await;
}

#[tokio::test]
async fn one_address_cannot_take_every_cable_slot() {
    let app = TestApp::spawn_with(&["--max-connections-per-address", "2"]).await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let _first = app.connect_cable(Some(&ann.cookie)).await;
    let _second = app.connect_cable(Some(&bob.cookie)).await;
    assert_eq!(
        refused_status(app.try_connect_cable(Some(&bob.cookie), &[]).await),
        429
    );
}

#[tokio::test]
async fn subscriptions_are_capped_per_user_across_connections() {
    let app = TestApp::spawn_with(&["--max-subscriptions-per-user", "3"]).await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let room = app.general_room(&ann).await;
    let mut one = app.connect_cable(Some(&ann.cookie)).await;
    let mut two = app.connect_cable(Some(&ann.cookie)).await;
    one.expect_welcome().await;
    two.expect_welcome().await;
    for (on_two, n) in [(false, 100), (false, 101), (true, 102)] {
        let cable = if on_two { &mut two } else { &mut one };
        let identifier = padded_identifier(room, n);
        assert_eq!(
            cable.subscribe_raw(&identifier).await["type"],
            "confirm_subscription"
        );
    }
    let fourth = padded_identifier(room, 103);
    assert_eq!(
        two.subscribe_raw(&fourth).await["type"],
        "reject_subscription"
    );

    // Unsubscribing gives the slot back; others are not affected.
    let first = padded_identifier(room, 100);
    one.send_json(json!({ "command": "unsubscribe", "identifier": first }))
        .await;
    app.wait_for_metric("hearth_subscriptions", 2.0).await;
    assert_eq!(
        two.subscribe_raw(&fourth).await["type"],
        "confirm_subscription"
    );
    let mut bobs = app.connect_cable(Some(&bob.cookie)).await;
    assert_eq!(bobs.join_room(room).await, room_identifier(room));
}

#[tokio::test]
async fn signing_in_again_closes_the_sockets_of_the_old_session() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let mut old = app.connect_cable(Some(&ann.cookie)).await;
    old.join_room(room).await;

    let signed_in = app
        .post_sign_in(&ann.email, &ann.password, Some(&ann.cookie))
        .await;
    assert_eq!(signed_in.status(), 303);
    assert_eq!(
        old.next_frame().await,
        json!({ "type": "disconnect", "reason": "unauthorized", "reconnect": false })
    );
}

#[tokio::test]
async fn sockets_of_an_expired_session_are_closed() {
    let app = TestApp::spawn_with(&["--session-check-interval", "1"]).await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let room = app.general_room(&ann).await;
    let mut expiring = app.connect_cable(Some(&ann.cookie)).await;
    expiring.join_room(room).await;
    let (mut staying, identifier) = app.join(&bob, room).await;

    let ann_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE nickname = 'ann'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    sqlx::query("UPDATE sessions SET expires_at = 0 WHERE user_id = $1")
        .bind(ann_id)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(
        expiring.next_frame().await,
        json!({ "type": "disconnect", "reason": "unauthorized", "reconnect": false })
    );
    assert!(matches!(expiring.next_event().await, Event::Closed(_)));

    app.post_message(&bob, room, "bob stays").await;
    let message: Value = staying.next_message(&identifier).await;
    assert_eq!(message["content"], "bob stays");
}
