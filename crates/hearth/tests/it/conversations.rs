//! Private rooms, direct conversations and membership: every door into a
//! room someone may not read, tried by a non-member and by a removed
//! member, over HTTP, the cable (subscribe, `catch_up`, the extended
//! protocol's `history` and session restore), search, and the user's own
//! stream.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{CableClient, TestApp, TestUser, room_identifier};

/// How long a test waits to be sure that nothing arrives.
const QUIET: Duration = Duration::from_millis(400);

/// Every HTTP door of `room` for `user`, with the status each answered:
/// the page, a permalink, history as JSON and as HTML, posting, editing,
/// deleting and the edit form of message `message`, joining and inviting.
async fn doors(app: &TestApp, user: &TestUser, room: i64, message: i64) -> Vec<(String, u16)> {
    let mut answers = Vec::new();
    for path in [
        format!("/chatrooms/{room}"),
        format!("/chatrooms/{room}?around=1"),
        format!("/chatrooms/{room}/messages?before=5"),
        format!("/chatrooms/{room}/messages/{message}/edit"),
    ] {
        let status = app.get(&path, Some(&user.cookie)).await.status().as_u16();
        answers.push((format!("GET {path}"), status));
    }
    let json = app
        .request_json(
            user,
            reqwest::Method::GET,
            &format!("/chatrooms/{room}/messages"),
            None,
        )
        .await;
    answers.push(("GET messages as JSON".into(), json.status().as_u16()));
    let posted = app.post_message(user, room, "let me in").await;
    answers.push(("POST message".into(), posted.status().as_u16()));
    let edited = app.edit_message(user, room, message, "mine now").await;
    answers.push(("PATCH message".into(), edited.status().as_u16()));
    let deleted = app.delete_message(user, room, message).await;
    answers.push(("DELETE message".into(), deleted.status().as_u16()));
    for (path, form) in [
        (format!("/chatrooms/{room}/join"), vec![]),
        (
            format!("/chatrooms/{room}/members"),
            vec![("nickname", "ann")],
        ),
        (format!("/chatrooms/{room}/leave"), vec![]),
        (format!("/chatrooms/{room}/archive"), vec![]),
        (
            format!("/chatrooms/{room}/settings"),
            vec![("name", "mine"), ("topic", "")],
        ),
    ] {
        let status = app
            .post_form(&path, Some(&user.cookie), &form)
            .await
            .status()
            .as_u16();
        answers.push((format!("POST {path}"), status));
    }
    answers
}

/// Asserts that every door answered 404, as for a room that does not exist.
fn assert_all_not_found(answers: &[(String, u16)]) {
    let open: Vec<&(String, u16)> = answers
        .iter()
        .filter(|(_, status)| *status != 404)
        .collect();
    assert!(open.is_empty(), "doors that did not answer 404: {open:?}");
}

/// The ids of the messages stored in `room`, oldest first.
async fn stored(app: &TestApp, room: i64) -> Vec<String> {
    sqlx::query_scalar("SELECT content FROM messages WHERE chatroom_id = $1 ORDER BY seq")
        .bind(room)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

/// What `user` finds searching for `q`, as room ids.
async fn search_rooms(app: &TestApp, user: &TestUser, q: &str) -> Vec<i64> {
    let response = app
        .request_json(user, reqwest::Method::GET, &format!("/search?q={q}"), None)
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|result| result["chatroom_id"].as_i64().unwrap())
        .collect()
}

/// Archives `room` as `user`; the status.
async fn archive(app: &TestApp, user: &TestUser, room: i64) -> u16 {
    app.post_form(
        &format!("/chatrooms/{room}/archive"),
        Some(&user.cookie),
        &[],
    )
    .await
    .status()
    .as_u16()
}

/// Ann's private room "secret" with one message of hers; its id and the message's.
async fn anns_secret_room(app: &TestApp, ann: &TestUser) -> (i64, i64) {
    let room = app.create_private_room(ann, "secret").await;
    let response = app.post_message(ann, room, "the launch is on friday").await;
    assert_eq!(response.status(), 201);
    let message: Value = response.json().await.unwrap();
    (room, message["id"].as_i64().unwrap())
}

