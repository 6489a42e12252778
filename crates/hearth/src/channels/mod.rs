//! Hearth's Action Cable channels.

mod chatroom;

pub use chatroom::ChatroomChannel;
