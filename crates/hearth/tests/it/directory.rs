//! The room directory: search, paging, topics and member counts, and the
//! migration that brought topics and memberships to existing instances.

use std::sync::Arc;

use reqwest::header::{LOCATION, VARY};
use serde_json::Value;

use crate::common::{TestApp, TestDatabase, TestUser};

/// What the directory's script sends to get the results alone.
const FRAGMENT: (&str, &str) = ("hearth-fragment", "directory");

impl TestApp {
    /// The directory's results for `query` (already URL-encoded), as the
    /// script asks for them: the answer.
    async fn search(&self, user: &TestUser, query: &str) -> reqwest::Response {
        self.client()
            .get(self.url(&format!("/chatrooms?q={query}")))
            .header("cookie", &user.cookie)
            .header(FRAGMENT.0, FRAGMENT.1)
            .send()
            .await
            .expect("GET /chatrooms")
    }

    /// The names of the rooms the directory's fragment lists for `query`.
    async fn found(&self, user: &TestUser, query: &str) -> Vec<String> {
        let response = self.search(user, query).await;
        assert_eq!(response.status(), 200, "search {query:?}");
        room_names(&response.text().await.unwrap())
    }

    /// Creates a room with a topic; its id.
    async fn create_room_with_topic(&self, user: &TestUser, name: &str, topic: &str) -> i64 {
        let response = self
            .post_form(
                "/chatrooms",
                Some(&user.cookie),
                &[("name", name), ("topic", topic)],
            )
            .await;
        assert_eq!(response.status(), 303, "create {name}");
        response.headers()[LOCATION].to_str().unwrap()["/chatrooms/".len()..]
            .parse()
            .unwrap()
    }
}

/// The room names a directory listing shows, top to bottom.
fn room_names(html: &str) -> Vec<String> {
    html.split(r#"<span class="directory-name"># "#)
        .skip(1)
        .map(|rest| unescape(&rest[..rest.find("</span>").unwrap()]))
        .collect()
}

/// The directory row of the room called `name`, as HTML.
fn row<'a>(html: &'a str, name: &str) -> &'a str {
    let start = html
        .find(&format!(r#"<span class="directory-name"># {name}</span>"#))
        .unwrap_or_else(|| panic!("{name} is listed"));
    let rest = &html[start..];
    &rest[..rest.find("</li>").unwrap()]
}

fn unescape(html: &str) -> String {
    html.replace("&#37;", "%")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
}

#[tokio::test]
async fn search_finds_rooms_by_name_or_topic_ignoring_case_with_full_folding() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    app.create_room_with_topic(&ann, "Straße", "Road works on the east side")
        .await;
    app.create_room_with_topic(&ann, "deploys", "Release TRAIN and hotfixes")
        .await;
    app.create_room_with_topic(&ann, "ΣΊΣΥΦΟΣ", "").await;
    app.create_room(&ann, "random").await;

    assert_eq!(
        app.found(&ann, "STRASSE").await,
        ["Straße"],
        "ß folds to ss"
    );
    assert_eq!(app.found(&ann, "strasse").await, ["Straße"]);
    assert_eq!(app.found(&ann, "train").await, ["deploys"], "by topic");
    assert_eq!(app.found(&ann, "EAST%20SIDE").await, ["Straße"]);
    assert_eq!(
        app.found(&ann, "%CF%83%CE%AF%CF%83").await,
        ["ΣΊΣΥΦΟΣ"],
        "σίσ"
    );
    assert_eq!(
        app.found(&ann, "%20%20RAND%20").await,
        ["random"],
        "trimmed"
    );
    assert_eq!(
        app.found(&ann, "").await,
        ["deploys", "general", "random", "Straße", "ΣΊΣΥΦΟΣ"],
        "no search lists every room by folded name"
    );

    let none = app.search(&ann, "zebra").await.text().await.unwrap();
    assert!(none.contains("No rooms match “zebra”."), "{none}");
    assert!(room_names(&none).is_empty());
}

