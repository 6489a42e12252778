//! Message formats: a room subscription says how much of each message it
//! takes (`"format"`: `full`, `html` or `json`), and gets that in the
//! broadcast, in `catch_up`, in the extended protocol's history, and in
//! the JSON history pages that ask with `?format=`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, TestUser};

/// The keys of a payload, sorted.
fn keys(message: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = message
        .as_object()
        .unwrap_or_else(|| panic!("{message} is not an object"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

const FULL: &[&str] = &[
    "chatroom_id",
    "content",
    "created_at",
    "html",
    "id",
    "nickname",
    "seq",
    "type",
    "user_id",
];
const HTML: &[&str] = &["html", "id", "seq", "type", "user_id"];
const JSON: &[&str] = &[
    "chatroom_id",
    "content",
    "created_at",
    "id",
    "nickname",
    "seq",
    "type",
    "user_id",
];

fn identifier(room: i64, format: &str) -> String {
    json!({ "channel": "ChatroomChannel", "id": room, "format": format }).to_string()
}

async fn subscribed(
    app: &TestApp,
    user: &TestUser,
    identifier: &str,
) -> crate::common::CableClient {
    let mut cable = app.connect_cable(Some(&user.cookie)).await;
    cable.expect_welcome().await;
    let answer = cable.subscribe_raw(identifier).await;
    assert_eq!(answer["type"], "confirm_subscription", "{answer}");
    cable
}

#[tokio::test]
async fn each_subscription_gets_the_format_it_asked_for_live_and_in_catch_up() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let room = app.general_room(&ann).await;
    let full = crate::common::room_identifier(room);
    let named_full = identifier(room, "full");
    let html = identifier(room, "html");
    let json_only = identifier(room, "json");
    let mut cables = Vec::new();
    for id in [&full, &named_full, &html, &json_only] {
        cables.push((id, subscribed(&app, &ann, id).await));
    }

    // Spoken with a client id, so the speaker's pending copy can be
    // matched in every format.
    cables[2]
        .1
        .perform(
            &html,
            json!({ "action": "speak", "content": "**hello** there", "client_id": "c-1" }),
        )
        .await;
    let mut seen = Vec::new();
    for (id, cable) in &mut cables {
        let message = cable.next_message(id).await;
        assert_eq!(message["client_id"], "c-1", "{message}");
        let mut without_client = message.clone();
        without_client.as_object_mut().unwrap().remove("client_id");
        seen.push(without_client);
    }
    assert_eq!(keys(&seen[0]), FULL);
    assert_eq!(seen[0], seen[1], "\"full\" is the default");
    assert_eq!(keys(&seen[2]), HTML);
    assert_eq!(keys(&seen[3]), JSON);
    // Every format says the same of the same message.
    for key in ["id", "seq", "user_id", "type"] {
        for message in &seen {
            assert_eq!(message[key], seen[0][key], "{key}");
        }
    }
    assert_eq!(seen[2]["html"], seen[0]["html"]);
    assert!(
        seen[2]["html"]
            .as_str()
            .unwrap()
            .contains("<strong>hello</strong>")
    );
    assert_eq!(seen[3]["content"], "**hello** there");
    // The html format is the smaller frame the page takes.
    assert!(seen[2].to_string().len() < seen[0].to_string().len());

    // An edit and a catch-up: in the subscription's own format.
    let id = seen[0]["id"].as_i64().unwrap();
    let edited = app.edit_message(&ann, room, id, "**hello** again").await;
    assert_eq!(edited.status(), 200);
    for (index, (identifier, cable)) in cables.iter_mut().enumerate() {
        let edit = cable.next_message(identifier).await;
        assert_eq!(edit["type"], "message_edited");
        assert!(edit["edited_at"].is_string(), "{edit}");
        assert_eq!(edit["message_seq"], seen[0]["seq"]);
        assert_eq!(edit.get("html").is_some(), index != 3, "{edit}");
        assert_eq!(edit.get("content").is_some(), index != 2, "{edit}");

        cable.catch_up(identifier, 0).await;
        let replayed = cable.next_message(identifier).await;
        assert_eq!(replayed["id"], id);
        assert_eq!(replayed.get("html").is_some(), index != 3, "{replayed}");
        assert_eq!(replayed.get("content").is_some(), index != 2, "{replayed}");
        assert_eq!(replayed.get("nickname").is_some(), index != 2, "{replayed}");
        let _edit_again = cable.next_message(identifier).await;
        let caught_up = cable.next_message(identifier).await;
        assert_eq!(caught_up["type"], "caught_up", "{caught_up}");
    }

    // A deletion reads the same in every format.
    app.delete_message(&ann, room, id).await;
    let mut deletions = Vec::new();
    for (identifier, cable) in &mut cables {
        deletions.push(cable.next_message(identifier).await);
    }
    assert_eq!(deletions[0]["type"], "message_deleted");
    assert!(
        deletions.iter().all(|d| *d == deletions[0]),
        "{deletions:?}"
    );
}

#[tokio::test]
async fn an_unknown_format_is_refused_and_the_connection_goes_on() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let room = app.general_room(&ann).await;
    let mut cable = app.connect_cable(Some(&ann.cookie)).await;
    cable.expect_welcome().await;
    for format in [json!("xml"), json!(1), json!(null), json!("HTML")] {
        let identifier =
            json!({ "channel": "ChatroomChannel", "id": room, "format": format }).to_string();
        let answer = cable.subscribe_raw(&identifier).await;
        assert_eq!(answer["type"], "reject_subscription", "{format}: {answer}");
    }
    let html = identifier(room, "html");
    assert_eq!(
        cable.subscribe_raw(&html).await["type"],
        "confirm_subscription"
    );
    app.post_message(&ann, room, "still here").await;
    let message = cable.next_message(&html).await;
    assert_eq!(keys(&message), HTML);
}

#[tokio::test]
async fn a_format_does_not_open_a_private_room() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let mallory = app.sign_up("mallory").await;
    let room = app.create_private_room(&ann, "secret").await;
    let mut cable = app.connect_cable(Some(&mallory.cookie)).await;
    cable.expect_welcome().await;
    for format in ["full", "html", "json"] {
        let answer = cable.subscribe_raw(&identifier(room, format)).await;
        assert_eq!(answer["type"], "reject_subscription", "{format}: {answer}");
    }
    let page = app
        .request_json(
            &mallory,
            Method::GET,
            &format!("/chatrooms/{room}/messages?format=html"),
            None,
        )
        .await;
    assert_eq!(page.status(), 404);
}

