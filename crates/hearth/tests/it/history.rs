//! A room's history by `seq`: `GET /chatrooms/{id}/messages` as JSON and as
//! an HTML fragment, and the room page's `?before=`, `?after=`, `?around=`.

use std::collections::BTreeSet;

use reqwest::header::ACCEPT;
use serde_json::Value;

use crate::common::{TestApp, TestUser};

/// Asks for a page of history as JSON; the raw answer.
async fn ask_history(app: &TestApp, user: &TestUser, room: i64, query: &str) -> reqwest::Response {
    app.client()
        .get(app.url(&format!("/chatrooms/{room}/messages?{query}")))
        .header("cookie", &user.cookie)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap()
}

/// A page of history as JSON.
async fn json_page(app: &TestApp, user: &TestUser, room: i64, query: &str) -> Value {
    let response = ask_history(app, user, room, query).await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

fn seqs(page: &Value) -> Vec<i64> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

/// Speaks `count` numbered messages into the room, through the cable.
async fn seed(app: &TestApp, user: &TestUser, room: i64, count: usize) {
    let (mut cable, identifier) = app.join(user, room).await;
    cable.speak_many(&identifier, "history", count).await;
}

#[tokio::test]
async fn paging_ten_thousand_messages_both_ways_shows_each_exactly_once() {
    let (app, ann, room) = TestApp::with_ann_in_general(&["--message-rate", "0"]).await;
    let total = 10_000;
    seed(&app, &ann, room, total).await;

    // Up from the newest, 200 at a time.
    let mut seen = Vec::new();
    let mut page = json_page(&app, &ann, room, "limit=200").await;
    assert_eq!(page["more_after"], false);
    loop {
        let mut older = seqs(&page);
        older.extend(seen);
        seen = older;
        if page["more_before"] == false {
            break;
        }
        page = json_page(&app, &ann, room, &format!("before={}&limit=200", seen[0])).await;
        assert_eq!(page["more_after"], true);
    }
    assert_eq!(
        seen,
        (1..=total as i64).collect::<Vec<_>>(),
        "each once, in order, going up"
    );

    // Down from the oldest, 137 at a time (pages that do not divide evenly).
    let mut seen: Vec<i64> = Vec::new();
    let mut after = 0;
    loop {
        let page = json_page(&app, &ann, room, &format!("after={after}&limit=137")).await;
        assert_eq!(page["more_before"], after > 0);
        let page_seqs = seqs(&page);
        seen.extend(&page_seqs);
        if page["more_after"] == false {
            break;
        }
        after = *page_seqs.last().unwrap();
    }
    assert_eq!(
        seen,
        (1..=total as i64).collect::<Vec<_>>(),
        "each once, in order, going down"
    );
}

#[tokio::test]
async fn a_page_holds_the_broadcast_payloads_and_around_centres_on_its_message() {
    let (app, ann, room) = TestApp::with_ann_in_general(&["--message-rate", "0"]).await;
    let posted: Value = app
        .post_message(&ann, room, "the one with **stars**")
        .await
        .json()
        .await
        .unwrap();
    seed(&app, &ann, room, 100).await;

    let page = json_page(&app, &ann, room, "around=1&limit=10").await;
    assert_eq!(seqs(&page), (1..=10).collect::<Vec<_>>());
    assert_eq!(
        page["messages"][0], posted,
        "the same object a broadcast carries"
    );
    assert_eq!(
        (page["more_before"].as_bool(), page["more_after"].as_bool()),
        (Some(false), Some(true))
    );

    let middle = json_page(&app, &ann, room, "around=20&limit=10").await;
    assert_eq!(seqs(&middle), (15..=24).collect::<Vec<_>>());
    let newest = json_page(&app, &ann, room, "").await;
    assert_eq!(
        seqs(&newest),
        (52..=101).collect::<Vec<_>>(),
        "the newest 50 by default"
    );

    // The permalink opens the room page on that message, marked.
    let html = app
        .page(&format!("/chatrooms/{room}?around=60"), &ann.cookie)
        .await;
    let linked = html
        .find(r#"id="linked""#)
        .expect("the linked message is marked");
    let sixtieth = html.find(r#"data-seq="60""#).unwrap();
    assert!(
        linked < sixtieth && sixtieth - linked < 200,
        "the mark wraps message 60"
    );
    assert!(html.contains(&format!(r#"href="/chatrooms/{room}?before=35""#)));
    assert!(html.contains(&format!(r#"href="/chatrooms/{room}?after=84""#)));
    assert!(html.contains(r#"data-more-after="true""#));
}

#[tokio::test]
async fn without_javascript_older_messages_is_a_link_through_every_page() {
    let (app, ann, room) = TestApp::with_ann_in_general(&["--message-rate", "0"]).await;
    seed(&app, &ann, room, 120).await;

    let mut path = format!("/chatrooms/{room}");
    let mut shown = BTreeSet::new();
    loop {
        let html = app.page(&path, &ann.cookie).await;
        for piece in html.split(r#"data-seq=""#).skip(1) {
            let seq: i64 = piece.split('"').next().unwrap().parse().unwrap();
            assert!(shown.insert(seq), "message {seq} shown on two pages");
        }
        let Some(at) = html.find(r#"class="history-link older" href=""#) else {
            break;
        };
        let rest = &html[at + r#"class="history-link older" href=""#.len()..];
        path = rest.split('"').next().unwrap().to_owned();
    }
    assert_eq!(shown, (1..=120).collect());

    // The fragment form of the same endpoint.
    let fragment = app
        .get(
            &format!("/chatrooms/{room}/messages?before=51"),
            Some(&ann.cookie),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(fragment.contains(r#"data-seq="50""#) && fragment.contains(r#"data-seq="1""#));
    assert!(!fragment.contains("<html"), "a fragment, not a page");
    assert!(fragment.contains(r#"rel="next""#), "newer messages exist");
}

#[tokio::test]
async fn an_empty_room_says_so() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let room = app.create_room(&ann, "quiet").await;
    let html = app.page(&format!("/chatrooms/{room}"), &ann.cookie).await;
    assert!(html.contains("This is the very beginning of <strong>#&nbsp;quiet</strong>"));
    assert!(
        html.contains("invite someone"),
        "a public room offers to invite"
    );
    let secret = app.create_private_room(&ann, "secret").await;
    let html = app.page(&format!("/chatrooms/{secret}"), &ann.cookie).await;
    assert!(html.contains("Only its members can read it"));
    app.sign_up("bob").await;
    let direct = app.open_direct(&ann, "bob").await;
    let html = app.page(&format!("/chatrooms/{direct}"), &ann.cookie).await;
    assert!(html.contains("the very beginning of your conversation"));
    assert!(
        !html.contains("invite someone"),
        "nobody is invited to a conversation"
    );
    let page = json_page(&app, &ann, room, "before=1").await;
    assert_eq!(seqs(&page), Vec::<i64>::new());
    assert_eq!(
        (page["more_before"].as_bool(), page["more_after"].as_bool()),
        (Some(false), Some(false))
    );
}

#[tokio::test]
async fn bad_history_requests_get_a_clear_answer() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    for (query, status) in [
        ("before=5&after=1", 422),
        ("limit=0", 422),
        ("limit=201", 422),
        ("before=abc", 400),
    ] {
        let response = ask_history(&app, &ann, room, query).await;
        assert_eq!(response.status(), status, "{query}");
    }
    let missing = app.get("/chatrooms/999/messages", Some(&ann.cookie)).await;
    assert_eq!(missing.status(), 404);
    let signed_out = app.get(&format!("/chatrooms/{room}/messages"), None).await;
    assert_eq!(
        signed_out.status(),
        303,
        "a signed-out reader is sent to sign in"
    );
    assert!(
        signed_out.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/sign_in")
    );
}