#[tokio::test]
async fn the_script_gets_the_results_alone_and_a_plain_get_the_whole_page() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    app.create_room(&ann, "deploys").await;
    let fragment = app.search(&ann, "dep").await;
    assert_eq!(fragment.headers()[VARY], "hearth-fragment");
    let fragment = fragment.text().await.unwrap();
    assert!(!fragment.contains("<html"), "a fragment: {fragment}");
    assert!(fragment.contains(r#"<ul class="directory">"#));

    let page = app.get("/chatrooms?q=dep", Some(&ann.cookie)).await;
    assert_eq!(page.headers()[VARY], "hearth-fragment");
    let page = page.text().await.unwrap();
    assert!(page.contains("<html"));
    assert!(
        page.contains(r#"name="q" value="dep""#),
        "the search box keeps the search"
    );
    assert_eq!(room_names(&page), ["deploys"], "without JavaScript too");
    assert!(
        page.contains(r#"name="topic""#),
        "the new-room form is there"
    );
}

#[tokio::test]
async fn percent_underscore_and_backslash_in_a_search_are_literal() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    for name in [
        "100%-done",
        "1000",
        "a_b",
        "axb",
        r"back\slash",
        "backslash",
    ] {
        app.create_room(&ann, name).await;
    }
    assert_eq!(app.found(&ann, "100%25").await, ["100%-done"]);
    assert_eq!(app.found(&ann, "%25").await, ["100%-done"]);
    assert_eq!(app.found(&ann, "a_b").await, ["a_b"]);
    assert_eq!(app.found(&ann, "_").await, ["a_b"]);
    assert_eq!(app.found(&ann, "k%5Cs").await, [r"back\slash"]);
}

#[tokio::test]
async fn an_over_long_search_is_refused_saying_the_limit() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let longest = "x".repeat(100);
    assert_eq!(app.search(&ann, &longest).await.status(), 200);

    let too_long = "x".repeat(101);
    let fragment = app.search(&ann, &too_long).await;
    assert_eq!(fragment.status(), 422);
    let fragment = fragment.text().await.unwrap();
    assert!(
        fragment.contains("Search for at most 100 characters"),
        "{fragment}"
    );
    assert!(!fragment.contains("<html"));

    let page = app
        .get(&format!("/chatrooms?q={too_long}"), Some(&ann.cookie))
        .await;
    assert_eq!(page.status(), 422);
    let page = page.text().await.unwrap();
    assert!(page.contains("Search for at most 100 characters"));
    assert!(
        page.contains(&format!(r#"value="{too_long}""#)),
        "kept as typed"
    );

    let json = app
        .client()
        .get(app.url(&format!("/chatrooms?q={too_long}")))
        .header("cookie", &ann.cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 422);
    let body: Value = json.json().await.unwrap();
    assert_eq!(body["error"], "invalid");
}

#[tokio::test]
async fn paging_a_search_carries_the_search_through_the_page_links() {
    let app = TestApp::spawn_with(&["--room-create-rate", "0"]).await;
    let ann = app.sign_up("ann").await;
    for i in 0..55 {
        app.create_room(&ann, &format!("team {i:02}")).await;
    }
    for i in 0..5 {
        app.create_room(&ann, &format!("other {i}")).await;
    }
    let first = app.page("/chatrooms?q=TEAM", &ann.cookie).await;
    assert_eq!(room_names(&first).len(), 50);
    let next = first
        .split(r#"<a rel="next" href=""#)
        .nth(1)
        .expect("a next page");
    let next = unescape(&next[..next.find('"').unwrap()]);
    assert_eq!(next, "/chatrooms?q=TEAM&page=1");
    let second = app.page(&next, &ann.cookie).await;
    let names = room_names(&second);
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(
        names.iter().all(|name| name.starts_with("team ")),
        "{names:?}"
    );
    assert!(
        second.contains(r#"<a rel="prev" href="/chatrooms?q=TEAM&#38;page=0">"#),
        "the way back keeps the search"
    );
    assert!(!second.contains(r#"rel="next""#));

    let spaced = app.page("/chatrooms?q=team%200&page=0", &ann.cookie).await;
    assert_eq!(room_names(&spaced).len(), 10, "team 00 … team 09");
    assert!(!spaced.contains("rel=\"next\""));
}

#[tokio::test]
async fn the_creator_is_a_member_and_counts_come_from_memberships() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let plans = app.create_room(&ann, "plans").await;
    app.create_room(&bob, "bobs-room").await;

    let as_ann = app.page("/chatrooms", &ann.cookie).await;
    assert!(row(&as_ann, "plans").contains("✓ Joined</span> · 1 member<"));
    assert!(!row(&as_ann, "bobs-room").contains("Joined"));
    assert!(row(&as_ann, "bobs-room").contains("1 member<"));
    assert!(
        row(&as_ann, "general").contains("2 members"),
        "everyone is in general from sign-up"
    );
    assert!(row(&as_ann, "plans").contains("no messages yet"));

    // What the message writer does with each batch, twice for the same
    // poster: one membership, the first time kept.
    let (ann_id, bob_id) = (app.user_id("ann").await, app.user_id("bob").await);
    for joined_at in [1000, 2000] {
        let mut tx = app.db.begin().await.unwrap();
        let batch = [(plans, bob_id), (plans, ann_id), (plans, bob_id)];
        hearth::db::memberships::add(&mut tx, batch, joined_at)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let as_bob = app.page("/chatrooms", &bob.cookie).await;
    assert!(row(&as_bob, "plans").contains("✓ Joined</span> · 2 members<"));
    let joined: i64 = sqlx::query_scalar(
        "SELECT joined_at FROM memberships WHERE chatroom_id = $1 AND user_id = $2",
    )
    .bind(plans)
    .bind(bob_id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(joined, 1000, "a later post does not move joined_at");
    assert_eq!(app.count("memberships").await, 3 + 2, "plans, and general");
}

#[tokio::test]
async fn adding_many_posters_at_once_inserts_each_member_once() {
    let app = TestApp::spawn_with(&["--room-create-rate", "0"]).await;
    let ann = app.sign_up("ann").await;
    let mut rooms = Vec::new();
    for i in 0..4 {
        rooms.push(app.create_room(&ann, &format!("room {i}")).await);
    }
    let mut users = Vec::new();
    for i in 0..90 {
        // Straight into the table: 90 password hashes would be slow.
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (email, nickname, password_hash, created_at) \
             VALUES ($1, $2, 'x', 0) RETURNING id",
        )
        .bind(format!("user{i}@example.com"))
        .bind(format!("user{i}"))
        .fetch_one(&app.db)
        .await
        .unwrap();
        users.push(id);
    }
    // 360 distinct pairs, each twice: more than one INSERT's worth.
    let pairs: Vec<(i64, i64)> = rooms
        .iter()
        .flat_map(|room| users.iter().map(move |user| (*room, *user)))
        .collect();
    let mut tx = app.db.begin().await.unwrap();
    hearth::db::memberships::add(&mut tx, pairs.iter().chain(&pairs).copied(), 5)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        app.count("memberships").await,
        4 + 360 + 1,
        "creator + posters, and ann in general"
    );
    let counts = hearth::db::memberships::counts(&app.db, &rooms)
        .await
        .unwrap();
    assert!(rooms.iter().all(|room| counts[room] == 91), "{counts:?}");
}

#[tokio::test]
async fn signed_out_visitors_of_the_directory_are_sent_to_sign_in() {
    let app = TestApp::spawn().await;
    for fragment in [false, true] {
        let mut request = app.client().get(app.url("/chatrooms?q=general"));
        if fragment {
            request = request.header(FRAGMENT.0, FRAGMENT.1);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 303);
        let to = response.headers()[LOCATION].to_str().unwrap();
        assert!(to.starts_with("/sign_in"), "{to}");
        assert!(!response.text().await.unwrap().contains("general"));
    }
}

#[tokio::test]
async fn a_topic_is_shown_in_the_directory_and_the_room_header() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let room = app
        .create_room_with_topic(&ann, "deploys", "  Releases <b>& hotfixes</b>  ")
        .await;
    let escaped = "Releases &#60;b&#62;&#38; hotfixes&#60;/b&#62;";
    let page = app.page(&format!("/chatrooms/{room}"), &ann.cookie).await;
    assert!(
        page.contains(&format!(
            r#"<p class="room-topic" title="{escaped}">{escaped}</p>"#
        )),
        "trimmed, escaped, under the name: {page}"
    );
    let directory = app.page("/chatrooms", &ann.cookie).await;
    assert!(row(&directory, "deploys").contains(escaped));
    let general = app.general_room(&ann).await;
    let page = app
        .page(&format!("/chatrooms/{general}"), &ann.cookie)
        .await;
    assert!(!page.contains("room-topic"), "no topic, no line");
}

#[tokio::test]
async fn a_bad_topic_gets_422_with_the_form_kept_and_nothing_created() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let long = "é".repeat(251);
    for (topic, error) in [
        (long.as_str(), "Topic must be at most 250 characters"),
        ("two\nlines", "Topic may not contain control characters"),
        (
            "abc\u{202E}fed",
            "Topic may not contain invisible characters",
        ),
    ] {
        let response = app
            .post_form(
                "/chatrooms",
                Some(&ann.cookie),
                &[("name", "kept name"), ("topic", topic)],
            )
            .await;
        assert_eq!(response.status(), 422, "{topic:?}");
        let page = response.text().await.unwrap();
        assert!(page.contains(error), "{topic:?}: {page}");
        assert!(page.contains(r#"value="kept name""#), "the name is kept");
        assert!(
            page.contains("<details class=\"create-room\" open>"),
            "the form is open"
        );
    }
    let both = app
        .post_form(
            "/chatrooms",
            Some(&ann.cookie),
            &[("name", ""), ("topic", "a\tb")],
        )
        .await;
    assert_eq!(both.status(), 422);
    let page = both.text().await.unwrap();
    assert!(page.contains("Name must be 1 to 64 characters") && page.contains("Topic may not"));
    let json = app
        .try_post_json("/chatrooms", &ann, &[("name", "ok"), ("topic", "a\u{7}")])
        .await
        .unwrap();
    assert_eq!(json.status(), 422);
    assert_eq!(app.count("chatrooms").await, 1, "only general");
    app.create_room_with_topic(&ann, "ok", &"é".repeat(250))
        .await;
}

/// Runs the migrations before 0004 on `url`, as the release before it left
/// an instance, and fills it as that release would have: ann and bob posted
/// in general, ann twice; carol posted nowhere; "quiet" has no messages.
async fn an_instance_from_before_0004(url: &str, engine: &str) {
    let db = crate::common::migrate_before(url, engine, "0004").await;
    for statement in [
        "INSERT INTO users (id, email, nickname, password_hash, created_at) VALUES \
         (1, 'ann@example.com', 'ann', 'x', 1), (2, 'bob@example.com', 'bob', 'x', 1), \
         (3, 'carol@example.com', 'carol', 'x', 1)",
        "INSERT INTO chatrooms (id, name, name_key, last_seq, created_at, active_at) VALUES \
         (1, 'general', 'general', 3, 10, 300), (2, 'quiet', 'quiet', 0, 20, 20)",
        "INSERT INTO messages (chatroom_id, seq, user_id, content, created_at) VALUES \
         (1, 1, 1, 'hi', 100), (1, 2, 2, 'hello', 200), (1, 3, 1, 'again', 300)",
    ] {
        sqlx::query(statement).execute(&db).await.unwrap();
    }
    if engine == "postgres" {
        // Rows came with their ids: move the identities past them.
        for table in ["users", "chatrooms", "messages"] {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
            );
            sqlx::query(&sql).execute(&db).await.unwrap();
        }
    }
    db.close().await;
}

/// Migrates the old instance at `url` and checks what 0004 backfilled.
async fn assert_backfilled(url: &str) {
    let db = hearth::db::connect(url).await.unwrap();
    let members: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT chatroom_id, user_id, joined_at FROM memberships ORDER BY chatroom_id, user_id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        members,
        [(1, 1, 100), (1, 2, 200), (1, 3, 1)],
        "every poster since their first post (0004); everyone else in general since sign-up (0006)"
    );
    let topics: Vec<(String, String)> =
        sqlx::query_as("SELECT topic, topic_key FROM chatrooms ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(topics, vec![(String::new(), String::new()); 2]);
    db.close().await;
}

#[tokio::test]
async fn migration_0004_makes_every_poster_a_member_on_sqlite() {
    let folder = tempfile::tempdir().unwrap();
    let url = hearth::db::sqlite_url(folder.path());
    an_instance_from_before_0004(&url, "sqlite").await;
    assert_backfilled(&url).await;

    // The migrated instance serves the directory with the counts.
    let app = TestApp::spawn_on(None, &["--database-url", &url]).await;
    let dan = app.sign_up("dan").await;
    let page = app.page("/chatrooms", &dan.cookie).await;
    assert!(row(&page, "general").contains("4 members"));
    assert!(row(&page, "quiet").contains("0 members"));
}

#[ignore = "needs PostgreSQL (HEARTH_TEST_POSTGRES_URL)"]
#[tokio::test]
async fn migration_0004_makes_every_poster_a_member_on_postgres() {
    crate::common::service(crate::common::POSTGRES);
    let database = Arc::new(TestDatabase::create().await);
    let url = database.url.clone().unwrap();
    an_instance_from_before_0004(&url, "postgres").await;
    assert_backfilled(&url).await;
    let app = TestApp::spawn_on(Some(database), &[]).await;
    let dan = app.sign_up("dan").await;
    let page = app.page("/chatrooms", &dan.cookie).await;
    assert!(row(&page, "general").contains("4 members"));
}

#[tokio::test]
async fn posting_makes_the_poster_a_member_once() {
    let (app, ann, general) = TestApp::with_ann_in_general(&[]).await;
    let bob = app.sign_up("bob").await;
    let plans = app.create_room(&ann, "plans").await;
    for (user, room) in [(&bob, plans), (&bob, plans), (&ann, plans), (&bob, general)] {
        assert_eq!(app.post_message(user, room, "hi").await.status(), 201);
    }
    let page = app.page("/chatrooms", &ann.cookie).await;
    assert!(
        row(&page, "plans").contains("2 members"),
        "ann created it, bob posted twice"
    );
    assert!(
        row(&page, "general").contains("2 members<"),
        "both since sign-up, bob's post adding nothing"
    );
    assert!(row(&page, "plans").contains("active just now"));
}
