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

/// A refused subscription; the reason is logged, the client sees `reject_subscription`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection(pub String);

/// An Action Cable channel, like a Rails `ApplicationCable::Channel` subclass.
///
/// `I` is the identity the application attached to the connection (Rails'
/// `identified_by`), e.g. the signed-in user.
#[async_trait]
pub trait Channel<I>: Send + Sync + 'static {
    /// Decides whether `identity` may subscribe with `params` and which
    /// streams the subscription follows (Rails' `subscribed` + `stream_from`).
    async fn subscribe(&self, identity: &I, params: &Params) -> Result<Subscription, Rejection>;

    /// Runs an action sent with the `message` command. A returned value is
    /// transmitted to this subscription only (Rails' `transmit`).
    async fn perform(
        &self,
        identity: &I,
        params: &Params,
        action: ActionData,
    ) -> Option<Box<RawValue>>;
}
