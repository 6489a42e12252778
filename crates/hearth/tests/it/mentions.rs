//! Mentions and notification settings: whom a message mentions counts in
//! their unread state and reaches their pages live; `@channel` and `@here`
//! only where the room allows the poster; a member's notification setting
//! is theirs alone.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{CableClient, TestApp, TestUser};
use crate::conversations::{badge, mark_read, sidebar_count};

const QUIET: Duration = Duration::from_millis(400);

/// The mention badge of `room` in `user`'s sidebar, 0 for none.
async fn mentions(app: &TestApp, user: &TestUser, room: i64) -> i64 {
    sidebar_count(app, user, room, &["mention", "mentions"]).await
}

/// Posts `text` as `user` in `room`; the stored payload.
async fn say(app: &TestApp, user: &TestUser, room: i64, text: &str) -> Value {
    let response = app.post_message(user, room, text).await;
    assert_eq!(response.status(), 201, "{text:?}");
    response.json().await.unwrap()
}

/// The next `activity` message on `user`'s own stream: whether it mentions them.
async fn next_activity(cable: &mut CableClient, identifier: &str, room: i64) -> bool {
    let message = cable.next_message(identifier).await;
    assert_eq!(
        (message["type"].as_str(), message["id"].as_i64()),
        (Some("activity"), Some(room)),
        "{message}"
    );
    message["mention"].as_bool().expect("mention is a boolean")
}

