//! A huge email typed into sign-in must not stay in memory as a rate-limiter
//! key. Its own test binary, alone, so `hearth_heap_bytes` counts this one
//! server and nothing else running beside it.

// The shared kit, of which this binary uses a little.
#[allow(dead_code)]
#[path = "it/common/mod.rs"]
mod common;

use common::{TestApp, WAIT};

/// Counted like the `hearth` binary counts, so `/metrics` shows live bytes.
#[global_allocator]
static ALLOCATOR: hearth::heap::Counting<std::alloc::System> =
    hearth::heap::Counting(std::alloc::System);

async fn heap_bytes(app: &TestApp) -> i64 {
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("hearth_heap_bytes "))
        .expect("hearth_heap_bytes in /metrics")
        .trim()
        .parse()
        .unwrap()
}

async fn sign_in(app: &TestApp, email: &str) -> u16 {
    app.post_form(
        "/sign_in",
        None,
        &[("email", email), ("password", "whatever1")],
    )
    .await
    .status()
    .as_u16()
}

#[tokio::test]
async fn a_two_megabyte_email_is_not_kept_as_a_limiter_key() {
    let app = TestApp::spawn().await;
    // Warm up every path a sign-in takes, with a small email.
    assert_eq!(sign_in(&app, "warm@example.com").await, 401);
    let before = heap_bytes(&app).await;

    let huge = "x".repeat(2_000_000);
    assert_eq!(sign_in(&app, &huge).await, 401, "a clear answer");
    drop(huge);

    // The request's own buffers are freed once it is answered and its
    // connection closed; a key holding the email would stay for a minute.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let grown = heap_bytes(&app).await - before;
        if grown < 500_000 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the heap still holds {grown} more bytes than before the 2 MB sign-in"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