#[tokio::test]
async fn a_private_room_answers_404_at_every_http_door_to_a_non_member() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let carol = app.sign_up("carol").await;
    let (room, message) = anns_secret_room(&app, &ann).await;

    assert_all_not_found(&doors(&app, &carol, room, message).await);
    assert_eq!(
        stored(&app, room).await,
        ["the launch is on friday"],
        "nothing carol sent was stored or changed"
    );
    let directory = app.page("/chatrooms", &carol.cookie).await;
    assert!(!directory.contains("secret"), "not in her directory");
    let general = app.general_room(&carol).await;
    let page = app
        .page(&format!("/chatrooms/{general}"), &carol.cookie)
        .await;
    assert!(!page.contains("secret"), "not in her sidebar");
    assert!(search_rooms(&app, &carol, "launch").await.is_empty());

    // Ann, a member, passes the same doors.
    assert_eq!(search_rooms(&app, &ann, "launch").await, [room]);
    assert!(
        app.page(&format!("/chatrooms/{room}"), &ann.cookie)
            .await
            .contains("🔒 secret")
    );
    let directory = app.page("/chatrooms", &ann.cookie).await;
    assert!(directory.contains("🔒 secret"), "in her directory, marked");
}

/// The next message on a user's own stream that is not `activity` (news
/// of a message in one of their rooms, which this test does not look at).
async fn next_but_activity(cable: &mut CableClient, identifier: &str) -> Value {
    loop {
        let message = cable.next_message(identifier).await;
        if message["type"] != "activity" {
            return message;
        }
    }
}

/// Subscribes `cable` (welcomed already) to `room` and returns the answer's type.
async fn subscribe(cable: &mut CableClient, room: i64) -> String {
    let answer = cable.subscribe_raw(&room_identifier(room)).await;
    answer["type"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_non_member_is_refused_every_cable_door_of_a_private_room() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let carol = app.sign_up("carol").await;
    let (room, _) = anns_secret_room(&app, &ann).await;
    assert_eq!(app.invite(&ann, room, "bob").await.status(), 303);

    let mut cable = app.connect_cable(Some(&carol.cookie)).await;
    cable.expect_welcome().await;
    assert_eq!(subscribe(&mut cable, room).await, "reject_subscription");
    let watching =
        json!({ "channel": "ChatroomChannel", "id": room, "presence": true }).to_string();
    assert_eq!(
        cable.subscribe_raw(&watching).await["type"],
        "reject_subscription"
    );
    // A catch_up on an identifier she could not subscribe gets nothing.
    cable.catch_up(&room_identifier(room), 0).await;
    cable.expect_silence(QUIET).await;

    // The extended protocol's history, asked for with the subscribe.
    let mut extended = app.connect_extended(&carol.cookie, None).await;
    assert_eq!(extended.next_frame().await["type"], "welcome");
    extended
        .send_json(json!({
            "command": "subscribe",
            "identifier": room_identifier(room),
            "history": { "since": 0 },
        }))
        .await;
    assert_eq!(extended.next_frame().await["type"], "reject_subscription");
    extended.expect_silence(QUIET).await;

    // Bob, invited, is a member.
    let mut member = app.connect_cable(Some(&bob.cookie)).await;
    member.expect_welcome().await;
    assert_eq!(subscribe(&mut member, room).await, "confirm_subscription");
    member.catch_up(&room_identifier(room), 0).await;
    assert_eq!(
        member.next_message(&room_identifier(room)).await["content"],
        "the launch is on friday"
    );
}

#[tokio::test]
async fn a_removed_member_loses_the_room_at_once_at_every_door() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let (room, message) = anns_secret_room(&app, &ann).await;
    assert_eq!(app.invite(&ann, room, "bob").await.status(), 303);
    let identifier = room_identifier(room);

    // Bob follows the room live, and his own stream.
    let (mut cable, _) = app.join(&bob, room).await;
    let (mut lists, rooms_identifier) = app.follow_rooms(&bob).await;
    app.post_message(&ann, room, "before").await;
    assert_eq!(cable.next_message(&identifier).await["content"], "before");

    let bob_id = app.user_id("bob").await;
    assert_eq!(app.remove_member(&ann, room, bob_id).await.status(), 303);
    assert_eq!(
        cable.next_frame().await,
        json!({ "type": "reject_subscription", "identifier": identifier }),
        "his subscription ends at once"
    );
    assert_eq!(
        next_but_activity(&mut lists, &rooms_identifier).await,
        json!({ "type": "room_removed", "id": room })
    );
    app.post_message(&ann, room, "after").await;
    cable.expect_silence(QUIET).await;
    cable.catch_up(&identifier, 0).await;
    cable.expect_silence(QUIET).await;
    assert_eq!(subscribe(&mut cable, room).await, "reject_subscription");

    assert_all_not_found(&doors(&app, &bob, room, message).await);
    assert!(search_rooms(&app, &bob, "launch").await.is_empty());
    assert_eq!(
        stored(&app, room).await,
        ["the launch is on friday", "before", "after"]
    );
}

