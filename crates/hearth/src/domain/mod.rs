//! Parsed values: once a request field becomes one of these types it is
//! known to be valid, and handlers and queries take nothing else.

mod chatroom;
mod message;
mod search;
mod user;

pub use chatroom::{
    ActivityStream, MAX_SEARCH_CHARS, MAX_TOPIC_CHARS, PresenceStream, RoomName, RoomSearch,
    RoomStream, RoomTopic, fold as fold_room_name,
};
pub use message::{MAX_MESSAGE_CHARS, MessageContent};
pub use search::{MAX_QUERY_CHARS, SearchQuery};
pub use user::{Email, Nickname, Password};

/// Why a field was refused; the message is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub &'static str);
