//! A broadcast through the frame encoders. The input is lines: the
//! subscription's identifier, the stream, the epoch, the offset, then the
//! payload as it arrives from the application or from Redis (Hearth's relay
//! wraps it with `RawValue::from_string`).
//!
//! Checks that whenever the payload is accepted as raw JSON, `to_subscription`
//! and `to_subscription_at` write readable frames that echo the identifier
//! and the position exactly and carry the payload byte for byte (and as the
//! same value, when it loads as one).
#![no_main]

use cable::protocol::Position;
use cable_fuzz::check_to_subscription;
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fuzz_target!(|bytes: &[u8]| {
    let Ok(input) = std::str::from_utf8(bytes) else {
        return;
    };
    let mut lines = input.splitn(5, '\n');
    let mut line = || lines.next().unwrap_or("");
    let (identifier, stream, epoch, offset, payload) = (line(), line(), line(), line(), line());
    let Ok(message) = RawValue::from_string(payload.to_owned()) else {
        return;
    };
    check_to_subscription(identifier, &message, None);
    let offset = offset.parse().unwrap_or(offset.len() as i64);
    check_to_subscription(
        identifier,
        &message,
        Some(Position {
            stream,
            epoch,
            offset,
        }),
    );
});