#[tokio::test]
async fn a_restored_session_asks_again_whether_its_user_is_a_member() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let (room, _) = anns_secret_room(&app, &ann).await;
    let general = app.general_room(&bob).await;
    assert_eq!(app.invite(&ann, room, "bob").await.status(), 303);

    let mut cable = app.connect_extended(&bob.cookie, None).await;
    let sid = cable.next_frame().await["sid"].as_str().unwrap().to_owned();
    for id in [room, general] {
        assert_eq!(subscribe(&mut cable, id).await, "confirm_subscription");
    }
    drop(cable);
    // Parked; then removed while away.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bob_id = app.user_id("bob").await;
    assert_eq!(app.remove_member(&ann, room, bob_id).await.status(), 303);

    let mut cable = app.connect_extended(&bob.cookie, Some(&sid)).await;
    let welcome = cable.next_frame().await;
    assert_eq!(welcome["restored"], true, "{welcome}");
    assert_eq!(
        welcome["restored_ids"],
        json!([room_identifier(general)]),
        "general restored, the private room not"
    );
    let history =
        json!({ "streams": { format!("chatrooms:{room}"): { "epoch": "x", "offset": 0 } } });
    cable
        .send_json(json!({ "command": "history", "identifier": room_identifier(room), "history": history }))
        .await;
    app.post_message(&ann, room, "not for bob").await;
    loop {
        // Whatever the engine answers about the unknown subscription, it is
        // never one of the room's messages.
        match tokio::time::timeout(QUIET, cable.next_frame()).await {
            Err(_) => break,
            Ok(frame) => assert!(frame.get("message").is_none(), "{frame}"),
        }
    }
}

#[tokio::test]
async fn leaving_ends_the_subscription_and_the_last_to_leave_archives_the_room() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let (room, _) = anns_secret_room(&app, &ann).await;
    assert_eq!(app.invite(&ann, room, "bob").await.status(), 303);
    let (mut cable, identifier) = app.join(&bob, room).await;

    let left = app
        .post_form(&format!("/chatrooms/{room}/leave"), Some(&bob.cookie), &[])
        .await;
    assert_eq!(left.status(), 303);
    assert_eq!(
        cable.next_frame().await,
        json!({ "type": "reject_subscription", "identifier": identifier })
    );
    assert_eq!(
        app.get(&format!("/chatrooms/{room}"), Some(&bob.cookie))
            .await
            .status(),
        404
    );

    let left = app
        .post_form(&format!("/chatrooms/{room}/leave"), Some(&ann.cookie), &[])
        .await;
    assert_eq!(left.status(), 303);
    let archived: Option<i64> =
        sqlx::query_scalar("SELECT archived_at FROM chatrooms WHERE id = $1")
            .bind(room)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(archived.is_some(), "the last member out archives it");
}

#[tokio::test]
async fn everyone_is_in_general_and_nobody_leaves_it() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let general = app.general_room(&ann).await;
    let members: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE chatroom_id = $1")
            .bind(general)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(members, 2, "both since signing up, before posting");
    let left = app
        .post_form(
            &format!("/chatrooms/{general}/leave"),
            Some(&bob.cookie),
            &[],
        )
        .await;
    assert_eq!(left.status(), 403);
    let ann_id = app.user_id("ann").await;
    assert_eq!(app.remove_member(&ann, general, ann_id).await.status(), 403);
}