#[tokio::test]
async fn a_mention_counts_for_the_member_named_and_reaches_their_pages_live() {
    let app = TestApp::spawn_with(&["--message-rate", "0"]).await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let carol = app.sign_up("carol").await;
    let general = app.general_room(&ann).await;
    let (mut bobs, bob_stream) = app.follow_rooms(&bob).await;
    let (mut carols, carol_stream) = app.follow_rooms(&carol).await;

    let posted = say(&app, &ann, general, "hi @BOB, see this").await;
    assert!(
        posted["html"]
            .as_str()
            .unwrap()
            .contains(r#"<span class="mention" data-mention="bob">@BOB</span>"#),
        "{posted}"
    );
    assert!(next_activity(&mut bobs, &bob_stream, general).await);
    assert!(!next_activity(&mut carols, &carol_stream, general).await);
    drop(carols);
    assert_eq!(
        (
            badge(&app, &bob, general).await,
            mentions(&app, &bob, general).await
        ),
        (1, 1)
    );
    assert_eq!(
        (
            badge(&app, &carol, general).await,
            mentions(&app, &carol, general).await
        ),
        (1, 0)
    );

    // Not mentions: in code, in a link, an email address, oneself; twice in
    // one message counts once.
    for text in [
        "`@bob` in code",
        "[@bob](https://example.com)",
        "write to bob@example.com",
        "note to self @ann",
    ] {
        say(&app, &ann, general, text).await;
        assert!(
            !next_activity(&mut bobs, &bob_stream, general).await,
            "{text}"
        );
    }
    say(&app, &ann, general, "@bob @bob!").await;
    assert!(next_activity(&mut bobs, &bob_stream, general).await);
    assert_eq!(mentions(&app, &bob, general).await, 2);
    assert_eq!(badge(&app, &bob, general).await, 6);

    // A deleted message's mention no longer counts.
    let last = say(&app, &ann, general, "@bob one more").await;
    assert!(next_activity(&mut bobs, &bob_stream, general).await);
    assert_eq!(mentions(&app, &bob, general).await, 3);
    let id = last["id"].as_i64().unwrap();
    assert_eq!(app.delete_message(&ann, general, id).await.status(), 200);
    assert_eq!(mentions(&app, &bob, general).await, 2);

    // An edit says whom the message mentions now, without notifying.
    let (mut carols, _) = app.follow_rooms(&carol).await;
    let first = posted["id"].as_i64().unwrap();
    let edited = app
        .edit_message(&ann, general, first, "hi @carol instead")
        .await;
    assert_eq!(edited.status(), 200);
    assert_eq!(
        (
            mentions(&app, &bob, general).await,
            mentions(&app, &carol, general).await
        ),
        (1, 1)
    );
    carols.expect_silence(QUIET).await;

    // Reading moves both counts to nothing.
    let newest = app
        .page(&format!("/chatrooms/{general}"), &bob.cookie)
        .await;
    let seq: i64 = newest
        .split("data-last-seq=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(mark_read(&app, &bob, general, seq).await.status(), 200);
    assert_eq!(
        (
            badge(&app, &bob, general).await,
            mentions(&app, &bob, general).await
        ),
        (0, 0)
    );
}

#[tokio::test]
async fn someone_who_cannot_read_a_room_is_never_mentioned_in_it() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let carol = app.sign_up("carol").await;
    let room = app.create_private_room(&ann, "secret").await;
    assert_eq!(app.invite(&ann, room, "bob").await.status(), 303);
    let (mut carols, _) = app.follow_rooms(&carol).await;
    let (mut bobs, bob_stream) = app.follow_rooms(&bob).await;

    say(&app, &ann, room, "@carol @bob @channel").await;
    assert!(next_activity(&mut bobs, &bob_stream, room).await);
    carols.expect_silence(QUIET).await;
    let page = app.page("/chatrooms", &carol.cookie).await;
    assert!(!page.contains(&format!("data-room-id=\"{room}\"")));
    // One row for bob, one for the room: none for carol.
    assert_eq!(app.count("mentions").await, 2);

    // Removed, bob's earlier mention goes with the room.
    let bob_id = app.user_id("bob").await;
    assert_eq!(app.remove_member(&ann, room, bob_id).await.status(), 303);
    say(&app, &ann, room, "@bob are you there?").await;
    assert_eq!(app.count("mentions").await, 2, "bob is no longer a member");
}

#[tokio::test]
async fn the_whole_room_is_mentioned_only_by_those_the_room_allows() {
    let app = TestApp::spawn_with(&["--message-rate", "0"]).await;
    // ann signed up first: the instance's admin.
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let carol = app.sign_up("carol").await;
    let dan = app.sign_up("dan").await;
    let general = app.general_room(&ann).await;

    // #general starts limited to admins: bob is told why, over HTTP and
    // over the cable, and nothing is stored.
    let refused = app.post_message(&bob, general, "@channel lunch?").await;
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "room_mention_not_allowed", "{body}");
    let (mut cable, identifier) = app.join(&bob, general).await;
    cable.speak(&identifier, "@here lunch?").await;
    let answer = cable.next_message(&identifier).await;
    assert_eq!(answer["error"], "room_mention_not_allowed", "{answer}");
    assert_eq!(app.count("messages").await, 0);
    // Without JavaScript, the form comes back with the draft.
    let form = app
        .post_form(
            &format!("/chatrooms/{general}/messages"),
            Some(&bob.cookie),
            &[("content", "@channel lunch?")],
        )
        .await;
    let page = form.text().await.unwrap();
    assert!(
        page.contains("may use @channel or @here") && page.contains("@channel lunch?</textarea>")
    );

    // The admin may: everyone else is mentioned.
    let (mut dans, dan_stream) = app.follow_rooms(&dan).await;
    say(&app, &ann, general, "@channel the office is closed").await;
    assert!(next_activity(&mut dans, &dan_stream, general).await);
    assert_eq!(mentions(&app, &carol, general).await, 1);
    assert_eq!(mentions(&app, &ann, general).await, 0, "not the author");

    // A room bob created lets every member by default; `@here` mentions
    // those with the room open, not dan, a member who is away.
    let team = app.create_room(&bob, "team").await;
    for user in [&carol, &dan] {
        say(&app, user, team, "joining").await;
    }
    let (_bob_in_team, _) = app.join(&bob, team).await;
    let (mut carol_in_team, _) = crate::presence::watch(&app, &carol, team).await;
    crate::presence::presence_of(&mut carol_in_team, 2).await;
    say(&app, &carol, team, "@here standup").await;
    assert_eq!(mentions(&app, &bob, team).await, 1);
    assert_eq!(mentions(&app, &dan, team).await, 0, "dan is away");

    // bob limits it; carol may not change that back, nor use @channel now.
    assert_eq!(set_room_mentions(&app, &carol, team, "everyone").await, 403);
    assert_eq!(set_room_mentions(&app, &bob, team, "nobody").await, 422);
    assert_eq!(set_room_mentions(&app, &bob, team, "admins").await, 303);
    assert_eq!(
        app.post_message(&carol, team, "@channel again")
            .await
            .status(),
        422
    );
    assert_eq!(
        app.post_message(&ann, team, "@channel from the admin")
            .await
            .status(),
        201
    );
    // An edit may not sneak one in either.
    let plain = say(&app, &carol, team, "plain").await;
    let edit = app
        .edit_message(&carol, team, plain["id"].as_i64().unwrap(), "@channel")
        .await;
    assert_eq!(edit.status(), 422);

    // A conversation has no such setting.
    let direct = app.open_direct(&ann, "bob").await;
    assert_eq!(set_room_mentions(&app, &ann, direct, "admins").await, 403);
}