#[tokio::test]
async fn history_pages_come_in_the_format_asked_for() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let room = app.general_room(&ann).await;
    app.post_message(&ann, room, "one").await;
    app.post_message(&ann, room, "two").await;
    let page = |format: &'static str| {
        let (app, ann) = (&app, &ann);
        async move {
            let path = match format {
                "" => format!("/chatrooms/{room}/messages"),
                format => format!("/chatrooms/{room}/messages?format={format}"),
            };
            let response = app.request_json(ann, Method::GET, &path, None).await;
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, default) = page("").await;
    assert_eq!(status, 200);
    let (_, full) = page("full").await;
    let (_, html) = page("html").await;
    let (_, json_only) = page("json").await;
    assert_eq!(default, full);
    for (body, expected) in [(&full, FULL), (&html, HTML), (&json_only, JSON)] {
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2);
        for message in messages {
            assert_eq!(keys(message), expected, "{message}");
        }
    }
    let (status, refused) = page("xml").await;
    assert_eq!(status, 422, "{refused}");
}

#[tokio::test]
async fn extended_history_replays_in_the_subscriptions_format() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let room = app.general_room(&ann).await;
    app.post_message(&ann, room, "before").await;
    let mut cable = app.connect_extended(&ann.cookie, None).await;
    let welcome = cable.next_frame().await;
    assert_eq!(welcome["type"], "welcome");
    let html = identifier(room, "html");
    assert_eq!(
        cable.subscribe_raw(&html).await["type"],
        "confirm_subscription"
    );
    cable
        .send_json(json!({
            "command": "history",
            "identifier": html,
            "history": { "since": 0 },
        }))
        .await;
    let replayed = cable.next_frame().await;
    assert_eq!(replayed["identifier"], html, "{replayed}");
    assert_eq!(replayed["message"]["type"], "message");
    assert_eq!(keys(&replayed["message"]), HTML);
}