#[tokio::test]
async fn only_the_creator_or_the_admin_removes_others_and_changes_the_room() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up("ada").await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let (room, _) = anns_secret_room(&app, &ann).await;
    for nickname in ["bob", "ada"] {
        assert_eq!(app.invite(&ann, room, nickname).await.status(), 303);
    }
    let ann_id = app.user_id("ann").await;
    assert_eq!(app.remove_member(&bob, room, ann_id).await.status(), 403);
    let renamed = app
        .post_form(
            &format!("/chatrooms/{room}/settings"),
            Some(&bob.cookie),
            &[("name", "bobs"), ("topic", "")],
        )
        .await;
    assert_eq!(renamed.status(), 403);

    // Ada signed up first: the admin.
    let renamed = app
        .post_form(
            &format!("/chatrooms/{room}/settings"),
            Some(&admin.cookie),
            &[("name", "launch"), ("topic", "Friday")],
        )
        .await;
    assert_eq!(renamed.status(), 303);
    let page = app.page(&format!("/chatrooms/{room}"), &bob.cookie).await;
    assert!(page.contains("🔒 launch") && page.contains("Friday"));
    let bob_id = app.user_id("bob").await;
    assert_eq!(app.remove_member(&admin, room, bob_id).await.status(), 303);
    assert_eq!(
        app.get(&format!("/chatrooms/{room}"), Some(&bob.cookie))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn an_archived_room_is_read_only_and_ends_every_subscription() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let room = app.create_room(&ann, "old-project").await;
    let (mut cable, identifier) = app.join(&bob, room).await;
    assert_eq!(archive(&app, &ann, room).await, 303);
    assert_eq!(
        cable.next_frame().await,
        json!({ "type": "reject_subscription", "identifier": identifier })
    );
    assert_eq!(app.post_message(&bob, room, "hello?").await.status(), 403);
    let page = app.page(&format!("/chatrooms/{room}"), &bob.cookie).await;
    assert!(page.contains("This room is archived"));
    let directory = app.page("/chatrooms", &bob.cookie).await;
    assert!(!directory.contains("old-project"), "listed nowhere");
}

#[tokio::test]
async fn renames_and_archives_reach_every_page_that_lists_the_room_and_nobody_elses() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let carol = app.sign_up("carol").await;
    let (mut bobs, bob_stream) = app.follow_rooms(&bob).await;
    let (mut carols, carol_stream) = app.follow_rooms(&carol).await;
    let settings = |room: i64, name: &str, topic: &str| {
        let (path, name, topic) = (
            format!("/chatrooms/{room}/settings"),
            name.to_owned(),
            topic.to_owned(),
        );
        let app = &app;
        let cookie = ann.cookie.clone();
        async move {
            app.post_form(&path, Some(&cookie), &[("name", &name), ("topic", &topic)])
                .await
                .status()
        }
    };

    // A private room: its members hear it, carol does not.
    let (room, _) = anns_secret_room(&app, &ann).await;
    assert_eq!(app.invite(&ann, room, "bob").await.status(), 303);
    assert_eq!(bobs.next_message(&bob_stream).await["type"], "room");
    assert_eq!(settings(room, "plans", "Q3 only").await, 303);
    assert_eq!(
        bobs.next_message(&bob_stream).await,
        json!({ "type": "room_renamed", "id": room, "name": "plans", "topic": "Q3 only", "sigil": "🔒" })
    );
    assert_eq!(archive(&app, &ann, room).await, 303);
    assert_eq!(
        bobs.next_message(&bob_stream).await,
        json!({ "type": "room_removed", "id": room })
    );
    carols.expect_silence(QUIET).await;

    // A public room: every page lists it, so every page hears it.
    let open = app.create_room(&ann, "lobby").await;
    for (cable, stream) in [(&mut bobs, &bob_stream), (&mut carols, &carol_stream)] {
        assert_eq!(cable.next_message(stream).await["type"], "room");
    }
    assert_eq!(settings(open, "hall", "").await, 303);
    for (cable, stream) in [(&mut bobs, &bob_stream), (&mut carols, &carol_stream)] {
        assert_eq!(
            cable.next_message(stream).await,
            json!({ "type": "room_renamed", "id": open, "name": "hall", "topic": "", "sigil": "#" })
        );
    }
    assert_eq!(archive(&app, &ann, open).await, 303);
    for (cable, stream) in [(&mut bobs, &bob_stream), (&mut carols, &carol_stream)] {
        assert_eq!(
            cable.next_message(stream).await,
            json!({ "type": "room_removed", "id": open })
        );
    }
}

