//! `/search`: any part of a word and CJK text, filters, paging, the index
//! kept in step with edits and deletions, and the answers to bad queries.
//! The whole suite runs on PostgreSQL too when `HEARTH_TEST_POSTGRES_URL`
//! is set, so both engines' indexes answer these.

use reqwest::header::ACCEPT;
use serde_json::Value;

use crate::common::{TestApp, TestUser};

async fn search(app: &TestApp, user: &TestUser, query: &str) -> reqwest::Response {
    app.client()
        .get(app.url("/search"))
        .query(&[("q", query)])
        .header("cookie", &user.cookie)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap()
}

/// The contents of the messages `query` finds, best first.
async fn found(app: &TestApp, user: &TestUser, query: &str) -> Vec<String> {
    let response = search(app, user, query).await;
    assert_eq!(response.status(), 200, "{query}");
    let body: Value = response.json().await.unwrap();
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let snippet = r["snippet_html"].as_str().unwrap();
            snippet.replace("<mark>", "").replace("</mark>", "")
        })
        .collect()
}

async fn post(app: &TestApp, user: &TestUser, room: i64, content: &str) -> Value {
    let response = app.post_message(user, room, content).await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

#[tokio::test]
async fn search_finds_parts_of_words_in_any_case_and_marks_them() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    post(&app, &ann, room, "The Deployment finished at noon").await;
    post(&app, &ann, room, "lunch?").await;
    assert_eq!(
        found(&app, &ann, "deploy").await,
        ["The Deployment finished at noon"]
    );
    assert_eq!(
        found(&app, &ann, "PLOYM").await,
        ["The Deployment finished at noon"]
    );
    assert_eq!(
        found(&app, &ann, "deploy noon").await.len(),
        1,
        "every term must occur"
    );
    assert!(found(&app, &ann, "deploy lunch").await.is_empty());
    assert_eq!(found(&app, &ann, "at").await.len(), 1, "a two-letter word");

    let body: Value = search(&app, &ann, "deploy").await.json().await.unwrap();
    let result = &body["results"][0];
    assert_eq!(
        result["snippet_html"],
        "The <mark>Deploy</mark>ment finished at noon"
    );
    assert_eq!(result["room_name"], "general");
    assert_eq!(result["room_kind"], "public");
    assert_eq!(result["nickname"], "ann");
    let url = format!("/chatrooms/{room}?around=1#message_{}", result["id"]);
    assert_eq!(result["url"], url.as_str(), "a permalink into the room");
    assert_eq!(body["more"], false);
}

#[tokio::test]
async fn search_finds_chinese_and_japanese_without_spaces() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    post(&app, &ann, room, "明日は東京で会議があります").await;
    post(&app, &ann, room, "我们明天在北京开会").await;
    assert_eq!(
        found(&app, &ann, "東京").await,
        ["明日は東京で会議があります"]
    );
    assert_eq!(
        found(&app, &ann, "会議があ").await,
        ["明日は東京で会議があります"]
    );
    assert_eq!(found(&app, &ann, "北京开会").await, ["我们明天在北京开会"]);
    assert!(found(&app, &ann, "上海").await.is_empty());
}

