//! `hearth-bench seed` on a small SQLite database: what it stores is what
//! the app would have stored, the real server serves it, and the same seed
//! gives the same database.

use std::path::Path;

use hearth_bench::cli::SeedArgs;
use hearth_bench::http::{HttpConn, Request};
use hearth_bench::net::Endpoint;
use hearth_bench::reads::{query_escape, sign_in};
use hearth_bench::seed;
use sqlx::AnyPool;

fn args(path: &Path, seed: u64) -> SeedArgs {
    SeedArgs {
        database: path.display().to_string(),
        messages: 2_000,
        rooms: 5,
        users: 40,
        seed,
    }
}

/// The seeded database as the server opens it (its search index attached).
async fn open(path: &Path) -> AnyPool {
    hearth::db::connect(&seed::database_url(&path.display().to_string()))
        .await
        .expect("the seeded database opens")
}

async fn scalar(db: &AnyPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.expect(sql)
}

#[tokio::test]
async fn a_seeded_database_is_consistent_and_the_real_server_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seeded.db");
    seed::run(&args(&path, 1)).await.expect("seeding works");
    let db = open(&path).await;

    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM messages").await, 2_000);
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM chatrooms").await, 5);
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM users").await, 40);
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM users WHERE role = 'admin'").await,
        1
    );
    assert!(scalar(&db, "SELECT COUNT(*) FROM message_events").await > 0);

    // Every room's sequence: its posts and its edits and deletions fill
    // 1..=last_seq, each place once.
    let rooms: Vec<(i64, i64, i64)> =
        sqlx::query_as("SELECT id, last_seq, active_at FROM chatrooms ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();
    for (room, last_seq, active_at) in rooms {
        let (places, distinct, low, high): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT seq), COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) \
             FROM (SELECT seq FROM messages WHERE chatroom_id = $1 \
                   UNION ALL SELECT seq FROM message_events WHERE chatroom_id = $1) s",
        )
        .bind(room)
        .fetch_one(&db)
        .await
        .unwrap();
        assert_eq!(places, last_seq, "room {room}: one place per seq");
        assert_eq!(distinct, places, "room {room}: no seq twice");
        if last_seq > 0 {
            assert_eq!((low, high), (1, last_seq), "room {room}: gap-free");
        }
        let newest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(created_at) FROM messages WHERE chatroom_id = $1")
                .bind(room)
                .fetch_one(&db)
                .await
                .unwrap();
        if let Some(newest) = newest {
            assert_eq!(active_at, newest, "room {room}: active at its newest post");
        }
    }

    // Every poster is a member, read up to their newest post at least, and
    // no cursor is past its room's end.
    let stray = scalar(
        &db,
        "SELECT COUNT(*) FROM (SELECT chatroom_id, user_id, MAX(seq) AS newest FROM messages \
         GROUP BY chatroom_id, user_id) p LEFT JOIN memberships m \
         ON m.chatroom_id = p.chatroom_id AND m.user_id = p.user_id \
         WHERE m.user_id IS NULL OR m.last_read_seq < p.newest",
    )
    .await;
    assert_eq!(stray, 0, "posters are members who read their own posts");
    let past = scalar(
        &db,
        "SELECT COUNT(*) FROM memberships m JOIN chatrooms c ON c.id = m.chatroom_id \
         WHERE m.last_read_seq > c.last_seq",
    )
    .await;
    assert_eq!(past, 0);
    let behind = scalar(
        &db,
        "SELECT COUNT(*) FROM memberships m JOIN chatrooms c ON c.id = m.chatroom_id \
         WHERE m.last_read_seq < c.last_seq",
    )
    .await;
    assert!(behind > 0, "some members have unread messages");
    assert_eq!(
        scalar(
            &db,
            "SELECT COUNT(*) FROM memberships WHERE chatroom_id = 1"
        )
        .await,
        40,
        "everyone is in general"
    );
    assert!(
        scalar(&db, "SELECT COUNT(*) FROM chatrooms WHERE kind = 'direct'").await
            + scalar(&db, "SELECT COUNT(*) FROM chatrooms WHERE kind = 'private'").await
            > 0
    );

    // Mentions name members of the room, not the author, in a message
    // that still says so (an edit replaced them).
    assert!(scalar(&db, "SELECT COUNT(*) FROM mentions").await > 0);
    let wrong = scalar(
        &db,
        "SELECT COUNT(*) FROM mentions x \
         JOIN messages m ON m.chatroom_id = x.chatroom_id AND m.seq = x.seq \
         JOIN users u ON u.id = x.user_id \
         LEFT JOIN memberships p ON p.chatroom_id = x.chatroom_id AND p.user_id = x.user_id \
         WHERE p.user_id IS NULL OR x.user_id = x.author_id OR x.author_id <> m.user_id \
         OR (m.deleted_at IS NULL AND m.content NOT LIKE '@' || u.nickname || ' %')",
    )
    .await;
    assert_eq!(wrong, 0);

    // The search index holds every message as stored, deletions erased.
    let indexed = scalar(
        &db,
        "SELECT COUNT(*) FROM search.message_search WHERE message_search MATCH '\"deploy\"'",
    )
    .await;
    let stored = scalar(
        &db,
        "SELECT COUNT(*) FROM messages WHERE content LIKE '%deploy%'",
    )
    .await;
    assert!(stored > 0, "the seeded text uses the common words");
    assert_eq!(indexed, stored);
    db.close().await;

    // The real server starts on it; ada1 signs in with the seeded password
    // and finds the word.
    let config = hearth::Config::from_args([
        "--bind".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--database-url".to_owned(),
        seed::database_url(&path.display().to_string()),
    ]);
    let listener = hearth::bind(config.bind).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = hearth::App::build(config).await.expect("hearth starts");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hearth::serve(listener, app, async move {
        let _ = stopped.await;
    }));
    let endpoint = Endpoint::parse(&format!("http://{addr}")).unwrap();
    let cookie = format!(
        "hearth_session={}",
        sign_in(&endpoint, "ada1@seed.test").await.unwrap()
    );
    let mut conn = HttpConn::connect(&endpoint, "127.0.0.1".parse().unwrap())
        .await
        .unwrap();
    let response = conn
        .send(&Request {
            method: "GET",
            path: &format!("/search?q={}", query_escape("deploy")),
            headers: &[("Cookie", &cookie), ("Accept", "application/json")],
            form: None,
        })
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let found: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    let results = found["results"].as_array().unwrap();
    assert!(!results.is_empty(), "the server finds a seeded word");
    assert!(
        results[0]["snippet_html"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("<mark>deploy</mark>")
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_same_seed_gives_the_same_database_and_a_full_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    seed::run(&args(&a, 7)).await.unwrap();
    seed::run(&args(&b, 7)).await.unwrap();
    let dump = |path: std::path::PathBuf| async move {
        let db = open(&path).await;
        let rows: Vec<(i64, i64, i64, String, Option<i64>)> = sqlx::query_as(
            "SELECT chatroom_id, seq, user_id, content, deleted_at FROM messages ORDER BY id",
        )
        .fetch_all(&db)
        .await
        .unwrap();
        let cursors: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT chatroom_id, user_id, last_read_seq FROM memberships \
             ORDER BY chatroom_id, user_id",
        )
        .fetch_all(&db)
        .await
        .unwrap();
        db.close().await;
        (rows, cursors)
    };
    assert!(dump(a.clone()).await == dump(b).await);
    let again = seed::run(&args(&a, 7)).await;
    assert!(
        again.is_err(),
        "seeding a database that has messages is refused"
    );
}
