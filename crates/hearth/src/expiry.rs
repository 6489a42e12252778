//! Closes the sockets of sessions that ended without this node seeing it:
//! sessions that expired, and sessions ended on another node (signing out or
//! signing in again there). Signing out and in on this node closes its
//! sockets at once ([`crate::http::auth`]); this sweep is the backstop.

use std::collections::HashSet;
use std::time::Duration;

use cable::{Cable, DisconnectReason};
use tokio_util::sync::CancellationToken;

use crate::auth::CurrentUser;
use crate::db::{self, Db};

/// Every `every`, asks the database which of the sessions behind this node's
/// sockets are still live and closes the sockets of the rest with
/// `unauthorized`, until `stop` is cancelled. Owns nothing but a timer; each
/// sweep holds one set of session hashes, bounded by the open sockets.
pub async fn run(cable: Cable<CurrentUser>, db: Db, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        if let Err(error) = sweep(&cable, &db).await {
            tracing::warn!(%error, "could not check the sessions of open sockets");
        }
    }
}

async fn sweep(cable: &Cable<CurrentUser>, db: &Db) -> sqlx::Result<()> {
    let open: HashSet<String> = cable
        .live_identities()
        .iter()
        .map(|user| user.session.clone())
        .collect();
    if open.is_empty() {
        return Ok(());
    }
    let open: Vec<String> = open.into_iter().collect();
    let live = db::sessions::live_among(db, &open).await?;
    let ended: HashSet<&String> = open.iter().filter(|hash| !live.contains(*hash)).collect();
    if ended.is_empty() {
        return Ok(());
    }
    let closed = cable.disconnect_where(
        |user| ended.contains(&user.session),
        DisconnectReason::Unauthorized,
    );
    tracing::info!(
        sessions = ended.len(),
        sockets_closed = closed,
        "closed the sockets of ended sessions"
    );
    Ok(())
}
