//! Hearth, the chat app: accounts, chatrooms and messages, served as pages
//! and streamed live over the Action Cable engine of the `cable` crate.
//!
//! - [`config`]: command-line and environment settings.
//! - [`auth`]: the signed-in user of a request or a cable.
//! - [`error`]: the app's error type and its HTTP answers.
//! - [`domain`]: parsed field types (`Email`, `Nickname`, `RoomName`, …).
//! - [`copy`]: `hearth copy`, moving an instance between databases.
//! - [`db`]: SQL, one module per table, portable between SQLite and PostgreSQL,
//!   and the writer's own SQLite connection (`db::sqlite_writer`).
//! - [`writer`]: the single path that stores messages (group commit).
//! - [`relay`]: hands each room's messages to local subscribers once and in
//!   order, across nodes (Redis) and gaps (the database).
//! - [`limits`]: rate limits (token buckets).
//! - [`markup`]: user text (Markdown, links) to safe HTML.
//! - [`payload`]: what subscribers receive for a message.
//! - [`online`]: who has a page open anywhere, for the conversations' dots.
//! - [`presence`]: who is in each room and who is typing, across nodes.
//! - [`heap`]: live heap bytes, counted at the allocator.
//! - [`expiry`]: closes the sockets of sessions that ended elsewhere.
//! - [`fds`]: the open-file limit and the reserve kept from the cable.
//! - [`channels`]: the `ChatroomChannel`.
//! - [`http`]: routes, one module per resource, and the forgery guard.
//! - [`server`]: the accept loop, with header-read timeouts.
//! - [`templates`]: page and partial types for the Askama templates.

pub mod activity;
pub mod auth;
pub mod channels;
pub mod config;
pub mod copy;
pub mod db;
pub mod domain;
pub mod error;
pub mod expiry;
pub mod fds;
pub mod heap;
pub mod http;
pub mod limits;
pub mod markup;
pub mod online;
pub mod payload;
pub mod presence;
pub mod relay;
pub mod server;
pub mod templates;
pub mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cable::{Cable, OriginPolicy, RedisBroker};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use auth::CurrentUser;
pub use config::Config;
use http::auth::Passwords;

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
    /// SQLite's search index, filled after the writer's commits.
    pub search_index: db::search_index::SearchIndex,
    /// The relay's counters.
    pub relay: relay::RelayHandle,
    /// The Redis broker, when several nodes share the work.
    pub broker: Option<RedisBroker>,
    /// Which users with a page here are in which rooms, for live unread counts.
    pub activity: activity::Activity,
    /// Who has a page open, on any node.
    pub online: online::Online,
    /// Who is in each room, for `@here`.
    pub presence: presence::PresenceHandle,
    /// Password hashing, with the decoy hash for unknown emails.
    pub passwords: Passwords,
    /// Origins allowed besides the server's own.
    pub origins: OriginPolicy,
    /// Sign-in and sign-up rate limits.
    pub limits: Arc<AuthLimits>,
    /// The settings it was started with.
    pub config: Arc<Config>,
}

/// Rate limits on accounts and rooms, keyed by address, account or user.
pub struct AuthLimits {
    /// Failed sign-ins per address.
    pub sign_in_by_ip: limits::RateLimiter<std::net::IpAddr>,
    /// Failed sign-ins per account and address; the account by a fixed-size
    /// hash, so a huge email is not kept as a key.
    pub sign_in_by_account_ip: limits::RateLimiter<(http::auth::AccountKey, std::net::IpAddr)>,
    /// Sign-ups per address.
    pub sign_up_by_ip: limits::RateLimiter<std::net::IpAddr>,
    /// Rooms created per user.
    pub room_create_by_user: limits::RateLimiter<i64>,
}

fn per(count: u32, period: Duration) -> Option<limits::Rate> {
    (count > 0).then(|| limits::Rate::per(count, period))
}

/// How often a node with a broker compares its rooms with the database.
const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// A built app: its state and the background tasks it owns.
pub struct App {
    state: AppState,
    /// The message writer task; stopped first at shutdown, so every accepted
    /// post is stored and handed to the relay.
    writer_task: JoinHandle<()>,
    stop_writer: CancellationToken,
    /// The relay task; stopped after the writer, once nothing more can arrive.
    relay_task: JoinHandle<()>,
    stop_relay: CancellationToken,
    /// The private listener of `/metrics` and `/ready`, with `--ops-bind`.
    ops_listener: Option<TcpListener>,
}