#[tokio::test]
async fn an_invitation_reaches_the_invited_users_own_stream_and_nobody_elses() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let dan = app.sign_up("dan").await;
    let (mut bobs, identifier) = app.follow_rooms(&bob).await;
    let (mut dans, _) = app.follow_rooms(&dan).await;
    let (room, _) = anns_secret_room(&app, &ann).await;
    bobs.expect_silence(QUIET).await;
    assert_eq!(app.invite(&ann, room, "bob").await.status(), 303);
    let told = bobs.next_message(&identifier).await;
    assert_eq!(
        (told["type"].as_str(), told["id"].as_i64()),
        (Some("room"), Some(room))
    );
    assert_eq!(told["list"], "rooms");
    assert!(told["html"].as_str().unwrap().contains("🔒 secret"));
    dans.expect_silence(QUIET).await;
    let unknown = app.invite(&ann, room, "nobody").await;
    assert_eq!(unknown.status(), 422);
}

#[tokio::test]
async fn a_conversation_is_found_again_never_duplicated_and_closed_to_others() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let carol = app.sign_up("carol").await;
    let (mut bobs, identifier) = app.follow_rooms(&bob).await;

    let direct = app.open_direct(&ann, "bob").await;
    let told = bobs.next_message(&identifier).await;
    assert_eq!(
        (told["id"].as_i64(), told["list"].as_str()),
        (Some(direct), Some("direct"))
    );
    assert!(
        told["html"].as_str().unwrap().contains("ann"),
        "named by the other person"
    );
    assert_eq!(
        app.open_direct(&bob, "ANN").await,
        direct,
        "the same one, found again"
    );
    let by_form = app
        .post_form("/dm", Some(&ann.cookie), &[("to", "@bob")])
        .await;
    assert_eq!(crate::common::redirected_room(&by_form), direct);

    let group = app
        .post_form("/dm", Some(&ann.cookie), &[("to", "bob, carol")])
        .await;
    let group = crate::common::redirected_room(&group);
    assert_ne!(group, direct);
    let again = app
        .post_form("/dm", Some(&carol.cookie), &[("to", "bob ann")])
        .await;
    assert_eq!(
        crate::common::redirected_room(&again),
        group,
        "one per set of people"
    );

    assert_eq!(
        app.post_message(&ann, direct, "just us").await.status(),
        201
    );
    assert_all_not_found(&doors(&app, &carol, direct, 1).await);
    assert!(search_rooms(&app, &carol, "just").await.is_empty());
    assert_eq!(search_rooms(&app, &bob, "just").await, [direct]);
    let page = app
        .page(&format!("/chatrooms/{group}"), &carol.cookie)
        .await;
    assert!(page.contains("@ ann, bob"), "carol sees the others' names");
    let sidebar = app.page(&format!("/chatrooms/{direct}"), &bob.cookie).await;
    assert!(sidebar.contains("id=\"direct-list\""));

    let count = |n: usize| {
        (0..n)
            .map(|i| format!("p{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    for i in 0..8 {
        app.sign_up(&format!("p{i}")).await;
    }
    let too_many = app
        .post_form("/dm", Some(&ann.cookie), &[("to", &count(8))])
        .await;
    assert_eq!(too_many.status(), 422, "ann and eight others are nine");
    let most = app
        .post_form("/dm", Some(&ann.cookie), &[("to", &count(7))])
        .await;
    assert_eq!(most.status(), 303, "ann and seven others are eight");
    let unknown = app
        .post_form("/dm", Some(&ann.cookie), &[("to", "bob, nobody")])
        .await;
    assert_eq!(unknown.status(), 422);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("Nobody is called nobody")
    );
}

