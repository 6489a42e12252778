//! Hearth's Action Cable channels.

mod chatroom;
pub mod rooms;

pub use chatroom::ChatroomChannel;
pub use rooms::RoomsChannel;
