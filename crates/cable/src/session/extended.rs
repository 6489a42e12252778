//! AnyCable's extended protocol on top of a session: the `sid`, restoring a
//! parked session, holding a restored subscription's live frames until its
//! history is answered, and history replays by stream offset.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::{End, Session, Socket, reply};
use crate::channel::{Channel, HistoryFrom};
use crate::protocol::{self, Dialect, HistoryRequest, Position};
use crate::registry::{Outgoing, StreamKey};
use crate::server::{Identity, Parked};

/// How long live frames of a restored subscription wait for its history request.
const HOLD_TIMEOUT: Duration = Duration::from_secs(5);

/// A subscription kept with a parked session, to be registered again on restore.
pub(crate) struct Restorable<I> {
    identifier: Arc<str>,
    channel: Arc<dyn Channel<I>>,
}

/// What a session of the extended protocol keeps besides its subscriptions:
/// nothing but a null pointer for a plain client. Kept inline, its 136
/// bytes widened every connection's task, and took the task's cell up a
/// size class of the allocator (BENCHMARKS.md, run 8).
#[derive(Default)]
pub(super) struct State(Option<Box<Ext>>);

#[derive(Default)]
pub(super) struct Ext {
    /// The id under which this session can be restored.
    sid: Option<String>,
    /// The last offset written per subscription and stream, so live frames
    /// that history already sent are skipped.
    written: HashMap<StreamKey, i64>,
    /// Restored subscriptions whose client has not asked for history yet:
    /// their live frames wait here, so the replay comes first and the
    /// client's position never jumps over a gap. Released by the history
    /// answer or after [`HOLD_TIMEOUT`]; the frames stay charged to the
    /// session's budget, which bounds them.
    held: HashMap<Arc<str>, Vec<Outgoing>>,
    hold_until: Option<tokio::time::Instant>,
}

impl State {
    pub(super) fn new(dialect: Dialect) -> Self {
        Self((dialect == Dialect::Extended).then(|| {
            Box::new(Ext {
                sid: Some(new_sid()),
                ..Ext::default()
            })
        }))
    }

    /// The extended state, made on first use (only extended sessions use it).
    fn get(&mut self) -> &mut Ext {
        self.0.get_or_insert_with(Box::default)
    }

    /// The session id sent in the welcome.
    pub(super) fn sid(&self) -> &str {
        self.0
            .as_ref()
            .and_then(|ext| ext.sid.as_deref())
            .unwrap_or_default()
    }

    /// Resolves when held frames must be released without a history request.
    pub(super) fn hold_expired(&self) -> impl Future<Output = ()> + use<> {
        let deadline = self.0.as_ref().and_then(|ext| ext.hold_until);
        async move {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        }
    }

    /// Keeps a live frame of a subscription awaiting its history; gives
    /// back any other frame.
    pub(super) fn hold(&mut self, outgoing: Outgoing) -> Option<Outgoing> {
        if let Some((key, _)) = &outgoing.position
            && let Some(ext) = &mut self.0
            && let Some(waiting) = ext.held.get_mut(&key.identifier)
        {
            waiting.push(outgoing);
            return None;
        }
        Some(outgoing)
    }

    /// Whether a frame is new to this client, noting it as written.
    pub(super) fn fresh(&mut self, outgoing: &Outgoing) -> bool {
        let Some((key, offset)) = &outgoing.position else {
            return true;
        };
        let written = &mut self.get().written;
        match written.get_mut(&**key) {
            Some(last) if *last >= *offset => false,
            Some(last) => {
                *last = *offset;
                true
            }
            None => {
                written.insert((**key).clone(), *offset);
                true
            }
        }
    }

    /// Forgets a subscription; returns the bytes of the frames it held.
    pub(super) fn forget(&mut self, identifier: &str) -> usize {
        let Some(ext) = &mut self.0 else {
            return 0;
        };
        ext.written.retain(|key, _| &*key.identifier != identifier);
        let held = ext.held.remove(identifier).unwrap_or_default();
        if ext.held.is_empty() {
            ext.hold_until = None;
        }
        held.iter().map(|frame| frame.frame.len()).sum()
    }

    /// Takes the session id, to park the session under it.
    fn take_sid(&mut self) -> Option<String> {
        self.0.as_mut().and_then(|ext| ext.sid.take())
    }
}