#[tokio::test]
async fn filters_narrow_by_room_author_and_day() {
    let (app, ann, general) = TestApp::with_ann_in_general(&[]).await;
    let bob = app.sign_up("bob").await;
    let ops = app.create_room(&ann, "Ops Room").await;
    post(&app, &ann, general, "status: green").await;
    post(&app, &bob, general, "status: amber").await;
    post(&app, &bob, ops, "status: red").await;

    assert_eq!(found(&app, &ann, "status").await.len(), 3);
    assert_eq!(found(&app, &ann, "status in:#general").await.len(), 2);
    assert_eq!(
        found(&app, &ann, "status in:#ops-room").await.len(),
        0,
        "the name, not a slug"
    );
    assert_eq!(found(&app, &ann, r#"status in:"#).await.len(), 3);
    assert_eq!(found(&app, &ann, "status from:@BOB").await.len(), 2);
    assert_eq!(
        found(&app, &ann, "from:@bob in:#general").await,
        ["status: amber"]
    );
    assert_eq!(found(&app, &ann, "status before:2000-01-01").await.len(), 0);
    assert_eq!(found(&app, &ann, "status after:2000-01-01").await.len(), 3);
    assert_eq!(found(&app, &ann, "status after:2999-01-01").await.len(), 0);
}

#[tokio::test]
async fn edits_and_deletions_keep_the_index_in_step() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let id = post(&app, &ann, room, "the password is hunter2").await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(found(&app, &ann, "hunter2").await.len(), 1);
    let edited = app
        .edit_message(&ann, room, id, "the password is redacted")
        .await;
    assert_eq!(edited.status(), 200);
    assert!(
        found(&app, &ann, "hunter2").await.is_empty(),
        "the old text is gone"
    );
    assert_eq!(found(&app, &ann, "redacted").await.len(), 1);
    assert_eq!(app.delete_message(&ann, room, id).await.status(), 200);
    assert!(
        found(&app, &ann, "password").await.is_empty(),
        "a deleted message is not found"
    );
}

#[tokio::test]
async fn results_come_a_page_at_a_time() {
    let (app, ann, room) = TestApp::with_ann_in_general(&["--message-rate", "0"]).await;
    for n in 0..25 {
        post(&app, &ann, room, &format!("report number {n}")).await;
    }
    let first: Value = search(&app, &ann, "report").await.json().await.unwrap();
    assert_eq!(first["results"].as_array().unwrap().len(), 20);
    assert_eq!(first["more"], true);
    let response = app
        .client()
        .get(app.url("/search?q=report&page=1"))
        .header("cookie", &ann.cookie)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["results"].as_array().unwrap().len(), 5);
    assert_eq!(second["more"], false);
    let ids = |page: &Value| -> Vec<i64> {
        page["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    let mut all = ids(&first);
    all.extend(ids(&second));
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 25, "each result once over the pages");
}

/// The result ids of page `page` of `query`, and whether more follow.
async fn page_ids(app: &TestApp, user: &TestUser, query: &str, page: i64) -> (Vec<i64>, bool) {
    let response = app
        .client()
        .get(app.url("/search"))
        .query(&[("q", query), ("page", &page.to_string())])
        .header("cookie", &user.cookie)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let ids = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    (ids, body["more"] == true)
}

#[tokio::test]
async fn the_newest_hundred_matches_come_ranked_first_then_the_older_ones_newest_first() {
    let (app, ann, room) = TestApp::with_ann_in_general(&["--message-rate", "0"]).await;
    let mut posted = Vec::new();
    for n in 0..130 {
        // Some mention the word twice, so ranking has something to do.
        let text = if n % 7 == 0 {
            format!("ledger {n}: the ledger balances")
        } else {
            format!("ledger entry number {n} of the quarter")
        };
        posted.push(post(&app, &ann, room, &text).await["id"].as_i64().unwrap());
    }
    let mut pages = Vec::new();
    for page in 0..7 {
        let (ids, more) = page_ids(&app, &ann, "ledger", page).await;
        assert_eq!(more, page < 6, "page {page}");
        pages.push(ids);
    }
    let all: Vec<i64> = pages.concat();
    assert_eq!(all.len(), 130);
    let mut unique = all.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 130, "each match once over the pages");

    let mut newest: Vec<i64> = posted.clone();
    newest.sort_unstable_by(|a, b| b.cmp(a));
    let mut first: Vec<i64> = all[..100].to_vec();
    first.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(
        first,
        newest[..100],
        "the first 100 results are the 100 newest matches"
    );
    assert_eq!(
        all[100..],
        newest[100..],
        "the older ones follow, newest first"
    );

    // `in:#room` takes the room's own index: every match once, the newest
    // hundred first (ranked on PostgreSQL, newest first on SQLite).
    let mut in_room = Vec::new();
    for page in 0..7 {
        in_room.extend(page_ids(&app, &ann, "ledger in:#general", page).await.0);
    }
    let mut first: Vec<i64> = in_room[..100].to_vec();
    first.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(first, newest[..100]);
    assert_eq!(in_room[100..], newest[100..]);
}

