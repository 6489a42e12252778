//! The stream registry: which connections follow which stream, under which
//! identifier, and the fan-out of one broadcast to all of them.
//!
//! Streams are spread over shards, each behind its own `RwLock`, so broadcasts
//! to different rooms do not queue behind one lock, and a broadcast only takes
//! a read lock. A broadcast encodes its frame once per distinct identifier
//! string and hands every subscriber a reference-counted copy of those bytes.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, RwLock};

use axum::extract::ws::Utf8Bytes;
use serde_json::value::RawValue;
use tokio::sync::{Notify, mpsc};

use crate::protocol;

/// A connection's id, unique within one process.
pub type ConnId = u64;

const SHARDS: usize = 32;

/// The sending side of a connection's bounded frame queue.
#[derive(Clone, Debug)]
pub struct Outbox {
    frames: mpsc::Sender<Utf8Bytes>,
    /// Woken when a frame could not be queued because the queue was full.
    overflow: Arc<Notify>,
}

/// What happened to one frame offered to an [`Outbox`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued for writing.
    Queued,
    /// The queue was full: the connection is too slow and will be dropped.
    Full,
    /// The connection is gone.
    Closed,
}

impl Outbox {
    /// A queue of `capacity` frames, the receiving end, and the overflow signal.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Utf8Bytes>, Arc<Notify>) {
        let (frames, rx) = mpsc::channel(capacity.max(1));
        let overflow = Arc::new(Notify::new());
        (
            Self {
                frames,
                overflow: overflow.clone(),
            },
            rx,
            overflow,
        )
    }

    /// Queues a frame without waiting; a full queue marks the connection too slow.
    pub fn offer(&self, frame: Utf8Bytes) -> Offer {
        match self.frames.try_send(frame) {
            Ok(()) => Offer::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.notify_one();
                Offer::Full
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Closed,
        }
    }
}

/// The subscribers of one stream that used one identifier string.
#[derive(Debug)]
struct Group {
    identifier: Arc<str>,
    subscribers: HashMap<ConnId, Outbox>,
}

type Shard = HashMap<Arc<str>, Vec<Group>>;

/// How one broadcast went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Frames queued to subscribers.
    pub queued: usize,
    /// Subscribers whose queue was full or closed.
    pub dropped: usize,
}

/// Every stream followed on this node and its subscribers.
#[derive(Debug)]
pub struct Registry {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Registry {
    fn shard(&self, stream: &str) -> &RwLock<Shard> {
        let index = self.hasher.hash_one(stream) as usize % self.shards.len();
        &self.shards[index]
    }

    /// Adds a subscriber; adding the same one twice keeps one entry.
    pub fn add(&self, stream: &str, identifier: &Arc<str>, conn: ConnId, outbox: &Outbox) {
        let mut shard = self
            .shard(stream)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let groups = shard.entry(Arc::from(stream)).or_default();
        let group = match groups.iter_mut().position(|g| g.identifier == *identifier) {
            Some(index) => &mut groups[index],
            None => {
                groups.push(Group {
                    identifier: identifier.clone(),
                    subscribers: HashMap::new(),
                });
                groups.last_mut().expect("just pushed")
            }
        };
        group.subscribers.insert(conn, outbox.clone());
    }

    /// Removes a subscriber, and the stream once nobody follows it.
    pub fn remove(&self, stream: &str, identifier: &str, conn: ConnId) {
        let mut shard = self
            .shard(stream)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let Some(groups) = shard.get_mut(stream) else {
            return;
        };
        if let Some(index) = groups.iter().position(|g| &*g.identifier == identifier) {
            groups[index].subscribers.remove(&conn);
            if groups[index].subscribers.is_empty() {
                groups.swap_remove(index);
            }
        }
        if groups.is_empty() {
            shard.remove(stream);
        }
    }

    /// Queues `message` for every subscriber of `stream`.
    pub fn deliver(&self, stream: &str, message: &RawValue) -> Delivery {
        let shard = self.shard(stream).read().unwrap_or_else(|e| e.into_inner());
        let mut delivery = Delivery::default();
        let Some(groups) = shard.get(stream) else {
            return delivery;
        };
        for group in groups {
            let frame = protocol::to_subscription(&group.identifier, message);
            for outbox in group.subscribers.values() {
                match outbox.offer(frame.clone()) {
                    Offer::Queued => delivery.queued += 1,
                    Offer::Full | Offer::Closed => delivery.dropped += 1,
                }
            }
        }
        delivery
    }

    /// How many subscribers `stream` has on this node.
    pub fn subscriber_count(&self, stream: &str) -> usize {
        let shard = self.shard(stream).read().unwrap_or_else(|e| e.into_inner());
        shard
            .get(stream)
            .map(|groups| groups.iter().map(|g| g.subscribers.len()).sum())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[tokio::test]
    async fn delivers_to_each_subscriber_with_its_own_identifier() {
        let registry = Registry::default();
        let (a, mut a_rx, _) = Outbox::new(8);
        let (b, mut b_rx, _) = Outbox::new(8);
        let id_a: Arc<str> = Arc::from(r#"{"channel":"C","id":1}"#);
        let id_b: Arc<str> = Arc::from(r#"{"id":"1","channel":"C"}"#);
        registry.add("room:1", &id_a, 1, &a);
        registry.add("room:1", &id_b, 2, &b);
        registry.add("room:1", &id_b, 2, &b);

        let delivery = registry.deliver("room:1", &raw(r#"{"n":1}"#));

        assert_eq!(
            delivery,
            Delivery {
                queued: 2,
                dropped: 0
            }
        );
        let frame: serde_json::Value =
            serde_json::from_str(a_rx.recv().await.unwrap().as_str()).unwrap();
        assert_eq!(frame["identifier"], &*id_a);
        let frame: serde_json::Value =
            serde_json::from_str(b_rx.recv().await.unwrap().as_str()).unwrap();
        assert_eq!(frame["identifier"], &*id_b);
        assert!(
            b_rx.try_recv().is_err(),
            "a duplicate add must not deliver twice"
        );
    }

    #[tokio::test]
    async fn removed_subscribers_get_nothing_and_empty_streams_vanish() {
        let registry = Registry::default();
        let (a, mut a_rx, _) = Outbox::new(8);
        let id: Arc<str> = Arc::from("x");
        registry.add("s", &id, 1, &a);
        registry.remove("s", "x", 1);
        assert_eq!(registry.deliver("s", &raw("1")), Delivery::default());
        assert_eq!(registry.subscriber_count("s"), 0);
        assert!(a_rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_queue_is_counted_and_signalled() {
        let registry = Registry::default();
        let (a, _a_rx, overflow) = Outbox::new(1);
        let id: Arc<str> = Arc::from("x");
        registry.add("s", &id, 1, &a);
        assert_eq!(registry.deliver("s", &raw("1")).queued, 1);
        assert_eq!(registry.deliver("s", &raw("2")).dropped, 1);
        tokio::time::timeout(std::time::Duration::from_secs(1), overflow.notified())
            .await
            .expect("overflow is signalled");
    }
}
