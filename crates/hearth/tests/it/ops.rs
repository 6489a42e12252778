//! The operator's side: health, readiness, metrics and `hearth migrate`.

use crate::common::{TestApp, metric_value as metric};
use serde_json::Value;

#[tokio::test]
async fn health_and_readiness_answer_without_a_session() {
    let app = TestApp::spawn().await;
    let health = app.get("/health", None).await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    let ready = app.get("/ready", None).await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["broker"], "none");
}

#[tokio::test]
async fn metrics_count_connections_subscriptions_and_messages() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let (mut cable, identifier) = app.join(&ann, room).await;
    app.post_message(&ann, room, "counted").await;
    cable.next_message(&identifier).await;

    let response = app.get("/metrics", None).await;
    assert!(crate::common::content_type(&response).starts_with("text/plain"));
    let text = response.text().await.unwrap();
    assert_eq!(metric(&text, "hearth_connections"), 1.0);
    assert_eq!(metric(&text, "hearth_subscriptions"), 1.0);
    assert_eq!(metric(&text, "hearth_messages_stored_total"), 1.0);
    assert_eq!(metric(&text, "hearth_deliveries_total"), 1.0);
    assert_eq!(metric(&text, "hearth_queue_drops_total"), 0.0);
    assert!(metric(&text, "hearth_database_latency_seconds") > 0.0);
    assert_eq!(metric(&text, "hearth_database_up"), 1.0);
    if app.database.is_none() {
        // On SQLite: its caches are part of the process and reported.
        assert!(metric(&text, "hearth_sqlite_memory_bytes") > 0.0);
    }
    assert!(text.contains("# TYPE hearth_broadcasts_total counter"));
}

#[test]
fn hearth_migrate_creates_the_schema_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["migrate", "--data-dir", &dir.path().display().to_string()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("is up to date"));
    assert!(dir.path().join("hearth.db").exists());
}
