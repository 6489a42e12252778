//! Editing and deleting one's own messages: `PATCH`/`DELETE` on
//! `/chatrooms/{id}/messages/{message_id}` (and the same as form posts with
//! `_method`), the live `message_edited`/`message_deleted` payloads, and the
//! room's sequence staying gap-free through `catch_up`.

use reqwest::header::ACCEPT;
use serde_json::Value;

use crate::common::{CableClient, TestApp, TestUser};

async fn edit(
    app: &TestApp,
    user: &TestUser,
    room: i64,
    id: i64,
    content: &str,
) -> reqwest::Response {
    app.edit_message(user, room, id, content).await
}

async fn delete(app: &TestApp, user: &TestUser, room: i64, id: i64) -> reqwest::Response {
    app.delete_message(user, room, id).await
}

/// Posts `content` as `user`; the stored message's payload.
async fn post(app: &TestApp, user: &TestUser, room: i64, content: &str) -> Value {
    let response = app.post_message(user, room, content).await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// The newest page of the room's history as JSON.
async fn history(app: &TestApp, user: &TestUser, room: i64) -> Value {
    let response = app
        .client()
        .get(app.url(&format!("/chatrooms/{room}/messages")))
        .header("cookie", &user.cookie)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn contents(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

/// Replays the room after `after`: the frames up to and without `caught_up`.
async fn catch_up(cable: &mut CableClient, identifier: &str, after: i64) -> (Vec<Value>, Value) {
    cable.catch_up(identifier, after).await;
    let mut replayed = Vec::new();
    loop {
        let message = cable.next_message(identifier).await;
        if message["type"] == "caught_up" {
            return (replayed, message);
        }
        replayed.push(message);
    }
}

#[tokio::test]
async fn an_edit_reaches_every_subscriber_at_the_rooms_next_seq_and_shows_as_edited() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let bob = app.sign_up("bob").await;
    let (mut watcher, identifier) = app.join(&bob, room).await;
    let posted = post(&app, &ann, room, "teh plan").await;
    assert_eq!(watcher.next_message(&identifier).await["seq"], 1);
    let id = posted["id"].as_i64().unwrap();

    let response = edit(&app, &ann, room, id, "the **plan**").await;
    assert_eq!(response.status(), 200);
    let edited: Value = response.json().await.unwrap();
    assert_eq!(edited["type"], "message_edited");
    assert_eq!(edited["id"], id);
    assert_eq!(edited["seq"], 2, "the edit takes the room's next seq");
    assert_eq!(edited["message_seq"], 1, "the message keeps its place");
    assert_eq!(edited["content"], "the **plan**");
    assert!(edited["edited_at"].is_string());
    assert!(
        edited["html"]
            .as_str()
            .unwrap()
            .contains("<strong>plan</strong>")
    );
    assert!(edited["html"].as_str().unwrap().contains("(edited)"));

    let live = watcher.next_message(&identifier).await;
    assert_eq!(live, edited, "subscribers get the same payload");

    let page = history(&app, &bob, room).await;
    assert_eq!(contents(&page), ["the **plan**"]);
    assert_eq!(page["messages"][0]["seq"], 1);
    assert_eq!(page["last_seq"], 2);
    let html = app.page(&format!("/chatrooms/{room}"), &bob.cookie).await;
    assert!(html.contains("(edited)") && !html.contains("teh plan"));
    assert!(html.contains(r#"data-last-seq="2""#));

    // The next post comes after the edit in the room's sequence.
    assert_eq!(post(&app, &ann, room, "next").await["seq"], 3);
}

#[tokio::test]
async fn a_deleted_message_is_gone_for_everyone_and_its_text_is_erased() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let bob = app.sign_up("bob").await;
    let (mut watcher, identifier) = app.join(&bob, room).await;
    let id = post(&app, &ann, room, "my secret token").await["id"]
        .as_i64()
        .unwrap();
    post(&app, &ann, room, "still here").await;
    watcher.next_message(&identifier).await;
    watcher.next_message(&identifier).await;

    let response = delete(&app, &ann, room, id).await;
    assert_eq!(response.status(), 200);
    let deleted: Value = response.json().await.unwrap();
    assert_eq!(deleted["type"], "message_deleted");
    assert_eq!(
        (deleted["id"].as_i64(), deleted["seq"].as_i64()),
        (Some(id), Some(3))
    );
    assert_eq!(deleted["message_seq"], 1);
    assert!(deleted.get("content").is_none() && deleted.get("html").is_none());
    assert_eq!(watcher.next_message(&identifier).await, deleted);

    assert_eq!(contents(&history(&app, &bob, room).await), ["still here"]);
    let html = app.page(&format!("/chatrooms/{room}"), &bob.cookie).await;
    assert!(!html.contains("my secret token"));
    let erased: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE content LIKE '%secret%'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(erased, 0, "the text is not kept in the database");

    // Gone is gone: no second deletion, no edit.
    assert_eq!(delete(&app, &ann, room, id).await.status(), 404);
    assert_eq!(edit(&app, &ann, room, id, "back").await.status(), 404);
}

#[tokio::test]
async fn only_the_author_may_edit_or_delete_a_message() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let mallory = app.sign_up("mallory").await;
    let (mut watcher, identifier) = app.join(&ann, room).await;
    let id = post(&app, &ann, room, "ann's words").await["id"]
        .as_i64()
        .unwrap();
    watcher.next_message(&identifier).await;

    let response = edit(&app, &mallory, room, id, "mallory's words").await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
    assert_eq!(delete(&app, &mallory, room, id).await.status(), 403);
    let form = app
        .client()
        .get(app.url(&format!("/chatrooms/{room}/messages/{id}/edit")))
        .header("cookie", &mallory.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 403);

    // Nothing changed, nothing was broadcast: the next frame is the next post.
    assert_eq!(contents(&history(&app, &ann, room).await), ["ann's words"]);
    post(&app, &ann, room, "after").await;
    let next = watcher.next_message(&identifier).await;
    assert_eq!(
        (next["type"].as_str(), next["seq"].as_i64()),
        (Some("message"), Some(2))
    );
}

#[tokio::test]
async fn edits_and_deletions_answer_404_401_and_422_where_they_should() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let other = app.create_room(&ann, "other").await;
    let id = post(&app, &ann, room, "hello").await["id"]
        .as_i64()
        .unwrap();

    assert_eq!(edit(&app, &ann, room, 999_999, "x").await.status(), 404);
    assert_eq!(
        edit(&app, &ann, other, id, "x").await.status(),
        404,
        "another room's message"
    );
    assert_eq!(edit(&app, &ann, 999_999, id, "x").await.status(), 404);
    for bad in ["0", "-1", "abc", "1e3"] {
        let path = format!("/chatrooms/{room}/messages/{bad}");
        let response = app
            .request_json(&ann, reqwest::Method::DELETE, &path, None)
            .await;
        assert_eq!(response.status(), 404, "{bad}");
    }

    let empty = edit(&app, &ann, room, id, "   ").await;
    assert_eq!(empty.status(), 422);
    let too_long = edit(&app, &ann, room, id, &"x".repeat(4001)).await;
    assert_eq!(too_long.status(), 422);
    let body: Value = too_long.json().await.unwrap();
    assert_eq!(body["error"], "invalid_content");

    // Signed out: sent to sign in, nothing changed.
    let signed_out = app
        .client()
        .delete(app.url(&format!("/chatrooms/{room}/messages/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 303);
    assert!(
        signed_out.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/sign_in")
    );
    assert_eq!(contents(&history(&app, &ann, room).await), ["hello"]);
}

#[tokio::test]
async fn an_edit_that_changes_nothing_takes_no_seq() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let id = post(&app, &ann, room, "same").await["id"].as_i64().unwrap();
    let response = edit(&app, &ann, room, id, "  same ").await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        (answer["type"].as_str(), answer["seq"].as_i64()),
        (Some("message"), Some(1))
    );
    assert!(answer.get("edited_at").is_none());
    assert_eq!(post(&app, &ann, room, "next").await["seq"], 2);
}

#[tokio::test]
async fn catch_up_replays_posts_edits_and_deletions_in_one_sequence_without_gaps() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let carol = app.sign_up("carol").await;
    let first = post(&app, &ann, room, "one").await["id"].as_i64().unwrap();
    let second = post(&app, &ann, room, "two").await["id"].as_i64().unwrap();
    post(&app, &ann, room, "three").await;
    assert_eq!(
        edit(&app, &ann, room, first, "one, edited").await.status(),
        200
    ); // seq 4
    assert_eq!(delete(&app, &ann, room, second).await.status(), 200); // seq 5
    post(&app, &ann, room, "six").await;

    let (mut cable, identifier) = app.join(&carol, room).await;
    let (replayed, caught_up) = catch_up(&mut cable, &identifier, 0).await;
    let seqs: Vec<i64> = replayed
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        [1, 2, 3, 4, 5, 6],
        "every place of the sequence, once"
    );
    let kinds = crate::common::payload_types(&replayed);
    assert_eq!(
        kinds,
        [
            "message",
            "message_deleted",
            "message",
            "message_edited",
            "message_deleted",
            "message"
        ]
    );
    // Each replayed place shows the message as it is now.
    assert_eq!(replayed[0]["content"], "one, edited");
    assert!(replayed[0]["edited_at"].is_string());
    assert_eq!(
        (
            replayed[1]["id"].as_i64(),
            replayed[1]["message_seq"].as_i64()
        ),
        (Some(second), Some(2))
    );
    assert!(
        replayed[1].get("content").is_none(),
        "a deleted message's text is not replayed"
    );
    assert_eq!(replayed[3]["message_seq"], 1);
    assert_eq!(caught_up["last_seq"], 6);

    // From the middle: only what came after.
    let (replayed, _) = catch_up(&mut cable, &identifier, 3).await;
    let seqs: Vec<i64> = replayed
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [4, 5, 6]);
}

