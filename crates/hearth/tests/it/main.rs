//! Hearth's integration tests, one binary: each module starts real servers
//! (in-process on port 0, or the `hearth` binary) and talks to them over
//! real HTTP and real WebSockets. `common` is the kit they share.
//!
//! Tests that need PostgreSQL or Redis are `#[ignore = "needs …"]`; `.ci/run`
//! runs them with `--include-ignored` (see the README).

mod common;

mod abuse;
mod accounts;
mod cable;
mod chatrooms;
mod connections;
mod conversations;
mod directory;
mod edits;
mod faults;
mod formats;
mod history;
mod mentions;
mod messages;
mod online;
mod ops;
mod presence;
mod reliability;
mod scale_out;
mod search;
mod upgrade;
mod writes;
