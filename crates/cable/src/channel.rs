//! The `Channel` trait: how an application plugs its channels into the engine.

use async_trait::async_trait;
use serde_json::value::RawValue;

use crate::protocol::ActionData;

/// The parameters of an identifier, without its `channel` key.
pub type Params = serde_json::Map<String, serde_json::Value>;

/// An accepted subscription: the streams it follows, and in which format
/// it takes their messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    /// Stream names; every broadcast to one of them reaches the subscriber.
    pub streams: Vec<String>,
    /// Which of a broadcast's [`Formats`] this subscription gets; 0, the
    /// default, is the first. A broadcast of one plain message ignores it.
    pub format: u8,
}

/// One message in each format subscribers may take, e.g. its data fields,
/// its rendered HTML, or both: a broadcast made with
/// [`crate::Cable::broadcast_formats`] hands each subscriber the format its
/// [`Subscription::format`] names, encoded at most once per broadcast and
/// only if some subscriber takes it.
pub trait Formats: Sync {
    /// The message in `format` (an unknown format gets the first).
    fn format(&self, format: u8) -> &RawValue;
}

/// One message, the same for every format.
impl Formats for RawValue {
    fn format(&self, _format: u8) -> &RawValue {
        self
    }
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

/// A replay of stored messages, fetched a page at a time: the session asks
/// for the next page only once the previous one is written, so a client that
/// stops reading holds one page at most, however long the replay.
#[async_trait]
pub trait Replay: Send {
    /// The next page, oldest first; `None` once the replay is over.
    async fn next_page(&mut self) -> Result<Option<Vec<HistoryItem>>, Rejection>;
}

/// Something `perform` sends back to the subscription that asked.
pub enum Reply {
    /// One message (Rails' `transmit`).
    Transmit(Box<RawValue>),
    /// Many, read page by page as the socket drains; transmitted in order,
    /// without stream positions. Replays count against the connection's
    /// replay rate: past it the client gets `{"type":"error","error":"rate_limited",…}`
    /// instead.
    Replay(Box<dyn Replay>),
}

impl Reply {
    /// A message to transmit.
    pub fn transmit(message: Box<RawValue>) -> Self {
        Self::Transmit(message)
    }
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

    /// Runs an action sent with the `message` command. Returned replies are
    /// sent, in order, to this subscription only (Rails' `transmit`).
    async fn perform(&self, identity: &I, params: &Params, action: ActionData) -> Vec<Reply>;

    /// A subscription that `subscribe` accepted has ended: the client
    /// unsubscribed, its socket closed (cleanly or not), or the server ended
    /// the session (sign-out, `too_slow`, shutdown). Called exactly once for
    /// each accepted subscription (Rails' `unsubscribed`); an extended
    /// session parked for restoring counts as ended, and a restore asks
    /// `subscribe` again. Keep it short: the session waits for it.
    async fn unsubscribed(&self, _identity: &I, _params: &Params) {}

    /// The messages of `stream` from `from` on, oldest first, for clients of
    /// the extended protocol, as a replay read page by page, for the
    /// subscription with `params` (in the format it takes). Channels
    /// without history reject.
    async fn history(
        &self,
        _identity: &I,
        _params: &Params,
        stream: &str,
        _from: HistoryFrom,
    ) -> Result<Box<dyn Replay>, Rejection> {
        Err(Rejection(format!("{stream} keeps no history")))
    }
}
