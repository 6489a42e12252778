//! `cable`: an Action Cable protocol server engine. It owns the WebSocket
//! session of each client, the wire format, the stream registry and the
//! fan-out of broadcasts; applications plug in their [`Channel`]s and know
//! nothing of frames. It knows nothing of chat.
//!
//! - [`protocol`]: client commands and server frames, parsed and encoded once.
//! - [`registry`]: streams, their subscribers, and the fan-out of one broadcast.
//! - [`channel`]: the [`Channel`] trait applications implement.
//! - [`broker`]: carrying broadcasts between nodes through Redis pub/sub.
//! - [`origin`]: which `Origin`s may open a cable.
//! - [`server`]: the [`Cable`] handle: configuration, upgrade, broadcast, shutdown.
//! - [`upgrade`]: the WebSocket handshake.
//! - [`wire`]: server frames on the wire and the vectored write path.
//! - `session`: one connection's read/write loop and its byte budget;
//!   `session::extended` adds AnyCable's restore, hold and history.

#![forbid(unsafe_code)]

pub mod broker;
pub mod channel;
pub mod origin;
pub mod protocol;
pub mod registry;
pub mod server;
mod session;
pub mod upgrade;
pub mod wire;

pub use broker::{BrokerEvent, RedisBroker};
pub use channel::{Channel, Formats, Params, Rejection, Replay, Reply, Subscription};
pub use origin::OriginPolicy;
pub use protocol::{ActionData, DisconnectReason};
pub use server::{Cable, CableBuilder, Config, Identity, Stats};
pub use upgrade::{CableUpgrade, UpgradeRejection};
