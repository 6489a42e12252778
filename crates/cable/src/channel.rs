//! The `Channel` trait: how an application plugs its channels into the engine.

use async_trait::async_trait;
use serde_json::value::RawValue;

use crate::protocol::ActionData;

/// The parameters of an identifier, without its `channel` key.
pub type Params = serde_json::Map<String, serde_json::Value>;

/// An accepted subscription: the streams it follows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    /// Stream names; every broadcast to one of them reaches the subscriber.
    pub streams: Vec<String>,
}

/// A refused subscription or history request; the reason is logged, the
/// client sees `reject_subscription` or `reject_history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection(pub String);

/// Where a history replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryFrom {
    /// Every message with a greater offset.
    After(i64),
    /// Every message sent at or after this Unix time, in seconds.
    Since(i64),
}

/// One message of a stream's history.
#[derive(Debug)]
pub struct HistoryItem {
    /// Its offset in the stream.
    pub offset: i64,
    /// The message, as it was broadcast.
    pub message: Box<RawValue>,
}

/// An Action Cable channel, like a Rails `ApplicationCable::Channel` subclass.
///
/// `I` is the identity the application attached to the connection (Rails'
/// `identified_by`), e.g. the signed-in user.
#[async_trait]
pub trait Channel<I>: Send + Sync + 'static {
    /// Decides whether `identity` may subscribe with `params` and which
    /// streams the subscription follows (Rails' `subscribed` + `stream_from`).
    async fn subscribe(&self, identity: &I, params: &Params) -> Result<Subscription, Rejection>;

    /// Runs an action sent with the `message` command. Returned values are
    /// transmitted, in order, to this subscription only (Rails' `transmit`).
    async fn perform(
        &self,
        identity: &I,
        params: &Params,
        action: ActionData,
    ) -> Vec<Box<RawValue>>;

    /// The messages of `stream` from `from` on, oldest first, for clients of
    /// the extended protocol. Channels without history reject.
    async fn history(
        &self,
        _identity: &I,
        stream: &str,
        _from: HistoryFrom,
    ) -> Result<Vec<HistoryItem>, Rejection> {
        Err(Rejection(format!("{stream} keeps no history")))
    }
}