/// Says who may mention the whole of `room`, as `user`; the status.
async fn set_room_mentions(app: &TestApp, user: &TestUser, room: i64, value: &str) -> u16 {
    app.post_form(
        &format!("/chatrooms/{room}/room_mentions"),
        Some(&user.cookie),
        &[("room_mentions", value)],
    )
    .await
    .status()
    .as_u16()
}

/// Sets what `user` is notified of in `room` (JSON); the answer.
async fn set(app: &TestApp, user: &TestUser, room: i64, value: &str) -> reqwest::Response {
    app.request_json(
        user,
        reqwest::Method::POST,
        &format!("/chatrooms/{room}/notify"),
        Some(json!({ "notify": value })),
    )
    .await
}

#[tokio::test]
async fn a_notification_setting_is_the_members_own_and_reaches_their_other_pages() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let carol = app.sign_up("carol").await;
    let general = app.general_room(&ann).await;
    let (mut bobs, bob_stream) = app.follow_rooms(&bob).await;

    let answer = set(&app, &bob, general, "mentions").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.json::<Value>().await.unwrap(),
        json!({ "notify": "mentions" })
    );
    assert_eq!(
        bobs.next_message(&bob_stream).await,
        json!({ "type": "notify", "id": general, "notify": "mentions" })
    );
    let page = app
        .page(&format!("/chatrooms/{general}"), &bob.cookie)
        .await;
    assert!(page.contains(&format!(
        r#"<li data-room-id="{general}" data-notify="mentions""#
    )));
    assert!(page.contains(r#"value="mentions" checked"#));
    let anns = app
        .page(&format!("/chatrooms/{general}"), &ann.cookie)
        .await;
    assert!(anns.contains(r#"data-notify="default""#), "ann's is hers");

    assert_eq!(set(&app, &bob, general, "loud").await.status(), 422);

    // Not a member of the private room, or no longer one: nothing to set.
    let room = app.create_private_room(&ann, "secret").await;
    assert_eq!(set(&app, &carol, room, "all").await.status(), 404);
    assert_eq!(app.invite(&ann, room, "bob").await.status(), 303);
    assert_eq!(set(&app, &bob, room, "all").await.status(), 200);
    let bob_id = app.user_id("bob").await;
    assert_eq!(app.remove_member(&ann, room, bob_id).await.status(), 303);
    assert_eq!(set(&app, &bob, room, "nothing").await.status(), 404);
    // A public room one has not joined has no setting either.
    let open = app.create_room(&ann, "open").await;
    assert_eq!(set(&app, &carol, open, "all").await.status(), 404);
    // Signed out: sent to sign in, nothing set.
    let anonymous = app
        .client()
        .post(app.url(&format!("/chatrooms/{general}/notify")))
        .form(&[("notify", "all")])
        .send()
        .await
        .unwrap();
    assert_ne!(anonymous.status(), 200);
}
