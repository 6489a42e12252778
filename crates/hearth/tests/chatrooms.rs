//! Listing, creating and showing rooms.

mod common;

use common::TestApp;
use reqwest::header::ACCEPT;
use serde_json::Value;

#[tokio::test]
async fn the_first_start_creates_general_and_home_lands_there() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let general = app.general_room(&ann).await;
    let page = app
        .page(&format!("/chatrooms/{general}"), &ann.cookie)
        .await;
    assert!(page.contains("# general"));
    assert!(page.contains(&format!(
        r#"<div id="messages" class="messages" data-chatroom-id="{general}""#
    )));
    assert_eq!(app.count("chatrooms").await, 1);
}

#[tokio::test]
async fn creating_a_room_redirects_to_it_and_lists_it() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let id = app.create_room(&ann, "  random  ").await;
    let page = app.page(&format!("/chatrooms/{id}"), &ann.cookie).await;
    assert!(page.contains("# random"));
    let list = app.page("/chatrooms", &ann.cookie).await;
    assert!(list.contains(&format!(r#"href="/chatrooms/{id}""#)));
}

#[tokio::test]
async fn bad_or_taken_room_names_get_422_and_nothing_is_created() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    for (name, error) in [
        ("", "1 to 64"),
        (&"x".repeat(65), "1 to 64"),
        ("General", "already exists"),
    ] {
        let response = app
            .post_form("/chatrooms", Some(&ann.cookie), &[("name", name)])
            .await;
        assert_eq!(response.status(), 422, "{name:?}");
        assert!(response.text().await.unwrap().contains(error), "{name:?}");
    }
    assert_eq!(app.count("chatrooms").await, 1);
}

#[tokio::test]
async fn a_missing_room_is_404() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    for path in [
        "/chatrooms/999",
        "/chatrooms/abc",
        "/chatrooms/-1",
        "/nowhere",
    ] {
        assert_eq!(
            app.get(path, Some(&ann.cookie)).await.status(),
            404,
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_missing_room_answers_json_to_a_json_client() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    for path in ["/chatrooms/999", "/chatrooms/999/messages", "/nowhere"] {
        let response = app
            .client()
            .post(app.url(path))
            .header("cookie", &ann.cookie)
            .header(ACCEPT, "application/json")
            .form(&[("content", "hi")])
            .send()
            .await
            .unwrap();
        let status = response.status();
        if path == "/chatrooms/999" {
            assert_eq!(status, 405, "{path}");
            continue;
        }
        assert_eq!(status, 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "not_found", "{path}");
    }
    let page = app.get("/chatrooms/999", Some(&ann.cookie)).await;
    assert_eq!(page.status(), 404);
    assert!(page.text().await.unwrap().contains("There is nothing here"));
}
