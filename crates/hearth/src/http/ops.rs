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

/// `/health`: served on the app's port always, for load balancers.
pub fn health_router() -> Router<AppState> {
    Router::new().route("/health", get(show_health))
}

/// `/ready` and `/metrics`: on the app's port, or only on `--ops-bind`.
pub fn router() -> Router<AppState> {
    Router::new()
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

/// Whether a metric only grows or goes up and down.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// One sample of `/metrics`.
struct Metric {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    value: f64,
}

impl Metric {
    fn counter(name: &'static str, help: &'static str, value: u64) -> Self {
        Self {
            name,
            kind: Kind::Counter,
            help,
            value: value as f64,
        }
    }

    fn gauge(name: &'static str, help: &'static str, value: f64) -> Self {
        Self {
            name,
            kind: Kind::Gauge,
            help,
            value,
        }
    }
}

/// Every metric of this node, in the order `/metrics` lists them.
async fn collect(state: &AppState) -> Vec<Metric> {
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let cable = state.cable.stats();
    let writer = state.writer.stats();
    let relay = state.relay.stats();
    let mut metrics = vec![
        Metric::gauge(
            "hearth_connections",
            "Open cable connections.",
            load(&cable.connections) as f64,
        ),
        Metric::gauge(
            "hearth_subscriptions",
            "Active channel subscriptions.",
            load(&cable.subscriptions) as f64,
        ),
        Metric::counter(
            "hearth_broadcasts_total",
            "Broadcasts delivered on this node.",
            load(&cable.broadcasts),
        ),
        Metric::counter(
            "hearth_deliveries_total",
            "Frames queued to subscribers.",
            load(&cable.deliveries),
        ),
        Metric::counter(
            "hearth_queue_drops_total",
            "Frames not queued because a subscriber's send queue or byte budget was full, or it was gone.",
            load(&cable.dropped),
        ),
        Metric::counter(
            "hearth_messages_stored_total",
            "Messages stored by this node.",
            load(&writer.stored),
        ),
        Metric::counter(
            "hearth_message_commits_total",
            "Group commits of messages.",
            load(&writer.commits),
        ),
        Metric {
            name: "hearth_message_commit_seconds_total",
            kind: Kind::Counter,
            help: "Time spent storing message batches.",
            value: load(&writer.commit_micros) as f64 / 1e6,
        },
        Metric::counter(
            "hearth_relay_filled_total",
            "Missed messages loaded from the database and delivered.",
            load(&relay.filled),
        ),
        Metric::counter(
            "hearth_relay_duplicates_total",
            "Messages dropped as already delivered.",
            load(&relay.duplicates),
        ),
        Metric::counter(
            "hearth_relay_confirmed_total",
            "Messages other nodes announced through Redis, delivered once the database confirmed them.",
            load(&relay.confirmed),
        ),
    ];
    if let Some(broker) = &state.broker {
        let status = broker.status();
        metrics.extend([
            Metric::gauge(
                "hearth_broker_up",
                "1 while Redis is subscribed and publishable.",
                f64::from(u8::from(status.healthy())),
            ),
            Metric::counter(
                "hearth_broker_published_total",
                "Broadcasts published to Redis.",
                load(&status.published),
            ),
            Metric::counter(
                "hearth_broker_publish_failures_total",
                "Broadcasts Redis did not take.",
                load(&status.publish_failures),
            ),
            Metric::counter(
                "hearth_broker_received_total",
                "Broadcasts received from Redis.",
                load(&status.received),
            ),
            Metric::counter(
                "hearth_broker_reconnects_total",
                "Redis subscriptions re-established.",
                load(&status.reconnects),
            ),
            Metric::gauge(
                "hearth_broker_channels",
                "Redis channels subscribed: one per stream with a subscriber on this node.",
                load(&status.channels) as f64,
            ),
        ]);
    }
    let (users, rooms) = state.activity.size();
    let (online, watched) = state.online.size();
    metrics.extend([
        Metric::gauge(
            "hearth_online_users",
            "Users with a page open on this node.",
            online as f64,
        ),
        Metric::gauge(
            "hearth_online_watched",
            "People whose coming and going is told to a conversation partner with a page open here.",
            watched as f64,
        ),
        Metric::gauge(
            "hearth_activity_users",
            "Users with a page open here, whose rooms' new messages are announced to them.",
            users as f64,
        ),
        Metric::gauge(
            "hearth_activity_rooms",
            "Rooms with a member who has a page open here.",
            rooms as f64,
        ),
        Metric::gauge(
            "hearth_heap_bytes",
            "Bytes allocated by the server's Rust code and not yet freed (the allocator may keep more resident).",
            crate::heap::live_bytes() as f64,
        ),
        Metric::gauge(
            "hearth_sqlite_memory_bytes",
            "Memory held by the embedded SQLite (page caches, statements); 0 on PostgreSQL.",
            crate::db::sqlite_memory_bytes() as f64,
        ),
    ]);
    let latency = probe_database(state).await;
    metrics.push(Metric::gauge(
        "hearth_database_up",
        "1 when the database answered SELECT 1 within 2 s, else 0.",
        f64::from(u8::from(latency.is_some())),
    ));
    if let Some(latency) = latency {
        metrics.push(Metric::gauge(
            "hearth_database_latency_seconds",
            "Round trip of SELECT 1.",
            latency.as_secs_f64(),
        ));
    }
    metrics
}

/// The Prometheus text format (version 0.0.4) of `metrics`.
fn render(metrics: &[Metric]) -> String {
    let mut out = String::new();
    for Metric {
        name,
        kind,
        help,
        value,
    } in metrics
    {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    out
}

async fn show_metrics(State(state): State<AppState>) -> Response {
    let body = render(&collect(&state).await);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::{Metric, render};

    #[test]
    fn each_metric_is_rendered_with_its_help_and_type() {
        let text = render(&[
            Metric::counter("a_total", "As.", 3),
            Metric::gauge("b", "Bs.", 0.5),
        ]);
        assert_eq!(
            text,
            "# HELP a_total As.\n# TYPE a_total counter\na_total 3\n\
             # HELP b Bs.\n# TYPE b gauge\nb 0.5\n"
        );
    }
}