/// A session id: 128 bits from the operating system's random source, so it
/// cannot be guessed from the connection or the time.
fn new_sid() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl<I: Identity> Session<I> {
    /// Re-registers the subscriptions of the session parked under `sid`,
    /// if it is this identity's; returns their identifiers. Parking ended
    /// each subscription for its channel, so each is asked to `subscribe`
    /// again; one it now refuses is not restored.
    pub(super) async fn restore(&mut self, sid: &str) -> Option<Vec<Arc<str>>> {
        let parked = self.inner.unpark(sid, &self.identity)?;
        let mut ids = Vec::with_capacity(parked.subscriptions.len());
        for s in parked.subscriptions {
            let params = super::params_of(&s.identifier);
            let subscription = match s.channel.subscribe(&self.identity, &params).await {
                Ok(subscription) => subscription,
                Err(rejection) => {
                    debug!(reason = %rejection.0, "a parked subscription is refused now");
                    continue;
                }
            };
            ids.push(s.identifier.clone());
            self.ext.get().held.insert(s.identifier.clone(), Vec::new());
            self.inner.recount_subscription(&self.identity);
            self.register(s.identifier, s.channel, subscription);
        }
        if !ids.is_empty() {
            self.ext.get().hold_until = Some(tokio::time::Instant::now() + HOLD_TIMEOUT);
        }
        debug!(restored = ids.len(), "restored a session");
        Some(ids)
    }

    /// Ends every hold, queueing the held frames the client still lacks.
    pub(super) fn release_all_held(&mut self) {
        let ext = self.ext.get();
        ext.hold_until = None;
        let held: Vec<Outgoing> = ext.held.drain().flat_map(|(_, f)| f).collect();
        for frame in held {
            self.push_queued(frame);
        }
    }

    /// Ends the hold of one subscription, queueing what the client still lacks.
    fn release(&mut self, identifier: &str) {
        let ext = self.ext.get();
        let held = ext.held.remove(identifier).unwrap_or_default();
        if ext.held.is_empty() {
            ext.hold_until = None;
        }
        for frame in held {
            self.push_queued(frame);
        }
    }

    /// `reject_history`, then whatever was held for the subscription.
    fn reject_history(&mut self, identifier: &str) {
        self.push_reply(reply(protocol::reject_history(identifier)));
        self.release(identifier);
    }

    /// Replays what a subscription missed in each of its streams, page by
    /// page, then `confirm_history`; `reject_history` if any stream cannot
    /// be replayed or the connection asks too often.
    pub(super) async fn history(
        &mut self,
        socket: &mut Socket,
        identifier: &str,
        request: &HistoryRequest,
    ) -> Result<(), End> {
        let Some(subscribed) = self.subscriptions.get(identifier) else {
            warn!(
                identifier_bytes = identifier.len(),
                "history for an unknown identifier"
            );
            self.push_reply(reply(protocol::reject_history(identifier)));
            return Ok(());
        };
        let channel = subscribed.channel.clone();
        let streams = subscribed.streams.clone();
        let params = super::params_of(identifier);
        if self.replays.take().is_err() {
            warn!("rejecting history: this connection asks too often");
            self.reject_history(identifier);
            return Ok(());
        }
        let epoch = self.inner.config.epoch.clone();
        let key_identifier: Arc<str> = Arc::from(identifier);
        for stream in streams {
            let from = match (request.streams.get(&*stream), request.since) {
                (Some(position), _) if position.epoch == epoch => {
                    HistoryFrom::After(position.offset)
                }
                (_, Some(since)) => HistoryFrom::Since(since),
                (Some(_), None) => {
                    warn!(stream = &*stream, "history of another epoch");
                    self.reject_history(identifier);
                    return Ok(());
                }
                (None, None) => continue,
            };
            let replay = match channel
                .history(&self.identity, &params, &stream, from)
                .await
            {
                Ok(replay) => replay,
                Err(rejection) => {
                    warn!(reason = %rejection.0, "rejecting history");
                    self.reject_history(identifier);
                    return Ok(());
                }
            };
            let key = StreamKey {
                identifier: key_identifier.clone(),
                stream: stream.clone(),
            };
            let mut last = self
                .ext
                .get()
                .written
                .get(&key)
                .copied()
                .unwrap_or(i64::MIN);
            let failed = self
                .stream(socket, replay, |session, item| {
                    if item.offset <= last {
                        return None;
                    }
                    last = item.offset;
                    session.ext.get().written.insert(key.clone(), last);
                    let position = Position {
                        stream: &stream,
                        epoch: &epoch,
                        offset: item.offset,
                    };
                    Some(reply(protocol::to_subscription_at(
                        identifier,
                        &item.message,
                        position,
                    )))
                })
                .await?;
            if let Err(rejection) = failed {
                warn!(reason = %rejection.0, "history failed part way");
                self.reject_history(identifier);
                return Ok(());
            }
        }
        self.push_reply(reply(protocol::confirm_history(identifier)));
        self.release(identifier);
        Ok(())
    }

    /// Drops every subscription, telling each channel it ended; with
    /// `park`, keeps them for a restore.
    pub(super) async fn close(&mut self, park: bool) {
        let identifiers: Vec<Arc<str>> = self.subscriptions.keys().cloned().collect();
        let mut kept = Vec::new();
        for identifier in identifiers {
            if let Some(s) = self.unsubscribe(&identifier) {
                s.channel
                    .unsubscribed(&self.identity, &super::params_of(&identifier))
                    .await;
                kept.push(Restorable {
                    identifier,
                    channel: s.channel,
                });
            }
        }
        if let (true, Some(sid)) = (park, self.ext.take_sid()) {
            self.inner.park(
                sid,
                Parked {
                    identity: self.identity.clone(),
                    subscriptions: kept,
                    expires: Instant::now() + self.inner.config.session_ttl,
                },
            );
        }
    }
}