impl App {
    /// Opens the database (running migrations), creates "general" if needed,
    /// and starts the cable engine and the message writer.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        if config.database_url.is_none() {
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("creating the data folder {}", config.data_dir.display())
            })?;
        }
        let ops_listener = match config.ops_bind {
            Some(addr) => Some(bind(addr).with_context(|| format!("binding --ops-bind {addr}"))?),
            None => None,
        };
        let db = db::connect(&config.database_url()).await?;
        db::chatrooms::ensure_general(&db).await?;

        let stop_relay = CancellationToken::new();
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        let broker = match &config.redis_url {
            Some(url) => Some(
                RedisBroker::start(
                    url,
                    &config.redis_channel_prefix,
                    events_tx,
                    stop_relay.clone(),
                )
                .context("reading the Redis URL")?,
            ),
            None => None,
        };
        let (presence, presence_task) = presence::presence(
            presence::PresenceConfig {
                interval: config.presence_interval,
                ttl: config.presence_ttl,
                typing_interval: config.typing_interval,
                listed: config.presence_listed,
            },
            broker.clone(),
        );
        let activity = activity::Activity::new(db.clone(), broker.clone());
        let online = online::Online::new(
            db.clone(),
            broker.clone(),
            config.presence_interval,
            config.presence_ttl,
        );
        let (relay, relay_task) = relay::relay(
            db.clone(),
            broker.clone(),
            presence.clone(),
            activity.clone(),
            online.clone(),
        );
        let origins = OriginPolicy::new(config.allowed_origins.iter().cloned());
        let message_rate = (config.message_rate > 0).then(|| limits::Rate {
            burst: f64::from(config.message_rate) * 2.0,
            per_second: f64::from(config.message_rate),
        });
        let (writer, writer_task) = writer::channel(message_rate);
        let minute = Duration::from_secs(60);
        let limits = Arc::new(AuthLimits {
            sign_in_by_ip: limits::RateLimiter::new(per(config.sign_in_failures_per_ip, minute)),
            sign_in_by_account_ip: limits::RateLimiter::new(per(
                config.sign_in_failures_per_account_ip,
                minute,
            )),
            sign_up_by_ip: limits::RateLimiter::new(per(config.sign_up_rate_per_ip, minute * 60)),
            room_create_by_user: limits::RateLimiter::new(per(
                config.room_create_rate,
                minute * 60,
            )),
        });
        let cable = Cable::builder(cable::Config {
            max_frame_bytes: config.max_frame_bytes,
            outbox_capacity: config.send_queue,
            max_subscriptions: config.max_subscriptions,
            max_connections: fds::cable_connection_cap(config.max_connections),
            max_connections_per_user: config.max_connections_per_user,
            max_connections_per_address: config.max_connections_per_address,
            max_subscriptions_per_user: config.max_subscriptions_per_user,
            send_budget_bytes: config.send_buffer_bytes,
            write_timeout: config.write_timeout,
            max_identifier_bytes: config.max_identifier_bytes,
            replay_rate: config.replay_rate,
            read_buffer_bytes: config.socket_read_buffer,
            origins: origins.clone(),
            ..cable::Config::default()
        })
        .channel(
            "ChatroomChannel",
            channels::ChatroomChannel::new(
                db.clone(),
                writer.clone(),
                relay.clone(),
                presence.clone(),
            ),
        )
        .channel(
            "RoomsChannel",
            channels::RoomsChannel::new(activity.clone(), online.clone()),
        )
        .build();
        // The broker subscribes to a room's Redis channel only while this
        // node has a subscriber in it.
        if let Some(broker) = &broker {
            cable.watch_streams(broker.watcher());
        }

        let relay_task = tokio::spawn(relay_task.run(
            cable.clone(),
            events,
            RECONCILE_EVERY,
            stop_relay.clone(),
        ));
        // Delivers presence and typing frames and publishes this node's
        // members; stops with the relay, after the cable has ended every
        // subscription.
        tokio::spawn(presence_task.run(cable.clone(), stop_relay.clone()));
        // Tells pages who came online or went, and publishes who is here.
        tokio::spawn(online.clone().run(cable.clone(), stop_relay.clone()));
        // Stops with the relay at shutdown; holds only a timer between sweeps.
        tokio::spawn(expiry::run(
            cable.clone(),
            db.clone(),
            config.session_check_interval,
            stop_relay.clone(),
        ));
        let stop_writer = CancellationToken::new();
        let search_index = db::search_index::SearchIndex::start(
            db::sqlite_file(&config.database_url())?.as_deref(),
        )?;
        let storage =
            writer::Storage::open(db.clone(), &config.database_url(), search_index.clone())?;
        let writer_task =
            tokio::spawn(writer_task.run(storage, relay.clone(), stop_writer.clone()));
        let passwords = Passwords::new().await?;
        Ok(Self {
            state: AppState {
                db,
                cable,
                writer,
                search_index,
                relay,
                broker,
                activity,
                online,
                presence,
                passwords,
                origins,
                limits,
                config: Arc::new(config),
            },
            writer_task,
            stop_writer,
            relay_task,
            stop_relay,
            ops_listener,
        })
    }

    /// Where `/metrics` and `/ready` are served when `--ops-bind` is set.
    pub fn ops_addr(&self) -> Option<std::net::SocketAddr> {
        self.ops_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// The app's state, e.g. for tests.
    pub fn state(&self) -> &AppState {
        &self.state
    }
}

/// Binds `addr` with a listen backlog of 4096: the default 128 dropped SYNs
/// when hundreds of clients connected at once (BENCHMARKS.md).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
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
        relay_task,
        stop_relay,
        ops_listener,
    } = app;
    let cable = state.cable.clone();
    let db = state.db.clone();
    let timeouts = server::Timeouts {
        header_read: state.config.header_read_timeout,
    };
    // Cancelled when shutdown begins; stops the private ops server too.
    let stopping = CancellationToken::new();
    let ops_task = match ops_listener {
        Some(listener) => {
            tracing::info!(addr = %listener.local_addr()?, "serving /metrics and /ready");
            let router = http::ops_router(state.clone());
            let stop = stopping.clone().cancelled_owned();
            Some(tokio::spawn(server::run(listener, router, timeouts, stop)))
        }
        None => None,
    };
    let router = http::router(state);
    tracing::info!(addr = %listener.local_addr()?, "listening");
    server::run(listener, router, timeouts, async move {
        shutdown.await;
        tracing::info!("shutting down");
        stopping.cancel();
        cable.shutdown(SHUTDOWN_GRACE).await;
    })
    .await?;
    if let Some(ops_task) = ops_task {
        ops_task.await.context("the ops server panicked")??;
    }
    stop_writer.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, writer_task)
        .await
        .is_err()
    {
        tracing::warn!("the message writer did not finish in time");
    }
    stop_relay.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, relay_task)
        .await
        .is_err()
    {
        tracing::warn!("the relay did not finish in time");
    }
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}