#[tokio::test]
async fn bad_queries_get_a_clear_answer_and_strangers_are_sent_to_sign_in() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    post(&app, &ann, room, "100% sure_thing <b>bold</b>").await;
    assert_eq!(found(&app, &ann, "100%").await.len(), 1);
    assert!(found(&app, &ann, "1%0").await.is_empty(), "% is literal");
    assert!(
        found(&app, &ann, "sure_").await.len() == 1 && found(&app, &ann, "e_t").await.len() == 1
    );
    assert!(found(&app, &ann, "re_x").await.is_empty(), "_ is literal");
    let markup = found(&app, &ann, "bold").await;
    assert_eq!(
        markup,
        ["100% sure_thing &lt;b&gt;bold&lt;/b&gt;"],
        "escaped in the snippet"
    );

    for bad in ["x".repeat(201), "before:someday".to_owned()] {
        let response = search(&app, &ann, &bad).await;
        assert_eq!(response.status(), 422, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_query");
    }
    let deep = app
        .client()
        .get(app.url("/search?q=x&page=50"))
        .header("cookie", &ann.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(deep.status(), 422);
    assert!(deep.text().await.unwrap().contains("Pages go from 0 to 49"));

    let stranger = app.get("/search?q=sure", None).await;
    assert_eq!(stranger.status(), 303);
    assert!(
        stranger.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/sign_in")
    );

    let page = app.page("/search?q=sure", &ann.cookie).await;
    assert!(page.contains("<mark>sure</mark>"), "{page}");
    assert!(page.contains(&format!("/chatrooms/{room}?around=1")));
    let empty = app.page("/search?q=nothing-like-this", &ann.cookie).await;
    assert!(empty.contains("Nothing matches"));
}

/// Where the SQLite database of `app` is.
fn sqlite_url(app: &TestApp) -> String {
    hearth::db::sqlite_url(app.data_dir.path())
}

#[tokio::test]
async fn on_sqlite_the_index_has_a_file_of_its_own_and_is_built_again_when_it_is_lost() {
    let mut app = TestApp::spawn_on(None, &["--message-rate", "0"]).await;
    let ann = app.sign_up("ann").await;
    let room = app.general_room(&ann).await;
    post(&app, &ann, room, "the kettle is on").await;
    let edited = post(&app, &ann, room, "stand-up at nine").await["id"]
        .as_i64()
        .unwrap();
    let deleted = post(&app, &ann, room, "the secret word is swordfish").await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        app.edit_message(&ann, room, edited, "stand-up at ten")
            .await
            .status(),
        200
    );
    assert_eq!(app.delete_message(&ann, room, deleted).await.status(), 200);
    assert_eq!(found(&app, &ann, "kettle").await, ["the kettle is on"]);

    // The index is not in the database's file: it is beside it.
    let in_main: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM main.sqlite_master WHERE name LIKE 'message_search%'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(in_main, 0);
    let index = app.data_dir.path().join("hearth-search.db");
    assert!(index.exists());

    // Lost with the server stopped, it is built again at the next start,
    // edits and deletions as they are now, before the first search answers;
    // also when the database's URL does not let SQLite create files.
    let url = format!(
        "sqlite://{}",
        app.data_dir.path().join("hearth.db").display()
    );
    app.shutdown().await;
    for suffix in ["", "-wal", "-shm"] {
        let file = app
            .data_dir
            .path()
            .join(format!("hearth-search.db{suffix}"));
        if file.exists() {
            std::fs::remove_file(file).unwrap();
        }
    }
    let again = TestApp::spawn_on(None, &["--database-url", &url]).await;
    assert_eq!(found(&again, &ann, "kettle").await, ["the kettle is on"]);
    assert_eq!(found(&again, &ann, "stand-up").await, ["stand-up at ten"]);
    assert!(found(&again, &ann, "nine").await.is_empty());
    assert!(found(&again, &ann, "swordfish").await.is_empty());
}

#[tokio::test]
async fn a_message_spoken_on_the_cable_is_found_by_the_next_search() {
    let (app, ann, room) = TestApp::with_ann_in_general(&["--message-rate", "0"]).await;
    let (mut cable, identifier) = app.join(&ann, room).await;
    for n in 0..50 {
        cable.speak(&identifier, &format!("spoken word {n}")).await;
    }
    // Once the broadcasts are back, every one is committed; the search
    // waits for the index to take them in.
    for n in 0..50 {
        assert_eq!(
            cable.next_message(&identifier).await["content"],
            format!("spoken word {n}")
        );
    }
    let results: Value = search(&app, &ann, "spoken").await.json().await.unwrap();
    assert_eq!(results["results"].as_array().unwrap().len(), 20);
    assert_eq!(results["more"], true);
    assert_eq!(
        found(&app, &ann, "word 49").await,
        ["spoken word 49"],
        "the newest is found"
    );
}

#[tokio::test]
async fn on_sqlite_an_index_built_from_another_database_is_not_trusted() {
    let mut first = TestApp::spawn_on(None, &[]).await;
    let ann = first.sign_up("ann").await;
    let room = first.general_room(&ann).await;
    post(&first, &ann, room, "only in the first one").await;
    first.shutdown().await;
    let mut second = TestApp::spawn_on(None, &[]).await;
    let bob = second.sign_up("bob").await;
    let room = second.general_room(&bob).await;
    post(&second, &bob, room, "only in the second one").await;
    second.shutdown().await;

    // The first one's index, with every file of it, beside the second's
    // database (a copy or a backup put back in the wrong place).
    for suffix in ["", "-wal", "-shm"] {
        let name = format!("hearth-search.db{suffix}");
        let (from, to) = (
            first.data_dir.path().join(&name),
            second.data_dir.path().join(&name),
        );
        if to.exists() {
            std::fs::remove_file(&to).unwrap();
        }
        if from.exists() {
            std::fs::copy(&from, &to).unwrap();
        }
    }
    let again = TestApp::spawn_on(None, &["--database-url", &sqlite_url(&second)]).await;
    assert_eq!(
        found(&again, &bob, "only in").await,
        ["only in the second one"]
    );
    assert!(found(&again, &bob, "first").await.is_empty());
}
