//! The writer's batches: one transaction stores every post queued while the
//! one before it committed. A batch spread over rooms, naming members, with
//! a post to a room that does not exist, stores every other post as if each
//! had come alone; a batch that cannot be stored stores nothing.

use std::time::Duration;

use futures_util::future::join_all;
use hearth::domain::MessageContent;
use hearth::writer::{NewMessage, PostError, Stored};

use crate::common::TestApp;

/// Long enough for the writer to take what is queued and wait for the lock.
const SETTLE: Duration = Duration::from_millis(300);

/// A post by user `user_id` in `room`, as the HTTP handler and `speak`
/// build it (whom it mentions read from the text).
fn post(user_id: i64, room: i64, text: &str) -> NewMessage {
    NewMessage {
        chatroom_id: room,
        user_id,
        nickname: format!("user{user_id}"),
        content: MessageContent::parse(text).unwrap(),
        client_id: None,
        mentions: hearth::markup::mentions(text),
        here: Vec::new(),
    }
}

/// Posts `first` while a transaction of the test's holds `first`'s room
/// row, then queues `batch` behind it and lets go: `batch` is stored as one
/// batch. Returns what each post of `batch` was told.
async fn in_one_batch(
    app: &TestApp,
    first: NewMessage,
    batch: Vec<NewMessage>,
) -> Vec<Result<Stored, PostError>> {
    let mut lock = app.db.begin().await.unwrap();
    sqlx::query("UPDATE chatrooms SET last_seq = last_seq WHERE id = $1")
        .bind(first.chatroom_id)
        .execute(&mut *lock)
        .await
        .unwrap();
    let writer = app.writer.clone();
    let blocked = tokio::spawn(async move { writer.post(first).await });
    tokio::time::sleep(SETTLE).await;
    let writer = app.writer.clone();
    // Polled in order, so queued in order.
    let queued =
        tokio::spawn(async move { join_all(batch.into_iter().map(|m| writer.post(m))).await });
    tokio::time::sleep(SETTLE).await;
    lock.commit().await.unwrap();
    blocked.await.unwrap().expect("the first post is stored");
    queued.await.unwrap()
}

/// The users a message of `room` at `seq` mentions, from the database.
async fn mentioned(app: &TestApp, room: i64, seq: i64) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT user_id FROM mentions WHERE chatroom_id = $1 AND seq = $2 ORDER BY user_id",
    )
    .bind(room)
    .bind(seq)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// `user`'s read cursor in `room`, `None` for a non-member.
async fn read_cursor(app: &TestApp, room: i64, user: i64) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT last_read_seq FROM memberships WHERE chatroom_id = $1 AND user_id = $2",
    )
    .bind(room)
    .bind(user)
    .fetch_optional(&app.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_batch_over_several_rooms_stores_each_post_as_if_it_came_alone() {
    let app = TestApp::spawn_with(&["--message-rate", "0"]).await;
    let ann_user = app.sign_up("ann").await;
    let dave_user = app.sign_up("dave").await;
    app.sign_up("bob").await;
    app.sign_up("carol").await;
    let (ann, bob, carol, dave) = (
        app.user_id("ann").await,
        app.user_id("bob").await,
        app.user_id("carol").await,
        app.user_id("dave").await,
    );
    let general = app.general_room(&ann_user).await;
    let alpha = app.create_room(&ann_user, "alpha").await;
    let general_seq: i64 = sqlx::query_scalar("SELECT last_seq FROM chatrooms WHERE id = $1")
        .bind(general)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let missing = alpha + 1000;
    let (mut daves, dave_stream) = app.follow_rooms(&dave_user).await;

    let results = in_one_batch(
        &app,
        post(ann, alpha, "first in alpha"),
        vec![
            post(ann, alpha, "second in alpha"),
            post(bob, alpha, "hello @ANN and @carol"),
            post(ann, missing, "nowhere"),
            post(carol, general, "plain in general"),
            post(bob, alpha, "@channel third from bob"),
            post(ann, general, "@bob @dave look"),
        ],
    )
    .await;

    assert!(
        matches!(results[2], Err(PostError::RoomNotFound)),
        "{:?}",
        results[2]
    );
    let stored: Vec<_> = results
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, result)| &result.as_ref().expect("stored").message)
        .collect();
    let places: Vec<(i64, i64, &str)> = stored
        .iter()
        .map(|m| (m.chatroom_id, m.seq, m.content.as_str()))
        .collect();
    assert_eq!(
        places,
        [
            (alpha, 2, "second in alpha"),
            (alpha, 3, "hello @ANN and @carol"),
            (general, general_seq + 1, "plain in general"),
            (alpha, 4, "@channel third from bob"),
            (general, general_seq + 2, "@bob @dave look"),
        ]
    );
    // One commit: one time, ids in the order posted.
    assert!(stored.iter().all(|m| m.created_at == stored[0].created_at));
    assert!(stored.windows(2).all(|pair| pair[0].id < pair[1].id));
    let rooms: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, last_seq FROM chatrooms WHERE id IN ($1, $2) ORDER BY id")
            .bind(general)
            .bind(alpha)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(rooms, [(general, general_seq + 2), (alpha, 4)]);

    // Members named in the room are mentioned, the author and non-members
    // not; `@channel` is one row for everyone.
    assert_eq!(mentioned(&app, alpha, 3).await, [ann]);
    assert_eq!(mentioned(&app, alpha, 4).await, [0]);
    assert_eq!(
        mentioned(&app, general, general_seq + 2).await,
        [bob.min(dave), bob.max(dave)]
    );
    // Posting made bob a member of alpha, having read up to his newest post.
    assert_eq!(read_cursor(&app, alpha, bob).await, Some(4));
    assert_eq!(read_cursor(&app, alpha, carol).await, None);
    assert_eq!(
        read_cursor(&app, general, carol).await,
        Some(general_seq + 1)
    );
    // Dave's pages hear of both posts in general, the second as a mention.
    for (seq, mention) in [(general_seq + 1, false), (general_seq + 2, true)] {
        let activity = daves.next_message(&dave_stream).await;
        assert_eq!(
            (
                activity["id"].as_i64(),
                activity["seq"].as_i64(),
                activity["mention"].as_bool()
            ),
            (Some(general), Some(seq), Some(mention)),
            "{activity}"
        );
    }
}

#[tokio::test]
async fn a_batch_that_cannot_be_stored_stores_none_of_its_posts() {
    let app = TestApp::spawn_with(&["--message-rate", "0"]).await;
    let ann_user = app.sign_up("ann").await;
    let ann = app.user_id("ann").await;
    let alpha = app.create_room(&ann_user, "alpha").await;
    let nobody = ann + 1000;

    let results = in_one_batch(
        &app,
        post(ann, alpha, "first"),
        vec![
            post(ann, alpha, "kept back"),
            post(nobody, alpha, "by no one"),
        ],
    )
    .await;

    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(PostError::Database(_)))),
        "{results:?}"
    );
    assert_eq!(app.count("messages").await, 1);
    // The sequence numbers the failed batch took went back with it.
    let next = app.writer.post(post(ann, alpha, "after")).await.unwrap();
    assert_eq!(next.message.seq, 2);
}
