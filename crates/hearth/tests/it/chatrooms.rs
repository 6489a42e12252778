//! Listing, creating and showing rooms.

use crate::common::TestApp;
use reqwest::header::RETRY_AFTER;
use serde_json::Value;

#[tokio::test]
async fn the_first_start_creates_general_and_home_lands_there() {
    let (app, ann, general) = TestApp::with_ann_in_general(&[]).await;
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

/// The room links inside the element that opens with `marker`.
fn links_in(page: &str, marker: &str) -> Vec<i64> {
    let start = page
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in the page"));
    let list = &page[start..];
    let list = &list[..list.find("</ul>").expect("the list ends")];
    list.split(r#"href="/chatrooms/"#)
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].parse().unwrap())
        .collect()
}

#[tokio::test]
async fn with_200_rooms_the_sidebar_is_bounded_and_the_directory_pages_through_all() {
    let (app, ann, general) = TestApp::with_ann_in_general(&["--room-create-rate", "0"]).await;
    let mut created = vec![general];
    for i in 0..199 {
        created.push(app.create_room(&ann, &format!("room-{i:03}")).await);
    }
    let page = app
        .page(&format!("/chatrooms/{general}"), &ann.cookie)
        .await;
    let sidebar = links_in(&page, r#"<ul class="rooms" id="room-list">"#);
    assert!(
        sidebar.len() <= 51,
        "{} rooms in the sidebar",
        sidebar.len()
    );
    assert!(
        sidebar.contains(&general),
        "the current room is always listed"
    );

    let mut seen = Vec::new();
    let mut path = "/chatrooms".to_owned();
    for _ in 0..10 {
        let page = app.page(&path, &ann.cookie).await;
        let listed = links_in(&page, r#"<ul class="directory">"#);
        assert!(listed.len() <= 50, "{} rooms on {path}", listed.len());
        seen.extend(listed);
        let Some(next) = page.split(r#"<a rel="next" href=""#).nth(1) else {
            break;
        };
        path = next[..next.find('"').unwrap()].replace("&amp;", "&");
    }
    let mut sorted = seen.clone();
    sorted.sort();
    created.sort();
    assert_eq!(sorted, created, "every room exactly once");
    let last = app.page(&path, &ann.cookie).await;
    assert!(last.contains(r#"rel="prev""#), "the last page links back");
}

#[tokio::test]
async fn room_creation_is_rate_limited_per_user() {
    let app = TestApp::spawn_with(&["--room-create-rate", "2"]).await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    app.create_room(&ann, "one").await;
    app.create_room(&ann, "two").await;
    let page = app
        .post_form("/chatrooms", Some(&ann.cookie), &[("name", "three")])
        .await;
    assert_eq!(page.status(), 429);
    assert!(page.headers().contains_key(RETRY_AFTER));
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("creating rooms too fast")
    );
    let json = app
        .try_post_json("/chatrooms", &ann, &[("name", "four")])
        .await
        .unwrap();
    assert_eq!(json.status(), 429);
    let retry: u64 = json.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let body: Value = json.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert!(body["retry_after"].as_f64().unwrap() > 0.0);
    app.create_room(&bob, "bobs").await;
    assert_eq!(app.count("chatrooms").await, 4, "general, one, two, bobs");
}

#[tokio::test]
async fn room_names_are_normalised_refuse_invisible_characters_and_fold_case_fully() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let street = app.create_room(&ann, "Straße").await;
    let cafe = app.create_room(&ann, "cafe\u{301}").await;
    let page = app.page(&format!("/chatrooms/{cafe}"), &ann.cookie).await;
    assert!(page.contains("# caf\u{e9}"), "stored as NFC");
    for (name, error) in [
        ("STRASSE", "already exists"),
        ("CAFÉ", "already exists"),
        ("gen\u{200B}eral", "invisible characters"),
        ("abc\u{202E}fed", "invisible characters"),
        ("tab\there", "control characters"),
    ] {
        let response = app
            .post_form("/chatrooms", Some(&ann.cookie), &[("name", name)])
            .await;
        assert_eq!(response.status(), 422, "{name:?}");
        assert!(response.text().await.unwrap().contains(error), "{name:?}");
    }
    let json = app
        .try_post_json("/chatrooms", &ann, &[("name", "strasse")])
        .await
        .unwrap();
    assert_eq!(json.status(), 422);
    let body: Value = json.json().await.unwrap();
    assert_eq!(body["error"], "invalid");
    assert_eq!(body["messages"][0], "A room with that name already exists");
    assert_eq!(app.count("chatrooms").await, 3);
    assert!(street > 0);
}

#[tokio::test]
async fn a_missing_room_answers_json_to_a_json_client() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    for path in ["/chatrooms/999", "/chatrooms/999/messages", "/nowhere"] {
        let response = app
            .try_post_json(path, &ann, &[("content", "hi")])
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

#[tokio::test]
async fn rooms_stored_before_the_folded_key_get_one_at_start_and_keep_working() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    // As migration 0002 leaves rows written before it: no key yet, and two
    // names that only full case folding tells apart.
    sqlx::query("UPDATE chatrooms SET name_key = NULL")
        .execute(&app.db)
        .await
        .unwrap();
    for name in ["Straße", "STRASSE"] {
        sqlx::query("INSERT INTO chatrooms (name, created_at) VALUES ($1, 0)")
            .bind(name)
            .execute(&app.db)
            .await
            .unwrap();
    }
    hearth::db::chatrooms::backfill_name_keys(&app.db)
        .await
        .unwrap();
    let keys: Vec<String> = sqlx::query_scalar("SELECT name_key FROM chatrooms ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(keys[0], "general");
    assert_eq!(keys[1], "strasse");
    assert!(
        keys[2].starts_with("strasse#"),
        "the later look-alike stays, keyed by its id: {keys:?}"
    );
    let taken = app
        .post_form("/chatrooms", Some(&ann.cookie), &[("name", "GENERAL")])
        .await;
    assert_eq!(taken.status(), 422, "the backfilled key guards uniqueness");
    app.create_room(&ann, "fresh").await;
}