#[tokio::test]
async fn nickname_suggestions_answer_prefixes_and_nothing_else() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    app.sign_up("bob").await;
    let bobby = app.sign_up("bobby").await;
    for nickname in ["b_b", "bxb"] {
        app.sign_up(nickname).await;
    }
    let suggest = |prefix: String| {
        let app = &app;
        let ann = &ann;
        async move {
            let response = app
                .request_json(
                    ann,
                    reqwest::Method::GET,
                    &format!("/users?prefix={prefix}"),
                    None,
                )
                .await;
            assert_eq!(response.status(), 200);
            let found: Vec<Value> = response.json().await.unwrap();
            found
                .iter()
                .map(|f| f["nickname"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(suggest("BO".into()).await, ["bob", "bobby"]);
    assert_eq!(suggest("b_".into()).await, ["b_b"], "_ is not a wildcard");
    assert!(suggest("%".into()).await.is_empty());
    let signed_out = app.get("/users?prefix=bo", None).await;
    assert_ne!(signed_out.status(), 200);

    // In a room, its members come first.
    let room = app.create_private_room(&bobby, "bobbys").await;
    assert_eq!(app.invite(&bobby, room, "ann").await.status(), 303);
    assert_eq!(suggest(format!("bo&room={room}")).await, ["bobby", "bob"]);
    // A room one may not read orders nothing.
    let carol = app.sign_up("carol").await;
    let theirs = app.create_private_room(&carol, "carols").await;
    app.post_message(&carol, theirs, "just me").await;
    assert_eq!(app.invite(&carol, theirs, "bob").await.status(), 303);
    assert_eq!(
        suggest(format!("b&room={theirs}")).await,
        ["b_b", "bob", "bobby", "bxb"]
    );
}

/// The badge of `room` in `user`'s sidebar (on the directory page) whose
/// label ends in `what` ("unread", "mention", "mentions"), 0 for none.
pub async fn sidebar_count(app: &TestApp, user: &TestUser, room: i64, what: &[&str]) -> i64 {
    let page = app.page("/chatrooms", &user.cookie).await;
    let item = page
        .split("<li ")
        .find(|item| item.starts_with(&format!("data-room-id=\"{room}\"")))
        .and_then(|item| item.split("</li>").next())
        .unwrap_or_else(|| panic!("room {room} is not in the sidebar"));
    item.split("aria-label=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter_map(|label| label.split_once(' '))
        .find(|(_, kind)| what.contains(kind))
        .map_or(0, |(count, _)| count.parse().unwrap())
}

/// The unread badge of `room` in `user`'s sidebar, 0 for none.
pub async fn badge(app: &TestApp, user: &TestUser, room: i64) -> i64 {
    sidebar_count(app, user, room, &["unread"]).await
}

/// Moves `user`'s read cursor in `room` to `seq`; the answer.
pub async fn mark_read(app: &TestApp, user: &TestUser, room: i64, seq: i64) -> reqwest::Response {
    app.request_json(
        user,
        reqwest::Method::POST,
        &format!("/chatrooms/{room}/read"),
        Some(json!({ "seq": seq })),
    )
    .await
}

#[tokio::test]
async fn unread_counts_come_from_the_read_cursor_and_reach_every_device() {
    let app = TestApp::spawn_with(&["--message-rate", "0"]).await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let general = app.general_room(&ann).await;
    let (mut phone, rooms) = app.follow_rooms(&bob).await;

    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        let posted: Value = app
            .post_message(&ann, general, text)
            .await
            .json()
            .await
            .unwrap();
        ids.push(posted["id"].as_i64().unwrap());
    }
    assert_eq!(badge(&app, &bob, general).await, 3);
    assert_eq!(
        badge(&app, &ann, general).await,
        0,
        "her own messages are read"
    );
    let page = app
        .page(&format!("/chatrooms/{general}"), &bob.cookie)
        .await;
    let divider = page.find("id=\"new-divider\"").expect("a New line");
    assert!(
        divider < page.find(">one<").unwrap(),
        "above the first unread message"
    );

    // An edit adds nothing; a deleted message is no longer unread.
    assert_eq!(
        app.edit_message(&ann, general, ids[0], "one!")
            .await
            .status(),
        200
    );
    assert_eq!(
        app.delete_message(&ann, general, ids[1]).await.status(),
        200
    );
    assert_eq!(badge(&app, &bob, general).await, 2);

    // Reading on one device clears it on the others, live.
    let answer = mark_read(&app, &bob, general, 1_000_000).await;
    assert_eq!(answer.status(), 200);
    let cursor: Value = answer.json().await.unwrap();
    let last_seq: i64 = sqlx::query_scalar("SELECT last_seq FROM chatrooms WHERE id = $1")
        .bind(general)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(
        cursor["last_read_seq"], last_seq,
        "never past the room's end"
    );
    assert_eq!(
        next_but_activity(&mut phone, &rooms).await,
        json!({ "type": "read", "id": general, "seq": last_seq })
    );
    assert_eq!(badge(&app, &bob, general).await, 0);
    let back: Value = mark_read(&app, &bob, general, 1)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(back["last_read_seq"], last_seq, "never moved back");
    phone.expect_silence(QUIET).await;

    // Posting reads what came before it.
    app.post_message(&ann, general, "four").await;
    assert_eq!(badge(&app, &bob, general).await, 1);
    app.post_message(&bob, general, "reading you").await;
    assert_eq!(badge(&app, &bob, general).await, 0);
}

#[tokio::test]
async fn a_non_member_has_no_cursor_to_move() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let carol = app.sign_up("carol").await;
    let (room, _) = anns_secret_room(&app, &ann).await;
    assert_eq!(mark_read(&app, &carol, room, 1).await.status(), 404);
    let public = app.create_room(&ann, "open").await;
    assert_eq!(
        mark_read(&app, &carol, public, 1).await.status(),
        404,
        "reading a public room one has not joined moves nothing"
    );
    let direct = app.open_direct(&ann, "carol").await;
    app.post_message(&ann, direct, "psst").await;
    assert_eq!(
        badge(&app, &carol, direct).await,
        1,
        "a conversation counts too"
    );
}

#[tokio::test]
async fn new_messages_reach_every_member_page_as_activity_and_nobody_elses() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let carol = app.sign_up("carol").await;
    let general = app.general_room(&ann).await;
    let (room, _) = anns_secret_room(&app, &ann).await;
    let (mut anns, _) = app.follow_rooms(&ann).await;
    let (mut bobs, bob_stream) = app.follow_rooms(&bob).await;
    let (mut carols, carol_stream) = app.follow_rooms(&carol).await;

    let posted: Value = app
        .post_message(&ann, general, "hello all")
        .await
        .json()
        .await
        .unwrap();
    let activity =
        json!({ "type": "activity", "id": general, "seq": posted["seq"], "mention": false });
    assert_eq!(bobs.next_message(&bob_stream).await, activity);
    assert_eq!(carols.next_message(&carol_stream).await, activity);
    anns.expect_silence(QUIET).await;

    // A private room's news reaches its members only, from the invitation on.
    app.post_message(&ann, room, "secret 1").await;
    assert_eq!(app.invite(&ann, room, "bob").await.status(), 303);
    assert_eq!(bobs.next_message(&bob_stream).await["type"], "room");
    let posted: Value = app
        .post_message(&ann, room, "secret 2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        bobs.next_message(&bob_stream).await,
        json!({ "type": "activity", "id": room, "seq": posted["seq"], "mention": false })
    );
    carols.expect_silence(QUIET).await;

    let bob_id = app.user_id("bob").await;
    assert_eq!(app.remove_member(&ann, room, bob_id).await.status(), 303);
    assert_eq!(bobs.next_message(&bob_stream).await["type"], "room_removed");
    app.post_message(&ann, room, "secret 3").await;
    bobs.expect_silence(QUIET).await;
    assert_eq!(app.metric("hearth_activity_users").await, 3.0);
    assert_eq!(
        app.metric("hearth_activity_rooms").await,
        2.0,
        "general and the room"
    );
    drop((anns, bobs, carols));
    app.wait_for_metric("hearth_activity_users", 0.0).await;
    app.wait_for_metric("hearth_activity_rooms", 0.0).await;
}

#[tokio::test]
async fn a_page_showing_the_room_hears_its_message_once_and_not_as_activity() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let general = app.general_room(&ann).await;
    let other = app.create_room(&ann, "other").await;
    app.post_message(&bob, other, "bob is in").await;

    // Bob's room page: the room list and #general on one connection.
    let (mut page, rooms) = app.follow_rooms(&bob).await;
    let room = room_identifier(general);
    let answer = page.subscribe_raw(&room).await;
    assert_eq!(answer["type"], "confirm_subscription", "{answer}");
    // His other tab shows only the room list (say, the directory).
    let (mut tab, tab_rooms) = app.follow_rooms(&bob).await;

    let posted: Value = app
        .post_message(&ann, general, "hello @bob")
        .await
        .json()
        .await
        .unwrap();
    let frame = page.next_frame().await;
    assert_eq!(frame["identifier"], room, "{frame}");
    assert_eq!(frame["message"]["seq"], posted["seq"]);
    assert_eq!(
        tab.next_message(&tab_rooms).await,
        json!({ "type": "activity", "id": general, "seq": posted["seq"], "mention": true }),
        "the tab not showing the room is told"
    );
    page.expect_silence(QUIET).await;

    // News of another room still reaches the page that shows #general.
    let posted: Value = app
        .post_message(&ann, other, "over here")
        .await
        .json()
        .await
        .unwrap();
    let activity =
        json!({ "type": "activity", "id": other, "seq": posted["seq"], "mention": false });
    assert_eq!(page.next_message(&rooms).await, activity);
    assert_eq!(tab.next_message(&tab_rooms).await, activity);
}
