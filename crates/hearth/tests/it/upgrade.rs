//! An instance made by the release before conversations (migrations 0001 to
//! 0005) upgraded in place: migrations 0006 and 0007 keep every room,
//! message and member, make existing rooms public with everyone in
//! #general, make the first user the admin, start nobody with a backlog of
//! unread messages, and the upgraded instance serves them; on SQLite 0008
//! moves the search index to its own file, built again from the messages.

use std::sync::Arc;

use crate::common::{TestApp, TestDatabase};

/// Runs migrations 0001 to 0005 on `url` and fills it as that release
/// would have: ann (the first user) and bob posted in general and in
/// "plans", carol signed up and posted nowhere; bob edited a message.
async fn an_instance_of_the_release_before(url: &str, engine: &str) {
    let db = crate::common::migrate_before(url, engine, "0006").await;
    for statement in [
        "INSERT INTO users (id, email, nickname, password_hash, created_at) VALUES \
         (1, 'ann@example.com', 'ann', 'x', 1), (2, 'bob@example.com', 'bob', 'x', 2), \
         (3, 'carol@example.com', 'carol', 'x', 3)",
        "INSERT INTO chatrooms (id, name, name_key, topic, topic_key, last_seq, created_at, active_at) \
         VALUES (1, 'general', 'general', '', '', 3, 10, 300), (2, 'plans', 'plans', 'Q3', 'q3', 2, 20, 400)",
        "INSERT INTO messages (chatroom_id, seq, user_id, content, created_at, edited_at) VALUES \
         (1, 1, 1, 'hi @bob', 100, NULL), (1, 2, 2, 'hello', 200, 250), (2, 1, 2, 'plan a', 300, NULL), \
         (2, 2, 1, 'plan b', 400, NULL)",
        "INSERT INTO message_events (chatroom_id, seq, message_id, kind, created_at) VALUES \
         (1, 3, 2, 'edited', 250)",
        "INSERT INTO memberships (chatroom_id, user_id, joined_at) VALUES \
         (1, 1, 100), (1, 2, 200), (2, 2, 300), (2, 1, 400)",
    ] {
        sqlx::query(statement).execute(&db).await.unwrap();
    }
    if engine == "postgres" {
        for table in ["users", "chatrooms", "messages", "message_events"] {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
            );
            sqlx::query(&sql).execute(&db).await.unwrap();
        }
    }
    db.close().await;
}

/// Migrates the instance at `url` and checks what 0006 and 0007 made of it.
async fn assert_upgraded(url: &str) {
    let db = hearth::db::connect(url).await.unwrap();
    let rooms: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, kind, room_mentions FROM chatrooms ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(
        rooms,
        [
            (1, "public".to_owned(), "admins".to_owned()),
            (2, "public".to_owned(), "everyone".to_owned())
        ],
        "every room public; only #general limits @channel"
    );
    let members: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "SELECT chatroom_id, user_id, last_read_seq, notify FROM memberships \
         ORDER BY chatroom_id, user_id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let default = || "default".to_owned();
    assert_eq!(
        members,
        [
            (1, 1, 3, default()),
            (1, 2, 3, default()),
            (1, 3, 3, default()),
            (2, 1, 2, default()),
            (2, 2, 2, default())
        ],
        "carol joined general; everyone has read everything"
    );
    let roles: Vec<(String, String)> =
        sqlx::query_as("SELECT nickname, role FROM users ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(
        roles,
        [
            ("ann".to_owned(), "admin".to_owned()),
            ("bob".to_owned(), "member".to_owned()),
            ("carol".to_owned(), "member".to_owned())
        ]
    );
    let messages: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(messages, 4, "nothing lost");
    db.close().await;
}

/// The upgraded instance serves it all: bob signs in to no unread badges,
/// his edit still shown; a new mention counts.
async fn assert_served(app: &TestApp) {
    let dan = app.sign_up("dan").await;
    let page = app.page("/chatrooms/1", &dan.cookie).await;
    assert!(page.contains("(edited)") && !page.contains("plan a"));
    assert!(
        !page.contains("aria-label=\"1 unread\""),
        "dan joined after everything"
    );
    let posted = app.post_message(&dan, 2, "@ann the plan?").await;
    assert_eq!(posted.status(), 201);
    let seq: i64 = posted.json::<serde_json::Value>().await.unwrap()["seq"]
        .as_i64()
        .unwrap();
    assert_eq!(seq, 3, "the room's sequence carries on");
    assert_eq!(app.count("mentions").await, 1);
    // Search finds the old messages and the new one (on SQLite the index is
    // built again in its own file, migration 0008).
    let search: serde_json::Value = app
        .client()
        .get(app.url("/search?q=plan"))
        .header("cookie", &dan.cookie)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(search["results"].as_array().unwrap().len(), 3, "{search}");
}

#[tokio::test]
async fn an_instance_of_the_release_before_upgrades_on_sqlite() {
    let folder = tempfile::tempdir().unwrap();
    let url = hearth::db::sqlite_url(folder.path());
    an_instance_of_the_release_before(&url, "sqlite").await;
    assert_upgraded(&url).await;
    let app = TestApp::spawn_on(None, &["--database-url", &url]).await;
    assert_served(&app).await;
}

#[ignore = "needs PostgreSQL (HEARTH_TEST_POSTGRES_URL)"]
#[tokio::test]
async fn an_instance_of_the_release_before_upgrades_on_postgres() {
    crate::common::service(crate::common::POSTGRES);
    let database = Arc::new(TestDatabase::create().await);
    let url = database.url.clone().unwrap();
    an_instance_of_the_release_before(&url, "postgres").await;
    assert_upgraded(&url).await;
    let app = TestApp::spawn_on(Some(database), &[]).await;
    assert_served(&app).await;
}