#[tokio::test]
async fn forms_edit_and_delete_without_javascript() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let posted = post(&app, &ann, room, "draft <one>").await;
    let (id, seq) = (
        posted["id"].as_i64().unwrap(),
        posted["seq"].as_i64().unwrap(),
    );

    let form = app
        .page(
            &format!("/chatrooms/{room}/messages/{id}/edit"),
            &ann.cookie,
        )
        .await;
    assert!(form.contains("draft &#60;one&#62;</textarea>"), "{form}");
    assert!(form.contains(r#"name="_method" value="patch""#));
    let permalink = app
        .page(&format!("/chatrooms/{room}?around={seq}"), &ann.cookie)
        .await;
    assert!(permalink.contains(&format!("/chatrooms/{room}/messages/{id}/edit")));
    let bob = app.sign_up("bob").await;
    let theirs = app
        .page(&format!("/chatrooms/{room}?around={seq}"), &bob.cookie)
        .await;
    assert!(
        !theirs.contains("/edit\""),
        "someone else's message offers no edit link"
    );

    let path = format!("/chatrooms/{room}/messages/{id}");
    let refused = app
        .post_form(
            &path,
            Some(&ann.cookie),
            &[("_method", "patch"), ("content", " ")],
        )
        .await;
    assert_eq!(refused.status(), 422);
    let page = refused.text().await.unwrap();
    assert!(page.contains("Message can&#39;t be empty"), "{page}");
    assert!(
        page.contains(r#"name="_method" value="patch""#),
        "the edit form again"
    );

    let saved = app
        .post_form(
            &path,
            Some(&ann.cookie),
            &[("_method", "patch"), ("content", "final")],
        )
        .await;
    assert_eq!(saved.status(), 303);
    assert_eq!(
        saved.headers()["location"],
        format!("/chatrooms/{room}?around={seq}#message_{id}").as_str()
    );
    assert_eq!(contents(&history(&app, &ann, room).await), ["final"]);

    let unknown = app
        .post_form(&path, Some(&ann.cookie), &[("_method", "put-it-back")])
        .await;
    assert_eq!(unknown.status(), 422);

    let gone = app
        .post_form(&path, Some(&ann.cookie), &[("_method", "delete")])
        .await;
    assert_eq!(gone.status(), 303);
    assert_eq!(
        gone.headers()["location"],
        format!("/chatrooms/{room}").as_str()
    );
    assert!(contents(&history(&app, &ann, room).await).is_empty());
}

#[tokio::test]
async fn edits_count_against_the_message_rate() {
    let (app, ann, room) = TestApp::with_ann_in_general(&["--message-rate", "1"]).await;
    let id = post(&app, &ann, room, "0").await["id"].as_i64().unwrap();
    for n in 1..=20 {
        let response = edit(&app, &ann, room, id, &n.to_string()).await;
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
            return;
        }
        assert_eq!(response.status(), 200);
    }
    panic!("20 edits at once passed a rate of one a second");
}
