//! Hearth, the chat app: accounts, chatrooms and messages, served as pages
//! and streamed live over the Action Cable engine of the `cable` crate.
//!
//! - [`config`]: command-line and environment settings.
//! - [`error`]: the app's error type and its HTTP answers.
//! - [`domain`]: parsed field types (`Email`, `Nickname`, `RoomName`, …).
//! - [`db`]: SQL, one module per table, portable between SQLite and PostgreSQL.
//! - [`writer`]: the single path that stores messages and broadcasts them.
//! - [`channels`]: the `ChatroomChannel`.
//! - [`http`]: routes, one module per resource, and the forgery guard.
//! - [`templates`]: page and partial types for the Askama templates.

pub mod channels;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod templates;
pub mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cable::{Cable, OriginPolicy};
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use http::auth::{CurrentUser, Passwords};

/// How long open sockets get to hear `server_restart` and close at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The database pool.
    pub db: db::Db,
    /// The Action Cable engine.
    pub cable: Cable<CurrentUser>,
    /// Where messages are posted.
    pub writer: writer::MessageWriter,
    /// Password hashing, with the decoy hash for unknown emails.
    pub passwords: Passwords,
    /// Origins allowed besides the server's own.
    pub origins: OriginPolicy,
    /// The settings it was started with.
    pub config: Arc<Config>,
}

/// A built app: its state and the background tasks it owns.
pub struct App {
    state: AppState,
    /// The message writer task; stopped and awaited at shutdown.
    writer_task: JoinHandle<()>,
    stop_writer: CancellationToken,
}

struct CableBroadcast(Cable<CurrentUser>);

impl writer::Broadcast for CableBroadcast {
    fn broadcast(&self, stream: &str, message: &RawValue) {
        self.0.broadcast(stream, message);
    }
}

impl App {
    /// Opens the database (running migrations), creates "general" if needed,
    /// and starts the cable engine and the message writer.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating the data folder {}", config.data_dir.display()))?;
        let db = db::connect(&db::sqlite_url(&config.data_dir)).await?;
        db::chatrooms::ensure_general(&db).await?;

        let origins = OriginPolicy::new(config.allowed_origins.iter().cloned());
        let (writer, writer_task) = writer::channel();
        let cable = Cable::builder(cable::Config {
            max_frame_bytes: config.max_frame_bytes,
            outbox_capacity: config.send_queue,
            max_subscriptions: config.max_subscriptions,
            origins: origins.clone(),
            ..cable::Config::default()
        })
        .channel(
            "ChatroomChannel",
            channels::ChatroomChannel::new(db.clone(), writer.clone()),
        )
        .build();

        let stop_writer = CancellationToken::new();
        let writer_task = tokio::spawn(writer_task.run(
            db.clone(),
            CableBroadcast(cable.clone()),
            stop_writer.clone(),
        ));
        let passwords = Passwords::new().await?;
        Ok(Self {
            state: AppState {
                db,
                cable,
                writer,
                passwords,
                origins,
                config: Arc::new(config),
            },
            writer_task,
            stop_writer,
        })
    }

    /// The app's state, e.g. for tests.
    pub fn state(&self) -> &AppState {
        &self.state
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then tells every
/// cable client `server_restart`, finishes pending requests and writes, and
/// closes the database.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let App {
        state,
        writer_task,
        stop_writer,
    } = app;
    let cable = state.cable.clone();
    let db = state.db.clone();
    let router = http::router(state);
    tracing::info!(addr = %listener.local_addr()?, "listening");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down");
        cable.shutdown(SHUTDOWN_GRACE).await;
    })
    .await?;
    stop_writer.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, writer_task)
        .await
        .is_err()
    {
        tracing::warn!("the message writer did not finish in time");
    }
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}
