//! Operating endpoints: `/health` (liveness), `/ready` (database and broker
//! reachable) and `/metrics` (Prometheus text format).

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::AppState;

/// How long a readiness probe waits for the database.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `/health`, `/ready`, `/metrics`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(show_health))
        .route("/ready", get(show_readiness))
        .route("/metrics", get(show_metrics))
}

async fn show_health() -> &'static str {
    "ok"
}

/// The database round trip, or `None` when it failed or timed out.
async fn probe_database(state: &AppState) -> Option<Duration> {
    let started = Instant::now();
    let probe = sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(&state.db);
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(_)) => Some(started.elapsed()),
        _ => None,
    }
}

fn broker_state(state: &AppState) -> &'static str {
    match &state.broker {
        None => "none",
        Some(broker) if broker.status().healthy() => "ok",
        Some(_) => "degraded",
    }
}

/// 200 when the database answers and the broker (if any) is connected; 503
/// otherwise, with which part is failing.
async fn show_readiness(State(state): State<AppState>) -> Response {
    let database = probe_database(&state).await.is_some();
    let broker = broker_state(&state);
    let ready = database && broker != "degraded";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "degraded" },
        "database": if database { "ok" } else { "unreachable" },
        "broker": broker,
    });
    (status, axum::Json(body)).into_response()
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

async fn show_metrics(State(state): State<AppState>) -> Response {
    let mut out = String::new();
    let cable = state.cable.stats();
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    metric(
        &mut out,
        "hearth_connections",
        "gauge",
        "Open cable connections.",
        load(&cable.connections),
    );
    metric(
        &mut out,
        "hearth_subscriptions",
        "gauge",
        "Active channel subscriptions.",
        load(&cable.subscriptions),
    );
    metric(
        &mut out,
        "hearth_broadcasts_total",
        "counter",
        "Broadcasts delivered on this node.",
        load(&cable.broadcasts),
    );
    metric(
        &mut out,
        "hearth_deliveries_total",
        "counter",
        "Frames queued to subscribers.",
        load(&cable.deliveries),
    );
    metric(
        &mut out,
        "hearth_queue_drops_total",
        "counter",
        "Frames not queued because a subscriber's send queue was full or closed.",
        load(&cable.dropped),
    );
    let writer = state.writer.stats();
    metric(
        &mut out,
        "hearth_messages_stored_total",
        "counter",
        "Messages stored by this node.",
        load(&writer.stored),
    );
    metric(
        &mut out,
        "hearth_message_commits_total",
        "counter",
        "Group commits of messages.",
        load(&writer.commits),
    );
    metric(
        &mut out,
        "hearth_message_commit_seconds_total",
        "counter",
        "Time spent storing message batches.",
        load(&writer.commit_micros) as f64 / 1e6,
    );
    let relay = state.relay.stats();
    metric(
        &mut out,
        "hearth_relay_filled_total",
        "counter",
        "Missed messages loaded from the database and delivered.",
        load(&relay.filled),
    );
    metric(
        &mut out,
        "hearth_relay_duplicates_total",
        "counter",
        "Messages dropped as already delivered.",
        load(&relay.duplicates),
    );
    metric(
        &mut out,
        "hearth_relay_confirmed_total",
        "counter",
        "Messages other nodes announced through Redis, delivered once the database confirmed them.",
        load(&relay.confirmed),
    );
    if let Some(broker) = &state.broker {
        let status = broker.status();
        metric(
            &mut out,
            "hearth_broker_up",
            "gauge",
            "1 while Redis is subscribed and publishable.",
            u8::from(status.healthy()),
        );
        metric(
            &mut out,
            "hearth_broker_published_total",
            "counter",
            "Broadcasts published to Redis.",
            load(&status.published),
        );
        metric(
            &mut out,
            "hearth_broker_publish_failures_total",
            "counter",
            "Broadcasts Redis did not take.",
            load(&status.publish_failures),
        );
        metric(
            &mut out,
            "hearth_broker_received_total",
            "counter",
            "Broadcasts received from Redis.",
            load(&status.received),
        );
        metric(
            &mut out,
            "hearth_broker_reconnects_total",
            "counter",
            "Redis subscriptions re-established.",
            load(&status.reconnects),
        );
        metric(
            &mut out,
            "hearth_broker_channels",
            "gauge",
            "Redis channels subscribed: one per stream with a subscriber on this node.",
            load(&status.channels),
        );
    }
    metric(
        &mut out,
        "hearth_heap_bytes",
        "gauge",
        "Bytes allocated by the server's Rust code and not yet freed (the allocator may keep more resident).",
        crate::heap::live_bytes(),
    );
    metric(
        &mut out,
        "hearth_sqlite_memory_bytes",
        "gauge",
        "Memory held by the embedded SQLite (page caches, statements); 0 on PostgreSQL.",
        crate::db::sqlite_memory_bytes(),
    );
    match probe_database(&state).await {
        Some(latency) => metric(
            &mut out,
            "hearth_database_latency_seconds",
            "gauge",
            "Round trip of SELECT 1.",
            latency.as_secs_f64(),
        ),
        None => metric(
            &mut out,
            "hearth_database_up",
            "gauge",
            "0 when the database did not answer.",
            0,
        ),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
