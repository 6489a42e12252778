//! Who is online: the dot on each direct conversation in the sidebar, and
//! who hears when it changes (the people one shares a conversation with,
//! nobody else).

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{CableClient, TestApp, TestUser};

/// Longer than the presence interval (1 s), within which a change is told.
const A_ROUND: Duration = Duration::from_millis(1500);

/// The next `online` message on a user's own stream, past the news of new
/// rooms and messages.
pub async fn next_online(cable: &mut CableClient, identifier: &str) -> Value {
    loop {
        let message = cable.next_message(identifier).await;
        if message["type"] == "online" {
            return message;
        }
    }
}

/// Who `viewer`'s sidebar draws as online in conversation `direct`.
pub async fn drawn_online(app: &TestApp, viewer: &TestUser, direct: i64) -> String {
    let page = app
        .page(&format!("/chatrooms/{direct}"), &viewer.cookie)
        .await;
    let item = page
        .split(&format!(r#"<li data-room-id="{direct}" data-direct"#))
        .nth(1)
        .expect("the conversation is in the sidebar")
        .to_owned();
    let online = item
        .split(r#"data-online=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the item says who is online");
    online.to_owned()
}

#[tokio::test]
async fn conversation_partners_hear_who_comes_online_and_goes_and_nobody_else_does() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let carol = app.sign_up("carol").await;
    let ann_id = app.user_id("ann").await;
    let direct = app.open_direct(&bob, "ann").await;
    let (mut bobs, bob_stream) = app.follow_rooms(&bob).await;
    let (mut carols, carol_stream) = app.follow_rooms(&carol).await;
    assert_eq!(drawn_online(&app, &bob, direct).await, "", "ann is away");

    // Ann opens a page: bob hears it, and his next page draws it.
    let (first_tab, _) = app.follow_rooms(&ann).await;
    let online = json!({ "type": "online", "user": ann_id, "online": true });
    assert_eq!(next_online(&mut bobs, &bob_stream).await, online);
    assert_eq!(drawn_online(&app, &bob, direct).await, ann_id.to_string());
    assert_eq!(app.metric("hearth_online_users").await, 3.0);

    // Her second tab, and closing the first, change nothing he sees.
    let (second_tab, _) = app.follow_rooms(&ann).await;
    drop(first_tab);
    bobs.expect_silence(A_ROUND).await;
    // Carol shares no conversation with ann: she heard none of it.
    carols.expect_silence(A_ROUND).await;

    // Carol starts one: her page is drawn with ann online, and from now
    // on she hears of her too.
    let carols_direct = app.open_direct(&carol, "ann").await;
    assert_eq!(carols.next_message(&carol_stream).await["type"], "room");
    assert_eq!(
        drawn_online(&app, &carol, carols_direct).await,
        ann_id.to_string()
    );
    drop(second_tab);
    let offline = json!({ "type": "online", "user": ann_id, "online": false });
    assert_eq!(next_online(&mut bobs, &bob_stream).await, offline);
    assert_eq!(next_online(&mut carols, &carol_stream).await, offline);
    assert_eq!(drawn_online(&app, &bob, direct).await, "");
    app.wait_for_metric("hearth_online_users", 2.0).await;

    drop((bobs, carols));
    app.wait_for_metric("hearth_online_users", 0.0).await;
    app.wait_for_metric("hearth_online_watched", 0.0).await;
}
